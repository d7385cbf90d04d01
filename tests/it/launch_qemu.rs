//! `isotool::launch::run` and `isotool launch qemu` against real qemu: the fixture ISO boots,
//! prints its markers on ttyS0 and powers off (success); variants that reboot, hang or panic
//! must fail with their own error; qemu is never left running.

use crate::launch_common;

use isotool::ErrorKind;
use isotool::launch::{
    self, Accel, AccelKind, DiskFormat, DiskSpec, Firmware, LaunchEvent, Machine, QemuConfig,
};
use launch_common::*;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Generous: TCG on two cores shared with other builds (an idle TCG boot takes 20-30 s).
const BOOT_LIMIT: Duration = Duration::from_secs(300);

/// Boots on `pc` (PIIX IDE); the UEFI test boots on `q35` (AHCI), the default machine.
fn config(iso: &Path, dir: &Path, firmware: Firmware) -> QemuConfig {
    QemuConfig {
        iso: Some(iso.to_path_buf()),
        firmware,
        machine: Machine::Pc,
        memory_mib: 512,
        timeout: BOOT_LIMIT,
        serial_log: Some(dir.join("serial.log")),
        accel: Accel::Tcg,
        ..QemuConfig::default()
    }
}

/// Runs the config, collecting events; checks no qemu is left afterwards.
fn run(
    cfg: &QemuConfig,
    dir: &Path,
    cancel: &AtomicBool,
) -> (isotool::Result<launch::LaunchOutcome>, Vec<LaunchEvent>) {
    let mut events = Vec::new();
    let r = launch::run(cfg, cancel, &mut |e| events.push(e));
    assert_no_stray_qemu(dir);
    (r, events)
}

fn serial(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("serial.log")).unwrap_or_default()
}

#[test]
fn bios_boot_powers_off_with_auto_accel() {
    require_qemu_and_ovmf();
    let iso = fixture_variant(&[]);
    let _vm = one_vm_at_a_time();
    let dir = scratch("bios");
    let cfg = QemuConfig {
        accel: Accel::Auto,
        ..config(&iso, &dir, Firmware::Bios)
    };
    let (r, events) = run(&cfg, &dir, &AtomicBool::new(false));
    let out = r.unwrap_or_else(|e| panic!("BIOS boot failed: {e}"));
    let log = serial(&dir);
    assert!(
        log.contains("FIXTURE-DONE") && log.contains("FIXTURE-END: poweroff"),
        "{log}"
    );
    assert!(
        out.serial_tail.contains("FIXTURE-END: poweroff"),
        "{}",
        out.serial_tail
    );
    assert_eq!(
        out.serial_log.as_deref(),
        Some(dir.join("serial.log").as_path())
    );
    // The accelerator was decided and reported; ticks carried the serial console.
    assert!(
        events
            .iter()
            .any(|e| matches!(e, LaunchEvent::AccelChosen { accel, .. } if *accel == out.accel)),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, LaunchEvent::Started { .. }))
    );
    let ticks_with_lines = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                LaunchEvent::Tick {
                    last_serial_line: Some(_),
                    ..
                }
            )
        })
        .count();
    assert!(
        ticks_with_lines > 0,
        "no tick carried a serial line: {events:?}"
    );
    eprintln!(
        "BIOS boot powered off after {:.1} s under {:?}",
        out.elapsed.as_secs_f64(),
        out.accel
    );
}

#[test]
fn uefi_boot_on_q35_powers_off() {
    require_qemu_and_ovmf();
    let iso = fixture_variant(&[]);
    let _vm = one_vm_at_a_time();
    let dir = scratch("uefi");
    let cfg = QemuConfig {
        machine: Machine::Q35,
        ..config(&iso, &dir, Firmware::Uefi)
    };
    let (r, _) = run(&cfg, &dir, &AtomicBool::new(false));
    let out = r.unwrap_or_else(|e| panic!("UEFI boot failed: {e}"));
    assert_eq!(out.accel, AccelKind::Tcg);
    let log = serial(&dir);
    assert!(log.contains("FIXTURE-END: poweroff"), "{log}");
    // The CD was found on q35's AHCI controller.
    assert!(log.contains("CDROM: /dev/sr0"), "{log}");
    // OVMF ran (its messages are on the same serial port).
    assert!(log.contains("BdsDxe") || log.contains("UEFI"), "{log}");
}

