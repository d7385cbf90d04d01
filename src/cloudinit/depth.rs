//! A cheap, linear pre-scan of YAML (and JSON) nesting, run BEFORE the parser: deeply nested
//! input makes YAML parsers slow (100k levels in 200 KB took 38 s to be refused) or exhaust the
//! stack. The scan over-estimates rather than under-estimates: it counts block indentation
//! levels, compact `- ` sequence entries and flow brackets outside quotes and comments.

use crate::err;
use crate::error::Result;

/// Deepest nesting accepted in user-data, meta-data and network-config (real cloud-configs
/// nest fewer than 20 levels).
pub const MAX_YAML_DEPTH: usize = 256;

/// Refuses `bytes` whose nesting exceeds [`MAX_YAML_DEPTH`], naming the line and the limit.
pub fn check_depth(bytes: &[u8], what: &str) -> Result<()> {
    let (depth, line) = max_depth(bytes, MAX_YAML_DEPTH);
    if depth > MAX_YAML_DEPTH {
        return Err(err!(
            LimitExceeded,
            "{what} nests deeper than {MAX_YAML_DEPTH} levels (MAX_YAML_DEPTH) at line {line}: \
             refused before parsing"
        ));
    }
    Ok(())
}

/// The deepest nesting found (stopping once past `stop`) and the 1-based line where it was.
pub fn max_depth(bytes: &[u8], stop: usize) -> (usize, usize) {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let (mut best, mut best_line) = (0usize, 0usize);
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let indent = line.iter().take_while(|&&b| b == b' ').count();
        let rest = &line[indent..];
        if flow == 0 {
            if rest.is_empty() || rest[0] == b'#' || rest == b"\r" {
                continue;
            }
            while indents.last().is_some_and(|&top| top > indent) {
                indents.pop();
            }
            if indents.last().is_none_or(|&top| top < indent) {
                indents.push(indent);
            }
        }
        let mut dashes = 0usize;
        let mut r = rest;
        while r.len() >= 2 && r[0] == b'-' && r[1] == b' ' {
            dashes += 1;
            r = r[2..].trim_ascii_start();
        }
        let line_flow_max = scan_flow(r, &mut flow);
        let depth = indents.len() + dashes + line_flow_max;
        if depth > best {
            (best, best_line) = (depth, n + 1);
            if best > stop {
                break;
            }
        }
    }
    (best, best_line)
}

/// Updates the flow depth over one line (brackets outside quotes and comments); returns the
/// deepest flow level seen on the line.
fn scan_flow(line: &[u8], flow: &mut usize) -> usize {
    let mut max = *flow;
    let mut quote: Option<u8> = None;
    let mut prev = b' ';
    for &b in line {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'"' | b'\'' if matches!(prev, b' ' | b'[' | b'{' | b',' | b':') => quote = Some(b),
                b'#' if prev == b' ' => break,
                b'[' | b'{' => {
                    *flow += 1;
                    max = max.max(*flow);
                }
                b']' | b'}' => *flow = flow.saturating_sub(1),
                _ => {}
            },
        }
        prev = b;
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_documents_are_shallow() {
        let doc = b"#cloud-config\nusers:\n  - name: a\n    groups: [sudo, adm]\n    ssh: {k: \"[x\"}\nruncmd:\n  - - echo\n    - hi # [[[\n";
        let (d, _) = max_depth(doc, 1000);
        assert!((2..=4).contains(&d), "depth {d}");
        assert!(check_depth(doc, "user-data").is_ok());
    }

    #[test]
    fn deep_flow_block_and_dash_nesting_are_counted() {
        let flow = "[".repeat(300) + &"]".repeat(300);
        assert!(max_depth(flow.as_bytes(), 1000).0 >= 300);
        let dashes = "- ".repeat(300) + "x\n";
        assert!(max_depth(dashes.as_bytes(), 1000).0 >= 300);
        let block: String = (0..300)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert!(max_depth(block.as_bytes(), 1000).0 >= 300);
        let e = check_depth(flow.as_bytes(), "meta-data").unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::LimitExceeded);
        assert!(e.to_string().contains("MAX_YAML_DEPTH"), "{e}");
    }
}
