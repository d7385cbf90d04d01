//! The provisioning `config/` tree: its model (a walk that refuses what cannot travel), its
//! validation against what the first-boot service reads, and the provisioning DVD built from it.
//!
//! Validation gathers every finding before anything is built ([`Report`]); errors block the
//! build, warnings are for the operator. Findings name files and keys, never values: the tree
//! carries a gossip key and certificate keys.

mod dirfd;
pub mod pem;
pub mod validate;

use crate::context::BuildContext;
use crate::err;
use crate::error::{IoContext, Result};
use crate::iso::build::{FileData, IsoBuilder, Meta};
use crate::output::{AtomicOutput, CheckedInput, FileId, OutputOptions};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use validate::{Role, validate};

/// Default volume id of the provisioning DVD.
pub const DEFAULT_VOLUME_ID: &str = "PROVISIONING";
/// Deepest path accepted in a tree (ISO 9660 allows 8 directory levels including the root).
pub const MAX_TREE_DEPTH: usize = 7;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Blocks the build.
    Error,
    /// Printed; the build goes on.
    Warning,
}

/// One problem found in a tree: the file (relative to the tree), the key when it is about one,
/// and what is wrong. Never a secret value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Path relative to the tree root (`consul/consul_secrets.json`).
    pub file: String,
    /// The JSON key concerned, if any.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}", crate::output::escape_name(&self.file))?;
        if let Some(k) = &self.key {
            write!(f, ": key `{k}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every finding of one validation.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// In the order found.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Records an error.
    pub fn error(&mut self, file: &str, key: Option<&str>, message: impl Into<String>) {
        self.push(Severity::Error, file, key, message.into());
    }

    /// Records a warning.
    pub fn warn(&mut self, file: &str, key: Option<&str>, message: impl Into<String>) {
        self.push(Severity::Warning, file, key, message.into());
    }

    fn push(&mut self, severity: Severity, file: &str, key: Option<&str>, message: String) {
        self.findings.push(Finding {
            severity,
            file: file.to_string(),
            key: key.map(str::to_string),
            message,
        });
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
    }

    /// True when some finding blocks the build.
    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    /// `InvalidConfig` listing every error when there is one.
    pub fn check(&self, root: &Path) -> Result<()> {
        let errors: Vec<String> = self.errors().map(|f| format!("  {f}")).collect();
        if errors.is_empty() {
            return Ok(());
        }
        Err(err!(
            InvalidConfig,
            "the config tree has {} error(s); nothing was written:\n{}",
            errors.len(),
            errors.join("\n")
        )
        .with_path(root))
    }
}

/// A directory or file of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file (or a symlink to a regular file inside the tree, travelling as a file).
    File,
}

/// One entry of a config tree.
#[derive(Debug, Clone)]
pub struct TreeEntry {
    /// Path relative to the root, `/`-separated.
    pub rel: String,
    /// Directory or file.
    pub kind: EntryKind,
    /// Where the bytes are read from (the symlink's target for followed links), for messages.
    pub source: PathBuf,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Modification time on disk.
    pub mtime: i64,
    /// Permission bits of the source file.
    pub mode: u32,
    /// True when the file carries secrets (see [`ConfigTree::is_secret_entry`]).
    pub secret: bool,
    /// The file actually read, relative to the root (the target of an in-tree link).
    read_rel: String,
    /// Device and inode of the file the scan validated.
    id: FileId,
}

/// A config tree as walked from disk. Entries are sorted by relative path.
///
/// The tree is read through directory file descriptors from the root opened once
/// (`openat` with `O_NOFOLLOW` at every step), and every file opened is checked to be the one
/// the scan validated (device, inode, type, size): a file swapped for a link between the scan
/// and the copy is a named error, never followed.
#[derive(Debug, Clone)]
pub struct ConfigTree {
    /// The root given.
    pub root: PathBuf,
    /// Root's modification time.
    pub root_mtime: i64,
    /// Every directory and file under the root.
    pub entries: Vec<TreeEntry>,
    root_fd: Arc<OwnedFd>,
    secret_globs: Vec<String>,
}

/// Largest file read into memory for checking (JSON, PEM).
pub const MAX_CHECKED_FILE: u64 = 16 << 20;

fn stat_id(st: &libc::stat) -> FileId {
    FileId {
        dev: st.st_dev,
        ino: st.st_ino,
    }
}

