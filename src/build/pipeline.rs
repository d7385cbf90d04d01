//! Runs a plan, step by step, sending events to an observer.
//!
//! Everything that can be checked is checked before the first write: the build file (see
//! [`super::file`]), existing outputs, then the ISO's checksum (a mismatch stops the build with
//! nothing written). Intermediate files go to the work directory; each provider's files to its
//! staging directory, renamed into place by the last step.

use super::file::Firmware;
use super::plan::{Plan, Step, StepKind};
use super::provider::{ArtifactKind, Media, Provider};
use super::{Event, Observer, sums};
use crate::cloudinit::{self, SeedFormat, azure};
use crate::context::BuildContext;
use crate::disk::OpenOptions;
use crate::disk::Progress;
use crate::err;
use crate::error::{IoContext, Result};
use crate::image::convert::{self, ConvertOptions, CreateOptions, TargetFormat, WriteOptions};
use crate::output::{AtomicOutput, OutputOptions};
use crate::pack::{self, PackOptions};
use crate::provisioning::{self, ConfigTree, DvdOptions};
use crate::remaster::{self, RemasterOptions, Seed, bootcfg::Flavor};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How to run a plan.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Replace provider directories of an earlier build of the same name and version.
    pub force: bool,
    /// Stop after the step with this id (the work directory keeps what was made; nothing is
    /// published).
    pub stop_after: Option<String>,
}

/// How long a step took.
#[derive(Debug, Clone, Serialize)]
pub struct StepTime {
    /// Step id.
    pub step: String,
    /// Seconds.
    pub seconds: f64,
}

/// A published artifact.
#[derive(Debug, Clone, Serialize)]
pub struct Artifact {
    /// Provider.
    pub provider: Provider,
    /// Final path.
    pub path: PathBuf,
    /// SHA-256 (as in its SHA256SUMS).
    pub sha256: String,
    /// File size in bytes.
    pub size: u64,
}

/// What a build did.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// Each step run, in order.
    pub steps: Vec<StepTime>,
    /// Published artifacts (empty when stopped early).
    pub artifacts: Vec<Artifact>,
    /// The step the build stopped after, when asked to stop early.
    pub stopped_after: Option<String>,
    /// The work directory.
    pub work: PathBuf,
}

/// Turns the library's byte progress into step events.
struct StepProgress<'a> {
    obs: &'a dyn Observer,
    index: usize,
    done: AtomicU64,
    total: AtomicU64,
}

impl<'a> StepProgress<'a> {
    fn new(obs: &'a dyn Observer, index: usize) -> Self {
        StepProgress {
            obs,
            index,
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }
}

impl Progress for StepProgress<'_> {
    fn start(&self, _phase: &str, total: u64) {
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        self.obs.event(&Event::StepProgress {
            index: self.index,
            done: 0,
            total,
        });
    }
    fn advance(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        self.obs.event(&Event::StepProgress {
            index: self.index,
            done,
            total: self.total.load(Ordering::Relaxed),
        });
    }
    fn note(&self, msg: &str) {
        self.obs.event(&Event::Note {
            index: self.index,
            message: msg,
        });
    }
}

/// State carried between steps.
struct Run<'a> {
    plan: &'a Plan,
    ctx: &'a BuildContext,
    obs: &'a dyn Observer,
    tree: Option<ConfigTree>,
    sha256: BTreeMap<&'static str, String>,
}

/// Checks what only the run can refuse, before anything is written: the `--stop-after` step
/// exists, an installed disk given instead of an install exists, and no earlier build of the
/// same name and version is in the way (unless `force`).
pub fn preflight(plan: &Plan, opts: &RunOptions) -> Result<()> {
    super::apart::check(plan)?;
    if let Some(s) = &opts.stop_after
        && !plan.steps.iter().any(|st| &st.id == s)
    {
        let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        return Err(err!(
            InvalidArgument,
            "--stop-after {s:?}: no such step (steps: {})",
            ids.join(", ")
        ));
    }
    if let Some(d) = &plan.installed_disk {
        let m = std::fs::metadata(d).ctx(d, "reading the installed disk")?;
        if !m.is_file() {
            return Err(
                err!(InvalidArgument, "the installed disk is not a regular file").with_path(d),
            );
        }
    }
    if !opts.force {
        for p in &plan.spec.providers {
            let dir = plan.layout.provider_dir(*p);
            if std::fs::symlink_metadata(&dir).is_ok() {
                return Err(err!(
                    OutputExists,
                    "an earlier build of {} {} is there (use --force to replace it)",
                    plan.spec.name,
                    plan.spec.version
                )
                .with_path(dir));
            }
        }
    }
    Ok(())
}

