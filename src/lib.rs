//! isotool: build the artifacts of immutable Linux infrastructure in pure Rust.
//!
//! Installer ISOs remastered for unattended installs, provisioning DVDs, cloud-init seeds, and
//! raw / VHD / VHDX disks, without external tools. Every operation is a library function that
//! takes its options explicitly and returns values or an [`Error`]; the library never prints,
//! exits or reads a global. The `isotool` binary (`src/main.rs` + `src/cli/`, not part of this
//! library) parses arguments, draws progress, renders results and handles signals.
//!
//! Layers, bottom to top (a module only uses its own layer and those below; `.ci/check-arch`
//! checks it, and that no function outside tests is over 150 lines):
//! - core: [`error`] (stable codes, structured location), [`bytes`], [`date`], [`guid`],
//!   [`context`] (clock and ids), [`report`], [`output`] (atomic outputs), [`limits`] (every
//!   named parser limit, checked before the third-party parsers run);
//! - disks without formats: [`disk`] (the [`disk::DiskImage`] trait, raw and in-memory
//!   backends, the streaming helpers writers share, [`disk::ParentOpener`]), [`checksum`];
//! - partition tables and small filesystems: [`gpt`], [`fat`];
//! - one folder per on-disk format: [`vhd`], [`vhdx`], [`qcow2`], [`vmdk`], [`iso`], each with
//!   a `layout` module (every on-disk structure declared once, with a size assertion and its
//!   spec section), a reader (`image`) and a `writer`; a differencing disk opens its parent
//!   through the [`disk::ParentOpener`] it is given, never by naming the probe;
//! - what users ask of disks: [`image`] (probe, open with parent chains, convert, validate),
//!   [`pack`] (OVA, GCP, Vagrant);
//! - artifacts: [`remaster`], [`provisioning`], [`cloudinit`];
//! - running and shipping: [`launch`] (qemu, Hyper-V), [`azure`], [`build`] (the build file,
//!   plan and pipeline).
#![warn(missing_docs)]

pub mod azure;
pub mod bytes;
pub mod checksum;
pub mod context;
pub mod date;
pub mod disk;
pub mod error;
pub mod guid;
pub mod limits;
pub mod output;
pub mod pack;
pub mod report;

// disk formats
pub mod gpt;
pub mod qcow2;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;

// what users ask of disks: probe, open, convert, validate
pub mod image;

// ISO 9660 and remastering
pub mod iso;
pub mod remaster;

// provisioning media and cloud-init
pub mod cloudinit;
pub mod fat;
pub mod provisioning;

// launchers (qemu, Hyper-V)
pub mod launch;

// the build pipeline
pub mod build;

pub use error::{Error, ErrorKind, Result};
