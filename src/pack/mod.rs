//! Provider packages from one disk: OVA (AWS, VMware), GCP's `disk.raw` tar.gz, Vagrant boxes
//! (libvirt, VirtualBox). Every output is written through [`AtomicOutput`]; intermediate disks
//! go to temporary files beside the output that are removed whatever happens.
//!
//! The library entry points ([`ova`], [`gcp`], [`vagrant_libvirt`], [`vagrant_virtualbox`])
//! take an opened [`DiskImage`], so `isotool build` providers call them directly.

pub mod gnutar;
pub mod ovf;
pub mod pgzip;
pub mod read;

pub use ovf::Firmware;

use crate::checksum::{sha256_file, sha256_hex};
use crate::context::BuildContext;
use crate::disk::stream::{EXTENT_WINDOW, Padded, data_bytes};
use crate::disk::{DiskImage, ExtentKind, Progress, for_each_extent};
use crate::err;
use crate::error::{IoContext, Result};
use crate::output::{AtomicOutput, OutputOptions};
use gnutar::TarWriter;
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// GiB: GCP images are a whole number of GiB.
pub const GIB: u64 = 1 << 30;

/// What to pack for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// OVA: tar of OVF descriptor, manifest, streamOptimized VMDK (AWS import, VMware).
    Ova,
    /// GCP: `disk.raw` (whole GiB) in a sparse GNU tar, gzip.
    Gcp,
    /// Vagrant box for the libvirt provider (qcow2).
    VagrantLibvirt,
    /// Vagrant box for the VirtualBox provider (OVF + VMDK).
    VagrantVirtualbox,
}

impl Target {
    /// Parses the command-line name.
    pub fn parse(s: &str) -> Result<Target> {
        Ok(match s {
            "ova" => Target::Ova,
            "gcp" => Target::Gcp,
            "vagrant-libvirt" => Target::VagrantLibvirt,
            "vagrant-virtualbox" => Target::VagrantVirtualbox,
            _ => {
                return Err(err!(
                    InvalidArgument,
                    "unknown package {s:?} (expected ova, gcp, vagrant-libvirt, vagrant-virtualbox)"
                ));
            }
        })
    }
}

/// How to pack.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// Machine name (OVF, Vagrant); file names inside the package derive from it.
    pub name: String,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Firmware.
    pub firmware: Firmware,
    /// Replace an existing output.
    pub force: bool,
    /// Sync the output before renaming it into place.
    pub sync: bool,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            name: "disk".into(),
            cpus: 2,
            memory_mib: 2048,
            firmware: Firmware::Bios,
            force: false,
            sync: true,
        }
    }
}

/// What was packed.
#[derive(Debug, Clone, Serialize)]
pub struct PackReport {
    /// The package.
    pub output: PathBuf,
    /// For what.
    pub target: Target,
    /// Members in archive order: (name, size in bytes).
    pub members: Vec<(String, u64)>,
    /// Virtual size of the packed disk.
    pub virtual_size: u64,
    /// Bytes of data in the disk.
    pub data_bytes: u64,
}

/// Packs `src` (read from `input`, which the output may not be) for `target` into `output`.
pub fn pack(
    src: &dyn DiskImage,
    input: &Path,
    output: &Path,
    target: Target,
    opts: &PackOptions,
    ctx: &BuildContext,
    progress: &dyn Progress,
) -> Result<PackReport> {
    if opts.name.is_empty()
        || opts.name.len() > 64
        || !opts
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(err!(
            InvalidArgument,
            "package name {:?}: 1-64 of A-Z a-z 0-9 - _ .",
            opts.name
        ));
    }
    match target {
        Target::Ova => ova(src, input, output, opts, ctx, progress),
        Target::Gcp => gcp(src, input, output, opts, ctx, progress),
        Target::VagrantLibvirt => vagrant_libvirt(src, input, output, opts, ctx, progress),
        Target::VagrantVirtualbox => vagrant_virtualbox(src, input, output, opts, ctx, progress),
    }
}

fn final_output(output: &Path, input: &Path, opts: &PackOptions) -> Result<AtomicOutput> {
    AtomicOutput::create(
        output,
        &[input],
        OutputOptions {
            force: opts.force,
            mode: 0o644,
            sync: opts.sync,
            exact: false,
        },
    )
}

/// A temporary file beside `output` (removed when dropped; never renamed into place).
fn scratch(output: &Path, what: &str) -> Result<AtomicOutput> {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let p = output.with_file_name(format!(".{name}.{what}.scratch"));
    AtomicOutput::create(
        &p,
        &[],
        OutputOptions {
            force: true,
            mode: 0o600,
            sync: false,
            exact: false,
        },
    )
}