#[test]
fn a_guest_that_reboots_is_a_reset_error() {
    require_qemu_and_ovmf();
    let iso = fixture_variant(&["isotool.fixture=reboot"]);
    let _vm = one_vm_at_a_time();
    let dir = scratch("reset");
    let (r, _) = run(
        &config(&iso, &dir, Firmware::Bios),
        &dir,
        &AtomicBool::new(false),
    );
    let e = r.expect_err("a rebooting guest must not count as success");
    assert_eq!(e.kind(), ErrorKind::GuestReset, "{e}");
    // The error carries the serial log's tail.
    assert!(e.to_string().contains("FIXTURE-END: reboot"), "{e}");
}

#[test]
fn a_guest_that_hangs_is_a_timeout_error() {
    require_qemu_and_ovmf();
    let iso = fixture_variant(&["isotool.fixture=hang"]);
    let _vm = one_vm_at_a_time();
    let dir = scratch("hang");
    let cfg = QemuConfig {
        timeout: Duration::from_secs(40),
        ..config(&iso, &dir, Firmware::Bios)
    };
    let (r, _) = run(&cfg, &dir, &AtomicBool::new(false));
    let e = r.expect_err("a hanging guest must time out");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(
        e.to_string().contains("last lines of the serial console"),
        "{e}"
    );
}

#[test]
fn a_guest_kernel_panic_is_a_panic_error() {
    require_qemu_and_ovmf();
    // console=ttyS0: the kernel prints its panic on the serial port; panic=-1: it then resets
    // at once (a reset that follows a panic is reported as the panic).
    let iso = fixture_variant(&["isotool.fixture=panic", "console=ttyS0", "panic=-1"]);
    let _vm = one_vm_at_a_time();
    let dir = scratch("panic");
    let (r, _) = run(
        &config(&iso, &dir, Firmware::Bios),
        &dir,
        &AtomicBool::new(false),
    );
    let e = r.expect_err("a panicking guest must not count as success");
    assert_eq!(e.kind(), ErrorKind::GuestPanic, "{e}");
    assert!(e.to_string().contains("Kernel panic - not syncing"), "{e}");
}

#[test]
fn cancelling_kills_the_vm() {
    require_qemu_and_ovmf();
    let iso = fixture_variant(&["isotool.fixture=hang"]);
    let _vm = one_vm_at_a_time();
    let dir = scratch("cancel");
    let cancel = AtomicBool::new(false);
    let cfg = config(&iso, &dir, Firmware::Bios);
    let mut pid = None;
    let r = launch::run(&cfg, &cancel, &mut |e| match e {
        LaunchEvent::Started { pid: p, .. } => pid = Some(p),
        LaunchEvent::Tick { elapsed, .. } if elapsed >= Duration::from_secs(3) => {
            cancel.store(true, Ordering::SeqCst)
        }
        _ => {}
    });
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Cancelled);
    let pid = pid.expect("a Started event");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "qemu {pid} still exists after a cancel"
    );
    assert_no_stray_qemu(&dir);
}

