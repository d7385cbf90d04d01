//! The plan: the ordered steps of a build, each with its inputs and outputs, worked out from a
//! checked build file before anything runs (`isotool build --dry-run` prints it).
//!
//! Layout (the gold-standard-images one): `OUTPUT/VERSION/NAME/PROVIDER/NAME-VERSION_PROVIDER.EXT`
//! and a `SHA256SUMS` in each provider directory. Intermediate files live in the work directory
//! `OUTPUT/VERSION/NAME/.work/`. A provider's files are written into a staging directory
//! `OUTPUT/VERSION/NAME/.PROVIDER.partial/` and the directory is renamed to `PROVIDER` only when
//! its artifact is converted, validated and summed: an interrupted build leaves nothing under a
//! final name.

use super::file::{BuildSpec, SeedFile};
use super::provider::{ArtifactKind, Media, Provider};
use std::fmt;
use std::path::{Path, PathBuf};

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Hash the stock ISO and compare with `iso_checksum` (writes nothing).
    VerifyIso,
    /// Put the seed on the ISO, make both boot paths unattended.
    Remaster,
    /// Build one of the media.
    Media(Media),
    /// Create the empty disk the installer installs into.
    BlankDisk,
    /// Boot the installer in a VM and wait for it to power off.
    Install,
    /// Write a provider's disk format or package.
    Convert(Provider),
    /// Check the provider's artifact.
    Validate(Provider),
    /// Write the provider's SHA256SUMS.
    Sums(Provider),
    /// Rename the staging directories into place.
    Publish,
}

/// One step.
#[derive(Debug, Clone)]
pub struct Step {
    /// What it does.
    pub kind: StepKind,
    /// Stable name (`convert:hyperv`), for `--stop-after` and progress.
    pub id: String,
    /// One line for people.
    pub what: String,
    /// Files read.
    pub inputs: Vec<PathBuf>,
    /// Files written.
    pub outputs: Vec<PathBuf>,
}

/// Where everything goes.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `OUTPUT/VERSION/NAME`.
    pub image_dir: PathBuf,
    /// `OUTPUT/VERSION/NAME/.work`.
    pub work: PathBuf,
    name: String,
    version: String,
}

impl Layout {
    /// The layout of a build.
    pub fn new(spec: &BuildSpec) -> Self {
        let image_dir = spec.output_directory.join(&spec.version).join(&spec.name);
        Layout {
            work: image_dir.join(".work"),
            image_dir,
            name: spec.name.clone(),
            version: spec.version.clone(),
        }
    }

    /// The remastered installer ISO.
    pub fn installer(&self) -> PathBuf {
        self.work.join("installer.iso")
    }

    /// The preseed as it goes on the disc (same file name as the build file's).
    pub fn disc_seed(&self, seed: &Path) -> PathBuf {
        let name = seed
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| "preseed.seed".into());
        self.work.join("seed").join(name)
    }

    /// A medium's file.
    pub fn media(&self, m: Media) -> PathBuf {
        self.work.join(match m {
            Media::ProvisioningDvd => "provisioning.iso",
            Media::NocloudSeed => "seed.iso",
            Media::AzureCustomData => "custom-data.txt",
        })
    }

    /// The disk the installer installs into.
    pub fn disk(&self) -> PathBuf {
        self.work.join("disk.raw")
    }

    /// The install's serial console log.
    pub fn serial_log(&self) -> PathBuf {
        self.work.join("install-serial.log")
    }

    /// `OUTPUT/VERSION/NAME/PROVIDER`.
    pub fn provider_dir(&self, p: Provider) -> PathBuf {
        self.image_dir.join(p.name())
    }

    /// `OUTPUT/VERSION/NAME/.PROVIDER.partial`.
    pub fn staging_dir(&self, p: Provider) -> PathBuf {
        self.image_dir.join(format!(".{}.partial", p.name()))
    }

    /// The artifact's file name.
    pub fn artifact_name(&self, p: Provider) -> String {
        p.artifact_name(&self.name, &self.version)
    }

    /// The artifact in its staging directory.
    pub fn staged_artifact(&self, p: Provider) -> PathBuf {
        self.staging_dir(p).join(self.artifact_name(p))
    }

    /// The artifact's final path.
    pub fn artifact(&self, p: Provider) -> PathBuf {
        self.provider_dir(p).join(self.artifact_name(p))
    }
}

