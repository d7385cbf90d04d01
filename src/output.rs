//! Outputs are written to a temporary file beside the target and renamed into place only when
//! complete and synced. An interrupted or failed run never leaves a half-written file under the
//! final name, and inputs are never the output.

use crate::err;
use crate::error::{Error, IoContext, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// How to create an output.
#[derive(Debug, Clone, Copy)]
pub struct OutputOptions {
    /// Replace an existing output.
    pub force: bool,
    /// Permission bits of the created file (e.g. `0o600` for outputs carrying secrets).
    pub mode: u32,
    /// Flush data and directory to stable storage before the rename (default: true, unless the
    /// process said otherwise with [`set_sync_default`], which `isotool --no-sync` does).
    pub sync: bool,
}

/// Temp files being written, so an interrupt can remove them (see [`install_interrupt_cleanup`]).
static LIVE_TEMPS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn register_temp(p: &Path) {
    if let Ok(mut v) = LIVE_TEMPS.lock() {
        v.push(p.to_path_buf());
    }
}

fn unregister_temp(p: &Path) {
    if let Ok(mut v) = LIVE_TEMPS.lock() {
        v.retain(|x| x != p);
    }
}

/// Makes SIGINT, SIGTERM and SIGHUP remove the temp files of outputs being written before the
/// process exits (status 128 + signal), so an interrupted run leaves nothing behind.
///
/// Call it first thing in `main`, before any thread starts: the signals are blocked in the
/// calling thread (and so in every thread started after it) and taken by one waiting thread with
/// `sigwait`, where taking a lock and unlinking files is safe (it is not in a signal handler).
pub fn install_interrupt_cleanup() {
    // SAFETY: plain libc calls on a local, zero-initialised sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("interrupt-cleanup".into())
            .spawn(move || {
                let mut sig: libc::c_int = 0;
                if libc::sigwait(&set, &mut sig) == 0 {
                    crate::launch::kill_live_vms();
                    if let Ok(v) = LIVE_TEMPS.lock() {
                        for p in v.iter() {
                            let _ = std::fs::remove_file(p);
                        }
                    }
                    eprintln!("isotool: interrupted: temporary outputs removed");
                    std::process::exit(128 + sig);
                }
            });
        if spawned.is_err() {
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
    }
}

static SYNC_DEFAULT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Sets whether outputs created with default options are synced before their rename (the
/// command line's global `--no-sync`). Without sync the rename is still atomic for readers, but
/// a power loss soon after may leave an incomplete file: the trade-off `qemu-img convert` and
/// `genisoimage` make by default.
pub fn set_sync_default(sync: bool) {
    SYNC_DEFAULT.store(sync, std::sync::atomic::Ordering::Relaxed);
}

impl OutputOptions {
    /// Options with `force` and `mode`, syncing as the process default says.
    pub fn new(force: bool, mode: u32) -> Self {
        OutputOptions {
            force,
            mode,
            sync: SYNC_DEFAULT.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

impl Default for OutputOptions {
    fn default() -> Self {
        OutputOptions::new(false, 0o644)
    }
}

/// An output being written: a temp file in the target's directory, renamed on [`commit`].
///
/// Dropping it without committing removes the temp file.
///
/// [`commit`]: AtomicOutput::commit
#[derive(Debug)]
pub struct AtomicOutput {
    final_path: PathBuf,
    tmp_path: PathBuf,
    file: Option<File>,
    sync: bool,
}

/// Refuses `output` when it is one of `inputs` (same device and inode, or same canonical path).
pub fn check_not_input(output: &Path, inputs: &[&Path]) -> Result<()> {
    let out_meta = std::fs::metadata(output).ok();
    for input in inputs {
        let same = match (&out_meta, std::fs::metadata(input)) {
            (Some(o), Ok(i)) => o.dev() == i.dev() && o.ino() == i.ino(),
            _ => false,
        };
        let same_name = match (output.canonicalize(), input.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same || same_name {
            return Err(
                err!(SameFile, "the output is the input {}", input.display()).with_path(output),
            );
        }
    }
    Ok(())
}

impl AtomicOutput {
    /// Starts an output at `final_path`. Refuses an existing output unless `opts.force`, and an
    /// output that is one of `inputs`.
    pub fn create(final_path: &Path, inputs: &[&Path], opts: OutputOptions) -> Result<Self> {
        check_not_input(final_path, inputs)?;
        if let Ok(m) = std::fs::symlink_metadata(final_path)
            && !m.file_type().is_file()
        {
            // A rename would replace the link or device node itself (e.g. /dev/stdout), never
            // write through it: refuse whatever --force says.
            let what = if m.file_type().is_symlink() {
                "a symbolic link"
            } else if m.is_dir() {
                "a directory"
            } else {
                "not a regular file (a device, fifo or socket)"
            };
            return Err(err!(
                InvalidArgument,
                "the output is {what}: outputs are written to a temporary file and renamed into place, give the path of a regular file"
            )
            .with_path(final_path));
        }
        if !opts.force && std::fs::symlink_metadata(final_path).is_ok() {
            return Err(err!(
                OutputExists,
                "the output exists (use --force to replace it)"
            )
            .with_path(final_path));
        }
        let dir = match final_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = final_path.file_name().ok_or_else(|| {
            err!(InvalidArgument, "the output path has no file name").with_path(final_path)
        })?;
        let mut n = 0u32;
        loop {
            let tmp_path = dir.join(format!(
                ".{}.isotool-{}-{n}.tmp",
                name.to_string_lossy(),
                std::process::id()
            ));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(opts.mode)
                .open(&tmp_path)
            {
                Ok(file) => {
                    // The mode given to open() is filtered by the umask; secrets must be 0600
                    // whatever the umask, and nothing should end up wider than asked.
                    use std::os::unix::fs::PermissionsExt;
                    file.set_permissions(std::fs::Permissions::from_mode(opts.mode))
                        .ctx(&tmp_path, "setting permissions")?;
                    register_temp(&tmp_path);
                    return Ok(AtomicOutput {
                        final_path: final_path.to_path_buf(),
                        tmp_path,
                        file: Some(file),
                        sync: opts.sync,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                Err(e) => {
                    return Err(
                        Error::io(e, "creating the output's temporary file").with_path(&tmp_path)
                    );
                }
            }
        }
    }

    /// The file being written.
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("file present until commit")
    }

    /// The temporary path (for error messages from writers).
    pub fn tmp_path(&self) -> &Path {
        &self.tmp_path
    }

    /// The final path.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Syncs the data (unless the options said not to), renames the file into place and syncs
    /// the directory.
    pub fn commit(mut self) -> Result<PathBuf> {
        let sync = self.sync;
        let file = self.file.take().expect("file present until commit");
        let synced = if sync {
            file.sync_all().ctx(&self.tmp_path, "syncing the output")
        } else {
            Ok(())
        };
        drop(file);
        let done = synced.and_then(|()| {
            std::fs::rename(&self.tmp_path, &self.final_path)
                .ctx(&self.final_path, "renaming the output into place")
        });
        if done.is_err() {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
        unregister_temp(&self.tmp_path);
        done?;
        if let Some(dir) = self.final_path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if sync && let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(self.final_path.clone())
    }
}

impl Drop for AtomicOutput {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp_path);
            unregister_temp(&self.tmp_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn commit_renames_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.bin");
        let o = AtomicOutput::create(&out, &[], OutputOptions::default()).unwrap();
        o.file().write_all(b"hi").unwrap();
        assert!(!out.exists());
        o.commit().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"hi");

        let out2 = dir.path().join("p.bin");
        {
            let o = AtomicOutput::create(&out2, &[], OutputOptions::default()).unwrap();
            o.file().write_all(b"partial").unwrap();
        }
        assert!(!out2.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file left behind"
        );
    }

    #[test]
    fn refuses_existing_without_force_and_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("in.img");
        std::fs::write(&f, b"x").unwrap();
        let e = AtomicOutput::create(&f, &[], OutputOptions::default()).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::OutputExists);
        let e = AtomicOutput::create(&f, &[&f], OutputOptions::new(true, 0o644)).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::SameFile);
        let link = dir.path().join("link.img");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let e = AtomicOutput::create(&link, &[&f], OutputOptions::new(true, 0o644)).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::SameFile);
        // A symlink or a device is never replaced by the rename, even with force.
        let other = dir.path().join("other.img");
        std::fs::write(&other, b"y").unwrap();
        let e =
            AtomicOutput::create(&link, &[&other], OutputOptions::new(true, 0o644)).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::InvalidArgument);
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let e = AtomicOutput::create(Path::new("/dev/null"), &[], OutputOptions::new(true, 0o644))
            .unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::InvalidArgument);
        assert_eq!(std::fs::read(&f).unwrap(), b"x");
    }

    #[test]
    fn secret_mode_is_0600() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("s");
        let o = AtomicOutput::create(&out, &[], OutputOptions::new(false, 0o600)).unwrap();
        o.commit().unwrap();
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
