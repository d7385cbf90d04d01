//! The provisioning `config/` tree: its model (a walk that refuses what cannot travel), its
//! validation against what the first-boot service reads, and the provisioning DVD built from it.
//!
//! Validation gathers every finding before anything is built ([`Report`]); errors block the
//! build, warnings are for the operator. Findings name files and keys, never values: the tree
//! carries a gossip key and certificate keys.

pub mod pem;
pub mod validate;

use crate::context::BuildContext;
use crate::err;
use crate::error::{IoContext, Result};
use crate::iso::build::{FileData, IsoBuilder, Meta};
use crate::output::{AtomicOutput, OutputOptions};
use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

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
        write!(f, "{sev}: {}", self.file)?;
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
    /// Where the bytes are read from (the symlink's target for followed links).
    pub source: PathBuf,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Modification time on disk.
    pub mtime: i64,
}

/// A config tree as walked from disk. Entries are sorted by relative path.
#[derive(Debug, Clone)]
pub struct ConfigTree {
    /// The root given.
    pub root: PathBuf,
    /// Root's modification time.
    pub root_mtime: i64,
    /// Every directory and file under the root.
    pub entries: Vec<TreeEntry>,
}

/// Largest file read into memory for checking (JSON, PEM).
const MAX_CHECKED_FILE: u64 = 16 << 20;

impl ConfigTree {
    /// Walks `root` without following symlinks out of it. Symlinks that leave the tree (or
    /// dangle, or point to directories), devices, fifos and sockets become errors in `report`;
    /// only an unreadable root is an `Err`.
    pub fn scan(root: &Path, report: &mut Report) -> Result<Self> {
        let meta = std::fs::metadata(root).ctx(root, "reading the config tree")?;
        if !meta.is_dir() {
            return Err(err!(InvalidArgument, "the config tree is not a directory").with_path(root));
        }
        let canon = root.canonicalize().ctx(root, "resolving the config tree")?;
        let mut tree = ConfigTree {
            root: root.to_path_buf(),
            root_mtime: meta.mtime(),
            entries: Vec::new(),
        };
        tree.walk(root, &canon, "", 1, report)?;
        tree.entries.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(tree)
    }

