//! VMDK (VMware virtual disk): hosted sparse extents read as a [`crate::disk::DiskImage`]
//! (monolithicSparse, streamOptimized) and streamOptimized written in VMware's layout.
//!
//! Spec: VMware "Virtual Disk Format 5.0" technote. Structures in [`layout`], reader in
//! [`image`], writer in [`writer`].

pub mod image;
pub mod layout;
pub mod writer;

pub use image::VmdkImage;
pub use writer::write_stream_optimized;
