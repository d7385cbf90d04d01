//! Writing fixed and dynamic VHDs from any [`DiskImage`], streaming and sparse.

use super::footer::{DiskType, FOOTER_SIZE, Footer, Geometry, MAX_SIZE, VHD_EPOCH};
use super::header::{DynHeader, HEADER_SIZE};
use super::image::{UNALLOCATED, bitmap_size};
use crate::context::BuildContext;
use crate::disk::stream::{EXTENT_WINDOW, Padded, WriteOptions, copy_data, data_bytes};
use crate::disk::{DiskImage, ExtentKind, Progress, for_each_extent};
use crate::err;
use crate::error::{Error, IoContext, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Default block size of dynamic VHDs (what Hyper-V, Virtual PC and qemu use).
pub const DEFAULT_BLOCK: u64 = 2 << 20;
/// Smallest block size we write.
pub const MIN_WRITE_BLOCK: u64 = 512 << 10;
/// Largest block size we write.
pub const MAX_WRITE_BLOCK: u64 = 256 << 20;
/// Blocks' data start on this alignment in the file, so holes and `copy_file_range` work on
/// whole file-system blocks (the BAT may point anywhere: the gap before each bitmap is a hole).
const DATA_ALIGN: u64 = 4096;

/// Creator application written in our footers.
///
/// qemu decides whether a VHD's size is `current_size` or its CHS geometry from this field.
/// qemu >= 10.0 (`vpc_ignore_current_size()`) uses CHS only for `vpc ` and `qemu`; older qemu
/// (2.6 .. 9.2) used `current_size` only for `win `, `qem2`, `d2v `, `CTXS` and `tap\0`, and
/// CHS for everything else. Our virtual size is rarely a CHS size, so we need a creator in the
/// old allow-list, or qemu-img (and anything built on it) would cut the disk to the CHS size.
/// `qem2` is what qemu itself writes for `force_size=on` images, made for exactly this purpose
/// (Hyper-V/Azure-exact sizes); Hyper-V and Azure ignore the creator and use `current_size`.
pub const CREATOR_APP: [u8; 4] = *b"qem2";
/// Creator version written with [`CREATOR_APP`] (the value qemu writes: 5.3).
pub const CREATOR_VERSION: u32 = 0x0005_0003;
/// Creator host OS: `Wi2k` (what Windows and qemu write).
pub const CREATOR_OS: [u8; 4] = *b"Wi2k";

fn werr(e: std::io::Error, path: &Path, what: &str, at: u64) -> Error {
    Error::io(e, what.to_string()).with_path(path).at(at)
}

/// The footer of a new image of `size` bytes.
pub fn new_footer(size: u64, disk_type: DiskType, data_offset: u64, ctx: &BuildContext) -> Footer {
    let ts = ctx.now().saturating_sub(VHD_EPOCH).min(u64::from(u32::MAX)) as u32;
    Footer {
        features: 2,
        version: 0x0001_0000,
        data_offset,
        timestamp: ts,
        creator_app: CREATOR_APP,
        creator_version: CREATOR_VERSION,
        creator_os: CREATOR_OS,
        original_size: size,
        current_size: size,
        geometry: Geometry::for_sectors(size / 512),
        disk_type,
        checksum: 0,
        unique_id: ctx.new_guid(&format!(
            "vhd unique id: {} disk of {size} bytes",
            disk_type.name()
        )),
        saved_state: 0,
    }
}

/// Writes `src` as a fixed (`dynamic == false`) or dynamic VHD into `out` (empty).
pub fn write(
    src: &dyn DiskImage,
    out: &File,
    out_path: &Path,
    dynamic: bool,
    opts: &WriteOptions,
    ctx: &BuildContext,
    progress: &dyn Progress,
) -> Result<()> {
    let len = src.len();
    if len == 0 {
        return Err(err!(
            InvalidArgument,
            "cannot write an empty (0-byte) disk as a VHD"
        )
        .with_path(out_path));
    }
    let size = len.next_multiple_of(512);
    if size > MAX_SIZE {
        return Err(err!(
            LimitExceeded,
            "a VHD holds at most 2040 GiB ({MAX_SIZE} bytes); the disk has {len} bytes (use VHDX)"
        )
        .with_path(out_path));
    }
    let padded;
    let src: &dyn DiskImage = if size != len {
        progress.note(&format!(
            "virtual size {len} is not a multiple of 512: padded with zeros to {size} bytes"
        ));
        padded = Padded::new(src, size);
        &padded
    } else {
        src
    };
    if dynamic {
        write_dynamic(src, out, out_path, opts, ctx, progress)
    } else {
        write_fixed(src, out, out_path, ctx, progress)
    }
}

fn write_fixed(
    src: &dyn DiskImage,
    out: &File,
    out_path: &Path,
    ctx: &BuildContext,
    progress: &dyn Progress,
) -> Result<()> {
    let size = src.len();
    progress.start("writing vhd", data_bytes(src)?);
    out.set_len(size + FOOTER_SIZE as u64)
        .ctx(out_path, "sizing the output")?;
    copy_data(src, out, out_path, 0, progress)?;
    let footer = new_footer(size, DiskType::Fixed, u64::MAX, ctx).encode();
    out.write_all_at(&footer, size)
        .map_err(|e| werr(e, out_path, "writing the VHD footer", size))?;
    progress.finish();
    Ok(())
}

/// Layout of a dynamic VHD we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynLayout {
    /// Block size.
    pub block_size: u64,
    /// BAT entries.
    pub entries: u64,
    /// BAT offset (after the footer copy and the header).
    pub bat_offset: u64,
    /// Sector bitmap bytes before each block.
    pub bitmap_size: u64,
    /// File offset of the first block's data (aligned).
    pub first_data: u64,
    /// Distance between consecutive blocks.
    pub stride: u64,
}

