//! `iso ls`, `iso extract`, `iso info`.

use super::{Outcome, Ui, human_bytes, outln, print_json, refuse_dash};
use clap::{Args, Subcommand};
use isotool::disk::Progress as _;
use isotool::error::Result;
use isotool::iso::info;
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub(crate) enum IsoCommand {
    /// List a directory of an ISO (primary tree, Rock Ridge names).
    Ls(LsArgs),
    /// Copy one file out of an ISO.
    Extract(ExtractArgs),
    /// Volume ids, trees, El Torito entries and system area of an ISO.
    Info(InfoArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  isotool iso ls ubuntu.iso /isolinux
  isotool iso ls -R out.iso --json | jq -r '.entries[] | select(.mode == \"0755\") | .path'   # the executables

Exit status: 0 listed (also when stdout is a closed pipe), 1 error, 2 bad command line.")]
pub(crate) struct LsArgs {
    /// The ISO.
    input: PathBuf,
    /// Directory in the ISO.
    #[arg(default_value = "/")]
    path: String,
    /// Whole tree.
    #[arg(long, short = 'R')]
    recursive: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  isotool iso extract out.iso /preseed/auto.seed -o auto.seed
  isotool iso extract out.iso /boot/grub/grub.cfg -o - | grep linux

Exit status: 0 extracted, 1 error (not found, a directory, unreadable), 2 bad command line.")]
pub(crate) struct ExtractArgs {
    /// The ISO.
    input: PathBuf,
    /// File in the ISO.
    path: String,
    /// Output file, or `-` for stdout.
    #[arg(short, long)]
    output: PathBuf,
    /// Replace an existing output.
    #[arg(long)]
    force: bool,
    /// Write the bytes as stored (zisofs files stay compressed).
    #[arg(long)]
    raw: bool,
    /// Print the result as JSON (schema isotool/iso-extract/1; not with -o -).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  isotool iso info ubuntu.iso
  isotool iso info out.iso --json | jq '.boot_images[].path'

Exit status: 0 described, 1 unreadable or refused ISO, 2 bad command line.")]
pub(crate) struct InfoArgs {
    /// The ISO.
    input: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn iso(c: IsoCommand, ui: Ui) -> Result<Outcome> {
    match c {
        IsoCommand::Ls(a) => {
            refuse_dash(&a.input, "the ISO")?;
            let v = info::list(&a.input, &a.path, a.recursive)?;
            if a.json {
                print_json(&super::json::IsoLs::new(&a.input, &a.path, &v))?;
            } else {
                for e in v {
                    let mode = e
                        .mode
                        .map(super::json::octal_mode)
                        .unwrap_or_else(|| "-".into());
                    match e.target {
                        Some(t) => {
                            outln!("{:<7} {mode} {:>12} {} -> {t}", e.kind, e.size, e.path)
                        }
                        None => outln!("{:<7} {mode} {:>12} {}", e.kind, e.size, e.path),
                    }
                }
            }
        }
        IsoCommand::Extract(a) => return extract(a, ui),
        IsoCommand::Info(a) => {
            refuse_dash(&a.input, "the ISO")?;
            let i = info::inspect(&a.input)?;
            if a.json {
                print_json(&super::json::IsoInfo {
                    schema: "isotool/iso-info/1",
                    iso: a.input.display().to_string(),
                    info: &i,
                })?;
            } else {
                print_info(&i);
            }
        }
    }
    Ok(Outcome::Ok)
}

fn extract(a: ExtractArgs, ui: Ui) -> Result<Outcome> {
    refuse_dash(&a.input, "the ISO")?;
    if a.output.as_os_str() == "-" {
        if a.json {
            return Err(isotool::err!(
                InvalidArgument,
                "--json and -o - both want stdout: give an output file with --json"
            ));
        }
        let bars = super::progress::Bars::new(ui);
        extract_to_stdout(&a.input, &a.path, a.raw, &bars)?;
        return Ok(Outcome::Ok);
    }
    let bars = super::progress::Bars::new(ui.hiding_bars(a.json));
    bars.start("extracting", 0);
    let n = info::extract(
        &a.input,
        &a.path,
        &a.output,
        isotool::output::OutputOptions::new(a.force, 0o644).with_sync(ui.sync),
        a.raw,
    );
    bars.finish();
    let n = n?;
    if a.json {
        print_json(&super::json::IsoExtract {
            schema: "isotool/iso-extract/1",
            iso: a.input.display().to_string(),
            path: &a.path,
            output: a.output.display().to_string(),
            size: n,
        })?;
    } else {
        ui.summary(format_args!(
            "{}: {} written",
            a.output.display(),
            human_bytes(n)
        ));
    }
    Ok(Outcome::Ok)
}

/// Streams a file of the ISO to stdout (`iso extract -o -`), zisofs decoded unless `raw`.
fn extract_to_stdout(
    iso_path: &Path,
    file: &str,
    raw: bool,
    bars: &super::progress::Bars,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    info::extract_stream(
        iso_path,
        file,
        raw,
        &mut |total| bars.start("extracting", total),
        &mut |b| {
            if let Err(e) = out.write_all(b) {
                super::stdout_failed(&e);
            }
            bars.advance(b.len() as u64);
            Ok(())
        },
    )?;
    if let Err(e) = out.flush() {
        super::stdout_failed(&e);
    }
    bars.finish();
    Ok(())
}

/// `iso info` as text: volume, trees, El Torito, system area.
fn print_info(i: &info::IsoInfo) {
    outln!(
        "file size:   {} ({})",
        i.file_size,
        human_bytes(i.file_size)
    );
    outln!("volume id:   {}", i.volume_id);
    for t in &i.trees {
        outln!(
            "tree:        {:?} volume id {:?}, {} blocks{}{}",
            t.kind,
            t.volume_id,
            t.volume_space_blocks,
            if t.rock_ridge { ", Rock Ridge" } else { "" },
            t.joliet_level
                .map(|l| format!(", Joliet level {l}"))
                .unwrap_or_default()
        );
    }
    match (i.boot_catalog, &i.boot_catalog_path) {
        (Some(l), p) => outln!(
            "El Torito:   catalog at LBA {l} {}",
            p.as_deref().unwrap_or("(hidden)")
        ),
        (None, _) => outln!("El Torito:   none"),
    }
    for b in &i.boot_images {
        outln!(
            "  boot:      {} {} emulation {} load {} sectors at LBA {} {}{}",
            b.platform_name,
            if b.entry.bootable {
                "bootable"
            } else {
                "not-bootable"
            },
            b.entry.emulation,
            b.entry.load_sectors,
            b.entry.lba,
            b.path.as_deref().unwrap_or("(no file)"),
            match &b.boot_info_table {
                Some(t) if t.checksum_ok => ", boot-info-table ok",
                Some(_) => ", boot-info-table BAD CHECKSUM",
                None => "",
            }
        );
    }
    print_system_area(&i.system_area);
}

/// The MBR, GPT and APM of an ISO's system area, as text.
fn print_system_area(sa: &isotool::iso::boot::SystemArea) {
    for p in &sa.mbr {
        outln!(
            "MBR:         {} status 0x{:02x} type 0x{:02x} start {} sectors {}",
            p.index,
            p.status,
            p.ptype,
            p.start,
            p.sectors
        );
    }
    if let Some(g) = &sa.gpt {
        outln!(
            "GPT:         usable {}..{}, backup at {}",
            g.first_usable,
            g.last_usable,
            g.backup_lba
        );
        for p in &g.partitions {
            outln!(
                "  part:      {} {:?} {}..{} type {}",
                p.index,
                p.name,
                p.first,
                p.last,
                p.type_guid
            );
        }
    }
    if let Some(bs) = sa.apm_block_size {
        outln!("APM:         block size {bs}");
        for p in &sa.apm {
            outln!(
                "  part:      {} {:?} {:?} start {} blocks {}",
                p.index,
                p.name,
                p.ptype,
                p.start,
                p.blocks
            );
        }
    }
}
