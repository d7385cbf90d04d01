//! `isotool remaster`: make a stock installer ISO unattended.
//!
//! Reads the boot configs of the input (isolinux and GRUB), adds an unattended entry that is
//! the default on both the BIOS and the UEFI path, puts the preseed / kickstart and `--add`
//! files on the disc, updates `md5sum.txt`, and hands the changes to the copy-and-patch engine
//! ([`crate::iso::patch`]) which keeps every other byte, so the boot records replay exactly.
//! `boot/grub/efi.img` is never touched. The seed's content is never printed.

pub mod bootcfg;
pub mod md5sum;

use crate::context::BuildContext;
use crate::disk::Progress;
use crate::err;
use crate::error::{IoContext, Result};
use crate::iso::info::{primary_tree, read_file};
use crate::iso::patch::{FileOp, PatchPlan, PatchReport, Source, patch_iso_with_progress};
use crate::iso::read::{IsoFile, Lookup, Tree};
use bootcfg::{Flavor, Unattended};
use std::path::{Path, PathBuf};

/// Largest boot config / md5sum.txt read into memory.
const MAX_TEXT: u64 = 16 << 20;

/// The seed file to inject.
#[derive(Debug, Clone)]
pub struct Seed {
    /// Installer family.
    pub flavor: Flavor,
    /// The file on the host.
    pub file: PathBuf,
    /// Its name on the disc.
    pub name: String,
}

/// Everything `remaster` needs.
#[derive(Debug, Clone)]
pub struct RemasterOptions {
    /// Stock ISO.
    pub input: PathBuf,
    /// Output ISO.
    pub output: PathBuf,
    /// Preseed or kickstart.
    pub seed: Option<Seed>,
    /// Extra kernel arguments.
    pub kernel_args: Vec<String>,
    /// Boot menu timeout in seconds.
    pub timeout: u32,
    /// New volume id.
    pub volume_id: Option<String>,
    /// Extra files: host path, ISO path.
    pub adds: Vec<(PathBuf, String)>,
    /// Do not edit boot configs.
    pub no_boot_edit: bool,
    /// Replace an existing output.
    pub force: bool,
    /// Flush the output to stable storage before renaming it into place.
    pub sync: bool,
}

/// What `remaster` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RemasterReport {
    /// Engine report.
    pub patch: PatchReport,
    /// Boot configs edited.
    pub edited: Vec<String>,
    /// What applied and what was skipped (for the user).
    pub notes: Vec<String>,
}

fn exists_file(iso: &IsoFile, t: &Tree, p: &str) -> Result<bool> {
    Ok(match t.lookup(iso, p) {
        Ok(Lookup::Found { parent, index }) => {
            let e = &parent.entries[index];
            !e.is_dir() && !e.is_symlink()
        }
        Ok(_) => false,
        Err(e) if e.kind() == crate::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    })
}

fn is_dir(iso: &IsoFile, t: &Tree, p: &str) -> Result<bool> {
    Ok(match t.lookup(iso, p) {
        Ok(Lookup::Found { parent, index }) => {
            let e = &parent.entries[index];
            e.is_dir() && !e.is_symlink()
        }
        Ok(Lookup::Root(_)) => true,
        Ok(_) => false,
        Err(e) if e.kind() == crate::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    })
}

fn text(iso: &IsoFile, t: &Tree, p: &str) -> Result<String> {
    let b = read_file(iso, t, p, MAX_TEXT)?;
    String::from_utf8(b)
        .map_err(|_| err!(Unsupported, "{p} is not UTF-8 text").with_path(iso.path()))
}

fn check_iso_path(p: &str) -> Result<String> {
    if !p.starts_with('/')
        || p.ends_with('/')
        || p.split('/').any(|c| c == ".." || c == ".")
        || p.contains("//")
        || p.chars().any(|c| c.is_control())
    {
        return Err(err!(
            InvalidArgument,
            "ISO path {p:?} must be absolute, without '.', '..' or empty components"
        ));
    }
    Ok(p.to_string())
}

/// Refuses kernel arguments and volume ids the boot configs or the descriptor cannot hold.
fn check_options(o: &RemasterOptions) -> Result<()> {
    for a in &o.kernel_args {
        bootcfg::check_kernel_arg(a)?;
    }
    if let Some(v) = &o.volume_id
        && (v.is_empty() || v.len() > 32 || !v.is_ascii() || v.chars().any(|c| c.is_control()))
    {
        return Err(err!(
            InvalidArgument,
            "volume id {v:?}: 1 to 32 ASCII characters"
        ));
    }
    Ok(())
}