/// Runs the plan. The first failing step's error is returned; nothing is published then.
pub fn run(
    plan: &Plan,
    opts: &RunOptions,
    ctx: &BuildContext,
    obs: &dyn Observer,
) -> Result<BuildReport> {
    preflight(plan, opts)?;
    obs.event(&Event::Started(plan));
    let mut r = Run {
        plan,
        ctx,
        obs,
        tree: None,
        sha256: BTreeMap::new(),
    };
    let mut times = Vec::new();
    let mut stopped_after = None;
    for (index, step) in plan.steps.iter().enumerate() {
        obs.event(&Event::StepStarted { index, step });
        let t = Instant::now();
        r.step(index, step)?;
        let elapsed = t.elapsed();
        obs.event(&Event::StepFinished {
            index,
            step,
            elapsed,
        });
        times.push(StepTime {
            step: step.id.clone(),
            seconds: elapsed.as_secs_f64(),
        });
        if opts.stop_after.as_deref() == Some(step.id.as_str()) {
            stopped_after = Some(step.id.clone());
            break;
        }
    }
    let artifacts = if stopped_after.is_some() {
        Vec::new()
    } else {
        r.artifacts()?
    };
    Ok(BuildReport {
        steps: times,
        artifacts,
        stopped_after,
        work: plan.layout.work.clone(),
    })
}

/// Removes a directory this build owns (work or staging), if it is there.
fn remove_owned_dir(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(dir).ctx(dir, "removing a stale directory"),
        Ok(_) => std::fs::remove_file(dir).ctx(dir, "removing a stale file"),
        Err(_) => Ok(()),
    }
}

/// SHA-256 of a file, reported as step progress.
fn sha256_with_progress(path: &Path, progress: &dyn Progress) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).ctx(path, "opening the ISO")?;
    let len = f.metadata().ctx(path, "reading the ISO's metadata")?.len();
    progress.start("sha256", len);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).ctx(path, "reading the ISO")?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        progress.advance(n as u64);
    }
    progress.finish();
    Ok(crate::checksum::hex(&h.finalize()))
}