fn rewind(f: &File, path: &Path) -> Result<File> {
    let mut g = f.try_clone().ctx(path, "reopening a temporary file")?;
    g.seek(SeekFrom::Start(0))
        .ctx(path, "rewinding a temporary file")?;
    Ok(g)
}

fn file_len(f: &File, path: &Path) -> Result<u64> {
    Ok(f.metadata().ctx(path, "reading metadata")?.len())
}

/// A streamOptimized VMDK of `src` in a scratch file, and its OVF descriptor.
fn vmdk_and_ovf(
    src: &dyn DiskImage,
    output: &Path,
    disk_name: &str,
    opts: &PackOptions,
    ctx: &BuildContext,
    progress: &dyn Progress,
) -> Result<(AtomicOutput, u64, String)> {
    let tmp = scratch(output, "vmdk")?;
    // Errors name the package asked for, not the scratch file.
    crate::vmdk::write_stream_optimized(src, tmp.file(), output, disk_name, ctx, progress)?;
    let size = file_len(tmp.file(), tmp.tmp_path())?;
    let ovf = ovf::descriptor(&ovf::OvfParams {
        name: &opts.name,
        disk_file: disk_name,
        disk_file_size: size,
        capacity: src.len().div_ceil(512) * 512,
        populated: data_bytes(src)?,
        cpus: opts.cpus,
        memory_mib: opts.memory_mib,
        firmware: opts.firmware,
    });
    Ok((tmp, size, ovf))
}

/// OVA: USTAR tar with `NAME.ovf`, then `NAME.mf` (`SHA256(file)= hex`), then the VMDK.
pub fn ova(
    src: &dyn DiskImage,
    input: &Path,
    output: &Path,
    opts: &PackOptions,
    ctx: &BuildContext,
    progress: &dyn Progress,
) -> Result<PackReport> {
    let out = final_output(output, input, opts)?;
    let disk_name = format!("{}-disk1.vmdk", opts.name);
    let (tmp, vsize, ovf) = vmdk_and_ovf(src, output, &disk_name, opts, ctx, progress)?;
    let ovf_name = format!("{}.ovf", opts.name);
    let mf_name = format!("{}.mf", opts.name);
    let mf = format!(
        "SHA256({ovf_name})= {}\nSHA256({disk_name})= {}\n",
        sha256_hex(ovf.as_bytes()),
        sha256_file(tmp.file(), tmp.tmp_path())?
    );
    let mut t = TarWriter::new(BufWriter::with_capacity(1 << 20, out.file()), ctx.now());
    t.file(&ovf_name, ovf.len() as u64, &mut ovf.as_bytes())?;
    t.file(&mf_name, mf.len() as u64, &mut mf.as_bytes())?;
    t.file(&disk_name, vsize, &mut rewind(tmp.file(), tmp.tmp_path())?)?;
    t.finish()?;
    let members = vec![
        (ovf_name, ovf.len() as u64),
        (mf_name, mf.len() as u64),
        (disk_name, vsize),
    ];
    done(out, Target::Ova, members, src)
}

fn done(
    out: AtomicOutput,
    target: Target,
    members: Vec<(String, u64)>,
    src: &dyn DiskImage,
) -> Result<PackReport> {
    Ok(PackReport {
        output: out.commit()?,
        target,
        members,
        virtual_size: src.len(),
        data_bytes: data_bytes(src)?,
    })
}

/// GCP: `disk.raw` padded to a whole GiB, as a sparse GNU tar member, gzip (in parallel).
pub fn gcp(
    src: &dyn DiskImage,
    input: &Path,
    output: &Path,
    opts: &PackOptions,
    ctx: &BuildContext,
    progress: &dyn Progress,
) -> Result<PackReport> {
    let out = final_output(output, input, opts)?;
    let size = src.len().div_ceil(GIB).max(1) * GIB;
    let padded = Padded::new(src, size);
    let mut map: Vec<(u64, u64)> = Vec::new();
    for_each_extent(&padded, EXTENT_WINDOW, |e| {
        if e.kind == ExtentKind::Data {
            map.push((e.offset, e.len));
        }
        Ok(())
    })?;
    // GNU tar sizes the extracted file from the last segment: end on a zero-length one.
    map.push((size, 0));
    progress.start("packing disk.raw", map.iter().map(|m| m.1).sum());
    let gz = pgzip::ParallelGz::new(BufWriter::with_capacity(1 << 20, out.file()), 6);
    let mut t = TarWriter::new(gz, ctx.now());
    t.sparse("disk.raw", &map, size, &mut |o, buf| {
        padded.read_at(buf, o)?;
        progress.advance(buf.len() as u64);
        Ok(())
    })?;
    t.finish()?.finish()?;
    progress.finish();
    done(out, Target::Gcp, vec![("disk.raw".into(), size)], src)
}

