//! Shared harness of the end-to-end boot tests (tests/it/boot_*.rs).
//!
//! It builds (or reuses) the Ubuntu-18.04.3-shaped fixture ISO, boots images in
//! `qemu-system-x86_64` with SeaBIOS or OVMF, from a CD drive or as a hard disk, with no keyboard
//! input and a time limit, and watches two channels for markers:
//! - the serial port (`-serial file:`), where the fixture's initramfs writes its markers and
//!   where OVMF mirrors its console;
//! - under SeaBIOS, the VGA text buffer (0xB8000), read through QMP `pmemsave`, for programs that
//!   only print to the screen (iPXE, GRUB rescue).
//!
//! Acceleration: KVM when `/dev/kvm` opens and a boot under it works, TCG otherwise. A KVM run
//! that dies ("KVM internal error", seen with nested KVM on isolinux and OVMF code) or does not
//! reach its markers marks KVM broken for the rest of the process and is rerun under TCG.
//! `ISOTOOL_BOOT_ACCEL=tcg|kvm` forces one (a forced KVM has no fallback).
//!
//! Every external oracle (qemu, xorriso, OVMF, the third-party ISOs) is required: a missing one
//! fails the test with the Debian package to install, never skips it.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const QEMU: &str = "qemu-system-x86_64";
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
pub const IPXE_ISO: &str = "/usr/lib/ipxe/ipxe.iso";
pub const GRUB_RESCUE_ISO: &str = "/usr/lib/grub-rescue/grub-rescue-cdrom.iso";

/// Marker the fixture's init prints first: its absence means the kernel never ran.
pub const INIT_MARKER: &str = "FIXTURE-INIT: started";
/// Marker the fixture's init prints last, just before powering off.
pub const DONE_MARKER: &str = "FIXTURE-DONE";
/// Time limit for a boot that must reach its markers (generous: TCG on a busy 2-core machine;
/// an uncontended TCG boot of the fixture takes 20-30 s).
pub const BOOT_LIMIT: Duration = Duration::from_secs(240);
/// Time limit of a first try under KVM before falling back to TCG.
pub const KVM_LIMIT: Duration = Duration::from_secs(90);
/// Least time an unmodified disc is watched to prove it waits (see `wait_limit`).
pub const MIN_WAIT_LIMIT: Duration = Duration::from_secs(60);

/// Fails the test when a file an oracle needs is missing.
pub fn require_file(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.is_file(),
        "{path} is missing: the boot tests need it (apt-get install {package})"
    );
    p
}

