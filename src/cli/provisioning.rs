//! `provisioning-cd` and `cloud-init-seed`.

use super::{Outcome, human_bytes};
use clap::Args;
use isotool::cloudinit::{self, Seed, SeedFormat, azure};
use isotool::context::BuildContext;
use isotool::err;
use isotool::error::Result;
use isotool::output::{AtomicOutput, OutputOptions};
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
}

pub(crate) fn parse_role(s: &str) -> std::result::Result<Role, String> {
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
pub(crate) fn checked_tree(
    from: &Path,
    role: Option<Role>,
    quiet: bool,
) -> Result<(provisioning::ConfigTree, Option<Role>)> {
    let mut report = Report::default();
    let tree = provisioning::ConfigTree::scan(from, &mut report)?;
    let role = provisioning::validate(&tree, role, &mut report);
    print_warnings(&report, quiet);
    report.check(from)?;
    Ok((tree, role))
}

pub(crate) fn provisioning_cd(a: ProvisioningCdArgs, quiet: bool, sync: bool) -> Result<Outcome> {
    let ctx = BuildContext::from_env()?;
    let (tree, role) = checked_tree(&a.from, a.role, quiet)?;
    if a.dry_run {
        let role = role.map(|r| r.to_string()).unwrap_or_default();
        println!("role: {role}");
        println!("volume id: {}", a.volume_id);
        for e in &tree.entries {
            let (t, size) = match e.kind {
                EntryKind::Dir => ('d', String::new()),
                EntryKind::File => ('-', e.size.to_string()),
            };
            println!("{t} {:04o} {size:>10} {}", media_mode(e), e.rel);
        }
        return Ok(Outcome::Ok);
    }
    let out = a
        .output
        .ok_or_else(|| err!(InvalidArgument, "--output is required"))?;
    let n = provisioning::build_dvd(
        &tree,
        &out,
        &DvdOptions {
            volume_id: a.volume_id,
            force: a.force,
            sync,
        },
        &ctx,
    )?;
    if !quiet {
        eprintln!(
            "isotool: wrote {} ({}, {} entries, role {})",
            out.display(),
            human_bytes(n),
            tree.entries.len(),
            role.map(|r| r.to_string()).unwrap_or_default()
        );
    }
    Ok(Outcome::Ok)
}

pub(crate) fn cloud_init_seed(a: CloudInitSeedArgs, quiet: bool, sync: bool) -> Result<Outcome> {
    let ctx = BuildContext::from_env()?;
    let user_data = match (&a.from, &a.user_data) {
        (Some(from), _) => {
            let (tree, _) = checked_tree(from, a.role, quiet)?;
            if a.azure {
                let doc = azure::azure_custom_data(&tree)?;
                let o = AtomicOutput::create(
                    &a.output,
                    &[],
                    OutputOptions::new(a.force, 0o600).with_sync(sync),
                )?;
                o.file().write_all(doc.as_bytes()).map_err(|e| {
                    isotool::Error::io(e, "writing the custom data").with_path(o.tmp_path())
                })?;
                o.commit()?;
                if !quiet {
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
    let n = cloudinit::write_seed(
        &seed,
        a.format,
        &a.output,
        OutputOptions::new(a.force, 0o600).with_sync(sync),
        &ctx,
    )?;
    if !quiet {
        eprintln!(
            "isotool: wrote {} ({}, NoCloud seed labelled {})",
            a.output.display(),
            human_bytes(n),
            cloudinit::SEED_LABEL
        );
    }
    Ok(Outcome::Ok)
}
