//! End to end, in qemu (TCG where KVM fails): `isotool build` on the fixture ISO (whose initrd
//! installs per the preseed's expert recipe and powers off), then each artifact booted from the
//! disk alone: the Hyper-V VHDX (UEFI) with the provisioning DVD, the Azure fixed VHD (BIOS) with
//! the NoCloud seed. The installed system's first-boot service prints the SHA-256 of every config
//! file and its host name; both are checked against fixtures/config and the name pattern. An
//! installer that reboots instead of powering off fails the build with the reset error.

use crate::build_common;
use crate::launch_common::assert_no_qemu_mentioning;
use build_common::*;
use isotool::launch::{self, Accel, DiskFormat, DiskSpec, Firmware, Machine, QemuConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn fixture_iso() -> PathBuf {
    let out = Command::new("bash")
        .arg(Path::new(ROOT).join("fixtures/ubuntu-like/build.sh"))
        .stdin(Stdio::null())
        .output()
        .expect("running fixtures/ubuntu-like/build.sh");
    assert!(
        out.status.success(),
        "fixture build failed: {}",
        stderr(&out)
    );
    let p = PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("")
            .trim(),
    );
    assert!(p.is_file(), "no fixture ISO");
    p
}

/// A build file for the fixture ISO in `dir`, with `preseed` (absolute paths).
fn build_file(dir: &Path, iso: &Path, preseed: &Path, providers: &str) {
    let sha = isotool::checksum::sha256_hex(&std::fs::read(iso).unwrap());
    let text = format!(
        "name = \"ubuntu-like\"\nversion = \"1.2.3\"\niso_url = {iso:?}\niso_checksum = \"sha256:{sha}\"\n\
         preseed = {preseed:?}\nboot_args = [\"console=ttyS0\"]\ncd_files = [{config:?}]\n\
         disk_size = \"2G\"\nfirmware = \"uefi\"\nmemory = 512\ncpus = 2\nshutdown_timeout = \"20m\"\n\
         output_directory = \"out\"\nproviders = {providers}\n",
        config = Path::new(ROOT).join("fixtures/config")
    );
    std::fs::write(dir.join("build.toml"), text).unwrap();
}

