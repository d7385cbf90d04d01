//! Streaming helpers the format writers share: writer options, the extent walk window, the
//! copy loop for contiguous payloads (raw, fixed VHD, fixed VHDX), the raw writer, and a disk
//! seen with a larger size.

use super::{DiskImage, Extent, ExtentKind, ImageInfo, Progress, for_each_extent, push_extent};
use crate::err;
use crate::error::{IoContext, Result};
use std::fs::File;
use std::path::Path;

/// Mebibyte.
pub const MIB: u64 = 1 << 20;

/// Window used when walking extents (bounded memory for any image size).
pub const EXTENT_WINDOW: u64 = 1 << 32;

/// Options of the format writers.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// Block size of dynamic formats (None: the format's default: VHD 2 MiB, VHDX 32 MiB).
    pub block_size: Option<u64>,
    /// VHDX logical sector size (512 or 4096).
    pub logical_sector_size: u32,
    /// VHDX physical sector size (512 or 4096).
    pub physical_sector_size: u32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            block_size: None,
            logical_sector_size: 512,
            physical_sector_size: 4096,
        }
    }
}

/// Total bytes of `Data` extents (what a writer has to move).
pub fn data_bytes(src: &dyn DiskImage) -> Result<u64> {
    let mut n = 0;
    for_each_extent(src, EXTENT_WINDOW, |e| {
        if e.kind == ExtentKind::Data {
            n += e.len;
        }
        Ok(())
    })?;
    Ok(n)
}

/// The most data copied between two progress reports (64 MiB).
pub const PROGRESS_STEP: u64 = 64 << 20;

/// Raw writer: the file is the disk; holes where the source has no data.
pub fn write_raw(
    src: &dyn DiskImage,
    out: &File,
    out_path: &Path,
    progress: &dyn Progress,
) -> Result<()> {
    progress.start("writing raw", data_bytes(src)?);
    out.set_len(src.len()).ctx(out_path, "sizing the output")?;
    copy_data(src, out, out_path, 0, progress)?;
    progress.finish();
    Ok(())
}

/// Copies every `Data` extent of `src` to `out` at `out_base + offset` (the layout of raw, fixed
/// VHD and fixed VHDX payloads), leaving the rest untouched: holes in a new file. Advances
/// `progress` by the bytes copied.
pub fn copy_data(
    src: &dyn DiskImage,
    out: &File,
    out_path: &Path,
    out_base: u64,
    progress: &dyn Progress,
) -> Result<()> {
    for_each_extent(src, EXTENT_WINDOW, |e| {
        if e.kind != ExtentKind::Data {
            return Ok(());
        }
        // In pieces, so progress moves on a dense disk (one extent) too.
        let mut off = e.offset;
        while off < e.end() {
            let n = (e.end() - off).min(PROGRESS_STEP);
            src.copy_to(off, n, out, out_base + off)
                .map_err(|x| x.with_path(out_path))?;
            progress.advance(n);
            off += n;
        }
        Ok(())
    })
}

/// A disk seen with a larger virtual size: bytes past the inner disk read as zeros.
pub struct Padded<'a> {
    inner: &'a dyn DiskImage,
    len: u64,
}

impl<'a> Padded<'a> {
    /// `inner` extended to `len` bytes (`len >= inner.len()`).
    pub fn new(inner: &'a dyn DiskImage, len: u64) -> Self {
        Padded {
            inner,
            len: len.max(inner.len()),
        }
    }
}

impl DiskImage for Padded<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| err!(InvalidArgument, "read past the end of the disk").at(offset))?;
        let inner_len = self.inner.len();
        if offset >= inner_len {
            buf.fill(0);
        } else if end <= inner_len {
            self.inner.read_at(buf, offset)?;
        } else {
            let k = (inner_len - offset) as usize;
            self.inner.read_at(&mut buf[..k], offset)?;
            buf[k..].fill(0);
        }
        Ok(())
    }

    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let (start, end) = super::clamp_window(self.len, offset, len);
        let inner_len = self.inner.len();
        let mut out = if start < inner_len {
            self.inner.extents(start, end.min(inner_len) - start)?
        } else {
            Vec::new()
        };
        let pad_from = start.max(inner_len);
        push_extent(
            &mut out,
            Extent {
                offset: pad_from,
                len: end.saturating_sub(pad_from),
                kind: ExtentKind::Unallocated,
            },
        );
        Ok(out)
    }

    fn info(&self) -> ImageInfo {
        let mut i = self.inner.info();
        i.virtual_size = self.len;
        i
    }

    fn copy_to(&self, offset: u64, len: u64, out: &File, out_offset: u64) -> Result<()> {
        if offset
            .checked_add(len)
            .is_some_and(|e| e <= self.inner.len())
        {
            self.inner.copy_to(offset, len, out, out_offset)
        } else {
            super::copy_via_buffer(self, offset, len, out, out_offset)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_reads_zero_past_inner() {
        let mut m = crate::disk::mem::MemImage::new(1000, 100);
        m.write(990, &[7; 10]);
        let p = Padded::new(&m, 2000);
        let mut b = [1u8; 20];
        p.read_at(&mut b, 990).unwrap();
        assert_eq!(&b[..10], &[7; 10]);
        assert_eq!(&b[10..], &[0; 10]);
        let ex = p.extents(0, 2000).unwrap();
        assert_eq!(ex.last().unwrap().end(), 2000);
        assert_eq!(ex.last().unwrap().kind, ExtentKind::Unallocated);
    }
}
