//! Helpers of the end-to-end install tests (tests/e2e_install*.rs): the isotool binary, the
//! preseed's partition recipe, and a small QMP-aware qemu runner.
//!
//! The runner reads completion from QMP, not from qemu's exit status (with `-no-reboot` qemu
//! exits 0 for a power-off, a reset and a panic alike): a `SHUTDOWN` event's `reason` says which
//! (`guest-shutdown`, `guest-reset`, `guest-panic`). The serial port goes to a file that the
//! tests read for the fixture's markers. qemu is killed on every way out (Drop guard).
//!
//! Acceleration: TCG (nested KVM hangs on these machines, see DESIGN.md);
//! `ISOTOOL_BOOT_ACCEL=kvm` asks for KVM.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::boot_common::{OVMF_CODE, OVMF_VARS, QEMU, require_ovmf, require_qemu};

/// The shipped preseed template (the recipe the tests install with).
pub fn shipped_preseed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("preseed/ubuntu-18.04-server.seed")
}

/// Runs the isotool binary; fails the test with its output when it does not succeed. (The test
/// crate declares `mod boot_common;` beside `mod e2e_common;`.)
pub fn isotool(args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_isotool"));
    cmd.args(args);
    let out = crate::boot_common::run_ok(&mut cmd, &format!("isotool {args:?}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `path` as a `&str` argument (tests' paths are UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// The preseed with `question`'s line replaced by `line` (appended when absent), or removed
/// when `line` is empty.
pub fn preseed_with(text: &str, question: &str, line: &str) -> String {
    let mut out = String::new();
    let mut done = false;
    for l in text.lines() {
        if l.split_whitespace().nth(1) == Some(question) && !l.starts_with('#') {
            if !line.is_empty() {
                out.push_str(line);
                out.push('\n');
            }
            done = true;
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    if !done && !line.is_empty() {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// One partition of a d-i expert recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipePart {
    pub min: i64,
    pub priority: i64,
    pub max: i64,
    pub fs: String,
    pub method: String,
    pub mountpoint: Option<String>,
}

/// The `partman-auto/expert_recipe` of a preseed (continuation lines joined).
pub fn expert_recipe(preseed: &str) -> Vec<RecipePart> {
    let joined = preseed.replace("\\\n", " ");
    let value = joined
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("partman-auto/expert_recipe"))
        .expect("the preseed has a partman-auto/expert_recipe");
    let body = value.split_once("::").expect("recipe header `NAME ::`").1;
    let mut parts = Vec::new();
    for chunk in body.split(" . ").chain(std::iter::once("")) {
        let toks: Vec<&str> = chunk.split_whitespace().filter(|t| *t != ".").collect();
        if toks.len() < 4 {
            continue;
        }
        let num = |i: usize| -> i64 {
            toks[i]
                .parse()
                .unwrap_or_else(|_| panic!("recipe number {:?}", toks[i]))
        };
        let spec = |key: &str| -> Option<String> {
            let i = toks.iter().position(|t| *t == format!("{key}{{"))?;
            toks.get(i + 1)
                .filter(|v| **v != "}")
                .map(|v| v.to_string())
        };
        parts.push(RecipePart {
            min: num(0),
            priority: num(1),
            max: num(2),
            fs: spec("filesystem").unwrap_or_else(|| toks[3].to_string()),
            method: spec("method").unwrap_or_else(|| "format".into()),
            mountpoint: spec("mountpoint"),
        });
    }
    parts
}

/// What the installer must make of a recipe on a disk of `disk_bytes`: (GPT type GUID, start,
/// size) in bytes. Sizes are MiB from 1 MiB on; each partition gets its minimum, the rest goes
/// to the ones that may grow in proportion to priority - minimum (at least 1), capped at their
/// maximum, rounding leftovers to the last that may still grow (fixtures/ubuntu-like/README.md).
pub fn expected_layout(parts: &[RecipePart], disk_bytes: u64) -> Vec<(&'static str, u64, u64)> {
    const MIB: u64 = 1 << 20;
    let avail = ((disk_bytes / 512 - 34) / 2048) as i64 - 1;
    let mut size: Vec<i64> = parts.iter().map(|p| p.min).collect();
    let mut left = avail - size.iter().sum::<i64>();
    assert!(left >= 0, "the recipe does not fit {disk_bytes} bytes");
    let grows = |p: &RecipePart| p.max == -1 || p.max > p.min;
    let w: Vec<i64> = parts
        .iter()
        .map(|p| {
            if grows(p) {
                (p.priority - p.min).max(1)
            } else {
                0
            }
        })
        .collect();
    let wsum: i64 = w.iter().sum();
    let cap = |k: usize, s: i64, add: i64| -> i64 {
        if parts[k].max != -1 && s + add > parts[k].max {
            parts[k].max - s
        } else {
            add
        }
    };
    if wsum > 0 {
        let give = left;
        for k in 0..parts.len() {
            if w[k] > 0 {
                let add = cap(k, size[k], give * w[k] / wsum);
                size[k] += add;
                left -= add;
            }
        }
        for k in (0..parts.len()).rev() {
            if left > 0 && w[k] > 0 {
                let add = cap(k, size[k], left);
                size[k] += add;
                left -= add;
            }
        }
    }
    let mut start = 1i64;
    let mut out = Vec::new();
    for (k, part) in parts.iter().enumerate() {
        let ty = match part.method.as_str() {
            "biosgrub" => "21686148-6449-6e6f-744e-656564454649",
            "efi" => "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
            "swap" => "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f",
            _ => "0fc63daf-8483-4772-8e79-3d69d8477de4",
        };
        out.push((ty, start as u64 * MIB, size[k] as u64 * MIB));
        start += size[k];
    }
    out
}

/// The GPT partitions `isotool info --json` lists: (type id, start, size).
pub fn info_partitions(image: &Path) -> Vec<(String, u64, u64)> {
    let json = isotool(&["info", "--json", p(image)]);
    let v: serde_json::Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("isotool info --json is not JSON ({e}):\n{json}"));
    let gpt = v["partitions"]["gpt"]
        .as_array()
        .unwrap_or_else(|| panic!("isotool info found no GPT on {}:\n{json}", image.display()));
    gpt.iter()
        .map(|e| {
            (
                e["type_id"].as_str().unwrap_or("").to_string(),
                e["start"].as_u64().unwrap_or(0),
                e["size"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// The values after `marker` on every serial line that holds it, in order, duplicates removed
/// (the console and the serial port may both carry a line).
pub fn marker_values(serial: &str, marker: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in serial.lines() {
        if let Some(i) = line.find(marker) {
            let v = line[i + marker.len()..].trim_end().to_string();
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

/// SHA-256 of every file under `dir`, as `(relative path, hex)`, sorted by path.
pub fn tree_sha256(dir: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = e.expect("directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.push((
                    rel.to_string_lossy().into_owned(),
                    isotool::checksum::sha256_hex(&bytes),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
}

/// A drive of a VM.
#[derive(Clone, Debug)]
pub struct Drive {
    pub path: PathBuf,
    /// qemu's format name: raw, vhdx, vpc.
    pub format: &'static str,
    pub cdrom: bool,
}

impl Drive {
    pub fn disk(path: &Path, format: &'static str) -> Drive {
        Drive {
            path: path.to_path_buf(),
            format,
            cdrom: false,
        }
    }
    pub fn cdrom(path: &Path) -> Drive {
        Drive {
            path: path.to_path_buf(),
            format: "raw",
            cdrom: true,
        }
    }
}

/// One VM run: machine, firmware, drives, a time limit, and optionally a marker after which
/// the run is watched for `hold` more and then stopped (for runs that must not end by
/// themselves).
#[derive(Clone, Debug)]
pub struct Vm {
    pub label: String,
    pub machine: &'static str,
    pub firmware: Firmware,
    pub drives: Vec<Drive>,
    /// SeaBIOS boot order (`d`: CD first, `c`: disk first).
    pub boot_order: &'static str,
    pub limit: Duration,
    pub hold_after: Option<(String, Duration)>,
    pub dir: PathBuf,
}

/// How a run ended.
#[derive(Debug)]
pub struct Run {
    pub label: String,
    pub serial: String,
    /// `reason` of the QMP SHUTDOWN event (guest-shutdown, guest-reset, guest-panic...).
    pub shutdown: Option<String>,
    /// The limit passed (or the hold time after the marker) with qemu still running.
    pub still_running: bool,
    pub elapsed: Duration,
    pub stderr: String,
}

impl Run {
    pub fn describe(&self) -> String {
        let lines: Vec<&str> = self.serial.lines().collect();
        format!(
            "VM `{}`: SHUTDOWN reason {:?}, still running at the end: {}, after {:.1} s\n\
             --- serial (last 40 lines) ---\n{}\n--- qemu stderr ---\n{}",
            self.label,
            self.shutdown,
            self.still_running,
            self.elapsed.as_secs_f64(),
            lines[lines.len().saturating_sub(40)..].join("\n"),
            self.stderr.trim()
        )
    }

    /// Fails unless the guest powered itself off (QMP SHUTDOWN, reason guest-shutdown).
    pub fn expect_poweroff(&self) {
        assert_eq!(
            self.shutdown.as_deref(),
            Some("guest-shutdown"),
            "the guest did not power off:\n{}",
            self.describe()
        );
    }

    pub fn expect_markers(&self, markers: &[&str]) {
        for m in markers {
            assert!(
                self.serial.contains(m),
                "marker `{m}` not on the serial port:\n{}",
                self.describe()
            );
        }
    }
}

/// Kills qemu when dropped, whatever the way out.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl Vm {
    fn args(&self, serial: &Path, qmp: &Path) -> Vec<String> {
        let accel = match std::env::var("ISOTOOL_BOOT_ACCEL").as_deref() {
            Ok("kvm") => "kvm",
            _ => "tcg",
        };
        let mut a: Vec<String> = [
            "-machine",
            self.machine,
            "-accel",
            accel,
            "-m",
            "512",
            "-display",
            "none",
            "-no-reboot",
            "-nic",
            "none",
            "-monitor",
            "none",
            "-boot",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(format!("order={}", self.boot_order));
        a.push("-serial".into());
        a.push(format!("file:{}", serial.display()));
        a.push("-qmp".into());
        a.push(format!("unix:{},server=on,wait=off", qmp.display()));
        if self.firmware == Firmware::Uefi {
            let vars = self.dir.join(format!("{}-VARS.fd", self.label));
            fs::copy(OVMF_VARS, &vars).unwrap_or_else(|e| panic!("copy {OVMF_VARS}: {e}"));
            a.push("-drive".into());
            a.push(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"));
            a.push("-drive".into());
            a.push(format!("if=pflash,format=raw,file={}", vars.display()));
        }
        for d in &self.drives {
            let path = d.path.to_string_lossy();
            assert!(!path.contains(','), "qemu -drive cannot take {path}");
            a.push("-drive".into());
            a.push(if d.cdrom {
                format!("file={path},format=raw,if=ide,media=cdrom,readonly=on")
            } else {
                format!("file={path},format={},if=ide,media=disk", d.format)
            });
        }
        a
    }

    /// Runs the VM until it shuts down, the limit passes, or the hold after the marker ends.
    pub fn run(&self) -> Run {
        require_qemu();
        if self.firmware == Firmware::Uefi {
            require_ovmf();
        }
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let serial = self.dir.join(format!("{}.serial", self.label));
        let stderr_path = self.dir.join(format!("{}.stderr", self.label));
        // Unix socket paths are short (108 bytes): keep QMP's under the temp dir.
        let qmp_path = std::env::temp_dir().join(format!(
            "isotool-e2e-{}-{}.qmp",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_file(&qmp_path);
        let stderr = fs::File::create(&stderr_path).expect("qemu stderr file");
        let start = Instant::now();
        let child = Command::new(QEMU)
            .args(self.args(&serial, &qmp_path))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {QEMU}: {e}"));
        let mut guard = Guard(child);
        let mut qmp = None;
        let mut shutdown = None;
        let mut held_since: Option<Instant> = None;
        let mut still_running = false;
        loop {
            if qmp.is_none() {
                qmp = Qmp::connect(&qmp_path);
            }
            if let Some(q) = qmp.as_mut() {
                match q.next_event(Duration::from_millis(250)) {
                    Ok(Some(ev)) if ev["event"] == "SHUTDOWN" => {
                        shutdown = ev["data"]["reason"].as_str().map(str::to_string);
                    }
                    Ok(_) => {}
                    Err(_) => qmp = None,
                }
            } else {
                std::thread::sleep(Duration::from_millis(250));
            }
            if shutdown.is_some() || matches!(guard.0.try_wait(), Ok(Some(_))) {
                break;
            }
            if let (Some((marker, _)), None) = (&self.hold_after, held_since)
                && read_lossy(&serial).contains(marker.as_str())
            {
                held_since = Some(Instant::now());
            }
            if let (Some((_, hold)), Some(t)) = (&self.hold_after, held_since)
                && t.elapsed() >= *hold
            {
                still_running = true;
                break;
            }
            if start.elapsed() >= self.limit {
                still_running = true;
                break;
            }
        }
        let elapsed = start.elapsed();
        drop(qmp);
        drop(guard);
        let _ = fs::remove_file(&qmp_path);
        Run {
            label: self.label.clone(),
            serial: read_lossy(&serial),
            shutdown,
            still_running,
            elapsed,
            stderr: fs::read_to_string(&stderr_path).unwrap_or_default(),
        }
    }
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).replace('\r', "")
}

/// Runs VMs side by side (one thread each); results in the same order.
pub fn run_all(vms: &[Vm]) -> Vec<Run> {
    std::thread::scope(|s| {
        let handles: Vec<_> = vms.iter().map(|vm| s.spawn(move || vm.run())).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("VM thread"))
            .collect()
    })
}

/// Fails when a qemu process whose command line names `dir` is still alive.
pub fn assert_no_qemu_left(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let mut strays = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.starts_with(QEMU) && cmd.contains(&needle) {
            strays.push(cmd);
        }
    }
    assert!(strays.is_empty(), "qemu left running: {strays:?}");
}

/// Minimal QMP client: capabilities negotiation, then events.
struct Qmp {
    reader: BufReader<UnixStream>,
}

impl Qmp {
    fn connect(path: &Path) -> Option<Qmp> {
        let stream = UnixStream::connect(path).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut writer = stream.try_clone().ok()?;
        let mut reader = BufReader::new(stream);
        let mut greeting = String::new();
        reader.read_line(&mut greeting).ok()?;
        if !greeting.contains("QMP") {
            return None;
        }
        writer
            .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
            .ok()?;
        let mut answer = String::new();
        reader.read_line(&mut answer).ok()?;
        Some(Qmp { reader })
    }

    /// The next event, or None when none came within `wait`; Err when the socket closed.
    fn next_event(&mut self, wait: Duration) -> Result<Option<serde_json::Value>, ()> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(wait))
            .map_err(|_| ())?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(()),
            Ok(_) => Ok(serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .filter(|v| v.get("event").is_some())),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(_) => Err(()),
        }
    }
}
