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
    /// Replace an existing output (atomically: readers see the old file or the new one).
    pub force: bool,
    /// Permission bits of the created file. A private mode (no group or other bits, e.g.
    /// `0o600` for outputs carrying secrets) is applied exactly; any other mode is filtered by
    /// the process umask, as `cp` and `qemu-img` do, unless [`OutputOptions::exact`] is set.
    pub mode: u32,
    /// Flush data and directory to stable storage before the rename (default: true). Without
    /// sync the rename is still atomic for readers, but a power loss soon after may leave an
    /// incomplete file: the trade-off `qemu-img convert` and `genisoimage` make by default.
    pub sync: bool,
    /// Apply `mode` exactly, whatever the umask (`--mode`).
    pub exact: bool,
}

/// Temp files being written, so an interrupt can remove them (see [`remove_live_temps`]).
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

/// Removes the temporary files of every output being written and returns how many there were.
///
/// The mechanism for interrupted runs: the binary catches SIGINT, SIGTERM and SIGHUP (outside a
/// signal handler, on a thread of its own), calls this, and exits. The library installs no
/// handler itself. A run killed outright (`kill -9`) leaves its temp file: the next run on the
/// same target removes it (see [`remove_stale_temps`]).
pub fn remove_live_temps() -> usize {
    match LIVE_TEMPS.lock() {
        Ok(v) => {
            for p in v.iter() {
                let _ = std::fs::remove_file(p);
            }
            v.len()
        }
        Err(_) => 0,
    }
}

impl OutputOptions {
    /// Options with `force` and `mode`, synced before the rename.
    pub fn new(force: bool, mode: u32) -> Self {
        OutputOptions {
            force,
            mode,
            sync: true,
            exact: false,
        }
    }

    /// The same options with `sync` set (`isotool --no-sync` passes `false`).
    pub fn with_sync(self, sync: bool) -> Self {
        OutputOptions { sync, ..self }
    }

    /// The same options with the mode the user asked for (`--mode`), applied exactly; `None`
    /// keeps the options as they are.
    pub fn with_mode(self, mode: Option<u32>) -> Self {
        match mode {
            Some(mode) => OutputOptions {
                mode: mode & 0o7777,
                exact: true,
                ..self
            },
            None => self,
        }
    }

    /// The permission bits the output gets under `umask`.
    pub fn effective_mode(&self, umask: u32) -> u32 {
        if self.exact || self.mode & 0o077 == 0 {
            self.mode
        } else {
            self.mode & !umask & 0o7777
        }
    }
}

impl Default for OutputOptions {
    fn default() -> Self {
        OutputOptions::new(false, 0o644)
    }
}

/// The process umask (read from `/proc/self/status`, which does not change it; else set and
/// restored at once).
pub fn current_umask() -> u32 {
    if let Ok(s) = std::fs::read_to_string("/proc/self/status")
        && let Some(v) = s.lines().find_map(|l| l.strip_prefix("Umask:"))
        && let Ok(m) = u32::from_str_radix(v.trim(), 8)
    {
        return m;
    }
    // SAFETY: umask() only swaps the process's mask; it is restored immediately.
    unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m as u32
    }
}

/// A name as it can be printed on one line: control characters (a newline cannot forge a
/// line), DEL and `\` escaped (`\n`, `\t`, `\xNN`, `\\`); anything else as it is.
pub fn escape_name(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() || c == '\\') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if c.is_control() => {
                use std::fmt::Write as _;
                let _ = write!(o, "\\u{{{:x}}}", c as u32);
            }
            c => o.push(c),
        }
    }
    std::borrow::Cow::Owned(o)
}

/// An input opened only when it is read, by a function that checks it is still the file that
/// was validated (the config tree's files, opened through directory descriptors without
/// following links): a writer that takes one never opens a path that may have been swapped.
#[derive(Clone)]
pub struct CheckedInput {
    path: PathBuf,
    open: std::sync::Arc<dyn Fn() -> Result<File> + Send + Sync>,
}

impl CheckedInput {
    /// An input named `path` (for messages), opened by `open`.
    pub fn new(path: PathBuf, open: impl Fn() -> Result<File> + Send + Sync + 'static) -> Self {
        CheckedInput {
            path,
            open: std::sync::Arc::new(open),
        }
    }

    /// Opens the input (an error when it is no longer the file meant).
    pub fn open(&self) -> Result<File> {
        (self.open)()
    }

