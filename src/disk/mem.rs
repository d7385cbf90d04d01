//! In-memory and all-zero disks: test backends, and the source of `disk create`.

use super::{DiskImage, Extent, ExtentKind, ImageInfo, push_extent};
use crate::err;
use crate::error::Result;

/// A disk held in memory, with an explicit allocation map in `granule`-sized units
/// (unallocated granules read as zeros).
#[derive(Debug, Clone)]
pub struct MemImage {
    data: Vec<u8>,
    allocated: Vec<bool>,
    granule: u64,
}

impl MemImage {
    /// A fully unallocated disk of `len` bytes tracked in `granule` units.
    pub fn new(len: usize, granule: u64) -> Self {
        let n = (len as u64).div_ceil(granule) as usize;
        MemImage {
            data: vec![0; len],
            allocated: vec![false; n],
            granule,
        }
    }

    /// Writes bytes and marks their granules allocated.
    pub fn write(&mut self, offset: usize, bytes: &[u8]) {
        self.data[offset..offset + bytes.len()].copy_from_slice(bytes);
        let first = offset as u64 / self.granule;
        let last = (offset + bytes.len()).max(offset + 1) as u64 - 1;
        for g in first..=last / self.granule {
            self.allocated[g as usize] = true;
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }
}

impl DiskImage for MemImage {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.len());
        match end {
            Some(e) => {
                buf.copy_from_slice(&self.data[offset as usize..e as usize]);
                Ok(())
            }
            None => Err(err!(InvalidArgument, "read past the end of the disk").at(offset)),
        }
    }

    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let (start, end) = super::clamp_window(self.len(), offset, len);
        let mut out = Vec::new();
        let mut pos = start;
        while pos < end {
            let g = pos / self.granule;
            let gend = ((g + 1) * self.granule).min(end);
            let kind = if self.allocated[g as usize] {
                ExtentKind::Data
            } else {
                ExtentKind::Unallocated
            };
            push_extent(
                &mut out,
                Extent {
                    offset: pos,
                    len: gend - pos,
                    kind,
                },
            );
            pos = gend;
        }
        Ok(out)
    }

    fn info(&self) -> ImageInfo {
        ImageInfo {
            format: super::ImageKind::Memory,
            virtual_size: self.len(),
            logical_sector_size: 512,
            physical_sector_size: 512,
            ..Default::default()
        }
    }
}

/// A disk of `len` bytes with nothing allocated: converting it creates an empty disk.
#[derive(Debug, Clone, Copy)]
pub struct ZeroImage {
    /// Virtual size.
    pub len: u64,
}

impl DiskImage for ZeroImage {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.len)
        {
            return Err(err!(InvalidArgument, "read past the end of the disk").at(offset));
        }
        buf.fill(0);
        Ok(())
    }

    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let (start, end) = super::clamp_window(self.len, offset, len);
        let mut out = Vec::new();
        push_extent(
            &mut out,
            Extent {
                offset: start,
                len: end - start,
                kind: ExtentKind::Unallocated,
            },
        );
        Ok(out)
    }

    fn info(&self) -> ImageInfo {
        ImageInfo {
            format: super::ImageKind::Zero,
            virtual_size: self.len,
            logical_sector_size: 512,
            physical_sector_size: 512,
            ..Default::default()
        }
    }
}
