//! `provisioning-cd` and `cloud-init-seed`.

use super::{Outcome, Ui, human_bytes, outln, print_json, refuse_dash};
use clap::Args;
use isotool::cloudinit::{self, Seed, SeedFormat, azure};
use isotool::context::BuildContext;
use isotool::err;
use isotool::error::Result;
use isotool::output::{AtomicOutput, OutputOptions, escape_name};
use isotool::provisioning::{self, DvdOptions, EntryKind, Report, Role, media_mode};
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  isotool provisioning-cd --from config/ -o provisioning.iso
  isotool provisioning-cd --from config/ --dry-run            # check the tree, list the disc
  isotool provisioning-cd --from config/ -o p.iso --role server --json   # a server's tree

Exit status: 0 written (or checked), 1 error (an invalid tree lists every problem), 2 bad
command line.")]
pub(crate) struct ProvisioningCdArgs {
    /// The config tree (run_provisioning.json, consul/, unbound/, ...).
    #[arg(long = "from", value_name = "DIR")]
    from: PathBuf,
    /// Output ISO (created 0600: it carries secrets).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        required_unless_present = "dry_run"
    )]
    output: Option<PathBuf>,
    /// Consul role; found from consul/client/ or consul/server/ when not given.
    #[arg(long, value_parser = parse_role)]
    role: Option<Role>,
    /// ISO volume id.
    #[arg(long, default_value = provisioning::DEFAULT_VOLUME_ID)]
    volume_id: String,
    /// Check the tree and list what would go on the disc; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replace an existing output.
    #[arg(long)]
    force: bool,
    /// Also treat files matching GLOB as secret (repeatable; `*`, `?`, `**`; without `/` the
    /// file name is matched, with `/` the path in the tree).
    #[arg(long = "secret", value_name = "GLOB")]
    secrets: Vec<String>,
    /// Permission bits of the output, in octal (default: 0600 when it carries secrets, else
    /// 0644 filtered by the umask).
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    mode: Option<u32>,
    /// Print the result as JSON (schema isotool/provisioning-cd/1, see docs/json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  isotool cloud-init-seed --user-data user-data -o seed.iso
  isotool cloud-init-seed --user-data user-data --meta-data meta-data --format vfat -o seed.img
  isotool cloud-init-seed --from config/ -o seed.iso
  isotool cloud-init-seed --from config/ --azure -o - | base64 -w0   # custom data on stdout

Exit status: 0 written, 1 error (bad YAML, too large for Azure, ...), 2 bad command line.")]
pub(crate) struct CloudInitSeedArgs {
    /// Output: a seed image, or with --azure the custom-data text (created 0600; `-` writes it
    /// to stdout).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    /// user-data file (cloud-config, script, MIME multipart, #include, boothook, gzip).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "from",
        required_unless_present = "from"
    )]
    user_data: Option<PathBuf>,
    /// meta-data file (default: an instance-id derived from the user-data).
    #[arg(long, value_name = "FILE")]
    meta_data: Option<PathBuf>,
    /// network-config file.
    #[arg(long, value_name = "FILE")]
    network_config: Option<PathBuf>,
    /// vendor-data file.
    #[arg(long, value_name = "FILE")]
    vendor_data: Option<PathBuf>,
    /// Seed filesystem.
    #[arg(long, value_enum, default_value_t = SeedFormatArg::Iso)]
    format: SeedFormatArg,
    /// A config tree to lay out under /run/cloud-init/ through write_files.
    #[arg(long = "from", value_name = "DIR")]
    from: Option<PathBuf>,
    /// With --from: write Azure custom data (a #cloud-config of at most 65,535 bytes).
    #[arg(long, requires = "from")]
    azure: bool,
    /// With --from: consul role (found from the tree when not given).
    #[arg(long, value_parser = parse_role, requires = "from")]
    role: Option<Role>,
    /// Replace an existing output.
    #[arg(long)]
    force: bool,
    /// With --from: also treat files matching GLOB as secret (repeatable).
    #[arg(long = "secret", value_name = "GLOB", requires = "from")]
    secrets: Vec<String>,
    /// Permission bits of the output, in octal (default 0600: user-data can carry secrets).
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    mode: Option<u32>,
    /// Print the result as JSON (schema isotool/cloud-init-seed/1, see docs/json.md).
    #[arg(long)]
    json: bool,
}

fn parse_mode(s: &str) -> std::result::Result<u32, String> {
    let t = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(t, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!("{s:?} is not an octal mode such as 0644")),
    }
}

pub(crate) fn parse_role(s: &str) -> std::result::Result<Role, String> {
    s.parse()
        .map_err(|e: isotool::Error| e.message().to_string())
}

/// The filesystem of a NoCloud seed.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum SeedFormatArg {
    /// ISO 9660 with Rock Ridge and Joliet, labelled cidata.
    Iso,
    /// FAT, labelled CIDATA.
    Vfat,
}

impl SeedFormatArg {
    fn format(self) -> SeedFormat {
        match self {
            SeedFormatArg::Iso => SeedFormat::Iso,
            SeedFormatArg::Vfat => SeedFormat::Vfat,
        }
    }
}

