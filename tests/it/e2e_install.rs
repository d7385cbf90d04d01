//! End to end, in qemu: boot -> install -> power off -> convert -> boot the converted disk.
//!
//! The fixture ISO (fixtures/ubuntu-like) remastered with the shipped preseed installs itself
//! onto a blank disk: GPT after the preseed's `partman-auto/expert_recipe`, file systems, kernel,
//! initramfs, GRUB for BIOS and UEFI; then it powers off (QMP `SHUTDOWN`, reason
//! `guest-shutdown`). Two installs run side by side: UEFI on machine q35 (AHCI, like Hyper-V
//! Gen 2) into a blank dynamic VHDX, BIOS on machine pc (PIIX IDE) into a blank raw disk.
//! `isotool info --json` must list the recipe's partitions. Then the UEFI-installed disk becomes
//! a Hyper-V VHDX (1 MiB blocks) booted with OVMF plus the provisioning DVD, and the BIOS-installed
//! disk an Azure fixed VHD booted with SeaBIOS plus the NoCloud seed (standing in for Azure's
//! custom data). The installed system's first-boot service must print the SHA-256 of every file
//! of fixtures/config and a host name `cv<SHORT>-<MAJOR>-<MINOR>-<PATCH>-<16 [a-z0-9]>`.
//!
//! VMs run through the launcher (`isotool::launch::run`). The preseed's finish options are
//! honoured: without `debian-installer/exit/poweroff` the installer reboots
//! (`finish-install/reboot_in_progress`: the launcher's `guest-reset` error) or waits forever
//! (neither: the launcher's `timeout` error, after "INSTALL-FINISH: wait"). A disk too small for
//! the recipe fails the install before anything is written, and the installer waits (timeout).
//!
//! Needs: qemu-system-x86, ovmf, and what fixtures/ubuntu-like needs (its README.md).

use crate::boot as boot_common;
use crate::e2e_common;

use crate::launch_common::assert_no_qemu_mentioning;
use e2e_common::*;
use isotool::ErrorKind;
use isotool::launch::{DiskFormat, Firmware, Machine};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Blank disks: 1 GiB holds the recipe's 961 MiB of minimum sizes.
const DISK_SIZE: &str = "1G";
const DISK_BYTES: u64 = 1 << 30;
/// An install or a first boot takes 60-110 s under TCG on an idle 2-core machine; the suite
/// runs other VMs at the same time.
const VM_LIMIT: Duration = Duration::from_secs(600);
/// The launcher's limit for an installer that waits at its end: long after an install is done.
const WAIT_LIMIT: Duration = Duration::from_secs(330);
/// The limit for an install that fails early (before partitioning): boot + checks.
const SMALL_LIMIT: Duration = Duration::from_secs(200);

/// VM tests take turns crate-wide (the launcher tests' lock): each runs its VMs side by side,
/// more TCG guests than cores at once would only stretch every one toward its time limit, and
/// the launcher tests' stray check must not see another test's VM.
fn vm_turn() -> std::sync::MutexGuard<'static, ()> {
    crate::launch_common::one_vm_at_a_time()
}

const IMAGE_SHORT: &str = "e2e";
const IMAGE_VERSION: &str = "1.2.3";

/// The shipped preseed with this test's image name and version.
fn test_preseed() -> String {
    let text = fs::read_to_string(shipped_preseed()).expect("shipped preseed");
    let text = preseed_with(
        &text,
        "isotool/image_name",
        "d-i isotool/image_name string e2e-base",
    );
    let text = preseed_with(
        &text,
        "isotool/image_short_name",
        &format!("d-i isotool/image_short_name string {IMAGE_SHORT}"),
    );
    preseed_with(
        &text,
        "isotool/image_version",
        &format!("d-i isotool/image_version string {IMAGE_VERSION}"),
    )
}

/// The fixture ISO remastered with `preseed` (as `isotool remaster` does for a build).
fn remaster(dir: &Path, name: &str, preseed: &str) -> PathBuf {
    let seed = dir.join(format!("{name}.seed"));
    fs::write(&seed, preseed).expect("write preseed");
    let iso = dir.join(format!("{name}.iso"));
    let fixture = boot_common::fixture_iso();
    isotool(&[
        "-q",
        "--no-sync",
        "remaster",
        p(&fixture),
        "-o",
        p(&iso),
        "--preseed",
        p(&seed),
        "--preseed-name",
        "install.seed",
    ]);
    iso
}

fn blank_disk(dir: &Path, name: &str, format: &str) -> PathBuf {
    sized_blank_disk(dir, name, format, DISK_SIZE)
}