#[test]
fn qemu_killed_from_outside_is_a_vm_died_error() {
    require_qemu_and_ovmf();
    let iso = fixture_variant(&[]);
    let _vm = one_vm_at_a_time();
    let dir = scratch("killed");
    let cfg = config(&iso, &dir, Firmware::Bios);
    let mut pid = None;
    let r = launch::run(&cfg, &AtomicBool::new(false), &mut |e| match e {
        LaunchEvent::Started { pid: p, .. } => pid = Some(p),
        LaunchEvent::Tick { elapsed, .. } if elapsed >= Duration::from_secs(2) => {
            if let Some(p) = pid.take() {
                // SAFETY: signalling the qemu this run started.
                unsafe { libc::kill(p as i32, libc::SIGKILL) };
            }
        }
        _ => {}
    });
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::VmDied, "{e}");
    assert_no_stray_qemu(&dir);
}

#[test]
fn a_disk_in_the_wrong_format_is_a_vm_died_error_with_qemus_words() {
    require_qemu_and_ovmf();
    let _vm = one_vm_at_a_time();
    let dir = scratch("badformat");
    let disk = dir.join("disk.raw");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let cfg = QemuConfig {
        disks: vec![DiskSpec {
            path: disk,
            format: DiskFormat::Vhdx,
        }],
        machine: Machine::Pc,
        accel: Accel::Tcg,
        serial_log: Some(dir.join("serial.log")),
        ..QemuConfig::default()
    };
    let (r, _) = run(&cfg, &dir, &AtomicBool::new(false));
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::VmDied, "{e}");
    assert!(e.to_string().to_lowercase().contains("vhdx"), "{e}");
}

#[test]
fn missing_qemu_and_missing_ovmf_name_their_packages() {
    let dir = scratch("missing");
    let iso = dir.join("x.iso");
    std::fs::write(&iso, b"").unwrap();
    let cfg = QemuConfig {
        qemu: "/nonexistent/qemu-system-x86_64".into(),
        iso: Some(iso.clone()),
        ..QemuConfig::default()
    };
    let e = launch::run(&cfg, &AtomicBool::new(false), &mut |_| {}).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MissingTool);
    assert!(
        e.to_string().contains("apt-get install qemu-system-x86"),
        "{e}"
    );

    let cfg = QemuConfig {
        ovmf_dir: "/nonexistent/OVMF".into(),
        firmware: Firmware::Uefi,
        iso: Some(iso.clone()),
        ..QemuConfig::default()
    };
    let e = launch::run(&cfg, &AtomicBool::new(false), &mut |_| {}).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MissingTool);
    assert!(e.to_string().contains("apt-get install ovmf"), "{e}");

    // The CLI: ISOTOOL_QEMU points at nothing.
    let out = Command::new(env!("CARGO_BIN_EXE_isotool"))
        .args(["launch", "qemu", "--accel", "tcg", "--iso"])
        .arg(&iso)
        .env("ISOTOOL_QEMU", "/nonexistent/qemu-system-x86_64")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[missing-tool]") && err.contains("qemu-system-x86"),
        "{err}"
    );
}

