//! `convert`, `disk create`, `info`, `validate`.

use super::{Outcome, Ui, human_bytes, outln, print_json, refuse_dash};
use clap::{Args, Subcommand, ValueEnum};
use isotool::context::BuildContext;
use isotool::disk::OpenOptions;
use isotool::error::Result;
use isotool::image::convert::{self, ConvertOptions, TargetFormat, WriteOptions, parse_size};
use std::path::PathBuf;

/// An output format, named as `info` names image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FormatArg {
    /// Raw (sparse where the input is).
    Raw,
    /// Fixed VHD (Azure, Hyper-V Gen 1).
    #[value(alias = "vhd")]
    VhdFixed,
    /// Dynamic VHD.
    VhdDynamic,
    /// Dynamic VHDX (Hyper-V Gen 2).
    #[value(alias = "vhdx-dynamic")]
    Vhdx,
    /// Fixed VHDX.
    VhdxFixed,
    /// qcow2 v3 (cluster size: --block-size, default 64K; --compress).
    Qcow2,
    /// qcow2 v3 with deflate-compressed clusters.
    Qcow2Compressed,
    /// streamOptimized VMDK (VMware's layout).
    #[value(name = "vmdk-streamOptimized", alias = "vmdk", alias = "vmdk-stream")]
    VmdkStreamOptimized,
}

impl FormatArg {
    pub(crate) fn target(self) -> TargetFormat {
        match self {
            FormatArg::Raw => TargetFormat::Raw,
            FormatArg::VhdFixed => TargetFormat::Vhd,
            FormatArg::VhdDynamic => TargetFormat::VhdDynamic,
            FormatArg::Vhdx => TargetFormat::Vhdx,
            FormatArg::VhdxFixed => TargetFormat::VhdxFixed,
            FormatArg::Qcow2 => TargetFormat::Qcow2,
            FormatArg::Qcow2Compressed => TargetFormat::Qcow2Compressed,
            FormatArg::VmdkStreamOptimized => TargetFormat::Vmdk,
        }
    }
}

/// The name `info` gives a format we write (one vocabulary for info, convert and validate).
pub(crate) fn format_name(f: TargetFormat) -> &'static str {
    f.kind().as_str()
}

/// The output format: `--to`/`--format` when given (it must agree with a known extension
/// unless `force`), else the extension's.
fn pick_format(
    given: Option<FormatArg>,
    flag: &str,
    output: &std::path::Path,
    force: bool,
) -> Result<TargetFormat> {
    let ext = TargetFormat::from_extension(output);
    match (given.map(FormatArg::target), ext) {
        (Some(g), Some(e)) if !force && !same_family(g, e) => Err(isotool::err!(
            InvalidArgument,
            "{} is named like a {} image but {flag} asks for {}: rename the output, or add --force-format",
            output.display(),
            format_name(e),
            format_name(g)
        )),
        (Some(g), _) => Ok(g),
        (None, Some(e)) => Ok(e),
        (None, None) => Err(isotool::err!(
            InvalidArgument,
            "give the output format with {flag} (raw, vhd-fixed, vhd-dynamic, vhdx, vhdx-fixed, qcow2, vmdk-streamOptimized): {} has no known extension (.raw, .img, .vhd, .vhdx, .qcow2, .vmdk)",
            output.display()
        )),
    }
}

/// Formats an extension may stand for (`.vhd` is fixed or dynamic, `.vhdx` dynamic or fixed).
fn same_family(a: TargetFormat, b: TargetFormat) -> bool {
    use TargetFormat::*;
    let fam = |f| match f {
        Raw => 0,
        Vhd | VhdDynamic => 1,
        Vhdx | VhdxFixed => 2,
        Qcow2 | Qcow2Compressed => 3,
        Vmdk => 4,
    };
    fam(a) == fam(b)
}

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
#[command(after_help = "\
Examples:
  isotool convert installed.raw disk.vhdx                  # format from the extension
  isotool convert installed.vhdx azure.vhd --azure --sha256
  isotool convert disk.vhdx disk.qcow2 --compress
  isotool convert disk.raw out.bin --to vhdx-fixed --json

Exit status: 0 done, 1 error (nothing left under the output's name), 2 bad command line.")]
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
    /// Output format. Default: from the output's extension (.vhdx, .vhd, .raw/.img, .qcow2,
    /// .vmdk); with --azure, vhd-fixed.
    #[arg(long = "to", value_name = "FORMAT", value_enum)]
    to: Option<FormatArg>,
    /// Write the format asked with --to even when the output's extension names another.
    #[arg(long)]
    force_format: bool,
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
    /// Print the result as JSON (schema isotool/convert/1, see docs/json.md).
    #[arg(long)]
    json: bool,
}

