//! qcow2 (QEMU copy-on-write, versions 2 and 3): reader as a [`crate::disk::DiskImage`]
//! (compressed clusters, zero flag, backing chains through a callback) and a one-pass sparse
//! writer (optionally compressed in parallel).
//!
//! Spec: qemu `docs/interop/qcow2.rst`. Structures in [`layout`], reader in [`image`],
//! writer in [`writer`].

pub mod image;
pub mod layout;
pub mod writer;

pub use image::{OpenBacking, Qcow2Image, Qcow2Stats};
pub use writer::{Qcow2WriteOptions, write};
