//! Opens a disk image of any format (probed from content), following differencing parents.
//!
//! The formats never name the probe: a differencing VHD or VHDX opens its parent through the
//! [`ParentOpener`] passed in, which is [`Opener`] here. The depth limit (and so loops) are
//! checked in one place, [`open_image_at_depth`].

use super::probe::{Format, probe_format};
use crate::disk::{DiskImage, OpenOptions, ParentOpener};
use crate::error::Result;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    open_recorded(path, opts, depth, None)
}

/// The files a disk reads: the image and each parent found through its locators.
type Seen = Mutex<Vec<PathBuf>>;

fn open_recorded(
    path: &Path,
    opts: &OpenOptions,
    depth: u32,
    seen: Option<&Seen>,
) -> Result<Box<dyn DiskImage>> {
    if depth > MAX_PARENT_DEPTH {
        return Err(crate::err!(
            ParentChainTooDeep,
            "differencing chain deeper than {MAX_PARENT_DEPTH} (or a loop)"
        )
        .with_path(path));
    }
    if let Some(seen) = seen
        && let Ok(mut v) = seen.lock()
    {
        v.push(path.to_path_buf());
    }
    let opener = Recorder { opts: *opts, seen };
    match probe_format(path)? {
        Format::Raw => Ok(Box::new(crate::disk::raw::RawImage::open(path)?)),
        Format::Vhd => crate::vhd::open(path, depth, &opener),
        Format::Vhdx => crate::vhdx::open(path, opts, depth, &opener),
        Format::Qcow2 => {
            // A backing file is probed like any input, unless the image names its format raw.
            let backing = |p: &Path, fmt: Option<&str>, d: u32| -> Result<Box<dyn DiskImage>> {
                if fmt == Some("raw") {
                    if let Some(seen) = seen
                        && let Ok(mut v) = seen.lock()
                    {
                        v.push(p.to_path_buf());
                    }
                    return Ok(Box::new(crate::disk::raw::RawImage::open(p)?));
                }
                open_recorded(p, opts, d, seen)
            };
            Ok(Box::new(crate::qcow2::Qcow2Image::open(
                path, depth, &backing,
            )?))
        }
        Format::Vmdk => Ok(Box::new(crate::vmdk::VmdkImage::open(path)?)),
    }
}

/// [`open_image_as`], also returning every file the disk reads (the image itself, then each
/// parent or backing file its locators led to): the paths an output must never be.
pub fn open_image_with_files(
    path: &Path,
    raw: bool,
    opts: &OpenOptions,
) -> Result<(Box<dyn DiskImage>, Vec<PathBuf>)> {
    if raw {
        let img: Box<dyn DiskImage> = Box::new(crate::disk::raw::RawImage::open(path)?);
        return Ok((img, vec![path.to_path_buf()]));
    }
    let seen = Mutex::new(Vec::new());
    let img = open_recorded(path, opts, 0, Some(&seen))?;
    let files = seen.into_inner().unwrap_or_default();
    Ok((img, files))
}

/// Opens parents by probing their format, noting each file opened when asked to.
struct Recorder<'a> {
    opts: OpenOptions,
    seen: Option<&'a Seen>,
}

impl ParentOpener for Recorder<'_> {
    fn open_parent(&self, path: &Path, depth: u32) -> Result<Box<dyn DiskImage>> {
        open_recorded(path, &self.opts, depth, self.seen)
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
