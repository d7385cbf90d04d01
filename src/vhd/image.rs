//! Reading VHD images: fixed (a window of the file), dynamic and differencing (BAT + blocks).
//!
//! Virtual size: we always use the footer's `current_size`, as the specification, Hyper-V,
//! Windows and Azure do. qemu instead sizes images whose creator is `vpc ` or `qemu` by their CHS
//! geometry (see [`Footer::qemu_uses_chs`]). For every file qemu-img itself writes the two agree
//! (without `force_size` qemu rounds the size up to a CHS size and stores that as
//! `current_size`; with it, it writes creator `qem2`). They differ only for Virtual PC images
//! (and hand-edited ones) whose CHS size is smaller than `current_size`: we then expose the
//! full `current_size` (nothing the image stores is hidden) and say in `info().notes` what
//! qemu would see.

use super::footer::{DiskType, FOOTER_SIZE, Footer, Geometry, field};
use super::header::{DynHeader, HEADER_SIZE, decode_locator, is_relative_code};
use super::layout::DynHeaderLayout;
use crate::disk::raw::{RawImage, copy_file_bytes, data_ranges};
use crate::disk::{
    DiskImage, DiskImageMut, Extent, ExtentKind, ImageInfo, ImageKind, clamp_window, push_extent,
};
use crate::disk::{NoParents, ParentOpener};
use crate::err;
use crate::error::{Error, IoContext, Result};
use std::fs::File;
use std::mem::offset_of;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// BAT value of an unallocated block.
pub const UNALLOCATED: u32 = 0xFFFF_FFFF;
/// Smallest block size we read (qemu's limit).
pub const MIN_BLOCK: u64 = 512;
/// Largest block size we read (VHDX's largest block; VHD tools use 512 KiB .. 2 MiB).
pub const MAX_BLOCK: u64 = 256 << 20;
/// Largest BAT we load (64 MiB: 2040 GiB with 128 KiB blocks).
pub const MAX_BAT_ENTRIES: u64 = 16 << 20;
/// Largest parent locator data we read.
const MAX_LOCATOR: u32 = 64 << 10;

/// Bytes of the sector bitmap before each block: one bit per sector, rounded up to 512.
pub fn bitmap_size(block_size: u64) -> u64 {
    (block_size / 512).div_ceil(8).next_multiple_of(512)
}

fn read_exact(file: &File, path: &Path, buf: &mut [u8], off: u64, what: &str) -> Result<()> {
    file.read_exact_at(buf, off).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            err!(Truncated, "the file ends inside the {what}")
                .with_structure(what.to_string())
                .at(off)
                .with_path(path)
        } else {
            Error::io(e, format!("reading the {what}"))
                .with_path(path)
                .at(off)
        }
    })
}

/// Reads the footer at the end of the file (512 bytes, or 511 for old Virtual PC).
/// Returns the footer and its offset.
fn end_footer(file: &File, path: &Path, len: u64) -> Result<(Footer, u64)> {
    if len < (FOOTER_SIZE as u64) - 1 {
        return Err(err!(
            Truncated,
            "the file has {len} bytes, too short for a VHD footer"
        )
        .with_structure("VHD footer")
        .with_path(path));
    }
    // The full footer, or the 511 bytes old Virtual PC versions wrote.
    const FULL: usize = FOOTER_SIZE;
    const SHORT: usize = FOOTER_SIZE - 1;
    let full = FULL as u64;
    let cookie = field::COOKIE;
    let mut b = [0u8; FOOTER_SIZE];
    let (off, n) = if len >= full {
        read_exact(file, path, &mut b, len - full, "VHD footer")?;
        if &b[cookie.clone()] == super::footer::COOKIE {
            (len - full, FULL)
        } else {
            read_exact(
                file,
                path,
                &mut b[..SHORT],
                len - SHORT as u64,
                "VHD footer",
            )?;
            if &b[cookie.clone()] == super::footer::COOKIE {
                (len - SHORT as u64, SHORT)
            } else {
                (len - full, FULL)
            }
        }
    } else {
        read_exact(file, path, &mut b[..SHORT], 0, "VHD footer")?;
        (0, SHORT)
    };
    if n == FULL && &b[cookie] != super::footer::COOKIE {
        // Re-read the 512-byte window so the error shows its cookie.
        read_exact(file, path, &mut b, len - full, "VHD footer")?;
    }
    let f = Footer::parse(&b[..n]).map_err(|e| e.with_path(path).at(off))?;
    Ok((f, off))
}

/// Opens a VHD image (fixed, dynamic or differencing) at `path`. `depth` is the position in a
/// differencing chain (the parent is opened through `parents` at `depth + 1`).
pub fn open(path: &Path, depth: u32, parents: &dyn ParentOpener) -> Result<Box<dyn DiskImage>> {
    Ok(match open_vhd(path, depth, false, parents)? {
        Opened::Fixed(f) => Box::new(f),
        Opened::Dynamic(d) => d,
    })
}

