//! Progress that moves: a dense disk converted under a pseudo-terminal (`script` gives isotool a
//! terminal on stderr) draws several distinct states and a syncing phase; `--progress=plain`
//! prints lines into a pipe; nothing is drawn off a terminal by default. The same for
//! `remaster` (the copy of the ISO and of the added files) and `provisioning-cd` (the DVD
//! writer), fed a large sparse file made in no time.

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
    let states = drawn_states(&under_terminal(&cmd));
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

/// A sparse file of `mib` MiB: no data blocks (made at once), read back as zeros, copied as
/// bytes (the ISO writers do not keep holes), so the copy takes a while.
fn sparse_file(p: &Path, mib: u64) {
    std::fs::File::create(p)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
}

/// `remaster ISO -o OUT --add BIG=/extra/big.bin --no-boot-edit` of a `mib` MiB sparse add.
fn remaster_cmd(dir: &Path, mib: u64, extra: &[&str]) -> Vec<String> {
    let iso = crate::iso_fixture::ubuntu_mini(dir);
    let big = dir.join("big.bin");
    sparse_file(&big, mib);
    let mut v: Vec<String> = vec![
        "remaster".into(),
        iso.display().to_string(),
        "-o".into(),
        dir.join("out.iso").display().to_string(),
        "--add".into(),
        format!("{}=/extra/big.bin", big.display()),
        "--no-boot-edit".into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// `provisioning-cd --from TREE -o OUT` of a valid tree holding a `mib` MiB sparse file.
fn provisioning_cmd(dir: &Path, mib: u64, extra: &[&str]) -> Vec<String> {
    let tree = dir.join("config");
    crate::prov_fixture::valid_tree(&tree);
    std::fs::create_dir_all(tree.join("resource")).unwrap();
    sparse_file(&tree.join("resource/big.bin"), mib);
    let mut v: Vec<String> = vec![
        "provisioning-cd".into(),
        "--from".into(),
        tree.display().to_string(),
        "-o".into(),
        dir.join("dvd.iso").display().to_string(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// The distinct `PHASE: DONE / TOTAL (P%), ...` lines of a plain progress log.
fn plain_states<'a>(err: &'a str, phase: &str) -> BTreeSet<&'a str> {
    err.lines()
        .filter(|l| l.starts_with(&format!("{phase}: ")) && l.contains(" / "))
        .collect()
}

/// Runs `args` with `--progress=plain` into a pipe; checks the phase's lines advance over a
/// known total, then a syncing phase, and no terminal control characters.
fn check_plain(args: &[String], phase: &str) {
    let o = Command::new(BIN)
        .args(args)
        .arg("--progress=plain")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let states = plain_states(&err, phase);
    assert!(
        states.len() >= 3,
        "fewer than 3 distinct {phase} states: {err}"
    );
    // the done count moves against one known total (never 0 B)
    let totals: BTreeSet<&str> = states
        .iter()
        .filter_map(|l| l.split(" / ").nth(1)?.split(" (").next())
        .collect();
    assert_eq!(totals.len(), 1, "{err}");
    assert!(totals.iter().all(|t| t.ends_with("MiB")), "{err}");
    let dones: BTreeSet<&str> = states
        .iter()
        .filter_map(|l| l.strip_prefix(&format!("{phase}: "))?.split(" / ").next())
        .collect();
    assert!(dones.len() >= 3, "the byte count did not advance: {err}");
    assert!(err.contains(&format!("{phase}: done, ")), "{err}");
    assert!(
        err.contains("syncing...") && err.contains("syncing: done in"),
        "no syncing phase: {err}"
    );
    assert!(!err.contains('\r') && !err.contains('\u{1b}'), "{err}");
}

#[test]
fn cli_progress_plain_remaster_and_provisioning_cd_advance_in_a_pipe() {
    let d = tempfile::tempdir().unwrap();
    check_plain(&remaster_cmd(d.path(), 384, &[]), "remastering");
    // the hash of the added file for md5sum.txt is a phase of its own
    let d = tempfile::tempdir().unwrap();
    let args = remaster_cmd(d.path(), 384, &[]);
    let o = Command::new(BIN)
        .args(&args)
        .arg("--progress=plain")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("md5sum.txt: 384.00 MiB"), "{err}");
    let d = tempfile::tempdir().unwrap();
    check_plain(&provisioning_cmd(d.path(), 384, &[]), "writing the ISO");
    // off a terminal, auto draws nothing
    let d = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args(provisioning_cmd(d.path(), 16, &["-q"]))
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Runs the shell command `cmd` under a pseudo-terminal (`script`, 120 columns); it must
/// succeed. Returns what the terminal received.
fn under_terminal(cmd: &str) -> Vec<u8> {
    let o = Command::new("script")
        .args(["-qfec", cmd, "/dev/null"])
        .env("TERM", "xterm")
        .env("COLUMNS", "120")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    o.stdout
}

/// Runs `args` under a pseudo-terminal; the phase drew at least 4 distinct states with bytes of
/// a known total, and a syncing phase.
fn check_terminal(args: &[String], phase: &str) {
    crate::oracle::need("script", "util-linux");
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let cmd = format!("{BIN} {}", quoted.join(" "));
    let states = drawn_states(&under_terminal(&cmd));
    let moving: BTreeSet<&String> = states
        .iter()
        .filter(|l| {
            l.contains(phase) && !l.contains(" 0 B/") && (l.contains("MiB/") || l.contains("GiB/"))
        })
        .collect();
    assert!(
        moving.len() >= 4,
        "fewer than 4 distinct {phase} states: {states:#?}"
    );
    assert!(
        states.iter().any(|l| l.contains("syncing")),
        "no syncing phase: {states:#?}"
    );
    assert!(!states.iter().any(|l| l.contains("0 B/0 B")), "{states:#?}");
}

#[test]
fn cli_progress_remaster_and_provisioning_cd_move_under_a_terminal() {
    let d = tempfile::tempdir().unwrap();
    // 2 GiB: the kernel copies the --add file at about 1 GiB/s, and the bar redraws on its
    // 200 ms tick; 1 GiB gave only 3 states on a quiet machine.
    check_terminal(&remaster_cmd(d.path(), 2048, &[]), "remastering");
    let d = tempfile::tempdir().unwrap();
    check_terminal(&provisioning_cmd(d.path(), 1024, &[]), "writing the ISO");
}
