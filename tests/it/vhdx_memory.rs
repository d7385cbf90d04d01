//! Memory stays bounded on huge sparse images (issue 11 item 4): a 64 TiB VHDX with 1 MiB
//! blocks has a 512 MiB BAT of "zero" entries; `info` and `validate` of it must stay under
//! 64 MiB of peak RSS (the child's high-water mark, not timed). The old reader held
//! the BAT twice (1.05 GiB).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Peak RSS in KiB of `isotool args` (run to completion), and its exit status.
///
/// The child's own high-water mark (`VmHWM` of /proc/PID/status, per address space) is sampled
/// until wait4 reaps it. wait4's `ru_maxrss` alone is not usable from a test: the kernel carries
/// the spawning process's peak (this test binary's, hundreds of MB while other tests run)
/// across the vfork+exec into the child's figure.
fn peak_rss_kib(args: &[&str]) -> (i64, std::process::ExitStatus) {
    // Reaped by wait4 below, not by Child::wait.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_isotool"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run isotool");
    let pid = child.id() as libc::pid_t;
    let status_file = format!("/proc/{pid}/status");
    let mut peak = 0i64;
    let mut status = 0;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_file)
            && let Some(l) = s.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: i64 = l
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak = peak.max(kib);
        }
        // SAFETY: plain FFI call with valid pointers to locals; the child is ours.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    (peak, std::process::ExitStatus::from_raw(status))
}

fn huge_vhdx(dir: &Path) -> std::path::PathBuf {
    let v = dir.join("huge.vhdx");
    crate::oracle::qemu_img(&[
        "create",
        "-f",
        "vhdx",
        "-o",
        "block_size=1M,subformat=dynamic",
        crate::oracle::p(&v),
        "64T",
    ]);
    v
}

#[test]
fn info_and_validate_of_a_64_tib_vhdx_stay_under_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let v = huge_vhdx(dir.path());
    let vs = crate::oracle::p(&v);
    for args in [
        vec!["info", vs],
        vec!["validate", "--for", "hyperv-gen2", vs],
    ] {
        let (kib, status) = peak_rss_kib(&args);
        eprintln!("isotool {args:?}: peak RSS {kib} KiB ({status})");
        assert!(
            kib < 64 * 1024,
            "isotool {args:?} peaked at {kib} KiB (limit 65536 KiB)"
        );
        if args[0] == "info" {
            assert!(status.success(), "isotool {args:?}: {status}");
        }
    }
}