fn convert_format(a: &ConvertArgs) -> Result<TargetFormat> {
    let format = if a.to.is_none() && a.azure {
        TargetFormat::Vhd
    } else {
        pick_format(a.to, "--to", &a.output, a.force_format)?
    };
    match (format, a.compress) {
        (TargetFormat::Qcow2, true) => Ok(TargetFormat::Qcow2Compressed),
        (f, false) => Ok(f),
        (f, true) if f == TargetFormat::Qcow2Compressed || f == TargetFormat::Vmdk => Ok(f),
        (f, true) => Err(isotool::err!(
            InvalidArgument,
            "--compress applies to qcow2 (VMDK grains are always compressed), not {}",
            format_name(f)
        )),
    }
}

pub(crate) fn convert(a: ConvertArgs, ui: Ui) -> Result<Outcome> {
    refuse_dash(&a.input, "the input")?;
    refuse_dash(&a.output, "the output")?;
    let ctx = BuildContext::from_env()?;
    let bars = super::progress::Bars::new(ui.hiding_bars(a.json));
    let format = convert_format(&a)?;
    let opts = ConvertOptions {
        format,
        write: a.write.options()?,
        azure: a.azure,
        sha256: a.sha256,
        force: a.force,
        open: OpenOptions {
            replay_log: a.replay_log,
        },
        sync: ui.sync,
    };
    let r = convert::convert_input(
        &a.input,
        a.input_format.is_some(),
        &a.output,
        &opts,
        &ctx,
        &bars,
    )?;
    ui.detail(format_args!(
        "input {}: {}, virtual size {} bytes; output {}: {}{}",
        a.input.display(),
        r.input_format.as_str(),
        r.input_size,
        r.output.display(),
        format_name(r.format),
        if format == TargetFormat::Qcow2Compressed {
            " (compressed)"
        } else {
            ""
        }
    ));
    if a.json {
        return print_json(&super::json::Convert::new(&a.input, &r)).map(|_| Outcome::Ok);
    }
    ui.summary(format_args!(
        "{} -> {} ({}, virtual size {} = {} bytes, {} of data)",
        a.input.display(),
        r.output.display(),
        format_name(r.format),
        human_bytes(r.virtual_size),
        r.virtual_size,
        human_bytes(r.data_bytes)
    ));
    if r.virtual_size != r.input_size {
        // a result the user must know even with -q: the disk grew
        outln!(
            "virtual size rounded up from {} to {} bytes ({} MiB) for Azure",
            r.input_size,
            r.virtual_size,
            r.virtual_size >> 20
        );
    }
    if let Some(h) = &r.sha256 {
        outln!("{h}  {}", r.output.display());
    }
    Ok(Outcome::Ok)
}