/// Opens a fixed or dynamic VHD for in-place writes ([`DiskImageMut`]). Writes to unallocated
/// blocks of a dynamic disk allocate them at the end of the file. Differencing disks are
/// refused (`Unsupported`).
pub fn open_rw(path: &Path) -> Result<Box<dyn DiskImageMut>> {
    Ok(match open_vhd(path, 0, true, &NoParents)? {
        Opened::Fixed(f) => Box::new(f),
        Opened::Dynamic(d) if d.parent.is_none() => d,
        Opened::Dynamic(_) => {
            return Err(err!(
                Unsupported,
                "writing into a differencing VHD is not supported"
            )
            .with_path(path));
        }
    })
}

enum Opened {
    Fixed(VhdFixed),
    Dynamic(Box<VhdDynamic>),
}

fn open_vhd(path: &Path, depth: u32, writable: bool, parents: &dyn ParentOpener) -> Result<Opened> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(writable)
        .open(path)
        .ctx(path, "opening image")?;
    let file_size = file.metadata().ctx(path, "reading metadata")?.len();
    let mut notes = Vec::new();
    let (footer, footer_off, end_ok) = locate_footer(&file, path, file_size, &mut notes)?;
    if end_ok && footer.disk_type != DiskType::Fixed && file_size >= FOOTER_SIZE as u64 {
        compare_footer_copy(&file, path, &footer, &mut notes)?;
    }
    footer_notes(&footer, &mut notes);
    match footer.disk_type {
        DiskType::Fixed => open_fixed(file, path, footer, footer_off, file_size, notes),
        DiskType::Dynamic | DiskType::Differencing => {
            if writable && footer.disk_type == DiskType::Differencing {
                return Err(err!(
                    Unsupported,
                    "writing into a differencing VHD is not supported"
                )
                .with_path(path));
            }
            if writable && !end_ok {
                return Err(err!(
                    Unsupported,
                    "refusing to write into a VHD whose trailing footer is damaged"
                )
                .with_path(path));
            }
            let d = VhdDynamic::open(
                file, path, footer, footer_off, end_ok, file_size, notes, depth, parents,
            )?;
            Ok(Opened::Dynamic(Box::new(d)))
        }
    }
}

/// Phase 1 of [`open_vhd`]: the footer at the end of the file, or (for dynamic and differencing
/// disks whose trailing footer is unusable) the copy at offset 0. Returns the footer, its offset
/// (the file size when the copy is used) and whether the trailing footer was usable.
fn locate_footer(
    file: &File,
    path: &Path,
    file_size: u64,
    notes: &mut Vec<String>,
) -> Result<(Footer, u64, bool)> {
    match end_footer(file, path, file_size) {
        Ok((f, off)) => {
            if off + FOOTER_SIZE as u64 != file_size {
                notes.push(
                    "511-byte footer (old Virtual PC): the last reserved byte is missing"
                        .to_string(),
                );
            }
            Ok((f, off, true))
        }
        Err(end_err) => {
            // Dynamic and differencing disks keep a copy of the footer at offset 0.
            let mut b = [0u8; FOOTER_SIZE];
            let head = if file_size >= FOOTER_SIZE as u64 {
                read_exact(file, path, &mut b, 0, "VHD footer copy")?;
                Footer::parse(&b).ok()
            } else {
                None
            };
            match head {
                Some(h) if h.disk_type != DiskType::Fixed => {
                    notes.push(format!(
                        "the footer at the end of the file is unusable ({}); using the copy at offset 0",
                        end_err.message()
                    ));
                    Ok((h, file_size, false))
                }
                _ => Err(end_err),
            }
        }
    }
}

/// Phase 2 of [`open_vhd`]: notes when the footer copy at offset 0 of a dynamic disk is
/// unusable or differs from the trailing footer (which wins).
fn compare_footer_copy(
    file: &File,
    path: &Path,
    footer: &Footer,
    notes: &mut Vec<String>,
) -> Result<()> {
    let mut b = [0u8; FOOTER_SIZE];
    read_exact(file, path, &mut b, 0, "VHD footer copy")?;
    match Footer::parse(&b) {
        Err(e) => notes.push(format!(
            "the footer copy at offset 0 is unusable ({}); using the footer at the end",
            e.message()
        )),
        Ok(h) if h != *footer => notes.push(
            "the footer copy at offset 0 differs from the footer at the end; using the latter"
                .to_string(),
        ),
        Ok(_) => {}
    }
    Ok(())
}

/// Phase 3 of [`open_vhd`]: notes on the geometry (what qemu would see) and the saved state.
fn footer_notes(footer: &Footer, notes: &mut Vec<String>) {
    if footer.geometry.bytes() != footer.current_size {
        let g = footer.geometry;
        let mut n = format!(
            "CHS geometry {}/{}/{} gives {} bytes, current size {}",
            g.cylinders,
            g.heads,
            g.sectors,
            g.bytes(),
            footer.current_size
        );
        if footer.qemu_uses_chs() {
            n.push_str(&format!(
                ": qemu (creator '{}') would see {} bytes",
                super::footer::tag(&footer.creator_app),
                g.bytes()
            ));
        }
        notes.push(n);
    }
    if footer.saved_state != 0 {
        notes.push("saved-state flag set (the disk was in use by a saved VM)".to_string());
    }
}

