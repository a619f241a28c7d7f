//! The console: log lines to stdout and `jepsen.log`, and the live progress line on stderr.
//!
//! The progress line (indicatif) is drawn only when stderr is a terminal and `--no-progress`
//! is absent; log lines are printed above it.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the run's log goes.
pub struct Console {
    file: Mutex<Option<File>>,
    bar: ProgressBar,
}

impl Console {
    /// A console; `progress` enables the live line (it still stays hidden off a terminal).
    pub fn new(progress: bool) -> Console {
        let target = if progress {
            ProgressDrawTarget::stderr_with_hz(4)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(ProgressStyle::with_template("{msg}").expect("static template"));
        Console {
            file: Mutex::new(None),
            bar,
        }
    }

    /// Starts copying every log line to `path` (the test's `jepsen.log`).
    pub fn log_to(&self, path: &std::path::Path) -> std::io::Result<()> {
        *self.file.lock().expect("console lock") = Some(File::create(path)?);
        Ok(())
    }

    fn line(&self, level: &str, msg: &str) {
        let line = format!("{} {level:<5} {msg}", clock());
        // A closed stdout (`maelstrom test … | head`) must not panic the run.
        self.bar.suspend(|| {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        });
        if let Some(f) = self.file.lock().expect("console lock").as_mut() {
            let _ = writeln!(f, "{line}");
        }
    }

    /// Logs at INFO.
    pub fn info(&self, msg: impl AsRef<str>) {
        self.line("INFO", msg.as_ref());
    }

    /// Logs at WARN.
    pub fn warn(&self, msg: impl AsRef<str>) {
        self.line("WARN", msg.as_ref());
    }

    /// Prints to stdout only (results and banner), above the progress line.
    pub fn print(&self, text: &str) {
        self.bar.suspend(|| {
            let _ = writeln!(std::io::stdout().lock(), "{text}");
        });
        if let Some(f) = self.file.lock().expect("console lock").as_mut() {
            let _ = writeln!(f, "{text}");
        }
    }

    /// Replaces the progress line.
    pub fn progress(&self, msg: String) {
        self.bar.set_message(msg);
        self.bar.tick();
    }

    /// Erases the progress line for good (before results and banner).
    pub fn finish_progress(&self) {
        self.bar.finish_and_clear();
    }
}

/// Wall-clock time of day, UTC, for log lines.
fn clock() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let s = now.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        now.subsec_millis()
    )
}
