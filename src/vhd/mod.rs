//! VHD (Virtual Hard Disk, the Virtual PC / Hyper-V format): fixed, dynamic and differencing.
//!
//! - [`footer`]: the 512-byte footer (`conectix`) and CHS geometry (pure parse / encode).
//! - [`header`]: the dynamic disk header (`cxsparse`) and parent locators (pure parse / encode).
//! - [`mod@read`]: [`DiskImage`] backends, with every size and BAT entry checked against the file
//!   before anything is allocated or read.
//! - [`mod@write`]: streaming, sparse writers for fixed and dynamic disks.

pub mod footer;
pub mod header;
pub mod read;
pub mod write;

use crate::context::BuildContext;
use crate::disk::convert::WriteOptions;
use crate::disk::probe::OpenOptions;
use crate::disk::{DiskImage, Progress};
use crate::error::Result;
use std::fs::File;
use std::path::Path;

pub use footer::{DiskType, Footer, Geometry};
pub use header::{DynHeader, ParentLocator};

/// Opens a VHD image (fixed, dynamic or differencing). Parents of differencing disks are
/// opened through [`crate::disk::probe::open_image_at_depth`] at `depth + 1`.
pub fn open(path: &Path, opts: &OpenOptions, depth: u32) -> Result<Box<dyn DiskImage>> {
    read::open(path, opts, depth)
}

/// Opens a fixed or dynamic VHD for in-place writes (see [`read::open_rw`]).
pub fn open_rw(path: &Path) -> Result<Box<dyn crate::disk::DiskImageMut>> {
    read::open_rw(path)
}

/// Writes `src` into `out` (an empty file) as a dynamic (`dynamic == true`) or fixed VHD.
pub fn write(
    src: &dyn DiskImage,
    out: &File,
    out_path: &Path,
    dynamic: bool,
    opts: &WriteOptions,
    ctx: &BuildContext,
    progress: &dyn Progress,
) -> Result<()> {
    write::write(src, out, out_path, dynamic, opts, ctx, progress)
}