/// A fixed disk: the payload before the footer must be complete.
fn open_fixed(
    file: File,
    path: &Path,
    footer: Footer,
    footer_off: u64,
    file_size: u64,
    mut notes: Vec<String>,
) -> Result<Opened> {
    let need = footer.current_size + (file_size - footer_off);
    if file_size < need {
        return Err(err!(
            Truncated,
            "the file has {file_size} bytes; a fixed disk of {} bytes needs {need}",
            footer.current_size
        )
        .with_structure("VHD fixed payload")
        .with_path(path));
    }
    if footer_off > footer.current_size {
        notes.push(format!(
            "{} bytes between the payload and the footer are ignored",
            footer_off - footer.current_size
        ));
    }
    let raw = RawImage::window(file, path, 0, footer.current_size, ImageKind::VhdFixed);
    Ok(Opened::Fixed(VhdFixed {
        raw,
        footer,
        file_size,
        notes,
    }))
}

/// Reads and checks the dynamic disk header of a dynamic or differencing disk: its offset
/// (from the footer), block size and BAT entry count.
fn read_dyn_header(
    file: &File,
    path: &Path,
    footer: &Footer,
    file_size: u64,
    notes: &mut Vec<String>,
) -> Result<DynHeader> {
    let hoff = footer.data_offset;
    if hoff == u64::MAX {
        return Err(err!(
            BadField,
            "a {} disk needs the header offset in its footer, found none (all ones)",
            footer.disk_type.name()
        )
        .with_structure("VHD footer")
        .with_path(path));
    }
    if hoff
        .checked_add(HEADER_SIZE as u64)
        .is_none_or(|e| e > file_size)
    {
        return Err(err!(
            Truncated,
            "the dynamic disk header at {hoff} lies past the end of the file ({file_size} bytes)"
        )
        .with_structure("VHD dynamic disk header")
        .with_path(path));
    }
    let mut hb = [0u8; HEADER_SIZE];
    read_exact(file, path, &mut hb, hoff, "VHD dynamic disk header")?;
    let header = DynHeader::parse(&hb).map_err(|e| e.with_path(path).at(hoff))?;
    let hdr_err = |e: Error, field: usize| {
        e.with_structure("VHD dynamic disk header")
            .with_path(path)
            .at(hoff + field as u64)
    };
    let block_size = u64::from(header.block_size);
    if !block_size.is_power_of_two() || !(MIN_BLOCK..=MAX_BLOCK).contains(&block_size) {
        return Err(hdr_err(
            err!(
                AbsurdSize,
                "block size {block_size} is not a power of two between 512 bytes and 256 MiB"
            ),
            offset_of!(DynHeaderLayout, block_size),
        ));
    }
    let entries = u64::from(header.max_table_entries);
    let needed = footer.current_size.div_ceil(block_size);
    if entries < needed {
        return Err(hdr_err(
            err!(
                AbsurdSize,
                "the BAT has {entries} entries, but the current size {} needs {needed} blocks of {block_size} bytes",
                footer.current_size
            ),
            offset_of!(DynHeaderLayout, max_table_entries),
        ));
    }
    if entries > MAX_BAT_ENTRIES {
        return Err(hdr_err(
            err!(
                AbsurdSize,
                "max table entries {entries} is above the limit of {MAX_BAT_ENTRIES}"
            ),
            offset_of!(DynHeaderLayout, max_table_entries),
        ));
    }
    if header.version != 0x0001_0000 {
        notes.push(format!(
            "dynamic header version 0x{:08x} (expected 0x00010000)",
            header.version
        ));
    }
    Ok(header)
}

/// Reads the BAT (`bat_bytes` bytes at `toff`, big-endian u32 entries).
fn read_bat(
    file: &File,
    path: &Path,
    toff: u64,
    bat_bytes: u64,
    file_size: u64,
) -> Result<Vec<u32>> {
    if toff.checked_add(bat_bytes).is_none_or(|e| e > file_size) {
        return Err(err!(
            Truncated,
            "the BAT ({bat_bytes} bytes at {toff}) lies past the end of the file ({file_size} bytes)"
        )
        .with_structure("VHD BAT")
        .with_path(path));
    }
    let mut raw = vec![0u8; bat_bytes as usize];
    read_exact(file, path, &mut raw, toff, "VHD BAT")?;
    Ok(raw
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// A fixed VHD: the first `current_size` bytes of the file, read zero-copy and sparse-aware.
#[derive(Debug)]
pub struct VhdFixed {
    raw: RawImage,
    footer: Footer,
    file_size: u64,
    notes: Vec<String>,
}

fn base_info(footer: &Footer, format: ImageKind, file_size: u64, notes: &[String]) -> ImageInfo {
    let g = footer.geometry;
    ImageInfo {
        format,
        virtual_size: footer.current_size,
        file_size,
        logical_sector_size: 512,
        physical_sector_size: 512,
        creator: Some(footer.creator_string()),
        disk_id: Some(footer.unique_id.to_string()),
        geometry: Some((g.cylinders, g.heads, g.sectors)),
        notes: notes.to_vec(),
        ..Default::default()
    }
}

impl VhdFixed {
    /// The footer.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }
}

impl DiskImage for VhdFixed {
    fn len(&self) -> u64 {
        self.raw.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.raw.read_at(buf, offset)
    }
    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        self.raw.extents(offset, len)
    }
    fn info(&self) -> ImageInfo {
        let mut i = base_info(
            &self.footer,
            ImageKind::VhdFixed,
            self.file_size,
            &self.notes,
        );
        i.allocated = self.raw.info().allocated;
        i
    }
    fn copy_to(&self, offset: u64, len: u64, out: &File, out_offset: u64) -> Result<()> {
        self.raw.copy_to(offset, len, out, out_offset)
    }
}

/// A dynamic or differencing VHD.
pub struct VhdDynamic {
    file: File,
    path: PathBuf,
    footer: Footer,
    header: DynHeader,
    bat: Vec<u32>,
    block_size: u64,
    bitmap_size: u64,
    file_size: u64,
    allocated_blocks: u64,
    /// Where the trailing footer is (the end of the data area): new blocks go here.
    footer_off: u64,
    parent: Option<Box<dyn DiskImage>>,
    parents: Vec<String>,
    notes: Vec<String>,
}

impl std::fmt::Debug for VhdDynamic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhdDynamic")
            .field("path", &self.path)
            .field("footer", &self.footer)
            .field("block_size", &self.block_size)
            .field("parents", &self.parents)
            .finish_non_exhaustive()
    }
}