#[test]
fn dry_run_prints_the_secure_boot_command_line() {
    let _vm = one_vm_at_a_time();
    let dir = scratch("dryrun");
    let iso = dir.join("in,staller.iso");
    std::fs::write(&iso, b"").unwrap();
    let disk = dir.join("disk.vhdx");
    // A VHDX is recognised from its content: its first 8 bytes.
    let mut bytes = b"vhdxfile".to_vec();
    bytes.resize(4096, 0);
    std::fs::write(&disk, bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_isotool"))
        .args([
            "launch",
            "qemu",
            "--dry-run",
            "--firmware",
            "uefi-secure",
            "--accel",
            "tcg",
        ])
        .arg("--iso")
        .arg(&iso)
        .arg("--disk")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    for want in [
        "qemu-system-x86_64 ",
        "-machine q35,smm=on",
        "-global driver=cfi.pflash01,property=secure,value=on",
        "file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
        "-accel tcg",
        "-no-reboot",
        ",,staller.iso",
        "format=vhdx",
    ] {
        assert!(line.contains(want), "{want:?} not in {line}");
    }
    // Nothing ran.
    assert_no_stray_qemu(&dir);
}

#[test]
fn the_kvm_probe_image_reaches_its_marker_under_tcg() {
    require_qemu_and_ovmf();
    let _vm = one_vm_at_a_time();
    let dir = scratch("probe");
    let image = dir.join("probe.img");
    std::fs::write(&image, launch::accel::probe_image()).unwrap();
    let serial = dir.join("serial.log");
    let status = Command::new("timeout")
        .arg("60")
        .arg("qemu-system-x86_64")
        .args(launch::accel::probe_args(AccelKind::Tcg, &image, &serial))
        .status()
        .unwrap();
    // isa-debug-exit: (0x10 << 1) | 1.
    assert_eq!(
        status.code(),
        Some(33),
        "the probe did not leave through isa-debug-exit"
    );
    let text = std::fs::read_to_string(&serial).unwrap();
    assert!(text.contains(launch::accel::PROBE_MARKER), "{text:?}");
    // It went through real mode, protected mode and virtual-8086 mode, in that order.
    assert!(text.starts_with("RPV"), "{text:?}");
    assert_no_stray_qemu(&dir);
}

#[test]
fn secure_boot_refuses_the_unsigned_fixture_loader() {
    // The fixture's GRUB EFI image is not signed: OVMF with Secure Boot on and Microsoft's keys
    // must refuse it ("Access Denied"), which proves uefi-secure really enforces Secure Boot.
    require_qemu_and_ovmf();
    let iso = fixture_variant(&[]);
    let _vm = one_vm_at_a_time();
    let dir = scratch("secureboot");
    let cfg = QemuConfig {
        machine: Machine::Q35,
        ..config(&iso, &dir, Firmware::UefiSecure)
    };
    let cancel = AtomicBool::new(false);
    // Stop once the firmware gave up on every boot option (it then waits for a key).
    let r = launch::run(&cfg, &cancel, &mut |e| {
        if let LaunchEvent::Tick {
            last_serial_line: Some(l),
            ..
        } = e
            && (l.contains("No bootable option") || l.contains("Press any key"))
        {
            cancel.store(true, Ordering::SeqCst);
        }
    });
    let e = r.expect_err("the unsigned loader must not boot");
    assert_no_stray_qemu(&dir);
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
    let log = serial(&dir);
    assert!(log.contains("Access Denied"), "{log}");
    assert!(
        !log.contains("FIXTURE-INIT"),
        "the unsigned loader ran: {log}"
    );
}

/// A qemu that answers the QMP greeting, then reports a fault on stderr and exits: the error must
/// carry qemu's own words (it used to say only "qemu closed QMP before answering").
#[test]
fn qemu_leaving_during_qmp_setup_is_a_vm_died_error_with_its_stderr() {
    let dir = scratch("qmp-setup");
    let fake = dir.join("qemu-system-x86_64");
    std::fs::write(
        &fake,
        r#"#!/usr/bin/env python3
import socket, sys
args = sys.argv[1:]
spec = next(a for a in args if a.startswith("socket,id=qmp,"))
path = dict(kv.split("=", 1) for kv in spec.split(",") if "=" in kv)["path"]
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
srv.listen(1)
conn, _ = srv.accept()
conn.sendall(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
conn.recv(4096)
sys.stderr.write("qemu-system-x86_64: -device ide-hd: fake fault for the test\n")
sys.stderr.flush()
conn.close()
sys.exit(1)
"#,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let iso = dir.join("x.iso");
    std::fs::write(&iso, b"").unwrap();
    let cfg = QemuConfig {
        qemu: fake,
        iso: Some(iso),
        machine: Machine::Pc,
        accel: Accel::Tcg,
        serial_log: Some(dir.join("serial.log")),
        ..QemuConfig::default()
    };
    let e = launch::run(&cfg, &AtomicBool::new(false), &mut |_| {}).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::VmDied, "{e}");
    assert!(e.to_string().contains("fake fault for the test"), "{e}");
}
