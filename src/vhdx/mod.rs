//! VHDX (MS-VHDX v1.0): reader (dynamic, fixed, differencing; pending logs replayed in memory on
//! request) and writer (dynamic and fixed).
//!
//! Pure parsers and encoders of the on-disk structures live in [`format`](mod@format), the log in [`log`],
//! the reader in [`image`], the writer in [`writer`].

pub mod bat;
pub mod format;
pub mod image;
pub mod layout;
pub mod log;
pub mod writer;

use crate::disk::{DiskImage, OpenOptions, ParentOpener};
use crate::error::Result;
use std::path::Path;

pub use image::{VhdxImage, open_rw};
pub use writer::write;

/// Opens the VHDX at `path` (`depth`: position in a differencing chain; a parent is opened
/// through `parents` at `depth + 1`).
pub fn open(
    path: &Path,
    opts: &OpenOptions,
    depth: u32,
    parents: &dyn ParentOpener,
) -> Result<Box<dyn DiskImage>> {
    Ok(Box::new(image::open_vhdx(path, opts, depth, parents)?))
}
