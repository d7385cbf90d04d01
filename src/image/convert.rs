//! Any-to-any conversion: open (format probed from content), write the target format into a
//! temp file beside the output, optionally hash it, rename into place.

use crate::context::BuildContext;
pub use crate::disk::stream::WriteOptions;
use crate::disk::stream::{MIB, Padded, data_bytes, write_raw};
use crate::disk::{DiskImage, OpenOptions, Progress};
use crate::err;
use crate::error::{Error, Result};
use crate::output::{AtomicOutput, OutputOptions};
use serde::Serialize;
use std::fs::File;
use std::path::{Path, PathBuf};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetFormat {
    /// Raw (sparse where the input is).
    Raw,
    /// Fixed VHD.
    Vhd,
    /// Dynamic VHD.
    VhdDynamic,
    /// Dynamic VHDX.
    Vhdx,
    /// Fixed VHDX.
    VhdxFixed,
    /// qcow2 version 3 (sparse).
    Qcow2,
    /// qcow2 version 3 with deflate-compressed clusters (compressed in parallel).
    Qcow2Compressed,
    /// streamOptimized VMDK in VMware's layout.
    Vmdk,
}

impl TargetFormat {
    /// The format an output file name implies: `.vhdx` -> dynamic VHDX, `.vhd` -> fixed VHD,
    /// `.raw` / `.img` -> raw.
    pub fn from_extension(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "vhdx" => Some(TargetFormat::Vhdx),
            "vhd" => Some(TargetFormat::Vhd),
            "raw" | "img" => Some(TargetFormat::Raw),
            "qcow2" => Some(TargetFormat::Qcow2),
            "vmdk" => Some(TargetFormat::Vmdk),
            _ => None,
        }
    }

    /// Parses the command-line name.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "raw" => TargetFormat::Raw,
            "vhd" | "vhd-fixed" => TargetFormat::Vhd,
            "vhd-dynamic" => TargetFormat::VhdDynamic,
            "vhdx" | "vhdx-dynamic" => TargetFormat::Vhdx,
            "vhdx-fixed" => TargetFormat::VhdxFixed,
            "qcow2" => TargetFormat::Qcow2,
            "qcow2-compressed" => TargetFormat::Qcow2Compressed,
            "vmdk" | "vmdk-stream" => TargetFormat::Vmdk,
            _ => {
                return Err(err!(
                    InvalidArgument,
                    "unknown format {s:?} (expected raw, vhd, vhd-dynamic, vhdx, vhdx-fixed, qcow2, qcow2-compressed, vmdk)"
                ));
            }
        })
    }

    /// The image kind `info` reports for an output of this format (the one vocabulary of
    /// `info`, `convert` and `validate`; compression is not a kind).
    pub fn kind(self) -> crate::disk::ImageKind {
        use crate::disk::ImageKind;
        match self {
            TargetFormat::Raw => ImageKind::Raw,
            TargetFormat::Vhd => ImageKind::VhdFixed,
            TargetFormat::VhdDynamic => ImageKind::VhdDynamic,
            TargetFormat::Vhdx => ImageKind::Vhdx,
            TargetFormat::VhdxFixed => ImageKind::VhdxFixed,
            TargetFormat::Qcow2 | TargetFormat::Qcow2Compressed => ImageKind::Qcow2,
            TargetFormat::Vmdk => ImageKind::VmdkStreamOptimized,
        }
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            TargetFormat::Raw => "raw",
            TargetFormat::Vhd => "vhd",
            TargetFormat::VhdDynamic => "vhd-dynamic",
            TargetFormat::Vhdx => "vhdx",
            TargetFormat::VhdxFixed => "vhdx-fixed",
            TargetFormat::Qcow2 => "qcow2",
            TargetFormat::Qcow2Compressed => "qcow2-compressed",
            TargetFormat::Vmdk => "vmdk",
        }
    }
}

