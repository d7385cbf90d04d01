//! Reading VHDX images: headers, regions, metadata, BAT, log replay (in memory), differencing.

use super::bat::PagedBat;
use super::format::*;
use super::layout::{HeaderLayout, MetadataEntryLayout, MetadataTableHeaderLayout};
use super::log::{self, Sector};
use crate::disk::{DiskImage, Extent, ExtentKind, ImageInfo, ImageKind, push_extent};
use crate::disk::{NoParents, OpenOptions, ParentOpener};
use crate::err;
use crate::error::{Error, IoContext, Result};
use crate::guid::Guid;
use std::collections::BTreeMap;
use std::fs::File;
use std::mem::offset_of;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// An opened VHDX image (read-only; a pending log is applied in memory when asked).
pub struct VhdxImage {
    file: File,
    path: PathBuf,
    /// Real size of the file.
    real_len: u64,
    /// File size after log replay.
    file_size: u64,
    overlay: BTreeMap<u64, Sector>,
    virtual_size: u64,
    block_size: u64,
    logical_sector: u32,
    physical_sector: u32,
    leave_allocated: bool,
    geo: BatGeometry,
    bat: PagedBat,
    parent: Option<Box<dyn DiskImage>>,
    parent_paths: Vec<String>,
    creator: String,
    disk_id: Guid,
    data_write_guid: Guid,
    notes: Vec<String>,
    /// Write state when opened with [`open_rw`].
    rw: Option<RwState>,
}

/// What in-place writing needs.
struct RwState {
    bat_offset: u64,
    header: Header,
    headers_updated: bool,
}

fn structure_err(e: Error, path: &Path) -> Error {
    e.with_path(path)
}

/// Reads `buf.len()` bytes at `off` of the physical file; short -> Truncated naming `what`.
fn read_phys(file: &File, path: &Path, buf: &mut [u8], off: u64, what: &str) -> Result<()> {
    file.read_exact_at(buf, off).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            err!(Truncated, "file ends inside the {what}")
                .with_structure(what.to_string())
                .at(off)
                .with_path(path)
        } else {
            Error::io(e, format!("reading the {what}"))
                .at(off)
                .with_path(path)
        }
    })
}

impl VhdxImage {
    /// Reads file bytes through the log overlay; bytes past the real file but inside the
    /// replayed file size read as zeros.
    fn read_file(&self, buf: &mut [u8], off: u64, what: &str) -> Result<()> {
        let end = off
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.file_size)
            .ok_or_else(|| {
                err!(
                    Truncated,
                    "{what} ({} bytes at {off}) lies past the end of the file ({} bytes)",
                    buf.len(),
                    self.file_size
                )
                .with_structure(what.to_string())
                .at(off)
                .with_path(&self.path)
            })?;
        let phys_end = end.min(self.real_len);
        if off < phys_end {
            let n = (phys_end - off) as usize;
            read_phys(&self.file, &self.path, &mut buf[..n], off, what)?;
            buf[n..].fill(0);
        } else {
            buf.fill(0);
        }
        if !self.overlay.is_empty() {
            let first = off - off % log::SECTOR;
            for (&so, s) in self.overlay.range(first..end) {
                let a = so.max(off);
                let b = so.saturating_add(log::SECTOR).min(end);
                if a >= b {
                    continue;
                }
                let dst = &mut buf[(a - off) as usize..(b - off) as usize];
                match s {
                    Sector::Zero => dst.fill(0),
                    Sector::Data(d) => {
                        dst.copy_from_slice(&d[(a - so) as usize..(b - so) as usize])
                    }
                }
            }
        }
        Ok(())
    }

    fn overlay_touches(&self, off: u64, len: u64) -> bool {
        if self.overlay.is_empty() {
            return false;
        }
        let first = off - off % log::SECTOR;
        self.overlay.range(first..off + len).next().is_some()
    }

    /// The BAT entry of payload block `b`.
    fn payload(&self, b: u64) -> u64 {
        self.bat.get(self.geo.payload_index(b))
    }

    fn bitmap_entry(&self, chunk: u64) -> u64 {
        self.bat.get(self.geo.bitmap_index(chunk))
    }

    /// Reads the sector bitmap bits of sectors `[s0, s0 + n)` of the virtual disk into a bool per
    /// sector (n at most one block's sectors).
    fn sector_bits(&self, s0: u64, n: u64) -> Result<Vec<bool>> {
        let per_chunk = SECTORS_PER_BITMAP;
        let chunk = s0 / per_chunk;
        let e = self.bitmap_entry(chunk);
        if bat_state(e) != SB_PRESENT {
            return Ok(vec![false; n as usize]);
        }
        let first_bit = s0 % per_chunk;
        let byte0 = first_bit / 8;
        let byte1 = (first_bit + n).div_ceil(8);
        let mut bytes = vec![0u8; (byte1 - byte0) as usize];
        self.read_file(&mut bytes, bat_offset(e) + byte0, "VHDX sector bitmap")?;
        Ok((0..n)
            .map(|i| {
                let bit = first_bit + i - byte0 * 8;
                bytes[(bit / 8) as usize] >> (bit % 8) & 1 == 1
            })
            .collect())
    }

    /// Pieces of `[off, off+len)` (inside one block) with where they come from.
    fn pieces(&self, off: u64, len: u64) -> Result<Vec<Piece>> {
        let b = off / self.block_size;
        let within = off % self.block_size;
        let e = self.payload(b);
        let st = bat_state(e);
        Ok(match st {
            PAYLOAD_FULLY_PRESENT => vec![Piece::File(off, len, bat_offset(e) + within)],
            PAYLOAD_ZERO | PAYLOAD_UNMAPPED => vec![Piece::Zero(off, len, ExtentKind::Zero)],
            PAYLOAD_PARTIALLY_PRESENT if self.parent.is_some() => {
                let ss = u64::from(self.logical_sector);
                let s0 = off / ss;
                let s1 = (off + len).div_ceil(ss);
                let bits = self.sector_bits(s0, s1 - s0)?;
                let mut out: Vec<Piece> = Vec::new();
                let mut i = 0usize;
                while i < bits.len() {
                    let mut j = i;
                    while j < bits.len() && bits[j] == bits[i] {
                        j += 1;
                    }
                    let a = ((s0 + i as u64) * ss).max(off);
                    let z = ((s0 + j as u64) * ss).min(off + len);
                    if bits[i] {
                        out.push(Piece::File(a, z - a, bat_offset(e) + a % self.block_size));
                    } else {
                        out.push(Piece::Parent(a, z - a));
                    }
                    i = j;
                }
                out
            }
            _ if self.parent.is_some() => vec![Piece::Parent(off, len)],
            _ => vec![Piece::Zero(off, len, ExtentKind::Unallocated)],
        })
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        if offset
            .checked_add(len)
            .is_none_or(|e| e > self.virtual_size)
        {
            return Err(err!(
                InvalidArgument,
                "access of {len} bytes at {offset} past the end of the disk ({} bytes)",
                self.virtual_size
            )
            .with_path(&self.path));
        }
        Ok(())
    }

    /// The data write GUID (a child's parent_linkage names it).
    pub fn data_write_guid(&self) -> Guid {
        self.data_write_guid
    }
}

