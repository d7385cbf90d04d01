//! Format-agnostic disks.
//!
//! A disk is a [`DiskImage`]: a virtual length, positional reads, and a map of extents (data,
//! zero, unallocated). Raw, VHD and VHDX each implement it, so conversion, checksums, inspection
//! and validation are written once and are sparse-aware for every format.
//!
//! Writers take any `DiskImage` as their source and stream it into a new file
//! (see [`crate::disk::convert`]).

pub mod chunks;
pub mod convert;
pub mod mem;
pub mod probe;
pub mod raw;
pub mod signatures;
pub mod validate;

use crate::error::Result;
use serde::Serialize;

pub use probe::{Format, open_image, probe_format};

/// What a range of a virtual disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtentKind {
    /// Bytes stored in the image (they may still happen to be zero).
    Data,
    /// Known to read as zeros, but the image records it explicitly (e.g. VHDX `PAYLOAD_BLOCK_ZERO`).
    Zero,
    /// Nothing stored: reads as zeros (a hole, an unallocated block).
    Unallocated,
}

impl ExtentKind {
    /// True when the range reads as zeros without looking at data.
    pub fn is_zero(self) -> bool {
        !matches!(self, ExtentKind::Data)
    }
}

/// A range of the virtual disk and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Extent {
    /// Start, in bytes of the virtual disk.
    pub offset: u64,
    /// Length in bytes (never 0).
    pub len: u64,
    /// What the range holds.
    pub kind: ExtentKind,
}

impl Extent {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// Descriptive facts of an opened image, for `isotool info` and validation.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ImageInfo {
    /// `raw`, `vhd-fixed`, `vhd-dynamic`, `vhd-differencing`, `vhdx`, `vhdx-fixed`, `vhdx-differencing`.
    pub format: String,
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// Size of the image file on disk (logical length).
    pub file_size: u64,
    /// Bytes actually allocated by the image's own allocation map (data blocks), when known.
    pub allocated: Option<u64>,
    /// Block size of dynamic formats.
    pub block_size: Option<u64>,
    /// Logical sector size.
    pub logical_sector_size: u32,
    /// Physical sector size.
    pub physical_sector_size: u32,
    /// Creator application / version, as the image records it.
    pub creator: Option<String>,
    /// Disk identifier (VHD unique id / VHDX virtual disk id), as a GUID string.
    pub disk_id: Option<String>,
    /// CHS geometry recorded in a VHD footer: (cylinders, heads, sectors per track).
    pub geometry: Option<(u16, u8, u8)>,
    /// Parent chain of a differencing disk, nearest first (paths as found).
    pub parents: Vec<String>,
    /// Format-specific notes (e.g. "current size differs from CHS size").
    pub notes: Vec<String>,
}

/// A virtual disk that can be read.
///
/// Implementations must be safe to share across threads and must never panic on bad input:
/// corruption found while reading is an [`crate::error::Error`].
pub trait DiskImage: Send + Sync {
    /// Virtual size in bytes.
    fn len(&self) -> u64;

    /// True when the disk has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset`. Reading past `len()` is an error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;

    /// The extents covering `[offset, offset + len)` (clamped to the disk), in order, adjacent,
    /// merged where the kind is the same. Callers ask window by window so memory stays bounded.
    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>>;

    /// Descriptive facts.
    fn info(&self) -> ImageInfo;

    /// Copies `len` virtual bytes at `offset` into `out` at `out_offset`.
    ///
    /// The default reads through a bounded buffer; backends whose data lies contiguously in a
    /// file (raw, fixed VHD/VHDX, allocated blocks) override it with `copy_file_range` so the
    /// bytes never pass through user space.
    fn copy_to(&self, offset: u64, len: u64, out: &std::fs::File, out_offset: u64) -> Result<()> {
        copy_via_buffer(self, offset, len, out, out_offset)
    }
}

/// Size of the buffer used by buffered copies (bounded memory whatever the image size).
pub const COPY_BUF: usize = 4 << 20;

