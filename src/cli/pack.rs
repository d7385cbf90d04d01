//! `pack`: provider packages (OVA, GCP tar.gz, Vagrant boxes) from one disk.

use super::{Outcome, Ui, human_bytes, print_json, refuse_dash};
use clap::{Args, ValueEnum};
use isotool::context::BuildContext;
use isotool::disk::OpenOptions;
use isotool::error::Result;
use isotool::pack::{Firmware, PackOptions, Target};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ForArg {
    /// OVA (AWS import, VMware): OVF + manifest + streamOptimized VMDK.
    Ova,
    /// GCP: disk.raw (whole GiB) in a sparse GNU tar, gzip.
    Gcp,
    /// Vagrant box for libvirt (qcow2).
    VagrantLibvirt,
    /// Vagrant box for VirtualBox (OVF + VMDK).
    VagrantVirtualbox,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum FirmwareArg {
    Bios,
    Efi,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  isotool pack disk.vhdx --for ova -o disk.ova --name web --cpus 2 --memory 4096
  isotool pack disk.raw --for gcp -o disk.tar.gz
  isotool pack disk.qcow2 --for vagrant-libvirt -o web.box --firmware efi

Exit status: 0 written, 1 error (nothing left under the output's name), 2 bad command line.")]
pub(crate) struct PackArgs {
    /// The disk (raw, VHD, VHDX, qcow2, VMDK: recognised from its content).
    disk: PathBuf,
    /// The package to make.
    #[arg(long = "for", value_enum)]
    target: ForArg,
    /// Output file.
    #[arg(short, long)]
    output: PathBuf,
    /// Machine name (OVF, Vagrant); names of the files inside derive from it.
    #[arg(long, default_value = "disk")]
    name: String,
    /// Virtual CPUs (OVF, Vagrantfile).
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Memory in MiB (OVF, Vagrantfile).
    #[arg(long, default_value_t = 2048)]
    memory: u64,
    /// Firmware (OVF, Vagrantfile).
    #[arg(long, value_enum, default_value = "bios")]
    firmware: FirmwareArg,
    /// Take the disk as raw whatever its content.
    #[arg(long, value_name = "FORMAT", value_parser = ["raw"])]
    input_format: Option<String>,
    /// Replace an existing output.
    #[arg(long)]
    force: bool,
    /// Print the result as JSON (schema isotool/pack/1, see docs/json.md).
    #[arg(long)]
    json: bool,
}

pub(crate) fn pack(a: PackArgs, ui: Ui) -> Result<Outcome> {
    refuse_dash(&a.disk, "the disk")?;
    refuse_dash(&a.output, "the package")?;
    let sync = ui.sync;
    let ctx = BuildContext::from_env()?;
    let bars = super::progress::Bars::new(ui.hiding_bars(a.json));
    let raw = a.input_format.is_some();
    let src = isotool::image::open_image_as(&a.disk, raw, &OpenOptions::default())?;
    let target = match a.target {
        ForArg::Ova => Target::Ova,
        ForArg::Gcp => Target::Gcp,
        ForArg::VagrantLibvirt => Target::VagrantLibvirt,
        ForArg::VagrantVirtualbox => Target::VagrantVirtualbox,
    };
    let opts = PackOptions {
        name: a.name,
        cpus: a.cpus,
        memory_mib: a.memory,
        firmware: match a.firmware {
            FirmwareArg::Bios => Firmware::Bios,
            FirmwareArg::Efi => Firmware::Efi,
        },
        force: a.force,
        sync,
    };
    let r = isotool::pack::pack(&*src, &a.disk, &a.output, target, &opts, &ctx, &bars)?;
    if a.json {
        print_json(&super::json::Pack::new(&a.disk, &r))?;
        return Ok(Outcome::Ok);
    }
    // A summary, like convert's and disk create's: -q hides it.
    ui.summary(format_args!(
        "{} -> {} (virtual size {}, {} of data)",
        a.disk.display(),
        r.output.display(),
        human_bytes(r.virtual_size),
        human_bytes(r.data_bytes)
    ));
    for (name, size) in &r.members {
        ui.summary(format_args!("  {name}  {size} bytes"));
    }
    Ok(Outcome::Ok)
}