/// Checks a BAT against the file: every allocated block (bitmap + data) lies in
/// `[0, data_end)`, and blocks overlap neither each other nor the `reserved` regions.
/// `span` is bitmap + block size. Memory: one sorted copy of the allocated entries.
/// Returns the number of allocated blocks.
pub fn check_bat(
    bat: &[u32],
    span: u64,
    data_end: u64,
    end_footer_ok: bool,
    reserved: &[(u64, u64, &str)],
) -> Result<u64> {
    let mut sorted: Vec<u32> = bat.iter().copied().filter(|&e| e != UNALLOCATED).collect();
    sorted.sort_unstable();
    let index_of = |v: u32| bat.iter().position(|&e| e == v).unwrap_or(0);
    if let Some(&last) = sorted.last() {
        let start = u64::from(last) * 512;
        let end = start + span;
        if end > data_end {
            let i = index_of(last);
            return Err(if end_footer_ok {
                err!(
                    BatOutOfFile,
                    "BAT entry {i} puts block {i} at bytes {start}..{end}, past the data area that ends at {data_end} (footer)"
                )
            } else {
                err!(
                    Truncated,
                    "BAT entry {i} puts block {i} at bytes {start}..{end}, but the file ends at {data_end}: the file is truncated"
                )
            }
            .with_structure("VHD BAT"));
        }
    }
    for w in sorted.windows(2) {
        let (a, b) = (u64::from(w[0]) * 512, u64::from(w[1]) * 512);
        if b < a + span {
            let ia = index_of(w[0]);
            let ib = bat
                .iter()
                .enumerate()
                .position(|(k, &e)| e == w[1] && k != ia)
                .unwrap_or(0);
            return Err(err!(
                BatOverlap,
                "blocks {ia} (bytes {a}..{}) and {ib} (bytes {b}..{}) overlap",
                a + span,
                b + span
            )
            .with_structure("VHD BAT"));
        }
    }
    for &(rs, re, name) in reserved {
        // The first block starting before `re`, seen from the end: blocks are sorted by start.
        let k = sorted.partition_point(|&e| u64::from(e) * 512 < re);
        if k > 0 {
            let e = sorted[k - 1];
            let s = u64::from(e) * 512;
            if s + span > rs {
                let i = index_of(e);
                return Err(err!(
                    BatOverlap,
                    "block {i} (bytes {s}..{}) overlaps the {name} (bytes {rs}..{re})",
                    s + span
                )
                .with_structure("VHD BAT"));
            }
        }
    }
    Ok(sorted.len() as u64)
}

/// Where to look for a differencing disk's parent, in order: relative locators (resolved
/// against the child's directory), absolute locators (Windows paths translated: `\` becomes
/// `/`, a drive letter `C:` is dropped, then tried as WSL's `/mnt/c`), then the parent's file
/// name (from the header, then from each locator) in the child's directory.
pub fn parent_candidates(
    child_dir: &Path,
    locators: &[([u8; 4], String)],
    parent_name: &str,
) -> Vec<PathBuf> {
    fn split_drive(s: &str) -> (Option<char>, String) {
        let b = s.as_bytes();
        if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
            (
                Some((b[0] as char).to_ascii_lowercase()),
                s[2..].replace('\\', "/"),
            )
        } else {
            (None, s.replace('\\', "/"))
        }
    }
    let mut out: Vec<PathBuf> = Vec::new();
    let mut push = |p: PathBuf| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    let mut names = Vec::new();
    for pass_relative in [true, false] {
        for (code, s) in locators {
            if is_relative_code(code) != pass_relative {
                continue;
            }
            if s.starts_with("\\\\") {
                // UNC path: only its file name can help.
            } else {
                let (drive, p) = split_drive(s);
                if p.starts_with('/') {
                    push(PathBuf::from(&p));
                    if let Some(d) = drive {
                        push(PathBuf::from(format!("/mnt/{d}{p}")));
                    }
                } else if !p.is_empty() {
                    let mut rel = p.as_str();
                    while let Some(r) = rel.strip_prefix("./") {
                        rel = r;
                    }
                    push(child_dir.join(rel));
                }
            }
            if let Some(n) = s.rsplit(['\\', '/']).next() {
                names.push(n.to_string());
            }
        }
    }
    let mut all_names = vec![
        parent_name
            .rsplit(['\\', '/'])
            .next()
            .unwrap_or("")
            .to_string(),
    ];
    all_names.extend(names);
    for n in all_names {
        if !n.is_empty() && n != "." && n != ".." {
            push(child_dir.join(n));
        }
    }
    out
}

