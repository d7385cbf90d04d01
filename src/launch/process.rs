//! qemu processes that cannot outlive the run, and the run's temporary directory.
//!
//! qemu is started in its own process group with `PR_SET_PDEATHSIG = SIGKILL`, so it dies with
//! the thread that started it even when isotool itself is killed. A [`VmProcess`] kills the
//! whole group when dropped (timeout, Ctrl-C, any error, a panic), and every live group is in a
//! registry that [`kill_live_vms`] empties (the CLI's interrupt handler calls it before exiting).

use crate::err;
use crate::error::{Error, IoContext, Result};
use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Debian package of `qemu-system-x86_64`.
pub const QEMU_PACKAGE: &str = "qemu-system-x86";

/// Process groups of live VMs, and run directories to remove.
static LIVE_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static LIVE_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Kills every VM this process started and still runs, and removes their run directories.
/// Safe to call from the interrupt-handling thread before `exit`.
pub fn kill_live_vms() {
    if let Ok(groups) = LIVE_GROUPS.lock() {
        for &g in groups.iter() {
            // SAFETY: killpg on a process group this process created.
            unsafe {
                libc::killpg(g, libc::SIGKILL);
            }
        }
    }
    if let Ok(dirs) = LIVE_DIRS.lock() {
        for d in dirs.iter() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Resolves a program: a path with a `/` must be a file; a bare name is looked up on `PATH`.
/// Missing: a [`crate::ErrorKind::MissingTool`] error naming `qemu-system-x86`.
pub fn find_program(program: &Path) -> Result<PathBuf> {
    let missing = || {
        err!(
            MissingTool,
            "qemu is not installed or not executable (apt-get install {QEMU_PACKAGE})"
        )
        .with_path(program)
    };
    if program.components().count() > 1 || program.is_absolute() {
        return if is_executable(program) {
            Ok(program.to_path_buf())
        } else {
            Err(missing())
        };
    }
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
        .ok_or_else(missing)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A private temporary directory (mode 0700) removed when dropped.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates `$TMPDIR/isotool-<label>-<pid>-<n>`.
    pub fn create(label: &str) -> Result<Self> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir();
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let path = base.join(format!("isotool-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .ctx(&path, "creating the run directory")?;
        if let Ok(mut d) = LIVE_DIRS.lock() {
            d.push(path.clone());
        }
        Ok(RunDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        if let Ok(mut d) = LIVE_DIRS.lock() {
            d.retain(|p| p != &self.path);
        }
    }
}

/// A running qemu, killed (with its whole process group) when dropped.
#[derive(Debug)]
pub struct VmProcess {
    child: Child,
    pgid: i32,
    exited: Option<ExitStatus>,
}

impl VmProcess {
    /// Starts `argv` (argv[0] is the program) with stdin/stdout closed and stderr to a file.
    pub fn spawn(argv: &[String], stderr_path: &Path) -> Result<Self> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| err!(InvalidArgument, "empty command line"))?;
        let stderr = File::create(stderr_path).ctx(stderr_path, "creating qemu's stderr log")?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0);
        // SAFETY: only async-signal-safe calls (prctl, getppid, kill) between fork and exec.
        unsafe {
            let parent = libc::getpid();
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before prctl: do not run orphaned.
                if libc::getppid() != parent {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
                Ok(())
            });
        }
        // Register before anything can fail, so the interrupt handler sees it.
        let mut groups = LIVE_GROUPS
            .lock()
            .map_err(|_| err!(External, "VM registry poisoned"))?;
        let child = cmd.spawn().map_err(|e| {
            Error::io(e, "starting qemu")
                .with_path(program)
                .with_structure(format!("(apt-get install {QEMU_PACKAGE})"))
        })?;
        let pgid = child.id() as i32;
        groups.push(pgid);
        drop(groups);
        Ok(VmProcess {
            child,
            pgid,
            exited: None,
        })
    }

    /// qemu's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if qemu has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self
                .child
                .try_wait()
                .map_err(|e| Error::io(e, "polling qemu"))?;
        }
        Ok(self.exited)
    }

    /// Waits up to `limit` for qemu to exit by itself.
    pub fn wait_for_exit(&mut self, limit: std::time::Duration) -> Result<Option<ExitStatus>> {
        let start = std::time::Instant::now();
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            if start.elapsed() >= limit {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Kills the process group (SIGKILL) and reaps qemu. Idempotent.
    pub fn kill(&mut self) {
        // SAFETY: killpg on the group this VmProcess created; harmless if it is already gone.
        unsafe {
            libc::killpg(self.pgid, libc::SIGKILL);
        }
        if self.exited.is_none() {
            self.exited = self.child.wait().ok();
        }
        if let Ok(mut g) = LIVE_GROUPS.lock() {
            g.retain(|&x| x != self.pgid);
        }
    }
}

impl Drop for VmProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_names_the_package() {
        let e = find_program(Path::new("/nonexistent/qemu-system-x86_64")).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::MissingTool);
        assert!(
            e.to_string().contains("apt-get install qemu-system-x86"),
            "{e}"
        );
        let e = find_program(Path::new("isotool-no-such-qemu")).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::MissingTool);
    }

    #[test]
    fn dropping_kills_the_whole_group() {
        let dir = RunDir::create("unit").unwrap();
        let err = dir.path().join("stderr");
        let argv: Vec<String> = ["sh", "-c", "sleep 600 & echo $! >&2; wait"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let vm = VmProcess::spawn(&argv, &err).unwrap();
        let pid = vm.pid();
        let mut grandchild = String::new();
        for _ in 0..200 {
            grandchild = std::fs::read_to_string(&err).unwrap_or_default();
            if !grandchild.trim().is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let gc: i32 = grandchild.trim().parse().unwrap();
        drop(vm);
        // The grandchild (same group) is gone too: kill(pid, 0) fails once it is reaped by init,
        // or it is a zombie; check /proc state.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let alive = |p: i32| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
        };
        assert!(!alive(pid as i32), "qemu stand-in {pid} still alive");
        assert!(!alive(gc), "grandchild {gc} still alive");
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
    }
}
