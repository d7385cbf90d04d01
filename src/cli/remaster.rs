//! `remaster`: make an installer ISO unattended.

use super::{Outcome, Ui, human_bytes, print_json, refuse_dash};
use clap::Args;
use isotool::context::BuildContext;
use isotool::err;
use isotool::error::Result;
use isotool::remaster::{self, RemasterOptions, Seed, bootcfg::Flavor};
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  isotool remaster ubuntu-18.04.3-server-amd64.iso -o unattended.iso --preseed auto.seed
  isotool remaster unattended.iso -o unattended2.iso --preseed new.seed   # rerun: replaces
  isotool remaster CentOS-7.iso -o ks.iso --kickstart ks.cfg --kernel-arg console=ttyS0
  isotool remaster stock.iso -o plus.iso --add ./tool=/extra/tool --no-boot-edit

Running it on its own output replaces the previous unattended entry and seed.

Exit status: 0 written, 1 error (the input is never modified; nothing left under the output's
name), 2 bad command line.")]
pub(crate) struct RemasterArgs {
    /// Stock installer ISO (never written).
    input: PathBuf,
    /// Output ISO.
    #[arg(short, long)]
    output: PathBuf,
    /// Debian-installer preseed to put at /preseed/NAME.
    #[arg(long, conflicts_with = "kickstart")]
    preseed: Option<PathBuf>,
    /// Name of the preseed on the disc (default: the file's name).
    #[arg(long)]
    preseed_name: Option<String>,
    /// RHEL/CentOS 7 kickstart to put at /NAME (inst.ks=cdrom:/NAME).
    #[arg(long)]
    kickstart: Option<PathBuf>,
    /// Name of the kickstart on the disc (default: the file's name).
    #[arg(long)]
    kickstart_name: Option<String>,
    /// Extra kernel argument for the unattended entry (repeatable).
    #[arg(long = "kernel-arg", value_name = "ARG")]
    kernel_args: Vec<String>,
    /// Boot menu timeout in seconds.
    #[arg(long, default_value_t = 1)]
    timeout: u32,
    /// New volume id (PVD and Joliet).
    #[arg(long)]
    volume_id: Option<String>,
    /// Add a file: SRC=/ISO/PATH (repeatable; missing directories are created).
    #[arg(long = "add", value_name = "SRC=/ISO/PATH")]
    adds: Vec<String>,
    /// Only add files; do not edit any boot config.
    #[arg(long)]
    no_boot_edit: bool,
    /// Replace an existing output.
    #[arg(long)]
    force: bool,
    /// Print the result as JSON (schema isotool/remaster/1, see docs/json.md).
    #[arg(long)]
    json: bool,
}

/// An empty preseed or kickstart answers nothing: the "unattended" boot would stop at the
/// installer's first question. (Other problems with the file are the library's to name.)
fn nonempty(seed: Option<Seed>) -> Result<Option<Seed>> {
    match &seed {
        Some(s) if std::fs::metadata(&s.file).is_ok_and(|m| m.is_file() && m.len() == 0) => {
            Err(err!(
                InvalidArgument,
                "the seed is empty (0 bytes): an unattended install needs its answers"
            )
            .with_path(&s.file))
        }
        _ => Ok(seed),
    }
}

pub(crate) fn remaster(a: RemasterArgs, ui: Ui) -> Result<Outcome> {
    refuse_dash(&a.input, "the input ISO")?;
    refuse_dash(&a.output, "the output ISO")?;
    let (quiet, sync) = (ui.quiet, ui.sync);
    let ctx = BuildContext::from_env()?;
    let seed = nonempty(match (&a.preseed, &a.kickstart) {
        (Some(p), _) => Some(Seed {
            flavor: Flavor::Preseed,
            file: p.clone(),
            name: match &a.preseed_name {
                Some(n) => n.clone(),
                None => remaster::default_seed_name(p)?,
            },
        }),
        (None, Some(k)) => Some(Seed {
            flavor: Flavor::Kickstart,
            file: k.clone(),
            name: match &a.kickstart_name {
                Some(n) => n.clone(),
                None => remaster::default_seed_name(k)?,
            },
        }),
        _ => None,
    })?;
    let mut adds = Vec::new();
    for s in &a.adds {
        let (src, dst) = s
            .split_once('=')
            .ok_or_else(|| err!(InvalidArgument, "--add {s:?}: expected SRC=/ISO/PATH"))?;
        adds.push((PathBuf::from(src), dst.to_string()));
    }
    let o = RemasterOptions {
        input: a.input,
        output: a.output,
        seed,
        kernel_args: a.kernel_args,
        timeout: a.timeout,
        volume_id: a.volume_id,
        adds,
        no_boot_edit: a.no_boot_edit,
        force: a.force,
        sync,
    };
    let bars = super::progress::Bars::new(ui.hiding_bars(a.json));
    let r = remaster::remaster_with_progress(&o, &ctx, &bars)?;
    if a.json {
        print_json(&super::json::Remaster {
            schema: "isotool/remaster/1",
            input: o.input.display().to_string(),
            output: o.output.display().to_string(),
            report: &r,
        })?;
    } else if !quiet {
        for n in &r.notes {
            eprintln!("note: {n}");
        }
        for e in &r.edited {
            eprintln!("edited: {e}");
        }
        for p in &r.patch.added_dirs {
            eprintln!("created directory: {p}");
        }
        for p in &r.patch.added {
            eprintln!("added: {p}");
        }
        for p in &r.patch.replaced {
            ui.detail(format_args!("replaced: {p}"));
        }
        for d in &r.patch.moved_dirs {
            eprintln!("directory rewritten at the end: {d}");
        }
        ui.summary(format_args!(
            "{}: {} ({} written by isotool, the rest copied in the kernel)",
            o.output.display(),
            human_bytes(r.patch.new_len),
            human_bytes(r.patch.bytes_written)
        ));
    }
    Ok(Outcome::Ok)
}
