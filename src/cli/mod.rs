//! The `isotool` command line: argument parsing and rendering only; the work is in the library.

mod azure;
mod build;
mod disk;
mod iso;
mod launch;
mod pack;
mod progress;
mod provisioning;
mod remaster;

use clap::{Parser, Subcommand};
use isotool::error::Error;
use std::process::ExitCode;

/// Build installer ISOs, provisioning media, cloud-init seeds and VHD/VHDX disks.
#[derive(Debug, Parser)]
#[command(name = "isotool", version, about, propagate_version = true)]
pub struct Cli {
    /// No progress bars or notes on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Do not flush outputs to stable storage before renaming them into place (faster; a power
    /// loss soon after may leave an incomplete file, as with qemu-img's or genisoimage's defaults).
    #[arg(long, global = true)]
    pub no_sync: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert a disk image between raw, VHD and VHDX (input format probed from content).
    Convert(disk::ConvertArgs),
    /// Disk images: create.
    #[command(subcommand)]
    Disk(disk::DiskCommand),
    /// Describe a disk image: format, sizes, creator, parent chain, partitions.
    Info(disk::InfoArgs),
    /// Check a disk image against a target platform (azure, hyperv-gen1, hyperv-gen2).
    Validate(disk::ValidateArgs),
    /// Package a disk for a provider: OVA, GCP image tar.gz, Vagrant box (libvirt, VirtualBox).
    Pack(pack::PackArgs),
    // ISO commands
    /// Inspect ISO 9660 images: ls, extract, info.
    #[command(subcommand)]
    Iso(iso::IsoCommand),
    /// Make a stock installer ISO unattended (preseed / kickstart), keeping its boot records.
    Remaster(remaster::RemasterArgs),
    // provisioning and cloud-init commands
    /// Build the provisioning DVD (Rock Ridge + Joliet) from a checked config tree.
    ProvisioningCd(provisioning::ProvisioningCdArgs),
    /// Build a NoCloud seed (cidata ISO or FAT), or Azure custom data from a config tree.
    CloudInitSeed(provisioning::CloudInitSeedArgs),
    /// Boot the artifacts (qemu here; PowerShell for Hyper-V) and wait for the guest to power off.
    #[command(subcommand)]
    Launch(launch::LaunchCommand),
    /// Run a build file: remaster, media, install in a VM, convert per provider, SHA256SUMS.
    Build(build::BuildArgs),
    /// Azure: upload a disk as a page blob, create an image (VMs: `launch azure`).
    #[command(subcommand)]
    Azure(azure::AzureCommand),
}

/// What a subcommand returns: success, or an exit code with nothing more to print.
pub(crate) enum Outcome {
    Ok,
    Exit(u8),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = cli.quiet;
    // Outputs are synced before their rename unless --no-sync: passed to each command.
    let sync = !cli.no_sync;
    let result = match cli.command {
        Command::Convert(a) => disk::convert(a, quiet, sync),
        Command::Disk(c) => disk::disk(c, quiet, sync),
        Command::Info(a) => disk::info(a),
        Command::Validate(a) => disk::validate(a),
        Command::Pack(a) => pack::pack(a, quiet, sync),
        // ISO commands
        Command::Iso(c) => iso::iso(c, sync),
        Command::Remaster(a) => remaster::remaster(a, quiet, sync),
        // provisioning and cloud-init commands
        Command::ProvisioningCd(a) => provisioning::provisioning_cd(a, quiet, sync),
        Command::CloudInitSeed(a) => provisioning::cloud_init_seed(a, quiet, sync),
        Command::Launch(c) => launch::launch(c, quiet),
        Command::Build(a) => build::build(a, quiet),
        Command::Azure(c) => azure::azure(c, quiet),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Exit(n)) => ExitCode::from(n),
        Err(e) => {
            report_error(&e);
            ExitCode::from(1)
        }
    }
}

fn report_error(e: &Error) {
    eprintln!("isotool: error: {e}");
}

/// Prints JSON to stdout.
pub(crate) fn print_json(v: &impl serde::Serialize) -> isotool::Result<()> {
    let s =
        serde_json::to_string_pretty(v).map_err(|e| isotool::err!(Io, "rendering JSON: {e}"))?;
    println!("{s}");
    Ok(())
}

/// Human-readable byte counts (binary units).
pub(crate) fn human_bytes(n: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", U[i])
    }
}
