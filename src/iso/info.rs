//! Inspection: `iso info`, `iso ls`, `iso extract`.

use super::boot::{self, BootCatalog, BootInfoTable, SystemArea};
use super::read::{BLOCK, Entry, IsoFile, Lookup, Tree, TreeKind, parse_volume};
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

/// Inspects an image.
pub fn inspect(path: &Path) -> Result<IsoInfo> {
    let iso = IsoFile::open(path)?;
    let vol = parse_volume(&iso)?;
    let mut trees = Vec::new();
    let mut primary = None;
    for vd in vol.trees() {
        let t = Tree::new(&iso, vd)?;
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
    primary.walk(&iso, &mut |p, e: &Entry, _d| {
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
        let cat: BootCatalog = boot::parse_catalog(&iso, lba)?;
        for e in cat.entries {
            let f = by_lba.get(&e.lba);
            let len = f.map(|x| x.1).unwrap_or(e.load_sectors as u64 * 512);
            let bit = if e.platform == 0 {
                boot::boot_info_table(&iso, e.lba, len)?
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
        system_area: boot::parse_system_area(&iso)?,
    })
}

/// One line of `iso ls`.
#[derive(Debug, Serialize, Clone)]
pub struct LsEntry {
    /// Path.
    pub path: String,
    /// "dir" / "file" / "symlink".
    pub kind: &'static str,
    /// Size.
    pub size: u64,
    /// Mode (Rock Ridge).
    pub mode: Option<u32>,
    /// Symlink target.
    pub target: Option<String>,
}

fn ls_entry(p: &str, e: &Entry) -> LsEntry {
    LsEntry {
        path: p.to_string(),
        kind: if e.is_symlink() {
            "symlink"
        } else if e.is_dir() {
            "dir"
        } else {
            "file"
        },
        size: if e.is_dir() { 0 } else { e.size() },
        mode: e.rr.mode,
        target: e.rr.symlink.clone(),
    }
}

/// Lists `dir` of the primary tree (recursively when `recursive`).
pub fn list(path: &Path, dir: &str, recursive: bool) -> Result<Vec<LsEntry>> {
    let iso = IsoFile::open(path)?;
    let tree = primary_tree(&iso)?;
    let mut out = Vec::new();
    if recursive && (dir.is_empty() || dir == "/") {
        tree.walk(&iso, &mut |p, e, _| {
            out.push(ls_entry(p, e));
            Ok(())
        })?;
        return Ok(out);
    }
    let base = dir.trim_end_matches('/');
    let d = match tree.lookup(&iso, dir)? {
        Lookup::Root(d) => d,
        Lookup::Found { parent, index } => {
            let e = &parent.entries[index];
            if !e.is_dir() || e.is_symlink() {
                return Ok(vec![ls_entry(base, e)]);
            }
            tree.read_dir(&iso, e.dir_extent(), e.rec().size)?
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

/// Finds a regular file of the primary tree: (extents as (lba, bytes)).
pub fn file_extents(iso: &IsoFile, tree: &Tree, path: &str) -> Result<Vec<(u32, u32)>> {
    match tree.lookup(iso, path)? {
        Lookup::Found { parent, index } => {
            let e = &parent.entries[index];
            if e.is_dir() || e.is_symlink() {
                return Err(
                    err!(InvalidArgument, "{path} is not a regular file").with_path(iso.path())
                );
            }
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
        _ => Err(err!(NotFound, "{path}: no such file in the ISO").with_path(iso.path())),
    }
}

/// Reads a (small) file of the primary tree into memory (limit `max` bytes).
pub fn read_file(iso: &IsoFile, tree: &Tree, path: &str, max: u64) -> Result<Vec<u8>> {
    let ex = file_extents(iso, tree, path)?;
    let total: u64 = ex.iter().map(|x| x.1 as u64).sum();
    if total > max {
        return Err(
            err!(LimitExceeded, "{path} is {total} bytes, more than {max}").with_path(iso.path()),
        );
    }
    let mut out = Vec::with_capacity(total as usize);
    for (lba, n) in ex {
        out.extend(iso.read(lba as u64 * BLOCK, n as u64, path)?);
    }
    Ok(out)
}

/// Extracts a file of the primary tree to `out` (through an atomic output).
pub fn extract(
    path: &Path,
    file: &str,
    out: &Path,
    opts: crate::output::OutputOptions,
) -> Result<u64> {
    let iso = IsoFile::open(path)?;
    let tree = primary_tree(&iso)?;
    let ex = file_extents(&iso, &tree, file)?;
    let o = crate::output::AtomicOutput::create(out, &[path], opts)?;
    let mut pos = 0u64;
    for (lba, n) in ex {
        crate::disk::raw::copy_file_bytes(iso.file(), lba as u64 * BLOCK, o.file(), pos, n as u64)
            .ctx(o.tmp_path(), "copying the file out of the ISO")?;
        pos += n as u64;
    }
    o.file()
        .set_len(pos)
        .ctx(o.tmp_path(), "sizing the output")?;
    o.commit()?;
    Ok(pos)
}
