//! SHA256SUMS files: read (an `iso_checksum = "file:..."` entry) and written (per provider
//! directory, the format `sha256sum -c` checks).

use std::fmt::Write as _;

/// The SHA-256 a checksum file gives for `name`: GNU lines (`HEX  NAME`, `HEX *NAME`, a
/// `./` or directory prefix allowed) and BSD lines (`SHA256 (NAME) = HEX`).
pub fn find(text: &str, name: &str) -> Option<String> {
    let is_hex = |h: &str| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
    let same = |n: &str| {
        let n = n.trim();
        n == name || n.rsplit('/').next() == Some(name)
    };
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("SHA256 (")
            && let Some((n, h)) = rest.rsplit_once(") = ")
            && same(n)
            && is_hex(h.trim())
        {
            return Some(h.trim().to_ascii_lowercase());
        }
        if let Some((h, n)) = line.split_once(char::is_whitespace) {
            let n = n.trim_start().trim_start_matches('*');
            if is_hex(h) && same(n) {
                return Some(h.to_ascii_lowercase());
            }
        }
    }
    None
}

/// The text of a SHA256SUMS file for (name, hex) pairs, sorted by name.
pub fn render(entries: &[(String, String)]) -> String {
    let mut v: Vec<&(String, String)> = entries.iter().collect();
    v.sort();
    let mut s = String::new();
    for (name, hex) in v {
        let _ = writeln!(s, "{hex}  {name}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "8c8a1d6e0c0a7a23b0b6b1a4f1c9b5e1d2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b";

    #[test]
    fn finds_gnu_and_bsd_lines() {
        let gnu = format!("{H}  other.iso\n{H} *ubuntu.iso\n");
        assert_eq!(find(&gnu, "ubuntu.iso").as_deref(), Some(H));
        assert_eq!(
            find(&format!("{H}  ./dir/ubuntu.iso\n"), "ubuntu.iso").as_deref(),
            Some(H)
        );
        assert_eq!(
            find(&format!("SHA256 (ubuntu.iso) = {H}\n"), "ubuntu.iso").as_deref(),
            Some(H)
        );
        assert_eq!(
            find(&format!("{H}  ubuntu.iso.zsync\n"), "ubuntu.iso"),
            None
        );
        assert_eq!(find("abc  ubuntu.iso\n", "ubuntu.iso"), None);
    }

    #[test]
    fn renders_sorted_sha256sum_lines() {
        let s = render(&[("b".into(), "2".into()), ("a".into(), "1".into())]);
        assert_eq!(s, "1  a\n2  b\n");
    }
}
