//! What the user sees while a split is extracted.
//!
//! On a terminal: an indicatif bar with images/s and the ETA. Elsewhere (a
//! log file, CI, a Slurm job): one plain line every [`PLAIN_EVERY`], since a
//! redrawn bar would fill a log with control characters. `--quiet` shows
//! nothing. Rates count images actually encoded; reused ones are done
//! almost instantly and would make the ETA lie.
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Interval between plain progress lines.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

pub(crate) struct Progress {
    label: String,
    total: usize,
    done: usize,
    encoded: usize,
    start: Instant,
    last_line: Instant,
    mode: Mode,
}

enum Mode {
    Quiet,
    Plain,
    Bar(ProgressBar),
}

impl Progress {
    pub(crate) fn new(label: &str, total: usize, quiet: bool) -> Self {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            Mode::Bar(bar)
        } else {
            Mode::Plain
        };
        let now = Instant::now();
        Progress {
            label: label.into(),
            total,
            done: 0,
            encoded: 0,
            start: now,
            last_line: now,
            mode,
        }
    }

    /// Encoded images per second so far (0 before any).
    pub(crate) fn rate(&self) -> f64 {
        let secs = self.start.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.encoded as f64 / secs
        } else {
            0.0
        }
    }

    /// `done` more images handled, `encoded` of them through the model.
    pub(crate) fn advance(&mut self, done: usize, encoded: usize) {
        self.done += done;
        self.encoded += encoded;
        let rate = self.rate();
        match &self.mode {
            Mode::Quiet => {}
            Mode::Bar(bar) => {
                bar.set_position(self.done as u64);
                bar.set_message(format!("{rate:.1} images/s"));
            }
            Mode::Plain => {
                if self.last_line.elapsed() >= PLAIN_EVERY && self.done < self.total {
                    self.last_line = Instant::now();
                    let eta = if rate > 0.0 {
                        format!(", ETA {}", clock((self.total - self.done) as f64 / rate))
                    } else {
                        String::new()
                    };
                    eprintln!(
                        "xfer extract: {}: {}/{} images ({:.0}%), {rate:.1} images/s{eta}",
                        self.label,
                        self.done,
                        self.total,
                        100.0 * self.done as f64 / self.total.max(1) as f64
                    );
                }
            }
        }
    }

    /// Removes the bar (the summary line follows).
    pub(crate) fn finish(self) {
        if let Mode::Bar(bar) = self.mode {
            bar.finish_and_clear();
        }
    }
}

/// Seconds as `m:ss` or `h:mm:ss`.
pub(crate) fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_format() {
        assert_eq!(clock(0.4), "0:00");
        assert_eq!(clock(61.0), "1:01");
        assert_eq!(clock(3725.0), "1:02:05");
    }

    #[test]
    fn quiet_progress_counts() {
        let mut p = Progress::new("train", 10, true);
        p.advance(4, 3);
        assert_eq!((p.done, p.encoded), (4, 3));
        p.finish();
    }
}
