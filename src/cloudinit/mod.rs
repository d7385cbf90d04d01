//! cloud-init media: NoCloud seeds (ISO 9660 or FAT, labelled `cidata`) and Azure custom data
//! (a `#cloud-config` whose `write_files` lays a config tree out under `/run/cloud-init/`).

pub mod azure;
pub mod depth;

use crate::context::BuildContext;
use crate::err;
use crate::error::{IoContext, Result};
use crate::iso::build::{FileData, IsoBuilder, Meta};
use crate::output::{AtomicOutput, OutputOptions};
use std::io::Read;
use std::path::Path;

/// Filesystem label cloud-init's NoCloud datasource looks for.
pub const SEED_LABEL: &str = "cidata";
/// Largest user-data (or decompressed gzip user-data) accepted.
pub const MAX_USER_DATA: u64 = 64 << 20;

/// What kind of user-data a file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserDataKind {
    /// `#cloud-config` YAML mapping.
    CloudConfig,
    /// `#!` script.
    Script,
    /// MIME multipart archive.
    Multipart,
    /// `#include` URL list.
    Include,
    /// `#cloud-boothook`.
    Boothook,
    /// `#part-handler`.
    PartHandler,
    /// `## template: jinja` (rendered by cloud-init).
    JinjaTemplate,
    /// gzip-compressed user-data of the inner kind.
    Gzip(Box<UserDataKind>),
}

fn describe(bytes: &[u8]) -> &'static str {
    let t = bytes.trim_ascii_start();
    if t.is_empty() {
        return "the file is empty";
    }
    if std::str::from_utf8(bytes).is_err() || bytes.iter().take(512).any(|&b| b == 0) {
        return "it is binary data";
    }
    if t.starts_with(b"{") || t.starts_with(b"[") {
        return "it looks like a JSON document";
    }
    if depth::check_depth(bytes, "the file").is_ok()
        && matches!(
            serde_yaml_ng::from_slice::<serde_yaml_ng::Value>(bytes),
            Ok(serde_yaml_ng::Value::Mapping(_))
        )
    {
        return "it is YAML without the `#cloud-config` first line";
    }
    if t.starts_with(b"#") {
        return "it starts with a comment line that is not a cloud-init header";
    }
    "it is plain text"
}

fn first_line(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    bytes[..end].trim_ascii_end()
}

fn is_multipart(bytes: &[u8]) -> bool {
    // MIME headers come first; one of them is Content-Type: multipart/...
    for line in bytes.split(|&b| b == b'\n').take(32) {
        let line = line.trim_ascii_end();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with(b"content-type:") {
            return lower[13..].trim_ascii_start().starts_with(b"multipart/");
        }
    }
    false
}

/// Checks that `bytes` are user-data cloud-init understands; the error names the file and says
/// what the bytes look like instead (never their content).
pub fn check_user_data(bytes: &[u8], file: &Path) -> Result<UserDataKind> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut inner = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .take(MAX_USER_DATA + 1)
            .read_to_end(&mut inner)
            .map_err(|e| {
                err!(InvalidArgument, "gzip user-data does not decompress: {e}").with_path(file)
            })?;
        if inner.len() as u64 > MAX_USER_DATA {
            return Err(err!(
                LimitExceeded,
                "gzip user-data decompresses to more than {MAX_USER_DATA} bytes"
            )
            .with_path(file));
        }
        if inner.starts_with(&[0x1f, 0x8b]) {
            return Err(err!(InvalidArgument, "user-data is gzip inside gzip").with_path(file));
        }
        return Ok(UserDataKind::Gzip(Box::new(check_user_data(&inner, file)?)));
    }
    let line = first_line(bytes);
    if line == b"#cloud-config" {
        depth::check_depth(bytes, "user-data").map_err(|e| e.with_path(file))?;
        return match serde_yaml_ng::from_slice::<serde_yaml_ng::Value>(bytes) {
            Ok(serde_yaml_ng::Value::Mapping(_)) | Ok(serde_yaml_ng::Value::Null) => {
                Ok(UserDataKind::CloudConfig)
            }
            Ok(_) => Err(err!(
                InvalidArgument,
                "user-data is a #cloud-config whose YAML is not a mapping"
            )
            .with_path(file)),
            Err(e) => {
                let at = e
                    .location()
                    .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
                    .unwrap_or_default();
                Err(err!(
                    InvalidArgument,
                    "user-data is a #cloud-config whose YAML does not parse{at}"
                )
                .with_path(file))
            }
        };
    }
    if line.starts_with(b"#!") {
        return Ok(UserDataKind::Script);
    }
    if line.starts_with(b"#include") {
        return Ok(UserDataKind::Include);
    }
    if line == b"#cloud-boothook" {
        return Ok(UserDataKind::Boothook);
    }
    if line == b"#part-handler" {
        return Ok(UserDataKind::PartHandler);
    }
    if line.to_ascii_lowercase().starts_with(b"## template:") {
        return Ok(UserDataKind::JinjaTemplate);
    }
    if is_multipart(bytes) {
        return Ok(UserDataKind::Multipart);
    }
    Err(err!(
        InvalidArgument,
        "not user-data cloud-init understands (expected #cloud-config, a #! script, a MIME \
         multipart, #include, #cloud-boothook or gzip of one of those): {}",
        describe(bytes)
    )
    .with_path(file))
}

