//! isotool: build the artifacts of immutable Linux infrastructure in pure Rust.
//!
//! Installer ISOs remastered for unattended installs, provisioning DVDs, cloud-init seeds, and
//! raw / VHD / VHDX disks, without external tools. Every operation is a library function; the
//! `isotool` binary only parses arguments and draws progress.
#![warn(missing_docs)]

pub mod bytes;
pub mod checksum;
pub mod cli;
pub mod context;
pub mod disk;
pub mod error;
pub mod output;
pub mod pack;
pub mod report;

// disk formats
pub mod gpt;
pub mod qcow2;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;

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
