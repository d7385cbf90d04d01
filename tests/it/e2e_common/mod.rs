//! Helpers of the end-to-end install tests (tests/e2e_install*.rs): the isotool binary, the
//! preseed's partition recipe, and VMs run through the launcher (`isotool::launch::run`, which
//! reads the end of a run from QMP's SHUTDOWN reason and kills qemu on every way out): a guest
//! power-off is Ok, a reset, a panic or the time limit are the launcher's named errors. The
//! serial log goes to a file the tests read for the fixture's markers.
//!
//! Acceleration: TCG (nested KVM hangs on these machines, see DESIGN.md);
//! `ISOTOOL_BOOT_ACCEL=kvm` asks for KVM.

#![allow(dead_code)]

use isotool::ErrorKind;
use isotool::launch::{self, Accel, DiskFormat, DiskSpec, Firmware, Machine, QemuConfig};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::boot::{require_ovmf, require_qemu};

/// The shipped preseed template (the recipe the tests install with).
pub fn shipped_preseed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("preseed/ubuntu-18.04-server.seed")
}

/// Runs the isotool binary; fails the test with its output when it does not succeed. (The test
/// crate declares `mod boot_common;` beside `mod e2e_common;`.)
pub fn isotool(args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_isotool"));
    cmd.args(args);
    let out = crate::boot::run_ok(&mut cmd, &format!("isotool {args:?}"));
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

/// One VM run through the launcher (`isotool::launch::run`, as `isotool launch qemu` does):
/// the installer ISO (first CD drive, boots first) or none, more CD drives, disks, a time limit.
#[derive(Clone, Debug)]
pub struct Vm {
    pub label: String,
    pub machine: Machine,
    pub firmware: Firmware,
    pub iso: Option<PathBuf>,
    pub cdroms: Vec<PathBuf>,
    pub disks: Vec<(PathBuf, DiskFormat)>,
    pub limit: Duration,
    pub dir: PathBuf,
}

/// How a run ended.
#[derive(Debug)]
pub struct Run {
    pub label: String,
    pub serial: String,
    /// Ok: the guest powered off (QMP SHUTDOWN, guest-shutdown); else the launcher's error.
    pub result: Result<(), isotool::Error>,
    pub elapsed: Duration,
}

impl Run {
    pub fn describe(&self) -> String {
        let lines: Vec<&str> = self.serial.lines().collect();
        format!(
            "VM `{}`: {:?} after {:.1} s\n--- serial (last 40 lines) ---\n{}",
            self.label,
            self.result,
            self.elapsed.as_secs_f64(),
            lines[lines.len().saturating_sub(40)..].join("\n"),
        )
    }

    /// Fails unless the guest powered itself off.
    pub fn expect_poweroff(&self) {
        assert!(
            self.result.is_ok(),
            "the guest did not power off:\n{}",
            self.describe()
        );
    }

    /// Fails unless the launcher failed with `kind`.
    pub fn expect_error(&self, kind: ErrorKind) {
        assert_eq!(
            self.result.as_ref().err().map(|e| e.kind()),
            Some(kind),
            "{}",
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

impl Vm {
    /// Runs the VM until it powers off, resets, panics or the limit passes (qemu is killed).
    pub fn run(&self) -> Run {
        require_qemu();
        if self.firmware != Firmware::Bios {
            require_ovmf();
        }
        let serial = self.dir.join(format!("{}.serial", self.label));
        let accel = match std::env::var("ISOTOOL_BOOT_ACCEL").as_deref() {
            Ok("kvm") => Accel::Kvm,
            _ => Accel::Tcg,
        };
        let cfg = QemuConfig {
            iso: self.iso.clone(),
            cdroms: self.cdroms.clone(),
            disks: self
                .disks
                .iter()
                .map(|(path, format)| DiskSpec {
                    path: path.clone(),
                    format: *format,
                })
                .collect(),
            firmware: self.firmware,
            machine: self.machine,
            memory_mib: 512,
            timeout: self.limit,
            serial_log: Some(serial.clone()),
            accel,
            ..QemuConfig::default()
        };
        let start = Instant::now();
        let cancel = AtomicBool::new(false);
        let result = launch::run(&cfg, &cancel, &mut |_| {}).map(|_| ());
        Run {
            label: self.label.clone(),
            serial: String::from_utf8_lossy(&fs::read(&serial).unwrap_or_default())
                .replace('\r', ""),
            result,
            elapsed: start.elapsed(),
        }
    }
}

/// Runs VMs side by side (one thread each); results in the same order.
pub fn run_all(vms: &[Vm]) -> Vec<Run> {
    std::thread::scope(|s| {
        let handles: Vec<_> = vms.iter().map(|vm| s.spawn(move || vm.run())).collect();
        let runs: Vec<Run> = handles
            .into_iter()
            .map(|h| h.join().expect("VM thread"))
            .collect();
        for r in &runs {
            eprintln!(
                "VM `{}`: {} after {:.1} s",
                r.label,
                match &r.result {
                    Ok(()) => "powered off".to_string(),
                    Err(e) => format!("error {}", e.kind().code()),
                },
                r.elapsed.as_secs_f64()
            );
        }
        runs
    })
}