fn sized_blank_disk(dir: &Path, name: &str, format: &str, size: &str) -> PathBuf {
    let disk = dir.join(name);
    let mut args = vec!["-q", "--no-sync", "disk", "create", "--size", size];
    args.extend(["--format", format, p(&disk)]);
    if format == "vhdx" {
        args.extend(["--block-size", "1M"]);
    }
    isotool(&args);
    disk
}

fn install_vm(
    dir: &Path,
    label: &str,
    firmware: Firmware,
    iso: &Path,
    disk: (PathBuf, DiskFormat),
) -> Vm {
    Vm {
        label: label.to_string(),
        machine: if firmware == Firmware::Bios {
            Machine::Pc
        } else {
            Machine::Q35
        },
        firmware,
        iso: Some(iso.to_path_buf()),
        cdroms: Vec::new(),
        disks: vec![disk],
        limit: VM_LIMIT,
        dir: dir.to_path_buf(),
    }
}

const INSTALL_MARKERS: &[&str] = &[
    "FIXTURE-INIT: started",
    "INSTALL-START: /cdrom/preseed/install.seed",
    "PARTITIONED: ",
    "FORMATTED",
    "BOOTLOADER: bios ",
    "BOOTLOADER: uefi \\EFI\\BOOT\\BOOTX64.EFI",
    "INSTALLED: e2e-base 1.2.3",
    "INSTALL-COMPLETE",
    "INSTALL-FINISH: poweroff",
];

/// Every file of fixtures/config hashed once, and nothing else; the host name's pattern.
fn check_first_boot(run: &Run) {
    run.expect_poweroff();
    run.expect_markers(&[
        "INITRAMFS-ROOT: ",
        "PROVISION-START",
        "PROVISION-DONE",
        "SYSTEM-END: poweroff",
    ]);
    assert!(
        !run.serial.contains("SYSTEM-WARNING"),
        "the installed system's /etc/fstab did not mount:\n{}",
        run.describe()
    );
    assert!(
        !run.serial.contains("SYSTEM-PROVISIONED: already"),
        "not a first boot:\n{}",
        run.describe()
    );
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/config");
    let mut expected: Vec<String> = tree_sha256(&config)
        .into_iter()
        .map(|(rel, sum)| format!("{sum}  {rel}"))
        .collect();
    expected.sort();
    let mut seen = marker_values(&run.serial, "CONFIG-SHA256: ");
    seen.sort();
    assert_eq!(
        seen,
        expected,
        "config hashes differ from fixtures/config:\n{}",
        run.describe()
    );
    let names = marker_values(&run.serial, "HOSTNAME: ");
    assert_eq!(names.len(), 1, "one HOSTNAME line:\n{}", run.describe());
    let prefix = format!("cv{IMAGE_SHORT}-{}-", IMAGE_VERSION.replace('.', "-"));
    let rand = names[0]
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("host name {:?} lacks {prefix:?}", names[0]));
    assert!(
        rand.len() == 16
            && rand
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "host name {:?}: not 16 random [a-z0-9] after {prefix:?}",
        names[0]
    );
}

