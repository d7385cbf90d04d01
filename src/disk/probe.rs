//! Recognises a disk image's format from its content (never from its name) and opens it.

use super::DiskImage;
use crate::error::{IoContext, Result};
use serde::Serialize;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Deepest differencing chain we follow (a loop or a pathological chain is an error).
pub const MAX_PARENT_DEPTH: u32 = 16;

/// A disk image container format, as recognised from content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// No container: the file is the disk.
    Raw,
    /// VHD (fixed, dynamic or differencing): `conectix` footer.
    Vhd,
    /// VHDX: `vhdxfile` file identifier.
    Vhdx,
    /// qcow2 (versions 2 and 3): `QFI\xfb` magic.
    Qcow2,
    /// VMDK hosted sparse extent (monolithicSparse, streamOptimized): `KDMV` magic.
    Vmdk,
}

/// How to open images.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// Apply a VHDX's pending log in memory while reading (the file is not modified).
    /// Without it, a VHDX with a non-empty log is refused.
    pub replay_log: bool,
}

/// Recognises the format of the file at `path` from its bytes.
///
/// VHDX starts with `vhdxfile`. A VHD has a `conectix` footer in its last 512 bytes (511 for
/// images made by very old Virtual PC), and dynamic/differencing VHDs also have a copy at offset 0:
/// unlike qemu-img, a fixed VHD is recognised by its footer and not taken for raw.
pub fn probe_format(path: &Path) -> Result<Format> {
    let f = File::open(path).ctx(path, "opening image")?;
    probe_file(&f, path)
}

/// [`probe_format`] on an open file.
pub fn probe_file(f: &File, path: &Path) -> Result<Format> {
    let len = f.metadata().ctx(path, "reading metadata")?.len();
    let mut head = [0u8; 8];
    if len >= 8 {
        f.read_exact_at(&mut head, 0)
            .ctx(path, "reading the first bytes")?;
        if &head == b"vhdxfile" {
            return Ok(Format::Vhdx);
        }
        if &head == b"conectix" {
            return Ok(Format::Vhd);
        }
        if head[..4] == *b"QFI\xfb" {
            return Ok(Format::Qcow2);
        }
        if head[..4] == *b"KDMV" {
            return Ok(Format::Vmdk);
        }
    }
    for tail in [512u64, 511] {
        if len >= tail {
            let mut c = [0u8; 8];
            f.read_exact_at(&mut c, len - tail)
                .ctx(path, "reading the last bytes")?;
            if &c == b"conectix" {
                return Ok(Format::Vhd);
            }
        }
    }
    if let Some(what) = super::signatures::unsupported(f, len, path)? {
        return Err(super::signatures::refusal(path, what));
    }
    Ok(Format::Raw)
}

/// Opens `path` as a raw disk whatever its content (`--input-format raw`), or probes it.
pub fn open_image_as(path: &Path, raw: bool, opts: &OpenOptions) -> Result<Box<dyn DiskImage>> {
    if raw {
        return Ok(Box::new(super::raw::RawImage::open(path)?));
    }
    open_image(path, opts)
}

/// Opens an image of any format, following differencing parents.
pub fn open_image(path: &Path, opts: &OpenOptions) -> Result<Box<dyn DiskImage>> {
    open_image_at_depth(path, opts, 0)
}

/// [`open_image`] at a given depth of a parent chain (used by differencing backends).
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
    match probe_format(path)? {
        Format::Raw => Ok(Box::new(super::raw::RawImage::open(path)?)),
        Format::Vhd => crate::vhd::open(path, opts, depth),
        Format::Vhdx => crate::vhdx::open(path, opts, depth),
        Format::Qcow2 => {
            // A backing file is probed like any input, unless the image names its format raw.
            let backing = |p: &Path, fmt: Option<&str>, d: u32| -> Result<Box<dyn DiskImage>> {
                if fmt == Some("raw") {
                    return Ok(Box::new(super::raw::RawImage::open(p)?));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("a.vhd");
        std::fs::write(&raw, vec![0u8; 4096]).unwrap();
        assert_eq!(probe_format(&raw).unwrap(), Format::Raw);
        let mut fixed = vec![0u8; 4096 + 512];
        fixed[4096..4104].copy_from_slice(b"conectix");
        let p = dir.path().join("b.raw");
        std::fs::write(&p, &fixed).unwrap();
        assert_eq!(probe_format(&p).unwrap(), Format::Vhd);
        let mut x = vec![0u8; 4096];
        x[..8].copy_from_slice(b"vhdxfile");
        std::fs::write(&p, &x).unwrap();
        assert_eq!(probe_format(&p).unwrap(), Format::Vhdx);
        let tiny = dir.path().join("t");
        std::fs::write(&tiny, b"abc").unwrap();
        assert_eq!(probe_format(&tiny).unwrap(), Format::Raw);
    }
}
