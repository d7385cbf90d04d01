//! `build`: from a build file to released artifacts. Draws the pipeline's events: indicatif
//! lines on a terminal (one per step, the current one with its own progress), nothing off a
//! terminal, plain lines with `--progress` (CI logs).

use super::{Outcome, ProgressMode, Ui, outln};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use isotool::build::{self, Event, Observer, Plan, RunOptions};
use isotool::context::BuildContext;
use isotool::error::Result;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  isotool build build.toml --dry-run                 # the plan: every step, inputs, outputs
  isotool build build.toml --force --progress        # plain progress lines (CI logs)
  isotool build build.toml --stop-after nocloud-seed
  isotool build build.toml --installed-disk disk.vhdx --json

Exit status: 0 built (artifacts and SHA256SUMS published), 1 error (named: file, key, line; an
interrupted or failed build publishes nothing), 2 bad command line, 130 interrupted.")]
pub(crate) struct BuildArgs {
    /// The build file (TOML).
    file: PathBuf,
    /// Print the plan (every step, its inputs and outputs) and stop; nothing is run or written.
    #[arg(long)]
    dry_run: bool,
    /// Replace the artifacts of an earlier build of the same name and version.
    #[arg(long)]
    force: bool,
    /// Stop after this step (e.g. nocloud-seed); the work directory keeps its files, nothing is
    /// published.
    #[arg(long, value_name = "STEP")]
    stop_after: Option<String>,
    /// Use this already installed disk (raw, VHD or VHDX, e.g. from a Hyper-V host) instead of the
    /// blank-disk and install steps.
    #[arg(long, value_name = "DISK")]
    installed_disk: Option<PathBuf>,
    /// Print the report as JSON on stdout (schema isotool/build/1, see docs/json.md).
    #[arg(long)]
    json: bool,
}

/// How events are drawn.
enum Mode {
    Bars(Mutex<Option<BarsState>>),
    Lines(Mutex<LinesState>),
    Hidden,
}

struct BarsState {
    _multi: MultiProgress,
    bars: Vec<ProgressBar>,
}

#[derive(Default)]
struct LinesState {
    n: usize,
    last_pct: u64,
    last_status: Option<Instant>,
}

fn style(t: &str) -> ProgressStyle {
    ProgressStyle::with_template(t).unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

impl Mode {
    fn bars_started(st: &Mutex<Option<BarsState>>, plan: &Plan) {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let n = plan.steps.len();
        let bars = plan
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let b = multi.add(ProgressBar::new(0));
                b.set_style(style("  {prefix} {msg}"));
                b.set_prefix(format!("[{:>2}/{n}]", i + 1));
                b.set_message(format!("{}  (waiting)", s.id));
                b
            })
            .collect();
        if let Ok(mut g) = st.lock() {
            *g = Some(BarsState {
                _multi: multi,
                bars,
            });
        }
    }

    fn bars(st: &Mutex<Option<BarsState>>, e: &Event<'_>) {
        if let Event::Started(plan) = e {
            return Self::bars_started(st, plan);
        }
        let Ok(g) = st.lock() else { return };
        let Some(s) = g.as_ref() else { return };
        match e {
            Event::StepStarted { index, step } => {
                let b = &s.bars[*index];
                b.set_style(style("> {prefix} {msg} {spinner} {elapsed}"));
                b.set_message(step.id.clone());
                b.enable_steady_tick(Duration::from_millis(200));
            }
            Event::StepProgress { index, done, total } => {
                let b = &s.bars[*index];
                if *total > 0 && b.length() != Some(*total) {
                    b.set_style(
                        style("> {prefix} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                            .progress_chars("=> "),
                    );
                    b.set_length(*total);
                }
                b.set_position(*done);
            }
            Event::StepStatus { index, line } => {
                let b = &s.bars[*index];
                b.set_message(format!(
                    "{}: {line}",
                    b.message().split(':').next().unwrap_or("")
                ));
            }
            Event::Note { index, message } => {
                s.bars[*index].suspend(|| eprintln!("note: {message}"))
            }
            Event::StepFinished {
                index,
                step,
                elapsed,
            } => {
                let b = &s.bars[*index];
                b.disable_steady_tick();
                b.set_style(style("  {prefix} {msg}"));
                b.finish_with_message(format!("{}  done in {}", step.id, secs(*elapsed)));
            }
            Event::Started(_) => {}
        }
    }

    fn lines(st: &Mutex<LinesState>, e: &Event<'_>) {
        let Ok(mut s) = st.lock() else { return };
        match e {
            Event::Started(plan) => {
                s.n = plan.steps.len();
                eprintln!(
                    "build {} {}: {} steps",
                    plan.spec.name, plan.spec.version, s.n
                );
            }
            Event::StepStarted { index, step } => {
                s.last_pct = 0;
                s.last_status = None;
                eprintln!("[{}/{}] {}: {}", index + 1, s.n, step.id, step.what);
            }
            Event::StepProgress { index, done, total } if *total > 0 => {
                let pct = done * 100 / total;
                if pct >= s.last_pct + 25 {
                    s.last_pct = pct - pct % 25;
                    eprintln!("[{}/{}] {}%", index + 1, s.n, s.last_pct);
                }
            }
            Event::StepProgress { .. } => {}
            Event::StepStatus { index, line } => {
                if s.last_status
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
                {
                    s.last_status = Some(Instant::now());
                    eprintln!("[{}/{}] {line}", index + 1, s.n);
                }
            }
            Event::Note { message, .. } => eprintln!("note: {message}"),
            Event::StepFinished {
                index,
                step,
                elapsed,
            } => {
                eprintln!(
                    "[{}/{}] {}: done in {}",
                    index + 1,
                    s.n,
                    step.id,
                    secs(*elapsed)
                );
            }
        }
    }
}

