//! Shared helpers of the ISO / remaster tests: the Ubuntu-shaped mini ISO, running isotool.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub use crate::oracle::{boot_report, extract, lsdl, need, run, xorriso_replay};

pub const BIN: &str = env!("CARGO_BIN_EXE_isotool");

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

pub fn sha(p: &Path) -> String {
    let f = std::fs::File::open(p).unwrap();
    isotool::checksum::sha256_file(&f, p).unwrap()
}