/// Checks that a meta-data or network-config file is YAML (JSON is YAML too) holding a mapping.
pub fn check_yaml_mapping(bytes: &[u8], file: &Path, what: &str) -> Result<()> {
    depth::check_depth(bytes, what).map_err(|e| e.with_path(file))?;
    match serde_yaml_ng::from_slice::<serde_yaml_ng::Value>(bytes) {
        Ok(serde_yaml_ng::Value::Mapping(_)) => Ok(()),
        Ok(_) => Err(err!(InvalidArgument, "{what} must be a YAML mapping").with_path(file)),
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
                .unwrap_or_default();
            Err(err!(InvalidArgument, "{what} is not valid YAML{at}").with_path(file))
        }
    }
}

/// The default meta-data: an instance id derived from the user-data (same user-data, same id,
/// so cloud-init runs again only when the user-data changes).
pub fn default_meta_data(user_data: &[u8]) -> Vec<u8> {
    let h = crate::checksum::sha256_hex(user_data);
    format!("instance-id: iid-{}\n", &h[..16]).into_bytes()
}

/// Filesystem of a NoCloud seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedFormat {
    /// ISO 9660 with Rock Ridge and Joliet, volume id `cidata`.
    Iso,
    /// FAT12/16, label `cidata`.
    Vfat,
}

impl std::str::FromStr for SeedFormat {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "iso" => Ok(SeedFormat::Iso),
            "vfat" | "fat" => Ok(SeedFormat::Vfat),
            _ => Err(err!(
                InvalidArgument,
                "seed format must be iso or vfat, not {s:?}"
            )),
        }
    }
}

/// The files of a NoCloud seed.
#[derive(Debug, Clone)]
pub struct Seed {
    /// `user-data`.
    pub user_data: Vec<u8>,
    /// `meta-data`.
    pub meta_data: Vec<u8>,
    /// `network-config`.
    pub network_config: Option<Vec<u8>>,
    /// `vendor-data`.
    pub vendor_data: Option<Vec<u8>>,
}

impl Seed {
    /// (name, bytes, mode) of each file present.
    pub fn files(&self) -> Vec<(&'static str, &[u8], u32)> {
        let mut v = vec![
            ("meta-data", self.meta_data.as_slice(), 0o644),
            ("user-data", self.user_data.as_slice(), 0o600),
        ];
        if let Some(n) = &self.network_config {
            v.push(("network-config", n.as_slice(), 0o644));
        }
        if let Some(n) = &self.vendor_data {
            v.push(("vendor-data", n.as_slice(), 0o600));
        }
        v
    }
}

/// Writes a NoCloud seed to `out` (created 0600 unless `opts.exact` (`--mode`) says otherwise:
/// user-data often carries secrets).
pub fn write_seed(
    seed: &Seed,
    format: SeedFormat,
    out: &Path,
    opts: OutputOptions,
    ctx: &BuildContext,
) -> Result<u64> {
    write_seed_reading(seed, format, out, &[], opts, ctx)
}

/// Why a seed output is 0600 (printed with it).
pub const SEED_MODE_NOTE: &str =
    "the seed is mode 0600 because user-data can carry passwords and keys; --mode OCTAL to choose";