fn vagrantfile(provider: &str, opts: &PackOptions) -> String {
    let fw = match (provider, opts.firmware) {
        ("libvirt", Firmware::Efi) => {
            "    p.loader = \"/usr/share/OVMF/OVMF_CODE.fd\"\n".to_string()
        }
        ("virtualbox", Firmware::Efi) => {
            "    p.customize [\"modifyvm\", :id, \"--firmware\", \"efi\"]\n".to_string()
        }
        _ => String::new(),
    };
    format!(
        "# Generated by isotool.\nVagrant.configure(\"2\") do |config|\n  config.vm.provider :{provider} do |p|\n    p.cpus = {}\n    p.memory = {}\n{fw}  end\nend\n",
        opts.cpus, opts.memory_mib
    )
}

/// Vagrant box for libvirt: `metadata.json`, `Vagrantfile`, `box.img` (qcow2), tar + gzip.
pub fn vagrant_libvirt(
    src: &dyn DiskImage,
    input: &Path,
    output: &Path,
    opts: &PackOptions,
    ctx: &BuildContext,
    progress: &dyn Progress,
) -> Result<PackReport> {
    let out = final_output(output, input, opts)?;
    let tmp = scratch(output, "qcow2")?;
    crate::qcow2::write(
        src,
        tmp.file(),
        output,
        &crate::qcow2::Qcow2WriteOptions::default(),
        progress,
    )?;
    let qsize = file_len(tmp.file(), tmp.tmp_path())?;
    let meta = serde_json::json!({
        "provider": "libvirt",
        "format": "qcow2",
        "virtual_size": src.len().div_ceil(GIB),
    })
    .to_string();
    let vf = vagrantfile("libvirt", opts);
    let gz = pgzip::ParallelGz::new(BufWriter::with_capacity(1 << 20, out.file()), 6);
    let mut t = TarWriter::new(gz, ctx.now());
    t.file("metadata.json", meta.len() as u64, &mut meta.as_bytes())?;
    t.file("Vagrantfile", vf.len() as u64, &mut vf.as_bytes())?;
    t.file("box.img", qsize, &mut rewind(tmp.file(), tmp.tmp_path())?)?;
    t.finish()?.finish()?;
    let members = vec![
        ("metadata.json".into(), meta.len() as u64),
        ("Vagrantfile".into(), vf.len() as u64),
        ("box.img".into(), qsize),
    ];
    done(out, Target::VagrantLibvirt, members, src)
}

/// Vagrant box for VirtualBox: `metadata.json`, `Vagrantfile`, `box.ovf`, the VMDK; tar + gzip.
pub fn vagrant_virtualbox(
    src: &dyn DiskImage,
    input: &Path,
    output: &Path,
    opts: &PackOptions,
    ctx: &BuildContext,
    progress: &dyn Progress,
) -> Result<PackReport> {
    let out = final_output(output, input, opts)?;
    let disk_name = "box-disk001.vmdk";
    let (tmp, vsize, ovf) = vmdk_and_ovf(src, output, disk_name, opts, ctx, progress)?;
    let meta = serde_json::json!({ "provider": "virtualbox" }).to_string();
    let vf = vagrantfile("virtualbox", opts);
    let gz = pgzip::ParallelGz::new(BufWriter::with_capacity(1 << 20, out.file()), 6);
    let mut t = TarWriter::new(gz, ctx.now());
    t.file("metadata.json", meta.len() as u64, &mut meta.as_bytes())?;
    t.file("Vagrantfile", vf.len() as u64, &mut vf.as_bytes())?;
    t.file("box.ovf", ovf.len() as u64, &mut ovf.as_bytes())?;
    t.file(disk_name, vsize, &mut rewind(tmp.file(), tmp.tmp_path())?)?;
    t.finish()?.finish()?;
    let members = vec![
        ("metadata.json".into(), meta.len() as u64),
        ("Vagrantfile".into(), vf.len() as u64),
        ("box.ovf".into(), ovf.len() as u64),
        (disk_name.into(), vsize),
    ];
    done(out, Target::VagrantVirtualbox, members, src)
}
