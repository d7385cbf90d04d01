//! Inspection: `iso info`, `iso ls`, `iso extract`.

use super::boot::{self, BootCatalog, BootInfoTable, SystemArea};
use super::read::{BLOCK, Entry, IsoFile, Lookup, NodeKind, Tree, TreeKind, parse_volume};
use crate::err;
use crate::error::{IoContext, Result};
use serde::Serialize;
use std::path::Path;

/// One tree of the image.
#[derive(Debug, Serialize)]
pub struct TreeInfo {
    /// primary / joliet / enhanced
    pub kind: TreeKind,
    /// Volume id.
    pub volume_id: String,
    /// Rock Ridge present (primary).
    pub rock_ridge: bool,
    /// Joliet level.
    pub joliet_level: Option<u8>,
    /// Volume space size in blocks.
    pub volume_space_blocks: u32,
}

/// A boot entry with the path of its image when known.
#[derive(Debug, Serialize)]
pub struct BootImageInfo {
    /// The catalog entry.
    #[serde(flatten)]
    pub entry: boot::BootEntry,
    /// "bios" / "uefi" / hex.
    pub platform_name: String,
    /// Path in the primary tree of the file at the image LBA.
    pub path: Option<String>,
    /// Size of that file.
    pub file_size: Option<u64>,
    /// Boot-info-table when the image has one.
    pub boot_info_table: Option<BootInfoTable>,
}

/// What `iso info` reports.
#[derive(Debug, Serialize)]
pub struct IsoInfo {
    /// File size.
    pub file_size: u64,
    /// Volume id (primary).
    pub volume_id: String,
    /// Trees present.
    pub trees: Vec<TreeInfo>,
    /// Boot catalog LBA and its path.
    pub boot_catalog: Option<u32>,
    /// Boot catalog path.
    pub boot_catalog_path: Option<String>,
    /// Boot images.
    pub boot_images: Vec<BootImageInfo>,
    /// System area.
    pub system_area: SystemArea,
}

/// Human name of an El Torito platform id.
pub fn platform_name(p: u8) -> String {
    match p {
        0 => "bios".into(),
        0xEF => "uefi".into(),
        1 => "ppc".into(),
        2 => "mac".into(),
        n => format!("0x{n:02x}"),
    }
}

/// The primary tree of an opened image.
pub fn primary_tree(iso: &IsoFile) -> Result<Tree> {
    let vol = parse_volume(iso)?;
    Tree::new(iso, &vol.primary)
}

/// The tree to list and extract from, as xorriso picks it: the primary tree when it has Rock
/// Ridge, else the Joliet tree when there is one (its names are the long ones), else the
/// primary tree with ISO 9660 names.
pub fn listing_tree(iso: &IsoFile) -> Result<Tree> {
    let vol = parse_volume(iso)?;
    let primary = Tree::new(iso, &vol.primary)?;
    match vol.joliet() {
        Some(j) if !primary.rock_ridge => Tree::new(iso, j),
        _ => Ok(primary),
    }
}

/// Inspects an image.
pub fn inspect(path: &Path) -> Result<IsoInfo> {
    inspect_iso(&IsoFile::open(path)?)
}

/// Inspects an opened image (a file or bytes in memory).
pub fn inspect_iso(iso: &IsoFile) -> Result<IsoInfo> {
    let path = iso.path();
    let vol = parse_volume(iso)?;
    let mut trees = Vec::new();
    let mut primary = None;
    for vd in vol.trees() {
        let t = Tree::new(iso, vd)?;
        trees.push(TreeInfo {
            kind: vd.kind,
            volume_id: vd.volume_id.clone(),
            rock_ridge: t.rock_ridge,
            joliet_level: vd.joliet_level,
            volume_space_blocks: vd.volume_space,
        });
        if vd.kind == TreeKind::Primary {
            primary = Some(t);
        }
    }
    let primary = primary.ok_or_else(|| err!(NotFound, "no primary tree").with_path(path))?;
    // map LBA -> path for files of the primary tree
    let mut by_lba: std::collections::HashMap<u32, (String, u64)> = Default::default();
    primary.walk(iso, &mut |p, e: &Entry, _d| {
        if !e.is_dir() && !e.is_symlink() {
            by_lba
                .entry(e.rec().extent)
                .or_insert((p.to_string(), e.size()));
        }
        Ok(())
    })?;
    let mut boot_images = Vec::new();
    let mut boot_catalog_path = None;
    if let Some(lba) = vol.boot_catalog {
        boot_catalog_path = by_lba.get(&lba).map(|x| x.0.clone());
        let cat: BootCatalog = boot::parse_catalog(iso, lba)?;
        for e in cat.entries {
            let f = by_lba.get(&e.lba);
            let len = f.map(|x| x.1).unwrap_or(e.load_sectors as u64 * 512);
            let bit = if e.platform == 0 {
                boot::boot_info_table(iso, e.lba, len)?
            } else {
                None
            };
            boot_images.push(BootImageInfo {
                platform_name: platform_name(e.platform),
                path: f.map(|x| x.0.clone()),
                file_size: f.map(|x| x.1),
                boot_info_table: bit,
                entry: e,
            });
        }
    }
    Ok(IsoInfo {
        file_size: iso.len(),
        volume_id: vol.primary.volume_id.clone(),
        trees,
        boot_catalog: vol.boot_catalog,
        boot_catalog_path,
        boot_images,
        system_area: boot::parse_system_area(iso)?,
    })
}