impl VhdDynamic {
    #[allow(clippy::too_many_arguments)]
    fn open(
        file: File,
        path: &Path,
        footer: Footer,
        footer_off: u64,
        end_ok: bool,
        file_size: u64,
        mut notes: Vec<String>,
        depth: u32,
        parents: &dyn ParentOpener,
    ) -> Result<VhdDynamic> {
        let data_end = footer_off;
        let hoff = footer.data_offset;
        let header = read_dyn_header(&file, path, &footer, file_size, &mut notes)?;
        let block_size = u64::from(header.block_size);
        let toff = header.table_offset;
        let bat_bytes = u64::from(header.max_table_entries) * 4;
        let bat = read_bat(&file, path, toff, bat_bytes, file_size)?;
        let bitmap_size = bitmap_size(block_size);
        let reserved = [
            (0u64, FOOTER_SIZE as u64, "footer copy"),
            (hoff, hoff + HEADER_SIZE as u64, "dynamic disk header"),
            (toff, toff + bat_bytes.next_multiple_of(512), "BAT"),
        ];
        let allocated_blocks =
            check_bat(&bat, bitmap_size + block_size, data_end, end_ok, &reserved)
                .map_err(|e| e.with_path(path).at(toff))?;

        let mut me = VhdDynamic {
            file,
            path: path.to_path_buf(),
            footer,
            header,
            bat,
            block_size,
            bitmap_size,
            file_size,
            allocated_blocks,
            footer_off,
            parent: None,
            parents: Vec::new(),
            notes,
        };
        if me.footer.disk_type == DiskType::Differencing {
            me.open_parent(depth, parents)?;
        }
        Ok(me)
    }

    fn open_parent(&mut self, depth: u32, parents: &dyn ParentOpener) -> Result<()> {
        let locs = self.read_locators()?;
        let ppath = self.find_parent(&locs)?;
        let parent = parents
            .open_parent(&ppath, depth + 1)
            .map_err(|e| e.with_path(&ppath))?;
        let pinfo = parent.info();
        self.check_parent(&ppath, &*parent, &pinfo)?;
        self.parents.push(ppath.display().to_string());
        self.parents.extend(pinfo.parents);
        self.parent = Some(parent);
        Ok(())
    }

    /// The decoded parent locators (code, path as stored) that lie inside the file.
    fn read_locators(&mut self) -> Result<Vec<([u8; 4], String)>> {
        let mut locs = Vec::new();
        for l in self.header.locators.iter().filter(|l| l.is_used()) {
            if l.data_len == 0 || l.data_len > MAX_LOCATOR {
                continue;
            }
            if l.data_offset
                .checked_add(u64::from(l.data_len))
                .is_none_or(|e| e > self.file_size)
            {
                self.notes.push(format!(
                    "parent locator '{}' points past the end of the file; ignored",
                    super::footer::tag(&l.code)
                ));
                continue;
            }
            let mut d = vec![0u8; l.data_len as usize];
            read_exact(
                &self.file,
                &self.path,
                &mut d,
                l.data_offset,
                "VHD parent locator",
            )?;
            if let Some(s) = decode_locator(&l.code, &d) {
                locs.push((l.code, s));
            }
        }
        Ok(locs)
    }

