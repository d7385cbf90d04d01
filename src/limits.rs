//! Named bounds on the work a text or DER parser may do with input it does not trust: JSON (the
//! config tree's files, ARM and token responses, box metadata), PEM, X.509 and PKCS#12. Each
//! check runs BEFORE the parser, in time linear in the input, and its error names the limit (the
//! constant's name and value), the input and the offset, so a refusal is never an opaque message
//! of a third-party parser.
//!
//! The YAML bound of cloud-init media is `cloudinit::depth::MAX_YAML_DEPTH`; the build file's
//! TOML bounds are in `build::file`.

use crate::err;
use crate::error::{IoContext, Result};
use std::io::Read as _;
use std::path::Path;

/// Largest JSON document parsed (config tree files are under 1 KiB, ARM and token responses a
/// few KiB): 1 MiB keeps the parsed value's memory bounded too.
pub const MAX_JSON_BYTES: usize = 1 << 20;
/// Deepest JSON nesting accepted (real documents nest fewer than 16 levels).
pub const MAX_JSON_DEPTH: usize = 64;
/// serde_json's own recursion limit (its `Deserializer::remaining_depth` starts at 128, so 127
/// nested containers parse and 128 do not). [`MAX_JSON_DEPTH`] is below it: ours always refuses
/// first, with a named error; a unit test checks the figure against the crate in use.
pub const SERDE_JSON_RECURSION_LIMIT: usize = 128;
/// Largest HTTP response body read into memory (Azure's XML page-range lists of a large sparse
/// disk; JSON bodies are then held to [`MAX_JSON_BYTES`]).
pub const MAX_HTTP_BODY: u64 = 64 << 20;
/// Largest PEM file parsed (a certificate, a key, a CA bundle of a few hundred certificates).
pub const MAX_PEM_BYTES: usize = 1 << 20;
/// Largest PKCS#12 (`.pfx`) file parsed (a key and its chain are a few KiB).
pub const MAX_PKCS12_BYTES: usize = 1 << 20;
/// Most key-derivation iterations a PKCS#12 file may ask for, summed over its MAC, its encrypted
/// safes and every shrouded key bag, those inside encrypted safes included (openssl and Windows
/// write 2,000 to 10,000 per use). An iteration is one hash chain step of one output block: a
/// use deriving two blocks (3DES's 24-byte key from SHA-1) counts its iterations twice.
pub const MAX_PKCS12_ITERATIONS: u64 = 4_000_000;
/// Deepest DER nesting walked in a PKCS#12 file (its real structure nests about 15 levels).
pub const MAX_DER_DEPTH: usize = 32;
/// Largest RSA modulus accepted in a private key (signing with a larger one is cubic work).
pub const MAX_RSA_BITS: usize = 16384;

fn limit_error(what: &str, msg: std::fmt::Arguments) -> crate::Error {
    err!(LimitExceeded, "{what} {msg}: refused before parsing")
}

/// Refuses `len` bytes over `max`, naming the limit (`name`) and the input (`what`).
pub fn check_size(len: usize, max: usize, name: &str, what: &str) -> Result<()> {
    if len > max {
        return Err(limit_error(
            what,
            format_args!("is {len} bytes, over {name} ({max} bytes)"),
        ));
    }
    Ok(())
}

/// Reads `path` whole when it is at most `max` bytes; a larger file is refused without being
/// read (the error names `name`, the limit, and the path).
pub fn read_limited(path: &Path, max: usize, name: &str, what: &str) -> Result<Vec<u8>> {
    let reading = format!("reading {what}");
    let f = std::fs::File::open(path).ctx(path, &reading)?;
    let len = f.metadata().ctx(path, &reading)?.len();
    check_size(usize::try_from(len).unwrap_or(usize::MAX), max, name, what)
        .map_err(|e| e.with_path(path))?;
    let mut v = Vec::with_capacity(len as usize);
    // a file growing after the check is still read no further than the limit + 1
    f.take(max as u64 + 1)
        .read_to_end(&mut v)
        .ctx(path, &reading)?;
    check_size(v.len(), max, name, what).map_err(|e| e.with_path(path))?;
    Ok(v)
}