/// One line of `iso ls`.
#[derive(Debug, Serialize, Clone)]
pub struct LsEntry {
    /// Path.
    pub path: String,
    /// file / dir / symlink / block / char / fifo / socket.
    pub kind: NodeKind,
    /// Size of the content (uncompressed for zisofs files; 0 for directories and nodes).
    pub size: u64,
    /// Size as stored in the image (differs from `size` for zisofs files).
    pub stored_size: u64,
    /// zisofs-compressed (Rock Ridge ZF).
    pub zisofs: bool,
    /// Mode (Rock Ridge).
    pub mode: Option<u32>,
    /// Symlink target.
    pub target: Option<String>,
    /// Device number of block and character nodes (Rock Ridge PN: high, low 32 bits).
    pub device: Option<(u32, u32)>,
}

fn ls_entry(p: &str, e: &Entry) -> LsEntry {
    let kind = e.kind();
    let file = kind == NodeKind::File;
    LsEntry {
        path: p.to_string(),
        kind,
        size: if file { e.content_size() } else { 0 },
        stored_size: if file { e.size() } else { 0 },
        zisofs: file && e.rr.zf.is_some(),
        mode: e.rr.mode,
        target: e.rr.symlink.clone(),
        device: e
            .rr
            .rdev
            .filter(|_| matches!(kind, NodeKind::Block | NodeKind::Char)),
    }
}

/// Lists `dir` of the primary tree (recursively when `recursive`).
pub fn list(path: &Path, dir: &str, recursive: bool) -> Result<Vec<LsEntry>> {
    list_iso(&IsoFile::open(path)?, dir, recursive)
}

/// Lists `dir` of an opened image (a file or bytes in memory), as [`list`].
pub fn list_iso(iso: &IsoFile, dir: &str, recursive: bool) -> Result<Vec<LsEntry>> {
    let path = iso.path();
    let tree = listing_tree(iso)?;
    let mut out = Vec::new();
    if recursive && (dir.is_empty() || dir == "/") {
        tree.walk(iso, &mut |p, e, _| {
            out.push(ls_entry(p, e));
            Ok(())
        })?;
        return Ok(out);
    }
    let base = dir.trim_end_matches('/');
    let d = match tree.lookup(iso, dir)? {
        Lookup::Root(d) => d,
        Lookup::Found { parent, index } => {
            let e = &parent.entries[index];
            if !e.is_dir() || e.is_symlink() {
                return Ok(vec![ls_entry(base, e)]);
            }
            tree.read_dir(iso, e.dir_extent(), tree.dir_size(iso, e)?)?
        }
        Lookup::Missing { .. } => {
            return Err(err!(NotFound, "{dir}: no such path in the ISO").with_path(path));
        }
    };
    for e in &d.entries {
        if !e.rr.relocated {
            out.push(ls_entry(&format!("{base}/{}", e.name), e));
        }
    }
    Ok(out)
}

/// Finds the regular file `path` of `tree`: refuses directories, symlinks and device nodes,
/// fifos and sockets with an error naming what the path is.
pub fn regular_file(iso: &IsoFile, tree: &Tree, path: &str) -> Result<Entry> {
    match tree.lookup(iso, path)? {
        Lookup::Found { parent, index } => {
            let e = parent.entries[index].clone();
            match e.kind() {
                NodeKind::File => Ok(e),
                NodeKind::Block | NodeKind::Char => Err(err!(
                    Unsupported,
                    "{path} is a {} device node: device nodes are not extracted",
                    e.kind()
                )
                .with_path(iso.path())),
                k => Err(err!(InvalidArgument, "{path} is a {k}, not a regular file")
                    .with_path(iso.path())),
            }
        }
        _ => Err(err!(NotFound, "{path}: no such file in the ISO").with_path(iso.path())),
    }
}

/// The extents of a file entry as (lba, bytes), each checked to lie inside the image.
fn entry_extents(iso: &IsoFile, e: &Entry, path: &str) -> Result<Vec<(u32, u32)>> {
    let ex: Vec<(u32, u32)> = e.records.iter().map(|r| (r.extent, r.size)).collect();
    for (lba, n) in &ex {
        if *lba as u64 * BLOCK + *n as u64 > iso.len() {
            return Err(iso.bad(
                err!(Truncated, "{path}: extent past the end of the image"),
                "file extent",
                *lba as u64 * BLOCK,
            ));
        }
    }
    Ok(ex)
}

/// Finds a regular file of the primary tree: (extents as (lba, bytes)).
pub fn file_extents(iso: &IsoFile, tree: &Tree, path: &str) -> Result<Vec<(u32, u32)>> {
    let e = regular_file(iso, tree, path)?;
    entry_extents(iso, &e, path)
}