impl Run<'_> {
    fn step(&mut self, index: usize, step: &Step) -> Result<()> {
        let progress = StepProgress::new(self.obs, index);
        let spec = &self.plan.spec;
        let l = &self.plan.layout;
        match step.kind {
            StepKind::VerifyIso => {
                let got = sha256_with_progress(&spec.iso, &progress)?;
                if got != spec.iso_checksum.sha256 {
                    return Err(err!(
                        BadChecksum,
                        "the ISO's SHA-256 is {got}, iso_checksum says {}: nothing was written",
                        spec.iso_checksum.sha256
                    )
                    .with_path(&spec.iso));
                }
                self.prepare_dirs()
            }
            StepKind::Remaster => self.remaster(),
            StepKind::Media(m) => self.media(m),
            StepKind::BlankDisk => {
                let o = CreateOptions {
                    size: spec.disk_size,
                    format: TargetFormat::Raw,
                    write: WriteOptions::default(),
                    force: true,
                    sha256: false,
                    sync: true,
                };
                convert::create(&l.disk(), &o, self.ctx, &progress).map(|_| ())
            }
            StepKind::Install => super::install::install(self.plan, index, self.obs),
            StepKind::Convert(p) => self.convert(p, step, &progress),
            StepKind::Validate(p) => {
                let disk = self.plan.installed_disk.clone().unwrap_or_else(|| l.disk());
                validate(spec, p, &l.staged_artifact(p), &disk)
            }
            StepKind::Sums(p) => self.sums(p),
            StepKind::Publish => self.publish(),
        }
    }

    /// A fresh work directory; stale staging directories of an interrupted build removed.
    fn prepare_dirs(&self) -> Result<()> {
        let l = &self.plan.layout;
        remove_owned_dir(&l.work)?;
        for p in &self.plan.spec.providers {
            remove_owned_dir(&l.staging_dir(*p))?;
        }
        std::fs::create_dir_all(&l.work).ctx(&l.work, "creating the work directory")
    }

    fn tree(&mut self) -> Result<&ConfigTree> {
        if self.tree.is_none() {
            let (tree, _, _) = provisioning::check(&self.plan.spec.config, None)?;
            self.tree = Some(tree);
        }
        Ok(self.tree.as_ref().expect("just set"))
    }

    /// The seed as it goes on the disc: a preseed gets the image's identity answered (see
    /// [`super::seed`]) in a work copy of the same file name; a kickstart goes as it is.
    fn seed_for_disc(&self) -> Result<(Flavor, PathBuf)> {
        let spec = &self.plan.spec;
        let file = match &spec.seed {
            super::file::SeedFile::Kickstart(k) => return Ok((Flavor::Kickstart, k.clone())),
            super::file::SeedFile::Preseed(p) => p,
        };
        let text = std::fs::read_to_string(file).ctx(file, "reading the preseed")?;
        let answered = super::seed::answer(
            &text,
            &[
                (super::seed::IMAGE_QUESTIONS[0], &spec.name),
                (super::seed::IMAGE_QUESTIONS[1], &spec.short_name),
                (super::seed::IMAGE_QUESTIONS[2], &spec.version),
            ],
        );
        let out = self.plan.layout.disc_seed(file);
        let dir = out.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).ctx(dir, "creating the work directory")?;
        let o = AtomicOutput::create(&out, &[file], OutputOptions::new(true, 0o600))?;
        o.file()
            .write_all(answered.as_bytes())
            .ctx(o.tmp_path(), "writing the preseed")?;
        Ok((Flavor::Preseed, o.commit()?))
    }

    fn remaster(&self) -> Result<()> {
        let spec = &self.plan.spec;
        let (flavor, file) = self.seed_for_disc()?;
        let o = RemasterOptions {
            input: spec.iso.clone(),
            output: self.plan.layout.installer(),
            seed: Some(Seed {
                flavor,
                name: remaster::default_seed_name(&file)?,
                file,
            }),
            kernel_args: spec.boot_args.clone(),
            timeout: 1,
            volume_id: None,
            adds: Vec::new(),
            no_boot_edit: false,
            force: true,
            sync: true,
        };
        remaster::remaster(&o, self.ctx).map(|_| ())
    }

    fn media(&mut self, m: Media) -> Result<()> {
        let out = self.plan.layout.media(m);
        let label = self.plan.spec.cd_label.clone();
        let ctx = self.ctx;
        let tree = self.tree()?;
        match m {
            Media::ProvisioningDvd => {
                let o = DvdOptions {
                    volume_id: label,
                    force: true,
                    sync: true,
                };
                provisioning::build_dvd(tree, &out, &o, ctx).map(|_| ())
            }
            Media::NocloudSeed => {
                let user_data = azure::tree_cloud_config(tree)?.into_bytes();
                let seed = cloudinit::Seed {
                    meta_data: cloudinit::default_meta_data(&user_data),
                    user_data,
                    network_config: None,
                    vendor_data: None,
                };
                cloudinit::write_seed(
                    &seed,
                    SeedFormat::Iso,
                    &out,
                    OutputOptions::new(true, 0o600),
                    ctx,
                )
                .map(|_| ())
            }
            Media::AzureCustomData => {
                let doc = azure::azure_custom_data(tree)?;
                let o = AtomicOutput::create(&out, &[], OutputOptions::new(true, 0o600))?;
                o.file()
                    .write_all(doc.as_bytes())
                    .ctx(o.tmp_path(), "writing the custom data")?;
                o.commit().map(|_| ())
            }
        }
    }

    fn convert(&mut self, p: Provider, step: &Step, progress: &dyn Progress) -> Result<()> {
        let l = &self.plan.layout;
        let dir = l.staging_dir(p);
        std::fs::create_dir_all(&dir).ctx(&dir, "creating the staging directory")?;
        let format = match p.artifact() {
            ArtifactKind::Disk(f) => f,
            ArtifactKind::Package(t) => return self.pack(p, t, step, progress),
        };
        let o = ConvertOptions {
            format,
            write: WriteOptions {
                block_size: p.block_size(self.plan.spec.disk_block_size),
                ..WriteOptions::default()
            },
            azure: p.azure_rules(),
            sha256: true,
            force: true,
            open: OpenOptions::default(),
            sync: OutputOptions::default().sync,
        };
        let r = convert::convert(
            &step.inputs[0],
            &l.staged_artifact(p),
            &o,
            self.ctx,
            progress,
        )?;
        let h = r
            .sha256
            .ok_or_else(|| err!(Io, "convert returned no SHA-256"))?;
        self.sha256.insert(p.name(), h);
        Ok(())
    }

    /// Packs the installed disk for a package provider; its SHA-256 is read back from the file.
    fn pack(
        &mut self,
        p: Provider,
        target: pack::Target,
        step: &Step,
        progress: &dyn Progress,
    ) -> Result<()> {
        let spec = &self.plan.spec;
        let out = self.plan.layout.staged_artifact(p);
        let input = &step.inputs[0];
        let src = crate::image::open_image(input, &OpenOptions::default())?;
        let o = PackOptions {
            name: package_name(&spec.name),
            cpus: spec.cpus as u32,
            memory_mib: spec.memory,
            firmware: match spec.firmware {
                Firmware::Bios => pack::Firmware::Bios,
                Firmware::Uefi | Firmware::UefiSecure => pack::Firmware::Efi,
            },
            force: true,
            sync: OutputOptions::default().sync,
        };
        pack::pack(&*src, input, &out, target, &o, self.ctx, progress)?;
        let f = std::fs::File::open(&out).ctx(&out, "reading the package")?;
        let h = crate::checksum::sha256_file(&f, &out)?;
        self.sha256.insert(p.name(), h);
        Ok(())
    }

    fn sums(&self, p: Provider) -> Result<()> {
        let l = &self.plan.layout;
        let h = self.sha256.get(p.name()).ok_or_else(|| {
            err!(
                NotFound,
                "no SHA-256 for {}: the convert step did not run",
                p.name()
            )
        })?;
        let text = sums::render(&[(l.artifact_name(p), h.clone())]);
        let path = l.staging_dir(p).join("SHA256SUMS");
        let o = AtomicOutput::create(&path, &[], OutputOptions::new(true, 0o644))?;
        o.file()
            .write_all(text.as_bytes())
            .ctx(o.tmp_path(), "writing SHA256SUMS")?;
        o.commit().map(|_| ())
    }

    /// Renames each staging directory into place; an earlier build's directory (allowed by
    /// `--force` in preflight) is moved aside first and removed after.
    fn publish(&self) -> Result<()> {
        let l = &self.plan.layout;
        for p in &self.plan.spec.providers {
            let staged = l.staging_dir(*p);
            let fin = l.provider_dir(*p);
            let old = l.image_dir.join(format!(".{}.old", p.name()));
            remove_owned_dir(&old)?;
            let had_old = std::fs::symlink_metadata(&fin).is_ok();
            if had_old {
                std::fs::rename(&fin, &old).ctx(&fin, "moving the earlier build aside")?;
            }
            std::fs::rename(&staged, &fin)
                .ctx(&fin, "renaming the provider directory into place")?;
            if had_old {
                remove_owned_dir(&old)?;
            }
        }
        if OutputOptions::default().sync
            && let Ok(d) = std::fs::File::open(&l.image_dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn artifacts(&self) -> Result<Vec<Artifact>> {
        let l = &self.plan.layout;
        let mut v = Vec::new();
        for p in &self.plan.spec.providers {
            let path = l.artifact(*p);
            let size = std::fs::metadata(&path)
                .ctx(&path, "reading the artifact")?
                .len();
            v.push(Artifact {
                provider: *p,
                sha256: self.sha256.get(p.name()).cloned().unwrap_or_default(),
                path,
                size,
            });
        }
        Ok(v)
    }
}

/// The machine name inside a package (OVF, Vagrant): the build's name, `+` (which the build
/// file allows and OVF names do not) as `-`.
fn package_name(name: &str) -> String {
    name.replace('+', "-")
}

/// Validates an artifact for its provider: the platform's rules when it has a target; a package
/// read back whole (members, manifest hashes, metadata, the disk's magic); and in every case a
/// partition table on the disk (a disk without one was not installed). A package's disk is the
/// installed disk it was packed from.
fn validate(spec: &super::BuildSpec, p: Provider, path: &Path, disk: &Path) -> Result<()> {
    let mut table_of = path;
    if let ArtifactKind::Package(t) = p.artifact() {
        pack::read::verify(path, t, &package_name(&spec.name))?;
        table_of = disk;
    }
    if let Some(target) = p.validation_target(spec.firmware) {
        let v = crate::image::validate::validate(path, target, &OpenOptions::default());
        if !v.ok {
            let blocking: Vec<String> = v
                .findings
                .iter()
                .filter(|f| f.severity == crate::report::Severity::Error)
                .map(|f| f.to_string())
                .collect();
            return Err(err!(
                InvalidConfig,
                "the {} artifact does not pass validation: {}",
                p.name(),
                blocking.join("; ")
            )
            .with_path(path));
        }
    }
    let img = crate::image::open_image(table_of, &OpenOptions::default())?;
    let parts = crate::gpt::inspect(&*img)?;
    if parts.partitions().is_empty() {
        return Err(err!(
            InvalidConfig,
            "the {} artifact has no partition table: the installer did not install onto the disk",
            p.name()
        )
        .with_path(table_of));
    }
    Ok(())
}

/// Time since `t`, for status lines.
pub fn elapsed_text(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}