#[test]
fn install_bios_and_uefi_then_boot_converted_hyperv_and_azure_disks() {
    let _turn = vm_turn();
    let dir = boot_common::scratch_dir("e2e-install");
    let iso = remaster(&dir, "installer", &test_preseed());
    let dvd = dir.join("provisioning.iso");
    let seed = dir.join("seed.iso");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/config");
    isotool(&["-q", "provisioning-cd", "--from", p(&config), "-o", p(&dvd)]);
    isotool(&[
        "-q",
        "cloud-init-seed",
        "--from",
        p(&config),
        "-o",
        p(&seed),
    ]);
    let uefi_disk = blank_disk(&dir, "uefi-install.vhdx", "vhdx");
    let bios_disk = blank_disk(&dir, "bios-install.raw", "raw");

    let installs = run_all(&[
        install_vm(
            &dir,
            "install-uefi",
            Firmware::Uefi,
            &iso,
            (uefi_disk.clone(), DiskFormat::Vhdx),
        ),
        install_vm(
            &dir,
            "install-bios",
            Firmware::Bios,
            &iso,
            (bios_disk.clone(), DiskFormat::Raw),
        ),
    ]);
    assert_no_qemu_mentioning(&dir);
    for run in &installs {
        run.expect_poweroff();
        run.expect_markers(INSTALL_MARKERS);
    }

    let recipe = expert_recipe(&test_preseed());
    assert_eq!(recipe.len(), 5, "BIOS boot, ESP, /boot, swap, /");
    let want: Vec<(String, u64, u64)> = expected_layout(&recipe, DISK_BYTES)
        .into_iter()
        .map(|(t, s, n)| (t.to_string(), s, n))
        .collect();
    for disk in [&uefi_disk, &bios_disk] {
        assert_eq!(
            info_partitions(disk),
            want,
            "partitions of {} (type, start, size) against the recipe",
            disk.display()
        );
    }

    // Hyper-V: dynamic VHDX with 1 MiB blocks; Azure: fixed VHD, whole MiB.
    let hyperv = dir.join("hyperv.vhdx");
    let azure = dir.join("azure.vhd");
    isotool(&[
        "-q",
        "--no-sync",
        "convert",
        p(&uefi_disk),
        p(&hyperv),
        "--to",
        "vhdx",
        "--block-size",
        "1M",
    ]);
    isotool(&[
        "-q",
        "--no-sync",
        "convert",
        p(&bios_disk),
        p(&azure),
        "--azure",
    ]);
    for disk in [&hyperv, &azure] {
        assert_eq!(info_partitions(disk), want, "{}", disk.display());
    }

    let boots = run_all(&[
        Vm {
            label: "hyperv-uefi".into(),
            machine: Machine::Q35,
            firmware: Firmware::Uefi,
            iso: None,
            cdroms: vec![dvd.clone()],
            disks: vec![(hyperv.clone(), DiskFormat::Vhdx)],
            limit: VM_LIMIT,
            dir: dir.clone(),
        },
        Vm {
            label: "azure-bios".into(),
            machine: Machine::Pc,
            firmware: Firmware::Bios,
            iso: None,
            cdroms: vec![seed.clone()],
            disks: vec![(azure.clone(), DiskFormat::Vpc)],
            limit: VM_LIMIT,
            dir: dir.clone(),
        },
    ]);
    assert_no_qemu_mentioning(&dir);
    check_first_boot(&boots[0]);
    assert!(boots[0].serial.contains("CONFIG-SOURCE: dvd "));
    check_first_boot(&boots[1]);
    assert!(boots[1].serial.contains("CONFIG-SOURCE: nocloud "));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn preseed_finish_options_reboot_or_wait_and_a_small_disk_fails() {
    let _turn = vm_turn();
    let dir = boot_common::scratch_dir("e2e-finish");
    let base = test_preseed();
    // Without the poweroff answer: reboot_in_progress makes d-i reboot.
    let reboot = preseed_with(&base, "debian-installer/exit/poweroff", "");
    // Neither: d-i waits at "Installation complete".
    let wait = preseed_with(&reboot, "finish-install/reboot_in_progress", "");
    let reboot_iso = remaster(&dir, "reboot", &reboot);
    let wait_iso = remaster(&dir, "wait", &wait);
    let d1 = blank_disk(&dir, "reboot.raw", "raw");
    let d2 = blank_disk(&dir, "wait.raw", "raw");
    let mut waiting = install_vm(
        &dir,
        "finish-wait",
        Firmware::Bios,
        &wait_iso,
        (d2.clone(), DiskFormat::Raw),
    );
    // An install takes 60-130 s under TCG; the launcher's limit comes well after it.
    waiting.limit = WAIT_LIMIT;
    // A disk smaller than the recipe's minimum sizes (961 MiB): the install fails and waits.
    let d3 = sized_blank_disk(&dir, "small.raw", "raw", "768M");
    let mut small = install_vm(
        &dir,
        "too-small",
        Firmware::Bios,
        &reboot_iso,
        (d3.clone(), DiskFormat::Raw),
    );
    small.limit = SMALL_LIMIT;
    let runs = run_all(&[
        install_vm(
            &dir,
            "finish-reboot",
            Firmware::Bios,
            &reboot_iso,
            (d1.clone(), DiskFormat::Raw),
        ),
        waiting,
        small,
    ]);
    assert_no_qemu_mentioning(&dir);
    let (rebooted, waited, failed) = (&runs[0], &runs[1], &runs[2]);
    rebooted.expect_markers(&["INSTALL-COMPLETE", "INSTALL-FINISH: reboot"]);
    rebooted.expect_error(ErrorKind::GuestReset);
    waited.expect_markers(&["INSTALL-COMPLETE", "INSTALL-FINISH: wait"]);
    waited.expect_error(ErrorKind::Timeout);
    failed.expect_markers(&["INSTALL-FAILED: the recipe needs 961 MiB, the disk has 766"]);
    assert!(
        !failed.serial.contains("PARTITIONED"),
        "a failed install must not partition: {}",
        failed.describe()
    );
    failed.expect_error(ErrorKind::Timeout);
    let _ = fs::remove_dir_all(&dir);
}