enum Piece {
    /// virtual offset, len, file offset
    File(u64, u64, u64),
    Zero(u64, u64, ExtentKind),
    Parent(u64, u64),
}

impl VhdxImage {
    /// Extents of `l` bytes at virtual offset `v` stored at file offset `f` of an allocated
    /// block: data where the host file has data (or an in-place write touched it), holes of the
    /// host file as unallocated.
    fn push_file_extents(&self, out: &mut Vec<Extent>, v: u64, l: u64, f: u64) -> Result<()> {
        let mut push = |offset: u64, len: u64, kind: ExtentKind| {
            push_extent(out, Extent { offset, len, kind });
        };
        if self.overlay_touches(f, l) {
            push(v, l, ExtentKind::Data);
            return Ok(());
        }
        // holes of the host file inside an allocated block read as zeros
        let phys_end = (f + l).min(self.real_len);
        let ranges = if f < phys_end {
            crate::disk::raw::data_ranges(&self.file, f, phys_end)
                .ctx(&self.path, "mapping data and holes")?
        } else {
            Vec::new()
        };
        let mut at = v;
        for (a, b) in ranges {
            let (va, vb) = (v + (a - f), v + (b - f));
            push(at, va - at, ExtentKind::Unallocated);
            push(va, vb - va, ExtentKind::Data);
            at = vb;
        }
        push(at, v + l - at, ExtentKind::Unallocated);
        Ok(())
    }
}