/// What a remaster changes, gathered before the patch: file ops, notes for the user, the boot
/// configs edited.
struct Edits<'a> {
    iso: &'a IsoFile,
    tree: &'a Tree,
    ops: Vec<FileOp>,
    notes: Vec<String>,
    edited: Vec<String>,
    /// Seed paths named by unattended entries of an earlier run.
    previous_seeds: Vec<String>,
}

impl Edits<'_> {
    /// The seed and, unless `--no-boot-edit`, the boot configs that start it unattended.
    fn add_seed(&mut self, o: &RemasterOptions, seed: &Seed) -> Result<()> {
        let (iso, tree) = (self.iso, self.tree);
        if seed.name.is_empty()
            || seed.name.contains('/')
            || seed
                .name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
            || seed.name.len() > 64
        {
            return Err(err!(
                InvalidArgument,
                "seed name {:?}: one file name, no spaces, at most 64 bytes",
                seed.name
            ));
        }
        let meta = std::fs::metadata(&seed.file).ctx(&seed.file, "reading the seed file")?;
        if !meta.is_file() || meta.len() > MAX_TEXT {
            return Err(err!(
                InvalidArgument,
                "the seed must be a regular file under 16 MiB"
            )
            .with_path(&seed.file));
        }
        let seed_path = match seed.flavor {
            Flavor::Preseed if is_dir(iso, tree, "/preseed")? => {
                format!("/preseed/{}", seed.name)
            }
            Flavor::Preseed => {
                self.notes
                    .push("no /preseed directory on the disc: the preseed goes to the root".into());
                format!("/{}", seed.name)
            }
            Flavor::Kickstart => format!("/{}", seed.name),
        };
        self.ops.push(FileOp {
            path: seed_path.clone(),
            source: Source::File(seed.file.clone()),
        });
        let u = Unattended {
            flavor: seed.flavor,
            seed_path,
            extra_args: o.kernel_args.clone(),
            timeout: o.timeout,
        };
        if o.no_boot_edit {
            self.notes
                .push("--no-boot-edit: boot configs left as they are".into());
            return Ok(());
        }
        let bios = self.edit_bios(seed.flavor, &u, o.timeout)?;
        let uefi = self.edit_uefi(seed.flavor, &u)?;
        if !bios && !uefi {
            return Err(err!(NotFound, "no boot config to edit on this disc (isolinux or GRUB); use --no-boot-edit to only add the seed").with_path(&o.input));
        }
        Ok(())
    }

    /// BIOS path: isolinux.cfg (timeout, no gfxboot) and the label that boots the installer
    /// (in txt.cfg for a preseed when there is one). True when an unattended entry was made.
    fn edit_bios(&mut self, flavor: Flavor, u: &Unattended, timeout: u32) -> Result<bool> {
        let (iso, tree) = (self.iso, self.tree);
        let iso_cfg = "/isolinux/isolinux.cfg";
        let txt_cfg = "/isolinux/txt.cfg";
        if !exists_file(iso, tree, iso_cfg)? {
            self.notes
                .push("BIOS path: no /isolinux/isolinux.cfg found; skipped".into());
            return Ok(false);
        }
        let mut bios = false;
        let cfg = self.stripped(iso_cfg, bootcfg::strip_syslinux_unattended)?;
        let (mut new_cfg, gfx) = bootcfg::edit_isolinux_timeout(&cfg, timeout);
        if gfx {
            self.notes.push(format!(
                "{iso_cfg}: gfxboot UI disabled (it waits for a key)"
            ));
        }
        if flavor == Flavor::Preseed && exists_file(iso, tree, txt_cfg)? {
            let txt = self.stripped(txt_cfg, bootcfg::strip_syslinux_unattended)?;
            let t2 = bootcfg::edit_syslinux_labels(&txt, u).map_err(|e| e.with_path(txt_cfg))?;
            self.ops.push(FileOp {
                path: txt_cfg.into(),
                source: Source::Bytes(t2.into_bytes()),
            });
            self.edited.push(txt_cfg.to_string());
            bios = true;
        } else if bootcfg::has_syslinux_entry(&new_cfg) {
            new_cfg =
                bootcfg::edit_syslinux_labels(&new_cfg, u).map_err(|e| e.with_path(iso_cfg))?;
            bios = true;
        } else {
            self.notes.push(format!(
                "{iso_cfg}: no label with a kernel to copy; the BIOS menu has no unattended entry"
            ));
        }
        if bios {
            self.ops.push(FileOp {
                path: iso_cfg.into(),
                source: Source::Bytes(new_cfg.into_bytes()),
            });
            self.edited.push(iso_cfg.to_string());
        }
        Ok(bios)
    }

    /// UEFI path: every GRUB config with a menuentry. True when one was edited.
    fn edit_uefi(&mut self, flavor: Flavor, u: &Unattended) -> Result<bool> {
        let (iso, tree) = (self.iso, self.tree);
        let grub_candidates: &[&str] = match flavor {
            Flavor::Preseed => &["/boot/grub/grub.cfg"],
            Flavor::Kickstart => &["/EFI/BOOT/grub.cfg", "/boot/grub/grub.cfg"],
        };
        let mut found_grub = false;
        let mut uefi = false;
        for g in grub_candidates {
            if exists_file(iso, tree, g)? {
                found_grub = true;
                let cfg = self.stripped(g, bootcfg::strip_grub_unattended)?;
                if bootcfg::has_grub_entry(&cfg) {
                    let n = bootcfg::edit_grub(&cfg, u).map_err(|e| e.with_path(g))?;
                    self.ops.push(FileOp {
                        path: g.to_string(),
                        source: Source::Bytes(n.into_bytes()),
                    });
                    self.edited.push(g.to_string());
                    uefi = true;
                } else {
                    self.notes
                        .push(format!("{g}: no menuentry with a linux line; skipped"));
                }
            }
        }
        if !found_grub {
            self.notes.push(format!(
                "UEFI path: no {} found; skipped",
                grub_candidates.join(" or ")
            ));
        }
        Ok(uefi)
    }

    /// The text of a boot config without the unattended entry of an earlier run (which is
    /// replaced: the same command can be run again with a new seed); says so in the notes.
    fn stripped(
        &mut self,
        path: &str,
        strip: fn(&str) -> (String, bootcfg::Previous),
    ) -> Result<String> {
        let (cfg, prev) = strip(&text(self.iso, self.tree, path)?);
        if prev.removed {
            self.notes.push(format!(
                "{path}: the unattended entry of an earlier remaster is replaced"
            ));
            if let Some(p) = prev.seed_path {
                self.previous_seeds.push(p);
            }
        }
        Ok(cfg)
    }

    /// Seeds named by replaced entries that the new seed does not overwrite are emptied (they
    /// may hold passwords, and nothing boots them any more).
    fn empty_previous_seeds(&mut self) -> Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for p in std::mem::take(&mut self.previous_seeds) {
            if !seen.insert(p.clone())
                || self.ops.iter().any(|x| x.path == p)
                || !exists_file(self.iso, self.tree, &p)?
            {
                continue;
            }
            self.notes.push(format!(
                "{p}: the previous seed is emptied (no entry boots it any more)"
            ));
            self.ops.push(FileOp {
                path: p,
                source: Source::Bytes(Vec::new()),
            });
        }
        Ok(())
    }

    /// `--add SRC=DST` files.
    fn add_files(&mut self, adds: &[(PathBuf, String)]) -> Result<()> {
        for (src, dst) in adds {
            let dst = check_iso_path(dst)?;
            let m = std::fs::metadata(src).ctx(src, "reading a file to add")?;
            if !m.is_file() {
                return Err(err!(InvalidArgument, "--add takes regular files").with_path(src));
            }
            if self.ops.iter().any(|x| x.path == dst) {
                return Err(err!(InvalidArgument, "{dst} is given twice"));
            }
            self.ops.push(FileOp {
                path: dst,
                source: Source::File(src.clone()),
            });
        }
        Ok(())
    }

    /// md5sum.txt kept true for every changed file (the host files hashed are reported to
    /// `progress` as an "md5sum.txt" phase).
    fn update_md5sum(&mut self, progress: &dyn Progress) -> Result<()> {
        let (iso, tree) = (self.iso, self.tree);
        let given = self.ops.iter().any(|x| x.path == "/md5sum.txt");
        if exists_file(iso, tree, "/md5sum.txt")? && !given {
            let old = text(iso, tree, "/md5sum.txt")?;
            let mut total = 0u64;
            for op in &self.ops {
                if let Source::File(p) = &op.source {
                    total += std::fs::metadata(p).ctx(p, "reading a file to hash")?.len();
                }
            }
            progress.start("md5sum.txt", total);
            let files: Vec<&Path> = (self.ops.iter())
                .filter_map(|op| match &op.source {
                    Source::File(p) => Some(p.as_path()),
                    Source::Bytes(_) => None,
                })
                .collect();
            let mut file_sums = crate::checksum::md5_files(&files, progress)?.into_iter();
            let mut sums = Vec::new();
            for op in &self.ops {
                let h = match &op.source {
                    Source::Bytes(b) => crate::checksum::md5_hex(b),
                    Source::File(_) => file_sums.next().unwrap_or_default(),
                };
                sums.push((op.path.clone(), h));
            }
            progress.finish();
            let new = md5sum::update(&old, &sums);
            self.ops.push(FileOp {
                path: "/md5sum.txt".into(),
                source: Source::Bytes(new.into_bytes()),
            });
            self.edited.push("/md5sum.txt".into());
        } else if !given {
            self.notes
                .push("no /md5sum.txt on the disc; nothing to update".into());
        }
        Ok(())
    }
}

