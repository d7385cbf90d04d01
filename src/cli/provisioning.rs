//! `provisioning-cd` and `cloud-init-seed`.

use super::{Outcome, human_bytes};
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
}

#[derive(Debug, Args)]
pub(crate) struct CloudInitSeedArgs {
    /// Output: a seed image, or with --azure the custom-data text (created 0600).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    /// user-data file (cloud-config, script, MIME multipart, #include, boothook, gzip).
    #[arg(long, value_name = "FILE", conflicts_with = "from")]
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
    /// Seed filesystem: iso or vfat.
    #[arg(long, default_value = "iso", value_parser = parse_format)]
    format: SeedFormat,
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
}

fn parse_mode(s: &str) -> std::result::Result<u32, String> {
    let t = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(t, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!("{s:?} is not an octal mode such as 0644")),
    }
}

fn parse_role(s: &str) -> std::result::Result<Role, String> {
    s.parse()
        .map_err(|e: isotool::Error| e.message().to_string())
}

fn parse_format(s: &str) -> std::result::Result<SeedFormat, String> {
    s.parse()
        .map_err(|e: isotool::Error| e.message().to_string())
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
fn checked_tree(
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

pub(crate) fn provisioning_cd(a: ProvisioningCdArgs, quiet: bool, sync: bool) -> Result<Outcome> {
    let ctx = BuildContext::from_env()?;
    let (tree, role) = checked_tree(&a.from, a.role, &a.secrets, quiet)?;
    if a.dry_run {
        print_dry_run(&tree, role, &a.volume_id);
        return Ok(Outcome::Ok);
    }
    let out = a
        .output
        .ok_or_else(|| err!(InvalidArgument, "--output is required"))?;
    let r = provisioning::write_dvd(
        &tree,
        &out,
        &DvdOptions {
            volume_id: a.volume_id,
            force: a.force,
            sync,
        },
        a.mode,
        &ctx,
    )?;
    if !quiet {
        if let Some(n) = &r.note {
            eprintln!("note: {}", escape_name(n));
        }
        eprintln!(
            "isotool: wrote {} ({}, {} entries, role {}, mode {:04o})",
            out.display(),
            human_bytes(r.size),
            tree.entries.len(),
            role.map(|r| r.to_string()).unwrap_or_default(),
            r.mode
        );
    }
    Ok(Outcome::Ok)
}

/// The `--dry-run` listing: names escaped (one entry, one line), the secret rule, each secret
/// file with the reason.
fn print_dry_run(tree: &provisioning::ConfigTree, role: Option<Role>, volume_id: &str) {
    let role = role.map(|r| r.to_string()).unwrap_or_default();
    println!("role: {role}");
    println!("volume id: {}", escape_name(volume_id));
    println!("rule: {}", provisioning::SECRET_RULE);
    for g in tree.secret_patterns() {
        println!("secret pattern: {}", escape_name(g));
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
        println!(
            "{t} {:04o} {size:>10} {}{}",
            media_mode(e),
            escape_name(&e.rel),
            escape_name(&why)
        );
    }
    let (_, note) = provisioning::output_mode(tree, None);
    if let Some(n) = note {
        println!("output: {}", escape_name(&n));
    }
}

pub(crate) fn cloud_init_seed(a: CloudInitSeedArgs, quiet: bool, sync: bool) -> Result<Outcome> {
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
            provisioning::refuse_output_in_tree(&tree, &a.output)?;
            inputs.extend(tree.input_paths().into_iter().map(Path::to_path_buf));
            if a.azure {
                let doc = azure::azure_custom_data(&tree)?;
                let (opts, note) = provisioning::output_mode(&tree, a.mode);
                let ins: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
                let o = AtomicOutput::create(
                    &a.output,
                    &ins,
                    OutputOptions {
                        force: a.force,
                        sync,
                        ..opts
                    },
                )?;
                o.file().write_all(doc.as_bytes()).map_err(|e| {
                    o.blame(
                        isotool::Error::io(e, "writing the custom data").with_path(o.tmp_path()),
                    )
                })?;
                o.commit()?;
                if !quiet {
                    if let Some(n) = note {
                        eprintln!("note: {}", escape_name(&n));
                    }
                    eprintln!(
                        "isotool: wrote {} ({} of {} bytes Azure allows)",
                        a.output.display(),
                        doc.len(),
                        azure::AZURE_MAX_CUSTOM_DATA
                    );
                }
                return Ok(Outcome::Ok);
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
    let seed = Seed {
        user_data,
        meta_data,
        network_config,
        vendor_data,
    };
    let ins: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let n = cloudinit::write_seed_reading(
        &seed,
        a.format,
        &a.output,
        &ins,
        OutputOptions::new(a.force, 0o600)
            .with_sync(sync)
            .with_mode(a.mode),
        &ctx,
    )?;
    if !quiet {
        if a.mode.is_none() {
            eprintln!("note: {}", cloudinit::SEED_MODE_NOTE);
        }
        eprintln!(
            "isotool: wrote {} ({}, NoCloud seed labelled {})",
            a.output.display(),
            human_bytes(n),
            cloudinit::SEED_LABEL
        );
    }
    Ok(Outcome::Ok)
}