impl ConfigTree {
    /// Walks `root` without following symlinks out of it. Symlinks that leave the tree (or
    /// dangle, or point to directories), devices, fifos and sockets become errors in `report`;
    /// only an unreadable root is an `Err`.
    pub fn scan(root: &Path, report: &mut Report) -> Result<Self> {
        let fd = dirfd::open_root(root).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOTDIR) {
                err!(InvalidArgument, "the config tree is not a directory").with_path(root)
            } else {
                crate::Error::io(e, "reading the config tree").with_path(root)
            }
        })?;
        let st = dirfd::fstat(fd.as_fd()).ctx(root, "reading the config tree")?;
        let canon = root.canonicalize().ctx(root, "resolving the config tree")?;
        let mut tree = ConfigTree {
            root: root.to_path_buf(),
            root_mtime: st.st_mtime,
            entries: Vec::new(),
            root_fd: Arc::new(fd),
            secret_globs: Vec::new(),
        };
        let dir = tree.root_fd.clone();
        tree.walk(dir.as_fd(), &canon, "", 1, report)?;
        tree.entries.sort_by(|a, b| a.rel.cmp(&b.rel));
        tree.mark_secrets();
        Ok(tree)
    }

    /// Adds `--secret` patterns (`*` and `?` within a name, `**` across directories; a pattern
    /// without `/` matches the file name, one with `/` the path from the root).
    pub fn add_secret_patterns(&mut self, globs: &[String]) {
        self.secret_globs.extend(globs.iter().cloned());
        self.mark_secrets();
    }

    fn mark_secrets(&mut self) {
        let globs = std::mem::take(&mut self.secret_globs);
        for e in &mut self.entries {
            e.secret = e.kind == EntryKind::File && secret_rule(&e.rel, e.mode, &globs).is_some();
        }
        self.secret_globs = globs;
    }

    /// Why the file at `e` carries secrets, `None` when it does not (see [`SECRET_RULE`]).
    pub fn is_secret_entry(&self, e: &TreeEntry) -> Option<String> {
        if e.kind != EntryKind::File {
            return None;
        }
        secret_rule(&e.rel, e.mode, &self.secret_globs)
    }

    /// The `--secret` patterns given.
    pub fn secret_patterns(&self) -> &[String] {
        &self.secret_globs
    }

    fn walk(
        &mut self,
        dir: BorrowedFd<'_>,
        canon_root: &Path,
        prefix: &str,
        depth: usize,
        report: &mut Report,
    ) -> Result<()> {
        let here = canon_root.join(prefix);
        let mut names = dirfd::list(dir).ctx(&here, "listing a directory of the config tree")?;
        names.sort();
        for name in names {
            let path = here.join(&name);
            let Some(rel) = checked_name(prefix, &name, depth, report) else {
                continue;
            };
            let st = dirfd::lstat_at(dir, &name).ctx(&path, "reading an entry")?;
            if dirfd::is_dir(&st) {
                self.walk_dir(dir, &name, (&path, rel), &st, canon_root, depth, report)?;
            } else if dirfd::is_file(&st) {
                self.entries.push(file_entry(rel.clone(), rel, path, &st));
            } else if dirfd::is_symlink(&st) {
                self.scan_symlink(rel, &path, canon_root, report)?;
            } else {
                report.error(
                    &rel,
                    None,
                    format!("is {}; refused", dirfd::other_kind(&st)),
                );
            }
        }
        Ok(())
    }

    /// A directory of the tree: opened without following links, checked to be the one listed
    /// (`st`), recorded, then walked.
    #[allow(clippy::too_many_arguments)]
    fn walk_dir(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &std::ffi::OsStr,
        (path, rel): (&Path, String),
        st: &libc::stat,
        canon_root: &Path,
        depth: usize,
        report: &mut Report,
    ) -> Result<()> {
        let sub = dirfd::open_dir(dir, name).ctx(path, "opening a directory")?;
        let now = dirfd::fstat(sub.as_fd()).ctx(path, "opening a directory")?;
        if stat_id(&now) != stat_id(st) {
            return Err(changed(&rel, path, "was replaced while it was read"));
        }
        self.entries.push(TreeEntry {
            rel: rel.clone(),
            kind: EntryKind::Dir,
            source: path.to_path_buf(),
            size: 0,
            mtime: st.st_mtime,
            mode: st.st_mode & 0o7777,
            secret: false,
            read_rel: rel.clone(),
            id: stat_id(st),
        });
        self.walk(
            sub.as_fd(),
            canon_root,
            &format!("{rel}/"),
            depth + 1,
            report,
        )
    }

    /// A symlink travels as the file it names when that file is inside the tree.
    fn scan_symlink(
        &mut self,
        rel: String,
        path: &Path,
        canon_root: &Path,
        report: &mut Report,
    ) -> Result<()> {
        let target = std::fs::read_link(path).ctx(path, "reading a symlink")?;
        let t = match path.canonicalize() {
            Err(_) => {
                let m = format!("symlink to {} dangles or loops; refused", target.display());
                report.error(&rel, None, m);
                return Ok(());
            }
            Ok(t) => t,
        };
        let Some(target_rel) = t
            .strip_prefix(canon_root)
            .ok()
            .and_then(|r| r.to_str())
            .filter(|r| !r.is_empty())
        else {
            let m = format!("symlink to {} leaves the tree; refused", target.display());
            report.error(&rel, None, m);
            return Ok(());
        };
        match self.open_rel(target_rel) {
            Ok((_, st)) if dirfd::is_file(&st) => {
                let e = file_entry(rel, target_rel.to_string(), t.clone(), &st);
                self.entries.push(e);
            }
            _ => report.error(
                &rel,
                None,
                "symlink to something other than a regular file; refused",
            ),
        }
        Ok(())
    }

    /// Opens `rel` (no `.`/`..`, no links) from the root descriptor: directories with
    /// `O_NOFOLLOW | O_DIRECTORY`, the last name with `O_NOFOLLOW`.
    fn open_rel(&self, rel: &str) -> std::io::Result<(File, libc::stat)> {
        open_rel(&self.root_fd, rel)
    }

    /// Opens the file of `e`, checking it is the one the scan validated (same device, inode,
    /// type and size); any difference is an `InvalidConfig` error naming the file.
    pub fn open(&self, e: &TreeEntry) -> Result<File> {
        open_entry(&self.root_fd, e)
    }

    /// The entry at `rel`.
    pub fn get(&self, rel: &str) -> Option<&TreeEntry> {
        self.entries
            .binary_search_by(|e| e.rel.as_str().cmp(rel))
            .ok()
            .and_then(|i| self.entries.get(i))
    }

    /// True when `rel` is a file of the tree.
    pub fn has_file(&self, rel: &str) -> bool {
        self.get(rel).is_some_and(|e| e.kind == EntryKind::File)
    }

    /// True when `rel` is a directory of the tree.
    pub fn has_dir(&self, rel: &str) -> bool {
        self.get(rel).is_some_and(|e| e.kind == EntryKind::Dir)
    }

    /// The files of the tree.
    pub fn files(&self) -> impl Iterator<Item = &TreeEntry> {
        self.entries.iter().filter(|e| e.kind == EntryKind::File)
    }

    /// Every path the tree reads: the root and each file's source (for [`check_not_input`]).
    ///
    /// [`check_not_input`]: crate::output::check_not_input
    pub fn input_paths(&self) -> Vec<&Path> {
        let mut v = vec![self.root.as_path()];
        v.extend(self.files().map(|e| e.source.as_path()));
        v
    }

    /// Reads a (small) file of the tree into memory.
    pub fn read(&self, rel: &str) -> Result<Vec<u8>> {
        let e = self
            .get(rel)
            .ok_or_else(|| err!(NotFound, "{rel} is not in the tree"))?;
        if e.size > MAX_CHECKED_FILE {
            return Err(err!(
                AbsurdSize,
                "{rel} is {} bytes, over MAX_CHECKED_FILE ({MAX_CHECKED_FILE} bytes): refused before reading",
                e.size
            )
            .with_path(&e.source));
        }
        self.read_any(e)
    }

    /// Reads any file of the tree (no size limit: the caller bounds its own memory).
    pub fn read_any(&self, e: &TreeEntry) -> Result<Vec<u8>> {
        let mut f = self.open(e)?;
        let mut v = Vec::with_capacity(e.size as usize);
        f.by_ref()
            .take(e.size)
            .read_to_end(&mut v)
            .ctx(&e.source, "reading a file of the config tree")?;
        Ok(v)
    }

    /// The file of `e` as an ISO builder source: opened (and checked) when the image is written.
    pub fn checked_input(&self, e: &TreeEntry) -> CheckedInput {
        let root = self.root_fd.clone();
        let entry = e.clone();
        CheckedInput::new(e.source.clone(), move || open_entry(&root, &entry))
    }
}

