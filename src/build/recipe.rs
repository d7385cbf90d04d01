//! The smallest disk a seed's partition recipe fits in, so a `disk_size` that is too small is
//! refused before any VM starts (instead of an installer that stops at a partman question).
//!
//! Preseed: `partman-auto/expert_recipe` (partman's own format: each partition starts with
//! `MIN PRIORITY MAX FS`, sizes in megabytes or `N%` of the RAM, and ends with a lone `.`).
//! partman's megabyte is 1,000,000 bytes, the fixture installer's is 1 MiB: sizes are counted in
//! MiB, the larger reading, so a disk that passes holds the recipe either way. Kickstart: `part ... --size=MIB`. Built-in recipes (`atomic`,
//! `home`, `multi`) and `autopart` are sized by the installer: the minimum is unknown.

use super::file::SeedFile;
use crate::err;
use crate::error::{IoContext, Result};

/// Room a GPT and partition alignment take besides the partitions: 1 MiB at the start (first
/// partition at sector 2048), the backup table at the end.
pub const TABLE_OVERHEAD: u64 = 2 << 20;

/// A recipe megabyte, read as MiB (see the module docs).
const RECIPE_MB: u64 = 1 << 20;

/// What the recipe needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Minimum {
    /// At least this many bytes; the string says where the number comes from.
    Bytes(u64, String),
    /// Unknown, and why.
    Unknown(String),
}

/// Joins backslash-continued lines (debconf's preseed syntax).
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if let Some(head) = line.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(line);
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The value of a preseed question (`OWNER QUESTION TYPE VALUE`), the last one winning.
fn preseed_value(lines: &[String], question: &str) -> Option<String> {
    let mut found = None;
    for l in lines {
        let t = l.trim_start();
        if t.starts_with('#') {
            continue;
        }
        let mut it = t.splitn(4, char::is_whitespace).filter(|s| !s.is_empty());
        let (_owner, q) = (it.next(), it.next());
        if q == Some(question) {
            let rest = t
                .split_once(question)
                .map(|x| x.1)
                .unwrap_or("")
                .trim_start();
            let value = rest
                .split_once(char::is_whitespace)
                .map(|x| x.1)
                .unwrap_or("");
            found = Some(value.trim().to_string());
        }
    }
    found
}

/// Sum of the minimum sizes of an expert recipe, in bytes.
pub fn expert_recipe_minimum(recipe: &str, memory_mib: u64) -> std::result::Result<u64, String> {
    let body = recipe.split_once("::").map(|x| x.1).unwrap_or(recipe);
    let mut total = 0u64;
    let mut part: Vec<&str> = Vec::new();
    let mut parts = 0;
    for tok in body.split_whitespace().chain(std::iter::once(".")) {
        if tok != "." {
            part.push(tok);
            continue;
        }
        if part.is_empty() {
            continue;
        }
        let min = part[0];
        let bytes = if let Some(pct) = min.strip_suffix('%') {
            let p: u64 = pct
                .parse()
                .map_err(|_| format!("partition {}: bad minimum {min:?}", parts + 1))?;
            memory_mib * (1 << 20) * p / 100
        } else {
            let mb: u64 = min
                .parse()
                .map_err(|_| format!("partition {}: bad minimum {min:?}", parts + 1))?;
            mb * RECIPE_MB
        };
        if part.len() < 4 {
            return Err(format!(
                "partition {}: expected MIN PRIORITY MAX FS",
                parts + 1
            ));
        }
        total += bytes;
        parts += 1;
        part.clear();
    }
    if parts == 0 {
        return Err("no partition in the recipe".into());
    }
    Ok(total + TABLE_OVERHEAD)
}

fn kickstart_minimum(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    for l in text.lines() {
        let t = l.trim();
        if !(t.starts_with("part ") || t.starts_with("partition ")) {
            continue;
        }
        for w in t.split_whitespace() {
            if let Some(n) = w
                .strip_prefix("--size=")
                .and_then(|n| n.parse::<u64>().ok())
            {
                total += n << 20;
                any = true;
            }
        }
    }
    any.then_some(total + TABLE_OVERHEAD)
}

/// The smallest disk the seed's recipe fits in.
pub fn minimum_disk(seed: &SeedFile, memory_mib: u64) -> Result<Minimum> {
    let path = seed.path();
    let text = std::fs::read(path).ctx(path, "reading the seed")?;
    let text = String::from_utf8_lossy(&text);
    match seed {
        SeedFile::Preseed(_) => {
            let lines = logical_lines(&text);
            if let Some(r) = preseed_value(&lines, "partman-auto/expert_recipe") {
                let min = expert_recipe_minimum(&r, memory_mib).map_err(|m| {
                    err!(InvalidConfig, "partman-auto/expert_recipe: {m}").with_path(path)
                })?;
                return Ok(Minimum::Bytes(min, "partman-auto/expert_recipe".into()));
            }
            let builtin = preseed_value(&lines, "partman-auto/choose_recipe")
                .unwrap_or_else(|| "the default".into());
            Ok(Minimum::Unknown(format!(
                "{} uses partman's built-in recipe {builtin} (no expert_recipe)",
                path.display()
            )))
        }
        SeedFile::Kickstart(_) => Ok(match kickstart_minimum(&text) {
            Some(n) => Minimum::Bytes(n, "kickstart part --size".into()),
            None => Minimum::Unknown(format!(
                "{} has no part --size= lines (autopart)",
                path.display()
            )),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPE: &str = "d-i partman-auto/expert_recipe string \\\n  fixture :: \\\n    1 1 1 free $bios_boot{ } method{ biosgrub } . \\\n    100 100 100 fat32 $primary{ } method{ efi } format{ } . \\\n    200 200 200 ext4 mountpoint{ /boot } . \\\n    50% 512 100% linux-swap method{ swap } format{ } . \\\n    500 1000 -1 ext4 mountpoint{ / } .\n";

    #[test]
    fn expert_recipe_sums_minimums() {
        let lines = logical_lines(RECIPE);
        let r = preseed_value(&lines, "partman-auto/expert_recipe").unwrap();
        assert!(r.starts_with("fixture ::"), "{r}");
        let min = expert_recipe_minimum(&r, 256).unwrap();
        assert_eq!(
            min,
            (1 + 100 + 200 + 500) * RECIPE_MB + 128 * (1 << 20) + TABLE_OVERHEAD
        );
    }

    #[test]
    fn bad_recipes() {
        assert!(expert_recipe_minimum("x :: abc 1 1 ext4 .", 256).is_err());
        assert!(expert_recipe_minimum("x :: 1 1 .", 256).is_err());
        assert!(expert_recipe_minimum("x :: ", 256).is_err());
    }

    #[test]
    fn kickstart_parts() {
        let ks = "part /boot --fstype=xfs --size=512\npart / --size=4096 --grow\n";
        assert_eq!(kickstart_minimum(ks), Some((4608 << 20) + TABLE_OVERHEAD));
        assert_eq!(kickstart_minimum("autopart\n"), None);
    }
}