/// [`write_seed`], refusing an output that is one of `inputs` (the files the seed was made
/// from, or inside the config tree it came from).
pub fn write_seed_reading(
    seed: &Seed,
    format: SeedFormat,
    out: &Path,
    inputs: &[&Path],
    opts: OutputOptions,
    ctx: &BuildContext,
) -> Result<u64> {
    let opts = if opts.exact {
        opts
    } else {
        OutputOptions {
            mode: 0o600,
            ..opts
        }
    };
    let o = AtomicOutput::create(out, inputs, opts)?;
    let now = ctx.now() as i64;
    let n = match format {
        SeedFormat::Iso => {
            let mut b = IsoBuilder::new(SEED_LABEL, Meta::root(0o755, now))?;
            for (name, data, mode) in seed.files() {
                b.add_file(
                    name,
                    FileData::Bytes(data.to_vec()),
                    data.len() as u64,
                    Meta::root(mode, now),
                )?;
            }
            b.write(&o, &crate::disk::NoProgress)
                .map_err(|e| o.blame(e))?
        }
        SeedFormat::Vfat => {
            let files: Vec<(String, Vec<u8>)> = seed
                .files()
                .into_iter()
                .map(|(n, d, _)| (n.to_string(), d.to_vec()))
                .collect();
            let mut h = Vec::new();
            for (n, d) in &files {
                h.extend(n.as_bytes());
                h.extend(crate::checksum::sha256_hex(d).as_bytes());
            }
            let d = ctx.derive(&format!(
                "fat volume id {}",
                crate::checksum::sha256_hex(&h)
            ));
            let vid = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
            crate::fat::write_fat(&o, SEED_LABEL, vid, now, &files).map_err(|e| o.blame(e))?
        }
    };
    o.commit()?;
    Ok(n)
}

/// Reads an input file of bounded size.
pub fn read_input(path: &Path, what: &str) -> Result<Vec<u8>> {
    let m = std::fs::metadata(path).ctx(path, &format!("reading the {what}"))?;
    if !m.is_file() {
        return Err(err!(InvalidArgument, "the {what} is not a regular file").with_path(path));
    }
    if m.len() > MAX_USER_DATA {
        return Err(err!(
            LimitExceeded,
            "the {what} is {} bytes, over MAX_USER_DATA ({MAX_USER_DATA} bytes): refused before reading",
            m.len()
        )
        .with_path(path));
    }
    std::fs::read(path).ctx(path, &format!("reading the {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hundred_thousand_levels_are_refused_before_parsing() {
        let doc = format!(
            "#cloud-config\na: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let e = check_user_data(doc.as_bytes(), Path::new("u")).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::LimitExceeded, "{e}");
        assert!(e.to_string().contains("MAX_YAML_DEPTH"), "{e}");
        let e = check_yaml_mapping(doc.as_bytes(), Path::new("m"), "meta-data").unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::LimitExceeded, "{e}");
    }
    use std::io::Write;

    fn kind(b: &[u8]) -> Result<UserDataKind> {
        check_user_data(b, Path::new("ud"))
    }

    #[test]
    fn user_data_kinds() {
        assert_eq!(
            kind(b"#cloud-config\nhostname: x\n").unwrap(),
            UserDataKind::CloudConfig
        );
        assert_eq!(kind(b"#cloud-config\n").unwrap(), UserDataKind::CloudConfig);
        assert_eq!(kind(b"#!/bin/sh\necho hi\n").unwrap(), UserDataKind::Script);
        assert_eq!(
            kind(b"#include\nhttp://x\n").unwrap(),
            UserDataKind::Include
        );
        assert_eq!(kind(b"#cloud-boothook\n").unwrap(), UserDataKind::Boothook);
        let mime = b"Content-Type: multipart/mixed; boundary=\"X\"\nMIME-Version: 1.0\n\n--X\n";
        assert_eq!(kind(mime).unwrap(), UserDataKind::Multipart);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"#!/bin/sh\n").unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            kind(&gz).unwrap(),
            UserDataKind::Gzip(Box::new(UserDataKind::Script))
        );
    }

    #[test]
    fn bad_user_data_says_what_it_is_without_content() {
        let e = kind(b"hostname: secretvalue\n").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        assert!(
            e.to_string().contains("YAML without the `#cloud-config`"),
            "{e}"
        );
        assert!(!e.to_string().contains("secretvalue"));
        let e = kind(b"{\"a\": 1}").unwrap_err();
        assert!(e.to_string().contains("JSON"), "{e}");
        let e = kind(b"").unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = kind(b"#cloud-config\n- a\n- b\n").unwrap_err();
        assert!(e.to_string().contains("not a mapping"), "{e}");
        let e = kind(b"#cloud-config\na: [\n").unwrap_err();
        assert!(e.to_string().contains("does not parse"), "{e}");
        let e = kind(&[0u8, 1, 2, 3]).unwrap_err();
        assert!(e.to_string().contains("binary"), "{e}");
    }

    #[test]
    fn default_meta_data_is_stable() {
        assert_eq!(default_meta_data(b"a"), default_meta_data(b"a"));
        assert_ne!(default_meta_data(b"a"), default_meta_data(b"b"));
        assert!(
            String::from_utf8(default_meta_data(b"a"))
                .unwrap()
                .starts_with("instance-id: iid-")
        );
    }
}
