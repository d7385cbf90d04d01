//! The integration tests, one crate: a module per area (each a former test binary), the
//! external oracles in [`oracle`], shared fixtures in [`boot`], [`iso_fixture`] and
//! [`prov_fixture`].
//!
//! Run one area with `cargo test --release --test it vhd_qemu::` (a module path filter).

// shared helpers
mod azure_common;
mod boot;
mod build_common;
mod e2e_common;
mod formats_common;
mod iso_fixture;
mod launch_common;
mod oracle;
mod prov_fixture;

// tests
mod azure_arm;
mod azure_json;
mod azure_upload;
mod boot_harness;
mod boot_remaster;
mod build_bad_files;
mod build_e2e;
mod build_layout;
mod build_plan;
mod cli_disk;
mod cli_json;
mod cli_probe;
mod cli_progress;
mod cli_ux;
mod cloudinit_seed;
mod e2e_install;
mod files_safety;
mod formats_cli;
mod fuzz;
mod hostile_parse;
mod iso_edge;
mod iso_fuzz;
mod iso_hadris;
mod iso_realdata;
mod iso_remaster_race;
mod launch_hyperv;
mod launch_qemu;
mod pack_oracle;
mod prov_broken;
mod prov_iso;
mod qcow2_bad_input;
mod qcow2_qemu;
mod remaster_thirdparty;
mod remaster_ubuntu;
mod vhd_bad_input;
mod vhd_qemu;
mod vhd_roundtrip;
mod vhd_thirdparty;
mod vhd_write_in_place;
mod vhdx_bad_input;
mod vhdx_log;
mod vhdx_memory;
mod vhdx_qemu;
mod vhdx_roundtrip;
mod vhdx_write_in_place;
mod vmdk_qemu;
