//! End-to-end boot tests of `isotool remaster`.
//!
//! - The Ubuntu-18.04.3-shaped fixture, remastered with a preseed, boots unattended with no
//!   keyboard input: SeaBIOS and OVMF, from a CD drive and as a hard disk (the hybrid layout).
//!   The fixture's initramfs prints the kernel command line and the SHA-256 of the preseed it
//!   finds on the disc; the serial log must show `auto=true`, `preseed/file=/cdrom/preseed/NAME`,
//!   the extra `--kernel-arg` and the preseed's checksum. (That the unmodified fixture does not
//!   boot, so these checks can fail, is proven in boot_harness.rs.)
//! - Debian's ipxe.iso and grub-rescue-cdrom.iso still boot after a remaster that only adds a
//!   file (`--add SRC=/extra.txt --no-boot-edit`), and the file is on the disc.
//!
//! Needs: qemu-system-x86, ovmf, xorriso, ipxe, grub-rescue-pc, and what fixtures/ubuntu-like
//! needs (see its README.md).

use crate::boot::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const PRESEED_NAME: &str = "isotool-test.seed";
const KERNEL_ARG: &str = "isotool.boot-test=1";

struct Remastered {
    iso: PathBuf,
    preseed_sha256: String,
}

fn isotool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_isotool"))
}

/// The fixture remastered twice, as a user changing the preseed would: first with another
/// preseed, then the output again with the test preseed and an extra kernel argument. The boots
/// below must reach the second preseed (its name and checksum), on both boot paths.
fn remastered_fixture() -> &'static Remastered {
    static R: OnceLock<Remastered> = OnceLock::new();
    R.get_or_init(|| {
        let fixture = fixture_iso();
        let dir = scratch_dir("isotool-remaster");
        let earlier = write_test_preseed(&dir, "earlier.seed");
        let first = dir.join("remastered-first.iso");
        run_ok(
            isotool()
                .arg("remaster")
                .arg(&fixture)
                .arg("-o")
                .arg(&first)
                .arg("--force")
                .arg("--preseed")
                .arg(&earlier)
                .args(["--preseed-name", "earlier.seed"])
                .env("SOURCE_DATE_EPOCH", "1565049600"),
            "isotool remaster of the fixture (first preseed)",
        );
        let preseed = write_test_preseed(&dir, "answers.seed");
        let iso = dir.join("remastered.iso");
        run_ok(
            isotool()
                .arg("remaster")
                .arg(&first)
                .arg("-o")
                .arg(&iso)
                .arg("--preseed")
                .arg(&preseed)
                .args(["--preseed-name", PRESEED_NAME])
                .args(["--kernel-arg", KERNEL_ARG])
                .env("SOURCE_DATE_EPOCH", "1565049600"),
            "isotool remaster of the remastered fixture (second preseed)",
        );
        // The preseed is on the disc, byte for byte (read back by xorriso).
        let back = dir.join("preseed-back.seed");
        iso_extract(&iso, &format!("/preseed/{PRESEED_NAME}"), &back);
        assert_eq!(
            fs::read(&back).expect("read extracted preseed"),
            fs::read(&preseed).expect("read preseed"),
            "the preseed on the remastered disc differs from the input"
        );
        Remastered {
            iso,
            preseed_sha256: sha256_file(&preseed),
        }
    })
}

fn remastered_markers(r: &Remastered) -> Vec<String> {
    let mut m = unattended_markers(PRESEED_NAME, &r.preseed_sha256);
    m.push(KERNEL_ARG.to_string());
    m
}

/// Boots the remastered fixture from CD and as a disk; returns the CD boot's outcome.
fn boots_unattended(firmware: Firmware, label: &str) -> Outcome {
    let r = remastered_fixture();
    let markers = remastered_markers(r);
    let mut cd_outcome = None;
    for (media, media_label, device) in [
        (Media::Cdrom, "cd", "CDROM: /dev/sr0"),
        (Media::Disk, "disk", "CDROM: /dev/sda"),
    ] {
        let out = boot_expect_markers(
            &Boot::new(
                &format!("isotool-remaster-{label}-{media_label}"),
                &r.iso,
                firmware,
                media,
            )
            .markers(&markers),
        );
        assert!(
            out.saw(device),
            "the init found the disc elsewhere than {device}:\n{}",
            out.describe()
        );
        if media == Media::Cdrom {
            cd_outcome = Some(out);
        }
    }
    cd_outcome.expect("the CD boot ran")
}

#[test]
fn remastered_fixture_boots_unattended_bios_cd_and_disk() {
    let positive = boots_unattended(Firmware::Bios, "bios");

    // The boot edits are what makes it boot: the same remaster with --no-boot-edit (preseed on
    // the disc, configs untouched) still waits at isolinux's prompt.
    let fixture = fixture_iso();
    let dir = scratch_dir("isotool-remaster-no-boot-edit");
    let preseed = write_test_preseed(&dir, "answers.seed");
    let iso = dir.join("no-boot-edit.iso");
    run_ok(
        isotool()
            .arg("remaster")
            .arg(&fixture)
            .arg("-o")
            .arg(&iso)
            .arg("--preseed")
            .arg(&preseed)
            .args(["--preseed-name", PRESEED_NAME])
            .arg("--no-boot-edit")
            .env("SOURCE_DATE_EPOCH", "1565049600"),
        "isotool remaster --no-boot-edit of the fixture",
    );
    boot_expect_wait(
        &Boot::new(
            "isotool-remaster-no-boot-edit-bios-cd",
            &iso,
            Firmware::Bios,
            Media::Cdrom,
        )
        .markers(&[INIT_MARKER])
        .limit(wait_limit(&positive)),
        &[INIT_MARKER, "auto=true", "PRESEED-SHA256"],
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn remastered_fixture_boots_unattended_uefi_cd_and_disk() {
    boots_unattended(Firmware::Uefi, "uefi");
}

/// Remasters a third-party ISO, adding one file and editing no boot config.
fn remaster_adding_a_file(input: &Path, dir: &Path, name: &str) -> PathBuf {
    let extra = dir.join(format!("{name}-extra.txt"));
    let body = format!("isotool boot test: added to {name}\n");
    fs::write(&extra, &body).expect("write extra file");
    let out = dir.join(format!("{name}-remastered.iso"));
    run_ok(
        isotool()
            .arg("remaster")
            .arg(input)
            .arg("-o")
            .arg(&out)
            .arg("--add")
            .arg(format!("{}=/extra.txt", extra.display()))
            .arg("--no-boot-edit")
            .env("SOURCE_DATE_EPOCH", "1565049600"),
        &format!("isotool remaster --add of {}", input.display()),
    );
    let back = dir.join(format!("{name}-extra-back.txt"));
    iso_extract(&out, "/extra.txt", &back);
    assert_eq!(
        fs::read_to_string(&back).expect("read extracted file"),
        body,
        "/extra.txt on the remastered {name} differs from the input"
    );
    out
}

#[test]
fn third_party_isos_still_boot_after_remaster_adding_a_file() {
    let ipxe = require_file(IPXE_ISO, "ipxe");
    let grub = require_file(GRUB_RESCUE_ISO, "grub-rescue-pc");
    let dir = scratch_dir("third-party-remaster");
    let ipxe_out = remaster_adding_a_file(&ipxe, &dir, "ipxe");
    let grub_out = remaster_adding_a_file(&grub, &dir, "grub-rescue");
    for boot in third_party_boots(&ipxe_out, &grub_out) {
        let boot = Boot {
            label: format!("remastered-{}", boot.label),
            ..boot
        };
        boot_expect_markers(&boot);
    }
}