impl DiskImage for VhdxImage {
    fn len(&self) -> u64 {
        self.virtual_size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        let mut done = 0u64;
        let total = buf.len() as u64;
        while done < total {
            let off = offset + done;
            let n = (self.block_size - off % self.block_size).min(total - done);
            for p in self.pieces(off, n)? {
                match p {
                    Piece::File(v, l, f) => {
                        let d = &mut buf[(v - offset) as usize..(v - offset + l) as usize];
                        self.read_file(d, f, "VHDX payload block")?;
                    }
                    Piece::Zero(v, l, _) => {
                        buf[(v - offset) as usize..(v - offset + l) as usize].fill(0)
                    }
                    Piece::Parent(v, l) => {
                        let d = &mut buf[(v - offset) as usize..(v - offset + l) as usize];
                        match &self.parent {
                            Some(p) => p.read_at(d, v)?,
                            None => d.fill(0),
                        }
                    }
                }
            }
            done += n;
        }
        Ok(())
    }

    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let (start, end) = crate::disk::clamp_window(self.virtual_size, offset, len);
        let mut out = Vec::new();
        let mut pos = start;
        while pos < end {
            let n = (self.block_size - pos % self.block_size).min(end - pos);
            for p in self.pieces(pos, n)? {
                match p {
                    Piece::File(v, l, f) => self.push_file_extents(&mut out, v, l, f)?,
                    Piece::Zero(v, l, k) => push_extent(
                        &mut out,
                        Extent {
                            offset: v,
                            len: l,
                            kind: k,
                        },
                    ),
                    Piece::Parent(v, l) => match &self.parent {
                        Some(p) => {
                            for e in p.extents(v, l)? {
                                push_extent(&mut out, e);
                            }
                        }
                        None => push_extent(
                            &mut out,
                            Extent {
                                offset: v,
                                len: l,
                                kind: ExtentKind::Unallocated,
                            },
                        ),
                    },
                }
            }
            pos += n;
        }
        Ok(out)
    }

    fn info(&self) -> ImageInfo {
        let mut allocated = 0u64;
        let mut all_full = self.geo.data_blocks > 0;
        for b in 0..self.geo.data_blocks {
            match bat_state(self.payload(b)) {
                PAYLOAD_FULLY_PRESENT | PAYLOAD_PARTIALLY_PRESENT => {
                    allocated += self.block_size;
                }
                _ => all_full = false,
            }
        }
        let format = if self.parent.is_some() {
            ImageKind::VhdxDifferencing
        } else if all_full && self.leave_allocated {
            ImageKind::VhdxFixed
        } else {
            ImageKind::Vhdx
        };
        let mut parents = self.parent_paths.clone();
        if let Some(p) = &self.parent {
            parents.extend(p.info().parents);
        }
        ImageInfo {
            format,
            virtual_size: self.virtual_size,
            file_size: self.real_len,
            allocated: Some(allocated),
            block_size: Some(self.block_size),
            logical_sector_size: self.logical_sector,
            physical_sector_size: self.physical_sector,
            creator: Some(self.creator.clone()),
            disk_id: Some(self.disk_id.to_string()),
            data_write_guid: Some(self.data_write_guid.braced()),
            geometry: None,
            parents,
            notes: self.notes.clone(),
        }
    }

    fn copy_to(&self, offset: u64, len: u64, out: &File, out_offset: u64) -> Result<()> {
        self.check_range(offset, len)?;
        let mut done = 0u64;
        while done < len {
            let off = offset + done;
            let n = (self.block_size - off % self.block_size).min(len - done);
            for p in self.pieces(off, n)? {
                match p {
                    Piece::File(v, l, f)
                        if !self.overlay_touches(f, l)
                            && f.checked_add(l).is_some_and(|e| e <= self.real_len) =>
                    {
                        crate::disk::raw::copy_file_bytes(
                            &self.file,
                            f,
                            out,
                            out_offset + (v - offset),
                            l,
                        )
                        .map_err(|e| {
                            Error::io(e, "copying VHDX payload")
                                .with_path(&self.path)
                                .at(f)
                        })?;
                    }
                    Piece::Zero(v, l, _) => {
                        // zeros: the output (fresh) already reads as zeros there only if it is
                        // a hole; write them explicitly to honour the contract.
                        crate::disk::copy_via_buffer(self, v, l, out, out_offset + (v - offset))?;
                    }
                    Piece::File(v, l, _) | Piece::Parent(v, l) => {
                        crate::disk::copy_via_buffer(self, v, l, out, out_offset + (v - offset))?;
                    }
                }
            }
            done += n;
        }
        Ok(())
    }
}

/// Opens the VHDX at `path`.
pub fn open_vhdx(
    path: &Path,
    opts: &OpenOptions,
    depth: u32,
    parents: &dyn ParentOpener,
) -> Result<VhdxImage> {
    let file = File::open(path).ctx(path, "opening image")?;
    let real_len = file.metadata().ctx(path, "reading metadata")?.len();
    let mut img = open_file(file, path, real_len, opts, depth, parents)
        .map_err(|e| structure_err(e, path))?;
    img.rw = None;
    Ok(img)
}

/// Opens the VHDX at `path` for in-place writing ([`DiskImageMut`](crate::disk::DiskImageMut)). A pending log or a
/// differencing disk is refused. Writes allocate blocks at the end of the file and update the
/// BAT entry in place (not through the log); the headers get new write GUIDs before the first
/// write, as the format requires.
pub fn open_rw(path: &Path) -> Result<VhdxImage> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .ctx(path, "opening image for writing")?;
    let real_len = file.metadata().ctx(path, "reading metadata")?.len();
    let img = open_file(file, path, real_len, &OpenOptions::default(), 0, &NoParents)
        .map_err(|e| structure_err(e, path))?;
    if img.parent.is_some() {
        return Err(err!(Unsupported, "writing into a differencing VHDX").with_path(path));
    }
    Ok(img)
}

fn open_file(
    file: File,
    path: &Path,
    real_len: u64,
    opts: &OpenOptions,
    depth: u32,
    parents: &dyn ParentOpener,
) -> Result<VhdxImage> {
    let ident = read_identifier(&file, path, real_len)?;
    let (hdr_at, hdr, mut notes) = read_headers(&file, path, real_len)?;
    let (overlay, file_size) = read_log(&file, path, real_len, hdr_at, &hdr, opts, &mut notes)?;
    let mut img = VhdxImage {
        file,
        path: path.to_path_buf(),
        real_len,
        file_size,
        overlay,
        virtual_size: 0,
        block_size: MIB,
        logical_sector: 512,
        physical_sector: 512,
        leave_allocated: false,
        geo: BatGeometry::new(0, MIB, 512, false),
        bat: PagedBat::default(),
        parent: None,
        parent_paths: Vec::new(),
        creator: ident.creator,
        disk_id: Guid::NIL,
        data_write_guid: hdr.data_write_guid,
        notes,
        rw: None,
    };

    let (bat, meta) = read_regions(&img)?;
    let (fp, locator) = read_metadata(&mut img, meta.0, meta.1)?;
    read_bat(&mut img, hdr_at, &hdr, bat, meta, fp.has_parent)?;
    let (bat_off, meta_off) = (bat.0, meta.0);
    img.rw = Some(RwState {
        bat_offset: bat_off,
        header: hdr.clone(),
        headers_updated: false,
    });

    // parent
    if fp.has_parent {
        let (loc, loc_at) = locator.ok_or_else(|| {
            err!(BadField, "differencing disk without a parent locator")
                .with_structure("VHDX metadata table")
                .at(meta_off)
        })?;
        open_parent(&mut img, &loc, loc_at, depth, parents)?;
    }
    Ok(img)
}

