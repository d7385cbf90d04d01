//! VHD (Virtual Hard Disk, the Virtual PC / Hyper-V format): fixed, dynamic and differencing.
//!
//! - [`footer`]: the 512-byte footer (`conectix`) and CHS geometry (pure parse / encode).
//! - [`header`]: the dynamic disk header (`cxsparse`) and parent locators (pure parse / encode).
//! - [`layout`]: the footer's and the dynamic disk header's byte layouts (structs, size
//!   assertions, spec sections), declared once.
//! - [`image`]: [`DiskImage`] backends (read), with every size and BAT entry checked against the
//!   file before anything is allocated or read.
//! - [`writer`]: streaming, sparse writers for fixed and dynamic disks.

pub mod footer;
pub mod header;
pub mod image;
pub mod layout;
pub mod writer;

use crate::disk::{DiskImage, ParentOpener};
use crate::error::Result;
use std::path::Path;

pub use footer::{DiskType, Footer, Geometry};
pub use header::{DynHeader, ParentLocator};
pub use writer::write;

/// Opens a VHD image (fixed, dynamic or differencing). Parents of differencing disks are
/// opened through `parents` at `depth + 1`.
pub fn open(path: &Path, depth: u32, parents: &dyn ParentOpener) -> Result<Box<dyn DiskImage>> {
    image::open(path, depth, parents)
}

/// Opens a fixed or dynamic VHD for in-place writes (see [`image::open_rw`]).
pub fn open_rw(path: &Path) -> Result<Box<dyn crate::disk::DiskImageMut>> {
    image::open_rw(path)
}