    /// The first candidate parent path that exists (`MissingParent` naming every candidate).
    fn find_parent(&self, locs: &[([u8; 4], String)]) -> Result<PathBuf> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = self.header.parent_name();
        let cands = parent_candidates(dir, locs, &name);
        if let Some(found) = cands.iter().find(|c| c.is_file()) {
            return Ok(found.clone());
        }
        let tried: Vec<String> = cands.iter().map(|c| c.display().to_string()).collect();
        let stored: Vec<String> = locs.iter().map(|(_, s)| format!("{s:?}")).collect();
        Err(err!(
            MissingParent,
            "parent {name:?} of this differencing disk not found; locators {}; looked for: {}",
            if stored.is_empty() {
                "none".to_string()
            } else {
                stored.join(", ")
            },
            if tried.is_empty() {
                "nothing (no usable locator)".to_string()
            } else {
                tried.join(", ")
            }
        )
        .with_structure("VHD parent locators")
        .with_path(&self.path))
    }

    /// The parent must carry the unique id the child expects and cover its size.
    fn check_parent(
        &mut self,
        ppath: &Path,
        parent: &dyn DiskImage,
        pinfo: &ImageInfo,
    ) -> Result<()> {
        if !self.header.parent_unique_id.is_nil()
            && pinfo.format.is_vhd()
            && pinfo.disk_id.as_deref() != Some(&self.header.parent_unique_id.to_string())
        {
            return Err(err!(
                ParentMismatch,
                "parent {} has unique id {}, the child expects {}",
                ppath.display(),
                pinfo.disk_id.clone().unwrap_or_default(),
                self.header.parent_unique_id
            )
            .with_structure("VHD dynamic disk header")
            .with_path(&self.path));
        }
        if parent.len() < self.footer.current_size {
            return Err(err!(
                ParentMismatch,
                "parent {} has {} bytes, smaller than this disk's {}",
                ppath.display(),
                parent.len(),
                self.footer.current_size
            )
            .with_path(&self.path));
        }
        if parent.len() > self.footer.current_size {
            self.notes.push(format!(
                "parent is larger ({} bytes) than this disk",
                parent.len()
            ));
        }
        Ok(())
    }

    fn is_diff(&self) -> bool {
        self.parent.is_some()
    }

    /// File offset of block `b`'s bitmap, if allocated.
    fn block_start(&self, b: u64) -> Option<u64> {
        match self.bat.get(b as usize) {
            Some(&e) if e != UNALLOCATED => Some(u64::from(e) * 512),
            _ => None,
        }
    }

    fn read_bitmap(&self, start: u64) -> Result<Vec<u8>> {
        let mut bm = vec![0u8; self.bitmap_size as usize];
        read_exact(&self.file, &self.path, &mut bm, start, "VHD sector bitmap")?;
        Ok(bm)
    }

    /// Runs `[a, b)` (bytes within the block) with the same bitmap bit, MSB first.
    fn runs(bm: &[u8], a: u64, b: u64) -> Vec<(u64, u64, bool)> {
        let bit = |s: u64| {
            bm.get((s / 8) as usize)
                .is_some_and(|&x| x & (0x80 >> (s % 8)) != 0)
        };
        let mut out = Vec::new();
        let mut pos = a;
        while pos < b {
            let v = bit(pos / 512);
            let mut end = ((pos / 512) + 1) * 512;
            while end < b && bit(end / 512) == v {
                end += 512;
            }
            let end = end.min(b);
            out.push((pos, end, v));
            pos = end;
        }
        out
    }

    fn parent_read(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let Some(p) = &self.parent else {
            buf.fill(0);
            return Ok(());
        };
        let plen = p.len();
        if offset >= plen {
            buf.fill(0);
            return Ok(());
        }
        let k = ((plen - offset).min(buf.len() as u64)) as usize;
        p.read_at(&mut buf[..k], offset)?;
        buf[k..].fill(0);
        Ok(())
    }

    fn parent_extents(&self, out: &mut Vec<Extent>, a: u64, b: u64) -> Result<()> {
        match &self.parent {
            Some(p) if a < p.len() => {
                let pe = b.min(p.len());
                for e in p.extents(a, pe - a)? {
                    push_extent(out, e);
                }
                push_extent(
                    out,
                    Extent {
                        offset: pe,
                        len: b - pe,
                        kind: ExtentKind::Unallocated,
                    },
                );
            }
            _ => push_extent(
                out,
                Extent {
                    offset: a,
                    len: b - a,
                    kind: ExtentKind::Unallocated,
                },
            ),
        }
        Ok(())
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        if offset
            .checked_add(len)
            .is_none_or(|e| e > self.footer.current_size)
        {
            return Err(err!(
                InvalidArgument,
                "access of {len} bytes at {offset} past the end of the disk ({} bytes)",
                self.footer.current_size
            )
            .with_path(&self.path));
        }
        Ok(())
    }
}

