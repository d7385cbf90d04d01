//! ISO 9660 (with Rock Ridge, Joliet and El Torito): reading, building, remastering.

// reading, inspection and remaster patching
pub mod boot;
pub mod info;
pub mod patch;
pub mod read;

// building from a tree
pub mod build;
