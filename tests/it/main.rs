//! The integration tests, one crate: a module per area (each a former test binary), the
//! external oracles in [`oracle`], shared fixtures in [`boot`], [`iso_fixture`] and
//! [`prov_fixture`].
//!
//! Run one area with `cargo test --release --test it vhd_qemu::` (a module path filter).

// shared helpers
mod boot;
mod iso_fixture;
mod oracle;
mod prov_fixture;

// tests
mod boot_harness;
mod boot_remaster;
mod cli_disk;
mod cloudinit_seed;
mod fuzz;
mod iso_edge;
mod iso_fuzz;
mod prov_broken;
mod prov_iso;
mod remaster_thirdparty;
mod remaster_ubuntu;
mod vhd_bad_input;
mod vhd_qemu;
mod vhd_roundtrip;
mod vhd_thirdparty;
mod vhd_write_in_place;
mod vhdx_bad_input;
mod vhdx_log;
mod vhdx_qemu;
mod vhdx_roundtrip;
mod vhdx_write_in_place;
