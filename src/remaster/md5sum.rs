//! `md5sum.txt` upkeep: `<md5>  ./path` lines.

use crate::error::{IoContext, Result};
use md5::{Digest, Md5};
use std::io::Read;
use std::path::Path;

/// MD5 of a host file, streamed; each MiB read is reported to `progress`.
pub fn md5_file(p: &Path, progress: &dyn crate::disk::Progress) -> Result<String> {
    let mut f = std::fs::File::open(p).ctx(p, "opening a file to hash")?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).ctx(p, "reading a file to hash")?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        progress.advance(n as u64);
    }
    Ok(crate::checksum::hex(&h.finalize()))
}

/// Replaces the lines of `sums` paths (absolute ISO paths) and appends lines for new ones;
/// every other line keeps its place.
pub fn update(old: &str, sums: &[(String, String)]) -> String {
    let mut done = vec![false; sums.len()];
    let mut out = String::with_capacity(old.len() + sums.len() * 80);
    for line in old.lines() {
        let path = line
            .split_once("  ")
            .map(|x| x.1)
            .or_else(|| line.split_once(" *").map(|x| x.1));
        let hit = path.and_then(|p| {
            let p = p.strip_prefix('.').unwrap_or(p);
            sums.iter().position(|(s, _)| s == p)
        });
        match hit {
            Some(i) => {
                out.push_str(&format!("{}  .{}\n", sums[i].1, sums[i].0));
                done[i] = true;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (i, (p, h)) in sums.iter().enumerate() {
        if !done[i] {
            out.push_str(&format!("{h}  .{p}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_in_place_and_appends() {
        let old = "aaa  ./README\nbbb  ./isolinux/txt.cfg\nccc  ./z\n";
        let new = update(
            old,
            &[
                ("/isolinux/txt.cfg".into(), "111".into()),
                ("/preseed/x.seed".into(), "222".into()),
            ],
        );
        assert_eq!(
            new,
            "aaa  ./README\n111  ./isolinux/txt.cfg\nccc  ./z\n222  ./preseed/x.seed\n"
        );
    }
}