#[derive(Debug, Subcommand)]
pub(crate) enum DiskCommand {
    /// Create an empty disk image.
    Create(CreateArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  isotool disk create disk.vhdx --size 40G                 # dynamic VHDX (from the extension)
  isotool disk create blank.raw --size 1G                  # sparse raw
  isotool disk create d.vhdx --size 8G --block-size 1M     # 1 MiB blocks (Linux guests)
  isotool disk create d.img --size 1G --format vhdx --force-format --json

Exit status: 0 done, 1 error (nothing left under the output's name), 2 bad command line.")]
pub(crate) struct CreateArgs {
    /// Output image.
    output: PathBuf,
    /// Virtual size (e.g. 40G, 512M).
    #[arg(long)]
    size: String,
    /// Format. Default: from the output's extension (.vhdx, .vhd, .raw/.img, .qcow2, .vmdk).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Write the format asked with --format even when the output's extension names another.
    #[arg(long)]
    force_format: bool,
    #[command(flatten)]
    write: WriteArgs,
    /// Print the SHA-256 of the output.
    #[arg(long)]
    sha256: bool,
    /// Replace an existing output.
    #[arg(long)]
    force: bool,
    /// Print the result as JSON (schema isotool/disk-create/1, see docs/json.md).
    #[arg(long)]
    json: bool,
}

pub(crate) fn disk(c: DiskCommand, ui: Ui) -> Result<Outcome> {
    match c {
        DiskCommand::Create(a) => create(a, ui),
    }
}

fn create(a: CreateArgs, ui: Ui) -> Result<Outcome> {
    refuse_dash(&a.output, "the output")?;
    let ctx = BuildContext::from_env()?;
    let bars = super::progress::Bars::new(ui.hiding_bars(a.json));
    let size = parse_size(&a.size)?;
    let format = pick_format(a.format, "--format", &a.output, a.force_format)?;
    let opts = convert::CreateOptions {
        size,
        format,
        write: a.write.options()?,
        force: a.force,
        sha256: a.sha256,
        sync: ui.sync,
    };
    let (p, h) = convert::create(&a.output, &opts, &ctx, &bars)?;
    if a.json {
        let j = super::json::DiskCreate::new(&p, format, size, h.as_deref());
        return print_json(&j).map(|_| Outcome::Ok);
    }
    ui.summary(format_args!(
        "created {} ({}, {} = {} bytes)",
        p.display(),
        format_name(format),
        human_bytes(size),
        size
    ));
    if let Some(h) = h {
        outln!("{h}  {}", p.display());
    }
    Ok(Outcome::Ok)
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  isotool info disk.vhdx
  isotool info disk.vhd --json | jq .format      # raw, vhd-fixed, vhdx, qcow2, ...

Exit status: 0 described, 1 unreadable or refused image, 2 bad command line.")]
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
    refuse_dash(&a.image, "the image")?;
    let img = isotool::image::open_image(
        &a.image,
        &OpenOptions {
            replay_log: a.replay_log,
        },
    )?;
    let i = img.info();
    let parts = isotool::gpt::inspect(&*img)?;
    if a.json {
        return print_json(&super::json::Info {
            schema: "isotool/info/1",
            image: a.image.display().to_string(),
            info: &i,
            partitions: &parts,
        })
        .map(|_| Outcome::Ok);
    }
    outln!("image:           {}", a.image.display());
    outln!("format:          {}", i.format);
    outln!(
        "virtual size:    {} ({} bytes)",
        human_bytes(i.virtual_size),
        i.virtual_size
    );
    outln!(
        "file size:       {} ({} bytes)",
        human_bytes(i.file_size),
        i.file_size
    );
    if let Some(al) = i.allocated {
        outln!("allocated:       {} ({} bytes)", human_bytes(al), al);
    }
    if let Some(bs) = i.block_size {
        outln!("block size:      {}", human_bytes(bs));
    }
    outln!(
        "sector sizes:    {} logical, {} physical",
        i.logical_sector_size,
        i.physical_sector_size
    );
    if let Some(c) = &i.creator {
        outln!("creator:         {c}");
    }
    if let Some(id) = &i.disk_id {
        outln!("disk id:         {id}");
    }
    if let Some((c, h, s)) = i.geometry {
        outln!(
            "CHS geometry:    {c}/{h}/{s} ({} bytes)",
            c as u64 * h as u64 * s as u64 * 512
        );
    }
    for (n, p) in i.parents.iter().enumerate() {
        outln!("parent {}:        {p}", n + 1);
    }
    for n in &i.notes {
        outln!("note:            {n}");
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
    outln!("partition table: {table}");
    let list = parts.partitions();
    if !list.is_empty() {
        outln!(
            "  {:>3}  {:<28} {:>14} {:>12}  name",
            "#",
            "type",
            "start",
            "size"
        );
        for p in list {
            outln!(
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
        outln!("problem:         {pr}");
    }
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  isotool validate azure.vhd --for azure
  isotool validate disk.vhdx --for hyperv-gen2 --json

Exit status: 0 nothing blocks the target, 3 something does (see the findings and their fix),
1 error, 2 bad command line.")]
pub(crate) struct ValidateArgs {
    /// Image to check.
    image: PathBuf,
    /// Target platform.
    #[arg(long = "for", value_name = "TARGET", value_enum)]
    target: TargetArg,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
    /// Apply a VHDX's pending log in memory while reading.
    #[arg(long)]
    replay_log: bool,
}

/// A platform `validate` checks for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum TargetArg {
    /// Azure: fixed VHD, whole-MiB virtual size, at most 1023 GiB.
    Azure,
    /// Hyper-V generation 1 (BIOS, IDE boot).
    HypervGen1,
    /// Hyper-V generation 2 (UEFI, SCSI boot, VHDX).
    HypervGen2,
}

/// Exit status of `validate` when something blocks the target.
pub(crate) const EXIT_BLOCKED: u8 = 3;

pub(crate) fn validate(a: ValidateArgs) -> Result<Outcome> {
    use isotool::image::validate::{Target, validate};
    let target = match a.target {
        TargetArg::Azure => Target::Azure,
        TargetArg::HypervGen1 => Target::HypervGen1,
        TargetArg::HypervGen2 => Target::HypervGen2,
    };
    // A path that is no file at all (missing, a directory, unreadable) is an error (exit 1, on
    // stderr), not a finding about an image: only an image that opens is validated.
    super::require_file(&a.image, "the image")?;
    let v = validate(
        &a.image,
        target,
        &OpenOptions {
            replay_log: a.replay_log,
        },
    );
    if a.json {
        print_json(&super::json::Validate {
            schema: "isotool/validate/1",
            validation: &v,
        })?;
    } else {
        for f in &v.findings {
            outln!("{f}");
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
        outln!(
            "{}: {} for {}: {errors} error(s), {warnings} warning(s)",
            a.image.display(),
            if v.ok { "OK" } else { "BLOCKED" },
            a.target
                .to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default()
        );
    }
    Ok(if v.ok {
        Outcome::Ok
    } else {
        Outcome::Exit(EXIT_BLOCKED)
    })
}
