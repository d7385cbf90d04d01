//! Issue 11 items 2-4 and 6, issue 12 items 5 and 7: outputs that can never be an input, the
//! rename that never replaces a file that appeared, the config tree read without following
//! swapped links, temp files of killed runs, errors naming the output, modes and secrets.

use crate::oracle::{isoinfo, lsdl, need, p, qemu_img};
use crate::prov_fixture::{isotool, run, stderr, stdout, valid_tree, write};
use sha2::Digest;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

fn sha(p: &Path) -> Vec<u8> {
    sha2::Sha256::digest(std::fs::read(p).unwrap()).to_vec()
}

fn refused_same_file(o: &Output) {
    assert!(!o.status.success(), "ran: {}", stderr(o));
    assert!(stderr(o).contains("[same-file]"), "{}", stderr(o));
}

#[test]
fn secondary_inputs_are_never_the_output_even_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // cloud-init-seed --user-data U -o U
    let u = d.join("user-data");
    std::fs::write(&u, b"#cloud-config\nhostname: a\n").unwrap();
    let before = sha(&u);
    let o = run(&[
        "cloud-init-seed",
        "--user-data",
        p(&u),
        "-o",
        p(&u),
        "--force",
    ]);
    refused_same_file(&o);
    // ... or its meta-data through a symlink
    let m = d.join("meta-data");
    std::fs::write(&m, b"instance-id: x\n").unwrap();
    let link = d.join("link");
    std::os::unix::fs::symlink(&m, &link).unwrap();
    let mb = sha(&m);
    let o = run(&[
        "cloud-init-seed",
        "--user-data",
        p(&u),
        "--meta-data",
        p(&link),
        "-o",
        p(&m),
        "--force",
    ]);
    refused_same_file(&o);
    assert_eq!(sha(&u), before);
    assert_eq!(sha(&m), mb);
    // cloud-init-seed --from TREE -o TREE/seed.iso
    let tree = d.join("config");
    valid_tree(&tree);
    let inside = tree.join("consul/seed.iso");
    let o = run(&[
        "cloud-init-seed",
        "--from",
        p(&tree),
        "-o",
        p(&inside),
        "--force",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("inside the config tree"),
        "{}",
        stderr(&o)
    );
    assert!(!inside.exists());
    // ... or onto one of its files
    let region = tree.join("consul/consul_region.json");
    let rb = sha(&region);
    let o = run(&[
        "cloud-init-seed",
        "--from",
        p(&tree),
        "--azure",
        "-o",
        p(&region),
        "--force",
    ]);
    assert!(!o.status.success());
    assert_eq!(sha(&region), rb);
    // remaster -o P.seed --preseed P.seed, and an --add source as output
    let iso = d.join("in.iso");
    std::fs::write(&iso, vec![0u8; 4096]).unwrap();
    let seed = d.join("P.seed");
    std::fs::write(&seed, b"d-i debian-installer/locale string en_US\n").unwrap();
    let sb = sha(&seed);
    let o = run(&[
        "remaster",
        p(&iso),
        "-o",
        p(&seed),
        "--preseed",
        p(&seed),
        "--force",
    ]);
    refused_same_file(&o);
    assert_eq!(sha(&seed), sb);
    let add = d.join("extra.txt");
    std::fs::write(&add, b"extra").unwrap();
    let spec = format!("{}=/extra.txt", p(&add));
    let o = run(&[
        "remaster",
        p(&iso),
        "-o",
        p(&add),
        "--add",
        &spec,
        "--force",
    ]);
    refused_same_file(&o);
    assert_eq!(std::fs::read(&add).unwrap(), b"extra");
}

#[test]
fn convert_of_a_child_onto_its_backing_parent_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    let data: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&base, &data).unwrap();
    let child = dir.path().join("child.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        p(&base),
        "-F",
        "raw",
        p(&child),
    ]);
    let before = sha(&base);
    let o = run(&["convert", p(&child), p(&base), "--to", "raw", "--force"]);
    refused_same_file(&o);
    assert!(stderr(&o).contains("base.raw"), "{}", stderr(&o));
    assert_eq!(sha(&base), before);
}

