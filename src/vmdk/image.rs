//! Reading hosted sparse VMDK extents as a [`DiskImage`]: monolithicSparse (uncompressed grains,
//! grain directory in the header) and streamOptimized (zlib grains with markers, grain directory
//! found through the footer), as qemu-img, VMware and VirtualBox write them.
//!
//! The grain directory is bound-checked and held in memory (at most [`MAX_GD_ENTRIES`]); grain
//! tables are read on demand into a small cache. Other VMDK flavours (descriptor files with
//! separate extents, flat extents, differencing disks, ESX COWD) are refused by name.

use super::layout::*;
use crate::disk::{DiskImage, Extent, ExtentKind, ImageInfo, clamp_window, push_extent};
use crate::err;
use crate::error::{Error, IoContext, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Largest grain directory accepted (4 Mi entries: 128 TiB with 64 KiB grains).
pub const MAX_GD_ENTRIES: u64 = 4 << 20;
/// Largest grain accepted (sectors; 1 MiB).
pub const MAX_GRAIN_SECTORS: u64 = 2048;
/// Largest embedded descriptor read (sectors).
const MAX_DESCRIPTOR_SECTORS: u64 = 2048;
const GT_CACHE: usize = 64;

/// A sparse VMDK opened for reading.
pub struct VmdkImage {
    path: PathBuf,
    file: File,
    file_len: u64,
    header: Header,
    descriptor: Descriptor,
    gd: Vec<u32>,
    gt_cache: Mutex<Vec<(u32, Arc<Vec<u32>>)>>,
    last_grain: Mutex<Option<(u64, Arc<Vec<u8>>)>>,
}

/// What a grain is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grain {
    Unallocated,
    Zero,
    At(u64),
}

fn at_struct(e: Error, s: &str, at: u64) -> Error {
    e.with_structure(s).at(at)
}

impl VmdkImage {
    /// Opens the sparse VMDK at `path`.
    pub fn open(path: &Path) -> Result<VmdkImage> {
        let file = File::open(path).ctx(path, "opening the VMDK")?;
        let file_len = file.metadata().ctx(path, "reading metadata")?.len();
        Self::open_file(file, file_len, path).map_err(|e| e.with_path(path))
    }

    fn open_file(file: File, file_len: u64, path: &Path) -> Result<VmdkImage> {
        let mut hb = [0u8; HEADER_LEN];
        if file_len < HEADER_LEN as u64 {
            return Err(at_struct(
                err!(Truncated, "file of {file_len} bytes has no sparse header"),
                "VMDK header",
                0,
            ));
        }
        file.read_exact_at(&mut hb, 0)
            .ctx(path, "reading the header")?;
        let mut header = Header::parse(&hb).map_err(|e| at_struct(e, "VMDK header", 0))?;
        if header.gd_offset == GD_AT_END {
            header = read_footer(&file, file_len, path, &header)?;
        }
        check_header(&header, file_len)?;
        let descriptor = read_descriptor(&file, file_len, path, &header)?;
        check_descriptor(&descriptor)?;
        let n = header.gd_entries();
        let mut gdb = vec![0u8; (n * 4) as usize];
        file.read_exact_at(&mut gdb, header.gd_offset * SECTOR)
            .ctx(path, "reading the grain directory")?;
        let gd: Vec<u32> = gdb
            .chunks_exact(4)
            .map(|c| crate::bytes::le32(c, 0))
            .collect();
        let gt_bytes = u64::from(header.num_gtes_per_gt) * 4;
        for (i, &s) in gd.iter().enumerate() {
            if s != 0 && u64::from(s) * SECTOR + gt_bytes > file_len {
                return Err(at_struct(
                    err!(
                        BatOutOfFile,
                        "grain directory entry {i} points at a grain table at sector {s}, past the end of the file ({file_len} bytes)"
                    ),
                    "VMDK grain directory",
                    header.gd_offset * SECTOR + 4 * i as u64,
                ));
            }
        }
        Ok(VmdkImage {
            path: path.to_path_buf(),
            file,
            file_len,
            header,
            descriptor,
            gd,
            gt_cache: Mutex::new(Vec::new()),
            last_grain: Mutex::new(None),
        })
    }