/// [`DiskImage::copy_to`] through a bounded user-space buffer.
pub fn copy_via_buffer<D: DiskImage + ?Sized>(
    img: &D,
    offset: u64,
    len: u64,
    out: &std::fs::File,
    out_offset: u64,
) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; (len.min(COPY_BUF as u64)) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        img.read_at(&mut buf[..n], offset + done)?;
        out.write_all_at(&buf[..n], out_offset + done)
            .map_err(|e| crate::error::Error::io(e, "writing output").at(out_offset + done))?;
        done += n as u64;
    }
    Ok(())
}

/// A virtual disk that can also be written in place.
pub trait DiskImageMut: DiskImage {
    /// Writes `buf` at `offset` (allocating blocks as needed). Past `len()` is an error.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()>;
    /// Flushes metadata and data to stable storage.
    fn flush(&mut self) -> Result<()>;
}

/// Appends `e` to `out`, merging with the last extent when adjacent and of the same kind.
pub fn push_extent(out: &mut Vec<Extent>, e: Extent) {
    if e.len == 0 {
        return;
    }
    if let Some(last) = out.last_mut()
        && last.kind == e.kind
        && last.end() == e.offset
    {
        last.len += e.len;
        return;
    }
    out.push(e);
}

/// Clamps a requested window to the disk: returns `(start, end)` with `start <= end <= disk_len`.
pub fn clamp_window(disk_len: u64, offset: u64, len: u64) -> (u64, u64) {
    let start = offset.min(disk_len);
    let end = offset.saturating_add(len).min(disk_len);
    (start, end)
}

/// Walks a disk's extents window by window (bounded memory), calling `f` on each.
pub fn for_each_extent(
    img: &dyn DiskImage,
    window: u64,
    mut f: impl FnMut(Extent) -> Result<()>,
) -> Result<()> {
    let len = img.len();
    let mut pos = 0;
    let mut pending: Option<Extent> = None;
    while pos < len {
        let w = window.min(len - pos);
        for e in img.extents(pos, w)? {
            match &mut pending {
                Some(p) if p.kind == e.kind && p.end() == e.offset => p.len += e.len,
                _ => {
                    if let Some(p) = pending.take() {
                        f(p)?;
                    }
                    pending = Some(e);
                }
            }
        }
        pos += w;
    }
    if let Some(p) = pending {
        f(p)?;
    }
    Ok(())
}

/// Receives progress events from long library operations. The CLI draws bars from them;
/// the library never prints.
pub trait Progress: Sync {
    /// A phase starts with `total` units (bytes) of work.
    fn start(&self, _phase: &str, _total: u64) {}
    /// `n` more units are done.
    fn advance(&self, _n: u64) {}
    /// A message for the user (not an error: e.g. "virtual size rounded up to 1 GiB").
    fn note(&self, _msg: &str) {}
    /// The phase ended.
    fn finish(&self) {}
}

/// Progress sink that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_extent_merges_adjacent_same_kind() {
        let mut v = Vec::new();
        push_extent(
            &mut v,
            Extent {
                offset: 0,
                len: 10,
                kind: ExtentKind::Data,
            },
        );
        push_extent(
            &mut v,
            Extent {
                offset: 10,
                len: 5,
                kind: ExtentKind::Data,
            },
        );
        push_extent(
            &mut v,
            Extent {
                offset: 15,
                len: 0,
                kind: ExtentKind::Zero,
            },
        );
        push_extent(
            &mut v,
            Extent {
                offset: 15,
                len: 5,
                kind: ExtentKind::Zero,
            },
        );
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].len, 15);
        assert_eq!(
            v[1],
            Extent {
                offset: 15,
                len: 5,
                kind: ExtentKind::Zero
            }
        );
    }

    #[test]
    fn clamp() {
        assert_eq!(clamp_window(100, 90, 50), (90, 100));
        assert_eq!(clamp_window(100, 200, 50), (100, 100));
        assert_eq!(clamp_window(100, 10, u64::MAX), (10, 100));
    }
}
