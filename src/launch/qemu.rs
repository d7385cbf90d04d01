//! The qemu command line and a run: start qemu paused, attach QMP, let the guest run, and read
//! how it ended from QMP (`SHUTDOWN` reason, `GUEST_PANICKED`, `STOP` with an error state).

use super::accel::{self, AccelKind};
use super::firmware::{self, ResolvedFirmware};
use super::process::{RunDir, VmProcess, find_program};
use super::qmp::{Qmp, QmpEvent, RunEnd, classify};
use super::serial;
use super::{Accel, Firmware, LaunchEvent, LaunchOutcome, Machine, QemuConfig};
use crate::err;
use crate::error::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Files of one run that appear on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPaths {
    /// QMP unix socket.
    pub qmp_socket: PathBuf,
    /// Serial console log.
    pub serial_log: PathBuf,
    /// Writable copy of the OVMF VARS file (UEFI only).
    pub vars: Option<PathBuf>,
}

/// Escapes a value for qemu's `key=value,...` option syntax (a comma is written `,,`).
pub fn escape_opt(value: &str) -> String {
    value.replace(',', ",,")
}

fn path_opt(p: &Path) -> Result<String> {
    let s = p
        .to_str()
        .ok_or_else(|| err!(InvalidArgument, "path is not valid UTF-8").with_path(p))?;
    Ok(escape_opt(s))
}

/// Drive slots of a machine's IDE/AHCI controllers (`pc`: two IDE buses of two; `q35`: six
/// AHCI ports).
fn ide_slots(machine: Machine) -> usize {
    match machine {
        Machine::Pc => 4,
        Machine::Q35 => 6,
    }
}

/// Checks the parts of a config that do not need the file system.
pub fn check_config(cfg: &QemuConfig) -> Result<()> {
    if cfg.firmware == Firmware::UefiSecure && cfg.machine != Machine::Q35 {
        return Err(err!(
            InvalidArgument,
            "uefi-secure needs machine q35 (Secure Boot OVMF needs SMM)"
        ));
    }
    let drives = cfg.iso.iter().count() + cfg.cdroms.len() + cfg.disks.len();
    if drives == 0 {
        return Err(err!(
            InvalidArgument,
            "nothing to boot: give an ISO or a disk"
        ));
    }
    if drives > ide_slots(cfg.machine) {
        return Err(err!(
            LimitExceeded,
            "{drives} drives, but machine {} has {} drive slots",
            cfg.machine.qemu_name(),
            ide_slots(cfg.machine)
        ));
    }
    if cfg.memory_mib < 16 || cfg.cpus == 0 || cfg.cpus > 64 {
        return Err(err!(
            InvalidArgument,
            "memory must be at least 16 MiB and cpus 1..=64 (got {} MiB, {} cpus)",
            cfg.memory_mib,
            cfg.cpus
        ));
    }
    Ok(())
}

/// The full qemu command line (`argv[0]` is the qemu binary as configured).
pub fn command_line(
    cfg: &QemuConfig,
    fw: Option<&ResolvedFirmware>,
    accel: AccelKind,
    paths: &RunPaths,
) -> Result<Vec<String>> {
    check_config(cfg)?;
    let mut a: Vec<String> = vec![cfg.qemu.to_string_lossy().into_owned()];
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    let secure = fw.is_some_and(|f| f.secure);
    let machine = match (cfg.machine, secure) {
        (Machine::Q35, true) => "q35,smm=on".to_string(),
        (m, _) => m.qemu_name().to_string(),
    };
    push(&["-name", "isotool", "-machine", &machine]);
    push(&["-accel", accel.qemu_name()]);
    if accel == AccelKind::Kvm {
        push(&["-cpu", "host"]);
    }
    let (mem, cpus) = (cfg.memory_mib.to_string(), cfg.cpus.to_string());
    push(&["-m", &mem, "-smp", &cpus]);
    // No window, no monitor, no network; reboots end the run; a guest panic is reported (the
    // pvpanic device) and ends it too; the guest starts paused until QMP is attached.
    push(&["-display", "none", "-monitor", "none", "-parallel", "none"]);
    push(&["-nic", "none", "-no-reboot", "-action", "panic=shutdown"]);
    push(&["-device", "pvpanic", "-S"]);
    let qmp = format!(
        "socket,id=qmp,path={},server=on,wait=off",
        path_opt(&paths.qmp_socket)?
    );
    push(&["-chardev", &qmp, "-mon", "chardev=qmp,mode=control"]);
    let ser = format!("file,id=serial0,path={}", path_opt(&paths.serial_log)?);
    push(&["-chardev", &ser, "-serial", "chardev:serial0"]);
    a.extend(firmware_args(fw, paths)?);
    a.extend(drive_args(cfg)?);
    Ok(a)
}