fn print_warnings(report: &Report, quiet: bool) {
    if quiet {
        return;
    }
    for w in report.warnings() {
        eprintln!("isotool: {w}");
    }
}

/// Scans and validates; on errors prints the warnings too, then returns the InvalidConfig.
pub(crate) fn checked_tree(
    from: &Path,
    role: Option<Role>,
    secrets: &[String],
    quiet: bool,
) -> Result<(provisioning::ConfigTree, Option<Role>)> {
    let mut report = Report::default();
    let mut tree = provisioning::ConfigTree::scan(from, &mut report)?;
    tree.add_secret_patterns(secrets);
    let role = provisioning::validate(&tree, role, &mut report);
    print_warnings(&report, quiet);
    report.check(from)?;
    Ok((tree, role))
}

/// What `provisioning-cd --json` says (the entries as they go on the disc).
fn cd_json(
    tree: &provisioning::ConfigTree,
    role: Option<Role>,
    volume_id: &str,
    out: Option<(&Path, u64)>,
) -> super::json::ProvisioningCd {
    super::json::ProvisioningCd {
        schema: "isotool/provisioning-cd/1",
        output: out.map(|o| o.0.display().to_string()),
        size: out.map(|o| o.1),
        volume_id: volume_id.to_string(),
        role: role.map(|r| r.to_string()),
        entries: tree
            .entries
            .iter()
            .map(|e| super::json::MediaEntry {
                path: e.rel.to_string(),
                kind: match e.kind {
                    EntryKind::Dir => "dir",
                    EntryKind::File => "file",
                },
                size: e.size,
                mode: super::json::octal_mode(media_mode(e)),
            })
            .collect(),
    }
}

pub(crate) fn provisioning_cd(a: ProvisioningCdArgs, ui: Ui) -> Result<Outcome> {
    let (quiet, sync) = (ui.quiet, ui.sync);
    let ctx = BuildContext::from_env()?;
    let (tree, role) = checked_tree(&a.from, a.role, &a.secrets, quiet)?;
    if a.dry_run && a.json {
        return print_json(&cd_json(&tree, role, &a.volume_id, None)).map(|_| Outcome::Ok);
    }
    if a.dry_run {
        print_dry_run(&tree, role, &a.volume_id);
        return Ok(Outcome::Ok);
    }
    let out = a
        .output
        .ok_or_else(|| err!(InvalidArgument, "--output is required"))?;
    refuse_dash(&out, "the provisioning ISO")?;
    let bars = super::progress::Bars::new(ui.hiding_bars(a.json));
    let r = provisioning::write_dvd(
        &tree,
        &out,
        &DvdOptions {
            volume_id: a.volume_id.clone(),
            force: a.force,
            sync,
        },
        a.mode,
        &ctx,
        &bars,
    )?;
    let n = r.size;
    if let Some(note) = r.note.as_deref().filter(|_| !quiet && !a.json) {
        eprintln!("note: {}", escape_name(note));
    }
    if a.json {
        return print_json(&cd_json(&tree, role, &a.volume_id, Some((&out, n))))
            .map(|_| Outcome::Ok);
    }
    ui.summary(format_args!(
        "wrote {} ({}, {} entries, role {}, mode {:04o})",
        out.display(),
        human_bytes(n),
        tree.entries.len(),
        role.map(|r| r.to_string()).unwrap_or_default(),
        r.mode
    ));
    Ok(Outcome::Ok)
}

/// The `--dry-run` listing: names escaped (one entry, one line), the secret rule, each secret
/// file with the reason.
fn print_dry_run(tree: &provisioning::ConfigTree, role: Option<Role>, volume_id: &str) {
    let role = role.map(|r| r.to_string()).unwrap_or_default();
    outln!("role: {role}");
    outln!("volume id: {}", escape_name(volume_id));
    outln!("rule: {}", provisioning::SECRET_RULE);
    for g in tree.secret_patterns() {
        outln!("secret pattern: {}", escape_name(g));
    }
    for e in &tree.entries {
        let (t, size) = match e.kind {
            EntryKind::Dir => ('d', String::new()),
            EntryKind::File => ('-', e.size.to_string()),
        };
        let why = tree
            .is_secret_entry(e)
            .map(|w| format!("  (secret: {w})"))
            .unwrap_or_default();
        outln!(
            "{t} {:04o} {size:>10} {}{}",
            media_mode(e),
            escape_name(&e.rel),
            escape_name(&why)
        );
    }
    let (_, note) = provisioning::output_mode(tree, None);
    if let Some(n) = note {
        outln!("output: {}", escape_name(&n));
    }
}

fn seed_json(out: &Path, kind: &'static str, size: u64) -> Result<Outcome> {
    print_json(&super::json::CloudInitSeed {
        schema: "isotool/cloud-init-seed/1",
        output: out.display().to_string(),
        kind,
        size,
        label: (kind != "azure-custom-data").then_some(cloudinit::SEED_LABEL),
    })
    .map(|_| Outcome::Ok)
}