/// A build's plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The checked build file.
    pub spec: BuildSpec,
    /// Where everything goes.
    pub layout: Layout,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// An already installed disk given instead of installing (no blank-disk, no install).
    pub installed_disk: Option<PathBuf>,
}

/// The media a build makes: the provisioning DVD always (the config tree's disc, what a Hyper-V
/// VM of the image boots with), the others when a provider's first boot reads them.
pub fn media_needed(providers: &[Provider]) -> Vec<Media> {
    let mut v = vec![Media::ProvisioningDvd];
    for p in providers {
        v.extend_from_slice(p.media());
    }
    v.sort();
    v.dedup();
    v
}

fn step(
    kind: StepKind,
    id: String,
    what: String,
    inputs: Vec<PathBuf>,
    outputs: Vec<PathBuf>,
) -> Step {
    Step {
        kind,
        id,
        what,
        inputs,
        outputs,
    }
}

fn media_step(spec: &BuildSpec, l: &Layout, m: Media) -> Step {
    let (id, what) = match m {
        Media::ProvisioningDvd => (
            "provisioning-dvd",
            format!(
                "provisioning DVD (Rock Ridge + Joliet, label {})",
                spec.cd_label
            ),
        ),
        Media::NocloudSeed => (
            "nocloud-seed",
            "NoCloud seed (ISO labelled cidata)".to_string(),
        ),
        Media::AzureCustomData => (
            "azure-custom-data",
            "Azure custom data (#cloud-config, at most 65,535 bytes)".to_string(),
        ),
    };
    step(
        StepKind::Media(m),
        id.into(),
        what,
        vec![spec.config.clone()],
        vec![l.media(m)],
    )
}

fn provider_steps(spec: &BuildSpec, l: &Layout, disk: &Path, p: Provider, out: &mut Vec<Step>) {
    let staged = l.staged_artifact(p);
    let verb = match p.artifact() {
        ArtifactKind::Disk(_) => "convert",
        ArtifactKind::Package(_) => "pack",
    };
    out.push(step(
        StepKind::Convert(p),
        format!("{verb}:{}", p.name()),
        p.describe(spec.disk_block_size),
        vec![disk.to_path_buf()],
        vec![staged.clone()],
    ));
    let target = match p.validation_target(spec.firmware) {
        None if matches!(p.artifact(), ArtifactKind::Package(_)) => {
            "members, manifest/metadata, the disk's partition table".into()
        }
        Some(t) => format!(
            "for {}",
            serde_json::to_value(t)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        ),
        None => "partition table".into(),
    };
    out.push(step(
        StepKind::Validate(p),
        format!("validate:{}", p.name()),
        target,
        vec![staged.clone()],
        vec![],
    ));
    out.push(step(
        StepKind::Sums(p),
        format!("sha256sums:{}", p.name()),
        "SHA256SUMS".into(),
        vec![staged],
        vec![l.staging_dir(p).join("SHA256SUMS")],
    ));
}