    /// The path messages name.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Debug for CheckedInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedInput")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The identity of a file: device and inode, after resolving symbolic links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl FileId {
    /// The identity of what `path` names (following links), `None` when it does not exist.
    pub fn of(path: &Path) -> Option<FileId> {
        std::fs::metadata(path).ok().map(|m| FileId::from_meta(&m))
    }

    /// The identity in `m`.
    pub fn from_meta(m: &std::fs::Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

/// One path an operation reads, remembered by identity so the output can never be it.
#[derive(Debug, Clone)]
struct InputId {
    path: PathBuf,
    id: FileId,
    dir: bool,
}

fn input_ids(inputs: &[&Path]) -> Vec<InputId> {
    inputs
        .iter()
        .filter_map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some(InputId {
                path: p.to_path_buf(),
                id: FileId::from_meta(&m),
                dir: m.is_dir(),
            })
        })
        .collect()
}

/// The identities of the directories holding `output` (its parent and each ancestor).
/// The identities of `path` and of every directory above it, from the nearest ancestor that
/// exists (a path not yet created is judged by where it would be created); empty only when
/// not even the working directory resolves.
pub fn existing_ancestor_ids(path: &Path) -> Vec<FileId> {
    let mut p = path;
    loop {
        if let Ok(c) = p.canonicalize() {
            return c.ancestors().filter_map(FileId::of).collect();
        }
        match p.parent() {
            Some(q) if !q.as_os_str().is_empty() => p = q,
            _ => return existing_ancestor_ids(Path::new(".")),
        }
    }
}

/// The directories the output would be created in (its parent and all above).
fn ancestor_ids(output: &Path) -> Vec<FileId> {
    match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => existing_ancestor_ids(p),
        _ => existing_ancestor_ids(Path::new(".")),
    }
}

fn same_file_error(output: &Path, input: &InputId) -> Error {
    let what = if input.dir {
        format!(
            "the output would be written inside the input directory {}",
            input.path.display()
        )
    } else {
        format!(
            "the output is the input {} (same device and inode): writing it would destroy the input, --force or not",
            input.path.display()
        )
    };
    err!(SameFile, "{what}").with_path(output)
}

fn check_ids(output: &Path, inputs: &[InputId]) -> Result<()> {
    let out = FileId::of(output);
    let mut ancestors = None;
    for input in inputs {
        if input.dir {
            let anc = ancestors.get_or_insert_with(|| ancestor_ids(output));
            if anc.contains(&input.id) || out == Some(input.id) {
                return Err(same_file_error(output, input));
            }
        } else if out == Some(input.id) {
            return Err(same_file_error(output, input));
        }
    }
    Ok(())
}

/// Refuses `output` when it is one of `inputs` by file identity (device and inode after
/// resolving links: a symlink or hard link to an input is the input), or lies inside an input
/// that is a directory (a config tree). Inputs that do not exist are skipped (opening them
/// fails on its own).
pub fn check_not_input(output: &Path, inputs: &[&Path]) -> Result<()> {
    check_ids(output, &input_ids(inputs))
}