/// The file identifier (MS-VHDX "File Type Identifier"), at offset 0.
fn read_identifier(file: &File, path: &Path, real_len: u64) -> Result<FileIdentifier> {
    // file identifier
    let mut idb = vec![0u8; 520];
    if real_len < 520 {
        return Err(err!(
            Truncated,
            "file of {real_len} bytes is too short for a VHDX"
        )
        .with_structure("VHDX file identifier")
        .at(0));
    }
    read_phys(file, path, &mut idb, 0, "VHDX file identifier")?;
    FileIdentifier::parse(&idb)
}

/// The current header (MS-VHDX "Headers"): the valid one of the two with the higher sequence
/// number; notes say when one was invalid.
fn read_headers(file: &File, path: &Path, real_len: u64) -> Result<(u64, Header, Vec<String>)> {
    // headers
    let mut hdrs = Vec::new();
    let mut errs = Vec::new();
    for at in [HEADER1_OFFSET, HEADER2_OFFSET] {
        let mut b = vec![0u8; HEADER_SIZE];
        let r = if at + HEADER_SIZE as u64 > real_len {
            Err(err!(Truncated, "file ends before the header")
                .with_structure("VHDX header")
                .at(at))
        } else {
            read_phys(file, path, &mut b, at, "VHDX header").and_then(|_| Header::parse(&b, at))
        };
        match r {
            Ok(h) => hdrs.push((at, h)),
            Err(e) => errs.push(e),
        }
    }
    let Some((hdr_at, hdr)) = hdrs.into_iter().max_by_key(|(_, h)| h.sequence) else {
        let kind = if errs.iter().all(|e| e.kind() == crate::ErrorKind::Truncated) {
            crate::ErrorKind::Truncated
        } else if errs
            .iter()
            .any(|e| e.kind() == crate::ErrorKind::BadChecksum)
        {
            crate::ErrorKind::BadChecksum
        } else {
            errs.iter()
                .map(|e| e.kind())
                .find(|k| *k != crate::ErrorKind::Truncated)
                .unwrap_or(crate::ErrorKind::BadSignature)
        };
        let msg: Vec<String> = errs
            .iter()
            .map(|e| {
                format!(
                    "header at {} (0x{:x}): {}",
                    e.offset().unwrap_or(0),
                    e.offset().unwrap_or(0),
                    e.message()
                )
            })
            .collect();
        return Err(Error::new(
            kind,
            format!("neither VHDX header is valid: {}", msg.join("; ")),
        )
        .with_structure("VHDX headers")
        .at(HEADER1_OFFSET));
    };
    let mut notes = Vec::new();
    if !errs.is_empty() {
        notes.push(format!(
            "one header is invalid ({}); using the one at 0x{hdr_at:x}",
            errs[0]
        ));
    }
    if hdr.log_version != 0 {
        return Err(err!(
            Unsupported,
            "log version {} (only 0 is defined)",
            hdr.log_version
        )
        .with_structure("VHDX header")
        .with_field_at("log version", offset_of!(HeaderLayout, log_version))
        .at(hdr_at + offset_of!(HeaderLayout, log_version) as u64));
    }
    Ok((hdr_at, hdr, notes))
}

/// The log (MS-VHDX "Log"): a dirty log is refused unless `opts.replay_log`, then replayed into
/// an in-memory overlay. Returns the overlay and the file size the log implies.
#[allow(clippy::type_complexity)]
fn read_log(
    file: &File,
    path: &Path,
    real_len: u64,
    hdr_at: u64,
    hdr: &Header,
    opts: &OpenOptions,
    notes: &mut Vec<String>,
) -> Result<(BTreeMap<u64, Sector>, u64)> {
    // log
    let log_len = u64::from(hdr.log_length);
    if hdr
        .log_offset
        .checked_add(log_len)
        .is_none_or(|e| e > real_len)
    {
        return Err(err!(
            Truncated,
            "log region {log_len} bytes at {} lies past the end of the file ({real_len} bytes)",
            hdr.log_offset
        )
        .with_structure("VHDX header")
        .with_field_at("log length", offset_of!(HeaderLayout, log_length))
        .at(hdr_at + offset_of!(HeaderLayout, log_length) as u64));
    }
    if !hdr.log_offset.is_multiple_of(MIB)
        || !log_len.is_multiple_of(MIB)
        || (log_len > 0 && hdr.log_offset < MIB)
    {
        return Err(err!(
            BadField,
            "log region {} bytes at {} is not 1 MiB aligned or lies outside the file ({real_len} bytes)",
            log_len,
            hdr.log_offset
        )
        .with_structure("VHDX header")
        .with_field_at("log length", offset_of!(HeaderLayout, log_length))
        .at(hdr_at + offset_of!(HeaderLayout, log_length) as u64));
    }
    let mut overlay = BTreeMap::new();
    let mut file_size = real_len;
    if !hdr.log_guid.is_nil() && log_len > 0 {
        let rd = |buf: &mut [u8], off: u64| read_phys(file, path, buf, off, "VHDX log");
        let r = log::replay(
            &rd,
            hdr.log_offset,
            log_len,
            &hdr.log_guid.to_mixed_endian(),
            real_len,
        )?;
        if r.entries > 0 {
            if !opts.replay_log {
                return Err(err!(
                    DirtyLog,
                    "the log holds {} entr{} (up to sequence {}) that must be replayed before the disk can be read; \
                     pass --replay-log to apply it in memory (the input file is not modified) and convert into a copy",
                    r.entries,
                    if r.entries == 1 { "y" } else { "ies" },
                    r.head_sequence
                )
                .with_structure("VHDX log")
                .at(hdr.log_offset));
            }
            overlay = r.overlay;
            file_size = r.file_size.max(real_len);
        }
        notes.extend(r.notes);
    }
    Ok((overlay, file_size))
}

