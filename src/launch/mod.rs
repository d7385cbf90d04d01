//! Launchers: boot the artifacts isotool builds and wait for the guest to power off.
//!
//! - [`qemu`]: runs `qemu-system-x86_64` here (BIOS, UEFI, UEFI with Secure Boot), drives it over
//!   QMP and reads the end of the run from QMP's `SHUTDOWN` reason, never from qemu's exit code
//!   (with `-no-reboot` qemu exits 0 for a power-off, a reboot and a panic alike).
//! - [`hyperv`]: writes (and where PowerShell with the Hyper-V module exists, runs) the PowerShell
//!   for a generation 2 Hyper-V VM, the way Packer's `hyperv-iso` does it minus the keystrokes.
//!
//! The library never prints: a run reports [`LaunchEvent`]s to a callback and the CLI draws them.
//!
//! ```no_run
//! use isotool::launch::{self, QemuConfig, Firmware, Machine};
//! use std::sync::atomic::AtomicBool;
//! let cfg = QemuConfig {
//!     iso: Some("installer.iso".into()),
//!     firmware: Firmware::Uefi,
//!     machine: Machine::Q35,
//!     ..QemuConfig::default()
//! };
//! let cancel = AtomicBool::new(false);
//! let outcome = launch::run(&cfg, &cancel, &mut |_event| {})?;
//! # Ok::<(), isotool::Error>(())
//! ```

pub mod accel;
pub mod firmware;
pub mod hyperv;
mod process;
pub mod qemu;
pub mod qmp;
pub mod serial;

use std::path::PathBuf;
use std::time::Duration;

pub use accel::{AccelKind, AccelProbe};
pub use firmware::ResolvedFirmware;
pub use process::{RunDir, kill_live_vms};
pub use qemu::{RunPaths, command_line, dry_run_command_line, run};

/// Default time a run may take before it is a [`crate::ErrorKind::Timeout`] (2 hours).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);
/// Default qemu binary, looked up on `PATH` when not a path.
pub const DEFAULT_QEMU: &str = "qemu-system-x86_64";
/// Where Debian's `ovmf` package puts the UEFI firmware.
pub const DEFAULT_OVMF_DIR: &str = "/usr/share/OVMF";

/// Format of a disk attached to the VM; passed to qemu explicitly, never probed by qemu (a fixed
/// VHD probes as raw, and probing raw images is unsafe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskFormat {
    /// Raw bytes.
    Raw,
    /// VHD (fixed or dynamic), qemu's `vpc` driver.
    Vpc,
    /// VHDX, qemu's `vhdx` driver.
    Vhdx,
    /// qcow2.
    Qcow2,
}

impl DiskFormat {
    /// The name qemu's `-drive format=` takes.
    pub fn qemu_name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Vpc => "vpc",
            DiskFormat::Vhdx => "vhdx",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

impl DiskFormat {
    /// From a format name: `raw`, `vpc` or `vhd`, `vhdx`, `qcow2`.
    pub fn from_name(name: &str) -> Option<DiskFormat> {
        match name {
            "raw" => Some(DiskFormat::Raw),
            "vpc" | "vhd" => Some(DiskFormat::Vpc),
            "vhdx" => Some(DiskFormat::Vhdx),
            "qcow2" => Some(DiskFormat::Qcow2),
            _ => None,
        }
    }
}

/// A disk attached to the VM (writable: the installer writes to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// Image file.
    pub path: PathBuf,
    /// Its format.
    pub format: DiskFormat,
}

impl DiskSpec {
    /// A disk whose format is recognised from its content (see [`crate::disk::probe`]).
    pub fn probe(path: &std::path::Path) -> crate::Result<DiskSpec> {
        let f = crate::disk::probe::probe_format(path)?;
        let name = serde_json::to_value(f)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let format = DiskFormat::from_name(&name).ok_or_else(|| {
            crate::err!(Unsupported, "qemu cannot attach a {name} disk").with_path(path)
        })?;
        Ok(DiskSpec {
            path: path.to_path_buf(),
            format,
        })
    }
}