/// The start time of process `pid` in clock ticks since boot (field 22 of `/proc/PID/stat`);
/// `None` when there is no such process.
fn process_start(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// True while the process that made a temp file (`pid`, started at `start` when the name
/// records it) is running; a PID reused by another process counts as gone.
fn owner_alive(pid: u32, start: Option<u64>) -> bool {
    if Path::new("/proc/self/stat").exists() {
        match (process_start(pid), start) {
            (None, _) => false,
            (Some(now), Some(then)) => now == then,
            (Some(_), None) => true,
        }
    } else {
        // SAFETY: signal 0 only checks that the process exists.
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
}

/// Parses the `PID-START-N` (or older `PID-N`) part of a temp file name.
fn parse_temp_tag(tag: &str) -> Option<(u32, Option<u64>)> {
    let parts: Vec<&str> = tag.split('-').collect();
    match parts.as_slice() {
        [pid, start, n] => {
            n.parse::<u32>().ok()?;
            Some((pid.parse().ok()?, Some(start.parse().ok()?)))
        }
        [pid, n] => {
            n.parse::<u32>().ok()?;
            Some((pid.parse().ok()?, None))
        }
        _ => None,
    }
}

/// Removes the temp files that runs now dead left beside `final_path`
/// (`.NAME.isotool-PID-START-N.tmp` whose process is gone, or whose PID now belongs to a process
/// started at another time). Returns the paths removed.
pub fn remove_stale_temps(final_path: &Path) -> Vec<PathBuf> {
    let (dir, name) = split_output(final_path);
    let Some(name) = name else {
        return Vec::new();
    };
    let prefix = format!(".{}.isotool-", name.to_string_lossy());
    let mut removed = Vec::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return removed;
    };
    for e in rd.flatten() {
        let n = e.file_name();
        let Some(tag) = n
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".tmp"))
        else {
            continue;
        };
        let Some((pid, start)) = parse_temp_tag(tag) else {
            continue;
        };
        let is_file = e.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && !owner_alive(pid, start) && std::fs::remove_file(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

fn split_output(final_path: &Path) -> (PathBuf, Option<&std::ffi::OsStr>) {
    let dir = match final_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    (dir, final_path.file_name())
}

/// The file name an output will have, from its temporary path (`.NAME.isotool-PID-START-N.tmp`)
/// or its final path.
pub fn final_name(path: &Path) -> String {
    let n = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match n.strip_prefix('.').and_then(|r| r.rsplit_once(".isotool-")) {
        Some((name, _)) if n.ends_with(".tmp") => name.to_string(),
        _ => n,
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
    temp: PathBuf,
    file: Option<File>,
    sync: bool,
    force: bool,
    inputs: Vec<InputId>,
    mode: u32,
    stale_removed: Vec<PathBuf>,
}

fn refuse_non_file(final_path: &Path) -> Result<()> {
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
    Ok(())
}

/// The tag of this process in temp file names: `PID-START`.
fn process_tag() -> String {
    let pid = std::process::id();
    match process_start(pid) {
        Some(start) => format!("{pid}-{start}"),
        None => format!("{pid}-0"),
    }
}

impl AtomicOutput {
    /// Starts an output at `final_path`. Refuses an existing output unless `opts.force`, and an
    /// output that is one of `inputs` or inside an input directory (see [`check_not_input`]);
    /// removes the temp files that dead runs left for the same target.
    pub fn create(final_path: &Path, inputs: &[&Path], opts: OutputOptions) -> Result<Self> {
        let inputs = input_ids(inputs);
        check_ids(final_path, &inputs)?;
        refuse_non_file(final_path)?;
        if !opts.force && std::fs::symlink_metadata(final_path).is_ok() {
            return Err(err!(
                OutputExists,
                "the output exists (use --force to replace it)"
            )
            .with_path(final_path));
        }
        let (dir, name) = split_output(final_path);
        let name = name.ok_or_else(|| {
            err!(InvalidArgument, "the output path has no file name").with_path(final_path)
        })?;
        let stale_removed = remove_stale_temps(final_path);
        let tag = process_tag();
        let mode = opts.effective_mode(current_umask());
        let mut n = 0u32;
        loop {
            let tmp_path = dir.join(format!(".{}.isotool-{tag}-{n}.tmp", name.to_string_lossy()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp_path)
            {
                Ok(file) => {
                    register_temp(&tmp_path);
                    let out = AtomicOutput {
                        final_path: final_path.to_path_buf(),
                        temp: tmp_path,
                        file: Some(file),
                        sync: opts.sync,
                        force: opts.force,
                        inputs,
                        mode,
                        stale_removed,
                    };
                    // Created 0600 (nobody else can open it while it fills), given its mode
                    // here: the umask-filtered one, or exactly the one asked for.
                    use std::os::unix::fs::PermissionsExt;
                    out.file()
                        .set_permissions(std::fs::Permissions::from_mode(mode))
                        .ctx(final_path, "setting the output's permissions")?;
                    return Ok(out);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                Err(e) => {
                    return Err(
                        Error::io(e, "creating the output's temporary file").with_path(final_path)
                    );
                }
            }
        }
    }

    /// Adds inputs found during the run (e.g. the parents of a differencing disk): refused now
    /// if the output is one of them, and checked again before the rename.
    pub fn add_inputs(&mut self, inputs: &[&Path]) -> Result<()> {
        let more = input_ids(inputs);
        check_ids(&self.final_path, &more)?;
        self.inputs.extend(more);
        Ok(())
    }

    /// The file being written.
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("file present until commit")
    }

    /// The path errors about the output must name: the output path the user gave, never the
    /// hidden temp file (which nobody can act on, and which is gone once the error is shown).
    /// Writers take it for their error messages.
    pub fn tmp_path(&self) -> &Path {
        &self.final_path
    }

    /// The hidden temporary file actually being written.
    pub fn temp_file_path(&self) -> &Path {
        &self.temp
    }

    /// The final path.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// The permission bits the output gets.
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// Temp files of dead runs removed when this output was started.
    pub fn stale_removed(&self) -> &[PathBuf] {
        &self.stale_removed
    }

    /// Makes an error met while writing name the output: an error on the output's storage
    /// (no space, quota, file too large, read-only) is about the output whatever path the
    /// writer gave it (a `copy_file_range` failure names the input it was copying from), and
    /// an error naming the hidden temp file names the output instead.
    pub fn blame(&self, e: Error) -> Error {
        use std::error::Error as _;
        let os = e
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .and_then(|s| s.raw_os_error());
        let storage = matches!(
            os,
            Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG | libc::EROFS)
        );
        if storage && let Some(code) = os {
            return Error::io(
                std::io::Error::from_raw_os_error(code),
                format!("writing the output ({})", e.message()),
            )
            .with_path(&self.final_path);
        }
        if e.path() == Some(self.temp.as_path()) {
            let mut n = match os {
                Some(code) if e.kind() == crate::ErrorKind::Io => {
                    Error::io(std::io::Error::from_raw_os_error(code), e.message())
                }
                _ => Error::new(e.kind(), e.message()),
            }
            .with_path(&self.final_path);
            if let Some(s) = e.structure() {
                n = n.with_structure(s);
            }
            if let Some(o) = e.offset() {
                n = n.at(o);
            }
            return n;
        }
        e
    }

    /// Syncs the data (unless the options said not to), renames the file into place and syncs
    /// the directory. Without `force` the rename never replaces a file that appeared at the
    /// output path during the run (`RENAME_NOREPLACE`): that is an `OutputExists` error and the
    /// file is left as it is; with `force` the replacement is atomic.
    pub fn commit(mut self) -> Result<PathBuf> {
        let sync = self.sync;
        let file = self.file.take().expect("file present until commit");
        let synced = if sync {
            file.sync_all()
                .map_err(|e| self.blame(Error::io(e, "syncing the output")))
                .map(|_| ())
        } else {
            Ok(())
        };
        drop(file);
        let done = synced
            .and_then(|()| check_ids(&self.final_path, &self.inputs))
            .and_then(|()| self.rename());
        if done.is_err() {
            let _ = std::fs::remove_file(&self.temp);
        }
        unregister_temp(&self.temp);
        done?;
        if sync {
            let (dir, _) = split_output(&self.final_path);
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(self.final_path.clone())
    }

    fn rename(&self) -> Result<()> {
        if self.force {
            refuse_non_file(&self.final_path)?;
            return std::fs::rename(&self.temp, &self.final_path)
                .ctx(&self.final_path, "renaming the output into place");
        }
        match rename_noreplace(&self.temp, &self.final_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(err!(
                OutputExists,
                "a file appeared at the output path during the run; it was left as it is and the output discarded (use --force to replace it)"
            )
            .with_path(&self.final_path)),
            Err(e) => Err(Error::io(e, "renaming the output into place").with_path(&self.final_path)),
        }
    }
}

/// Renames `from` to `to` unless `to` exists (`EEXIST` then), atomically:
/// `renameat2(RENAME_NOREPLACE)`, or `link` + `unlink` where the filesystem lacks it.
pub fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
    };
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths relative to the working directory.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
            // link() never replaces an existing name either.
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        _ => Err(e),
    }
}

impl Drop for AtomicOutput {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
            unregister_temp(&self.temp);
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

    #[test]
    fn identity_covers_links_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("parent.vhd");
        std::fs::write(&f, b"parent").unwrap();
        let hard = dir.path().join("hard.vhd");
        std::fs::hard_link(&f, &hard).unwrap();
        let e = check_not_input(&hard, &[Path::new("/nonexistent"), &f]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::SameFile);
        assert!(e.message().contains("parent.vhd"), "{e}");
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        let e = check_not_input(&tree.join("sub/seed.iso"), &[&tree]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::SameFile);
        assert!(e.message().contains("inside the input directory"), "{e}");
        // The same directory reached through a symlink is still inside.
        let alias = dir.path().join("alias");
        std::os::unix::fs::symlink(&tree, &alias).unwrap();
        assert!(check_not_input(&alias.join("x.iso"), &[&tree]).is_err());
        check_not_input(&dir.path().join("out.iso"), &[&tree, &f]).unwrap();
    }

    #[test]
    fn a_file_planted_during_the_run_survives_and_force_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.bin");
        let o = AtomicOutput::create(&out, &[], OutputOptions::default()).unwrap();
        o.file().write_all(b"ours").unwrap();
        std::fs::write(&out, b"planted").unwrap();
        let e = o.commit().unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::OutputExists);
        assert_eq!(e.path(), Some(out.as_path()));
        assert_eq!(std::fs::read(&out).unwrap(), b"planted");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let o = AtomicOutput::create(&out, &[], OutputOptions::new(true, 0o644)).unwrap();
        o.file().write_all(b"ours").unwrap();
        o.commit().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"ours");
    }

    #[test]
    fn rename_noreplace_refuses_an_existing_target() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        let e = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        std::fs::remove_file(&b).unwrap();
        rename_noreplace(&a, &b).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"a");
        assert!(!a.exists());
    }

    #[test]
    fn stale_temps_of_dead_or_reused_pids_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("d.vhdx");
        let me = std::process::id();
        let start = process_start(me).unwrap();
        // pid_max is at most 2^22: this PID cannot exist.
        let dead = dir.path().join(".d.vhdx.isotool-4294967-12-0.tmp");
        let dead_old = dir.path().join(".d.vhdx.isotool-4294967-3.tmp");
        let reused = dir
            .path()
            .join(format!(".d.vhdx.isotool-{me}-{}-0.tmp", start + 1));
        let alive = dir
            .path()
            .join(format!(".d.vhdx.isotool-{me}-{start}-7.tmp"));
        let other = dir.path().join(".e.vhdx.isotool-4294967-12-0.tmp");
        for p in [&dead, &dead_old, &reused, &alive, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        let o = AtomicOutput::create(&out, &[], OutputOptions::default()).unwrap();
        let mut removed = o.stale_removed().to_vec();
        removed.sort();
        let mut want = vec![dead.clone(), dead_old.clone(), reused.clone()];
        want.sort();
        assert_eq!(removed, want);
        assert!(alive.exists() && other.exists());
        o.commit().unwrap();
        assert!(!dead.exists() && !reused.exists());
    }

    #[test]
    fn umask_is_honoured_unless_private_or_exact() {
        let o = OutputOptions::new(false, 0o644);
        assert_eq!(o.effective_mode(0o027), 0o640);
        assert_eq!(o.effective_mode(0o022), 0o644);
        assert_eq!(
            OutputOptions::new(false, 0o600).effective_mode(0o077),
            0o600
        );
        assert_eq!(o.with_mode(Some(0o664)).effective_mode(0o027), 0o664);
        assert_eq!(o.with_mode(None).effective_mode(0o027), 0o640);
    }

    #[test]
    fn storage_errors_and_temp_paths_are_blamed_on_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.vhd");
        let o = AtomicOutput::create(&out, &[], OutputOptions::default()).unwrap();
        let full = Error::io(
            std::io::Error::from_raw_os_error(libc::ENOSPC),
            "copying disk data",
        )
        .with_path("/in/disk.raw")
        .at(4096);
        let e = o.blame(full);
        assert_eq!(e.path(), Some(out.as_path()));
        assert_eq!(e.offset(), None);
        assert!(e.to_string().contains("No space left"), "{e}");
        let t = err!(LimitExceeded, "too big")
            .with_path(o.temp_file_path())
            .at(7);
        let e = o.blame(t);
        assert_eq!(e.path(), Some(out.as_path()));
        assert_eq!(e.offset(), Some(7));
        assert_eq!(e.kind(), crate::ErrorKind::LimitExceeded);
        assert_eq!(o.tmp_path(), out.as_path());
        let other = err!(BadField, "x").with_path("/in/disk.raw");
        assert_eq!(o.blame(other).path(), Some(Path::new("/in/disk.raw")));
    }

    #[test]
    fn names_are_escaped_on_one_line() {
        assert_eq!(escape_name("a/b.json"), "a/b.json");
        assert_eq!(
            escape_name("x\n- 0644 1 forged\t\\\u{7f}"),
            "x\\n- 0644 1 forged\\t\\\\\\u{7f}"
        );
    }
}
