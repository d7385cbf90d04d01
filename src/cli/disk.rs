//! `convert`, `disk create`, `info`, `validate`.

use super::{Outcome, human_bytes, print_json};
use clap::{Args, Subcommand};
use isotool::context::BuildContext;
use isotool::disk::OpenOptions;
use isotool::error::Result;
use isotool::image::convert::{self, ConvertOptions, TargetFormat, WriteOptions, parse_size};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub(crate) struct WriteArgs {
    /// Block size of dynamic formats (VHD: 512K-..., default 2M; VHDX: 1M-256M, default 32M).
    #[arg(long, value_name = "SIZE")]
    block_size: Option<String>,
    /// VHDX logical sector size.
    #[arg(long, default_value_t = 512, value_parser = sector_size)]
    logical_sector_size: u32,
    /// VHDX physical sector size.
    #[arg(long, default_value_t = 4096, value_parser = sector_size)]
    physical_sector_size: u32,
}

fn sector_size(s: &str) -> std::result::Result<u32, String> {
    match s {
        "512" => Ok(512),
        "4096" | "4K" | "4k" => Ok(4096),
        _ => Err(format!("sector size must be 512 or 4096, not {s:?}")),
    }
}

impl WriteArgs {
    fn options(&self) -> Result<WriteOptions> {
        Ok(WriteOptions {
            block_size: self.block_size.as_deref().map(parse_size).transpose()?,
            logical_sector_size: self.logical_sector_size,
            physical_sector_size: self.physical_sector_size,
        })
    }
}