/// Writes `src` as `format` into `out` (an empty file). Streams: memory is bounded.
pub fn write_image(
    src: &dyn DiskImage,
    out: &File,
    out_path: &Path,
    format: TargetFormat,
    opts: &WriteOptions,
    ctx: &BuildContext,
    progress: &dyn Progress,
) -> Result<()> {
    match format {
        TargetFormat::Raw => write_raw(src, out, out_path, progress),
        TargetFormat::Vhd => crate::vhd::write(src, out, out_path, false, opts, ctx, progress),
        TargetFormat::VhdDynamic => {
            crate::vhd::write(src, out, out_path, true, opts, ctx, progress)
        }
        TargetFormat::Vhdx => crate::vhdx::write(src, out, out_path, false, opts, ctx, progress),
        TargetFormat::VhdxFixed => {
            crate::vhdx::write(src, out, out_path, true, opts, ctx, progress)
        }
        TargetFormat::Qcow2 | TargetFormat::Qcow2Compressed => {
            let cluster = opts.block_size.unwrap_or(1 << 16);
            let compress = format == TargetFormat::Qcow2Compressed;
            let q = crate::qcow2::Qcow2WriteOptions::with_cluster_size(cluster, compress)?;
            crate::qcow2::write(src, out, out_path, &q, progress)
        }
        TargetFormat::Vmdk => {
            let name = crate::output::final_name(out_path);
            crate::vmdk::write_stream_optimized(src, out, out_path, &name, ctx, progress)
        }
    }
}

/// What `convert` should do.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Output format.
    pub format: TargetFormat,
    /// Writer options.
    pub write: WriteOptions,
    /// Produce what Azure accepts: fixed VHD, virtual size rounded up to a whole MiB.
    pub azure: bool,
    /// Compute the SHA-256 of the output.
    pub sha256: bool,
    /// Replace an existing output.
    pub force: bool,
    /// How to open the input.
    pub open: OpenOptions,
    /// Flush the output to stable storage before renaming it into place (default true).
    pub sync: bool,
}

impl Default for ConvertOptions {
    /// A dynamic VHDX with the writers' defaults, no Azure rules, no hash, no overwrite, input
    /// log not replayed, output synced.
    fn default() -> Self {
        ConvertOptions {
            format: TargetFormat::Vhdx,
            write: WriteOptions::default(),
            azure: false,
            sha256: false,
            force: false,
            open: OpenOptions::default(),
            sync: true,
        }
    }
}

/// What `convert` did.
#[derive(Debug, Clone, Serialize)]
pub struct ConvertReport {
    /// Output path.
    pub output: PathBuf,
    /// Output format.
    pub format: TargetFormat,
    /// Input format as probed.
    pub input_format: crate::disk::ImageKind,
    /// Input virtual size.
    pub input_size: u64,
    /// Output virtual size (differs from the input's with `--azure` rounding).
    pub virtual_size: u64,
    /// Bytes of data moved.
    pub data_bytes: u64,
    /// SHA-256 of the output file, when asked.
    pub sha256: Option<String>,
}

/// Azure's rule: a whole number of MiB.
pub fn azure_size(len: u64) -> u64 {
    len.div_ceil(MIB) * MIB
}

/// Converts `input` into `output`.
pub fn convert(
    input: &Path,
    output: &Path,
    opts: &ConvertOptions,
    ctx: &BuildContext,
    progress: &dyn Progress,
) -> Result<ConvertReport> {
    convert_input(input, false, output, opts, ctx, progress)
}

/// [`convert`], taking the input as a raw disk without probing when `input_raw`
/// (`--input-format raw`).
pub fn convert_input(
    input: &Path,
    input_raw: bool,
    output: &Path,
    opts: &ConvertOptions,
    ctx: &BuildContext,
    progress: &dyn Progress,
) -> Result<ConvertReport> {
    let format = opts.format;
    if opts.azure && format != TargetFormat::Vhd {
        return Err(err!(
            InvalidArgument,
            "--azure writes a fixed VHD (Azure accepts nothing else), not {}: drop --to or use --to vhd",
            format.name()
        ));
    }
    // Every file the disk reads (the image, then each parent its locators lead to) is an
    // input the output must never be.
    let (src, files) = super::open::open_image_with_files(input, input_raw, &opts.open)?;
    let mut inputs: Vec<&Path> = vec![input];
    inputs.extend(files.iter().map(PathBuf::as_path));
    let out = AtomicOutput::create(
        output,
        &inputs,
        OutputOptions::new(opts.force, 0o644).with_sync(opts.sync),
    )?;
    let input_info = src.info();
    let target_len = if opts.azure {
        azure_size(src.len())
    } else {
        src.len()
    };
    if target_len != src.len() {
        progress.note(&format!(
            "virtual size rounded up from {} to {} bytes ({} MiB) for Azure",
            src.len(),
            target_len,
            target_len / MIB
        ));
    }
    let padded = Padded::new(src.as_ref(), target_len);
    let data = data_bytes(&padded)?;
    write_image(
        &padded,
        out.file(),
        out.tmp_path(),
        format,
        &opts.write,
        ctx,
        progress,
    )
    .map_err(|e: Error| out.blame(e))?;
    let sha256 = if opts.sha256 {
        Some(crate::checksum::sha256_file_progress(
            out.file(),
            out.tmp_path(),
            progress,
        )?)
    } else {
        None
    };
    let output = commit_syncing(out, opts.sync, progress)?;
    Ok(ConvertReport {
        output,
        format,
        input_format: input_info.format,
        input_size: src.len(),
        virtual_size: target_len,
        data_bytes: data,
        sha256,
    })
}