/// The region table (MS-VHDX "Region Table"): where the BAT and the metadata region are, as
/// ((offset, length), (offset, length)).
fn read_regions(img: &VhdxImage) -> Result<((u64, u64), (u64, u64))> {
    // region tables (read through the overlay: the log may rewrite them)
    let mut tables = Vec::new();
    let mut rerrs = Vec::new();
    for at in [REGION1_OFFSET, REGION2_OFFSET] {
        let mut b = vec![0u8; REGION_TABLE_SIZE];
        match img
            .read_file(&mut b, at, "VHDX region table")
            .and_then(|_| RegionTable::parse(&b, at, true))
        {
            Ok(t) => tables.push(t),
            Err(e) => rerrs.push(e),
        }
    }
    let Some(rt) = tables.into_iter().next() else {
        let kind = rerrs
            .iter()
            .map(|e| e.kind())
            .find(|k| *k != crate::ErrorKind::Truncated)
            .unwrap_or(crate::ErrorKind::Truncated);
        let msg: Vec<String> = rerrs.iter().map(|e| e.to_string()).collect();
        return Err(Error::new(
            kind,
            format!("neither region table is valid: {}", msg.join("; ")),
        )
        .with_structure("VHDX region tables")
        .at(REGION1_OFFSET));
    };
    let mut bat_region = None;
    let mut meta_region = None;
    for (i, e) in rt.entries.iter().enumerate() {
        let at = REGION1_OFFSET + (RT_HEAD + i * RT_ENTRY) as u64;
        let slot = if e.guid == BAT_GUID {
            &mut bat_region
        } else if e.guid == METADATA_GUID {
            &mut meta_region
        } else if e.required {
            return Err(err!(Unsupported, "unknown required region {}", e.guid)
                .with_structure("VHDX region table")
                .at(at));
        } else {
            continue;
        };
        check_region(e, at, img.file_size)?;
        if slot.is_some() {
            return Err(err!(BadField, "region listed twice")
                .with_structure("VHDX region table")
                .at(at));
        }
        *slot = Some((e.offset, u64::from(e.length)));
    }
    let (Some((bat_off, bat_len)), Some((meta_off, meta_len))) = (bat_region, meta_region) else {
        return Err(err!(
            BadField,
            "the region table lacks the BAT or the metadata region"
        )
        .with_structure("VHDX region table")
        .at(REGION1_OFFSET));
    };
    Ok(((bat_off, bat_len), (meta_off, meta_len)))
}

/// A region (entry at `at`) lies inside the file and is 1 MiB aligned.
fn check_region(e: &RegionEntry, at: u64, file_size: u64) -> Result<()> {
    if e.offset
        .checked_add(u64::from(e.length))
        .is_none_or(|x| x > file_size)
    {
        return Err(err!(
            Truncated,
            "region {} ({} bytes at {}) lies past the end of the file ({} bytes)",
            e.guid,
            e.length,
            e.offset,
            file_size
        )
        .with_structure("VHDX region table")
        .at(at));
    }
    if !e.offset.is_multiple_of(MIB)
        || !u64::from(e.length).is_multiple_of(MIB)
        || e.length == 0
        || e.offset < MIB
    {
        return Err(err!(
            BadField,
            "region {} ({} bytes at {}) is not 1 MiB aligned or lies outside the file ({} bytes)",
            e.guid,
            e.length,
            e.offset,
            file_size
        )
        .with_structure("VHDX region table")
        .at(at));
    }
    Ok(())
}

/// The known metadata items (MS-VHDX "Known Metadata Items"), each with its file offset.
#[derive(Default)]
struct MetaItems {
    fp: Option<(FileParameters, u64)>,
    vsize: Option<(u64, u64)>,
    page83: Option<Guid>,
    lss: Option<(u32, u64)>,
    pss: Option<(u32, u64)>,
    locator: Option<(ParentLocator, u64)>,
}

impl MetaItems {
    /// Decodes item `guid` (its bytes `v`, at file offset `item_at`).
    fn set(&mut self, guid: Guid, v: &[u8], item_at: u64) -> Result<()> {
        let need = |n: usize| -> Result<()> {
            if v.len() < n {
                Err(
                    err!(BadField, "metadata item is {} bytes, needs {n}", v.len())
                        .with_structure("VHDX metadata item")
                        .at(item_at),
                )
            } else {
                Ok(())
            }
        };
        match guid {
            g if g == FILE_PARAMETERS_GUID => {
                need(8)?;
                self.fp = Some((FileParameters::parse(v), item_at));
            }
            g if g == VIRTUAL_DISK_SIZE_GUID => {
                need(8)?;
                self.vsize = Some((le64(v, 0), item_at));
            }
            g if g == PAGE83_GUID => {
                need(16)?;
                let mut g = [0u8; 16];
                g.copy_from_slice(&v[..16]);
                self.page83 = Some(Guid::from_mixed_endian(g));
            }
            g if g == LOGICAL_SECTOR_GUID => {
                need(4)?;
                self.lss = Some((le32(v, 0), item_at));
            }
            g if g == PHYSICAL_SECTOR_GUID => {
                need(4)?;
                self.pss = Some((le32(v, 0), item_at));
            }
            _ => self.locator = Some((ParentLocator::parse(v, item_at)?, item_at)),
        }
        Ok(())
    }
}

