//! Accelerator choice: KVM when it really runs guests, TCG (software emulation) otherwise.
//!
//! `/dev/kvm` opening is not enough: on some hosts (nested or paravirtualised KVM such as
//! `kvm_pvm`) KVM starts but cannot emulate the real-mode, FPU and virtual-8086 code that
//! firmware and boot loaders run ("KVM internal error ... emulation failure" in isolinux and in
//! OVMF's first instructions), and the guest stops or hangs. So `auto` boots a 512-byte probe
//! under KVM first: it goes through real mode (with `fninit`/`fwait`), 32-bit protected mode with
//! a TSS, and an `iretd` into virtual-8086 mode, prints a marker on the serial port from there
//! and leaves through `isa-debug-exit`. Only a probe that reaches its marker and exit code in a
//! few seconds picks KVM. The answer is cached for the process.

use super::process::{RunDir, VmProcess, find_program};
use crate::err;
use crate::error::{IoContext, Result};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An accelerator qemu runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccelKind {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl AccelKind {
    /// qemu's name (`-accel NAME`).
    pub fn qemu_name(self) -> &'static str {
        match self {
            AccelKind::Kvm => "kvm",
            AccelKind::Tcg => "tcg",
        }
    }
}

/// The result of a probe: the accelerator and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelProbe {
    /// The accelerator to use.
    pub accel: AccelKind,
    /// Why, for the user ("/dev/kvm cannot be opened", "probe boot under KVM failed: ...").
    pub reason: String,
}

/// The probe's boot sector (source: `kvm_probe.S` beside this file; built with
/// `as --32 -o p.o kvm_probe.S && ld -m elf_i386 --oformat binary -e 0 -Ttext 0 -o p.bin p.o`).
/// Zero-padded to 510 bytes, then the 0x55AA signature.
const PROBE_CODE: &[u8] = &[
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0xba, 0xf8, 0x03, 0xb0,
    0x52, 0xee, 0xdb, 0xe3, 0x9b, 0xbf, 0x00, 0x50, 0xb9, 0xf0, 0x00, 0x30, 0xc0, 0xf3, 0xaa, 0xc7,
    0x06, 0x66, 0x50, 0x68, 0x00, 0xc6, 0x06, 0xe8, 0x50, 0xff, 0x66, 0xc7, 0x06, 0x04, 0x50, 0x00,
    0x68, 0x00, 0x00, 0xc7, 0x06, 0x08, 0x50, 0x10, 0x00, 0x0f, 0x01, 0x16, 0xe0, 0x7c, 0x0f, 0x20,
    0xc0, 0x66, 0x83, 0xc8, 0x01, 0x0f, 0x22, 0xc0, 0x66, 0xea, 0x50, 0x7c, 0x00, 0x00, 0x08, 0x00,
    0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x70, 0x00, 0x00, 0x66,
    0xba, 0xf8, 0x03, 0xb0, 0x50, 0xee, 0xdb, 0xe3, 0x9b, 0x66, 0xb8, 0x18, 0x00, 0x0f, 0x00, 0xd8,
    0x6a, 0x00, 0x6a, 0x00, 0x6a, 0x00, 0x6a, 0x00, 0x6a, 0x00, 0x68, 0x00, 0x60, 0x00, 0x00, 0x68,
    0x02, 0x30, 0x02, 0x00, 0x6a, 0x00, 0x68, 0x8c, 0x7c, 0x00, 0x00, 0xcf, 0xba, 0xf8, 0x03, 0xbe,
    0xa4, 0x7c, 0x8a, 0x04, 0x84, 0xc0, 0x74, 0x04, 0xee, 0x46, 0xeb, 0xf6, 0xba, 0xf4, 0x00, 0xb0,
    0x10, 0xee, 0xeb, 0xfe, 0x56, 0x0a, 0x49, 0x53, 0x4f, 0x54, 0x4f, 0x4f, 0x4c, 0x2d, 0x4b, 0x56,
    0x4d, 0x2d, 0x50, 0x52, 0x4f, 0x42, 0x45, 0x2d, 0x4f, 0x4b, 0x0a, 0x00, 0x8d, 0xb4, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00,
    0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00, 0xe8, 0x00, 0x00, 0x50, 0x00, 0x89, 0x00, 0x00,
    0x1f, 0x00, 0xc0, 0x7c,
];

/// What the probe prints on the serial port from virtual-8086 mode.
pub const PROBE_MARKER: &str = "ISOTOOL-KVM-PROBE-OK";
/// Value the probe writes to `isa-debug-exit` (qemu exits with `(v << 1) | 1`).
const PROBE_EXIT_STATUS: i32 = (0x10 << 1) | 1;
/// How long the probe may take under KVM (it takes well under a second where KVM works).
pub const PROBE_LIMIT: Duration = Duration::from_secs(15);

