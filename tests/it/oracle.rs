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

/// Runs `cmd` with a deadline, reading its output on threads. `None` when it had to be killed
/// (xorriso loops forever on some hostile images, e.g. a Rock Ridge CE chain that loops).
pub fn run_with_deadline(cmd: &mut Command, secs: u64) -> Option<Output> {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let mut so = child.stdout.take().expect("piped");
    let mut se = child.stderr.take().expect("piped");
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for the oracle") {
            break Some(s);
        }
        if std::time::Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (stdout, stderr) = (t1.join().expect("reader"), t2.join().expect("reader"));
    status.map(|status| Output {
        status,
        stdout,
        stderr,
    })
}

/// One line of `xorriso -find / -exec lsdl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsdlLine {
    /// `-` `d` `l` `b` `c` `p` `s`, or `e` for the El Torito boot catalog.
    pub kind: char,
    /// The nine permission characters (`rwxr-xr-x`, with s/S/t/T).
    pub perms: String,
    /// The size column: bytes, or `high,low` of the device number for b/c.
    pub size: String,
    /// Symlink target.
    pub target: Option<String>,
}

/// How xorriso read an image: its listing (path -> line, `/` left out), or why it refused.
pub enum XorrisoListing {
    /// Listed.
    Listed(std::collections::BTreeMap<String, LsdlLine>),
    /// Refused, with the reason (exit status, stderr, or "hung").
    Refused(String),
}

/// `xorriso -indev ISO -find / -exec lsdl`, parsed; a refusal (non-zero exit, no ISO 9660
/// image found, or no answer within 60 s) is returned, not failed on.
pub fn xorriso_listing(iso: &Path) -> XorrisoListing {
    let out = run_with_deadline(
        Command::new(need("xorriso", "xorriso"))
            .arg("-indev")
            .arg(iso)
            .args(["-find", "/", "-exec", "lsdl"]),
        60,
    );
    let Some(out) = out else {
        return XorrisoListing::Refused("xorriso did not finish in 60 s".into());
    };
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() || err.contains("No ISO 9660 image") {
        return XorrisoListing::Refused(format!("{}: {err}", out.status));
    }
    let mut m = std::collections::BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(i) = l.find(" '/") else { continue };
        let rest = &l[i + 2..];
        let (path, target) = match rest.split_once("' -> '") {
            Some((p, t)) => (p.to_string(), Some(t.trim_end_matches('\'').to_string())),
            None => (rest.trim_end_matches('\'').to_string(), None),
        };
        let cols: Vec<&str> = l[..i].split_whitespace().collect();
        let kind = cols[0].chars().next().expect("mode column");
        m.insert(
            path,
            LsdlLine {
                kind,
                perms: cols[0][1..].to_string(),
                size: cols[4].to_string(),
                target,
            },
        );
    }
    m.remove("/");
    XorrisoListing::Listed(m)
}

/// Extracts the whole tree of `iso` into `to` with xorriso (`-osirrox on`; device files are not
/// restored; directories made writable in the extraction, then rolled back, so the temporary
/// directory can be removed).
pub fn xorriso_extract_all(iso: &Path, to: &Path) {
    run(Command::new(need("xorriso", "xorriso"))
        .args(["-osirrox", "on"])
        .arg("-indev")
        .arg(iso)
        .args(["-chmod_r", "u+rwx", "/", "--", "-extract", "/"])
        .arg(to)
        .arg("-rollback_end"));
}