fn isotool_build(dir: &Path) -> std::process::Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(["build", "build.toml", "--progress"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// SHA-256 of every file of fixtures/config, as `HEX  REL` lines, sorted by path.
fn config_hashes() -> Vec<String> {
    let root = Path::new(ROOT).join("fixtures/config");
    let mut v: Vec<(String, String)> = listing(&root)
        .into_iter()
        .filter_map(|l| l.strip_prefix("f ").map(String::from))
        .map(|rel| {
            (
                rel.clone(),
                isotool::checksum::sha256_hex(&std::fs::read(root.join(&rel)).unwrap()),
            )
        })
        .collect();
    v.sort();
    v.into_iter()
        .map(|(rel, h)| format!("{h}  {rel}"))
        .collect()
}

/// Boots `disk` with `cdrom` and returns the serial log.
fn first_boot(
    disk: &Path,
    format: DiskFormat,
    cdrom: &Path,
    firmware: Firmware,
    log: &Path,
) -> String {
    let cfg = QemuConfig {
        disks: vec![DiskSpec {
            path: disk.to_path_buf(),
            format,
        }],
        cdroms: vec![cdrom.to_path_buf()],
        firmware,
        machine: Machine::Pc,
        memory_mib: 512,
        cpus: 2,
        timeout: Duration::from_secs(600),
        serial_log: Some(log.to_path_buf()),
        accel: Accel::Auto,
        ..QemuConfig::default()
    };
    let cancel = AtomicBool::new(false);
    let r = launch::run(&cfg, &cancel, &mut |_| {});
    let text = String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).replace('\r', "");
    if let Err(e) = r {
        panic!("first boot of {} failed: {e}\n{text}", disk.display());
    }
    text
}

fn check_first_boot(serial: &str, source: &str) {
    assert!(
        serial.contains(&format!("CONFIG-SOURCE: {source}")),
        "{serial}"
    );
    let mut got: Vec<String> = serial
        .lines()
        .filter_map(|l| l.trim().strip_prefix("CONFIG-SHA256: ").map(String::from))
        .collect();
    got.sort_by(|a, b| a.split("  ").nth(1).cmp(&b.split("  ").nth(1)));
    got.dedup();
    assert_eq!(
        got,
        config_hashes(),
        "config hashes differ ({source}):\n{serial}"
    );
    let host = serial
        .lines()
        .find_map(|l| l.trim().strip_prefix("HOSTNAME: "))
        .unwrap_or_else(|| panic!("no HOSTNAME line:\n{serial}"));
    let rand = host
        .strip_prefix("cvubuntu-like-1-2-3-")
        .unwrap_or_else(|| panic!("host name {host:?} is not cvubuntu-like-1-2-3-<16 chars>"));
    assert_eq!(rand.len(), 16, "{host}");
    assert!(
        rand.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{host}"
    );
    assert!(serial.contains("PROVISION-DONE"), "{serial}");
}

/// GPT partitions of `img` from `isotool info --json`: (type name, size in MiB).
fn partitions(img: &Path) -> Vec<(String, u64)> {
    let o = Command::new(BIN)
        .args(["info", "--json"])
        .arg(img)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["partitions"]["gpt"]
        .as_array()
        .unwrap_or_else(|| panic!("no GPT: {v}"))
        .iter()
        .map(|p| {
            (
                p["type_name"].as_str().unwrap().to_string(),
                p["size"].as_u64().unwrap() >> 20,
            )
        })
        .collect()
}

#[test]
fn build_installs_converts_and_each_artifact_boots() {
    // VM tests take turns crate-wide (see launch_common::one_vm_at_a_time).
    let _turn = crate::launch_common::one_vm_at_a_time();
    let iso = fixture_iso();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    build_file(
        d,
        &iso,
        &Path::new(ROOT).join("preseed/ubuntu-18.04-server.seed"),
        "[\"hyperv\", \"azure\"]",
    );
    let o = isotool_build(d);
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    let img = d.join("out/1.2.3/ubuntu-like");
    for dir in ["hyperv", "azure"] {
        sha256sum_check(&img.join(dir));
    }
    let vhdx = img.join("hyperv/ubuntu-like-1.2.3_hyperv.vhdx");
    let vhd = img.join("azure/ubuntu-like-1.2.3_azure.vhd");
    // The partitions the shipped preseed's recipe asks for: BIOS boot 1, EFI 64, /boot 256,
    // swap 128 (MiB), / the rest.
    let parts = partitions(&vhdx);
    assert_eq!(parts.len(), 5, "{parts:?}");
    let sizes: Vec<u64> = parts.iter().map(|p| p.1).collect();
    assert_eq!(&sizes[..4], &[1, 64, 256, 128], "{parts:?}");
    assert!(parts[0].0.contains("BIOS boot"), "{parts:?}");
    assert!(parts[1].0.contains("EFI"), "{parts:?}");
    assert!(
        parts[3].0.to_ascii_lowercase().contains("swap"),
        "{parts:?}"
    );
    assert_eq!(partitions(&vhd), parts);

    let work = img.join(".work");
    let s = first_boot(
        &vhdx,
        DiskFormat::Vhdx,
        &work.join("provisioning.iso"),
        Firmware::Uefi,
        &d.join("hyperv.log"),
    );
    check_first_boot(&s, "dvd");
    let s = first_boot(
        &vhd,
        DiskFormat::Vpc,
        &work.join("seed.iso"),
        Firmware::Bios,
        &d.join("azure.log"),
    );
    check_first_boot(&s, "nocloud");
    assert_no_qemu_mentioning(d);
}

#[test]
fn installer_that_reboots_fails_with_the_reset_error() {
    // VM tests take turns crate-wide (see launch_common::one_vm_at_a_time).
    let _turn = crate::launch_common::one_vm_at_a_time();
    let iso = fixture_iso();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let shipped =
        std::fs::read_to_string(Path::new(ROOT).join("preseed/ubuntu-18.04-server.seed")).unwrap();
    let broken: String = shipped
        .lines()
        .filter(|l| !l.contains("debian-installer/exit/poweroff"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(broken.contains("finish-install/reboot_in_progress"));
    std::fs::write(d.join("reboot.seed"), broken).unwrap();
    build_file(d, &iso, &d.join("reboot.seed"), "[\"raw\"]");
    let o = isotool_build(d);
    expect_error(&o, "guest-reset", &[]);
    assert!(
        !d.join("out/1.2.3/ubuntu-like/raw").exists(),
        "published after a failed install"
    );
    assert_no_qemu_mentioning(d);
}