/// The probe's 512-byte boot sector.
pub fn probe_image() -> [u8; 512] {
    let mut img = [0u8; 512];
    img[..PROBE_CODE.len()].copy_from_slice(PROBE_CODE);
    img[510] = 0x55;
    img[511] = 0xaa;
    img
}

/// The qemu arguments (after the binary) that run the probe image under `accel`.
pub fn probe_args(accel: AccelKind, image: &Path, serial: &Path) -> Vec<String> {
    let esc = |p: &Path| super::qemu::escape_opt(&p.to_string_lossy());
    vec![
        "-machine".into(),
        "pc".into(),
        "-accel".into(),
        accel.qemu_name().into(),
        "-m".into(),
        "16".into(),
        "-nodefaults".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-chardev".into(),
        format!("file,id=probe,path={}", esc(serial)),
        "-serial".into(),
        "chardev:probe".into(),
        "-device".into(),
        "isa-debug-exit,iobase=0xf4,iosize=0x04".into(),
        "-drive".into(),
        format!("if=ide,format=raw,file={}", esc(image)),
    ]
}

static CACHE: Mutex<Option<AccelProbe>> = Mutex::new(None);

/// The probe's answer if this process already has one.
pub fn cached() -> Option<AccelProbe> {
    CACHE.lock().ok().and_then(|c| c.clone())
}

/// Decides between KVM and TCG for `qemu` (cached per process: the first call probes).
pub fn probe(qemu: &Path) -> Result<AccelProbe> {
    let mut cache = CACHE
        .lock()
        .map_err(|_| err!(External, "KVM probe cache poisoned"))?;
    if let Some(p) = cache.as_ref() {
        return Ok(p.clone());
    }
    let p = probe_uncached(qemu)?;
    *cache = Some(p.clone());
    Ok(p)
}

/// Runs the probe without looking at the cache.
pub fn probe_uncached(qemu: &Path) -> Result<AccelProbe> {
    let qemu = find_program(qemu)?;
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Ok(tcg(format!("/dev/kvm cannot be opened ({e})")));
    }
    let dir = RunDir::create("kvm-probe")?;
    let image = dir.path().join("probe.img");
    std::fs::write(&image, probe_image()).ctx(&image, "writing the KVM probe image")?;
    let serial = dir.path().join("serial.log");
    let stderr = dir.path().join("qemu.stderr");
    let mut args = vec![qemu.to_string_lossy().into_owned()];
    args.extend(probe_args(AccelKind::Kvm, &image, &serial));
    let start = Instant::now();
    let mut vm = VmProcess::spawn(&args, &stderr)?;
    let verdict = loop {
        if let Some(status) = vm.try_wait()? {
            let serial_text = std::fs::read_to_string(&serial).unwrap_or_default();
            let code = status.code();
            break if code == Some(PROBE_EXIT_STATUS) && serial_text.contains(PROBE_MARKER) {
                None
            } else {
                Some(format!(
                    "qemu exited ({status}) {}",
                    first_line(&std::fs::read_to_string(&stderr).unwrap_or_default())
                ))
            };
        }
        let err_text = std::fs::read_to_string(&stderr).unwrap_or_default();
        if err_text.contains("KVM internal error") || err_text.contains("emulation failure") {
            break Some("KVM internal error (emulation failure)".to_string());
        }
        if start.elapsed() >= PROBE_LIMIT {
            break Some(format!("no marker within {} s", PROBE_LIMIT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    vm.kill();
    let secs = start.elapsed().as_secs_f64();
    Ok(match verdict {
        None => AccelProbe {
            accel: AccelKind::Kvm,
            reason: format!("probe boot under KVM reached its marker in {secs:.1} s"),
        },
        Some(why) => tcg(format!(
            "probe boot under KVM failed after {secs:.1} s: {why}"
        )),
    })
}

fn tcg(reason: String) -> AccelProbe {
    AccelProbe {
        accel: AccelKind::Tcg,
        reason,
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .find(|l| !l.trim().is_empty() && !l.contains("warning:"))
        .unwrap_or("")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_image_is_a_boot_sector_with_the_marker() {
        let img = probe_image();
        assert_eq!(&img[510..], &[0x55, 0xaa]);
        assert!(PROBE_CODE.len() <= 510);
        let text = String::from_utf8_lossy(&img);
        assert!(text.contains(PROBE_MARKER));
    }

    #[test]
    fn probe_args_select_the_accelerator_and_the_exit_device() {
        let a = probe_args(AccelKind::Kvm, Path::new("/t/p,1.img"), Path::new("/t/s"));
        let s = a.join(" ");
        assert!(s.contains("-accel kvm"), "{s}");
        assert!(s.contains("isa-debug-exit,iobase=0xf4"), "{s}");
        // A comma in a path is doubled, so it cannot add a qemu option.
        assert!(s.contains("file=/t/p,,1.img"), "{s}");
    }
}