impl Observer for Mode {
    fn event(&self, e: &Event<'_>) {
        match self {
            Mode::Bars(st) => Self::bars(st, e),
            Mode::Lines(st) => Self::lines(st, e),
            Mode::Hidden => {}
        }
    }
}

pub(crate) fn build(a: BuildArgs, ui: Ui) -> Result<Outcome> {
    super::refuse_dash(&a.file, "the build file")?;
    let spec = build::load(&a.file)?;
    let plan = Plan::new(spec, a.installed_disk.clone());
    let opts = RunOptions {
        force: a.force,
        stop_after: a.stop_after.clone(),
    };
    if a.dry_run {
        build::pipeline::preflight(&plan, &opts)?;
        super::stdout_write(format_args!("{plan}"));
        return Ok(Outcome::Ok);
    }
    let ctx = BuildContext::from_env()?;
    let mode = match ui.hiding_bars(a.json).progress() {
        ProgressMode::None => Mode::Hidden,
        ProgressMode::Plain => Mode::Lines(Mutex::new(LinesState::default())),
        ProgressMode::Auto => Mode::Bars(Mutex::new(None)),
    };
    let t = Instant::now();
    let report = build::run(&plan, &opts, &ctx, &mode)?;
    let rss = peak_rss_kib();
    if a.json {
        return super::print_json(&super::json::Build {
            schema: "isotool/build/1",
            report: &report,
            peak_rss_kib: rss,
        })
        .map(|_| Outcome::Ok);
    }
    for st in &report.steps {
        outln!("step {:<22} {:>9.2}s", st.step, st.seconds);
    }
    outln!("total {:>29.2}s", t.elapsed().as_secs_f64());
    if let Some(k) = rss {
        outln!(
            "peak RSS of isotool: {:.1} MiB (the VM not counted)",
            k as f64 / 1024.0
        );
    }
    if let Some(s) = &report.stopped_after {
        outln!(
            "stopped after {s}; intermediate files in {}",
            report.work.display()
        );
    }
    for art in &report.artifacts {
        outln!(
            "{}  {} ({})",
            art.sha256,
            art.path.display(),
            super::human_bytes(art.size)
        );
    }
    Ok(Outcome::Ok)
}

/// This process's peak resident set (VmHWM), in KiB: the VM is a separate process and does not
/// count (GNU time's %M would report the largest of isotool and the qemu it waited for).
fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