/// Firmware of the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Firmware {
    /// SeaBIOS (qemu's default).
    #[default]
    Bios,
    /// OVMF (UEFI) without Secure Boot, with a per-run writable copy of the VARS file.
    Uefi,
    /// OVMF with Secure Boot on and Microsoft's keys enrolled (the local counterpart of Hyper-V's
    /// `MicrosoftUEFICertificateAuthority` template); needs `q35` with SMM.
    UefiSecure,
}

/// Accelerator choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Accel {
    /// A short probe boot under KVM decides (once per process); TCG when KVM is missing or fails.
    #[default]
    Auto,
    /// KVM, no fallback.
    Kvm,
    /// TCG (software emulation).
    Tcg,
}

/// qemu machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Machine {
    /// `q35` (PCIe, AHCI): the default, and the only one for Secure Boot.
    #[default]
    Q35,
    /// `pc` (i440FX, PIIX IDE).
    Pc,
}

impl Machine {
    /// qemu's name of the machine type.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
        }
    }
}

/// Everything one qemu run needs.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// qemu binary: a path, or a name looked up on `PATH` (default `qemu-system-x86_64`).
    pub qemu: PathBuf,
    /// Directory holding the OVMF files (default `/usr/share/OVMF`).
    pub ovmf_dir: PathBuf,
    /// The (remastered) installer ISO, first CD drive and first boot device.
    pub iso: Option<PathBuf>,
    /// More CD drives (provisioning DVD, NoCloud seed), in order, read-only.
    pub cdroms: Vec<PathBuf>,
    /// Writable disks, in order.
    pub disks: Vec<DiskSpec>,
    /// Firmware.
    pub firmware: Firmware,
    /// Machine type.
    pub machine: Machine,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Time the guest has to power off.
    pub timeout: Duration,
    /// Where to keep the serial console log (default: in the run's temp dir, removed after).
    pub serial_log: Option<PathBuf>,
    /// Accelerator.
    pub accel: Accel,
}

impl Default for QemuConfig {
    fn default() -> Self {
        QemuConfig {
            qemu: PathBuf::from(DEFAULT_QEMU),
            ovmf_dir: PathBuf::from(DEFAULT_OVMF_DIR),
            iso: None,
            cdroms: Vec::new(),
            disks: Vec::new(),
            firmware: Firmware::Bios,
            machine: Machine::Q35,
            memory_mib: 1024,
            cpus: 1,
            timeout: DEFAULT_TIMEOUT,
            serial_log: None,
            accel: Accel::Auto,
        }
    }
}

/// What a run reports while it goes (the CLI draws these; the library never prints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchEvent {
    /// `--accel auto` is probing KVM with a short boot.
    Probing,
    /// The accelerator is decided (`probed`: by a probe boot in this call).
    AccelChosen {
        /// The accelerator used.
        accel: AccelKind,
        /// Why (e.g. "probe boot under KVM reached its marker in 1.2 s").
        reason: String,
    },
    /// qemu started.
    Started {
        /// qemu's process id.
        pid: u32,
        /// The full command line.
        command: Vec<String>,
    },
    /// Periodic heartbeat while the guest runs.
    Tick {
        /// Time since qemu started.
        elapsed: Duration,
        /// Last non-empty line of the serial console, ANSI escapes removed.
        last_serial_line: Option<String>,
    },
    /// A QMP event other than the ones that end the run (name, e.g. `RESET`, `STOP`).
    Qmp {
        /// Time since qemu started.
        elapsed: Duration,
        /// QMP event name.
        name: String,
    },
}

/// A successful run: the guest powered itself off.
#[derive(Debug, Clone)]
pub struct LaunchOutcome {
    /// Time from qemu's start to the guest's power-off.
    pub elapsed: Duration,
    /// The accelerator used.
    pub accel: AccelKind,
    /// The serial log, when the config asked to keep one.
    pub serial_log: Option<PathBuf>,
    /// Last lines of the serial console.
    pub serial_tail: String,
}
