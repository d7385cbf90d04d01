//! A new user's walk through every subcommand (README, `--help` examples, wrong input): each
//! test here is a defect that walk found, checked through the binary.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output};

fn run<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(dir: &Path, args: I) -> Output {
    Command::new(env!("CARGO_BIN_EXE_isotool"))
        .current_dir(dir)
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("AZURE_CLIENT_SECRET", "probe-secret")
        .env("AZURE_TENANT_ID", "tenant")
        .env("AZURE_CLIENT_ID", "client")
        .env("AZURE_SUBSCRIPTION_ID", "sub")
        .env_remove("AZURE_STORAGE_CONNECTION_STRING")
        .output()
        .expect("running isotool")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// No panic, no abort, no backtrace: a named error and status 1.
fn assert_clean_error(o: &Output, names: &str) {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(err.starts_with("isotool: error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(names), "the error names {names}: {err}");
    for bad in [
        "panicked",
        "backtrace",
        "memory allocation",
        ".tmp",
        ".scratch",
    ] {
        assert!(!err.contains(bad), "{bad} in: {err}");
    }
}

#[test]
fn vmdk_of_an_absurd_size_is_refused_not_an_abort() {
    let d = tempfile::tempdir().unwrap();
    // It allocated the grain directory of 2^35 entries first: "memory allocation of
    // 137438953472 bytes failed", SIGABRT (134) and a temporary file left behind.
    let o = run(d.path(), ["disk", "create", "big.vmdk", "--size", "1E"]);
    assert_clean_error(&o, "big.vmdk");
    assert!(
        text(&o.stderr).contains("grain tables"),
        "{}",
        text(&o.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing left: {left:?}");
    // pack's VMDK is written into a scratch file: its errors name the package asked for.
    std::fs::write(d.path().join("empty.raw"), b"").unwrap();
    let o = run(
        d.path(),
        ["pack", "empty.raw", "--for", "ova", "-o", "e.ova"],
    );
    assert_clean_error(&o, "e.ova");
}

#[test]
fn validate_of_a_missing_file_or_a_directory_is_an_error_not_a_blocked_image() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("adir")).unwrap();
    // It exited 3 ("BLOCKED for azure") with the error as a finding on stdout.
    for (path, why) in [("missing.vhd", "No such file"), ("adir", "is a directory")] {
        let o = run(d.path(), ["validate", path, "--for", "azure"]);
        assert_clean_error(&o, path);
        assert!(text(&o.stderr).contains(why), "{}", text(&o.stderr));
        assert!(o.stdout.is_empty(), "{}", text(&o.stdout));
        let o = run(d.path(), ["validate", path, "--for", "azure", "--json"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(o.stdout.is_empty(), "{}", text(&o.stdout));
    }
}

#[test]
fn iso_commands_on_a_directory_say_it_is_a_directory() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("adir")).unwrap();
    // It said "volume descriptor at offset 32768: the volume descriptor set ends without a
    // terminator", as if a directory were a truncated ISO.
    for args in [
        vec!["iso", "ls", "adir"],
        vec!["iso", "info", "adir"],
        vec!["iso", "extract", "adir", "/x", "-o", "x"],
    ] {
        let o = run(d.path(), &args);
        assert_clean_error(&o, "adir");
        assert!(
            text(&o.stderr).contains("is a directory"),
            "{args:?}: {}",
            text(&o.stderr)
        );
    }
}

#[test]
fn dash_is_refused_with_the_reason_by_every_command_reading_a_file() {
    let d = tempfile::tempdir().unwrap();
    // info, iso ls / info and azure upload took `-` for a file named "-" (No such file).
    for args in [
        vec!["info", "-"],
        vec!["iso", "ls", "-"],
        vec!["iso", "info", "-"],
        vec!["validate", "-", "--for", "azure"],
        vec![
            "azure",
            "upload",
            "-",
            "--container",
            "images",
            "--dry-run",
            "--connection-string",
            "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net",
        ],
    ] {
        let o = run(d.path(), &args);
        assert_clean_error(&o, "cannot be `-`");
    }
}

#[test]
fn pack_json_with_a_non_utf8_output_name_prints_the_document() {
    let d = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(d.path().join("d.raw")).unwrap();
    f.set_len(1 << 20).unwrap();
    drop(f);
    let out = OsString::from(OsStr::from_bytes(b"p\xff.ova"));
    // It wrote the package, then failed with "rendering JSON: path contains invalid UTF-8
    // characters" and status 1: an error with the output in place.
    let args: Vec<OsString> = ["pack", "d.raw", "--for", "ova", "-o"]
        .iter()
        .map(OsString::from)
        .chain([out.clone(), "--json".into()])
        .collect();
    let o = run(d.path(), &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["schema"], "isotool/pack/1");
    assert_eq!(v["output"], "p\u{fffd}.ova");
    // Keys in the documented order (docs/json.md).
    let out = text(&o.stdout);
    let at: Vec<usize> = [
        "schema",
        "input",
        "output",
        "target",
        "members",
        "virtual_size",
        "data_bytes",
    ]
    .iter()
    .map(|k| out.find(&format!("\"{k}\":")).expect(k))
    .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{out}");
    assert!(d.path().join(OsStr::from_bytes(b"p\xff.ova")).exists());
}

fn launch_azure(dir: &Path, key: &str) -> Output {
    launch_azure_with(dir, key, "#cloud-config\n")
}

fn launch_azure_with(dir: &Path, key: &str, custom_data: &str) -> Output {
    std::fs::write(dir.join("custom-data"), custom_data).unwrap();
    run(
        dir,
        [
            "launch",
            "azure",
            "--name",
            "web",
            "--image",
            "web-1.0",
            "--resource-group",
            "rg",
            "--location",
            "westeurope",
            "--ssh-public-key",
            key,
            "--custom-data",
            "custom-data",
            "--dry-run",
        ],
    )
}

#[test]
fn launch_azure_refuses_a_private_key_without_printing_it() {
    let d = tempfile::tempdir().unwrap();
    let body = "b3BlbnNzaC1rZXktdjEAAAAAPROBEPRIVATEKEYBODY";
    std::fs::write(
        d.path().join("id_ed25519"),
        format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n"),
    )
    .unwrap();
    // It put the private key in the VM request's keyData, printed by --dry-run (and sent to
    // Azure without it).
    let o = launch_azure(d.path(), "id_ed25519");
    assert_clean_error(&o, "id_ed25519");
    assert!(
        text(&o.stderr).contains("private key"),
        "{}",
        text(&o.stderr)
    );
    assert!(!text(&o.stdout).contains(body) && !text(&o.stderr).contains(body));
    std::fs::write(d.path().join("notes.txt"), "hello\n").unwrap();
    let o = launch_azure(d.path(), "notes.txt");
    assert_clean_error(&o, "not an OpenSSH public key");
    let pubkey =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIProbeKeyProbeKeyProbeKeyProbeKeyProbe me@probe";
    std::fs::write(d.path().join("id.pub"), format!("{pubkey}\n")).unwrap();
    let o = launch_azure(d.path(), "id.pub");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(pubkey));
}

#[test]
fn launch_azure_without_custom_data_is_a_usage_error() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("id.pub"), "ssh-ed25519 AAAA x\n").unwrap();
    let o = run(
        d.path(),
        [
            "launch",
            "azure",
            "--name",
            "w",
            "--image",
            "i",
            "--resource-group",
            "rg",
            "--location",
            "l",
            "--ssh-public-key",
            "id.pub",
            "--dry-run",
        ],
    );
    // A missing argument is status 2 (README's exit codes); it was 1.
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("--config"), "{}", text(&o.stderr));
}

