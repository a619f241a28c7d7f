//! The node's output side: the single writer that owns the protocol stream, the private copy of
//! stdout that keeps stray prints out of the protocol, and the default log subscriber.

use crate::context::Out;
use std::io::{self, IsTerminal};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Lines are batched up to this many bytes before a write.
const BATCH: usize = 1 << 16;

/// Writes queued lines in order. Whenever the queue drains, the batch is written and flushed,
/// so no line waits while the node idles. Stops at [`Out::Close`] after flushing everything
/// queued before it.
pub(crate) async fn write_lines<W: AsyncWrite + Unpin>(mut rx: mpsc::UnboundedReceiver<Out>, mut w: W) -> io::Result<()> {
    let mut buf = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut closing = None;
        while let Some(item) = next.take() {
            match item {
                Out::Line(line) => buf.extend_from_slice(line.as_bytes()),
                Out::Close(ack) => {
                    closing = Some(ack);
                    break;
                }
            }
            if buf.len() >= BATCH {
                w.write_all(&buf).await?;
                buf.clear();
            }
            next = rx.try_recv().ok();
        }
        w.write_all(&buf).await?;
        buf.clear();
        w.flush().await?;
        if let Some(ack) = closing {
            let _ = ack.send(());
            return Ok(());
        }
    }
    Ok(())
}

/// Moves protocol output to a private duplicate of descriptor 1 and points descriptor 1 at
/// stderr, so `println!` from user code cannot corrupt the protocol. `None` off Unix.
#[cfg(unix)]
pub(crate) fn private_stdout() -> io::Result<Option<std::fs::File>> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain descriptor calls; the duplicate is owned by the returned File alone.
    unsafe {
        let fd = libc::fcntl(libc::STDOUT_FILENO, libc::F_DUPFD_CLOEXEC, 3);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) < 0 {
            let e = io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        Ok(Some(std::fs::File::from_raw_fd(fd)))
    }
}

#[cfg(not(unix))]
pub(crate) fn private_stdout() -> io::Result<Option<std::fs::File>> {
    Ok(None)
}

/// Installs a stderr subscriber filtered by `RUST_LOG` (default `info`), unless the
/// application installed one. `Targets` parses `RUST_LOG` without pulling in a regex engine.
pub(crate) fn install_default_logging() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    if tracing::dispatcher::has_been_set() {
        return;
    }
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let subscriber = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_target(false)
        .finish()
        .with(filter);
    let _ = tracing::subscriber::set_global_default(subscriber);
}