impl DynLayout {
    /// Layout for `size` bytes with `block_size` blocks (validated by the caller).
    pub fn new(size: u64, block_size: u64) -> DynLayout {
        let entries = size.div_ceil(block_size);
        let bat_offset = (FOOTER_SIZE + HEADER_SIZE) as u64;
        let bat_end = bat_offset + (entries * 4).next_multiple_of(512);
        let bitmap_size = bitmap_size(block_size);
        DynLayout {
            block_size,
            entries,
            bat_offset,
            bitmap_size,
            first_data: (bat_end + bitmap_size).next_multiple_of(DATA_ALIGN),
            stride: (bitmap_size + block_size).next_multiple_of(DATA_ALIGN),
        }
    }

    /// File offset of the `n`-th written block's data.
    pub fn data_offset(&self, n: u64) -> u64 {
        self.first_data + n * self.stride
    }
}

fn block_size_of(opts: &WriteOptions) -> Result<u64> {
    let bs = opts.block_size.unwrap_or(DEFAULT_BLOCK);
    if !bs.is_power_of_two() || !(MIN_WRITE_BLOCK..=MAX_WRITE_BLOCK).contains(&bs) {
        return Err(err!(
            InvalidArgument,
            "VHD block size {bs} must be a power of two from 512 KiB to 256 MiB (default 2 MiB)"
        ));
    }
    Ok(bs)
}

fn write_dynamic(
    src: &dyn DiskImage,
    out: &File,
    out_path: &Path,
    opts: &WriteOptions,
    ctx: &BuildContext,
    progress: &dyn Progress,
) -> Result<()> {
    let size = src.len();
    let bs = block_size_of(opts).map_err(|e| e.with_path(out_path))?;
    let lay = DynLayout::new(size, bs);
    let entries = u32::try_from(lay.entries).map_err(|_| {
        err!(
            LimitExceeded,
            "too many blocks ({}) for a VHD BAT",
            lay.entries
        )
        .with_path(out_path)
    })?;
    progress.start("writing vhd", data_bytes(src)?);
    let (bat, written) = write_blocks(src, out, out_path, &lay, progress)?;
    let end = if written == 0 {
        lay.bat_offset + (lay.entries * 4).next_multiple_of(512)
    } else {
        lay.data_offset(written - 1) + bs
    };
    // The file's length covers the last block even where its tail is a hole.
    out.set_len(end).ctx(out_path, "sizing the output")?;
    let mut bat_bytes = vec![0xffu8; (lay.entries * 4).next_multiple_of(512) as usize];
    for (i, e) in bat.iter().enumerate() {
        bat_bytes[i * 4..i * 4 + 4].copy_from_slice(&e.to_be_bytes());
    }
    out.write_all_at(&bat_bytes, lay.bat_offset)
        .map_err(|x| werr(x, out_path, "writing the BAT", lay.bat_offset))?;
    let header = DynHeader::new_dynamic(lay.bat_offset, entries, bs as u32).encode();
    out.write_all_at(&header, FOOTER_SIZE as u64).map_err(|x| {
        werr(
            x,
            out_path,
            "writing the dynamic disk header",
            FOOTER_SIZE as u64,
        )
    })?;
    let footer = new_footer(size, DiskType::Dynamic, FOOTER_SIZE as u64, ctx).encode();
    out.write_all_at(&footer, 0)
        .map_err(|x| werr(x, out_path, "writing the VHD footer copy", 0))?;
    out.write_all_at(&footer, end)
        .map_err(|x| werr(x, out_path, "writing the VHD footer", end))?;
    progress.finish();
    Ok(())
}

