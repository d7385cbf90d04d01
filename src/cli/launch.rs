//! `launch qemu`, `launch hyperv` (`launch azure` lives in `azure.rs`): boot the artifacts and
//! wait for the guest to power off.

use super::{Outcome, ProgressMode, Ui, outln, print_json};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use isotool::error::Result;
use isotool::launch::hyperv::{self, HypervConfig};
use isotool::launch::{
    self, Accel, DiskSpec, Firmware, LaunchEvent, LaunchOutcome, Machine, QemuConfig,
};
use isotool::output::{AtomicOutput, OutputOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub(crate) enum LaunchCommand {
    /// Boot in qemu (BIOS, UEFI or UEFI with Secure Boot) and wait for the guest to power off.
    Qemu(QemuArgs),
    /// Write (and where PowerShell with Hyper-V exists, run) the PowerShell for a Gen 2 VM.
    Hyperv(HypervArgs),
    /// Create an Azure VM from an image (`azure image create`) with the config tree's Azure
    /// custom data, a NIC, a public IP and an SSH rule; wait until it runs.
    Azure(Box<super::azure::LaunchArgs>),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FirmwareArg {
    Bios,
    Uefi,
    UefiSecure,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MachineArg {
    Q35,
    Pc,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  isotool launch qemu --iso unattended.iso --cdrom provision.iso --disk disk.raw --firmware uefi
  isotool launch qemu --iso unattended.iso --disk disk.vhdx --timeout 30m --serial-log serial.txt
  isotool launch qemu --iso x.iso --firmware uefi-secure --dry-run     # print the qemu command

Exit status: 0 the guest powered itself off (QMP guest-shutdown), 1 anything else (a reboot, a
panic, the timeout, qemu failing: named, with the serial log's tail), 2 bad command line,
130 interrupted (qemu is killed).")]
pub(crate) struct QemuArgs {
    /// Installer ISO (first CD drive, boots first).
    #[arg(long)]
    iso: Option<PathBuf>,
    /// Another CD drive (provisioning DVD, NoCloud seed); repeatable.
    #[arg(long = "cdrom", value_name = "ISO")]
    cdroms: Vec<PathBuf>,
    /// A writable disk (raw, VHD, VHDX or qcow2, recognised from its content); repeatable.
    #[arg(long = "disk", value_name = "IMAGE")]
    disks: Vec<PathBuf>,
    /// Firmware: SeaBIOS, OVMF, or OVMF with Secure Boot and Microsoft's keys.
    #[arg(long, value_enum, default_value = "bios")]
    firmware: FirmwareArg,
    /// Machine type.
    #[arg(long, value_enum, default_value = "q35")]
    machine: MachineArg,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 1024)]
    memory: u32,
    /// Virtual CPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u32,
    /// Time the guest has to power off: seconds, or with units (90s, 30m, 2h, 1h30m).
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    timeout: Duration,
    /// Keep the serial console log in FILE.
    #[arg(long, value_name = "FILE")]
    serial_log: Option<PathBuf>,
    /// Accelerator: auto (a short probe boot decides), kvm or tcg.
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelArg,
    /// qemu binary.
    #[arg(long, env = "ISOTOOL_QEMU", default_value = launch::DEFAULT_QEMU)]
    qemu: PathBuf,
    /// Directory of the OVMF firmware files.
    #[arg(long, env = "ISOTOOL_OVMF_DIR", default_value = launch::DEFAULT_OVMF_DIR)]
    ovmf_dir: PathBuf,
    /// Print the qemu command line and exit.
    #[arg(long)]
    dry_run: bool,
    /// Print the result as JSON (schema isotool/launch-qemu/1, see docs/json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  isotool launch hyperv --vhdx D:\\vm\\disk.vhdx --iso D:\\iso\\unattended.iso --name web --emit-script launch.ps1
  isotool launch hyperv --vhdx disk.vhdx --iso u.iso --cdrom p.iso --name web --emit-script -

Exit status: 0 written (or run and the VM is off), 1 error, 2 bad command line.")]
pub(crate) struct HypervArgs {
    /// The VHDX the installer writes to (a path on the Hyper-V host).
    #[arg(long)]
    vhdx: String,
    /// The installer ISO (boots first).
    #[arg(long)]
    iso: String,
    /// Another DVD (provisioning DVD); repeatable.
    #[arg(long = "cdrom", value_name = "ISO")]
    cdroms: Vec<String>,
    /// VM name.
    #[arg(long)]
    name: String,
    /// Startup memory in MiB.
    #[arg(long, default_value_t = 2048)]
    memory: u32,
    /// Virtual processors.
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Virtual switch to connect.
    #[arg(long)]
    switch: Option<String>,
    /// Time the guest has to power off: seconds, or with units (90s, 30m, 2h, 1h30m).
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    timeout: Duration,
    /// Write the script to FILE (`-`: stdout) instead of running it.
    #[arg(long, value_name = "FILE")]
    emit_script: Option<PathBuf>,
    /// Replace an existing script file.
    #[arg(long)]
    force: bool,
    /// Print the result as JSON (schema `isotool/launch-hyperv/1`, docs/json.md).
    #[arg(long)]
    json: bool,
}

/// Seconds, or a duration as the humantime crate reads it (`90s`, `30m`, `2h`, `1h30m`,
/// `1day`...); positive.
fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let d = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(s.parse().map_err(|_| format!("{s:?}: too long"))?)
    } else {
        humantime::parse_duration(s)
            .map_err(|e| format!("{s:?}: {e} (seconds, or with units: 90s, 30m, 2h, 1h30m)"))?
    };
    if d.is_zero() {
        return Err("the timeout must be positive".into());
    }
    Ok(d)
}

pub(crate) fn launch(c: LaunchCommand, ui: Ui) -> Result<Outcome> {
    match c {
        LaunchCommand::Qemu(a) => qemu(a, ui),
        LaunchCommand::Hyperv(a) => hyperv(a, ui),
        LaunchCommand::Azure(a) => super::azure::launch(*a, ui.quiet),
    }
}

fn qemu_config(a: &QemuArgs) -> Result<QemuConfig> {
    let disks = a
        .disks
        .iter()
        .map(|d| DiskSpec::probe(d))
        .collect::<Result<Vec<_>>>()?;
    Ok(QemuConfig {
        qemu: a.qemu.clone(),
        ovmf_dir: a.ovmf_dir.clone(),
        iso: a.iso.clone(),
        cdroms: a.cdroms.clone(),
        disks,
        firmware: match a.firmware {
            FirmwareArg::Bios => Firmware::Bios,
            FirmwareArg::Uefi => Firmware::Uefi,
            FirmwareArg::UefiSecure => Firmware::UefiSecure,
        },
        machine: match a.machine {
            MachineArg::Q35 => Machine::Q35,
            MachineArg::Pc => Machine::Pc,
        },
        memory_mib: a.memory,
        cpus: a.cpus,
        timeout: a.timeout,
        serial_log: a.serial_log.clone(),
        accel: match a.accel {
            AccelArg::Auto => Accel::Auto,
            AccelArg::Kvm => Accel::Kvm,
            AccelArg::Tcg => Accel::Tcg,
        },
    })
}

fn qemu(a: QemuArgs, ui: Ui) -> Result<Outcome> {
    let quiet = ui.quiet;
    // The CD images are handed to qemu as they are: check them here, --dry-run too.
    for iso in a.iso.iter().chain(&a.cdroms) {
        super::require_file(iso, "the ISO")?;
    }
    let cfg = qemu_config(&a)?;
    if a.dry_run {
        let argv = launch::dry_run_command_line(&cfg)?;
        if cfg.accel == Accel::Auto && !quiet {
            eprintln!("note: --accel auto: a probe boot picks kvm or tcg at run time");
        }
        outln!("{}", shell_words(&argv));
        return Ok(Outcome::Ok);
    }
    let cancel = AtomicBool::new(false);
    let mode = ui.hiding_bars(a.json).progress();
    let mut view = RunView::new(
        quiet || mode == ProgressMode::None,
        mode == ProgressMode::Plain,
    );
    let result = launch::run(&cfg, &cancel, &mut |e| view.show(&e));
    view.finish();
    let out = result?;
    report(&out, a.json, quiet)
}

fn report(out: &LaunchOutcome, json: bool, quiet: bool) -> Result<Outcome> {
    if json {
        print_json(&super::json::LaunchQemu {
            schema: "isotool/launch-qemu/1",
            result: "guest-shutdown",
            elapsed_seconds: out.elapsed.as_secs_f64(),
            accel: out.accel.qemu_name(),
            serial_log: out.serial_log.as_ref().map(|p| p.display().to_string()),
        })?;
    } else if !quiet {
        eprintln!(
            "isotool: the guest powered off after {:.1} s ({})",
            out.elapsed.as_secs_f64(),
            out.accel.qemu_name()
        );
    }
    Ok(Outcome::Ok)
}

/// The command line as a shell would take it back (single-quoted where needed).
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=,:@%+".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Draws a run: a spinner with the elapsed time and the serial console's last line on a
/// terminal; plain lines with `--progress`; nothing with `--quiet`.
struct RunView {
    bar: Option<ProgressBar>,
    plain: bool,
    quiet: bool,
    last_plain: Option<(Duration, Option<String>)>,
}

impl RunView {
    fn new(quiet: bool, plain: bool) -> RunView {
        let bar = (!quiet && !plain).then(|| {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            pb.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            pb
        });
        RunView {
            bar,
            plain,
            quiet,
            last_plain: None,
        }
    }

    fn note(&self, msg: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(pb) => pb.suspend(|| eprintln!("launch: {msg}")),
            None => eprintln!("launch: {msg}"),
        }
    }

    fn show(&mut self, e: &LaunchEvent) {
        match e {
            LaunchEvent::Probing => self.note("probing KVM with a short boot"),
            LaunchEvent::AccelChosen { accel, reason } => {
                self.note(&format!("accelerator {} ({reason})", accel.qemu_name()))
            }
            LaunchEvent::Started { pid, .. } => self.note(&format!("qemu started (pid {pid})")),
            LaunchEvent::Qmp { elapsed, name } => {
                self.note(&format!("{:.0} s: QMP event {name}", elapsed.as_secs_f64()))
            }
            LaunchEvent::Tick {
                elapsed,
                last_serial_line,
            } => self.tick(*elapsed, last_serial_line.as_deref()),
        }
    }

    fn tick(&mut self, elapsed: Duration, line: Option<&str>) {
        if let Some(pb) = &self.bar {
            pb.set_message(line.unwrap_or("(no serial output yet)").to_string());
            pb.tick();
        } else if self.plain && !self.quiet {
            // A line when the console moved, or every 30 s.
            let changed = self.last_plain.as_ref().is_none_or(|(t, l)| {
                l.as_deref() != line || elapsed - *t >= Duration::from_secs(30)
            });
            if changed {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(
                    err,
                    "launch: {:>6.0} s | {}",
                    elapsed.as_secs_f64(),
                    line.unwrap_or("")
                );
                self.last_plain = Some((elapsed, line.map(str::to_string)));
            }
        }
    }

    fn finish(&self) {
        if let Some(pb) = &self.bar {
            pb.finish_and_clear();
        }
    }
}

fn hyperv(a: HypervArgs, ui: Ui) -> Result<Outcome> {
    let cfg = HypervConfig {
        name: a.name,
        vhdx: a.vhdx,
        iso: a.iso,
        cdroms: a.cdroms,
        memory_mib: a.memory,
        cpus: a.cpus,
        switch: a.switch,
        timeout: a.timeout,
    };
    let script = hyperv::script(&cfg)?;
    let to_stdout = a.emit_script.as_deref() == Some(std::path::Path::new("-"));
    if to_stdout && a.json {
        return Err(isotool::err!(
            InvalidArgument,
            "--json and --emit-script - both write to stdout: give the script a file name"
        ));
    }
    if to_stdout {
        super::stdout_write(format_args!("{script}"));
        return Ok(Outcome::Ok);
    }
    let (written, output) = match &a.emit_script {
        Some(path) => (Some(write_script(path, &script, a.force)?), None),
        None => {
            let ps = hyperv::find_powershell().ok_or_else(hyperv::no_powershell_error)?;
            let dir = launch::RunDir::create("hyperv")?;
            let file = dir.path().join("launch.ps1");
            std::fs::write(&file, &script)
                .map_err(|e| isotool::Error::io(e, "writing the script").with_path(&file))?;
            (None, Some(hyperv::run_script(&ps, &file)?))
        }
    };
    if a.json {
        super::print_json(&super::json::LaunchHyperv {
            schema: "isotool/launch-hyperv/1",
            name: &cfg.name,
            script: written.as_ref().map(|p| p.display().to_string()),
            ran: output.is_some(),
            powershell_output: output.as_deref(),
        })?;
    } else if ui.quiet {
    } else if let Some(w) = &written {
        super::outln!("wrote {}", w.display());
    } else if let Some(out) = &output {
        eprint!("{out}");
    }
    Ok(Outcome::Ok)
}

/// Writes the Hyper-V script to `path` (mode 0644: it carries no secret).
fn write_script(path: &std::path::Path, script: &str, force: bool) -> Result<PathBuf> {
    let o = AtomicOutput::create(path, &[], OutputOptions::new(force, 0o644))?;
    o.file()
        .write_all(script.as_bytes())
        .map_err(|e| isotool::Error::io(e, "writing the script").with_path(o.tmp_path()))?;
    o.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let secs = |s: &str| parse_duration(s).map(|d| d.as_secs_f64());
        for (text, want) in [
            ("90", 90.0),
            ("90s", 90.0),
            ("30m", 1800.0),
            ("2h", 7200.0),
            ("1h30m", 5400.0),
            ("1h 30m", 5400.0),
            ("2d", 172_800.0),
            ("500ms", 0.5),
            ("10min", 600.0),
            ("1.5h", 5400.0),
        ] {
            assert_eq!(secs(text), Ok(want), "{text:?}");
        }
        for bad in [
            "",
            "0",
            "0s",
            "h",
            "-1",
            "5x",
            "5 parsecs",
            "99999999999999999999h",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(
                e.contains(&format!("{bad:?}")) || e.contains("positive"),
                "{bad:?}: {e}"
            );
        }
        // through clap: the option is named
        let e = <crate::cli::Cli as clap::Parser>::try_parse_from([
            "isotool",
            "launch",
            "qemu",
            "--timeout",
            "5x",
        ])
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("--timeout"), "{e}");
    }

    #[test]
    fn shell_words_quote_what_a_shell_would_split() {
        let argv = vec![
            "qemu".to_string(),
            "a b".into(),
            "it's".into(),
            "x=1,y".into(),
        ];
        assert_eq!(shell_words(&argv), r"qemu 'a b' 'it'\''s' x=1,y");
    }
}