    fn walk(
        &mut self,
        dir: &Path,
        canon_root: &Path,
        prefix: &str,
        depth: usize,
        report: &mut Report,
    ) -> Result<()> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(dir).ctx(dir, "listing a directory of the config tree")? {
            let e = e.ctx(dir, "listing a directory of the config tree")?;
            names.push(e.file_name());
        }
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let Some(name) = name.to_str() else {
                report.error(
                    &format!("{prefix}{}", name.to_string_lossy()),
                    None,
                    "the name is not UTF-8; it cannot be written to the media",
                );
                continue;
            };
            let rel = format!("{prefix}{name}");
            if name.len() > crate::iso::build::MAX_RR_NAME {
                report.error(
                    &rel,
                    None,
                    format!(
                        "the name is {} bytes long; at most {} fit on the media",
                        name.len(),
                        crate::iso::build::MAX_RR_NAME
                    ),
                );
                continue;
            }
            if depth > MAX_TREE_DEPTH {
                report.error(
                    &rel,
                    None,
                    format!("nested deeper than {MAX_TREE_DEPTH} directories (ISO 9660 limit)"),
                );
                continue;
            }
            let lmeta = std::fs::symlink_metadata(&path).ctx(&path, "reading an entry")?;
            let ft = lmeta.file_type();
            if ft.is_dir() {
                self.entries.push(TreeEntry {
                    rel: rel.clone(),
                    kind: EntryKind::Dir,
                    source: path.clone(),
                    size: 0,
                    mtime: lmeta.mtime(),
                });
                self.walk(&path, canon_root, &format!("{rel}/"), depth + 1, report)?;
            } else if ft.is_file() {
                self.entries.push(TreeEntry {
                    rel,
                    kind: EntryKind::File,
                    source: path,
                    size: lmeta.len(),
                    mtime: lmeta.mtime(),
                });
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path).ctx(&path, "reading a symlink")?;
                match path.canonicalize() {
                    Err(_) => report.error(
                        &rel,
                        None,
                        format!("symlink to {} dangles or loops; refused", target.display()),
                    ),
                    Ok(t) if !t.starts_with(canon_root) => report.error(
                        &rel,
                        None,
                        format!("symlink to {} leaves the tree; refused", target.display()),
                    ),
                    Ok(t) => {
                        let m = std::fs::metadata(&t).ctx(&t, "reading a symlink's target")?;
                        if m.is_file() {
                            self.entries.push(TreeEntry {
                                rel,
                                kind: EntryKind::File,
                                source: t,
                                size: m.len(),
                                mtime: m.mtime(),
                            });
                        } else {
                            report.error(
                                &rel,
                                None,
                                "symlink to something other than a regular file; refused",
                            );
                        }
                    }
                }
            } else {
                let what = if ft.is_fifo() {
                    "a fifo"
                } else if ft.is_block_device() || ft.is_char_device() {
                    "a device"
                } else if ft.is_socket() {
                    "a socket"
                } else {
                    "not a regular file"
                };
                report.error(&rel, None, format!("is {what}; refused"));
            }
        }
        Ok(())
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

    /// Reads a (small) file of the tree into memory.
    pub fn read(&self, rel: &str) -> Result<Vec<u8>> {
        let e = self
            .get(rel)
            .ok_or_else(|| err!(NotFound, "{rel} is not in the tree"))?;
        if e.size > MAX_CHECKED_FILE {
            return Err(err!(
                AbsurdSize,
                "{rel} is {} bytes; files checked by isotool are at most {MAX_CHECKED_FILE}",
                e.size
            )
            .with_path(&e.source));
        }
        std::fs::read(&e.source).ctx(&e.source, "reading a file of the config tree")
    }

    /// Reads any file of the tree (no size limit: the caller bounds its own memory).
    pub fn read_any(&self, e: &TreeEntry) -> Result<Vec<u8>> {
        std::fs::read(&e.source).ctx(&e.source, "reading a file of the config tree")
    }
}

/// True for files that carry secrets: `consul/consul_secrets.json`, `*.key`, anything whose
/// name contains `secret`. They are mode 0600 on every medium.
pub fn is_secret(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel).to_ascii_lowercase();
    rel == "consul/consul_secrets.json" || name.ends_with(".key") || name.contains("secret")
}

/// Mode of an entry on the media: 0755 directories, 0600 secrets, 0644 other files.
pub fn media_mode(e: &TreeEntry) -> u32 {
    match e.kind {
        EntryKind::Dir => 0o755,
        EntryKind::File if is_secret(&e.rel) => 0o600,
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
            EntryKind::File => {
                b.add_file(&e.rel, FileData::Path(e.source.clone()), e.size, meta)?
            }
        }
    }
    Ok(b)
}

/// Writes the provisioning DVD of an already checked tree to `out` (created 0600: it carries
/// secrets). Returns the image size.
pub fn build_dvd(
    tree: &ConfigTree,
    out: &Path,
    opts: &DvdOptions,
    ctx: &BuildContext,
) -> Result<u64> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let (Ok(p), Ok(r)) = (parent.canonicalize(), tree.root.canonicalize())
        && p.starts_with(&r)
    {
        return Err(err!(
            InvalidArgument,
            "the output must not be inside the config tree"
        )
        .with_path(out));
    }
    let b = tree_to_iso(tree, &opts.volume_id, ctx)?;
    let o = AtomicOutput::create(
        out,
        &[],
        OutputOptions::new(opts.force, 0o600).with_sync(opts.sync),
    )?;
    let n = b.write(&o)?;
    o.commit()?;
    Ok(n)
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