fn read_metadata_items(img: &VhdxImage, meta_off: u64, meta_len: u64) -> Result<MetaItems> {
    // metadata
    let mut mt = vec![0u8; METADATA_TABLE_SIZE.min(meta_len as usize)];
    img.read_file(&mut mt, meta_off, "VHDX metadata table")?;
    let table = MetadataTable::parse(&mt, meta_off)?;
    let mut items = MetaItems::default();
    for (i, e) in table.entries.iter().enumerate() {
        let at = meta_off
            + (size_of::<MetadataTableHeaderLayout>() + i * size_of::<MetadataEntryLayout>())
                as u64;
        let known = [
            FILE_PARAMETERS_GUID,
            VIRTUAL_DISK_SIZE_GUID,
            PAGE83_GUID,
            LOGICAL_SECTOR_GUID,
            PHYSICAL_SECTOR_GUID,
            PARENT_LOCATOR_GUID,
        ];
        if e.is_user || !known.contains(&e.guid) {
            if e.is_required {
                return Err(
                    err!(Unsupported, "unknown required metadata item {}", e.guid)
                        .with_structure("VHDX metadata table")
                        .at(at),
                );
            }
            continue;
        }
        if e.length == 0 {
            continue;
        }
        if e.length > (1 << 20)
            || u64::from(e.offset) < METADATA_TABLE_SIZE as u64
            || u64::from(e.offset) + u64::from(e.length) > meta_len
        {
            return Err(err!(
                BadField,
                "metadata item {} ({} bytes at {}) lies outside the metadata region ({} bytes)",
                e.guid,
                e.length,
                e.offset,
                meta_len
            )
            .with_structure("VHDX metadata table")
            .at(at));
        }
        let mut v = vec![0u8; e.length as usize];
        let item_at = meta_off + u64::from(e.offset);
        img.read_file(&mut v, item_at, "VHDX metadata item")?;
        items.set(e.guid, &v, item_at)?;
    }
    Ok(items)
}

/// The metadata region (MS-VHDX "Metadata Region"): sizes checked and set on `img`. Returns the file
/// parameters and the parent locator (with its offset), if any.
#[allow(clippy::type_complexity)]
fn read_metadata(
    img: &mut VhdxImage,
    meta_off: u64,
    meta_len: u64,
) -> Result<(FileParameters, Option<(ParentLocator, u64)>)> {
    let MetaItems {
        fp,
        vsize,
        page83,
        lss,
        pss,
        locator,
    } = read_metadata_items(img, meta_off, meta_len)?;
    let missing = |what: &str| {
        err!(BadField, "required metadata item {what} is missing")
            .with_structure("VHDX metadata table")
            .at(meta_off)
    };
    let (fp, fp_at) = fp.ok_or_else(|| missing("file parameters"))?;
    let (vs, vs_at) = vsize.ok_or_else(|| missing("virtual disk size"))?;
    let (ls, ls_at) = lss.ok_or_else(|| missing("logical sector size"))?;
    let (ps, ps_at) = pss.ok_or_else(|| missing("physical sector size"))?;
    let bs = u64::from(fp.block_size);
    if !valid_block_size(bs) {
        return Err(err!(
            AbsurdSize,
            "block size {bs} is not a power of two between 1 MiB and 256 MiB"
        )
        .with_structure("VHDX file parameters")
        .with_field_at("block size", 0)
        .at(fp_at));
    }
    if !valid_sector_size(u64::from(ls)) {
        return Err(err!(AbsurdSize, "logical sector size {ls} (512 or 4096)")
            .with_structure("VHDX logical sector size")
            .at(ls_at));
    }
    if !valid_sector_size(u64::from(ps)) {
        return Err(err!(AbsurdSize, "physical sector size {ps} (512 or 4096)")
            .with_structure("VHDX physical sector size")
            .at(ps_at));
    }
    if vs == 0 || vs > MAX_VIRTUAL_SIZE || vs % u64::from(ls) != 0 {
        return Err(err!(
            AbsurdSize,
            "virtual disk size {vs} (must be 1..=64 TiB and a multiple of the {ls}-byte sector)"
        )
        .with_structure("VHDX virtual disk size")
        .at(vs_at));
    }
    img.virtual_size = vs;
    img.block_size = bs;
    img.logical_sector = ls;
    img.physical_sector = ps;
    img.leave_allocated = fp.leave_blocks_allocated;
    img.disk_id = page83.unwrap_or(Guid::NIL);
    img.geo = BatGeometry::new(vs, bs, u64::from(ls), fp.has_parent);
    Ok((fp, locator))
}