pub use crate::disk::commit_syncing;

/// What `disk create` should make.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Virtual size in bytes.
    pub size: u64,
    /// Output format.
    pub format: TargetFormat,
    /// Writer options.
    pub write: WriteOptions,
    /// Replace an existing output.
    pub force: bool,
    /// Compute the SHA-256 of the output.
    pub sha256: bool,
    /// Flush the output to stable storage before renaming it into place.
    pub sync: bool,
}

/// Creates an empty disk.
pub fn create(
    output: &Path,
    opts: &CreateOptions,
    ctx: &BuildContext,
    progress: &dyn Progress,
) -> Result<(PathBuf, Option<String>)> {
    if opts.size == 0 {
        return Err(err!(
            InvalidArgument,
            "the disk size must be greater than zero"
        ));
    }
    let out = AtomicOutput::create(
        output,
        &[],
        OutputOptions::new(opts.force, 0o644).with_sync(opts.sync),
    )?;
    let src = crate::disk::mem::ZeroImage { len: opts.size };
    write_image(
        &src,
        out.file(),
        out.tmp_path(),
        opts.format,
        &opts.write,
        ctx,
        progress,
    )
    .map_err(|e| out.blame(e))?;
    let h = if opts.sha256 {
        Some(crate::checksum::sha256_file_progress(
            out.file(),
            out.tmp_path(),
            progress,
        )?)
    } else {
        None
    };
    Ok((commit_syncing(out, opts.sync, progress)?, h))
}

/// Parses sizes like `40G`, `512M`, `1.5T`, `4096`, `2MiB` (binary units: K, KB and KiB are
/// all 1024), with the `parse-size` crate.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    parse_size::Config::new()
        .with_binary()
        .parse_size(t)
        .map_err(|e| {
            // Name the unit when the number parses and what follows it does not.
            let unit = t.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
            match e {
                parse_size::Error::InvalidDigit if unit.len() < t.len() && !unit.is_empty() => {
                    err!(
                        InvalidArgument,
                        "bad size {s:?}: unknown unit {:?} (use K, M, G or T)",
                        unit.trim()
                    )
                }
                _ => err!(InvalidArgument, "bad size {s:?}"),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("40G").unwrap(), 40 << 30);
        assert_eq!(parse_size("1M").unwrap(), 1 << 20);
        assert_eq!(parse_size("1.5K").unwrap(), 1536);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("2MiB").unwrap(), 2 << 20);
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert!(parse_size("").is_err());
        // The syntax and the messages the CLI showed before the crate took over.
        assert_eq!(parse_size(" 512m ").unwrap(), 512 << 20);
        assert_eq!(parse_size("1 GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("3kb").unwrap(), 3 << 10);
        assert_eq!(parse_size("7b").unwrap(), 7);
        let m = |s| parse_size(s).unwrap_err().message().to_string();
        assert_eq!(
            m("12Q"),
            "bad size \"12Q\": unknown unit \"Q\" (use K, M, G or T)"
        );
        assert_eq!(m("99999999999T"), "bad size \"99999999999T\"");
        assert_eq!(m(""), "bad size \"\"");
        assert_eq!(m("G"), "bad size \"G\"");
    }

    #[test]
    fn azure_rounding() {
        assert_eq!(azure_size(MIB), MIB);
        assert_eq!(azure_size(MIB + 1), 2 * MIB);
        assert_eq!(azure_size(4_212_736), 5 * MIB);
    }
}