impl DiskImage for VhdDynamic {
    fn len(&self) -> u64 {
        self.footer.current_size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        let bs = self.block_size;
        let mut pos = 0usize;
        while pos < buf.len() {
            let v = offset + pos as u64;
            let (b, inb) = (v / bs, v % bs);
            let n = ((bs - inb).min((buf.len() - pos) as u64)) as usize;
            let chunk = &mut buf[pos..pos + n];
            match self.block_start(b) {
                None => self.parent_read(chunk, v)?,
                Some(start) => {
                    let data = start + self.bitmap_size;
                    if self.is_diff() {
                        let bm = self.read_bitmap(start)?;
                        for (x, y, here) in Self::runs(&bm, inb, inb + n as u64) {
                            let sub = &mut chunk[(x - inb) as usize..(y - inb) as usize];
                            if here {
                                read_exact(&self.file, &self.path, sub, data + x, "VHD block")?;
                            } else {
                                self.parent_read(sub, b * bs + x)?;
                            }
                        }
                    } else {
                        read_exact(&self.file, &self.path, chunk, data + inb, "VHD block")?;
                    }
                }
            }
            pos += n;
        }
        Ok(())
    }

    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let (start, end) = clamp_window(self.len(), offset, len);
        let bs = self.block_size;
        let mut out = Vec::new();
        let mut v = start;
        while v < end {
            let (b, inb) = (v / bs, v % bs);
            let n = (bs - inb).min(end - v);
            match self.block_start(b) {
                None => self.parent_extents(&mut out, v, v + n)?,
                Some(s) => {
                    let data = s + self.bitmap_size;
                    if self.is_diff() {
                        let bm = self.read_bitmap(s)?;
                        for (x, y, here) in Self::runs(&bm, inb, inb + n) {
                            if here {
                                push_extent(
                                    &mut out,
                                    Extent {
                                        offset: b * bs + x,
                                        len: y - x,
                                        kind: ExtentKind::Data,
                                    },
                                );
                            } else {
                                self.parent_extents(&mut out, b * bs + x, b * bs + y)?;
                            }
                        }
                    } else {
                        // Holes of the file inside an allocated block read as zeros: report
                        // them as unallocated so conversions stay sparse.
                        let ranges = data_ranges(&self.file, data + inb, data + inb + n)
                            .ctx(&self.path, "mapping data and holes")?;
                        let mut p = v;
                        for (a, z) in ranges {
                            let (a, z) = (a - data + b * bs, z - data + b * bs);
                            push_extent(
                                &mut out,
                                Extent {
                                    offset: p,
                                    len: a - p,
                                    kind: ExtentKind::Unallocated,
                                },
                            );
                            push_extent(
                                &mut out,
                                Extent {
                                    offset: a,
                                    len: z - a,
                                    kind: ExtentKind::Data,
                                },
                            );
                            p = z;
                        }
                        push_extent(
                            &mut out,
                            Extent {
                                offset: p,
                                len: v + n - p,
                                kind: ExtentKind::Unallocated,
                            },
                        );
                    }
                }
            }
            v += n;
        }
        Ok(out)
    }

    fn info(&self) -> ImageInfo {
        let format = if self.footer.disk_type == DiskType::Differencing {
            ImageKind::VhdDifferencing
        } else {
            ImageKind::VhdDynamic
        };
        let mut i = base_info(&self.footer, format, self.file_size, &self.notes);
        i.allocated = Some(self.allocated_blocks * self.block_size);
        i.block_size = Some(self.block_size);
        i.parents = self.parents.clone();
        i
    }

    fn copy_to(&self, offset: u64, len: u64, out: &File, out_offset: u64) -> Result<()> {
        self.check_range(offset, len)?;
        let bs = self.block_size;
        let mut done = 0u64;
        while done < len {
            let v = offset + done;
            let (b, inb) = (v / bs, v % bs);
            let n = (bs - inb).min(len - done);
            match self.block_start(b) {
                Some(s) if !self.is_diff() => {
                    let src = s + self.bitmap_size + inb;
                    copy_file_bytes(&self.file, src, out, out_offset + done, n).map_err(|e| {
                        Error::io(e, "copying disk data")
                            .with_path(&self.path)
                            .at(src)
                    })?;
                }
                _ => crate::disk::copy_via_buffer(self, v, n, out, out_offset + done)?,
            }
            done += n;
        }
        Ok(())
    }
}

impl DiskImageMut for VhdFixed {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        self.raw.write_at(buf, offset)
    }
    fn flush(&mut self) -> Result<()> {
        self.raw.flush()
    }
}

impl VhdDynamic {
    /// Allocates block `b` at the end of the data area: sector bitmap all ones, data a hole
    /// (zeros), footer moved behind it, then the BAT entry written (qemu's order: a crash
    /// leaves at worst an unreferenced block).
    fn allocate(&mut self, b: u64) -> Result<u64> {
        let w = |e: std::io::Error, what: &str, at: u64| {
            Error::io(e, what.to_string()).with_path(&self.path).at(at)
        };
        let data = (self.footer_off + self.bitmap_size).next_multiple_of(4096);
        let bm = data - self.bitmap_size;
        let entry = u32::try_from(bm / 512)
            .ok()
            .filter(|&e| e != UNALLOCATED)
            .ok_or_else(|| {
                err!(
                    LimitExceeded,
                    "the VHD file is too large to address block {b}"
                )
                .with_path(&self.path)
            })?;
        let new_end = data + self.block_size;
        self.file
            .write_all_at(&vec![0xffu8; self.bitmap_size as usize], bm)
            .map_err(|e| w(e, "writing a sector bitmap", bm))?;
        self.file
            .set_len(new_end)
            .map_err(|e| w(e, "growing the file", new_end))?;
        self.file
            .write_all_at(&self.footer.encode(), new_end)
            .map_err(|e| w(e, "writing the VHD footer", new_end))?;
        let at = self.header.table_offset + 4 * b;
        self.file
            .write_all_at(&entry.to_be_bytes(), at)
            .map_err(|e| w(e, "writing a BAT entry", at))?;
        if let Some(slot) = self.bat.get_mut(b as usize) {
            *slot = entry;
        }
        self.footer_off = new_end;
        self.file_size = new_end + FOOTER_SIZE as u64;
        self.allocated_blocks += 1;
        Ok(bm)
    }
}