/// Opens `rel` (no `.`/`..`, no links) from the root descriptor: directories with
/// `O_NOFOLLOW | O_DIRECTORY`, the last name with `O_NOFOLLOW`.
fn open_rel(root: &OwnedFd, rel: &str) -> std::io::Result<(File, libc::stat)> {
    let mut parts: Vec<&str> = rel.split('/').collect();
    let last = parts.pop().unwrap_or_default();
    let mut held: Option<OwnedFd> = None;
    for p in parts {
        let dir = held.as_ref().map_or(root.as_fd(), |d| d.as_fd());
        held = Some(dirfd::open_dir(dir, std::ffi::OsStr::new(p))?);
    }
    let dir = held.as_ref().map_or(root.as_fd(), |d| d.as_fd());
    let f = dirfd::open_file(dir, std::ffi::OsStr::new(last))?;
    let st = dirfd::fstat(f.as_fd())?;
    Ok((f, st))
}

/// Opens the file of `e` and checks it is the one the scan validated.
fn open_entry(root: &OwnedFd, e: &TreeEntry) -> Result<File> {
    let (f, st) = open_rel(root, &e.read_rel).map_err(|err| {
        if err.raw_os_error() == Some(libc::ELOOP) {
            changed(&e.rel, &e.source, "is now a symbolic link")
        } else {
            crate::Error::io(err, "opening a file of the config tree").with_path(&e.source)
        }
    })?;
    if !dirfd::is_file(&st) {
        return Err(changed(&e.rel, &e.source, "is no longer a regular file"));
    }
    if stat_id(&st) != e.id {
        return Err(changed(&e.rel, &e.source, "is now another file"));
    }
    if st.st_size as u64 != e.size {
        let m = format!("changed size ({} then {} bytes)", e.size, st.st_size);
        return Err(changed(&e.rel, &e.source, &m));
    }
    Ok(f)
}

