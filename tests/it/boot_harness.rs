//! Self-tests of the boot harness (tests/it/boot.rs): they prove, without isotool's remaster
//! engine, that the harness sees a disc that boots unattended and sees one that waits.
//!
//! - The fixture (fixtures/ubuntu-like) has the shape of Ubuntu 18.04.3 server's ISO.
//! - A hand remaster of the fixture made with xorriso (same config edits the engine must make,
//!   the preseed added, `-boot_image any replay`) reaches the init's markers with SeaBIOS and
//!   with OVMF; the unmodified fixture does not within twice that time (it waits at its menus).
//! - The third-party ISOs (Debian's ipxe.iso and grub-rescue-cdrom.iso) boot as shipped, so the
//!   remastered copies in boot_remaster.rs are compared against a known-good baseline.
//!
//! Needs: qemu-system-x86, ovmf, xorriso, ipxe, grub-rescue-pc, and what fixtures/ubuntu-like
//! needs (see its README.md).

use crate::boot::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const PRESEED_NAME: &str = "harness.seed";

struct HandRemaster {
    iso: PathBuf,
    preseed_sha256: String,
}

/// The fixture remastered by hand with xorriso: the edits an unattended d-i boot needs.
fn hand_remastered() -> &'static HandRemaster {
    static R: OnceLock<HandRemaster> = OnceLock::new();
    R.get_or_init(|| {
        require_program("xorriso", "xorriso");
        let fixture = fixture_iso();
        let dir = scratch_dir("hand-remaster");
        let preseed = write_test_preseed(&dir, PRESEED_NAME);
        let extra_args =
            format!("auto=true priority=critical preseed/file=/cdrom/preseed/{PRESEED_NAME}");

        // isolinux: no gfxboot UI, a short timeout (the default label is `install`).
        let isolinux_cfg = dir.join("isolinux.cfg");
        iso_extract(&fixture, "/isolinux/isolinux.cfg", &isolinux_cfg);
        let text = fs::read_to_string(&isolinux_cfg).expect("read isolinux.cfg");
        assert!(
            text.lines().any(|l| l == "timeout 300") && text.contains("ui gfxboot bootlogo"),
            "fixture isolinux.cfg lacks the stock wait lines:\n{text}"
        );
        let edited: String = text
            .lines()
            .filter(|l| !l.starts_with("ui gfxboot"))
            .map(|l| if l == "timeout 300" { "timeout 1" } else { l })
            .map(|l| format!("{l}\n"))
            .collect();
        write_writable(&isolinux_cfg, &edited);

        // txt.cfg: the preseed arguments on the default entry.
        let txt_cfg = dir.join("txt.cfg");
        iso_extract(&fixture, "/isolinux/txt.cfg", &txt_cfg);
        let text = fs::read_to_string(&txt_cfg).expect("read txt.cfg");
        let stock = "append  file=/cdrom/preseed/ubuntu-server.seed vga=788";
        assert!(text.contains(stock), "fixture txt.cfg lacks `{stock}`:\n{text}");
        let edited = text.replacen(
            stock,
            &format!("append  file=/cdrom/preseed/ubuntu-server.seed {extra_args} vga=788"),
            1,
        );
        write_writable(&txt_cfg, &edited);

        // grub.cfg: a timeout (the stock one waits forever) and the preseed arguments.
        let grub_cfg = dir.join("grub.cfg");
        iso_extract(&fixture, "/boot/grub/grub.cfg", &grub_cfg);
        let text = fs::read_to_string(&grub_cfg).expect("read grub.cfg");
        let stock = "linux\t/install/vmlinuz  file=/cdrom/preseed/ubuntu-server.seed quiet ---";
        assert!(text.contains(stock), "fixture grub.cfg lacks `{stock}`:\n{text}");
        assert!(
            !text.contains("set timeout"),
            "fixture grub.cfg must wait forever (no timeout):\n{text}"
        );
        let edited = text
            .replacen(
                stock,
                &format!(
                    "linux\t/install/vmlinuz  file=/cdrom/preseed/ubuntu-server.seed {extra_args} quiet ---"
                ),
                1,
            )
            .replacen("menuentry ", "set timeout=1\nmenuentry ", 1);
        write_writable(&grub_cfg, &edited);

        let iso = dir.join("hand-remastered.iso");
        run_ok(
            Command::new("xorriso")
                .arg("-indev")
                .arg(&fixture)
                .arg("-outdev")
                .arg(&iso)
                .args(["-boot_image", "any", "replay"])
                .arg("-map")
                .arg(&isolinux_cfg)
                .arg("/isolinux/isolinux.cfg")
                .arg("-map")
                .arg(&txt_cfg)
                .arg("/isolinux/txt.cfg")
                .arg("-map")
                .arg(&grub_cfg)
                .arg("/boot/grub/grub.cfg")
                .arg("-map")
                .arg(&preseed)
                .arg(format!("/preseed/{PRESEED_NAME}")),
            "xorriso hand remaster of the fixture",
        );
        HandRemaster {
            iso,
            preseed_sha256: sha256_file(&preseed),
        }
    })
}

