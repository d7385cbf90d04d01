//! Shared helpers of the launcher tests (tests/launch_*.rs): the fixture ISO and its variants
//! that end another way, one VM at a time, and the check that no qemu is left running.

#![allow(dead_code)]

use isotool::context::BuildContext;
use isotool::remaster::{RemasterOptions, Seed, bootcfg::Flavor, remaster};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// VM tests of the whole test crate that use the launcher (launch, e2e, build) run one at a time:
/// 2 shared cores, and the stray check below looks at every VM this test process started.
pub fn one_vm_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Fails the test when qemu or OVMF is missing (never skips).
pub fn require_qemu_and_ovmf() {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| d.join("qemu-system-x86_64").is_file())
    });
    assert!(
        found,
        "qemu-system-x86_64 is not on PATH (apt-get install qemu-system-x86)"
    );
    for f in ["OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"] {
        let p = Path::new("/usr/share/OVMF").join(f);
        assert!(
            p.is_file(),
            "{} is missing (apt-get install ovmf)",
            p.display()
        );
    }
}

/// A scratch directory for one test, under the cargo target dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("launch-tests")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The fixture ISO (built by fixtures/ubuntu-like/build.sh when missing or stale).
pub fn fixture_iso() -> PathBuf {
    static ISO: OnceLock<PathBuf> = OnceLock::new();
    ISO.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ubuntu-like/build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} failed:\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let path = PathBuf::from(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap_or("")
                .trim(),
        );
        assert!(path.is_file(), "the fixture script printed no ISO path");
        path
    })
    .clone()
}

/// The fixture remastered unattended with extra kernel arguments (cached per argument set).
/// `isotool.fixture=reboot|hang|panic` makes its init end that way instead of powering off.
pub fn fixture_variant(kernel_args: &[&str]) -> PathBuf {
    static CACHE: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let key = kernel_args.join(" ");
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let map = cache.get_or_insert_with(HashMap::new);
    if let Some(p) = map.get(&key) {
        return p.clone();
    }
    let label: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let dir = scratch(&format!("iso-{label}"));
    let preseed = dir.join("launch.seed");
    std::fs::write(&preseed, "d-i debian-installer/locale string en_US.UTF-8\n").unwrap();
    let out = dir.join("variant.iso");
    let opts = RemasterOptions {
        input: fixture_iso(),
        output: out.clone(),
        seed: Some(Seed {
            flavor: Flavor::Preseed,
            file: preseed,
            name: "launch.seed".into(),
        }),
        kernel_args: kernel_args.iter().map(|s| s.to_string()).collect(),
        timeout: 1,
        volume_id: None,
        adds: Vec::new(),
        no_boot_edit: false,
        force: true,
        sync: false,
    };
    remaster(&opts, &BuildContext::fixed(1_565_049_600)).unwrap();
    map.insert(key, out.clone());
    out
}

/// Pids of live qemu processes whose command line mentions `needle` (a test's scratch dir).
pub fn qemu_pids_mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let zombie = std::fs::read_to_string(e.path().join("stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true);
        if cmd.contains("qemu-system") && cmd.contains(&needle) && !zombie {
            pids.push(pid);
        }
    }
    pids
}

/// Fails when a live qemu process's command line names `dir` (a test's scratch directory):
/// the one stray-qemu check every VM test uses.
pub fn assert_no_qemu_mentioning(dir: &Path) {
    let left = qemu_pids_mentioning(dir);
    assert!(
        left.is_empty(),
        "qemu left running ({}): pids {left:?}",
        dir.display()
    );
}

/// Fails when a qemu started for `dir`, or by this test process (its run directories are
/// `$TMPDIR/isotool-launch-PID-N` and `isotool-kvm-probe-PID-N`), still runs. Hold
/// [`one_vm_at_a_time`] while calling it.
pub fn assert_no_stray_qemu(dir: &Path) {
    let me = std::process::id();
    for needle in [
        dir.to_path_buf(),
        PathBuf::from(format!("isotool-launch-{me}-")),
        PathBuf::from(format!("isotool-kvm-probe-{me}-")),
    ] {
        assert_no_qemu_mentioning(&needle);
    }
}