fn file_entry(rel: String, read_rel: String, source: PathBuf, st: &libc::stat) -> TreeEntry {
    TreeEntry {
        rel,
        kind: EntryKind::File,
        source,
        size: st.st_size as u64,
        mtime: st.st_mtime,
        mode: st.st_mode & 0o7777,
        secret: false,
        read_rel,
        id: stat_id(st),
    }
}

fn changed(rel: &str, source: &Path, what: &str) -> crate::Error {
    err!(
        InvalidConfig,
        "{rel} {what} since the tree was checked; nothing was written"
    )
    .with_path(source)
}

/// Which files of a config tree carry secrets, as `--dry-run` prints it and the README says.
pub const SECRET_RULE: &str = "secret (mode 0600 on the media, and the output 0600): \
consul/consul_secrets.json, *.key, any name containing \"secret\", any source file that is not \
world-readable, and what --secret GLOB matches";

/// Why a file carries secrets, `None` when it does not.
fn secret_rule(rel: &str, mode: u32, globs: &[String]) -> Option<String> {
    let name = rel.rsplit('/').next().unwrap_or(rel).to_ascii_lowercase();
    if rel == "consul/consul_secrets.json" {
        return Some("the consul gossip key".into());
    }
    if name.ends_with(".key") {
        return Some("a .key file".into());
    }
    if name.contains("secret") {
        return Some("its name contains \"secret\"".into());
    }
    if mode & 0o004 == 0 {
        return Some(format!(
            "its source is mode {:04o}, not world-readable",
            mode
        ));
    }
    globs
        .iter()
        .find(|g| glob_match(g, rel))
        .map(|g| format!("--secret {g}"))
}