    /// The (footer's, for streams) header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The embedded descriptor.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    fn gt(&self, gdi: u64) -> Result<Option<Arc<Vec<u32>>>> {
        let Some(&s) = self.gd.get(gdi as usize) else {
            return Ok(None);
        };
        if s == 0 {
            return Ok(None);
        }
        if let Ok(c) = self.gt_cache.lock()
            && let Some((_, t)) = c.iter().find(|(k, _)| *k == s)
        {
            return Ok(Some(t.clone()));
        }
        let mut b = vec![0u8; self.header.num_gtes_per_gt as usize * 4];
        self.file
            .read_exact_at(&mut b, u64::from(s) * SECTOR)
            .ctx(&self.path, "reading a grain table")?;
        let t = Arc::new(
            b.chunks_exact(4)
                .map(|c| crate::bytes::le32(c, 0))
                .collect::<Vec<_>>(),
        );
        if let Ok(mut c) = self.gt_cache.lock() {
            if c.len() >= GT_CACHE {
                c.remove(0);
            }
            c.push((s, t.clone()));
        }
        Ok(Some(t))
    }

    fn grain(&self, gi: u64) -> Result<Grain> {
        let per = u64::from(self.header.num_gtes_per_gt);
        let Some(t) = self.gt(gi / per)? else {
            return Ok(Grain::Unallocated);
        };
        Ok(match t[(gi % per) as usize] {
            0 => Grain::Unallocated,
            GTE_ZEROED if self.header.flags & FLAG_ZERO_GRAIN != 0 => Grain::Zero,
            s => Grain::At(u64::from(s)),
        })
    }

    fn read_compressed(&self, gi: u64, sector: u64) -> Result<Arc<Vec<u8>>> {
        if let Ok(c) = self.last_grain.lock()
            && let Some((k, d)) = c.as_ref()
            && *k == gi
        {
            return Ok(d.clone());
        }
        let gb = self.header.grain_bytes();
        let at = sector * SECTOR;
        let markers = self.header.flags & FLAG_MARKERS != 0;
        let hl = if markers { GRAIN_MARKER_LEN } else { 4 };
        let mut h = [0u8; GRAIN_MARKER_LEN];
        if at + hl as u64 > self.file_len {
            return Err(at_struct(
                err!(
                    BatOutOfFile,
                    "grain {gi} at sector {sector} is past the end of the file"
                ),
                "VMDK grain",
                at,
            ));
        }
        self.file
            .read_exact_at(&mut h[..hl], at)
            .ctx(&self.path, "reading a grain marker")?;
        let (lba, size) = if markers {
            (crate::bytes::le64(&h, 0), crate::bytes::le32(&h, 8))
        } else {
            (gi * self.header.grain_size, crate::bytes::le32(&h, 0))
        };
        if lba != gi * self.header.grain_size
            || u64::from(size) > 2 * gb + 4096
            || at + hl as u64 + u64::from(size) > self.file_len
        {
            return Err(at_struct(
                err!(
                    BadField,
                    "grain marker for grain {gi}: LBA {lba} (expected {}), {size} compressed bytes",
                    gi * self.header.grain_size
                ),
                "VMDK grain marker",
                at,
            ));
        }
        let mut comp = vec![0u8; size as usize];
        self.file
            .read_exact_at(&mut comp, at + hl as u64)
            .ctx(&self.path, "reading a compressed grain")?;
        let mut out = vec![0u8; gb as usize];
        let mut d = flate2::Decompress::new(true);
        let st = d.decompress(&comp, &mut out, flate2::FlushDecompress::Finish);
        // The last grain of a disk may be stored short (only up to the capacity).
        let need = (self.header.size() - gi * gb).min(gb);
        if !matches!(st, Ok(flate2::Status::StreamEnd)) || d.total_out() < need {
            return Err(at_struct(
                err!(
                    BadField,
                    "grain {gi} does not inflate to {need} bytes (got {})",
                    d.total_out()
                ),
                "VMDK compressed grain",
                at,
            ));
        }
        let out = Arc::new(out);
        if let Ok(mut c) = self.last_grain.lock() {
            *c = Some((gi, out.clone()));
        }
        Ok(out)
    }

    fn read_grain_part(&self, gi: u64, sector: u64, in_g: u64, dst: &mut [u8]) -> Result<()> {
        if self.header.flags & FLAG_COMPRESSED != 0 {
            let g = self.read_compressed(gi, sector)?;
            dst.copy_from_slice(&g[in_g as usize..in_g as usize + dst.len()]);
            return Ok(());
        }
        let at = sector * SECTOR + in_g;
        if sector * SECTOR >= self.file_len {
            return Err(at_struct(
                err!(
                    BatOutOfFile,
                    "grain {gi} at sector {sector} is past the end of the file ({} bytes)",
                    self.file_len
                ),
                "VMDK grain table",
                sector * SECTOR,
            ));
        }
        let avail = self.file_len.saturating_sub(at).min(dst.len() as u64) as usize;
        self.file
            .read_exact_at(&mut dst[..avail], at)
            .ctx(&self.path, "reading a grain")?;
        dst[avail..].fill(0);
        Ok(())
    }
}

