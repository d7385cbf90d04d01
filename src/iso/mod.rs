//! ISO 9660 (with Rock Ridge, Joliet and El Torito): reading, building, remastering.

// reading, inspection and remaster patching

// building from a tree
pub mod build;
