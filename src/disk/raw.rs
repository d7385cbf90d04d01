//! Raw disk images: the file is the disk. Sparse-aware through `SEEK_DATA` / `SEEK_HOLE`.

use super::{DiskImage, DiskImageMut, Extent, ExtentKind, ImageInfo, push_extent};
use crate::err;
use crate::error::{Error, IoContext, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// A raw image over a file, optionally a window of it (`base..base+len`, used by fixed VHD and
/// fixed VHDX whose payload is a contiguous run of the file).
#[derive(Debug)]
pub struct RawImage {
    file: File,
    path: PathBuf,
    base: u64,
    len: u64,
    format: super::ImageKind,
}

impl RawImage {
    /// Opens `path` read-only as a raw image.
    pub fn open(path: &Path) -> Result<Self> {
        Self::whole(File::open(path).ctx(path, "opening image")?, path)
    }

    /// The whole of an open file as a raw disk.
    fn whole(file: File, path: &Path) -> Result<Self> {
        let len = file.metadata().ctx(path, "reading metadata")?.len();
        Ok(Self::window(file, path, 0, len, super::ImageKind::Raw))
    }

    /// A window of an already open file: bytes `base..base+len` are the virtual disk.
    pub fn window(file: File, path: &Path, base: u64, len: u64, format: super::ImageKind) -> Self {
        RawImage {
            file,
            path: path.to_path_buf(),
            base,
            len,
            format,
        }
    }

    /// Opens `path` read-write (for in-place writes).
    pub fn open_rw(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .ctx(path, "opening image for writing")?;
        Self::whole(file, path)
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Data ranges of `file` between `start` and `end` (absolute file offsets), using
/// `SEEK_DATA`/`SEEK_HOLE`. Falls back to "all data" when the file system cannot tell.
pub fn data_ranges(file: &File, start: u64, end: u64) -> std::io::Result<Vec<(u64, u64)>> {
    let fd = file.as_raw_fd();
    let mut out = Vec::new();
    let mut pos = start;
    while pos < end {
        // SAFETY: lseek on a valid fd owned by `file`; no memory is touched.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENXIO) => break, // no data after pos
                Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => {
                    out.push((pos, end));
                    break;
                }
                _ => return Err(e),
            }
        }
        let data = data as u64;
        if data >= end {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data as libc::off_t, libc::SEEK_HOLE) };
        let hole = if hole < 0 {
            end
        } else {
            (hole as u64).min(end)
        };
        out.push((data, hole));
        pos = hole;
    }
    Ok(out)
}

/// Copies `len` bytes from `src` at `src_off` to `dst` at `dst_off`, in the kernel when it can
/// (`copy_file_range`), through a bounded buffer otherwise.
pub fn copy_file_bytes(
    src: &File,
    src_off: u64,
    dst: &File,
    dst_off: u64,
    len: u64,
) -> std::io::Result<()> {
    let mut done = 0u64;
    while done < len {
        let mut off_in = (src_off + done) as libc::loff_t;
        let mut off_out = (dst_off + done) as libc::loff_t;
        let chunk = (len - done).min(1 << 30) as usize;
        // SAFETY: both fds are valid for the call; offsets are passed by pointer to locals.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                chunk,
                0,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EXDEV)
                | Some(libc::ENOSYS)
                | Some(libc::EINVAL)
                | Some(libc::EOPNOTSUPP) => {
                    return copy_buffered(src, src_off + done, dst, dst_off + done, len - done);
                }
                Some(libc::EINTR) => continue,
                _ => return Err(e),
            }
        }
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "source ended during copy",
            ));
        }
        done += n as u64;
    }
    Ok(())
}

/// Largest step between two progress events of a copy.
pub const PROGRESS_STEP: u64 = 64 << 20;

/// [`copy_file_bytes`] in steps of at most [`PROGRESS_STEP`], each reported to `progress`.
pub fn copy_file_bytes_progress(
    src: &File,
    src_off: u64,
    dst: &File,
    dst_off: u64,
    len: u64,
    progress: &dyn super::Progress,
) -> std::io::Result<()> {
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(PROGRESS_STEP);
        copy_file_bytes(src, src_off + done, dst, dst_off + done, n)?;
        progress.advance(n);
        done += n;
    }
    Ok(())
}

fn copy_buffered(
    src: &File,
    src_off: u64,
    dst: &File,
    dst_off: u64,
    len: u64,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; len.min(super::COPY_BUF as u64) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        src.read_exact_at(&mut buf[..n], src_off + done)?;
        dst.write_all_at(&buf[..n], dst_off + done)?;
        done += n as u64;
    }
    Ok(())
}