fn firmware_args(fw: Option<&ResolvedFirmware>, paths: &RunPaths) -> Result<Vec<String>> {
    let Some(fw) = fw else {
        return Ok(Vec::new());
    };
    let vars = paths
        .vars
        .as_deref()
        .ok_or_else(|| err!(InvalidArgument, "UEFI run without a VARS copy"))?;
    let mut a = Vec::new();
    if fw.secure {
        a.push("-global".to_string());
        a.push("driver=cfi.pflash01,property=secure,value=on".to_string());
    }
    a.push("-drive".into());
    a.push(format!(
        "if=pflash,format=raw,unit=0,readonly=on,file={}",
        path_opt(&fw.code)?
    ));
    a.push("-drive".into());
    a.push(format!(
        "if=pflash,format=raw,unit=1,file={}",
        path_opt(vars)?
    ));
    Ok(a)
}

/// Where the `n`th drive goes: q35's AHCI has six ports of one unit each (`ide.0`..`ide.5`),
/// pc's PIIX two channels of two units. qemu does not spread drives over the buses by itself
/// ("bus supports only 1 units", "IDE unit 1 is in use"), so every drive names its place.
fn drive_slot(machine: Machine, n: usize) -> Result<String> {
    let (buses, units) = match machine {
        Machine::Q35 => (6, 1),
        Machine::Pc => (2, 2),
    };
    if n >= buses * units {
        return Err(crate::err!(
            InvalidArgument,
            "machine {} takes at most {} drives (installer ISO, disks and CDs together)",
            machine.qemu_name(),
            buses * units
        ));
    }
    Ok(format!("bus=ide.{},unit={}", n / units, n % units))
}

/// CD drives and disks: the installer ISO boots first, then the disks in order; the other CDs
/// (provisioning DVD, seed) are data only.
fn drive_args(cfg: &QemuConfig) -> Result<Vec<String>> {
    let mut a = Vec::new();
    let mut boot = 0;
    let mut cd = 0;
    let mut slot = 0;
    let machine = cfg.machine;
    let mut add_cd = |a: &mut Vec<String>,
                      slot: &mut usize,
                      path: &Path,
                      bootindex: Option<u32>|
     -> Result<()> {
        a.push("-drive".into());
        a.push(format!(
            "if=none,id=cd{cd},media=cdrom,format=raw,readonly=on,file={}",
            path_opt(path)?
        ));
        let place = drive_slot(machine, *slot)?;
        *slot += 1;
        a.push("-device".into());
        a.push(match bootindex {
            Some(b) => format!("ide-cd,drive=cd{cd},{place},bootindex={b}"),
            None => format!("ide-cd,drive=cd{cd},{place}"),
        });
        cd += 1;
        Ok(())
    };
    if let Some(iso) = &cfg.iso {
        add_cd(&mut a, &mut slot, iso, Some(boot))?;
        boot += 1;
    }
    for (i, d) in cfg.disks.iter().enumerate() {
        a.push("-drive".into());
        a.push(format!(
            "if=none,id=disk{i},format={},file={}",
            d.format.qemu_name(),
            path_opt(&d.path)?
        ));
        let place = drive_slot(machine, slot)?;
        slot += 1;
        a.push("-device".into());
        a.push(format!("ide-hd,drive=disk{i},{place},bootindex={boot}"));
        boot += 1;
    }
    for c in &cfg.cdroms {
        add_cd(&mut a, &mut slot, c, None)?;
    }
    Ok(a)
}