fn read_footer(file: &File, file_len: u64, path: &Path, h: &Header) -> Result<Header> {
    if h.flags & FLAG_MARKERS == 0 || file_len < 3 * SECTOR + HEADER_LEN as u64 {
        return Err(at_struct(
            err!(
                BadField,
                "gdOffset says 'at end' but the file has no footer"
            ),
            "VMDK header",
            off::GD_OFFSET as u64,
        ));
    }
    let at = file_len - 3 * SECTOR;
    let mut b = [0u8; 1024];
    file.read_exact_at(&mut b, at)
        .ctx(path, "reading the footer")?;
    if crate::bytes::le32(&b, 12) != marker::FOOTER {
        return Err(at_struct(
            err!(BadSignature, "no footer marker 1536 bytes before the end"),
            "VMDK footer",
            at,
        ));
    }
    let f = Header::parse(&b[512..]).map_err(|e| at_struct(e, "VMDK footer", at + 512))?;
    if f.gd_offset == GD_AT_END {
        return Err(at_struct(
            err!(BadField, "the footer's gdOffset is 'at end' too"),
            "VMDK footer",
            at + 512,
        ));
    }
    Ok(f)
}

fn check_header(h: &Header, file_len: u64) -> Result<()> {
    let s = "VMDK header";
    if !(1..=3).contains(&h.version) {
        return Err(at_struct(
            err!(Unsupported, "sparse extent version {}", h.version),
            s,
            off::VERSION as u64,
        ));
    }
    if h.grain_size == 0 || !h.grain_size.is_power_of_two() || h.grain_size > MAX_GRAIN_SECTORS {
        return Err(at_struct(
            err!(
                BadField,
                "grain size {} sectors (a power of two up to {MAX_GRAIN_SECTORS})",
                h.grain_size
            ),
            s,
            off::GRAIN_SIZE as u64,
        ));
    }
    if h.num_gtes_per_gt == 0 || h.num_gtes_per_gt > 512 || !h.num_gtes_per_gt.is_power_of_two() {
        return Err(at_struct(
            err!(
                BadField,
                "{} grain table entries per table (at most 512)",
                h.num_gtes_per_gt
            ),
            s,
            off::NUM_GTES_PER_GT as u64,
        ));
    }
    if h.capacity.checked_mul(SECTOR).is_none() || h.gd_entries() > MAX_GD_ENTRIES {
        return Err(at_struct(
            err!(
                AbsurdSize,
                "capacity {} sectors needs {} grain tables (limit {MAX_GD_ENTRIES})",
                h.capacity,
                h.gd_entries()
            ),
            s,
            off::CAPACITY as u64,
        ));
    }
    if h.flags & FLAG_COMPRESSED != 0 && h.compress_algorithm != COMPRESS_DEFLATE {
        return Err(at_struct(
            err!(
                Unsupported,
                "compression algorithm {}",
                h.compress_algorithm
            ),
            s,
            off::COMPRESS_ALGORITHM as u64,
        ));
    }
    let gd_end = h
        .gd_offset
        .checked_mul(SECTOR)
        .and_then(|o| o.checked_add(h.gd_entries() * 4));
    if h.gd_offset == 0 || gd_end.is_none_or(|e| e > file_len) {
        return Err(at_struct(
            err!(
                BatOutOfFile,
                "grain directory at sector {} ({} entries) is past the end of the file ({file_len} bytes)",
                h.gd_offset,
                h.gd_entries()
            ),
            s,
            off::GD_OFFSET as u64,
        ));
    }
    Ok(())
}

fn read_descriptor(file: &File, file_len: u64, path: &Path, h: &Header) -> Result<Descriptor> {
    if h.descriptor_offset == 0 || h.descriptor_size == 0 {
        return Ok(Descriptor::default());
    }
    let at = h.descriptor_offset.saturating_mul(SECTOR);
    if h.descriptor_size > MAX_DESCRIPTOR_SECTORS
        || at.saturating_add(h.descriptor_size * SECTOR) > file_len
    {
        return Err(at_struct(
            err!(
                BatOutOfFile,
                "descriptor at sector {} ({} sectors) is absurd or past the end of the file",
                h.descriptor_offset,
                h.descriptor_size
            ),
            "VMDK header",
            off::DESCRIPTOR_OFFSET as u64,
        ));
    }
    let mut b = vec![0u8; (h.descriptor_size * SECTOR) as usize];
    file.read_exact_at(&mut b, at)
        .ctx(path, "reading the descriptor")?;
    let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
    Ok(Descriptor::parse(&String::from_utf8_lossy(&b[..end])))
}

