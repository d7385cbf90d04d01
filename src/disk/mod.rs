//! Format-agnostic disks.
//!
//! A disk is a [`DiskImage`]: a virtual length, positional reads, and a map of extents (data,
//! zero, unallocated). Raw, VHD and VHDX each implement it, so conversion, checksums, inspection
//! and validation are written once and are sparse-aware for every format.
//!
//! Writers take any `DiskImage` as their source and stream it into a new file, with the helpers
//! of [`stream`]. This is the bottom of the disk layers: it names no format. Formats that have
//! parents open them through a [`ParentOpener`] they are given (the probe lives above them, in
//! `crate::image`).

pub mod chunks;
pub mod mem;
pub mod raw;
pub mod signatures;
pub mod stream;

use crate::error::Result;
use serde::Serialize;
use std::path::Path;

/// How to open images.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// Apply a VHDX's pending log in memory while reading (the file is not modified).
    /// Without it, a VHDX with a non-empty log is refused.
    pub replay_log: bool,
}

/// Opens the parent of a differencing image: given to the formats by the layer above, so a
/// format never names the probe.
pub trait ParentOpener {
    /// Opens the image at `path`, `depth` links down a differencing chain (the child is at
    /// `depth - 1`). Implementations refuse chains deeper than their limit (loops included).
    fn open_parent(&self, path: &Path, depth: u32) -> Result<Box<dyn DiskImage>>;
}

/// A [`ParentOpener`] that opens nothing: for images opened for in-place writes, where a
/// differencing disk is refused.
#[derive(Debug, Clone, Copy)]
pub struct NoParents;

impl ParentOpener for NoParents {
    fn open_parent(&self, path: &Path, _depth: u32) -> Result<Box<dyn DiskImage>> {
        Err(crate::err!(
            Unsupported,
            "writing into a differencing disk is not supported (its parent is {})",
            path.display()
        ))
    }
}

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

/// What an opened image is: its container format and, for VHD/VHDX, its kind. Serialized (and
/// displayed) as `raw`, `vhd-fixed`, `vhd-dynamic`, `vhd-differencing`, `vhdx`, `vhdx-fixed`,
/// `vhdx-differencing`, or `memory` / `zero` for the in-memory backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageKind {
    /// A raw disk: the file is the disk.
    #[default]
    Raw,
    /// Fixed VHD.
    VhdFixed,
    /// Dynamic VHD.
    VhdDynamic,
    /// Differencing VHD.
    VhdDifferencing,
    /// Dynamic VHDX.
    Vhdx,
    /// VHDX with every block allocated and "leave blocks allocated" set.
    VhdxFixed,
    /// Differencing VHDX.
    VhdxDifferencing,
    /// qcow2 without a backing file.
    Qcow2,
    /// qcow2 read through its backing chain.
    Qcow2Backed,
    /// VMDK monolithicSparse (one sparse extent, uncompressed grains).
    #[serde(rename = "vmdk-monolithicSparse")]
    VmdkMonolithicSparse,
    /// VMDK streamOptimized (zlib grains, tables at the end).
    #[serde(rename = "vmdk-streamOptimized")]
    VmdkStreamOptimized,
    /// In-memory disk (tests).
    Memory,
    /// A disk of zeros (`disk create`).
    Zero,
}

impl ImageKind {
    /// The name shown and serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Raw => "raw",
            ImageKind::VhdFixed => "vhd-fixed",
            ImageKind::VhdDynamic => "vhd-dynamic",
            ImageKind::VhdDifferencing => "vhd-differencing",
            ImageKind::Vhdx => "vhdx",
            ImageKind::VhdxFixed => "vhdx-fixed",
            ImageKind::VhdxDifferencing => "vhdx-differencing",
            ImageKind::Qcow2 => "qcow2",
            ImageKind::Qcow2Backed => "qcow2-backed",
            ImageKind::VmdkMonolithicSparse => "vmdk-monolithicSparse",
            ImageKind::VmdkStreamOptimized => "vmdk-streamOptimized",
            ImageKind::Memory => "memory",
            ImageKind::Zero => "zero",
        }
    }

    /// A VHD of any kind.
    pub fn is_vhd(self) -> bool {
        matches!(
            self,
            ImageKind::VhdFixed | ImageKind::VhdDynamic | ImageKind::VhdDifferencing
        )
    }

    /// A VHDX of any kind.
    pub fn is_vhdx(self) -> bool {
        matches!(
            self,
            ImageKind::Vhdx | ImageKind::VhdxFixed | ImageKind::VhdxDifferencing
        )
    }
}

impl std::fmt::Display for ImageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ImageKind {
    type Err = crate::Error;

    /// The inverse of [`ImageKind::as_str`].
    fn from_str(s: &str) -> Result<Self> {
        const ALL: [ImageKind; 9] = [
            ImageKind::Raw,
            ImageKind::VhdFixed,
            ImageKind::VhdDynamic,
            ImageKind::VhdDifferencing,
            ImageKind::Vhdx,
            ImageKind::VhdxFixed,
            ImageKind::VhdxDifferencing,
            ImageKind::Memory,
            ImageKind::Zero,
        ];
        ALL.into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| crate::err!(InvalidArgument, "unknown image kind {s:?}"))
    }
}

impl PartialEq<&str> for ImageKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for ImageKind {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

/// Descriptive facts of an opened image, for `isotool info` and validation.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ImageInfo {
    /// What the image is (`raw`, `vhd-fixed`, ... when shown).
    pub format: ImageKind,
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
    /// A VHDX's data write GUID, braced (what a differencing child's `parent_linkage` names);
    /// not shown.
    #[serde(skip)]
    pub data_write_guid: Option<String>,
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

/// Commits `out`, shown as a "syncing" phase of unknown length when the output is flushed to
/// stable storage first (that flush can take seconds for a large output).
pub fn commit_syncing(
    out: crate::output::AtomicOutput,
    sync: bool,
    progress: &dyn Progress,
) -> crate::error::Result<std::path::PathBuf> {
    if sync {
        progress.start("syncing", 0);
    }
    let r = out.commit();
    if sync {
        progress.finish();
    }
    r
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