/// Azure custom data to `-` (stdout) or a 0600 file that none of `inputs` is.
fn write_custom_data(
    a: &CloudInitSeedArgs,
    tree: &provisioning::ConfigTree,
    doc: &str,
    inputs: &[PathBuf],
    ui: Ui,
) -> Result<Outcome> {
    if a.output.as_os_str() == "-" {
        if a.json {
            return Err(err!(
                InvalidArgument,
                "--json and -o - both want stdout: give an output file with --json"
            ));
        }
        super::stdout_write(format_args!("{doc}"));
        return Ok(Outcome::Ok);
    }
    let (opts, note) = provisioning::output_mode(tree, a.mode);
    let ins: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let o = AtomicOutput::create(
        &a.output,
        &ins,
        OutputOptions {
            force: a.force,
            sync: ui.sync,
            ..opts
        },
    )?;
    o.file().write_all(doc.as_bytes()).map_err(|e| {
        o.blame(isotool::Error::io(e, "writing the custom data").with_path(o.tmp_path()))
    })?;
    o.commit()?;
    if let Some(n) = note.filter(|_| !ui.quiet && !a.json) {
        eprintln!("note: {}", escape_name(&n));
    }
    if a.json {
        return seed_json(&a.output, "azure-custom-data", doc.len() as u64);
    }
    ui.summary(format_args!(
        "wrote {} ({} of {} bytes Azure allows)",
        a.output.display(),
        doc.len(),
        azure::AZURE_MAX_CUSTOM_DATA
    ));
    Ok(Outcome::Ok)
}

/// The seed: `user_data` and the meta-data, network-config and vendor-data files given (each
/// read within its limit and checked), a meta-data derived from the user-data otherwise.
fn read_seed(a: &CloudInitSeedArgs, user_data: Vec<u8>) -> Result<Seed> {
    let meta_data = match &a.meta_data {
        Some(p) => {
            let b = cloudinit::read_input(p, "meta-data")?;
            cloudinit::check_yaml_mapping(&b, p, "meta-data")?;
            b
        }
        None => cloudinit::default_meta_data(&user_data),
    };
    let network_config = match &a.network_config {
        Some(p) => {
            let b = cloudinit::read_input(p, "network-config")?;
            cloudinit::check_yaml_mapping(&b, p, "network-config")?;
            Some(b)
        }
        None => None,
    };
    let vendor_data = match &a.vendor_data {
        Some(p) => {
            let b = cloudinit::read_input(p, "vendor-data")?;
            cloudinit::check_user_data(&b, p)?;
            Some(b)
        }
        None => None,
    };
    Ok(Seed {
        user_data,
        meta_data,
        network_config,
        vendor_data,
    })
}

pub(crate) fn cloud_init_seed(a: CloudInitSeedArgs, ui: Ui) -> Result<Outcome> {
    let (quiet, sync) = (ui.quiet, ui.sync);
    let ctx = BuildContext::from_env()?;
    // Every file the seed is made of is an input the output must never be.
    let mut inputs: Vec<PathBuf> = [
        &a.user_data,
        &a.meta_data,
        &a.network_config,
        &a.vendor_data,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();
    let user_data = match (&a.from, &a.user_data) {
        (Some(from), _) => {
            let (tree, _) = checked_tree(from, a.role, &a.secrets, quiet)?;
            if a.output.as_os_str() != "-" {
                provisioning::refuse_output_in_tree(&tree, &a.output)?;
            }
            inputs.extend(tree.input_paths().into_iter().map(Path::to_path_buf));
            if a.azure {
                let doc = azure::azure_custom_data(&tree)?;
                return write_custom_data(&a, &tree, &doc, &inputs, ui);
            }
            azure::tree_cloud_config(&tree)?.into_bytes()
        }
        (None, Some(p)) => {
            let b = cloudinit::read_input(p, "user-data")?;
            cloudinit::check_user_data(&b, p)?;
            b
        }
        (None, None) => {
            return Err(err!(InvalidArgument, "give --user-data FILE or --from DIR"));
        }
    };
    let seed = read_seed(&a, user_data)?;
    refuse_dash(
        &a.output,
        "a seed image (only --azure custom data can go to stdout)",
    )?;
    let ins: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let n = cloudinit::write_seed_reading(
        &seed,
        a.format.format(),
        &a.output,
        &ins,
        OutputOptions::new(a.force, 0o600)
            .with_sync(sync)
            .with_mode(a.mode),
        &ctx,
    )?;
    if a.mode.is_none() && !quiet && !a.json {
        eprintln!("note: {}", cloudinit::SEED_MODE_NOTE);
    }
    if a.json {
        let kind = match a.format {
            SeedFormatArg::Iso => "nocloud-iso",
            SeedFormatArg::Vfat => "nocloud-vfat",
        };
        return seed_json(&a.output, kind, n);
    }
    ui.summary(format_args!(
        "wrote {} ({}, NoCloud seed labelled {})",
        a.output.display(),
        human_bytes(n),
        cloudinit::SEED_LABEL
    ));
    Ok(Outcome::Ok)
}
