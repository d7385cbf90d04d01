//! `md5sum.txt` upkeep: `<md5>  ./path` lines.

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
