//! Opens a disk image of any format (probed from content), following differencing parents.
//!
//! The formats never name the probe: a differencing VHD or VHDX opens its parent through the
//! [`ParentOpener`] passed in, which is [`Opener`] here. The depth limit (and so loops) are
//! checked in one place, [`open_image_at_depth`].

use super::probe::{Format, probe_format};
use crate::disk::{DiskImage, OpenOptions, ParentOpener};
use crate::error::Result;
use std::path::Path;

/// Deepest differencing chain we follow (a loop or a pathological chain is an error).
pub const MAX_PARENT_DEPTH: u32 = 16;

/// Opens an image of any format, following differencing parents.
pub fn open_image(path: &Path, opts: &OpenOptions) -> Result<Box<dyn DiskImage>> {
    open_image_at_depth(path, opts, 0)
}

/// [`open_image`] at a given depth of a parent chain (0 for the image the user named).
pub fn open_image_at_depth(
    path: &Path,
    opts: &OpenOptions,
    depth: u32,
) -> Result<Box<dyn DiskImage>> {
    if depth > MAX_PARENT_DEPTH {
        return Err(crate::err!(
            ParentChainTooDeep,
            "differencing chain deeper than {MAX_PARENT_DEPTH} (or a loop)"
        )
        .with_path(path));
    }
    let opener = Opener { opts: *opts };
    match probe_format(path)? {
        Format::Raw => Ok(Box::new(crate::disk::raw::RawImage::open(path)?)),
        Format::Vhd => crate::vhd::open(path, depth, &opener),
        Format::Vhdx => crate::vhdx::open(path, opts, depth, &opener),
        Format::Qcow2 => {
            // A backing file is probed like any input, unless the image names its format raw.
            let backing = |p: &Path, fmt: Option<&str>, d: u32| -> Result<Box<dyn DiskImage>> {
                if fmt == Some("raw") {
                    return Ok(Box::new(crate::disk::raw::RawImage::open(p)?));
                }
                open_image_at_depth(p, opts, d)
            };
            Ok(Box::new(crate::qcow2::Qcow2Image::open(
                path, depth, &backing,
            )?))
        }
        Format::Vmdk => Ok(Box::new(crate::vmdk::VmdkImage::open(path)?)),
    }
}

/// Opens `path` as a raw disk whatever its content (`--input-format raw`), or probes it.
pub fn open_image_as(path: &Path, raw: bool, opts: &OpenOptions) -> Result<Box<dyn DiskImage>> {
    if raw {
        return Ok(Box::new(crate::disk::raw::RawImage::open(path)?));
    }
    open_image(path, opts)
}

/// Opens parents by probing their format: what differencing formats are given.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opener {
    /// How parents are opened.
    pub opts: OpenOptions,
}

impl ParentOpener for Opener {
    fn open_parent(&self, path: &Path, depth: u32) -> Result<Box<dyn DiskImage>> {
        open_image_at_depth(path, &self.opts, depth)
    }
}