#[test]
fn two_concurrent_converts_to_one_path_one_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.raw");
    let data: Vec<u8> = (0..(32u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&input, &data).unwrap();
    for round in 0..4 {
        let out = dir.path().join(format!("out{round}.vhd"));
        let spawn = || {
            isotool()
                .args([
                    "--no-sync",
                    "convert",
                    p(&input),
                    p(&out),
                    "--to",
                    "vhd-dynamic",
                ])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let ok = [&a, &b].iter().filter(|o| o.status.success()).count();
        assert_eq!(ok, 1, "round {round}: {} / {}", stderr(&a), stderr(&b));
        let failed = if a.status.success() { &b } else { &a };
        assert!(
            stderr(failed).contains("[output-exists]"),
            "{}",
            stderr(failed)
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".isotool-"))
            .collect();
        assert!(left.is_empty(), "temp files left: {left:?}");
    }
}

#[test]
fn a_tree_file_swapped_for_a_link_never_puts_outside_bytes_on_the_disc() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("config");
    valid_tree(&tree);
    let inside = b"INSIDE-the-tree-0123456789".to_vec();
    let outside = b"OUTSIDE-secret-bytes-ABCDE".to_vec();
    assert_eq!(inside.len(), outside.len());
    write(&tree, "resource/data.txt", &inside);
    let target = tree.join("resource/data.txt");
    let outside_file = dir.path().join("outside.txt");
    std::fs::write(&outside_file, &outside).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, target, outside_file, inside) = (
            stop.clone(),
            target.clone(),
            outside_file.clone(),
            inside.clone(),
        );
        let spare_file = dir.path().join("config-spare");
        let spare_link = dir.path().join("config-link");
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::remove_file(&spare_link);
                std::os::unix::fs::symlink(&outside_file, &spare_link).unwrap();
                std::fs::rename(&spare_link, &target).unwrap();
                std::fs::write(&spare_file, &inside).unwrap();
                std::fs::rename(&spare_file, &target).unwrap();
                n += 1;
            }
            n
        })
    };
    let (mut built, mut refused) = (0, 0);
    for i in 0..40 {
        let out = dir.path().join(format!("p{i}.iso"));
        let o = run(&[
            "--no-sync",
            "provisioning-cd",
            "--from",
            p(&tree),
            "-o",
            p(&out),
        ]);
        if o.status.success() {
            built += 1;
            let bytes = std::fs::read(&out).unwrap();
            assert!(
                !bytes
                    .windows(outside.len())
                    .any(|w| w == outside.as_slice()),
                "run {i}: the outside file's bytes are on the disc"
            );
        } else {
            refused += 1;
            assert!(!out.exists());
            assert!(!stderr(&o).contains("OUTSIDE"), "{}", stderr(&o));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 100, "the swapper only swapped {swaps} times");
    eprintln!("{built} built, {refused} refused, {swaps} swaps");
}

/// Waits for a temp file of `name` in `dir`.
fn wait_for_temp(dir: &Path, name: &str) -> bool {
    for _ in 0..2000 {
        let found = std::fs::read_dir(dir).unwrap().flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&format!(".{name}.isotool-")) && n.ends_with(".tmp")
        });
        if found {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    false
}

fn temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".isotool-"))
        .collect()
}

