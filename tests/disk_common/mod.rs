//! Helpers shared by the disk integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Runs qemu-img (the oracle; the test fails when it is missing) and returns its stdout,
/// failing the test when it exits non-zero.
pub fn qemu_img(args: &[&str]) -> String {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("qemu-img is required for this oracle test (apt-get install qemu-utils): {e}")
        });
    let so = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed: {so}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    so
}

/// A path as `&str` for command arguments.
pub fn p(x: &Path) -> &str {
    x.to_str().expect("utf-8 path")
}
