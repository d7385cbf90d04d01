//! The install step: boots the remastered installer in qemu through the launcher
//! ([`crate::launch`]) with the blank disk, and waits for the guest to
//! power off (QMP `SHUTDOWN` with reason `guest-shutdown`; a reset, a panic, the timeout or qemu
//! dying are the launcher's named errors, with the tail of the serial log).

use super::file::Firmware;
use super::plan::Plan;
use super::{Event, Observer};
use crate::error::Result;
use crate::launch::{self, Accel, DiskFormat, DiskSpec, LaunchEvent, QemuConfig};
use std::sync::atomic::AtomicBool;

/// The launcher's configuration for the install VM of `plan`.
pub fn qemu_config(plan: &Plan) -> QemuConfig {
    let spec = &plan.spec;
    let l = &plan.layout;
    QemuConfig {
        iso: Some(l.installer()),
        // The installer reads the preseed from its own disc; the config is for the first boot.
        cdroms: Vec::new(),
        disks: vec![DiskSpec {
            path: l.disk(),
            format: DiskFormat::Raw,
        }],
        firmware: match spec.firmware {
            Firmware::Bios => launch::Firmware::Bios,
            Firmware::Uefi => launch::Firmware::Uefi,
            Firmware::UefiSecure => launch::Firmware::UefiSecure,
        },
        memory_mib: spec.memory.min(u32::MAX as u64) as u32,
        cpus: spec.cpus.min(u32::MAX as u64) as u32,
        timeout: spec.shutdown_timeout,
        serial_log: Some(l.serial_log()),
        machine: match spec.machine_type.as_str() {
            "q35" => launch::Machine::Q35,
            _ => launch::Machine::Pc,
        },
        accel: match spec.accel.as_str() {
            "kvm" => Accel::Kvm,
            "tcg" => Accel::Tcg,
            _ => Accel::Auto,
        },
        ..QemuConfig::default()
    }
}

/// Runs the installer VM of `plan`; its progress goes out as step status lines.
pub(crate) fn install(plan: &Plan, index: usize, obs: &dyn Observer) -> Result<()> {
    let cfg = qemu_config(plan);
    let cancel = AtomicBool::new(false);
    let mut on_event = |e: LaunchEvent| match e {
        LaunchEvent::Probing => obs.event(&Event::StepStatus {
            index,
            line: "probing KVM with a short boot",
        }),
        LaunchEvent::AccelChosen { accel, reason } => obs.event(&Event::Note {
            index,
            message: &format!("accelerator {}: {reason}", accel.qemu_name()),
        }),
        LaunchEvent::Tick {
            elapsed,
            last_serial_line,
        } => {
            let line = format!(
                "{} {}",
                super::pipeline::elapsed_text(elapsed),
                last_serial_line.unwrap_or_default()
            );
            obs.event(&Event::StepStatus { index, line: &line });
        }
        LaunchEvent::Started { .. } | LaunchEvent::Qmp { .. } => {}
    };
    launch::run(&cfg, &cancel, &mut on_event).map(|_| ())
}
