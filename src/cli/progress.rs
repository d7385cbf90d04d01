//! Draws the library's progress events on stderr: indicatif bars on a terminal (bytes done of
//! the total, rate, ETA; a spinner for phases of unknown length such as "syncing"), plain lines
//! every few seconds with `--progress=plain` (CI logs), nothing with `--quiet` or off a terminal.

use super::{ProgressMode, Ui, human_bytes};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use isotool::disk::Progress;
use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Seconds between two plain lines of one phase.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// A plain line is also printed each time another tenth of a known total is done (a fast job
/// still shows how it went in a CI log).
const PLAIN_STEPS: u64 = 10;

enum Draw {
    Bar,
    Plain,
    Hidden,
}

/// The phase being drawn.
struct Phase {
    name: String,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
    bar: Option<ProgressBar>,
}

/// A progress sink that draws one bar (or line) per phase.
pub struct Bars {
    draw: Draw,
    quiet: bool,
    phase: Mutex<Option<Phase>>,
}

impl Bars {
    /// Progress as `ui` says: bars on a terminal with `auto`, lines with `plain`.
    pub fn new(ui: Ui) -> Self {
        let draw = match ui.progress() {
            ProgressMode::Auto if std::io::stderr().is_terminal() => Draw::Bar,
            ProgressMode::Auto | ProgressMode::None => Draw::Hidden,
            ProgressMode::Plain => Draw::Plain,
        };
        Bars {
            draw,
            quiet: ui.quiet,
            phase: Mutex::new(None),
        }
    }

    fn bar(phase: &str, total: u64) -> ProgressBar {
        let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let t = if total > 0 {
            "{msg:>14} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
        } else {
            "{msg:>14} {spinner} {elapsed}"
        };
        pb.set_style(
            ProgressStyle::with_template(t)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_message(phase.to_string());
        // Redrawn even between events: the rate, ETA and spinner keep moving.
        pb.enable_steady_tick(Duration::from_millis(200));
        pb
    }

    fn line(p: &Phase) {
        let secs = p.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            p.done as f64 / secs
        } else {
            0.0
        };
        if p.total == 0 {
            eprintln!("{}: {:.0} s", p.name, secs);
            return;
        }
        let eta = if rate > 0.0 {
            format!("{:.0} s", (p.total.saturating_sub(p.done)) as f64 / rate)
        } else {
            "?".into()
        };
        eprintln!(
            "{}: {} / {} ({}%), {}/s, eta {eta}",
            p.name,
            human_bytes(p.done),
            human_bytes(p.total),
            p.done * 100 / p.total,
            human_bytes(rate as u64)
        );
    }
}

impl Progress for Bars {
    fn start(&self, phase: &str, total: u64) {
        self.finish();
        let bar = match self.draw {
            Draw::Hidden => return,
            Draw::Bar => Some(Self::bar(phase, total)),
            Draw::Plain => {
                match total {
                    0 => eprintln!("{phase}..."),
                    t => eprintln!("{phase}: {}", human_bytes(t)),
                }
                None
            }
        };
        let now = Instant::now();
        if let Ok(mut p) = self.phase.lock() {
            *p = Some(Phase {
                name: phase.to_string(),
                total,
                done: 0,
                started: now,
                last_line: now,
                bar,
            });
        }
    }

    fn advance(&self, n: u64) {
        let Ok(mut g) = self.phase.lock() else { return };
        let Some(p) = g.as_mut() else { return };
        let step = |d: u64| match p.total {
            0 => 0,
            t => d.min(t).saturating_mul(PLAIN_STEPS) / t,
        };
        let crossed = step(p.done + n) > step(p.done) && p.done + n < p.total;
        p.done += n;
        if let Some(pb) = &p.bar {
            pb.inc(n);
        } else if crossed || p.last_line.elapsed() >= PLAIN_EVERY {
            p.last_line = Instant::now();
            Self::line(p);
        }
    }

    fn note(&self, msg: &str) {
        if self.quiet {
            return;
        }
        let bar = self
            .phase
            .lock()
            .ok()
            .and_then(|g| g.as_ref().and_then(|p| p.bar.clone()));
        match bar {
            Some(pb) => pb.suspend(|| eprintln!("note: {msg}")),
            None => eprintln!("note: {msg}"),
        }
    }

    fn finish(&self) {
        let Some(p) = self.phase.lock().ok().and_then(|mut g| g.take()) else {
            return;
        };
        match &p.bar {
            Some(pb) => pb.finish_and_clear(),
            None if p.total == 0 => eprintln!(
                "{}: done in {:.1} s",
                p.name,
                p.started.elapsed().as_secs_f64()
            ),
            None => eprintln!(
                "{}: done, {} in {:.1} s",
                p.name,
                human_bytes(p.done),
                p.started.elapsed().as_secs_f64()
            ),
        }
    }
}
