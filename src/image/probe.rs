//! Recognises a disk image's format from its content (never from its name) and opens it.

use crate::error::{IoContext, Result};
use serde::Serialize;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

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
    if let Some(what) = crate::disk::signatures::unsupported(f, len, path)? {
        return Err(crate::disk::signatures::refusal(path, what));
    }
    Ok(Format::Raw)
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