fn check_descriptor(d: &Descriptor) -> Result<()> {
    let ok = ["", "monolithicSparse", "streamOptimized", "vmfsSparse"];
    if !ok.contains(&d.create_type.as_str()) {
        return Err(err!(
            UnsupportedFormat,
            "VMDK createType {:?} is not supported (monolithicSparse and streamOptimized are)",
            d.create_type
        )
        .with_structure("VMDK descriptor"));
    }
    if d.parent_hint.is_some()
        || (!d.parent_cid.is_empty() && !d.parent_cid.eq_ignore_ascii_case("ffffffff"))
    {
        return Err(err!(
            UnsupportedFormat,
            "differencing VMDK (parentCID {}) is not supported",
            d.parent_cid
        )
        .with_structure("VMDK descriptor"));
    }
    if d.extents.len() > 1 {
        return Err(err!(
            UnsupportedFormat,
            "VMDK with {} extents is not supported",
            d.extents.len()
        )
        .with_structure("VMDK descriptor"));
    }
    Ok(())
}

impl DiskImage for VmdkImage {
    fn len(&self) -> u64 {
        self.header.size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.len())
            .ok_or_else(|| err!(InvalidArgument, "read past the end of the disk").at(offset))?;
        let gb = self.header.grain_bytes();
        let mut pos = offset;
        while pos < end {
            let gi = pos / gb;
            let in_g = pos % gb;
            let n = (gb - in_g).min(end - pos);
            let dst = &mut buf[(pos - offset) as usize..(pos - offset + n) as usize];
            match self.grain(gi).map_err(|e| e.with_path(&self.path))? {
                Grain::Unallocated | Grain::Zero => dst.fill(0),
                Grain::At(s) => self
                    .read_grain_part(gi, s, in_g, dst)
                    .map_err(|e| e.with_path(&self.path))?,
            }
            pos += n;
        }
        Ok(())
    }

    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let (start, end) = clamp_window(self.len(), offset, len);
        let gb = self.header.grain_bytes();
        let mut out = Vec::new();
        let mut pos = start;
        while pos < end {
            let n = (gb - pos % gb).min(end - pos);
            let kind = match self.grain(pos / gb).map_err(|e| e.with_path(&self.path))? {
                Grain::Unallocated => ExtentKind::Unallocated,
                Grain::Zero => ExtentKind::Zero,
                Grain::At(_) => ExtentKind::Data,
            };
            push_extent(
                &mut out,
                Extent {
                    offset: pos,
                    len: n,
                    kind,
                },
            );
            pos += n;
        }
        Ok(out)
    }

    fn info(&self) -> ImageInfo {
        let h = &self.header;
        let kind = if h.flags & FLAG_COMPRESSED != 0 {
            "streamOptimized"
        } else {
            "monolithicSparse"
        };
        let mut notes = vec![
            format!("VMDK sparse extent version {}", h.version),
            format!(
                "grain size {} bytes, {} entries per grain table",
                h.grain_bytes(),
                h.num_gtes_per_gt
            ),
            format!(
                "grains: {}",
                if h.flags & FLAG_COMPRESSED != 0 {
                    "zlib-compressed (deflate)"
                } else {
                    "uncompressed"
                }
            ),
        ];
        if !self.descriptor.create_type.is_empty() {
            notes.push(format!("createType {}", self.descriptor.create_type));
        }
        if h.unclean_shutdown {
            notes.push("unclean shutdown flag set".into());
        }
        ImageInfo {
            format: format!(
                "vmdk-{}",
                if self.descriptor.create_type.is_empty() {
                    kind
                } else {
                    &self.descriptor.create_type
                }
            ),
            virtual_size: h.size(),
            file_size: self.file_len,
            allocated: None,
            block_size: Some(h.grain_bytes()),
            logical_sector_size: 512,
            physical_sector_size: 512,
            creator: None,
            disk_id: None,
            geometry: None,
            parents: Vec::new(),
            notes,
        }
    }
}