/// Fails the test when a program an oracle needs is missing.
pub fn require_program(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{program}` is not on PATH: the boot tests need it (apt-get install {package})"
    );
}

pub fn require_qemu() {
    require_program(QEMU, "qemu-system-x86 (from bookworm-backports)");
}

pub fn require_ovmf() {
    require_file(OVMF_CODE, "ovmf");
    require_file(OVMF_VARS, "ovmf");
}

/// Directory for this test process's scratch files (under the cargo target dir).
pub fn scratch_dir(name: &str) -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    static SWEPT: OnceLock<()> = OnceLock::new();
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot-tests");
    SWEPT.get_or_init(|| sweep_dead_runs(&root));
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let dir = root.join(format!("{name}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Removes the scratch directories of test processes that are gone (`NAME-PID-N`): the ISOs
/// of earlier runs would pile up otherwise. Directories of live processes are left alone.
fn sweep_dead_runs(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut parts = name.rsplit('-');
        let (Some(_seq), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Path of the fixture ISO, built by fixtures/ubuntu-like/build.sh when missing or stale.
pub fn fixture_iso() -> PathBuf {
    static ISO: OnceLock<PathBuf> = OnceLock::new();
    ISO.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ubuntu-like/build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed ({}):\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path = PathBuf::from(stdout.lines().last().unwrap_or("").trim());
        assert!(
            path.is_file(),
            "{} printed no ISO path (stdout: {stdout:?})",
            script.display()
        );
        path
    })
    .clone()
}

/// SHA-256 of a file, lower-case hex (the expected value of the `PRESEED-SHA256:` marker).
pub fn sha256_file(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    isotool::checksum::sha256_hex(&bytes)
}

/// Writes a small preseed file whose checksum the boot must report.
pub fn write_test_preseed(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let body = format!(
        "# isotool boot test preseed ({name})\n\
         d-i debian-installer/locale string en_US.UTF-8\n\
         d-i keyboard-configuration/xkb-keymap select us\n\
         d-i netcfg/choose_interface select auto\n\
         d-i partman-auto/method string regular\n"
    );
    fs::write(&path, body).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// Markers a booted-unattended fixture must print for a preseed at `/cdrom/preseed/NAME`.
pub fn unattended_markers(preseed_name: &str, preseed_sha256: &str) -> Vec<String> {
    vec![
        INIT_MARKER.to_string(),
        "auto=true".to_string(),
        "priority=critical".to_string(),
        format!("preseed/file=/cdrom/preseed/{preseed_name}"),
        format!("PRESEED-SHA256: {preseed_sha256}"),
        DONE_MARKER.to_string(),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS (qemu's default).
    Bios,
    /// OVMF (UEFI), with a fresh writable copy of the VARS file per boot.
    Uefi,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    /// The image in an IDE CD-ROM drive (El Torito).
    Cdrom,
    /// The image as an IDE hard disk (isohybrid MBR / GPT), copy-on-write (`snapshot=on`).
    Disk,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// One boot to run.
#[derive(Clone, Debug)]
pub struct Boot {
    pub label: String,
    pub image: PathBuf,
    pub firmware: Firmware,
    pub media: Media,
    pub limit: Duration,
    /// All of these must appear (serial log or screen) for the boot to count as reached.
    pub markers: Vec<String>,
}

impl Boot {
    pub fn new(label: &str, image: &Path, firmware: Firmware, media: Media) -> Boot {
        Boot {
            label: label.to_string(),
            image: image.to_path_buf(),
            firmware,
            media,
            limit: BOOT_LIMIT,
            markers: Vec::new(),
        }
    }

    pub fn markers<S: AsRef<str>>(mut self, markers: &[S]) -> Boot {
        self.markers = markers.iter().map(|m| m.as_ref().to_string()).collect();
        self
    }

    pub fn limit(mut self, limit: Duration) -> Boot {
        self.limit = limit;
        self
    }
}

/// What one qemu run showed.
#[derive(Debug)]
pub struct Outcome {
    pub label: String,
    pub accel: Accel,
    /// Every marker was seen.
    pub reached: bool,
    /// Time from spawning qemu to the last marker (or to the end of the run).
    pub elapsed: Duration,
    /// qemu exited by itself (power-off, -no-reboot) before the limit.
    pub exited: bool,
    /// qemu itself failed under KVM ("KVM internal error" and the like).
    pub accel_failed: bool,
    /// Serial log, ANSI escapes removed.
    pub serial: String,
    /// Distinct VGA text lines seen during the run (SeaBIOS runs only).
    pub screen: String,
    pub stderr: String,
    pub missing: Vec<String>,
    /// Scratch directory of the run (logs); removed when the run reached its markers.
    pub dir: PathBuf,
}

impl Outcome {
    /// Text for an assertion message.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "boot `{}` under {}: reached={} after {:.1} s (qemu exited by itself: {})",
            self.label,
            self.accel.name(),
            self.reached,
            self.elapsed.as_secs_f64(),
            self.exited
        );
        if !self.missing.is_empty() {
            let _ = writeln!(s, "markers not seen: {:?}", self.missing);
        }
        let _ = writeln!(
            s,
            "--- serial log (last 40 lines) ---\n{}",
            tail(&self.serial, 40)
        );
        if !self.screen.is_empty() {
            let _ = writeln!(
                s,
                "--- screen text (last 30 lines) ---\n{}",
                tail(&self.screen, 30)
            );
        }
        if !self.stderr.trim().is_empty() {
            let _ = writeln!(
                s,
                "--- qemu stderr (last 15 lines) ---\n{}",
                tail(&self.stderr, 15)
            );
        }
        s
    }

    /// Whether `needle` was seen on the serial port or on the screen.
    pub fn saw(&self, needle: &str) -> bool {
        self.serial.contains(needle) || self.screen.contains(needle)
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

const KVM_UNKNOWN: u8 = 0;
const KVM_WORKS: u8 = 1;
const KVM_BROKEN: u8 = 2;
static KVM_STATE: AtomicU8 = AtomicU8::new(KVM_UNKNOWN);

fn forced_accel() -> Option<Accel> {
    match std::env::var("ISOTOOL_BOOT_ACCEL").ok().as_deref() {
        Some("kvm") => Some(Accel::Kvm),
        Some("tcg") => Some(Accel::Tcg),
        Some(other) => panic!("ISOTOOL_BOOT_ACCEL={other}: expected `kvm` or `tcg`"),
        None => None,
    }
}

fn kvm_usable() -> bool {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Boots and requires every marker: under KVM first when it may work, rerun under TCG when KVM
/// fails. Panics with the logs when the markers are not all seen within the limit.
pub fn boot_expect_markers(boot: &Boot) -> Outcome {
    let outcome = boot_reaching(boot);
    assert!(
        outcome.reached,
        "the boot did not reach its markers within {} s:\n{}",
        boot.limit.as_secs(),
        outcome.describe()
    );
    eprintln!(
        "boot `{}` reached its markers in {:.1} s under {}",
        boot.label,
        outcome.elapsed.as_secs_f64(),
        outcome.accel.name()
    );
    outcome
}

/// Like `boot_expect_markers` without the assertion: the outcome of the best accelerator.
pub fn boot_reaching(boot: &Boot) -> Outcome {
    if let Some(accel) = forced_accel() {
        return run_qemu(boot, accel);
    }
    if KVM_STATE.load(Ordering::SeqCst) != KVM_BROKEN && kvm_usable() {
        // KVM boots the fixture in seconds: a KVM run that hangs silently must not cost the
        // whole TCG limit before the fallback.
        let kvm_boot = Boot {
            limit: std::cmp::min(boot.limit, KVM_LIMIT),
            ..boot.clone()
        };
        let out = run_qemu(&kvm_boot, Accel::Kvm);
        if out.reached {
            KVM_STATE.store(KVM_WORKS, Ordering::SeqCst);
            return out;
        }
        KVM_STATE.store(KVM_BROKEN, Ordering::SeqCst);
        eprintln!(
            "KVM did not boot `{}` (accel failure: {}, after {:.1} s); using TCG from now on",
            boot.label,
            out.accel_failed,
            out.elapsed.as_secs_f64()
        );
    }
    run_qemu(boot, Accel::Tcg)
}

/// Accelerator for a boot that is expected NOT to reach its markers: KVM only once a KVM boot
/// has been seen to work in this process (a crashing KVM would prove nothing), else TCG.
pub fn accel_for_negative() -> Accel {
    if let Some(a) = forced_accel() {
        return a;
    }
    if KVM_STATE.load(Ordering::SeqCst) == KVM_WORKS {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

/// How long an unmodified disc is watched: at least `MIN_WAIT_LIMIT`, and at least twice the
/// time the remastered disc took to reach its markers on this machine, so "not seen" means the
/// disc waited, not that the machine was slow.
pub fn wait_limit(positive: &Outcome) -> Duration {
    std::cmp::max(MIN_WAIT_LIMIT, positive.elapsed * 2)
}

/// Boots a disc that must NOT reach its markers (it waits at its boot menu). Panics when any of
/// `forbidden` shows up; returns the outcome (the caller may check what did show up).
pub fn boot_expect_wait(boot: &Boot, forbidden: &[&str]) -> Outcome {
    let mut accel = accel_for_negative();
    let mut out = run_qemu(boot, accel);
    if out.accel_failed && accel == Accel::Kvm && forced_accel().is_none() {
        KVM_STATE.store(KVM_BROKEN, Ordering::SeqCst);
        eprintln!(
            "KVM failed while watching `{}`; watching again under TCG",
            boot.label
        );
        accel = Accel::Tcg;
        out = run_qemu(boot, accel);
    }
    assert!(
        !out.accel_failed,
        "qemu failed under {} while watching `{}`: proves nothing\n{}",
        accel.name(),
        boot.label,
        out.describe()
    );
    for f in forbidden {
        assert!(
            !out.saw(f),
            "`{}` must wait at its boot menu, but `{f}` appeared within {} s:\n{}",
            boot.label,
            boot.limit.as_secs(),
            out.describe()
        );
    }
    assert!(
        !out.exited,
        "`{}` must wait at its boot menu, but qemu exited after {:.1} s:\n{}",
        boot.label,
        out.elapsed.as_secs_f64(),
        out.describe()
    );
    eprintln!(
        "boot `{}` waited: none of {forbidden:?} in {} s under {}",
        boot.label,
        boot.limit.as_secs(),
        accel.name()
    );
    let _ = fs::remove_dir_all(&out.dir);
    out
}

/// At most this many qemu boots run at once in this test process (`ISOTOOL_BOOT_JOBS`, default
/// 1): the tests of the one integration crate run on parallel threads, and two TCG guests plus
/// the other tests would oversubscribe a 2-core machine and push boots past their time limits.
fn boot_slots() -> usize {
    std::env::var("ISOTOOL_BOOT_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

/// A counting semaphore over the qemu boots of this process.
struct BootSlot;

static RUNNING: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
static FREED: std::sync::Condvar = std::sync::Condvar::new();

impl BootSlot {
    fn acquire() -> BootSlot {
        let max = boot_slots();
        let mut n = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= max {
            n = FREED.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
        BootSlot
    }
}

impl Drop for BootSlot {
    fn drop(&mut self) {
        let mut n = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        FREED.notify_one();
    }
}

/// Runs qemu once with the given accelerator until every marker is seen, qemu exits, qemu fails,
/// or the time limit passes; qemu is killed in the end. Waits for a free boot slot first (the
/// time limit starts when qemu does).
pub fn run_qemu(boot: &Boot, accel: Accel) -> Outcome {
    require_qemu();
    let _slot = BootSlot::acquire();
    assert!(
        boot.image.is_file(),
        "boot `{}`: image {} does not exist",
        boot.label,
        boot.image.display()
    );
    let dir = scratch_dir(&format!("{}-{}", sanitize(&boot.label), accel.name()));
    let serial = dir.join("serial.log");
    let stderr_path = dir.join("qemu.stderr");
    // Unix socket paths are limited to 107 bytes: keep the QMP socket short, outside `dir`.
    static SOCK_SEQ: AtomicUsize = AtomicUsize::new(0);
    let qmp_path = std::env::temp_dir().join(format!(
        "isotool-boot-{}-{}.qmp",
        std::process::id(),
        SOCK_SEQ.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = fs::remove_file(&qmp_path);
    let vga_path = dir.join("vga.bin");

    let mut args: Vec<String> = vec![
        "-accel".into(),
        accel.name().into(),
        "-m".into(),
        "512".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-nic".into(),
        "none".into(),
        "-monitor".into(),
        "none".into(),
        "-serial".into(),
        format!("file:{}", serial.display()),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", qmp_path.display()),
    ];
    if boot.firmware == Firmware::Uefi {
        require_ovmf();
        let vars = dir.join("OVMF_VARS.fd");
        fs::copy(OVMF_VARS, &vars)
            .unwrap_or_else(|e| panic!("cannot copy {OVMF_VARS} to {}: {e}", vars.display()));
        args.push("-drive".into());
        args.push(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"));
        args.push("-drive".into());
        args.push(format!("if=pflash,format=raw,file={}", vars.display()));
    }
    let image = qemu_path(&boot.image);
    match boot.media {
        Media::Cdrom => {
            args.push("-drive".into());
            args.push(format!(
                "file={image},format=raw,if=ide,media=cdrom,readonly=on"
            ));
            if boot.firmware == Firmware::Bios {
                args.push("-boot".into());
                args.push("order=d".into());
            }
        }
        Media::Disk => {
            args.push("-drive".into());
            args.push(format!(
                "file={image},format=raw,if=ide,media=disk,snapshot=on"
            ));
            if boot.firmware == Firmware::Bios {
                args.push("-boot".into());
                args.push("order=c".into());
            }
        }
    }

    let stderr_file = fs::File::create(&stderr_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", stderr_path.display()));
    let start = Instant::now();
    let child = Command::new(QEMU)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr_file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {QEMU}: {e}"));
    let mut guard = ChildGuard(child);

    let watch_screen = boot.firmware == Firmware::Bios;
    let mut qmp: Option<Qmp> = None;
    let mut screen = Screen::default();
    let mut reached_at = None;
    let mut exited = false;
    let mut accel_failed = false;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        if watch_screen {
            if qmp.is_none() {
                qmp = Qmp::connect(&qmp_path);
            }
            if let Some(q) = qmp.as_mut() {
                match q.pmemsave(0xb8000, 4000, &vga_path) {
                    Ok(()) => {
                        if let Ok(bytes) = fs::read(&vga_path) {
                            screen.add(&bytes);
                        }
                    }
                    Err(_) => qmp = None,
                }
            }
        }
        let serial_text = read_clean(&serial);
        if boot
            .markers
            .iter()
            .all(|m| serial_text.contains(m.as_str()) || screen.text.contains(m.as_str()))
            && !boot.markers.is_empty()
        {
            reached_at = Some(start.elapsed());
            break;
        }
        let err_text = fs::read_to_string(&stderr_path).unwrap_or_default();
        if accel == Accel::Kvm && kvm_failure(&err_text) {
            accel_failed = true;
            break;
        }
        match guard.0.try_wait() {
            Ok(Some(_)) => {
                exited = true;
                break;
            }
            Ok(None) => {}
            Err(e) => panic!("cannot poll {QEMU}: {e}"),
        }
        if start.elapsed() >= boot.limit {
            break;
        }
    }
    let elapsed = reached_at.unwrap_or_else(|| start.elapsed());
    drop(qmp);
    guard.stop();
    let _ = fs::remove_file(&qmp_path);

    let serial_text = read_clean(&serial);
    let stderr_text = fs::read_to_string(&stderr_path).unwrap_or_default();
    if accel == Accel::Kvm && kvm_failure(&stderr_text) {
        accel_failed = true;
    }
    let missing: Vec<String> = boot
        .markers
        .iter()
        .filter(|m| !serial_text.contains(m.as_str()) && !screen.text.contains(m.as_str()))
        .cloned()
        .collect();
    let reached = !boot.markers.is_empty() && missing.is_empty();
    let out = Outcome {
        label: boot.label.clone(),
        accel,
        reached,
        elapsed,
        exited,
        accel_failed,
        serial: serial_text,
        screen: screen.text,
        stderr: stderr_text,
        missing,
        dir: dir.clone(),
    };
    // Keep the logs of runs that did not reach their markers, for inspection.
    if reached {
        let _ = fs::remove_dir_all(&dir);
    } else {
        let _ = fs::write(dir.join("outcome.txt"), out.describe());
    }
    out
}

fn kvm_failure(stderr: &str) -> bool {
    stderr.contains("KVM internal error")
        || stderr.contains("emulation failure")
        || stderr.contains("failed to initialize kvm")
        || stderr.contains("Could not access KVM kernel module")
}

fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// qemu's -drive syntax treats ',' as a separator: refuse paths that contain one.
fn qemu_path(path: &Path) -> String {
    let s = path.to_string_lossy().into_owned();
    assert!(
        !s.contains(','),
        "image path {s} contains a comma, which qemu's -drive cannot take"
    );
    s
}

/// Reads a log file as text without ANSI escape sequences or carriage returns.
fn read_clean(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    strip_ansi(&String::from_utf8_lossy(&bytes))
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    // CSI: parameters and intermediates, then one final byte in '@'..='~'.
                    for n in chars.by_ref() {
                        if ('@'..='~').contains(&n) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            _ => out.push(c),
        }
    }
    out
}

/// Distinct lines of the VGA text screen seen during a run, in order of first appearance.
#[derive(Default)]
struct Screen {
    text: String,
    seen: std::collections::HashSet<String>,
}

impl Screen {
    fn add(&mut self, vga: &[u8]) {
        for row in vga.chunks(160) {
            let line: String = row
                .iter()
                .step_by(2)
                .map(|&b| {
                    if (0x20..0x7f).contains(&b) {
                        b as char
                    } else {
                        ' '
                    }
                })
                .collect();
            let line = line.trim_end().to_string();
            if !line.trim().is_empty() && self.seen.insert(line.clone()) {
                self.text.push_str(&line);
                self.text.push('\n');
            }
        }
    }
}

/// Minimal QMP client (JSON lines over qemu's unix socket).
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn connect(path: &Path) -> Option<Qmp> {
        let stream = UnixStream::connect(path).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let writer = stream.try_clone().ok()?;
        let mut q = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        // Greeting, then capabilities negotiation.
        let mut greeting = String::new();
        q.reader.read_line(&mut greeting).ok()?;
        if !greeting.contains("QMP") {
            return None;
        }
        q.execute(r#"{"execute":"qmp_capabilities"}"#).ok()?;
        Some(q)
    }

    fn execute(&mut self, command: &str) -> Result<serde_json::Value, String> {
        self.writer
            .write_all(format!("{command}\n").as_bytes())
            .map_err(|e| e.to_string())?;
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("QMP connection closed".into());
            }
            let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
            if v.get("event").is_some() {
                continue;
            }
            if let Some(err) = v.get("error") {
                return Err(err.to_string());
            }
            if let Some(ret) = v.get("return") {
                return Ok(ret.clone());
            }
        }
    }

    fn pmemsave(&mut self, addr: u64, size: u64, file: &Path) -> Result<(), String> {
        let cmd = serde_json::json!({
            "execute": "pmemsave",
            "arguments": {"val": addr, "size": size, "filename": file.to_string_lossy()}
        });
        self.execute(&cmd.to_string()).map(|_| ())
    }
}

/// Kills qemu when the run ends, whatever the way out (including a panic).
struct ChildGuard(Child);

impl ChildGuard {
    fn stop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a command and fails the test with its output when it does not succeed.
pub fn run_ok(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {:?}: {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Extracts one file of an ISO with xorriso (the oracle that reads what a remaster wrote).
pub fn iso_extract(iso: &Path, iso_path: &str, dest: &Path) {
    require_program("xorriso", "xorriso");
    let _ = fs::remove_file(dest);
    run_ok(
        Command::new("xorriso")
            .args(["-osirrox", "on", "-indev"])
            .arg(iso)
            .args(["-extract", iso_path])
            .arg(dest),
        &format!("xorriso -extract {iso_path} from {}", iso.display()),
    );
    assert!(
        dest.is_file(),
        "xorriso extracted nothing for {iso_path} from {}",
        iso.display()
    );
}

/// Markers that show a third-party ISO booted: (label, image, firmware, markers).
pub fn third_party_boots(ipxe: &Path, grub_rescue: &Path) -> Vec<Boot> {
    vec![
        // iPXE's banner, on the VGA text screen under SeaBIOS.
        Boot::new("ipxe-bios-cd", ipxe, Firmware::Bios, Media::Cdrom).markers(&[
            "iPXE initialising devices",
            "Open Source Network Boot Firmware",
        ]),
        // iPXE's EFI build, whose console OVMF mirrors to the serial port.
        Boot::new("ipxe-uefi-cd", ipxe, Firmware::Uefi, Media::Cdrom).markers(&[
            "iPXE initialising devices",
            "Open Source Network Boot Firmware",
        ]),
        // GRUB's menu of grub-mkrescue images, on the VGA text screen.
        Boot::new(
            "grub-rescue-bios-cd",
            grub_rescue,
            Firmware::Bios,
            Media::Cdrom,
        )
        .markers(&["GNU GRUB  version", "GNU/Linux"]),
    ]
}