/// The command line `run` would use, without running anything: run files are shown under
/// `$RUN/`, and `--accel auto` as the cached probe answer, else `tcg` (the probe runs only
/// when a VM does). Checks the firmware files exist.
pub fn dry_run_command_line(cfg: &QemuConfig) -> Result<Vec<String>> {
    let fw = firmware::resolve(cfg.firmware, &cfg.ovmf_dir)?;
    let accel = match cfg.accel {
        Accel::Kvm => AccelKind::Kvm,
        Accel::Tcg => AccelKind::Tcg,
        Accel::Auto => accel::cached().map_or(AccelKind::Tcg, |p| p.accel),
    };
    let run = Path::new("$RUN");
    let paths = RunPaths {
        qmp_socket: run.join("qmp.sock"),
        serial_log: cfg
            .serial_log
            .clone()
            .unwrap_or_else(|| run.join("serial.log")),
        vars: fw.as_ref().map(|_| run.join("OVMF_VARS.fd")),
    };
    command_line(cfg, fw.as_ref(), accel, &paths)
}

/// Checks the inputs exist (so a typo is not a qemu error deep in its stderr).
fn check_inputs(cfg: &QemuConfig) -> Result<()> {
    let files = cfg
        .iso
        .iter()
        .chain(cfg.cdroms.iter())
        .chain(cfg.disks.iter().map(|d| &d.path));
    for f in files {
        if !f.is_file() {
            return Err(err!(NotFound, "VM input does not exist or is not a file").with_path(f));
        }
    }
    Ok(())
}

fn choose_accel(cfg: &QemuConfig, on_event: &mut dyn FnMut(LaunchEvent)) -> Result<AccelKind> {
    let (accel, reason) = match cfg.accel {
        Accel::Kvm => (AccelKind::Kvm, "--accel kvm".to_string()),
        Accel::Tcg => (AccelKind::Tcg, "--accel tcg".to_string()),
        Accel::Auto => {
            if accel::cached().is_none() {
                on_event(LaunchEvent::Probing);
            }
            let p = accel::probe(&cfg.qemu)?;
            (p.accel, p.reason)
        }
    };
    on_event(LaunchEvent::AccelChosen { accel, reason });
    Ok(accel)
}

/// Boots the VM and waits for the guest to power off.
///
/// Success only on QMP `SHUTDOWN` with reason `guest-shutdown`. A reset, a panic, the timeout,
/// `cancel` turning true, qemu dying or stopping are errors ([`ErrorKind::GuestReset`],
/// [`ErrorKind::GuestPanic`], [`ErrorKind::Timeout`], [`ErrorKind::Cancelled`],
/// [`ErrorKind::VmDied`]) whose message ends with the tail of the serial log. qemu is killed
/// on every way out.
pub fn run(
    cfg: &QemuConfig,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(LaunchEvent),
) -> Result<LaunchOutcome> {
    check_config(cfg)?;
    let qemu = find_program(&cfg.qemu)?;
    let fw = firmware::resolve(cfg.firmware, &cfg.ovmf_dir)?;
    check_inputs(cfg)?;
    let accel = choose_accel(cfg, on_event)?;
    let dir = RunDir::create("launch")?;
    let paths = RunPaths {
        qmp_socket: dir.path().join("qmp.sock"),
        serial_log: cfg
            .serial_log
            .clone()
            .unwrap_or_else(|| dir.path().join("serial.log")),
        vars: fw.as_ref().map(|f| f.copy_vars(dir.path())).transpose()?,
    };
    let mut argv = command_line(cfg, fw.as_ref(), accel, &paths)?;
    argv[0] = qemu.to_string_lossy().into_owned();
    let stderr = dir.path().join("qemu.stderr");
    let vm = VmProcess::spawn(&argv, &stderr)?;
    on_event(LaunchEvent::Started {
        pid: vm.pid(),
        command: argv,
    });
    let mut session = Session {
        vm,
        start: Instant::now(),
        paths: &paths,
        stderr: &stderr,
        timeout: cfg.timeout,
    };
    let result = session.watch(cancel, on_event);
    session.vm.kill();
    let elapsed = result?;
    let text = serial::read_tail(&paths.serial_log);
    Ok(LaunchOutcome {
        elapsed,
        accel,
        serial_log: cfg.serial_log.clone(),
        serial_tail: serial::last_lines(&text, serial::ERROR_TAIL_LINES),
    })
}

