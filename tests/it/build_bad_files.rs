//! Bad build files: each one is a named error (file, key, line and offset) before anything runs;
//! nothing is written and no VM starts.

use crate::build_common;
use build_common::*;

/// The run failed before writing anything: no output directory at all.
fn nothing_written(b: &BuildDir) {
    assert!(
        !b.out().exists(),
        "something was written: {:?}",
        listing(&b.out())
    );
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let b = BuildDir::new();
    b.write_toml(&[("isos_url", Some("\"x.iso\""))]);
    let o = b.build(&[]);
    let e = expect_error(
        &o,
        "invalid-config",
        &[
            "build.toml",
            "unknown field `isos_url`",
            "line 12, column 1",
        ],
    );
    assert!(e.contains("iso_url"), "the known keys are listed: {e}");
    nothing_written(&b);
}

#[test]
fn missing_iso_is_named() {
    let b = BuildDir::new();
    b.write_toml(&[("iso_url", Some("\"isos/missing.iso\""))]);
    let o = b.build(&[]);
    expect_error(
        &o,
        "invalid-config",
        &[
            "build file key `iso_url`",
            "isos/missing.iso",
            "No such file",
        ],
    );
    nothing_written(&b);
    // A dry run refuses it too.
    expect_error(&b.build(&["--dry-run"]), "invalid-config", &["iso_url"]);
}

#[test]
fn wrong_checksum_stops_before_anything_is_written() {
    let b = BuildDir::new();
    let wrong = format!("\"sha256:{}\"", "0".repeat(64));
    b.write_toml(&[("iso_checksum", Some(&wrong))]);
    let o = b.build(&[]);
    expect_error(
        &o,
        "bad-checksum",
        &["in.iso", &b.sha256, "nothing was written"],
    );
    nothing_written(&b);
    let before = std::fs::read(b.path().join("in.iso")).unwrap();
    assert_eq!(
        isotool::checksum::sha256_hex(&before),
        b.sha256,
        "the ISO was modified"
    );
}

#[test]
fn checksum_file_without_an_entry_for_the_iso() {
    let b = BuildDir::new();
    std::fs::write(
        b.path().join("SHA256SUMS"),
        format!("{}  other.iso\n", b.sha256),
    )
    .unwrap();
    b.write_toml(&[("iso_checksum", Some("\"file:SHA256SUMS\""))]);
    expect_error(
        &b.build(&[]),
        "invalid-config",
        &["iso_checksum", "no SHA-256 entry for in.iso"],
    );
    nothing_written(&b);
    // With the entry, the same file is accepted (the plan names it).
    std::fs::write(
        b.path().join("SHA256SUMS"),
        format!("{}  in.iso\n", b.sha256),
    )
    .unwrap();
    let o = b.build(&["--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("(from SHA256SUMS)"));
}

#[test]
fn md5_and_none_checksums_are_refused() {
    let b = BuildDir::new();
    for bad in [
        "\"md5:d41d8cd98f00b204e9800998ecf8427e\"",
        "\"none\"",
        "\"sha256:abc\"",
    ] {
        b.write_toml(&[("iso_checksum", Some(bad))]);
        expect_error(&b.build(&[]), "invalid-config", &["iso_checksum"]);
        nothing_written(&b);
    }
}

#[test]
fn unknown_provider_is_named() {
    let b = BuildDir::new();
    b.write_toml(&[("providers", Some("[\"hyperv\", \"digitalocean\"]"))]);
    expect_error(
        &b.build(&[]),
        "invalid-config",
        &[
            "providers",
            "unknown provider \"digitalocean\"",
            "hyperv, azure, raw, openstack, gcp, aws, vmware, virtualbox, vagrant-libvirt",
        ],
    );
    b.write_toml(&[("providers", Some("[\"vagrant\"]"))]);
    expect_error(
        &b.build(&[]),
        "invalid-config",
        &["unknown provider \"vagrant\" (a Vagrant box is made per Vagrant provider"],
    );
    b.write_toml(&[("providers", Some("[\"hyper-v\"]"))]);
    expect_error(
        &b.build(&[]),
        "invalid-config",
        &["unknown provider \"hyper-v\""],
    );
    b.write_toml(&[("providers", Some("[\"raw\", \"raw\"]"))]);
    expect_error(&b.build(&[]), "invalid-config", &["raw is listed twice"]);
    b.write_toml(&[("providers", Some("[]"))]);
    expect_error(&b.build(&[]), "invalid-config", &["at least one provider"]);
    nothing_written(&b);
}

#[test]
fn disk_too_small_for_the_recipe() {
    let b = BuildDir::new();
    // 801 MiB of partitions + 512 MiB of swap (50% of 1 GiB of RAM) + 2 MiB of tables > 1 GiB.
    b.write_toml(&[("disk_size", Some("\"1G\""))]);
    let o = b.build(&[]);
    expect_error(
        &o,
        "invalid-config",
        &[
            "disk_size",
            "too small for the partition recipe",
            "test.seed",
            "1315 MiB",
        ],
    );
    nothing_written(&b);
    // The swap is a share of the RAM: with less memory the same disk fits.
    b.write_toml(&[("disk_size", Some("\"1G\"")), ("memory", Some("256"))]);
    let o = b.build(&["--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // An integer is MiB, as in Packer: 1000 MiB is too small too.
    b.write_toml(&[("disk_size", Some("1000"))]);
    expect_error(
        &b.build(&[]),
        "invalid-config",
        &["1048576000 bytes (1000 MiB) is too small"],
    );
}

#[test]
fn other_bad_values_are_named() {
    let b = BuildDir::new();
    let cases: &[(&str, &str, &str)] = &[
        ("name", "\"../evil\"", "build file key `name`"),
        ("version", "\"\"", "build file key `version`"),
        ("firmware", "\"efi\"", "expected bios, uefi, uefi-secure"),
        ("disk_block_size", "3", "power of two"),
        ("shutdown_timeout", "\"soon\"", "a duration like"),
        ("cd_files", "[\"config\", \"more\"]", "one directory"),
        ("cd_files", "[\"missing\"]", "missing"),
        ("memory", "\"lots\"", "invalid type"),
        ("preseed", "\"no.seed\"", "build file key `preseed`"),
        ("boot_args", "[\"a b\"]", "boot_args"),
    ];
    for (k, v, want) in cases {
        b.write_toml(&[(k, Some(v))]);
        expect_error(&b.build(&[]), "invalid-config", &[want]);
    }
    // Both seeds, or none.
    b.write_toml(&[("kickstart", Some("\"test.seed\""))]);
    expect_error(&b.build(&[]), "invalid-config", &["not both"]);
    b.write_toml(&[("preseed", None)]);
    expect_error(
        &b.build(&[]),
        "invalid-config",
        &["give preseed = FILE or kickstart = FILE"],
    );
    // A missing required key.
    b.write_toml(&[("providers", None)]);
    expect_error(
        &b.build(&[]),
        "invalid-config",
        &["missing field `providers`"],
    );
    nothing_written(&b);
}

#[test]
fn invalid_config_tree_is_refused_before_the_build() {
    let b = BuildDir::new();
    std::fs::write(b.path().join("config/run_provisioning.json"), "{ not json").unwrap();
    expect_error(&b.build(&[]), "invalid-config", &["run_provisioning.json"]);
    nothing_written(&b);
}
