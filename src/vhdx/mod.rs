//! VHDX (MS-VHDX v1.0): reader (dynamic, fixed, differencing; pending logs replayed in memory on
//! request) and writer (dynamic and fixed).
//!
//! Pure parsers and encoders of the on-disk structures live in [`format`], the log in [`log`],
//! the reader in [`image`], the writer in [`writer`].

pub mod format;
pub mod image;
pub mod log;
pub mod writer;

use crate::context::BuildContext;
use crate::disk::convert::WriteOptions;
use crate::disk::probe::OpenOptions;
use crate::disk::{DiskImage, Progress};
use crate::error::Result;
use std::fs::File;
use std::path::Path;

pub use image::{VhdxImage, open_rw};

/// Opens the VHDX at `path` (`depth`: position in a differencing chain).
pub fn open(path: &Path, opts: &OpenOptions, depth: u32) -> Result<Box<dyn DiskImage>> {
    Ok(Box::new(image::open_vhdx(path, opts, depth)?))
}

/// Writes `src` as a VHDX (fixed when `fixed`) into `out`, an empty file.
pub fn write(
    src: &dyn DiskImage,
    out: &File,
    out_path: &Path,
    fixed: bool,
    opts: &WriteOptions,
    ctx: &BuildContext,
    progress: &dyn Progress,
) -> Result<()> {
    writer::write(src, out, out_path, fixed, opts, ctx, progress)
}