/// Verifying the stock ISO and remastering it into the unattended installer.
fn installer_steps(spec: &BuildSpec, l: &Layout) -> Vec<Step> {
    let mut s = Vec::new();
    let sum = match &spec.iso_checksum.from_file {
        Some(f) => format!("sha256:{} (from {})", spec.iso_checksum.sha256, f.display()),
        None => format!("sha256:{}", spec.iso_checksum.sha256),
    };
    s.push(step(
        StepKind::VerifyIso,
        "verify-iso".into(),
        format!("SHA-256 must be {sum}"),
        vec![spec.iso.clone()],
        vec![],
    ));
    let (seed_kind, mut outs) = match &spec.seed {
        SeedFile::Preseed(p) => ("preseed (isotool/image_* answered)", vec![l.disc_seed(p)]),
        SeedFile::Kickstart(_) => ("kickstart", vec![]),
    };
    outs.push(l.installer());
    let mut args = String::new();
    if !spec.boot_args.is_empty() {
        args = format!(", kernel args {}", spec.boot_args.join(" "));
    }
    s.push(step(
        StepKind::Remaster,
        "remaster".into(),
        format!("unattended BIOS and UEFI boot with the {seed_kind}{args}"),
        vec![spec.iso.clone(), spec.seed.path().to_path_buf()],
        outs,
    ));
    s
}

/// The blank disk and the unattended install onto it.
fn install_steps(spec: &BuildSpec, l: &Layout) -> [Step; 2] {
    [
        step(
            StepKind::BlankDisk,
            "blank-disk".into(),
            format!(
                "raw, sparse, {} bytes ({} MiB)",
                spec.disk_size,
                spec.disk_size >> 20
            ),
            vec![],
            vec![l.disk()],
        ),
        step(
            StepKind::Install,
            "install".into(),
            format!(
                "qemu {}, {} firmware, {} MiB, {} CPU(s), accel {}, timeout {}s: boot the installer, wait for power-off",
                spec.machine_type,
                spec.firmware.name(),
                spec.memory,
                spec.cpus,
                spec.accel,
                spec.shutdown_timeout.as_secs()
            ),
            vec![l.installer(), l.disk()],
            vec![l.disk(), l.serial_log()],
        ),
    ]
}

impl Plan {
    /// The plan of a checked build file; `installed_disk` skips the blank disk and the install.
    pub fn new(spec: BuildSpec, installed_disk: Option<PathBuf>) -> Plan {
        let l = Layout::new(&spec);
        let mut s = installer_steps(&spec, &l);
        for m in media_needed(&spec.providers) {
            s.push(media_step(&spec, &l, m));
        }
        let disk = match &installed_disk {
            Some(d) => d.clone(),
            None => {
                s.extend(install_steps(&spec, &l));
                l.disk()
            }
        };
        for p in &spec.providers {
            provider_steps(&spec, &l, &disk, *p, &mut s);
        }
        let staged: Vec<PathBuf> = spec.providers.iter().map(|p| l.staging_dir(*p)).collect();
        let finals: Vec<PathBuf> = spec
            .providers
            .iter()
            .flat_map(|p| [l.artifact(*p), l.provider_dir(*p).join("SHA256SUMS")])
            .collect();
        s.push(step(
            StepKind::Publish,
            "publish".into(),
            "rename each provider directory into place".into(),
            staged,
            finals,
        ));
        Plan {
            spec,
            layout: l,
            steps: s,
            installed_disk,
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.spec;
        writeln!(f, "build {} {} ({})", s.name, s.version, s.file.display())?;
        writeln!(f, "output: {}", self.layout.image_dir.display())?;
        writeln!(f, "work:   {}", self.layout.work.display())?;
        let providers: Vec<&str> = s.providers.iter().map(|p| p.name()).collect();
        writeln!(f, "providers: {}", providers.join(", "))?;
        if let Some(m) = s.recipe_min {
            writeln!(
                f,
                "disk: {} bytes; the partition recipe needs at least {m}",
                s.disk_size
            )?;
        }
        for n in &s.notes {
            writeln!(f, "note: {n}")?;
        }
        let width = self.steps.iter().map(|st| st.id.len()).max().unwrap_or(0);
        for (i, st) in self.steps.iter().enumerate() {
            writeln!(f, "{:>2}. {:<width$}  {}", i + 1, st.id, st.what)?;
            for p in &st.inputs {
                writeln!(f, "      in:  {}", p.display())?;
            }
            for p in &st.outputs {
                writeln!(f, "      out: {}", p.display())?;
            }
        }
        Ok(())
    }
}