impl DiskImageMut for VhdDynamic {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        if self.is_diff() {
            return Err(err!(Unsupported, "writing into a differencing VHD").with_path(&self.path));
        }
        let bs = self.block_size;
        let mut pos = 0usize;
        while pos < buf.len() {
            let v = offset + pos as u64;
            let (b, inb) = (v / bs, v % bs);
            let n = ((bs - inb).min((buf.len() - pos) as u64)) as usize;
            let start = match self.block_start(b) {
                Some(s) => s,
                None => {
                    if buf[pos..pos + n].iter().all(|&x| x == 0) {
                        // Zeros into an unallocated block: nothing to store.
                        pos += n;
                        continue;
                    }
                    self.allocate(b)?
                }
            };
            let at = start + self.bitmap_size + inb;
            self.file
                .write_all_at(&buf[pos..pos + n], at)
                .map_err(|e| {
                    Error::io(e, "writing disk data")
                        .with_path(&self.path)
                        .at(at)
                })?;
            pos += n;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.file.sync_all().ctx(&self.path, "syncing")
    }
}

/// The CHS geometry the specification gives for a virtual size.
pub fn geometry_for(size: u64) -> Geometry {
    Geometry::for_sectors(size / 512)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn bitmap_sizes() {
        assert_eq!(bitmap_size(512), 512);
        assert_eq!(bitmap_size(512 << 10), 512);
        assert_eq!(bitmap_size(2 << 20), 512);
        assert_eq!(bitmap_size(4 << 20), 1024);
        assert_eq!(bitmap_size(16 << 20), 4096);
    }

    #[test]
    fn bat_checks() {
        let span = 512 + 4096;
        let res = [
            (0, 512, "footer copy"),
            (512, 1536, "header"),
            (1536, 2048, "BAT"),
        ];
        // Fine: blocks at 2048 and 2048+span, unallocated in between.
        let ok = [4, UNALLOCATED, 4 + 9];
        assert_eq!(check_bat(&ok, span, 100_000, true, &res).unwrap(), 2);
        // Overlap between blocks.
        let e = check_bat(&[4, 5], span, 100_000, true, &res).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BatOverlap);
        assert!(e.message().contains("blocks 0"), "{e}");
        // Duplicate entry.
        let e = check_bat(&[20, 20], span, 100_000, true, &res).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BatOverlap);
        assert!(e.message().contains("and 1"), "{e}");
        // Overlap with the BAT.
        let e = check_bat(&[3], span, 100_000, true, &res).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BatOverlap);
        assert!(e.message().contains("BAT"), "{e}");
        // Overlap with the header.
        let e = check_bat(&[0], span, 100_000, true, &res[1..2]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BatOverlap);
        // Past the end: with a good trailing footer it is a bad entry...
        let e = check_bat(&[4, 200], span, 100_000, true, &res).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BatOutOfFile);
        assert!(e.message().contains("entry 1"), "{e}");
        // ...without one the file was cut.
        let e = check_bat(&[4, 200], span, 100_000, false, &res).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Truncated);
        // Highest possible entry does not overflow.
        let e = check_bat(&[0xFFFF_FFFE], span, 100_000, true, &res).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BatOutOfFile);
    }

    #[test]
    fn bitmap_runs_msb_first() {
        // Sector 0 present, 1..8 absent, 8..16 present.
        let bm = [0b1000_0000u8, 0xff, 0];
        let r = VhdDynamic::runs(&bm, 0, 24 * 512);
        assert_eq!(
            r,
            vec![
                (0, 512, true),
                (512, 8 * 512, false),
                (8 * 512, 16 * 512, true),
                (16 * 512, 24 * 512, false)
            ]
        );
        // Unaligned range inside one sector.
        assert_eq!(VhdDynamic::runs(&bm, 100, 200), vec![(100, 200, true)]);
    }

    #[test]
    fn parent_paths() {
        let dir = Path::new("/data/child");
        let locs = vec![
            (*b"W2ku", "C:\\Projects\\dfvfs\\fat-parent.vhd".to_string()),
            (*b"W2ru", ".\\fat-parent.vhd".to_string()),
            (*b"MacX", "/Users/x/p.vhd".to_string()),
        ];
        let c = parent_candidates(dir, &locs, "fat-parent.vhd");
        let c: Vec<String> = c.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            c,
            vec![
                "/data/child/fat-parent.vhd",
                "/Projects/dfvfs/fat-parent.vhd",
                "/mnt/c/Projects/dfvfs/fat-parent.vhd",
                "/Users/x/p.vhd",
                "/data/child/p.vhd",
            ]
        );
        let c = parent_candidates(dir, &[(*b"W2ku", "\\\\srv\\share\\a.vhd".into())], "");
        assert_eq!(c, vec![PathBuf::from("/data/child/a.vhd")]);
        let c = parent_candidates(dir, &[(*b"W2ru", "..\\up\\b.vhd".into())], "");
        assert_eq!(c[0], PathBuf::from("/data/child/../up/b.vhd"));
        assert!(parent_candidates(dir, &[], "").is_empty());
    }
}