#[test]
fn the_temp_of_a_killed_run_is_removed_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.raw");
    let data: Vec<u8> = (0..(96u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    std::fs::write(&input, &data).unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("d.qcow2");
    let mut child = isotool()
        .args(["convert", p(&input), p(&out), "--to", "qcow2-compressed"])
        .spawn()
        .unwrap();
    assert!(wait_for_temp(&out_dir, "d.qcow2"), "no temp file appeared");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(
        temps(&out_dir).len(),
        1,
        "the killed run left no temp to clean"
    );
    let o = run(&["--no-sync", "convert", p(&input), p(&out), "--to", "qcow2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(temps(&out_dir).is_empty(), "left: {:?}", temps(&out_dir));
}

/// Runs isotool with `RLIMIT_FSIZE` at `limit` bytes and SIGXFSZ ignored: writes past it fail
/// with EFBIG, as a full disk fails with ENOSPC.
fn run_fsize_limited(args: &[&str], limit: u64) -> Output {
    let mut c = isotool();
    c.args(args);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let r = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.output().unwrap()
}

#[test]
fn a_full_disk_error_names_the_output_the_user_gave() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input-disk.raw");
    let data: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 253) as u8 | 1).collect();
    std::fs::write(&input, &data).unwrap();
    for to in ["raw", "vhd", "vhdx"] {
        let out = dir.path().join(format!("result.{to}"));
        let o = run_fsize_limited(&["convert", p(&input), p(&out), "--to", to], 1 << 20);
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(e.contains(&format!("error: {}", p(&out))), "{to}: {e}");
        assert!(e.contains("File too large"), "{to}: {e}");
        assert!(!e.contains("input-disk"), "{to}: names the input: {e}");
        assert!(!e.contains(".isotool-"), "{to}: names the temp file: {e}");
        assert!(!out.exists());
        assert!(temps(dir.path()).is_empty());
    }
    // The provisioning DVD too.
    let tree = dir.path().join("config");
    valid_tree(&tree);
    write(&tree, "resource/big.bin", &data);
    let out = dir.path().join("dvd.iso");
    let o = run_fsize_limited(
        &["provisioning-cd", "--from", p(&tree), "-o", p(&out)],
        1 << 20,
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains(&format!("error: {}", p(&out))), "{e}");
    assert!(!e.contains(".isotool-") && !e.contains("big.bin"), "{e}");
}

#[test]
fn dry_run_escapes_names_so_none_forges_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("config");
    valid_tree(&tree);
    write(&tree, "resource/x\n- 0644          1 forged.json", b"{}");
    let o = run(&["provisioning-cd", "--from", p(&tree), "--dry-run"]);
    let s = stdout(&o);
    assert!(
        !s.lines().any(|l| l.starts_with("- 0644          1 forged")),
        "a name forged a line: {s}"
    );
    assert!(s.contains("resource/x\\n- 0644"), "{s}");
}

fn mode_tree(root: &Path) {
    valid_tree(root);
    write(root, "scripts/provision.sh", b"#!/bin/sh\necho hi\n");
    let sh = root.join("scripts/provision.sh");
    std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o755)).unwrap();
    write(root, "ssh/id_rsa", b"not really a key\n");
    let key = root.join("ssh/id_rsa");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    write(root, "extra/token.txt", b"t0ken\n");
}