/// Reads `len` bytes at `off` of a file stored in `ex` (bytes of the extents in order).
fn read_stored(
    iso: &IsoFile,
    ex: &[(u32, u32)],
    off: u64,
    len: u64,
    what: &str,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(len as usize);
    let (mut pos, end) = (0u64, off + len);
    for &(lba, n) in ex {
        let (a, b) = (pos.max(off), (pos + n as u64).min(end));
        if a < b {
            out.extend(iso.read(lba as u64 * BLOCK + (a - pos), b - a, what)?);
        }
        pos += n as u64;
    }
    if out.len() as u64 != len {
        return Err(err!(
            Truncated,
            "{what}: {len} bytes at {off} past the file's {pos}"
        )
        .with_path(iso.path()));
    }
    Ok(out)
}

/// Decodes the zisofs file stored in `ex`, handing its bytes to `out`.
fn decode_zisofs(
    iso: &IsoFile,
    ex: &[(u32, u32)],
    zf: &super::zisofs::Zf,
    path: &str,
    out: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let stored: u64 = ex.iter().map(|x| x.1 as u64).sum();
    let start = ex.first().map(|x| x.0 as u64 * BLOCK).unwrap_or(0);
    super::zisofs::decode(
        zf,
        stored,
        &mut |o, n| read_stored(iso, ex, o, n, path),
        out,
    )
    .map_err(|e| {
        let at = e.offset().unwrap_or(0);
        e.with_structure(format!("zisofs file {path}"))
            .at(start + at)
            .with_path(iso.path())
    })
}

/// Hands a file of the ISO to `out` in pieces of at most 1 MiB (zisofs decoded unless `raw`):
/// `iso extract -o -`. Returns the bytes handed.
pub fn stream_file(
    path: &Path,
    file: &str,
    raw: bool,
    out: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let iso = IsoFile::open(path)?;
    let tree = listing_tree(&iso)?;
    let e = regular_file(&iso, &tree, file)?;
    let ex = entry_extents(&iso, &e, file)?;
    if let (Some(zf), false) = (&e.rr.zf, raw) {
        return decode_zisofs(&iso, &ex, zf, file, out);
    }
    let stored: u64 = ex.iter().map(|x| x.1 as u64).sum();
    let mut off = 0;
    while off < stored {
        let n = (stored - off).min(1 << 20);
        out(&read_stored(&iso, &ex, off, n, file)?)?;
        off += n;
    }
    Ok(stored)
}

/// Reads a (small) file of the primary tree into memory (limit `max` bytes), zisofs decoded.
pub fn read_file(iso: &IsoFile, tree: &Tree, path: &str, max: u64) -> Result<Vec<u8>> {
    let e = regular_file(iso, tree, path)?;
    let ex = entry_extents(iso, &e, path)?;
    let total = e.content_size();
    if total > max {
        return Err(
            err!(LimitExceeded, "{path} is {total} bytes, more than {max}").with_path(iso.path()),
        );
    }
    let mut out = Vec::with_capacity(total as usize);
    match &e.rr.zf {
        Some(zf) => {
            decode_zisofs(iso, &ex, zf, path, &mut |b| {
                out.extend_from_slice(b);
                Ok(())
            })?;
        }
        None => out = read_stored(iso, &ex, 0, e.size(), path)?,
    }
    Ok(out)
}

/// Extracts a file of the listing tree (see [`listing_tree`]) to `out` through an atomic
/// output: zisofs files decoded unless `raw` (then the stored bytes). Device nodes, fifos,
/// sockets, symlinks and directories are refused with a named error.
pub fn extract(
    path: &Path,
    file: &str,
    out: &Path,
    opts: crate::output::OutputOptions,
    raw: bool,
) -> Result<u64> {
    let iso = IsoFile::open(path)?;
    let tree = listing_tree(&iso)?;
    let e = regular_file(&iso, &tree, file)?;
    let ex = entry_extents(&iso, &e, file)?;
    let o = crate::output::AtomicOutput::create(out, &[path], opts)?;
    let mut pos = 0u64;
    match (&e.rr.zf, raw) {
        (Some(zf), false) => {
            use std::os::unix::fs::FileExt;
            decode_zisofs(&iso, &ex, zf, file, &mut |b| {
                o.file()
                    .write_all_at(b, pos)
                    .ctx(o.tmp_path(), "writing the decoded file")?;
                pos += b.len() as u64;
                Ok(())
            })?;
        }
        _ => {
            for (lba, n) in ex {
                crate::disk::raw::copy_file_bytes(
                    iso.require_file()?,
                    lba as u64 * BLOCK,
                    o.file(),
                    pos,
                    n as u64,
                )
                .ctx(o.tmp_path(), "copying the file out of the ISO")?;
                pos += n as u64;
            }
        }
    }
    o.file()
        .set_len(pos)
        .ctx(o.tmp_path(), "sizing the output")?;
    o.commit()?;
    Ok(pos)
}