/// One running VM being watched.
struct Session<'a> {
    vm: VmProcess,
    start: Instant,
    paths: &'a RunPaths,
    stderr: &'a Path,
    timeout: Duration,
}

/// How often the caller hears from a run.
const TICK: Duration = Duration::from_millis(500);
/// How long qemu may take to open its QMP socket.
const QMP_CONNECT_LIMIT: Duration = Duration::from_secs(30);
/// How long qemu may take to exit after the guest powered off.
const EXIT_LIMIT: Duration = Duration::from_secs(10);
/// How long a dying qemu may take to exit before its stderr is read.
const DIED_WAIT: Duration = Duration::from_secs(2);

impl Session<'_> {
    /// Watches until the run ends; the elapsed time on a guest power-off.
    fn watch(
        &mut self,
        cancel: &AtomicBool,
        on_event: &mut dyn FnMut(LaunchEvent),
    ) -> Result<Duration> {
        let mut qmp = self.connect()?;
        qmp.execute("cont", None)
            .map_err(|e| self.died(&format!("could not start the guest: {e}")))?;
        let mut last_tick = Instant::now();
        loop {
            let next = qmp.next_event(Duration::from_millis(100));
            if let Some(ev) = next.map_err(|e| self.died(&e.to_string()))?
                && let Some(end) = self.on_qmp_event(&mut qmp, &ev, on_event)?
            {
                return self.finish(end);
            }
            if cancel.load(Ordering::SeqCst) {
                return Err(self.failure(ErrorKind::Cancelled, "cancelled; the VM was killed"));
            }
            if self.start.elapsed() >= self.timeout {
                let msg = format!(
                    "the guest did not power off within {} s; the VM was killed",
                    self.timeout.as_secs()
                );
                return Err(self.failure(ErrorKind::Timeout, &msg));
            }
            let text = serial::read_tail(&self.paths.serial_log);
            if let Some(p) = serial::finished_kernel_panic(&text) {
                return Err(self.failure(ErrorKind::GuestPanic, &format!("guest {p}")));
            }
            if qmp.is_closed() || self.vm.try_wait()?.is_some() {
                return Err(self.died("qemu exited without the guest powering off"));
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                on_event(LaunchEvent::Tick {
                    elapsed: self.start.elapsed(),
                    last_serial_line: serial::last_line(&text),
                });
            }
        }
    }

    fn connect(&mut self) -> Result<Qmp> {
        let Session {
            vm, paths, stderr, ..
        } = self;
        let stderr: &Path = stderr;
        let mut alive = || match vm.try_wait()? {
            None => Ok(()),
            Some(status) => Err(err!(
                VmDied,
                "qemu exited ({status}) before opening QMP: {}",
                stderr_tail(stderr)
            )),
        };
        let connected = Qmp::connect(&paths.qmp_socket, QMP_CONNECT_LIMIT, &mut alive);
        match connected {
            Err(e) if e.kind() != ErrorKind::VmDied => {
                // qemu accepted the socket then went away (a bad option it reports only after
                // opening QMP): its stderr says why.
                Err(self.died(&e.to_string()))
            }
            other => other,
        }
    }

    /// What an event means: `Some` when the run is over.
    fn on_qmp_event(
        &mut self,
        qmp: &mut Qmp,
        ev: &QmpEvent,
        on_event: &mut dyn FnMut(LaunchEvent),
    ) -> Result<Option<RunEnd>> {
        if let Some(end) = classify(ev) {
            return Ok(Some(end));
        }
        on_event(LaunchEvent::Qmp {
            elapsed: self.start.elapsed(),
            name: ev.name.clone(),
        });
        if ev.name == "STOP" {
            // A stop nobody asked for: KVM internal error, disk I/O error, ...
            let status = qmp
                .execute("query-status", None)
                .ok()
                .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_string))
                .unwrap_or_else(|| "unknown".into());
            if status != "running" && status != "shutdown" {
                let msg = format!("the VM stopped (status {status})");
                return Err(self.died(&msg));
            }
        }
        Ok(None)
    }

    fn finish(&mut self, end: RunEnd) -> Result<Duration> {
        let elapsed = self.start.elapsed();
        match end {
            RunEnd::PoweredOff => {
                // qemu exits by itself after a guest power-off; it is killed if it lingers.
                self.vm.wait_for_exit(EXIT_LIMIT)?;
                Ok(elapsed)
            }
            RunEnd::Reset => {
                let text = serial::read_tail(&self.paths.serial_log);
                match serial::kernel_panic(&text) {
                    Some(p) => Err(self.failure(ErrorKind::GuestPanic, &format!("guest {p}"))),
                    None => Err(self.failure(
                        ErrorKind::GuestReset,
                        "the guest reset (rebooted) instead of powering off",
                    )),
                }
            }
            RunEnd::Panicked(why) => Err(self.failure(
                ErrorKind::GuestPanic,
                &format!("the guest kernel panicked ({why})"),
            )),
            RunEnd::HostShutdown(reason) => {
                Err(self.died(&format!("qemu shut the VM down (reason {reason})")))
            }
        }
    }

    /// A [`ErrorKind::VmDied`] error with qemu's stderr.
    fn died(&mut self, what: &str) -> Error {
        // qemu writes its reason to stderr before it exits: give it a moment to finish.
        let _ = self.vm.wait_for_exit(DIED_WAIT);
        let msg = format!("{what}; qemu said: {}", stderr_tail(self.stderr));
        self.failure(ErrorKind::VmDied, &msg)
    }

    /// An error of `kind` whose message ends with the serial log's tail.
    fn failure(&mut self, kind: ErrorKind, what: &str) -> Error {
        self.vm.kill();
        let text = serial::read_tail(&self.paths.serial_log);
        let tail = serial::last_lines(&text, serial::ERROR_TAIL_LINES);
        Error::new(
            kind,
            format!(
                "{what} after {:.1} s\n--- last lines of the serial console ---\n{tail}",
                self.start.elapsed().as_secs_f64()
            ),
        )
        .with_structure("VM")
    }
}