/// Runs a remaster. Returns what was done.
pub fn remaster(o: &RemasterOptions, ctx: &BuildContext) -> Result<RemasterReport> {
    remaster_with_progress(o, ctx, &crate::disk::NoProgress)
}

/// [`remaster`], reporting to `progress` a "remastering" phase (bytes of the input and the new
/// files copied, of their known total) and a "syncing" phase.
pub fn remaster_with_progress(
    o: &RemasterOptions,
    ctx: &BuildContext,
    progress: &dyn Progress,
) -> Result<RemasterReport> {
    check_options(o)?;
    // The output is never any file the run reads: the ISO, the seed, an --add source.
    let mut inputs: Vec<&Path> = vec![&o.input];
    inputs.extend(o.seed.iter().map(|s| s.file.as_path()));
    inputs.extend(o.adds.iter().map(|(p, _)| p.as_path()));
    crate::output::check_not_input(&o.output, &inputs)?;
    let iso = IsoFile::open(&o.input)?;
    let tree = primary_tree(&iso)?;
    let mut ed = Edits {
        iso: &iso,
        tree: &tree,
        ops: Vec::new(),
        notes: Vec::new(),
        edited: Vec::new(),
        previous_seeds: Vec::new(),
    };
    if let Some(seed) = &o.seed {
        ed.add_seed(o, seed)?;
    } else if !o.no_boot_edit && !o.kernel_args.is_empty() {
        return Err(err!(
            InvalidArgument,
            "--kernel-arg needs --preseed or --kickstart"
        ));
    }
    ed.add_files(&o.adds)?;
    ed.empty_previous_seeds()?;
    if ed.ops.is_empty() && o.volume_id.is_none() {
        return Err(err!(
            InvalidArgument,
            "nothing to do: give --preseed, --kickstart, --add or --volume-id"
        ));
    }
    if ed
        .ops
        .iter()
        .any(|x| x.path.eq_ignore_ascii_case("/boot/grub/efi.img"))
    {
        return Err(err!(InvalidArgument, "boot/grub/efi.img is never modified"));
    }
    ed.update_md5sum(progress)?;
    let Edits {
        ops,
        mut notes,
        edited,
        ..
    } = ed;
    drop(tree);
    drop(iso);
    // the seed may hold passwords: an output carrying one is readable by its owner only
    let mode = if o.seed.is_some() { 0o600 } else { 0o644 };
    if o.seed.is_some() {
        notes.push("the output carries the seed (it may hold passwords): created mode 0600".into());
    }
    let plan = PatchPlan {
        ops,
        volume_id: o.volume_id.clone(),
        mtime: ctx.now(),
        output: crate::output::OutputOptions {
            force: o.force,
            mode,
            sync: o.sync,
            exact: false,
        },
    };
    let patch = patch_iso_with_progress(&o.input, &o.output, &plan, progress)?;
    Ok(RemasterReport {
        patch,
        edited,
        notes,
    })
}

/// Default seed name: the file's name.
pub fn default_seed_name(p: &Path) -> Result<String> {
    p.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .ok_or_else(|| err!(InvalidArgument, "the seed path has no file name").with_path(p))
}