fn write_writable(path: &Path, text: &str) {
    // xorriso extracts read-only files (the ISO's modes): replace, do not write through.
    let _ = fs::remove_file(path);
    fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

#[test]
fn harness_fixture_has_the_ubuntu_18_04_3_shape() {
    require_program("xorriso", "xorriso");
    let iso = fixture_iso();
    let out = run_ok(
        Command::new("xorriso")
            .arg("-indev")
            .arg(&iso)
            .args(["-report_el_torito", "plain", "-report_system_area", "plain"])
            .args(["-find", "/", "-exec", "lsdl", "--"]),
        "xorriso report of the fixture",
    );
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let expect = [
        "Volume id    : 'Ubuntu-Server 18.04.3 LTS amd64'",
        "El Torito cat path : /isolinux/boot.cat",
        "El Torito img path :   1  /isolinux/isolinux.bin",
        "El Torito img opts :   1  boot-info-table isohybrid-suitable",
        "El Torito img path :   2  /boot/grub/efi.img",
        "System area summary: MBR isohybrid cyl-align-on GPT APM",
        "MBR partition path :   2  /boot/grub/efi.img",
        "GPT partition path :   2  /boot/grub/efi.img",
        "APM partition path :   1  /boot/grub/efi.img",
        "'/ubuntu' -> '.'",
        "'/md5sum.txt'",
        "'/install/vmlinuz'",
        "'/install/initrd.gz'",
        "'/preseed/ubuntu-server.seed'",
        "'/.disk/info'",
    ];
    for e in expect {
        assert!(report.contains(e), "fixture report lacks `{e}`:\n{report}");
    }
    // El Torito: BIOS entry no-emulation with load size 4; the UEFI entry; MBR partition 1 is
    // bootable (0x80) with type 0x00 from sector 0, partition 2 is type 0xEF.
    let has_line = |pred: &dyn Fn(&[&str]) -> bool| {
        report
            .lines()
            .any(|l| pred(&l.split_whitespace().collect::<Vec<_>>()))
    };
    assert!(
        has_line(&|w| w
            .starts_with(&["El", "Torito", "boot", "img", ":", "1", "BIOS", "y", "none"])
            && w.get(11) == Some(&"4")),
        "no BIOS no-emulation El Torito entry with load size 4:\n{report}"
    );
    assert!(
        has_line(
            &|w| w.starts_with(&["El", "Torito", "boot", "img", ":", "2", "UEFI", "y", "none"])
        ),
        "no UEFI El Torito entry:\n{report}"
    );
    assert!(
        has_line(&|w| w.starts_with(&["MBR", "partition", ":", "1", "0x80", "0x00", "0"])),
        "MBR partition 1 is not bootable type 0x00 from sector 0:\n{report}"
    );
    assert!(
        has_line(&|w| w.starts_with(&["MBR", "partition", ":", "2", "0x00", "0xef"])),
        "MBR partition 2 is not type 0xEF:\n{report}"
    );

    // The stock boot lines the remaster engine must edit.
    let dir = scratch_dir("fixture-shape");
    let txt = dir.join("txt.cfg");
    iso_extract(&iso, "/isolinux/txt.cfg", &txt);
    let txt = fs::read_to_string(&txt).expect("read txt.cfg");
    assert!(txt.contains("default install\nlabel install\n  menu label ^Install Ubuntu Server\n  kernel /install/vmlinuz\n  append  file=/cdrom/preseed/ubuntu-server.seed vga=788 initrd=/install/initrd.gz quiet ---\n"), "{txt}");
    let md5 = dir.join("md5sum.txt");
    iso_extract(&iso, "/md5sum.txt", &md5);
    let md5 = fs::read_to_string(&md5).expect("read md5sum.txt");
    let txt_line = format!(
        "{}  ./isolinux/txt.cfg",
        isotool::checksum::md5_hex(txt.as_bytes())
    );
    assert!(
        md5.lines().any(|l| l == txt_line),
        "md5sum.txt lacks `{txt_line}`:\n{md5}"
    );
}

/// Remastered by hand, the disc reaches the init's markers; unmodified, it does not.
fn harness_sees_boot_and_wait(firmware: Firmware, label: &str) {
    let hand = hand_remastered();
    let fixture = fixture_iso();
    let markers = unattended_markers(PRESEED_NAME, &hand.preseed_sha256);
    let positive = boot_expect_markers(
        &Boot::new(
            &format!("hand-remaster-{label}-cd"),
            &hand.iso,
            firmware,
            Media::Cdrom,
        )
        .markers(&markers),
    );
    // The init saw the preseed on the CD and printed the cmdline it was given.
    assert!(positive.saw("CDROM: /dev/sr0"), "{}", positive.describe());

    let limit = wait_limit(&positive);
    let negative = boot_expect_wait(
        &Boot::new(
            &format!("unmodified-{label}-cd"),
            &fixture,
            firmware,
            Media::Cdrom,
        )
        .markers(&[INIT_MARKER])
        .limit(limit),
        &[INIT_MARKER, "auto=true", "PRESEED-SHA256"],
    );
    if firmware == Firmware::Bios {
        // The wait is isolinux's: gfxboot cannot start without its theme and the boot: prompt
        // comes back after every timeout.
        assert!(
            negative.saw("ISOLINUX") && negative.saw("boot:"),
            "the unmodified disc should wait at isolinux's prompt:\n{}",
            negative.describe()
        );
    }
}

#[test]
fn harness_sees_unattended_boot_and_menu_wait_bios() {
    harness_sees_boot_and_wait(Firmware::Bios, "bios");
}

#[test]
fn harness_sees_unattended_boot_and_menu_wait_uefi() {
    harness_sees_boot_and_wait(Firmware::Uefi, "uefi");
}

#[test]
fn harness_third_party_originals_boot() {
    let ipxe = require_file(IPXE_ISO, "ipxe");
    let grub = require_file(GRUB_RESCUE_ISO, "grub-rescue-pc");
    for boot in third_party_boots(&ipxe, &grub) {
        boot_expect_markers(&boot);
    }
}