fn stderr_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("warning: host doesn't support"))
        .collect();
    if lines.is_empty() {
        return "(nothing)".into();
    }
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::{DiskFormat, DiskSpec};

    fn paths() -> RunPaths {
        RunPaths {
            qmp_socket: "/run/q.sock".into(),
            serial_log: "/run/serial.log".into(),
            vars: Some("/run/VARS.fd".into()),
        }
    }

    fn cfg() -> QemuConfig {
        QemuConfig {
            iso: Some("/in/inst,aller.iso".into()),
            cdroms: vec!["/in/prov.iso".into()],
            disks: vec![DiskSpec {
                path: "/out/disk.vhdx".into(),
                format: DiskFormat::Vhdx,
            }],
            ..QemuConfig::default()
        }
    }

    #[test]
    fn bios_command_line() {
        let a = command_line(&cfg(), None, AccelKind::Tcg, &paths()).unwrap();
        let s = a.join(" ");
        assert_eq!(a[0], "qemu-system-x86_64");
        for want in [
            "-machine q35",
            "-accel tcg",
            "-no-reboot",
            "-device pvpanic",
            " -S ",
            "socket,id=qmp,path=/run/q.sock,server=on,wait=off",
            "-chardev file,id=serial0,path=/run/serial.log -serial chardev:serial0",
            "if=none,id=cd0,media=cdrom,format=raw,readonly=on,file=/in/inst,,aller.iso",
            "ide-cd,drive=cd0,bus=ide.0,unit=0,bootindex=0",
            "if=none,id=disk0,format=vhdx,file=/out/disk.vhdx",
            "ide-hd,drive=disk0,bus=ide.1,unit=0,bootindex=1",
            "file=/in/prov.iso -device ide-cd,drive=cd1,bus=ide.2,unit=0 ",
        ] {
            assert!(format!("{s} ").contains(want), "{want:?} not in {s}");
        }
        assert!(!s.contains("pflash") && !s.contains("-cpu"), "{s}");
    }

    #[test]
    fn every_drive_names_its_bus_and_unit() {
        // qemu does not spread drives over AHCI ports or PIIX channels by itself: without a
        // bus, the second drive on q35 ("bus supports only 1 units") and the third on pc ("IDE
        // unit 1 is in use") stop qemu before it starts.
        let q35: Vec<String> = (0..6)
            .map(|n| drive_slot(Machine::Q35, n).unwrap())
            .collect();
        assert_eq!(q35[0], "bus=ide.0,unit=0");
        assert_eq!(q35[5], "bus=ide.5,unit=0");
        let pc: Vec<String> = (0..4)
            .map(|n| drive_slot(Machine::Pc, n).unwrap())
            .collect();
        assert_eq!(
            pc,
            [
                "bus=ide.0,unit=0",
                "bus=ide.0,unit=1",
                "bus=ide.1,unit=0",
                "bus=ide.1,unit=1"
            ]
        );
        let e = drive_slot(Machine::Pc, 4).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(drive_slot(Machine::Q35, 6).is_err());
    }

    #[test]
    fn secure_boot_command_line() {
        let fw = ResolvedFirmware {
            code: "/o/OVMF_CODE_4M.secboot.fd".into(),
            vars_template: "/o/OVMF_VARS_4M.ms.fd".into(),
            secure: true,
        };
        let c = QemuConfig {
            firmware: Firmware::UefiSecure,
            ..cfg()
        };
        let s = command_line(&c, Some(&fw), AccelKind::Kvm, &paths())
            .unwrap()
            .join(" ");
        for want in [
            "-machine q35,smm=on",
            "-accel kvm -cpu host",
            "-global driver=cfi.pflash01,property=secure,value=on",
            "if=pflash,format=raw,unit=0,readonly=on,file=/o/OVMF_CODE_4M.secboot.fd",
            "if=pflash,format=raw,unit=1,file=/run/VARS.fd",
        ] {
            assert!(s.contains(want), "{want:?} not in {s}");
        }
        let pc = QemuConfig {
            machine: Machine::Pc,
            ..c
        };
        let e = command_line(&pc, Some(&fw), AccelKind::Tcg, &paths()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn limits_are_checked() {
        let none = QemuConfig::default();
        assert_eq!(
            check_config(&none).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        let many = QemuConfig {
            machine: Machine::Pc,
            cdroms: vec!["/a".into(); 4],
            ..cfg()
        };
        assert_eq!(
            check_config(&many).unwrap_err().kind(),
            ErrorKind::LimitExceeded
        );
    }
}