/// The BAT (MS-VHDX "BAT"), read and checked against the file.
fn read_bat(
    img: &mut VhdxImage,
    hdr_at: u64,
    hdr: &Header,
    (bat_off, bat_len): (u64, u64),
    (meta_off, meta_len): (u64, u64),
    has_parent: bool,
) -> Result<()> {
    // BAT
    let need_bytes = img.geo.entries * 8;
    if need_bytes > bat_len {
        return Err(err!(
            AbsurdSize,
            "{} BAT entries ({need_bytes} bytes) do not fit the {bat_len}-byte BAT region",
            img.geo.entries
        )
        .with_structure("VHDX BAT")
        .at(bat_off));
    }
    if need_bytes > img.file_size {
        return Err(err!(
            AbsurdSize,
            "BAT of {need_bytes} bytes is larger than the file"
        )
        .with_structure("VHDX BAT")
        .at(bat_off));
    }
    // Page by page, held compactly: a flat copy of a 64 TiB disk's BAT is 512 MiB.
    img.bat = PagedBat::read(img.geo.entries, img.geo.chunk_ratio + 1, |b, at| {
        img.read_file(b, bat_off + at, "VHDX BAT")
    })?;
    check_bat(
        img,
        hdr_at,
        hdr,
        (bat_off, bat_len),
        (meta_off, meta_len),
        has_parent,
    )?;
    Ok(())
}

fn check_bat(
    img: &VhdxImage,
    _hdr_at: u64,
    hdr: &Header,
    bat: (u64, u64),
    meta: (u64, u64),
    differencing: bool,
) -> Result<()> {
    let mut used: Vec<(u64, u64, u64)> = vec![
        (0, MIB, u64::MAX),
        (bat.0, bat.1, u64::MAX),
        (meta.0, meta.1, u64::MAX),
    ];
    if hdr.log_length > 0 {
        used.push((hdr.log_offset, u64::from(hdr.log_length), u64::MAX));
    }
    let entry_at = |i: u64| bat.0 + i * 8;
    for (i, e) in img.bat.iter() {
        let Some(len) = present_len(img, i, e, differencing, entry_at(i))? else {
            continue;
        };
        let off = bat_offset(e);
        if off.checked_add(len).is_none_or(|x| x > img.file_size) {
            return Err(err!(
                BatOutOfFile,
                "entry {i} puts {len} bytes at {off}, outside the file ({} bytes)",
                img.file_size
            )
            .with_structure("VHDX BAT")
            .at(entry_at(i)));
        }
        used.push((off, len, i));
    }
    check_overlaps(used, bat.0)
}

/// The bytes BAT entry `i` (value `e`, stored at `at`) places in the file, or `None` when it
/// places none (not present, or a payload entry past a differencing disk's end).
/// `UnknownBatState` for a state the entry's kind does not allow.
fn present_len(
    img: &VhdxImage,
    i: u64,
    e: u64,
    differencing: bool,
    at: u64,
) -> Result<Option<u64>> {
    let bs = img.block_size;
    let cr = img.geo.chunk_ratio;
    let st = bat_state(e);
    if (i + 1).is_multiple_of(cr + 1) {
        return match st {
            SB_NOT_PRESENT => Ok(None),
            SB_PRESENT if differencing => Ok(Some(MIB)),
            SB_PRESENT => Ok(None),
            _ => Err(
                err!(UnknownBatState, "sector bitmap entry {i} has state {st}")
                    .with_structure("VHDX BAT")
                    .at(at),
            ),
        };
    }
    let block = i - i / (cr + 1);
    if block >= img.geo.data_blocks {
        // entries of a differencing disk's last chunk past the disk's end
        return Ok(None);
    }
    match st {
        PAYLOAD_NOT_PRESENT | PAYLOAD_UNDEFINED | PAYLOAD_ZERO | PAYLOAD_UNMAPPED => Ok(None),
        PAYLOAD_FULLY_PRESENT => Ok(Some(bs.min(img.virtual_size - block * bs))),
        PAYLOAD_PARTIALLY_PRESENT if differencing => {
            Ok(Some(bs.min(img.virtual_size - block * bs)))
        }
        _ => Err(err!(
            UnknownBatState,
            "payload entry {i} (block {block}) has state {st}"
        )
        .with_structure("VHDX BAT")
        .at(at)),
    }
}

/// `BatOverlap` when two of the (offset, length, BAT entry or `u64::MAX` for a region) ranges
/// overlap; the error points at the later entry (or the BAT at `bat_off` for two regions).
fn check_overlaps(mut used: Vec<(u64, u64, u64)>, bat_off: u64) -> Result<()> {
    let entry_at = |i: u64| bat_off + i * 8;
    used.sort_unstable();
    for w in used.windows(2) {
        let (a, al, ai) = w[0];
        let (b, _, bi) = w[1];
        if a + al > b {
            let name = |x: u64| {
                if x == u64::MAX {
                    "a header/log/metadata/BAT region".to_string()
                } else {
                    format!("BAT entry {x}")
                }
            };
            let at = if bi != u64::MAX { bi } else { ai };
            return Err(err!(
                BatOverlap,
                "{} at {a} (+{al}) overlaps {} at {b}",
                name(ai),
                name(bi)
            )
            .with_structure("VHDX BAT")
            .at(if at == u64::MAX {
                bat_off
            } else {
                entry_at(at)
            }));
        }
    }
    Ok(())
}

/// The first existing file the VHDX parent locator names: its relative path, then its
/// absolute and volume paths (and their file names in the child's directory).
fn find_parent(img: &VhdxImage, loc: &ParentLocator, loc_at: u64) -> Result<PathBuf> {
    let dir = img
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut tried = Vec::new();
    let mut candidates = Vec::new();
    if let Some(r) = loc.get("relative_path") {
        let r = r.replace('\\', "/");
        let r = r.strip_prefix("./").unwrap_or(&r).to_string();
        candidates.push(dir.join(r));
    }
    for key in ["absolute_win32_path", "volume_path"] {
        if let Some(a) = loc.get(key) {
            let unix = a.replace('\\', "/");
            candidates.push(PathBuf::from(&unix));
            if let Some(name) = Path::new(&unix).file_name() {
                candidates.push(dir.join(name));
            }
        }
    }
    for c in candidates {
        if tried.contains(&c.display().to_string()) {
            continue;
        }
        tried.push(c.display().to_string());
        if c.is_file() {
            return Ok(c);
        }
    }
    Err(err!(
        MissingParent,
        "parent not found; tried: {}",
        if tried.is_empty() {
            "(the locator names no path)".to_string()
        } else {
            tried.join(", ")
        }
    )
    .with_structure("VHDX parent locator")
    .at(loc_at))
}

