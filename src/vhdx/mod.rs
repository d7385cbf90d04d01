//! vhdx (placeholder until the vhdx module lands).
use crate::context::BuildContext;
use crate::disk::convert::WriteOptions;
use crate::disk::probe::OpenOptions;
use crate::disk::{DiskImage, Progress};
use crate::error::Result;
use std::fs::File;
use std::path::Path;

/// Opens an image.
pub fn open(path: &Path, _opts: &OpenOptions, _depth: u32) -> Result<Box<dyn DiskImage>> {
    Err(crate::err!(Unsupported, "vhdx reading is not built yet").with_path(path))
}

/// Writes an image.
pub fn write(
    _src: &dyn DiskImage,
    _out: &File,
    out_path: &Path,
    _variant: bool,
    _opts: &WriteOptions,
    _ctx: &BuildContext,
    _progress: &dyn Progress,
) -> Result<()> {
    Err(crate::err!(Unsupported, "vhdx writing is not built yet").with_path(out_path))
}