impl DiskImage for RawImage {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| {
                err!(
                    InvalidArgument,
                    "read of {} bytes past the end of the disk ({} bytes)",
                    buf.len(),
                    self.len
                )
                .at(offset)
                .with_path(&self.path)
            })?;
        let _ = end;
        self.file
            .read_exact_at(buf, self.base + offset)
            .map_err(|e| {
                let kind_eof = e.kind() == std::io::ErrorKind::UnexpectedEof;
                let base = if kind_eof {
                    err!(Truncated, "file ends inside the disk data")
                } else {
                    Error::io(e, "reading disk data")
                };
                base.with_path(&self.path).at(self.base + offset)
            })
    }

    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let (start, end) = super::clamp_window(self.len, offset, len);
        let ranges = data_ranges(&self.file, self.base + start, self.base + end)
            .ctx(&self.path, "mapping data and holes")?;
        let mut out = Vec::new();
        let mut pos = start;
        for (a, b) in ranges {
            let (a, b) = (a - self.base, b - self.base);
            push_extent(
                &mut out,
                Extent {
                    offset: pos,
                    len: a - pos,
                    kind: ExtentKind::Unallocated,
                },
            );
            push_extent(
                &mut out,
                Extent {
                    offset: a,
                    len: b - a,
                    kind: ExtentKind::Data,
                },
            );
            pos = b;
        }
        push_extent(
            &mut out,
            Extent {
                offset: pos,
                len: end - pos,
                kind: ExtentKind::Unallocated,
            },
        );
        Ok(out)
    }

    fn info(&self) -> ImageInfo {
        let file_size = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut allocated = 0;
        let _ = super::for_each_extent(self, 1 << 34, |e| {
            if e.kind == ExtentKind::Data {
                allocated += e.len;
            }
            Ok(())
        });
        ImageInfo {
            format: self.format,
            virtual_size: self.len,
            file_size,
            allocated: Some(allocated),
            logical_sector_size: 512,
            physical_sector_size: 512,
            ..Default::default()
        }
    }

    fn copy_to(&self, offset: u64, len: u64, out: &File, out_offset: u64) -> Result<()> {
        if offset.checked_add(len).is_none_or(|e| e > self.len) {
            return Err(err!(InvalidArgument, "copy past the end of the disk")
                .at(offset)
                .with_path(&self.path));
        }
        copy_file_bytes(&self.file, self.base + offset, out, out_offset, len).map_err(|e| {
            Error::io(e, "copying disk data")
                .with_path(&self.path)
                .at(self.base + offset)
        })
    }
}

impl DiskImageMut for RawImage {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.len)
        {
            return Err(err!(InvalidArgument, "write past the end of the disk")
                .at(offset)
                .with_path(&self.path));
        }
        self.file
            .write_all_at(buf, self.base + offset)
            .map_err(|e| {
                Error::io(e, "writing disk data")
                    .with_path(&self.path)
                    .at(self.base + offset)
            })
    }

    fn flush(&mut self) -> Result<()> {
        self.file.sync_all().ctx(&self.path, "syncing")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn sparse_file_maps_holes_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.raw");
        let f = File::create(&p).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(&[1u8; 4096], 8 << 20).unwrap();
        f.write_all_at(&[2u8; 4096], 40 << 20).unwrap();
        drop(f);
        let img = RawImage::open(&p).unwrap();
        let ex = img.extents(0, u64::MAX).unwrap();
        let data: Vec<_> = ex.iter().filter(|e| e.kind == ExtentKind::Data).collect();
        assert_eq!(data.len(), 2, "{ex:?}");
        assert!(data[0].offset <= 8 << 20 && data[0].end() >= (8 << 20) + 4096);
        assert_eq!(ex.first().unwrap().offset, 0);
        assert_eq!(ex.last().unwrap().end(), 64 << 20);
        let mut b = [0u8; 4];
        img.read_at(&mut b, 40 << 20).unwrap();
        assert_eq!(b, [2; 4]);
        assert!(img.read_at(&mut b, (64 << 20) - 2).is_err());
    }

    #[test]
    fn copy_file_bytes_copies() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let mut f = File::create(&a).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        f.write_all(&data).unwrap();
        let src = File::open(&a).unwrap();
        let dst = File::create(&b).unwrap();
        copy_file_bytes(&src, 10, &dst, 5, 99_000).unwrap();
        let got = std::fs::read(&b).unwrap();
        assert_eq!(&got[5..], &data[10..99_010]);
    }
}
