//! A build's inputs and the directories it owns are kept apart: a build removes its work and
//! staging directories when it starts, and with `--force` replaces each provider's directory,
//! so an input inside one of them (an installed disk taken from an earlier build's `raw/`, a
//! preseed in `.work/`) would be destroyed, and an owned directory inside the config tree
//! would put the build's own outputs on the provisioning DVD. Both are refused, by file
//! identity (device and inode, symlinks resolved), before anything is written.

use super::file::SeedFile;
use super::plan::Plan;
use crate::err;
use crate::error::Result;
use crate::output::{FileId, existing_ancestor_ids};
use std::path::PathBuf;

/// (what, path) of every file or directory a build reads.
pub fn inputs(plan: &Plan) -> Vec<(&'static str, PathBuf)> {
    let s = &plan.spec;
    let mut v = vec![
        ("build file", s.file.clone()),
        ("ISO", s.iso.clone()),
        ("config tree", s.config.clone()),
    ];
    v.push(match &s.seed {
        SeedFile::Preseed(p) => ("preseed", p.clone()),
        SeedFile::Kickstart(p) => ("kickstart", p.clone()),
    });
    if let Some(f) = &s.iso_checksum.from_file {
        v.push(("ISO checksum file", f.clone()));
    }
    if let Some(d) = &plan.installed_disk {
        v.push(("installed disk", d.clone()));
    }
    v
}

/// (what, path) of every directory the build removes or replaces.
pub fn owned_dirs(plan: &Plan) -> Vec<(String, PathBuf)> {
    let l = &plan.layout;
    let mut v = vec![("work directory".to_string(), l.work.clone())];
    for p in &plan.spec.providers {
        let n = p.name();
        v.push((format!("{n} staging directory"), l.staging_dir(*p)));
        v.push((format!("{n} directory"), l.provider_dir(*p)));
        v.push((
            format!("{n} directory's old copy"),
            l.image_dir.join(format!(".{n}.old")),
        ));
    }
    v
}

/// Refuses a build one of whose inputs lies in a directory it owns, or whose owned
/// directories lie in (or are) an input directory; the error names both.
pub fn check(plan: &Plan) -> Result<()> {
    let owned = owned_dirs(plan);
    for (what, input) in inputs(plan) {
        let Some(iid) = FileId::of(&input) else {
            continue;
        };
        let above_input = existing_ancestor_ids(&input);
        let input_is_dir = input.is_dir();
        for (dname, dir) in &owned {
            if let Some(did) = FileId::of(dir)
                && above_input.contains(&did)
            {
                return Err(err!(
                    SameFile,
                    "the {what} {} is inside the {dname} {}, which the build removes or \
                     replaces: move it out of the output directory",
                    input.display(),
                    dir.display()
                )
                .with_path(&input));
            }
            if input_is_dir && existing_ancestor_ids(dir).contains(&iid) {
                return Err(err!(
                    SameFile,
                    "the {dname} {} would be inside the {what} {}: the build would read its \
                     own outputs; choose an output_directory outside it",
                    dir.display(),
                    input.display()
                )
                .with_path(&input));
            }
        }
    }
    Ok(())
}