#[test]
fn executables_keep_0755_private_files_0600_and_patterns_add_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("config");
    mode_tree(&tree);
    let out = dir.path().join("p.iso");
    let o = run(&[
        "provisioning-cd",
        "--from",
        p(&tree),
        "-o",
        p(&out),
        "--secret",
        "token.*",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("because it carries secrets"),
        "{}",
        stderr(&o)
    );
    let l = lsdl(&out);
    assert!(
        l["/scripts/provision.sh"].starts_with("-rwxr-xr-x"),
        "{l:?}"
    );
    assert!(l["/ssh/id_rsa"].starts_with("-rw-------"), "{l:?}");
    assert!(l["/extra/token.txt"].starts_with("-rw-------"), "{l:?}");
    assert!(
        l["/consul/consul_region.json"].starts_with("-rw-r--r--"),
        "{l:?}"
    );
    let rl = isoinfo(&["-R", "-l"], &out);
    let line = |name: &str| {
        rl.lines()
            .find(|l| l.trim_end().ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("{name} not listed: {rl}"))
            .to_string()
    };
    assert!(line("provision.sh").starts_with("-rwxr-xr-x"), "{rl}");
    assert!(line("id_rsa").starts_with("-rw-------"), "{rl}");
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The rule, the patterns and each secret's reason are printed by --dry-run.
    let o = run(&[
        "provisioning-cd",
        "--from",
        p(&tree),
        "--dry-run",
        "--secret",
        "token.*",
    ]);
    let s = stdout(&o);
    assert!(s.contains("rule: secret"), "{s}");
    assert!(s.contains("secret pattern: token.*"), "{s}");
    assert!(s.contains("- 0755"), "{s}");
    assert!(
        s.contains("ssh/id_rsa  (secret: its source is mode 0600"),
        "{s}"
    );
    assert!(
        s.contains("extra/token.txt  (secret: --secret token.*)"),
        "{s}"
    );
    // --mode overrides.
    let out2 = dir.path().join("q.iso");
    let o = run(&[
        "provisioning-cd",
        "--from",
        p(&tree),
        "-o",
        p(&out2),
        "--mode",
        "0640",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::metadata(&out2).unwrap().permissions().mode() & 0o777,
        0o640
    );
    need("xorriso", "xorriso");
}

#[test]
fn outputs_without_secrets_honour_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("blank.raw");
    let mut c = isotool();
    c.args(["disk", "create", p(&out), "--size", "1M", "--format", "raw"]);
    // SAFETY: umask is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            libc::umask(0o027);
            Ok(())
        });
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // A seed (user-data can hold passwords) stays 0600 and says why.
    let u = dir.path().join("ud");
    std::fs::write(&u, b"#cloud-config\n").unwrap();
    let seed = dir.path().join("seed.iso");
    let mut c = Command::new(env!("CARGO_BIN_EXE_isotool"));
    c.args(["cloud-init-seed", "--user-data", p(&u), "-o", p(&seed)]);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("0600 because user-data"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::metadata(&seed).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// Issue 11 item 2, the build: an input inside a directory the build owns (it removes its work
/// directory when it starts, replaces provider directories with --force) or an owned directory
/// inside the config tree is a named error before anything is written. Before, the installed
/// disk in `.work/` was deleted by the first step and the build exited 0; the work directory
/// inside the config tree was scanned onto the disc.
#[test]
fn build_inputs_inside_the_directories_it_owns_are_refused() {
    use crate::build_common::{BuildDir, expect_error, installed_disk};
    let b = BuildDir::new();
    let work = b.path().join("out/1.0.0/demo/.work");
    std::fs::create_dir_all(&work).unwrap();
    let disk = work.join("mine.raw");
    installed_disk(&disk, 1);
    let before = sha(&disk);
    let o = b.build(&[
        "--installed-disk",
        "out/1.0.0/demo/.work/mine.raw",
        "--stop-after",
        "verify-iso",
    ]);
    expect_error(
        &o,
        "same-file",
        &["the installed disk out/1.0.0/demo/.work/mine.raw is inside the work directory"],
    );
    assert_eq!(
        sha(&disk),
        before,
        "the installed disk was modified or removed"
    );
    // the preseed in an earlier build's provider directory, replaced by --force
    let raw_dir = b.path().join("out/1.0.0/demo/raw");
    std::fs::create_dir_all(&raw_dir).unwrap();
    std::fs::copy(b.path().join("test.seed"), raw_dir.join("test.seed")).unwrap();
    b.write_toml(&[("preseed", Some("\"out/1.0.0/demo/raw/test.seed\""))]);
    let o = b.build(&["--force", "--stop-after", "verify-iso"]);
    expect_error(
        &o,
        "same-file",
        &["the preseed", "is inside the raw directory"],
    );
    assert!(raw_dir.join("test.seed").is_file());
    // the output directory inside the config tree: the work directory would be on the disc
    b.write_toml(&[("output_directory", Some("\"config/out\""))]);
    let o = b.build(&["--stop-after", "verify-iso"]);
    expect_error(
        &o,
        "same-file",
        &["the work directory config/out/1.0.0/demo/.work would be inside the config tree"],
    );
    assert!(!b.path().join("config/out").exists());
}
