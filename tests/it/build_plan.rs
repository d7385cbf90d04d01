//! `isotool build --dry-run`: the plan (every step, its inputs and outputs) against a golden
//! file, and nothing run or written.

use crate::build_common;
use build_common::*;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/build_common/plan.golden"
);

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let b = BuildDir::new();
    // A fixed checksum keeps the golden independent of the xorriso that made the ISO (a dry run
    // does not hash the ISO).
    let sum = format!("\"sha256:{}\"", "ab".repeat(32));
    b.write_toml(&[("iso_checksum", Some(&sum)), ("disk_block_size", Some("2"))]);
    let before = listing(b.path());
    let o = b.build(&["--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = String::from_utf8_lossy(&o.stdout).to_string();
    if std::env::var_os("ISOTOOL_BLESS").is_some() {
        std::fs::write(GOLDEN, &got).unwrap();
    }
    let want = std::fs::read_to_string(GOLDEN).unwrap();
    assert_eq!(
        got, want,
        "plan differs from {GOLDEN} (ISOTOOL_BLESS=1 rewrites it)"
    );
    assert_eq!(listing(b.path()), before, "a dry run wrote something");
}

#[test]
fn installed_disk_plan_skips_the_install() {
    let b = BuildDir::new();
    installed_disk(&b.path().join("disk.raw"), 1);
    b.write_toml(&[("providers", Some("[\"azure\"]"))]);
    let o = b.build(&["--dry-run", "--installed-disk", "disk.raw"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan = String::from_utf8_lossy(&o.stdout);
    assert!(!plan.contains("install "), "{plan}");
    assert!(!plan.contains("blank-disk"), "{plan}");
    assert!(plan.contains("convert:azure      fixed VHD"), "{plan}");
    assert!(plan.contains("      in:  disk.raw"), "{plan}");
    // The media an Azure first boot reads, not the others' (the provisioning DVD is always made).
    assert!(
        plan.contains("nocloud-seed") && plan.contains("azure-custom-data"),
        "{plan}"
    );
    // A step name --stop-after does not know is refused before anything runs.
    let o = b.build(&["--stop-after", "nothing"]);
    expect_error(
        &o,
        "invalid-argument",
        &["no such step", "verify-iso, remaster"],
    );
    assert!(!b.out().exists());
}

const GOLDEN_PACKAGES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/build_common/plan_packages.golden"
);

#[test]
fn dry_run_plans_the_package_providers() {
    let b = BuildDir::new();
    let sum = format!("\"sha256:{}\"", "cd".repeat(32));
    b.write_toml(&[
        ("iso_checksum", Some(&sum)),
        (
            "providers",
            Some("[\"openstack\", \"gcp\", \"aws\", \"vmware\", \"virtualbox\", \"vagrant-libvirt\"]"),
        ),
        ("firmware", Some("\"bios\"")),
    ]);
    let before = listing(b.path());
    let o = b.build(&["--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = String::from_utf8_lossy(&o.stdout).to_string();
    if std::env::var_os("ISOTOOL_BLESS").is_some() {
        std::fs::write(GOLDEN_PACKAGES, &got).unwrap();
    }
    let want = std::fs::read_to_string(GOLDEN_PACKAGES).unwrap();
    assert_eq!(
        got, want,
        "plan differs from {GOLDEN_PACKAGES} (ISOTOOL_BLESS=1 rewrites it)"
    );
    assert_eq!(listing(b.path()), before, "a dry run wrote something");
    // "vagrant" alone is not a provider: the error says which two are.
    b.write_toml(&[("providers", Some("[\"vagrant\"]"))]);
    let o = b.build(&["--dry-run"]);
    expect_error(
        &o,
        "invalid-config",
        &["providers", "virtualbox or vagrant-libvirt"],
    );
}