#[derive(Debug, Args)]
pub(crate) struct ConvertArgs {
    /// Input image (raw, VHD, VHDX, qcow2, VMDK: recognised from its content).
    input: PathBuf,
    /// Take the input as this format instead of probing it (only `raw`: for a disk whose
    /// content looks like an archive or a format isotool refuses).
    #[arg(long, value_name = "FORMAT", value_parser = ["raw"])]
    input_format: Option<String>,
    /// qcow2: deflate-compress clusters (in parallel on every core).
    #[arg(long)]
    compress: bool,
    /// Output image.
    output: PathBuf,
    /// Output format: raw, vhd (fixed), vhd-dynamic, vhdx (dynamic), vhdx-fixed, qcow2 (cluster
    /// size: --block-size, default 64K; --compress), vmdk (streamOptimized). Default: from the
    /// output's extension (.vhdx, .vhd, .raw/.img, .qcow2, .vmdk); with --azure, vhd.
    #[arg(long = "to", value_name = "FORMAT")]
    to: Option<String>,
    #[command(flatten)]
    write: WriteArgs,
    /// Produce what Azure accepts: fixed VHD, virtual size rounded up to a whole MiB.
    #[arg(long)]
    azure: bool,
    /// Print the SHA-256 of the output.
    #[arg(long)]
    sha256: bool,
    /// Replace an existing output.
    #[arg(long)]
    force: bool,
    /// Apply a VHDX's pending log in memory while reading (the input is not modified).
    #[arg(long)]
    replay_log: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn convert(a: ConvertArgs, quiet: bool, sync: bool) -> Result<Outcome> {
    let ctx = BuildContext::from_env()?;
    let bars = super::progress::Bars::new(quiet || a.json);
    let format = match (&a.to, a.azure) {
            (Some(t), _) => TargetFormat::parse(t)?,
            (None, true) => TargetFormat::Vhd,
            (None, false) => TargetFormat::from_extension(&a.output).ok_or_else(|| {
                isotool::err!(
                    InvalidArgument,
                    "give the output format with --to (raw, vhd, vhd-dynamic, vhdx, vhdx-fixed, qcow2, vmdk): {} has no known extension",
                    a.output.display()
                )
            })?,
    };
    let format = match (format, a.compress) {
        (TargetFormat::Qcow2, true) => TargetFormat::Qcow2Compressed,
        (f, false) => f,
        (f, true) if f == TargetFormat::Qcow2Compressed || f == TargetFormat::Vmdk => f,
        (f, true) => {
            return Err(isotool::err!(
                InvalidArgument,
                "--compress applies to qcow2 (VMDK grains are always compressed), not {}",
                f.name()
            ));
        }
    };
    let opts = ConvertOptions {
        format,
        write: a.write.options()?,
        azure: a.azure,
        sha256: a.sha256,
        force: a.force,
        open: OpenOptions {
            replay_log: a.replay_log,
        },
        sync,
    };
    let r = convert::convert_input(
        &a.input,
        a.input_format.is_some(),
        &a.output,
        &opts,
        &ctx,
        &bars,
    )?;
    if a.json {
        print_json(&r)?;
    } else {
        println!(
            "{} -> {} ({}, virtual size {} = {} bytes, {} of data)",
            a.input.display(),
            r.output.display(),
            r.format.name(),
            human_bytes(r.virtual_size),
            r.virtual_size,
            human_bytes(r.data_bytes)
        );
        if r.virtual_size != r.input_size {
            println!(
                "virtual size rounded up from {} to {} bytes ({} MiB) for Azure",
                r.input_size,
                r.virtual_size,
                r.virtual_size >> 20
            );
        }
        if let Some(h) = &r.sha256 {
            println!("{h}  {}", r.output.display());
        }
    }
    Ok(Outcome::Ok)
}

#[derive(Debug, Subcommand)]
pub(crate) enum DiskCommand {
    /// Create an empty disk image.
    Create(CreateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Output image.
    output: PathBuf,
    /// Virtual size (e.g. 40G, 512M).
    #[arg(long)]
    size: String,
    /// Format: vhdx (dynamic), vhdx-fixed, vhd (fixed), vhd-dynamic, raw.
    #[arg(long, default_value = "vhdx")]
    format: String,
    #[command(flatten)]
    write: WriteArgs,
    /// Print the SHA-256 of the output.
    #[arg(long)]
    sha256: bool,
    /// Replace an existing output.
    #[arg(long)]
    force: bool,
}

pub(crate) fn disk(c: DiskCommand, quiet: bool, sync: bool) -> Result<Outcome> {
    match c {
        DiskCommand::Create(a) => {
            let ctx = BuildContext::from_env()?;
            let bars = super::progress::Bars::new(quiet);
            let size = parse_size(&a.size)?;
            let format = TargetFormat::parse(&a.format)?;
            let opts = convert::CreateOptions {
                size,
                format,
                write: a.write.options()?,
                force: a.force,
                sha256: a.sha256,
                sync,
            };
            let (p, h) = convert::create(&a.output, &opts, &ctx, &bars)?;
            println!(
                "created {} ({}, {} = {} bytes)",
                p.display(),
                format.name(),
                human_bytes(size),
                size
            );
            if let Some(h) = h {
                println!("{h}  {}", p.display());
            }
            Ok(Outcome::Ok)
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    /// Image to describe.
    image: PathBuf,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
    /// Apply a VHDX's pending log in memory while reading.
    #[arg(long)]
    replay_log: bool,
}

pub(crate) fn info(a: InfoArgs) -> Result<Outcome> {
    let img = isotool::image::open_image(
        &a.image,
        &OpenOptions {
            replay_log: a.replay_log,
        },
    )?;
    let i = img.info();
    let parts = isotool::gpt::inspect(&*img)?;
    if a.json {
        print_json(
            &serde_json::json!({ "image": a.image.display().to_string(), "info": i, "partitions": parts }),
        )?;
        return Ok(Outcome::Ok);
    }
    println!("image:           {}", a.image.display());
    println!("format:          {}", i.format);
    println!(
        "virtual size:    {} ({} bytes)",
        human_bytes(i.virtual_size),
        i.virtual_size
    );
    println!(
        "file size:       {} ({} bytes)",
        human_bytes(i.file_size),
        i.file_size
    );
    if let Some(al) = i.allocated {
        println!("allocated:       {} ({} bytes)", human_bytes(al), al);
    }
    if let Some(bs) = i.block_size {
        println!("block size:      {}", human_bytes(bs));
    }
    println!(
        "sector sizes:    {} logical, {} physical",
        i.logical_sector_size, i.physical_sector_size
    );
    if let Some(c) = &i.creator {
        println!("creator:         {c}");
    }
    if let Some(id) = &i.disk_id {
        println!("disk id:         {id}");
    }
    if let Some((c, h, s)) = i.geometry {
        println!(
            "CHS geometry:    {c}/{h}/{s} ({} bytes)",
            c as u64 * h as u64 * s as u64 * 512
        );
    }
    for (n, p) in i.parents.iter().enumerate() {
        println!("parent {}:        {p}", n + 1);
    }
    for n in &i.notes {
        println!("note:            {n}");
    }
    print_partitions(&parts);
    Ok(Outcome::Ok)
}

/// The partition table found in an image, as text.
fn print_partitions(parts: &isotool::gpt::PartitionTables) {
    let table = if !parts.gpt.is_empty() {
        format!(
            "GPT ({}-byte sectors)",
            parts.gpt_sector_size.unwrap_or(512)
        )
    } else if parts.mbr_present {
        "MBR".to_string()
    } else {
        "none found".to_string()
    };
    println!("partition table: {table}");
    let list = parts.partitions();
    if !list.is_empty() {
        println!(
            "  {:>3}  {:<28} {:>14} {:>12}  name",
            "#", "type", "start", "size"
        );
        for p in list {
            println!(
                "  {:>3}  {:<28} {:>14} {:>12}  {}{}",
                p.index,
                p.type_name,
                p.start,
                human_bytes(p.size),
                p.name,
                if p.bootable { " (bootable)" } else { "" }
            );
        }
    }
    for pr in &parts.problems {
        println!("problem:         {pr}");
    }
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Image to check.
    image: PathBuf,
    /// Target platform: azure, hyperv-gen1, hyperv-gen2.
    #[arg(long = "for", value_name = "TARGET")]
    target: String,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
    /// Apply a VHDX's pending log in memory while reading.
    #[arg(long)]
    replay_log: bool,
}

/// Exit status of `validate` when something blocks the target.
pub(crate) const EXIT_BLOCKED: u8 = 3;

pub(crate) fn validate(a: ValidateArgs) -> Result<Outcome> {
    use isotool::image::validate::{Target, validate};
    let target = Target::parse(&a.target)?;
    let v = validate(
        &a.image,
        target,
        &OpenOptions {
            replay_log: a.replay_log,
        },
    );
    if a.json {
        print_json(&v)?;
    } else {
        for f in &v.findings {
            println!("{f}");
        }
        let errors = v
            .findings
            .iter()
            .filter(|f| f.severity == isotool::report::Severity::Error)
            .count();
        let warnings = v
            .findings
            .iter()
            .filter(|f| f.severity == isotool::report::Severity::Warning)
            .count();
        println!(
            "{}: {} for {}: {errors} error(s), {warnings} warning(s)",
            a.image.display(),
            if v.ok { "OK" } else { "BLOCKED" },
            a.target
        );
    }
    Ok(if v.ok {
        Outcome::Ok
    } else {
        Outcome::Exit(EXIT_BLOCKED)
    })
}
