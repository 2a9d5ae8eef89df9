//! Progress reporting for long commands: a one-line bar with ETA on a terminal, plain lines
//! otherwise (logs, CI).

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    tty: bool,
    label: &'static str,
}

impl Progress {
    pub fn new(total: usize, label: &'static str) -> Self {
        Self { total, done: 0, started: Instant::now(), tty: std::io::stderr().is_terminal(), label }
    }

    /// One item finished; `what` describes it (shown on plain output).
    pub fn step(&mut self, what: &str) {
        self.done += 1;
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = self.done as f64 / elapsed.max(1e-9);
        let eta = (self.total.saturating_sub(self.done)) as f64 / rate.max(1e-9);
        if self.tty {
            let width = 30;
            let filled = (self.done * width).checked_div(self.total).unwrap_or(width);
            eprint!(
                "\r\x1b[2K{} [{}{}] {}/{} {:.1}/s ETA {}",
                self.label,
                "#".repeat(filled),
                "-".repeat(width - filled),
                self.done,
                self.total,
                rate,
                fmt_secs(eta)
            );
            let _ = std::io::stderr().flush();
        } else {
            // One line per image, whatever its name holds (a newline would split the log).
            eprintln!("[{}/{}] {}", self.done, self.total, camscope::render::printable(what));
        }
    }

    /// End the bar's line (terminal) so later output starts on a fresh line.
    pub fn finish(&self) {
        if self.tty && self.total > 0 {
            eprintln!();
        }
    }
}

fn fmt_secs(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 { format!("{}h{:02}m", s / 3600, (s % 3600) / 60) } else { format!("{}m{:02}s", s / 60, s % 60) }
}
