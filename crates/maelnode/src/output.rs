//! The node's output side: the single writer that owns the protocol stream, the private copy of
//! stdout that keeps stray prints out of the protocol, and the default log subscriber.

use crate::context::Out;
use std::io::{self, IsTerminal};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Lines are batched up to this many bytes before a write.
const BATCH: usize = 1 << 16;

/// Writes queued lines in order. Whenever the queue drains, the batch is written and flushed,
/// so no line waits while the node idles. Stops at [`Out::Close`] after flushing everything
/// queued before it.
pub(crate) async fn write_lines<W: AsyncWrite + Unpin>(
    mut rx: mpsc::UnboundedReceiver<Out>,
    mut w: W,
) -> io::Result<()> {
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

/// The node's protocol input and output.
///
/// Runners connect nodes through pipes; for pipes, tokio's epoll-driven pipe types are used,
/// because `tokio::io::stdin`/`stdout` route every read and write through the blocking thread
/// pool, which halves throughput and makes it erratic. Anything else (a file, a terminal)
/// falls back to those portable types.
///
/// With `guard` (Unix), protocol output goes to a private duplicate of descriptor 1, and
/// descriptor 1 is pointed at stderr, so `println!` from user code cannot corrupt the protocol.
pub(crate) fn stdio(
    guard: bool,
) -> io::Result<(
    Box<dyn AsyncRead + Unpin + Send>,
    Box<dyn AsyncWrite + Unpin + Send>,
)> {
    #[cfg(unix)]
    {
        use tokio::net::unix::pipe;
        let input = duplicate(libc::STDIN_FILENO)?;
        let reader: Box<dyn AsyncRead + Unpin + Send> = match pipe::Receiver::from_file(input) {
            Ok(r) => Box::new(r),
            Err(_) => Box::new(tokio::io::stdin()),
        };
        let output = duplicate(libc::STDOUT_FILENO)?;
        if guard {
            // SAFETY: plain descriptor call on the process's own standard descriptors.
            if unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let writer: Box<dyn AsyncWrite + Unpin + Send> =
            match pipe::Sender::from_file(output.try_clone()?) {
                Ok(w) => Box::new(w),
                Err(_) if guard => Box::new(tokio::fs::File::from_std(output)),
                Err(_) => Box::new(tokio::io::stdout()),
            };
        Ok((reader, writer))
    }
    #[cfg(not(unix))]
    {
        let _ = guard;
        Ok((Box::new(tokio::io::stdin()), Box::new(tokio::io::stdout())))
    }
}

/// A close-on-exec duplicate of `fd`, owned by the returned file.
#[cfg(unix)]
fn duplicate(fd: i32) -> io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor that nothing else owns.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` is a fresh descriptor owned by nobody else.
    Ok(unsafe { std::fs::File::from_raw_fd(dup) })
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
    // The fmt layer on a bare registry: `fmt()`'s builder would add its own INFO ceiling,
    // and RUST_LOG=debug could then never reach the per-message events.
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(io::stderr)
                .with_ansi(io::stderr().is_terminal())
                .with_target(false),
        )
        .with(filter);
    let _ = tracing::subscriber::set_global_default(subscriber);
}
