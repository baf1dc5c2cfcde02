//! How `isola pull` (and `isola run` of an image not yet stored) shows a pull: a bar
//! per blob (bytes, rate, ETA) on a terminal, a line per quarter of each blob when
//! stderr is not a terminal, nothing with `--quiet`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use isola_image::registry::PullEvent;

pub enum PullUi {
    Quiet,
    Lines { name: String, shown: Mutex<HashMap<String, u64>> },
    Bars { multi: MultiProgress, bars: Mutex<HashMap<String, ProgressBar>> },
}

/// The first 12 hex digits of a digest, as Docker shows layers.
fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

impl PullUi {
    pub fn new(name: &str, quiet: bool) -> Self {
        if quiet {
            PullUi::Quiet
        } else if std::io::stderr().is_terminal() {
            PullUi::Bars { multi: MultiProgress::new(), bars: Mutex::default() }
        } else {
            PullUi::Lines { name: name.to_string(), shown: Mutex::default() }
        }
    }

    pub fn event(&self, e: PullEvent<'_>) {
        match (self, e) {
            (PullUi::Quiet, _) => {}
            (PullUi::Lines { name, .. }, PullEvent::Step(s)) => eprintln!("{name}: {s}"),
            (PullUi::Lines { name, shown }, PullEvent::Blob { digest, have, size }) => {
                let pct = (have * 100).checked_div(size).unwrap_or(100).min(100);
                let mut shown = shown.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let last = shown.entry(digest.to_string()).or_insert(0);
                if pct >= *last + 25 || (pct == 100 && *last < 100) {
                    *last = pct;
                    eprintln!("{name}: {}: {pct}% of {size} bytes", short(digest));
                }
            }
            (PullUi::Bars { multi, .. }, PullEvent::Step(s)) => {
                let _ = multi.println(s);
            }
            (PullUi::Bars { multi, bars }, PullEvent::Blob { digest, have, size }) => {
                let mut bars = bars.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let bar = bars.entry(digest.to_string()).or_insert_with(|| {
                    let style = ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
                    let b = multi.add(ProgressBar::new(size).with_style(style));
                    b.set_prefix(short(digest).to_string());
                    b
                });
                bar.set_position(have);
                if have >= size {
                    bar.finish();
                }
            }
        }
    }
}

/// A benchmark's progress line: redrawn in place on a terminal; nothing at all when
/// stderr is redirected, so a log or a CI transcript gets no control codes.
pub struct BenchProgress<W: std::io::Write> {
    out: W,
    tty: bool,
    shown: bool,
}

impl BenchProgress<std::io::Stderr> {
    pub fn stderr() -> Self {
        let tty = std::io::stderr().is_terminal();
        BenchProgress { out: std::io::stderr(), tty, shown: false }
    }
}

impl<W: std::io::Write> BenchProgress<W> {
    pub fn show(&mut self, msg: &str) {
        if self.tty {
            let _ = write!(self.out, "\r\x1b[K{msg}");
            let _ = self.out.flush();
            self.shown = true;
        }
    }

    /// Ends the line, if one was drawn.
    pub fn done(mut self) {
        if self.shown {
            let _ = writeln!(self.out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_progress_draws_on_a_terminal_only() {
        let mut buf = Vec::new();
        let mut p = BenchProgress { out: &mut buf, tty: false, shown: false };
        p.show("round 1/10");
        p.done();
        assert!(buf.is_empty(), "redirected: no progress, no control codes");
        let mut p = BenchProgress { out: &mut buf, tty: true, shown: false };
        p.show("round 1/10");
        p.done();
        assert_eq!(String::from_utf8_lossy(&buf), "\r\x1b[Kround 1/10\n");
    }
}