/// The deepest nesting of `[`/`{` outside strings, scanning no further than the first byte
/// where it passes `stop`; returns (depth, byte offset where it was reached).
pub fn json_depth(bytes: &[u8], stop: usize) -> (usize, usize) {
    let (mut depth, mut best, mut at) = (0usize, 0usize, 0usize);
    let (mut in_str, mut escaped) = (false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > best {
                    (best, at) = (depth, i);
                    if best > stop {
                        break;
                    }
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    (best, at)
}

/// Parses a JSON document of untrusted origin (`what` names it in errors) within
/// [`MAX_JSON_BYTES`] and [`MAX_JSON_DEPTH`]; syntax errors give the line and column, never
/// the content.
pub fn parse_json(bytes: &[u8], what: &str) -> Result<serde_json::Value> {
    check_size(bytes.len(), MAX_JSON_BYTES, "MAX_JSON_BYTES", what)?;
    let (depth, at) = json_depth(bytes, MAX_JSON_DEPTH);
    if depth > MAX_JSON_DEPTH {
        return Err(limit_error(
            what,
            format_args!("nests deeper than MAX_JSON_DEPTH ({MAX_JSON_DEPTH} levels) at byte {at}"),
        )
        .at(at as u64));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        if e.to_string().starts_with("recursion limit exceeded") {
            // unreachable while MAX_JSON_DEPTH < SERDE_JSON_RECURSION_LIMIT; named all the same
            return limit_error(
                what,
                format_args!(
                    "nests deeper than SERDE_JSON_RECURSION_LIMIT \
                     ({SERDE_JSON_RECURSION_LIMIT}) at line {}, column {}",
                    e.line(),
                    e.column()
                ),
            );
        }
        err!(
            InvalidArgument,
            "{what} is not valid JSON ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })
}

/// Refuses a PEM text over [`MAX_PEM_BYTES`] (`what` names it).
pub fn check_pem(bytes: &[u8], what: &str) -> Result<()> {
    check_size(bytes.len(), MAX_PEM_BYTES, "MAX_PEM_BYTES", what)
}

/// Refuses an RSA private key (PKCS#1 `RSAPrivateKey` DER) whose modulus is over
/// [`MAX_RSA_BITS`] or that has more than two primes, before the rsa crate validates it.
pub fn check_rsa_pkcs1(der: &[u8], what: &str) -> Result<()> {
    use rsa::pkcs1::der::Decode as _;
    let Ok(k) = rsa::pkcs1::RsaPrivateKey::from_der(der) else {
        return Ok(()); // not parseable: the key parser says so in its own words
    };
    let bytes = k.modulus.as_bytes();
    let bits =
        (bytes.len() * 8).saturating_sub(bytes.first().map_or(8, |b| b.leading_zeros() as usize));
    if bits > MAX_RSA_BITS {
        return Err(limit_error(
            what,
            format_args!("has an RSA modulus of {bits} bits, over MAX_RSA_BITS ({MAX_RSA_BITS})"),
        ));
    }
    if k.other_prime_infos.is_some() {
        return Err(err!(
            Unsupported,
            "{what} is a multi-prime RSA key (more than two primes): not supported"
        ));
    }
    Ok(())
}

/// Refuses an RSA private key in PKCS#8 DER whose modulus is over [`MAX_RSA_BITS`] (keys of
/// other algorithms pass: their parsers are bounded by their fixed sizes).
pub fn check_rsa_pkcs8(der: &[u8], what: &str) -> Result<()> {
    match rsa::pkcs8::PrivateKeyInfo::try_from(der) {
        Ok(info) if info.algorithm.oid == rsa::pkcs1::ALGORITHM_OID => {
            check_rsa_pkcs1(info.private_key, what)
        }
        _ => Ok(()),
    }
}

/// A DER tag-length-value header: (tag, content start, content end).
fn der_tlv(b: &[u8], at: usize) -> Option<(u8, usize, usize)> {
    let tag = *b.get(at)?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers do not occur in PKCS#12
    }
    let first = *b.get(at + 1)?;
    let (len, start) = if first < 0x80 {
        (first as usize, at + 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None; // indefinite (BER) or absurd lengths: not walked
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(at + 2 + i)? as usize;
        }
        (len, at + 2 + n)
    };
    let end = start.checked_add(len)?;
    (end <= b.len()).then_some((tag, start, end))
}

/// Walks DER `b`, returning the depth it passes [`MAX_DER_DEPTH`] at, if it does. OCTET
/// STRINGs holding DER are walked too (the authenticated safe, unencrypted safe contents).
fn der_too_deep(b: &[u8], depth: usize) -> Option<usize> {
    if depth > MAX_DER_DEPTH {
        return Some(depth);
    }
    let mut at = 0;
    while let Some((tag, start, end)) = der_tlv(b, at) {
        let content = &b[start..end];
        let nested = tag & 0x20 != 0 || (tag == 0x04 && content.first() == Some(&0x30));
        if nested && let Some(d) = der_too_deep(content, depth + 1) {
            return Some(d);
        }
        at = end;
    }
    None // the end, or not DER (encrypted bytes): nothing more to see here
}

/// Refuses a PKCS#12 file over [`MAX_PKCS12_BYTES`] or nesting deeper than [`MAX_DER_DEPTH`]
/// (`what` names the file in errors). Its key-derivation work is counted by a [`KdfBudget`]
/// as the reader finds each use, before any runs.
pub fn check_pkcs12(bytes: &[u8], what: &str) -> Result<()> {
    check_size(bytes.len(), MAX_PKCS12_BYTES, "MAX_PKCS12_BYTES", what)?;
    if let Some(d) = der_too_deep(bytes, 0) {
        return Err(limit_error(
            what,
            format_args!("nests DER {d} levels deep, over MAX_DER_DEPTH ({MAX_DER_DEPTH})"),
        ));
    }
    Ok(())
}

/// The key-derivation work a PKCS#12 reader may spend, [`MAX_PKCS12_ITERATIONS`] in all: each
/// use is charged before it runs, so a refused file has spent no more than the uses charged
/// before the refusal.
#[derive(Debug)]
pub struct KdfBudget {
    what: String,
    spent: u64,
}

impl KdfBudget {
    /// A full budget for the file `what` names.
    pub fn new(what: &str) -> Self {
        KdfBudget {
            what: what.to_string(),
            spent: 0,
        }
    }

    /// Charges `iterations` (the sum of the uses about to run; `uses` names them) or refuses,
    /// naming the limit.
    pub fn charge(&mut self, iterations: u64, uses: &str) -> Result<()> {
        let total = self.spent.saturating_add(iterations);
        if total > MAX_PKCS12_ITERATIONS {
            return Err(limit_error(
                &self.what,
                format_args!(
                    "asks for {total} key-derivation iterations with {uses}, \
                     over MAX_PKCS12_ITERATIONS ({MAX_PKCS12_ITERATIONS})"
                ),
            ));
        }
        self.spent = total;
        Ok(())
    }

    /// The iterations charged so far.
    pub fn spent(&self) -> u64 {
        self.spent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_json_recursion_limit_is_the_documented_figure() {
        let nest = |n: usize| "[".repeat(n) + &"]".repeat(n);
        let ok = serde_json::from_str::<serde_json::Value>(&nest(SERDE_JSON_RECURSION_LIMIT - 1));
        assert!(ok.is_ok());
        let e = serde_json::from_str::<serde_json::Value>(&nest(SERDE_JSON_RECURSION_LIMIT))
            .unwrap_err();
        assert!(e.to_string().starts_with("recursion limit exceeded"), "{e}");
        const { assert!(MAX_JSON_DEPTH < SERDE_JSON_RECURSION_LIMIT) };
    }

    #[test]
    fn json_depth_counts_containers_outside_strings() {
        assert_eq!(json_depth(br#"{"a": [1, {"b": "[[[\"[["}]}"#, 100).0, 3);
        let deep = "[".repeat(MAX_JSON_DEPTH + 1) + &"]".repeat(MAX_JSON_DEPTH + 1);
        let e = parse_json(deep.as_bytes(), "x.json").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::LimitExceeded);
        assert!(e.to_string().contains("MAX_JSON_DEPTH"), "{e}");
        let ok = "[".repeat(MAX_JSON_DEPTH) + &"]".repeat(MAX_JSON_DEPTH);
        parse_json(ok.as_bytes(), "x.json").unwrap();
        // an unterminated document of 64 MiB of '[' stops at the limit
        let e = parse_json(&vec![b'['; MAX_JSON_BYTES], "x.json").unwrap_err();
        assert!(e.to_string().contains("MAX_JSON_DEPTH"), "{e}");
        let e = parse_json(&vec![b' '; MAX_JSON_BYTES + 1], "x.json").unwrap_err();
        assert!(e.to_string().contains("MAX_JSON_BYTES"), "{e}");
        let e = parse_json(b"{\"secret\": }", "x.json").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn pkcs12_iterations_are_summed_and_bounded() {
        let mut b = KdfBudget::new("sp.pfx");
        b.charge(3_000_000, "its MAC").unwrap();
        b.charge(MAX_PKCS12_ITERATIONS - 3_000_000, "a safe")
            .unwrap();
        assert_eq!(b.spent(), MAX_PKCS12_ITERATIONS);
        let e = b.charge(1, "1 key bag").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::LimitExceeded);
        assert!(
            e.to_string().contains(
                "sp.pfx asks for 4000001 key-derivation iterations with 1 key bag, \
                 over MAX_PKCS12_ITERATIONS (4000000)"
            ),
            "{e}"
        );
        assert_eq!(
            b.spent(),
            MAX_PKCS12_ITERATIONS,
            "a refused charge is not spent"
        );
        b.charge(u64::MAX, "x").unwrap_err();
        // nesting past MAX_DER_DEPTH
        let mut deep = Vec::new();
        for _ in 0..(MAX_DER_DEPTH + 2) {
            deep.insert(0, deep.len() as u8);
            deep.insert(0, 0x30);
        }
        let e = check_pkcs12(&deep, "sp.pfx").unwrap_err();
        assert!(e.to_string().contains("MAX_DER_DEPTH"), "{e}");
        check_pkcs12(&deep[4..], "sp.pfx").unwrap();
    }
}
