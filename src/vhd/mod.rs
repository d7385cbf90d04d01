//! VHD (Virtual Hard Disk, the Virtual PC / Hyper-V format): fixed, dynamic and differencing.
//!
//! - [`footer`]: the 512-byte footer (`conectix`) and CHS geometry (pure parse / encode).
//! - [`header`]: the dynamic disk header (`cxsparse`) and parent locators (pure parse / encode).
//! - [`layout`]: the dynamic disk header's byte layout (struct, size assertion, spec section).
//! - [`mod@read`]: [`DiskImage`] backends, with every size and BAT entry checked against the file
//!   before anything is allocated or read.
//! - [`mod@write`]: streaming, sparse writers for fixed and dynamic disks.

pub mod footer;
pub mod header;
pub mod layout;
pub mod read;
pub mod write;

use crate::disk::{DiskImage, ParentOpener};
use crate::error::Result;
use std::path::Path;

pub use footer::{DiskType, Footer, Geometry};
pub use header::{DynHeader, ParentLocator};
pub use write::write;

/// Opens a VHD image (fixed, dynamic or differencing). Parents of differencing disks are
/// opened through `parents` at `depth + 1`.
pub fn open(path: &Path, depth: u32, parents: &dyn ParentOpener) -> Result<Box<dyn DiskImage>> {
    read::open(path, depth, parents)
}

/// Opens a fixed or dynamic VHD for in-place writes (see [`read::open_rw`]).
pub fn open_rw(path: &Path) -> Result<Box<dyn crate::disk::DiskImageMut>> {
    read::open_rw(path)
}
