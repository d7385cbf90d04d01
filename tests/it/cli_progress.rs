//! Progress that moves: a dense disk converted under a pseudo-terminal (`script` gives isotool a
//! terminal on stderr) draws several distinct states and a syncing phase; `--progress=plain`
//! prints lines into a pipe; nothing is drawn off a terminal by default.

use crate::iso_fixture::BIN;
use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

/// A dense raw disk of `mib` MiB: every byte non-zero, so it is one data extent.
fn dense_disk(dir: &Path, mib: u64) -> std::path::PathBuf {
    let p = dir.join("dense.raw");
    let f = std::fs::File::create(&p).unwrap();
    let chunk: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251 + 1) as u8).collect();
    for i in 0..mib / 8 {
        f.write_all_at(&chunk, i * (8 << 20)).unwrap();
    }
    p
}

/// The states a terminal showed: the text between carriage returns / cursor moves, escape
/// sequences removed, blank ones dropped.
fn drawn_states(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let mut clean = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
            clean.push('\n');
        } else if c == '\r' {
            clean.push('\n');
        } else {
            clean.push(c);
        }
    }
    clean
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn cli_progress_moves_under_a_terminal_on_a_dense_disk() {
    crate::oracle::need("script", "util-linux");
    let d = tempfile::tempdir().unwrap();
    let src = dense_disk(d.path(), 1024);
    let out = d.path().join("out.vhd");
    let cmd = format!("{BIN} convert {} {} --sha256", src.display(), out.display());
    let o = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .env("COLUMNS", "120")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let states = drawn_states(&o.stdout);
    let writing: BTreeSet<&String> = states
        .iter()
        .filter(|l| l.contains("writing vhd") && l.contains("GiB"))
        .collect();
    let all: BTreeSet<&String> = states.iter().filter(|l| l.contains('/')).collect();
    assert!(
        all.len() >= 4,
        "fewer than 4 distinct progress states: {states:#?}"
    );
    assert!(
        writing.len() >= 2,
        "the write of a dense disk did not move: {writing:#?}"
    );
    assert!(
        states.iter().any(|l| l.contains("syncing")),
        "no syncing phase: {states:#?}"
    );
    assert!(
        states
            .iter()
            .any(|l| l.contains("sha256") && l.contains("GiB")),
        "sha256 without a known total: {states:#?}"
    );
    // the bytes moved are counted against the known total, never "0 B/0 B"
    assert!(!states.iter().any(|l| l.contains("0 B/0 B")), "{states:#?}");
}

#[test]
fn cli_progress_plain_prints_lines_into_a_pipe_and_auto_prints_nothing() {
    let d = tempfile::tempdir().unwrap();
    let src = dense_disk(d.path(), 64);
    let o = Command::new(BIN)
        .args(["convert", "--progress=plain"])
        .arg(&src)
        .arg(d.path().join("a.vhdx"))
        .output()
        .unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("writing vhdx: 64.00 MiB"), "{err}");
    assert!(err.contains("writing vhdx: done, 64.00 MiB in"), "{err}");
    assert!(
        err.contains("syncing...") && err.contains("syncing: done in"),
        "{err}"
    );
    assert!(!err.contains('\r') && !err.contains('\u{1b}'), "{err}");
    // `--progress` alone means plain (build and launch took it as a flag)
    let o = Command::new(BIN)
        .args(["convert", "--progress"])
        .arg(&src)
        .arg(d.path().join("b.vhdx"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("writing vhdx: done"));
    // off a terminal, auto draws nothing
    let o = Command::new(BIN)
        .arg("convert")
        .arg(&src)
        .arg(d.path().join("c.vhdx"))
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