/// The data phase of [`write_dynamic`]: each block holding data gets a full sector bitmap
/// and its data, in order; returns the BAT and the number of blocks written.
fn write_blocks(
    src: &dyn DiskImage,
    out: &File,
    out_path: &Path,
    lay: &DynLayout,
    progress: &dyn Progress,
) -> Result<(Vec<u32>, u64)> {
    let bs = lay.block_size;
    // Bounded: at most 2040 GiB / 512 KiB = 4 Mi entries (16 MiB).
    let mut bat = vec![UNALLOCATED; lay.entries as usize];
    let bitmap = vec![0xffu8; lay.bitmap_size as usize];
    let mut written = 0u64; // blocks written so far
    let mut current: Option<(u64, u64)> = None; // (block index, data offset in the file)
    let mut pending = 0u64; // data bytes of the current block, for progress
    for_each_extent(src, EXTENT_WINDOW, |e| {
        if e.kind != ExtentKind::Data {
            return Ok(());
        }
        let mut v = e.offset;
        while v < e.end() {
            let b = v / bs;
            let n = ((b + 1) * bs).min(e.end()) - v;
            let data_off = match current {
                Some((cb, off)) if cb == b => off,
                _ => {
                    if pending > 0 {
                        progress.advance(pending);
                        pending = 0;
                    }
                    let off = lay.data_offset(written);
                    let bm_off = off - lay.bitmap_size;
                    if !bm_off.is_multiple_of(512) || bm_off / 512 > u64::from(u32::MAX - 1) {
                        return Err(err!(
                            LimitExceeded,
                            "block {b} would start at byte {bm_off}, beyond what a VHD BAT can address"
                        )
                        .with_path(out_path));
                    }
                    out.write_all_at(&bitmap, bm_off)
                        .map_err(|x| werr(x, out_path, "writing a sector bitmap", bm_off))?;
                    bat[b as usize] = (bm_off / 512) as u32;
                    written += 1;
                    current = Some((b, off));
                    off
                }
            };
            src.copy_to(v, n, out, data_off + (v - b * bs))
                .map_err(|x| x.with_path(out_path))?;
            pending += n;
            v += n;
        }
        Ok(())
    })?;
    if pending > 0 {
        progress.advance(pending);
    }
    Ok((bat, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let l = DynLayout::new(3 * (1 << 20) + 4096 + 512, 2 << 20);
        assert_eq!(l.entries, 2);
        assert_eq!(l.bat_offset, 1536);
        assert_eq!(l.bitmap_size, 512);
        // BAT ends at 2048; the first bitmap at 3584, data at 4096.
        assert_eq!(l.first_data, 4096);
        assert_eq!(l.stride, (2 << 20) + 4096);
        let l = DynLayout::new(2040 << 30, 512 << 10);
        assert_eq!(l.entries, 4_177_920);
        assert_eq!(l.first_data % 4096, 0);
    }

    #[test]
    fn block_size_limits() {
        let o = |b| WriteOptions {
            block_size: Some(b),
            ..Default::default()
        };
        assert_eq!(block_size_of(&WriteOptions::default()).unwrap(), 2 << 20);
        assert_eq!(block_size_of(&o(512 << 10)).unwrap(), 512 << 10);
        assert_eq!(block_size_of(&o(256 << 20)).unwrap(), 256 << 20);
        for bad in [0, 4096, 256 << 10, 3 << 20, 512 << 20] {
            assert_eq!(
                block_size_of(&o(bad)).unwrap_err().kind(),
                crate::error::ErrorKind::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn footer_fields() {
        let ctx = BuildContext::fixed(VHD_EPOCH + 1000);
        let f = new_footer(4 << 20, DiskType::Dynamic, 512, &ctx);
        assert_eq!(f.timestamp, 1000);
        assert_eq!(f.geometry.bytes(), 120 * 4 * 17 * 512);
        assert_eq!(&f.creator_app, b"qem2");
        assert_eq!(f, new_footer(4 << 20, DiskType::Dynamic, 512, &ctx));
        assert_ne!(
            f.unique_id,
            new_footer(8 << 20, DiskType::Dynamic, 512, &ctx).unique_id
        );
        // Before the VHD epoch the timestamp saturates at 0.
        assert_eq!(
            new_footer(512, DiskType::Fixed, u64::MAX, &BuildContext::fixed(5)).timestamp,
            0
        );
    }
}