fn open_parent(
    img: &mut VhdxImage,
    loc: &ParentLocator,
    loc_at: u64,
    depth: u32,
    parents: &dyn ParentOpener,
) -> Result<()> {
    if loc.locator_type != PARENT_LOCATOR_TYPE_VHDX {
        return Err(err!(
            Unsupported,
            "parent locator type {} (only the VHDX type is known)",
            loc.locator_type
        )
        .with_structure("VHDX parent locator")
        .at(loc_at));
    }
    let pp = find_parent(img, loc, loc_at)?;
    let parent = parents.open_parent(&pp, depth + 1)?;
    // A VHDX parent must be the one the child was made from: its data write GUID is the
    // locator's `parent_linkage` (MS-VHDX, parent locator entries).
    if let Some(want) = parent.info().data_write_guid
        && let Some(link) = loc.get("parent_linkage")
        && !link.eq_ignore_ascii_case(&want)
    {
        return Err(err!(
            ParentMismatch,
            "parent {} has data write GUID {want}, the child expects {link}",
            pp.display()
        )
        .with_structure("VHDX parent locator")
        .at(loc_at));
    }
    if parent.len() != img.virtual_size {
        return Err(err!(
            ParentMismatch,
            "parent {} is {} bytes, the child {}",
            pp.display(),
            parent.len(),
            img.virtual_size
        )
        .with_structure("VHDX parent locator")
        .at(loc_at));
    }
    img.parent_paths.push(pp.display().to_string());
    img.parent = Some(parent);
    Ok(())
}

impl VhdxImage {
    fn write_err(&self, e: std::io::Error, what: &str, at: u64) -> Error {
        Error::io(e, what.to_string()).with_path(&self.path).at(at)
    }

    /// Before the first write: both headers get new file/data write GUIDs and higher sequence
    /// numbers (the non-current copy first).
    fn touch_headers(&mut self) -> Result<()> {
        let Some(rw) = self.rw.as_mut() else {
            return Err(err!(InvalidArgument, "image opened read-only").with_path(&self.path));
        };
        if rw.headers_updated {
            return Ok(());
        }
        let ctx = crate::context::BuildContext::random();
        let mut h = rw.header.clone();
        h.file_write_guid = ctx.new_guid("vhdx file write guid");
        h.data_write_guid = ctx.new_guid("vhdx data write guid");
        for at in [HEADER1_OFFSET, HEADER2_OFFSET] {
            h.sequence += 1;
            self.file.write_all_at(&h.encode(), at).map_err(|e| {
                Error::io(e, "writing VHDX header")
                    .with_path(&self.path)
                    .at(at)
            })?;
        }
        self.file
            .sync_data()
            .map_err(|e| Error::io(e, "syncing VHDX headers").with_path(&self.path))?;
        self.data_write_guid = h.data_write_guid;
        rw.header = h;
        rw.headers_updated = true;
        Ok(())
    }

    /// File offset of block `b`, allocating it (at the end of the file, zero-filled) if needed.
    fn block_for_write(&mut self, b: u64) -> Result<u64> {
        let e = self.payload(b);
        if bat_state(e) == PAYLOAD_FULLY_PRESENT {
            return Ok(bat_offset(e));
        }
        let bat_off = self.rw.as_ref().map(|r| r.bat_offset).unwrap_or(0);
        let at = self.real_len.div_ceil(MIB) * MIB;
        let end = at + self.block_size;
        self.file
            .set_len(end)
            .map_err(|e| self.write_err(e, "growing the VHDX", at))?;
        self.real_len = end;
        self.file_size = self.file_size.max(end);
        let idx = self.geo.payload_index(b);
        let entry = bat_entry(PAYLOAD_FULLY_PRESENT, at);
        let eat = bat_off + idx * 8;
        self.file
            .write_all_at(&entry.to_le_bytes(), eat)
            .map_err(|e| self.write_err(e, "writing the VHDX BAT", eat))?;
        self.bat.set(idx, entry);
        Ok(at)
    }
}

impl crate::disk::DiskImageMut for VhdxImage {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        self.touch_headers()?;
        let mut done = 0u64;
        let total = buf.len() as u64;
        while done < total {
            let off = offset + done;
            let within = off % self.block_size;
            let n = (self.block_size - within).min(total - done);
            let b = off / self.block_size;
            let st = bat_state(self.payload(b));
            let part = &buf[done as usize..(done + n) as usize];
            if st != PAYLOAD_FULLY_PRESENT && part.iter().all(|&x| x == 0) {
                // zeros into a block that reads as zeros: nothing to allocate
                done += n;
                continue;
            }
            let at = self.block_for_write(b)? + within;
            self.file
                .write_all_at(part, at)
                .map_err(|e| self.write_err(e, "writing VHDX data", at))?;
            done += n;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.file
            .sync_all()
            .map_err(|e| Error::io(e, "syncing").with_path(&self.path))
    }
}
