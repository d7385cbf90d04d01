//! The external oracles of the integration tests, in one place: qemu-img, xorriso, isoinfo,
//! sgdisk, fsck.fat, blkid, ... A missing oracle FAILS the test with the Debian package to
//! install (see `.ci/apt-packages`); nothing is skipped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Finds `tool` on PATH (or in the sbin directories, where fsck.fat and blkid live); fails the
/// test naming the Debian package when it is missing.
pub fn need(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("test oracle `{tool}` is missing: install the Debian package `{package}`")
        })
}

/// Runs `cmd`, fails the test when it cannot start or exits non-zero, returns its stdout.
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

/// A path as `&str` for command arguments.
pub fn p(x: &Path) -> &str {
    x.to_str().expect("utf-8 path")
}

/// The qemu-img program (package qemu-utils), required.
pub fn qemu_img_path() -> PathBuf {
    need("qemu-img", "qemu-utils")
}

/// Runs qemu-img and returns what it did, success or not (for tests expecting a refusal).
pub fn qemu_img_output(args: &[&str]) -> Output {
    Command::new(qemu_img_path())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running qemu-img {args:?}: {e}"))
}

/// Runs qemu-img, fails the test when it exits non-zero, returns its stdout.
pub fn qemu_img(args: &[&str]) -> String {
    let out = qemu_img_output(args);
    let so = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed: {so}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    so
}

/// `isoinfo ARGS -i ISO` (package genisoimage), stdout.
pub fn isoinfo(args: &[&str], iso: &Path) -> String {
    run(Command::new(need("isoinfo", "genisoimage"))
        .args(args)
        .arg("-i")
        .arg(iso))
}

/// `xorriso -find / -exec lsdl` as path -> line.
pub fn lsdl(iso: &Path) -> std::collections::BTreeMap<String, String> {
    let out = run(Command::new(need("xorriso", "xorriso"))
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
    let out = run(Command::new(need("xorriso", "xorriso"))
        .arg("-indev")
        .arg(iso)
        .args(["-report_el_torito", "plain", "-report_system_area", "plain"]));
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

/// xorriso replay of `input` with `-map` pairs, for comparison.
pub fn xorriso_replay(input: &Path, out: &Path, maps: &[(&Path, &str)]) {
    let mut c = Command::new(need("xorriso", "xorriso"));
    c.arg("-indev").arg(input).arg("-outdev").arg(out);
    for (s, d) in maps {
        c.arg("-map").arg(s).arg(d);
    }
    c.args(["-boot_image", "any", "replay"]);
    run(&mut c);
}

pub fn extract(iso: &Path, path: &str, to: &Path) -> Vec<u8> {
    run(Command::new(need("xorriso", "xorriso"))
        .arg("-osirrox")
        .arg("on")
        .arg("-indev")
        .arg(iso)
        .arg("-extract")
        .arg(path)
        .arg(to));
    std::fs::read(to).unwrap()
}
