//! Shared helpers of the ISO / remaster integration tests (included with `#[path]`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_isotool");

/// Fails (never skips) when an oracle tool is missing.
pub fn need(tool: &str, package: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "oracle `{tool}` is missing: install the Debian package `{package}`"
    );
}

pub fn fixture_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/iso/make-ubuntu-mini.sh")
}

/// Builds the small Ubuntu-shaped ISO.
pub fn ubuntu_mini(dir: &Path) -> PathBuf {
    need("xorriso", "xorriso");
    need("mkfs.vfat", "dosfstools");
    let out = dir.join("ubuntu-mini.iso");
    let st = Command::new("sh")
        .arg(fixture_script())
        .arg(&out)
        .status()
        .expect("running the fixture script");
    assert!(st.success(), "fixture script failed");
    out
}

pub fn run(cmd: &mut Command) -> String {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn isotool(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("running isotool")
}

pub fn isotool_ok(args: &[&str]) -> String {
    let o = isotool(args);
    assert!(
        o.status.success(),
        "isotool {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// `xorriso -find / -exec lsdl` as path -> line.
pub fn lsdl(iso: &Path) -> std::collections::BTreeMap<String, String> {
    let out = run(Command::new("xorriso")
        .arg("-indev")
        .arg(iso)
        .args(["-find", "/", "-exec", "lsdl"]));
    let mut m = std::collections::BTreeMap::new();
    for l in out.lines() {
        if let Some(i) = l.find(" '/") {
            let path = l[i + 2..].split('\'').next().unwrap_or("").to_string();
            m.insert(path, l.to_string());
        }
    }
    assert!(
        !m.is_empty(),
        "xorriso listed nothing for {}",
        iso.display()
    );
    m
}

/// El Torito and system-area reports, with the lines that name the drive or random GUIDs
/// dropped and decimal numbers masked (positions may differ).
pub fn boot_report(iso: &Path, mask: bool) -> Vec<String> {
    let out = run(Command::new("xorriso").arg("-indev").arg(iso).args([
        "-report_el_torito",
        "plain",
        "-report_system_area",
        "plain",
    ]));
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            !l.starts_with("Drive current") && !l.starts_with("Media ") && !l.contains("GUID")
        })
        .map(|l| if mask { mask_numbers(l) } else { l.to_string() })
        .collect()
}

fn mask_numbers(l: &str) -> String {
    let mut out = String::new();
    let b = l.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit()
            && !(i > 0 && (b[i - 1] == b'x' || b[i - 1].is_ascii_alphanumeric()))
        {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            out.push('#');
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

pub fn sha(p: &Path) -> String {
    let f = std::fs::File::open(p).unwrap();
    isotool::checksum::sha256_file(&f, p).unwrap()
}

/// xorriso replay of `input` with `-map` pairs, for comparison.
pub fn xorriso_replay(input: &Path, out: &Path, maps: &[(&Path, &str)]) {
    let mut c = Command::new("xorriso");
    c.arg("-indev").arg(input).arg("-outdev").arg(out);
    for (s, d) in maps {
        c.arg("-map").arg(s).arg(d);
    }
    c.args(["-boot_image", "any", "replay"]);
    run(&mut c);
}

pub fn extract(iso: &Path, path: &str, to: &Path) -> Vec<u8> {
    run(Command::new("xorriso")
        .arg("-osirrox")
        .arg("on")
        .arg("-indev")
        .arg(iso)
        .arg("-extract")
        .arg(path)
        .arg(to));
    std::fs::read(to).unwrap()
}
