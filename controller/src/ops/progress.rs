//! Progress of a long batch command on stderr: one line redrawn in place on a terminal,
//! plain lines at most every few seconds elsewhere (a log or CI keeps every line).
//!
//! A dozen lines instead of a progress-bar crate: the commands need a counter, a bar and a
//! rate, nothing a dependency would add.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a terminal line is redrawn.
const TERMINAL_EVERY: Duration = Duration::from_millis(100);
/// How often a plain line is written.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// Width of the bar, in characters.
const BAR_WIDTH: usize = 30;

/// A progress display; `None` total means the count is not known in advance.
pub struct Progress {
    label: &'static str,
    terminal: bool,
    started: Instant,
    last_drawn: Option<Instant>,
    last_done: Option<u64>,
    out: Box<dyn Write + Send>,
}

impl Progress {
    /// Progress on stderr, redrawn in place when stderr is a terminal.
    pub fn stderr(label: &'static str) -> Progress {
        Progress::to_writer(
            label,
            std::io::stderr().is_terminal(),
            Box::new(std::io::stderr()),
        )
    }

    /// Progress on any writer (tests).
    pub fn to_writer(label: &'static str, terminal: bool, out: Box<dyn Write + Send>) -> Progress {
        Progress {
            label,
            terminal,
            started: Instant::now(),
            last_drawn: None,
            last_done: None,
            out,
        }
    }

    /// Shows `done` of `total` items with `detail`, unless a line was drawn just now.
    pub fn update(&mut self, done: u64, total: Option<u64>, detail: &str) {
        let every = if self.terminal {
            TERMINAL_EVERY
        } else {
            PLAIN_EVERY
        };
        let now = Instant::now();
        if self
            .last_drawn
            .is_some_and(|at| now.duration_since(at) < every)
        {
            return;
        }
        self.last_drawn = Some(now);
        self.draw(done, total, detail);
    }

    /// Shows the final state and ends the line; a plain line already showing it is not
    /// repeated.
    pub fn finish(&mut self, done: u64, total: Option<u64>, detail: &str) {
        if self.terminal {
            self.draw(done, total, detail);
            let _ = writeln!(self.out);
        } else if self.last_done != Some(done) {
            self.draw(done, total, detail);
        }
    }

    fn draw(&mut self, done: u64, total: Option<u64>, detail: &str) {
        self.last_done = Some(done);
        let line = line(self.label, done, total, self.started.elapsed(), detail);
        // Progress is a courtesy: a closed stderr must not stop the work.
        let _ = if self.terminal {
            write!(self.out, "\r\x1b[2K{line}")
        } else {
            writeln!(self.out, "{line}")
        };
        let _ = self.out.flush();
    }
}

/// The text of one progress line (pure).
pub fn line(label: &str, done: u64, total: Option<u64>, elapsed: Duration, detail: &str) -> String {
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    let head = match total {
        Some(total) if total > 0 => {
            let filled =
                usize::try_from(done.min(total) * BAR_WIDTH as u64 / total).unwrap_or(BAR_WIDTH);
            format!(
                "{label} [{}{}] {done}/{total}",
                "#".repeat(filled),
                "-".repeat(BAR_WIDTH - filled)
            )
        }
        _ => format!("{label} {done}"),
    };
    format!("{head} ({rate:.0}/s) {detail}")
        .trim_end()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_a_bar_when_the_total_is_known() {
        let text = line("queued", 15, Some(30), Duration::from_secs(3), "3 skipped");
        assert_eq!(
            text,
            format!(
                "queued [{}{}] 15/30 (5/s) 3 skipped",
                "#".repeat(15),
                "-".repeat(15)
            )
        );
        assert_eq!(
            line("listed", 7, None, Duration::from_secs(7), ""),
            "listed 7 (1/s)"
        );
        assert!(
            line("x", 50, Some(10), Duration::from_secs(1), "").contains(&"#".repeat(BAR_WIDTH))
        );
    }
}
