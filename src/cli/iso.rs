//! `iso ls`, `iso extract`, `iso info`.

use super::{Outcome, human_bytes, print_json};
use clap::{Args, Subcommand};
use isotool::error::Result;
use isotool::iso::info;
use std::path::PathBuf;

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
pub(crate) struct ExtractArgs {
    /// The ISO.
    input: PathBuf,
    /// File in the ISO.
    path: String,
    /// Output file.
    #[arg(short, long)]
    output: PathBuf,
    /// Replace an existing output.
    #[arg(long)]
    force: bool,
    /// Write the bytes as stored (zisofs files stay compressed).
    #[arg(long)]
    raw: bool,
}

#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    /// The ISO.
    input: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn iso(c: IsoCommand, sync: bool) -> Result<Outcome> {
    match c {
        IsoCommand::Ls(a) => {
            let v = info::list(&a.input, &a.path, a.recursive)?;
            if a.json {
                print_json(&v)?;
            } else {
                for e in v {
                    let mode = e
                        .mode
                        .map(|m| format!("{:06o}", m))
                        .unwrap_or_else(|| "-".into());
                    match e.target {
                        Some(t) => {
                            println!("{:<7} {mode} {:>12} {} -> {t}", e.kind, e.size, e.path)
                        }
                        None => println!("{:<7} {mode} {:>12} {}", e.kind, e.size, e.path),
                    }
                }
            }
        }
        IsoCommand::Extract(a) => {
            let n = info::extract(
                &a.input,
                &a.path,
                &a.output,
                isotool::output::OutputOptions::new(a.force, 0o644).with_sync(sync),
                a.raw,
            )?;
            eprintln!("{}: {} written", a.output.display(), human_bytes(n));
        }
        IsoCommand::Info(a) => {
            let i = info::inspect(&a.input)?;
            if a.json {
                print_json(&i)?;
            } else {
                print_info(&i);
            }
        }
    }
    Ok(Outcome::Ok)
}

/// `iso info` as text: volume, trees, El Torito, system area.
fn print_info(i: &info::IsoInfo) {
    println!(
        "file size:   {} ({})",
        i.file_size,
        human_bytes(i.file_size)
    );
    println!("volume id:   {}", i.volume_id);
    for t in &i.trees {
        println!(
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
        (Some(l), p) => println!(
            "El Torito:   catalog at LBA {l} {}",
            p.as_deref().unwrap_or("(hidden)")
        ),
        (None, _) => println!("El Torito:   none"),
    }
    for b in &i.boot_images {
        println!(
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
        println!(
            "MBR:         {} status 0x{:02x} type 0x{:02x} start {} sectors {}",
            p.index, p.status, p.ptype, p.start, p.sectors
        );
    }
    if let Some(g) = &sa.gpt {
        println!(
            "GPT:         usable {}..{}, backup at {}",
            g.first_usable, g.last_usable, g.backup_lba
        );
        for p in &g.partitions {
            println!(
                "  part:      {} {:?} {}..{} type {}",
                p.index, p.name, p.first, p.last, p.type_guid
            );
        }
    }
    if let Some(bs) = sa.apm_block_size {
        println!("APM:         block size {bs}");
        for p in &sa.apm {
            println!(
                "  part:      {} {:?} {:?} start {} blocks {}",
                p.index, p.name, p.ptype, p.start, p.blocks
            );
        }
    }
}