#[test]
fn every_command_help_has_examples_and_exit_status() {
    let d = tempfile::tempdir().unwrap();
    // README: "Every command prints its synopsis, examples and exit codes with --help"; the
    // azure commands had neither, completions and man no exit codes.
    for cmd in [
        "remaster",
        "iso ls",
        "iso extract",
        "iso info",
        "provisioning-cd",
        "cloud-init-seed",
        "convert",
        "disk create",
        "info",
        "validate",
        "pack",
        "launch qemu",
        "launch hyperv",
        "launch azure",
        "azure upload",
        "azure image create",
        "build",
        "completions",
        "man",
    ] {
        let mut args: Vec<&str> = cmd.split(' ').collect();
        args.push("--help");
        let o = run(d.path(), &args);
        assert!(o.status.success(), "{cmd}");
        let t = text(&o.stdout);
        assert!(
            t.contains("Examples:\n  isotool "),
            "{cmd} --help: no examples"
        );
        assert!(t.contains("Exit status"), "{cmd} --help: no exit status");
    }
}

#[test]
fn json_doc_of_iso_info_names_the_keys_and_values_it_prints() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("t")).unwrap();
    std::fs::write(d.path().join("t/a.txt"), "#cloud-config\n").unwrap();
    let o = run(
        d.path(),
        ["cloud-init-seed", "--user-data", "t/a.txt", "-o", "s.iso"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = run(d.path(), ["iso", "info", "s.iso", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/json.md")).unwrap();
    let start = doc.find("## `isotool/iso-info/1`").unwrap();
    let section = &doc[start..];
    let section = &section[..section[3..].find("\n## ").unwrap()];
    let mut want: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    for t in v["trees"].as_array().unwrap() {
        want.extend(t.as_object().unwrap().keys().cloned());
        // The doc said `Primary`, `Joliet`; the document says "primary", "joliet".
        want.push(t["kind"].as_str().unwrap().to_string());
    }
    want.extend(v["system_area"].as_object().unwrap().keys().cloned());
    for k in want {
        assert!(
            section.contains(&format!("`{k}`")),
            "docs/json.md's iso-info section lacks `{k}`:\n{section}"
        );
    }
}

#[test]
fn launch_qemu_checks_its_cd_images_even_with_dry_run() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("adir")).unwrap();
    std::fs::write(d.path().join("seed.iso"), vec![0u8; 4096]).unwrap();
    // A missing --iso or --cdrom was printed into the qemu command line, status 0 (a missing
    // --disk was already an error).
    for (args, names) in [
        (vec!["--iso", "missing.iso"], "missing.iso"),
        (vec!["--iso", "adir"], "adir"),
        (vec!["--iso", "seed.iso", "--cdrom", "gone.iso"], "gone.iso"),
    ] {
        let mut all = vec!["launch", "qemu", "--dry-run", "--accel", "tcg"];
        all.extend(args);
        let o = run(d.path(), &all);
        assert_clean_error(&o, names);
        assert!(o.stdout.is_empty(), "{}", text(&o.stdout));
    }
    let o = run(
        d.path(),
        [
            "launch",
            "qemu",
            "--dry-run",
            "--accel",
            "tcg",
            "--iso",
            "seed.iso",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("file=seed.iso"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn remaster_refuses_an_empty_seed() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("t")).unwrap();
    std::fs::write(d.path().join("t/user-data"), "#cloud-config\n").unwrap();
    // Any ISO will do: the empty seed is refused before the ISO is read.
    let o = run(
        d.path(),
        [
            "cloud-init-seed",
            "--user-data",
            "t/user-data",
            "-o",
            "in.iso",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    std::fs::write(d.path().join("empty.seed"), b"").unwrap();
    // It wrote an "unattended" ISO whose preseed answers nothing, status 0.
    for flag in ["--preseed", "--kickstart"] {
        // --no-boot-edit: the seed ISO has no boot config (the seed is only added).
        let args = [
            "remaster",
            "in.iso",
            "-o",
            "out.iso",
            flag,
            "empty.seed",
            "--no-boot-edit",
        ];
        let o = run(d.path(), args);
        assert_clean_error(&o, "empty.seed");
        assert!(text(&o.stderr).contains("empty"), "{}", text(&o.stderr));
        assert!(!d.path().join("out.iso").exists());
    }
}

#[test]
fn cloud_init_seed_without_user_data_or_tree_is_a_usage_error() {
    let d = tempfile::tempdir().unwrap();
    // A missing argument is status 2 (README's exit codes); it was 1.
    let o = run(d.path(), ["cloud-init-seed", "-o", "s.iso"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("--user-data"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn quiet_pack_prints_nothing_like_convert() {
    let d = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(d.path().join("d.raw")).unwrap();
    f.set_len(1 << 20).unwrap();
    drop(f);
    // -q is "only results and errors": convert and disk create print nothing, pack printed its
    // summary and every member.
    let o = run(d.path(), ["-q", "convert", "d.raw", "d.vhdx"]);
    assert!(
        o.status.success() && o.stdout.is_empty(),
        "{}",
        text(&o.stdout)
    );
    let o = run(
        d.path(),
        ["-q", "pack", "d.raw", "--for", "gcp", "-o", "d.tar.gz"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn launch_azure_refuses_custom_data_over_azures_limit() {
    let d = tempfile::tempdir().unwrap();
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIProbeKeyProbeKeyProbeKeyProbeKeyProbe me@probe";
    std::fs::write(d.path().join("id.pub"), format!("{key}\n")).unwrap();
    // Azure takes at most 65,535 bytes of custom data; a bigger file was sent as it was (and
    // read whole first). The limit itself is accepted.
    let mut doc = String::from("#cloud-config\n#");
    doc.push_str(&"x".repeat(65_535 - doc.len()));
    let o = launch_azure_with(d.path(), "id.pub", &doc);
    assert!(o.status.success(), "{}", text(&o.stderr));
    doc.push('x');
    let o = launch_azure_with(d.path(), "id.pub", &doc);
    assert_clean_error(&o, "custom-data");
    assert!(
        text(&o.stderr).contains("AZURE_MAX_CUSTOM_DATA (65535 bytes)"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn build_of_dash_is_refused_with_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let o = run(d.path(), ["build", "-"]);
    assert_clean_error(&o, "cannot be `-`");
}

#[test]
fn qcow2_of_an_absurd_size_names_the_output() {
    let d = tempfile::tempdir().unwrap();
    let o = run(d.path(), ["disk", "create", "x.qcow2", "--size", "1E"]);
    assert_clean_error(&o, "x.qcow2");
    let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing left: {left:?}");
}
