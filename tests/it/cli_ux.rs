//! What a person meets at the command line: closed pipes, `-` as stdout, `-q`, format from the
//! extension, `--help` values and exit codes, completions, the man page.

use crate::iso_fixture::{BIN, ubuntu_mini};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn isotool(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("running isotool")
}

fn ok(args: &[&str]) -> Output {
    let o = isotool(args);
    assert!(
        o.status.success(),
        "isotool {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn err_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs isotool with stdout a pipe whose reading end is already closed: every write to stdout
/// fails with EPIPE (`... | head -1` after head has gone).
fn into_closed_pipe(args: &[&str]) -> Output {
    let (r, w) = std::io::pipe().unwrap();
    drop(r);
    Command::new(BIN)
        .args(args)
        .stdout(w)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn cli_closed_stdout_pipe_ends_quietly_with_status_0() {
    let d = tempfile::tempdir().unwrap();
    let iso = ubuntu_mini(d.path());
    // `azure upload --dry-run` prints its plan without any request (the endpoint is never used).
    let disk = d.path().join("d.raw");
    std::fs::write(&disk, vec![7u8; 1 << 20]).unwrap();
    let sas = "http://127.0.0.1:9/devstoreaccount1/cont/d.vhd?sv=2019-02-02&sp=rw&sig=c2lnbmF0dXJl";
    for args in [
        vec!["azure", "upload", "--dry-run", s(&disk), "--sas-url", sas],
        vec!["iso", "ls", "-R", s(&iso)],
        vec!["iso", "info", s(&iso)],
        vec!["iso", "extract", s(&iso), "/md5sum.txt", "-o", "-"],
        vec!["completions", "bash"],
    ] {
        let o = into_closed_pipe(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", err_of(&o));
        assert!(
            o.stderr.is_empty(),
            "{args:?} printed on stderr: {}",
            err_of(&o)
        );
    }
}

#[test]
fn cli_dash_is_stdout_where_a_stream_makes_sense_and_refused_elsewhere() {
    let d = tempfile::tempdir().unwrap();
    let iso = ubuntu_mini(d.path());
    // iso extract -o -: the file's bytes on stdout, nothing on stderr, no file named "-"
    let o = ok(&["iso", "extract", s(&iso), "/md5sum.txt", "-o", "-"]);
    let file = d.path().join("md5sum.txt");
    ok(&["iso", "extract", s(&iso), "/md5sum.txt", "-o", s(&file)]);
    assert_eq!(o.stdout, std::fs::read(&file).unwrap());
    assert!(o.stdout.len() > 100);
    assert!(!Path::new("-").exists());
    // cloud-init-seed --azure -o -: the custom data on stdout
    let tree = d.path().join("config");
    crate::prov_fixture::valid_tree(&tree);
    let o = ok(&["cloud-init-seed", "--from", s(&tree), "--azure", "-o", "-"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("#cloud-config"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // refused where the output must be a file (or the input seekable), with the reason
    let raw = d.path().join("in.raw");
    std::fs::write(&raw, vec![1u8; 1 << 20]).unwrap();
    for args in [
        vec!["convert", s(&raw), "-", "--to", "vhdx"],
        vec!["convert", "-", "x.vhdx"],
        vec!["disk", "create", "-", "--size", "1M", "--format", "raw"],
        vec!["remaster", s(&iso), "-o", "-", "--volume-id", "X"],
        vec!["provisioning-cd", "--from", s(&tree), "-o", "-"],
        vec!["cloud-init-seed", "--from", s(&tree), "-o", "-"],
        vec!["pack", s(&raw), "--for", "gcp", "-o", "-"],
    ] {
        let o = isotool(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(
            err_of(&o).contains("cannot be `-`"),
            "{args:?}: {}",
            err_of(&o)
        );
    }
    assert!(!Path::new("-").exists());
}

#[test]
fn cli_quiet_silences_every_command_and_results_go_to_stdout() {
    let d = tempfile::tempdir().unwrap();
    let iso = ubuntu_mini(d.path());
    let out = d.path().join("x.txt");
    let o = ok(&[
        "iso",
        "extract",
        "-q",
        s(&iso),
        "/md5sum.txt",
        "-o",
        s(&out),
    ]);
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{o:?}");
    // without -q the summary is a result: stdout
    let o = ok(&[
        "iso",
        "extract",
        s(&iso),
        "/md5sum.txt",
        "-o",
        s(&out),
        "--force",
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("written"));
    assert!(o.stderr.is_empty(), "{}", err_of(&o));
    let seed = d.path().join("a.seed");
    std::fs::write(&seed, "d-i debconf/priority string critical\n").unwrap();
    let o = ok(&[
        "remaster",
        "--quiet",
        s(&iso),
        "-o",
        s(&d.path().join("r.iso")),
        "--preseed",
        s(&seed),
    ]);
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{o:?}");
    let o = ok(&[
        "disk",
        "create",
        "-q",
        s(&d.path().join("q.vhdx")),
        "--size",
        "8M",
    ]);
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{o:?}");
}

#[test]
fn cli_disk_create_takes_the_format_from_the_extension_and_refuses_a_mismatch() {
    let d = tempfile::tempdir().unwrap();
    let raw = d.path().join("blank.raw");
    ok(&["disk", "create", s(&raw), "--size", "1M"]);
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), 1 << 20, "not raw");
    let o = ok(&["info", s(&raw), "--json"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"format\": \"raw\""));
    let vhd = d.path().join("b.vhd");
    ok(&["disk", "create", s(&vhd), "--size", "1M"]);
    let o = ok(&["info", s(&vhd), "--json"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"format\": \"vhd-fixed\""));
    // a mismatch is refused and nothing is written
    let bad = d.path().join("c.raw");
    let o = isotool(&[
        "disk",
        "create",
        s(&bad),
        "--size",
        "1M",
        "--format",
        "vhdx",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err_of(&o).contains("--force-format"), "{}", err_of(&o));
    assert!(!bad.exists());
    // same family is fine (a .vhd may be dynamic), --force-format writes what was asked
    ok(&[
        "disk",
        "create",
        s(&d.path().join("d.vhd")),
        "--size",
        "1M",
        "--format",
        "vhd-dynamic",
    ]);
    ok(&[
        "disk",
        "create",
        s(&bad),
        "--size",
        "1M",
        "--format",
        "vhdx",
        "--force-format",
    ]);
    let o = ok(&["info", s(&bad), "--json"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"format\": \"vhdx\""));
    // no extension and no --format: the values are named
    let o = isotool(&["disk", "create", s(&d.path().join("e")), "--size", "1M"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err_of(&o).contains("vhd-fixed"), "{}", err_of(&o));
    // convert refuses the mismatch the same way
    let o = isotool(&[
        "convert",
        s(&raw),
        s(&d.path().join("f.raw")),
        "--to",
        "qcow2",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err_of(&o).contains("--force-format"), "{}", err_of(&o));
}

#[test]
fn cli_help_lists_values_examples_and_exit_codes() {
    for (args, values) in [
        (
            vec!["convert", "--help"],
            vec!["vhd-fixed", "vhdx-fixed", "qcow2"],
        ),
        (vec!["disk", "create", "--help"], vec!["vhd-dynamic", "raw"]),
        (vec!["validate", "--help"], vec!["azure", "hyperv-gen2"]),
        (vec!["cloud-init-seed", "--help"], vec!["vfat"]),
        (vec!["launch", "qemu", "--help"], vec!["uefi-secure", "tcg"]),
        (vec!["pack", "--help"], vec!["vagrant-libvirt"]),
        (vec!["--help"], vec!["plain"]),
    ] {
        let o = ok(&args);
        let t = String::from_utf8_lossy(&o.stdout);
        for v in values {
            assert!(t.contains(v), "{args:?} does not list {v}:\n{t}");
        }
        assert!(
            t.contains("Exit status"),
            "{args:?} has no exit codes:\n{t}"
        );
    }
    for sub in [
        "convert",
        "info",
        "validate",
        "pack",
        "remaster",
        "provisioning-cd",
        "cloud-init-seed",
        "build",
    ] {
        let o = ok(&[sub, "--help"]);
        let t = String::from_utf8_lossy(&o.stdout);
        assert!(t.contains("Examples:"), "{sub} --help has no examples");
        assert!(t.contains("Exit status"), "{sub} --help has no exit codes");
    }
    // a closed set refuses other values at parse time (status 2) and names the values
    let o = isotool(&["validate", "x.vhd", "--for", "aws"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err_of(&o).contains("hyperv-gen1"), "{}", err_of(&o));
}

#[test]
fn cli_completions_generate_for_bash_zsh_fish() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef isotool"),
        ("fish", "complete -c isotool"),
        ("elvish", "isotool"),
        ("powershell", "isotool"),
    ] {
        let o = ok(&["completions", shell]);
        let t = String::from_utf8_lossy(&o.stdout);
        assert!(t.contains(marker), "{shell}: {t}");
        assert!(t.contains("provisioning-cd"), "{shell} misses subcommands");
    }
    // the bash script is valid bash and completes the format values
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("isotool.bash");
    std::fs::write(&f, ok(&["completions", "bash"]).stdout).unwrap();
    let st = Command::new("bash").arg("-n").arg(&f).status().unwrap();
    assert!(st.success(), "bash -n refused the completion script");
    assert!(std::fs::read_to_string(&f).unwrap().contains("vhdx-fixed"));
    let o = isotool(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn cli_man_page_renders_with_man() {
    crate::oracle::need("man", "man-db");
    let d = tempfile::tempdir().unwrap();
    let page = d.path().join("isotool.1");
    std::fs::write(&page, ok(&["man"]).stdout).unwrap();
    let o = Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(&page)
        .env("MANWIDTH", "100")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    assert!(o.status.success(), "man -l: {}", err_of(&o));
    let t = String::from_utf8_lossy(&o.stdout);
    for want in [
        "NAME",
        "SYNOPSIS",
        "isotool",
        "convert",
        "remaster",
        "Exit status",
    ] {
        assert!(t.contains(want), "the rendered page has no {want}:\n{t}");
    }
    // one page per subcommand into a directory
    let dir = d.path().join("man1");
    std::fs::create_dir(&dir).unwrap();
    ok(&["man", "--dir", s(&dir)]);
    assert!(dir.join("isotool-convert.1").exists());
    assert!(dir.join("isotool-iso-extract.1").exists());
}