/// Matches `rel` against a `--secret` pattern.
pub fn glob_match(pattern: &str, rel: &str) -> bool {
    if pattern.contains('/') {
        glob(pattern.trim_start_matches('/').as_bytes(), rel.as_bytes())
    } else {
        glob(
            pattern.as_bytes(),
            rel.rsplit('/').next().unwrap_or(rel).as_bytes(),
        )
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match p {
        [] => s.is_empty(),
        [b'*', b'*', rest @ ..] => {
            let rest = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=s.len()).any(|i| (i == 0 || s[i - 1] == b'/') && glob(rest, &s[i..]))
                || glob(rest, s)
        }
        [b'*', rest @ ..] => (0..=s.len())
            .take_while(|&i| i == 0 || s[i - 1] != b'/')
            .any(|i| glob(rest, &s[i..])),
        [b'?', rest @ ..] => s.first().is_some_and(|&c| c != b'/') && glob(rest, &s[1..]),
        [c, rest @ ..] => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

/// True for files that carry secrets by name: `consul/consul_secrets.json`, `*.key`, anything
/// whose name contains `secret`. A tree also counts files that are not world-readable and
/// `--secret` patterns ([`ConfigTree::is_secret_entry`]).
pub fn is_secret(rel: &str) -> bool {
    secret_rule(rel, 0o644, &[]).is_some()
}

/// Mode of an entry on the media: 0755 directories; files 0644, 0755 when the source is
/// executable (the first-boot service runs such scripts), 0600 (0700 executable) for secrets.
pub fn media_mode(e: &TreeEntry) -> u32 {
    let exec = e.mode & 0o111 != 0;
    match e.kind {
        EntryKind::Dir => 0o755,
        EntryKind::File if e.secret && exec => 0o700,
        EntryKind::File if e.secret => 0o600,
        EntryKind::File if exec => 0o755,
        EntryKind::File => 0o644,
    }
}

/// Date of an entry on the media: `SOURCE_DATE_EPOCH` when set, else the file's own mtime.
pub fn media_mtime(ctx: &BuildContext, mtime: i64) -> i64 {
    if ctx.is_deterministic() {
        ctx.now() as i64
    } else {
        mtime
    }
}

/// Walks and validates `root`; `Err(InvalidConfig)` listing every error when there is one.
/// Returns the tree, the role and the report (warnings only).
pub fn check(root: &Path, role: Option<Role>) -> Result<(ConfigTree, Option<Role>, Report)> {
    let mut report = Report::default();
    let tree = ConfigTree::scan(root, &mut report)?;
    let role = validate(&tree, role, &mut report);
    report.check(root)?;
    Ok((tree, role, report))
}

/// Options of the provisioning DVD.
#[derive(Debug, Clone)]
pub struct DvdOptions {
    /// ISO volume id.
    pub volume_id: String,
    /// Replace an existing output.
    pub force: bool,
    /// Flush the output to stable storage before renaming it into place.
    pub sync: bool,
}

/// Adds every entry of `tree` to an ISO builder (modes per [`media_mode`], owner root).
pub fn tree_to_iso(tree: &ConfigTree, volume_id: &str, ctx: &BuildContext) -> Result<IsoBuilder> {
    let mut b = IsoBuilder::new(
        volume_id,
        Meta::root(0o755, media_mtime(ctx, tree.root_mtime)),
    )?;
    b.set_volume_time(ctx.now() as i64);
    for e in &tree.entries {
        let meta = Meta::root(media_mode(e), media_mtime(ctx, e.mtime));
        match e.kind {
            EntryKind::Dir => b.add_dir(&e.rel, meta)?,
            EntryKind::File => b.add_file(
                &e.rel,
                FileData::Checked(tree.checked_input(e)),
                e.size,
                meta,
            )?,
        }
    }
    Ok(b)
}

/// Refuses an output inside the config tree (by directory identity, whatever links lead there)
/// or that is one of its files.
pub fn refuse_output_in_tree(tree: &ConfigTree, out: &Path) -> Result<()> {
    if crate::output::check_not_input(out, &[&tree.root]).is_err() {
        return Err(err!(
            InvalidArgument,
            "the output must not be inside the config tree {}",
            tree.root.display()
        )
        .with_path(out));
    }
    crate::output::check_not_input(out, &tree.input_paths())
}

/// The mode an output carrying `tree` gets, and the note saying why when it is 0600: a tree
/// with secrets makes a 0600 output, any other one follows the umask (0644 filtered); `mode`
/// (`--mode`) overrides.
pub fn output_mode(tree: &ConfigTree, mode: Option<u32>) -> (OutputOptions, Option<String>) {
    let why: Vec<String> = tree
        .files()
        .filter_map(|e| tree.is_secret_entry(e).map(|w| format!("{} ({w})", e.rel)))
        .collect();
    let base = if why.is_empty() { 0o644 } else { 0o600 };
    let opts = OutputOptions::new(false, base).with_mode(mode);
    let note = match (mode, why.is_empty()) {
        (None, false) => Some(format!(
            "the output is mode 0600 because it carries secrets: {}; --mode OCTAL to choose",
            why.join(", ")
        )),
        (Some(m), false) if m & 0o077 != 0 => Some(format!(
            "--mode {m:04o}: the output carries secrets ({}) and others can read it",
            why.join(", ")
        )),
        _ => None,
    };
    (opts, note)
}

/// The tree-relative path of entry `name` of directory `prefix` at `depth`, or `None` (with an
/// error in `report`) when it cannot go on the media: not UTF-8, too long, too deep.
fn checked_name(
    prefix: &str,
    name: &std::ffi::OsStr,
    depth: usize,
    report: &mut Report,
) -> Option<String> {
    let Some(name_s) = name.to_str() else {
        report.error(
            &format!("{prefix}{}", name.to_string_lossy()),
            None,
            "the name is not UTF-8; it cannot be written to the media",
        );
        return None;
    };
    let rel = format!("{prefix}{name_s}");
    if name_s.len() > crate::iso::build::MAX_RR_NAME {
        report.error(
            &rel,
            None,
            format!(
                "the name is {} bytes long; at most {} fit on the media",
                name_s.len(),
                crate::iso::build::MAX_RR_NAME
            ),
        );
        return None;
    }
    if depth > MAX_TREE_DEPTH {
        report.error(
            &rel,
            None,
            format!("nested deeper than {MAX_TREE_DEPTH} directories (ISO 9660 limit)"),
        );
        return None;
    }
    Some(rel)
}

/// What [`write_dvd`] made.
#[derive(Debug, Clone)]
pub struct DvdReport {
    /// Image size in bytes.
    pub size: u64,
    /// Permission bits of the output.
    pub mode: u32,
    /// Why the output has its mode, when it is restricted.
    pub note: Option<String>,
}

/// Writes the provisioning DVD of an already checked tree to `out` (0600 when the tree carries
/// secrets, else by the umask; `mode` overrides). Returns the image size.
pub fn build_dvd(
    tree: &ConfigTree,
    out: &Path,
    opts: &DvdOptions,
    ctx: &BuildContext,
) -> Result<u64> {
    write_dvd(tree, out, opts, None, ctx, &crate::disk::NoProgress).map(|r| r.size)
}

/// [`build_dvd`] with the output mode the user asked for, reporting a "writing the ISO" phase
/// (bytes of the image) and a "syncing" phase to `progress`.
pub fn write_dvd(
    tree: &ConfigTree,
    out: &Path,
    opts: &DvdOptions,
    mode: Option<u32>,
    ctx: &BuildContext,
    progress: &dyn crate::disk::Progress,
) -> Result<DvdReport> {
    refuse_output_in_tree(tree, out)?;
    let b = tree_to_iso(tree, &opts.volume_id, ctx)?;
    let (oo, note) = output_mode(tree, mode);
    let o = AtomicOutput::create(
        out,
        &tree.input_paths(),
        OutputOptions {
            force: opts.force,
            sync: opts.sync,
            ..oo
        },
    )?;
    let n = b.write(&o, progress).map_err(|e| o.blame(e))?;
    let mode = o.mode();
    crate::disk::commit_syncing(o, opts.sync, progress)?;
    Ok(DvdReport {
        size: n,
        mode,
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_recognised() {
        assert!(is_secret("consul/consul_secrets.json"));
        assert!(is_secret("consul/certs/consul_cert.key"));
        assert!(is_secret("app/db_SECRET.txt"));
        assert!(!is_secret("consul/certs/consul_cert.crt"));
        assert!(!is_secret("consul/consul_region.json"));
    }

    #[test]
    fn report_lists_every_error() {
        let mut r = Report::default();
        r.error("a.json", Some("k"), "missing");
        r.warn("b.json", None, "absent");
        r.error("c.json", None, "bad");
        let e = r.check(Path::new("cfg")).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidConfig);
        assert!(e.message().contains("2 error(s)"));
        assert!(e.message().contains("a.json: key `k`: missing"));
        assert!(e.message().contains("c.json: bad"));
        assert!(!e.message().contains("b.json"));
    }
}
