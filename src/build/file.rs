//! The build file: TOML, Packer's field names where they mean the same thing.
//!
//! Parsing refuses unknown keys (serde `deny_unknown_fields`); every later check names the file,
//! the key and its byte offset (with line and column). Paths are relative to the build file's
//! directory, never to the current directory, so a build file means the same wherever it is run.
//!
//! ```toml
//! name = "base"                           # NAME in the artifact names
//! version = "1.2.3"                       # VERSION
//! iso_url = "../isos/ubuntu.iso"          # a local path (no download)
//! iso_checksum = "sha256:7d8e..."         # or "file:SHA256SUMS" (an entry for the ISO's name)
//! preseed = "ubuntu-18.04-server.seed"    # or kickstart = "ks.cfg"
//! cd_files = ["config"]                   # the config tree (one directory)
//! disk_size = "4G"                        # or an integer in MiB, as Packer
//! providers = ["hyperv", "azure", "raw"]
//! ```

use super::provider::Provider;
use super::recipe;
use crate::disk::stream::MIB;
use crate::err;
use crate::error::{Error, IoContext, Result};
use crate::image::convert::parse_size;
use serde::Deserialize;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Largest build file read.
pub const MAX_BUILD_FILE: u64 = 1 << 20;
/// Deepest nesting of arrays and inline tables the toml parser accepts (its own recursion
/// limit, named in our error).
pub const TOML_MAX_DEPTH: usize = 80;

/// A size: an integer is MiB (Packer's unit for `disk_size` and `disk_block_size`), a string
/// carries its unit (`"40G"`, `"512M"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    /// Mebibytes.
    Mib(u64),
    /// With a unit.
    Text(String),
}

/// The file as written: every key the format knows, nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuildFile {
    /// Image name (artifact names, directory).
    pub name: Spanned<String>,
    /// Image version.
    pub version: Spanned<String>,
    /// Short name for host names (`cv<SHORT>-<MAJOR>-<MINOR>-<PATCH>-<random>`; default: name).
    pub short_name: Option<Spanned<String>>,
    /// The stock installer ISO: a local path relative to the build file.
    pub iso_url: Spanned<String>,
    /// `sha256:HEX`, or `file:PATH` of a SHA256SUMS-style file with an entry for the ISO.
    pub iso_checksum: Spanned<String>,
    /// Debian-installer preseed.
    pub preseed: Option<Spanned<String>>,
    /// Anaconda kickstart.
    pub kickstart: Option<Spanned<String>>,
    /// Extra kernel arguments of the unattended boot entry.
    #[serde(default)]
    pub boot_args: Vec<Spanned<String>>,
    /// The config tree put on the provisioning DVD (one directory).
    pub cd_files: Spanned<Vec<String>>,
    /// Volume label of the provisioning DVD.
    pub cd_label: Option<Spanned<String>>,
    /// Virtual size of the disk the installer installs into.
    pub disk_size: Spanned<SizeValue>,
    /// Block size of the Hyper-V VHDX (default 1 MiB, recommended for Linux).
    pub disk_block_size: Option<Spanned<SizeValue>>,
    /// bios, uefi or uefi-secure.
    pub firmware: Option<Spanned<String>>,
    /// Guest memory in MiB.
    pub memory: Option<Spanned<u64>>,
    /// Guest CPUs.
    pub cpus: Option<Spanned<u64>>,
    /// How long the install may run before it is killed ("90m", "2h", "3600s").
    pub shutdown_timeout: Option<Spanned<String>>,
    /// auto, kvm or tcg.
    pub accel: Option<Spanned<String>>,
    /// qemu machine type: pc or q35 (default: q35 for uefi-secure, which needs it, else pc).
    pub machine_type: Option<Spanned<String>>,
    /// Where artifacts go (relative to the build file).
    pub output_directory: Option<Spanned<String>>,
    /// Providers to produce.
    pub providers: Spanned<Vec<Spanned<String>>>,
}

/// How the ISO is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoChecksum {
    /// The expected SHA-256 (lower-case hex).
    pub sha256: String,
    /// The checksum file it came from (`file:`), if any.
    pub from_file: Option<PathBuf>,
}

/// Firmware of the build VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Firmware {
    /// SeaBIOS (Hyper-V generation 1).
    Bios,
    /// OVMF (Hyper-V generation 2).
    Uefi,
    /// OVMF with Secure Boot and Microsoft's keys.
    UefiSecure,
}

impl Firmware {
    /// The build file's name.
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
            Firmware::UefiSecure => "uefi-secure",
        }
    }
}

/// The installer seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedFile {
    /// A preseed.
    Preseed(PathBuf),
    /// A kickstart.
    Kickstart(PathBuf),
}

impl SeedFile {
    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            SeedFile::Preseed(p) | SeedFile::Kickstart(p) => p,
        }
    }
}

/// A checked build file: paths resolved against its directory, sizes in bytes.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// The build file.
    pub file: PathBuf,
    /// Image name.
    pub name: String,
    /// Image version.
    pub version: String,
    /// Short name for host names.
    pub short_name: String,
    /// Stock ISO.
    pub iso: PathBuf,
    /// Its checksum.
    pub iso_checksum: IsoChecksum,
    /// Preseed or kickstart.
    pub seed: SeedFile,
    /// Extra kernel arguments.
    pub boot_args: Vec<String>,
    /// The config tree.
    pub config: PathBuf,
    /// Provisioning DVD label.
    pub cd_label: String,
    /// Disk size in bytes.
    pub disk_size: u64,
    /// Hyper-V VHDX block size in bytes.
    pub disk_block_size: u64,
    /// Firmware.
    pub firmware: Firmware,
    /// Memory in MiB.
    pub memory: u64,
    /// CPUs.
    pub cpus: u64,
    /// Install timeout.
    pub shutdown_timeout: Duration,
    /// auto, kvm or tcg.
    pub accel: String,
    /// qemu machine type (pc or q35).
    pub machine_type: String,
    /// Output directory.
    pub output_directory: PathBuf,
    /// Providers, in the file's order.
    pub providers: Vec<Provider>,
    /// The smallest disk the seed's partition recipe fits in, when it could be worked out.
    pub recipe_min: Option<u64>,
    /// What the checks could not decide (shown with the plan).
    pub notes: Vec<String>,
}

/// Default guest memory (MiB).
pub const DEFAULT_MEMORY: u64 = 1024;
/// Default guest CPUs.
pub const DEFAULT_CPUS: u64 = 2;
/// Default install timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

/// Where in the build file a problem is.
struct Src<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Src<'_> {
    /// An `InvalidConfig` naming the file, the key and the offset (with line and column).
    fn error(&self, key: &str, span: Range<usize>, msg: impl std::fmt::Display) -> Error {
        let (line, col) = line_col(self.text, span.start);
        err!(InvalidConfig, "line {line}, column {col}: {msg}")
            .with_path(self.file)
            .with_structure(format!("build file key `{key}`"))
            .at(span.start as u64)
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

/// Joins a build-file path onto its directory, lexically (`a/../b` -> `b`), so plans print the
/// paths as a person would write them.
pub fn resolve(base: &Path, rel: &str) -> PathBuf {
    let joined = base.join(rel);
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                let last_is_normal =
                    matches!(out.components().next_back(), Some(Component::Normal(_)));
                if last_is_normal {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Parses the TOML text. Unknown keys, missing keys and wrong types are `InvalidConfig` errors
/// naming the file, the key and the offset.
pub fn parse(file: &Path, text: &str) -> Result<RawBuildFile> {
    toml::from_str(text).map_err(|e| {
        let mut msg = e.message().trim_end().to_string();
        if msg.contains("max recursion depth") {
            msg =
                format!("{msg} (TOML_MAX_DEPTH: {TOML_MAX_DEPTH} levels, the toml parser's limit)");
        }
        let mut er = match e.span() {
            Some(s) => {
                let (line, col) = line_col(text, s.start);
                err!(InvalidConfig, "line {line}, column {col}: {msg}").at(s.start as u64)
            }
            None => err!(InvalidConfig, "{msg}"),
        };
        er = er.with_path(file).with_structure("build file");
        er
    })
}

/// Reads, parses and checks a build file. Nothing is written; every input is checked to exist.
pub fn load(file: &Path) -> Result<BuildSpec> {
    let meta = std::fs::metadata(file).ctx(file, "reading the build file")?;
    if !meta.is_file() {
        return Err(err!(InvalidConfig, "the build file must be a regular file").with_path(file));
    }
    crate::limits::check_size(
        usize::try_from(meta.len()).unwrap_or(usize::MAX),
        MAX_BUILD_FILE as usize,
        "MAX_BUILD_FILE",
        "the build file",
    )
    .map_err(|e| e.with_path(file))?;
    let text = std::fs::read_to_string(file).ctx(file, "reading the build file")?;
    let raw = parse(file, &text)?;
    check(file, &text, raw)
}

fn check_name(src: &Src, key: &str, v: &Spanned<String>) -> Result<String> {
    let s = v.get_ref();
    let ok = !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if !ok {
        return Err(src.error(
            key,
            v.span(),
            format!("{s:?}: 1 to 64 of A-Z a-z 0-9 . _ + - (it is part of file names), not starting with '.'"),
        ));
    }
    Ok(s.clone())
}

/// The short name: given, or the name when it can be part of a host name.
fn short_name(src: &Src, raw: &RawBuildFile, name: &str) -> Result<String> {
    let ok = |s: &str| {
        (1..=24).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    match &raw.short_name {
        Some(v) if ok(v.get_ref()) => Ok(v.get_ref().clone()),
        Some(v) => Err(src.error(
            "short_name",
            v.span(),
            format!(
                "{:?}: 1 to 24 of a-z 0-9 - (part of host names)",
                v.get_ref()
            ),
        )),
        None if ok(name) => Ok(name.to_string()),
        None => Err(src.error(
            "name",
            raw.name.span(),
            format!(
                "{name:?} cannot be part of a host name: give short_name (1 to 24 of a-z 0-9 -)"
            ),
        )),
    }
}

fn existing(src: &Src, base: &Path, key: &str, v: &Spanned<String>, dir: bool) -> Result<PathBuf> {
    let p = resolve(base, v.get_ref());
    let what = if dir { "directory" } else { "file" };
    match std::fs::metadata(&p) {
        Ok(m) if m.is_dir() == dir => Ok(p),
        Ok(_) => Err(src.error(key, v.span(), format!("{} is not a {what}", p.display()))),
        Err(e) => Err(src.error(key, v.span(), format!("{}: {e}", p.display()))),
    }
}

fn size(src: &Src, key: &str, v: &Spanned<SizeValue>) -> Result<u64> {
    let bad = |m: String| src.error(key, v.span(), m);
    match v.get_ref() {
        SizeValue::Mib(n) => n
            .checked_mul(MIB)
            .ok_or_else(|| bad(format!("{n} MiB is too large"))),
        SizeValue::Text(t) => parse_size(t).map_err(|e| bad(e.message().to_string())),
    }
}

/// Parses `90m`, `2h`, `3600s`, `1h30m` (Packer's duration syntax, whole units).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut num = String::new();
    if s.is_empty() {
        return None;
    }
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let mult = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
    }
    if !num.is_empty() {
        return None;
    }
    Some(Duration::from_secs(total))
}

fn checksum(src: &Src, base: &Path, iso: &Path, v: &Spanned<String>) -> Result<IsoChecksum> {
    let s = v.get_ref().trim();
    let key = "iso_checksum";
    if let Some(hex) = s.strip_prefix("sha256:") {
        let hex = hex.to_ascii_lowercase();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(src.error(key, v.span(), "sha256: needs 64 hex digits"));
        }
        return Ok(IsoChecksum {
            sha256: hex,
            from_file: None,
        });
    }
    if let Some(rel) = s.strip_prefix("file:") {
        let sums = resolve(base, rel);
        let text = std::fs::read_to_string(&sums)
            .map_err(|e| src.error(key, v.span(), format!("{}: {e}", sums.display())))?;
        let name = iso
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let found = super::sums::find(&text, &name).ok_or_else(|| {
            src.error(
                key,
                v.span(),
                format!("{} has no SHA-256 entry for {name}", sums.display()),
            )
        })?;
        return Ok(IsoChecksum {
            sha256: found,
            from_file: Some(sums),
        });
    }
    Err(src.error(
        key,
        v.span(),
        format!("{s:?}: expected sha256:HEX or file:PATH (a SHA256SUMS file); other digests and \"none\" are refused"),
    ))
}

fn seed(src: &Src, base: &Path, raw: &RawBuildFile) -> Result<SeedFile> {
    match (&raw.preseed, &raw.kickstart) {
        (Some(p), None) => Ok(SeedFile::Preseed(existing(src, base, "preseed", p, false)?)),
        (None, Some(k)) => Ok(SeedFile::Kickstart(existing(
            src,
            base,
            "kickstart",
            k,
            false,
        )?)),
        (Some(_), Some(k)) => {
            Err(src.error("kickstart", k.span(), "give preseed or kickstart, not both"))
        }
        (None, None) => Err(src.error("name", 0..0, "give preseed = FILE or kickstart = FILE")),
    }
}

fn providers(src: &Src, raw: &RawBuildFile) -> Result<Vec<Provider>> {
    let mut out: Vec<Provider> = Vec::new();
    if raw.providers.get_ref().is_empty() {
        return Err(src.error("providers", raw.providers.span(), "at least one provider"));
    }
    for p in raw.providers.get_ref() {
        let prov = Provider::parse(p.get_ref()).map_err(|m| src.error("providers", p.span(), m))?;
        if out.contains(&prov) {
            return Err(src.error(
                "providers",
                p.span(),
                format!("{} is listed twice", prov.name()),
            ));
        }
        out.push(prov);
    }
    Ok(out)
}

fn enum_field<T: Copy>(
    src: &Src,
    key: &str,
    v: &Option<Spanned<String>>,
    default: T,
    choices: &[(&str, T)],
) -> Result<T> {
    let Some(v) = v else { return Ok(default) };
    choices
        .iter()
        .find(|(n, _)| *n == v.get_ref())
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            src.error(
                key,
                v.span(),
                format!("{:?}: expected {}", v.get_ref(), names.join(", ")),
            )
        })
}

fn block_size(src: &Src, raw: &RawBuildFile) -> Result<u64> {
    let Some(v) = &raw.disk_block_size else {
        return Ok(MIB);
    };
    let b = size(src, "disk_block_size", v)?;
    if !b.is_power_of_two() || !(MIB..=256 * MIB).contains(&b) {
        return Err(src.error(
            "disk_block_size",
            v.span(),
            format!("{b} bytes: a VHDX block is a power of two from 1 MiB to 256 MiB"),
        ));
    }
    Ok(b)
}

fn positive(src: &Src, key: &str, v: &Option<Spanned<u64>>, default: u64, max: u64) -> Result<u64> {
    match v {
        None => Ok(default),
        Some(n) if (1..=max).contains(n.get_ref()) => Ok(*n.get_ref()),
        Some(n) => Err(src.error(
            key,
            n.span(),
            format!("{}: expected 1 to {max}", n.get_ref()),
        )),
    }
}

fn config_dir(src: &Src, base: &Path, raw: &RawBuildFile) -> Result<PathBuf> {
    let list = raw.cd_files.get_ref();
    if list.len() != 1 {
        return Err(src.error(
            "cd_files",
            raw.cd_files.span(),
            "one directory: the config tree put on the provisioning DVD",
        ));
    }
    let v = Spanned::new(raw.cd_files.span(), list[0].clone());
    let dir = existing(src, base, "cd_files", &v, true)?;
    crate::provisioning::check(&dir, None)?;
    Ok(dir)
}

/// The provisioning DVD's volume label (`cd_label`).
fn cd_label(src: &Src, raw: &RawBuildFile) -> Result<String> {
    Ok(match &raw.cd_label {
        Some(l) => {
            let s = l.get_ref();
            if s.is_empty()
                || s.len() > 32
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(src.error("cd_label", l.span(), "1 to 32 of A-Z 0-9 _"));
            }
            s.clone()
        }
        None => crate::provisioning::DEFAULT_VOLUME_ID.to_string(),
    })
}

/// Checks `disk_size` against the seed's partition recipe; the recipe's minimum when known.
fn recipe_check(
    src: &Src,
    raw: &RawBuildFile,
    seed: &SeedFile,
    memory: u64,
    disk_size: u64,
    notes: &mut Vec<String>,
) -> Result<Option<u64>> {
    let needs = recipe::minimum_disk(seed, memory)?;
    Ok(match needs {
        recipe::Minimum::Bytes(min, what) => {
            if disk_size < min {
                return Err(src.error(
                    "disk_size",
                    raw.disk_size.span(),
                    format!(
                        "{disk_size} bytes ({} MiB) is too small for the partition recipe of {} ({what}: at least {min} bytes, {} MiB)",
                        disk_size / MIB,
                        seed.path().display(),
                        min.div_ceil(MIB)
                    ),
                ));
            }
            Some(min)
        }
        recipe::Minimum::Unknown(why) => {
            notes.push(format!(
                "disk size not checked against the partition recipe: {why}"
            ));
            None
        }
    })
}

/// `boot_args`: each a kernel argument the boot configs can carry.
fn boot_args(src: &Src, raw: &RawBuildFile) -> Result<Vec<String>> {
    let mut boot_args = Vec::new();
    for a in &raw.boot_args {
        crate::remaster::bootcfg::check_kernel_arg(a.get_ref())
            .map_err(|e| src.error("boot_args", a.span(), e.message()))?;
        boot_args.push(a.get_ref().clone());
    }
    Ok(boot_args)
}

/// `disk_size`: at least 1 MiB, whole 512-byte sectors.
fn disk_size(src: &Src, raw: &RawBuildFile) -> Result<u64> {
    let disk_size = size(src, "disk_size", &raw.disk_size)?;
    if disk_size < MIB || disk_size % 512 != 0 {
        return Err(src.error(
            "disk_size",
            raw.disk_size.span(),
            format!("{disk_size} bytes: at least 1 MiB, whole 512-byte sectors"),
        ));
    }
    Ok(disk_size)
}

/// `shutdown_timeout`: a non-zero duration (default [`DEFAULT_TIMEOUT`]).
fn shutdown_timeout(src: &Src, raw: &RawBuildFile) -> Result<Duration> {
    Ok(match &raw.shutdown_timeout {
        None => DEFAULT_TIMEOUT,
        Some(t) => parse_duration(t.get_ref())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                src.error(
                    "shutdown_timeout",
                    t.span(),
                    format!("{:?}: a duration like 90m, 2h, 1h30m or 600s", t.get_ref()),
                )
            })?,
    })
}

/// `accel` and `machine_type` (q35 by default with Secure Boot, which needs it).
fn machine(src: &Src, raw: &RawBuildFile, firmware: Firmware) -> Result<(String, String)> {
    let accel = enum_field(
        src,
        "accel",
        &raw.accel,
        "auto",
        &[("auto", "auto"), ("kvm", "kvm"), ("tcg", "tcg")],
    )?
    .to_string();
    let default_machine = if firmware == Firmware::UefiSecure {
        "q35"
    } else {
        "pc"
    };
    let machine_type = enum_field(
        src,
        "machine_type",
        &raw.machine_type,
        default_machine,
        &[("pc", "pc"), ("q35", "q35")],
    )?
    .to_string();
    if firmware == Firmware::UefiSecure && machine_type != "q35" {
        let span = raw.machine_type.as_ref().map(|m| m.span()).unwrap_or(0..0);
        return Err(src.error(
            "machine_type",
            span,
            "uefi-secure needs q35 (Secure Boot needs SMM)",
        ));
    }
    Ok((accel, machine_type))
}

/// Checks a parsed build file against the file system (inputs exist, the config tree is valid,
/// the disk holds the seed's partition recipe).
pub fn check(file: &Path, text: &str, raw: RawBuildFile) -> Result<BuildSpec> {
    let src = Src { file, text };
    let base = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = check_name(&src, "name", &raw.name)?;
    let version = check_name(&src, "version", &raw.version)?;
    let short_name = short_name(&src, &raw, &name)?;
    let iso = existing(&src, &base, "iso_url", &raw.iso_url, false)?;
    let iso_checksum = checksum(&src, &base, &iso, &raw.iso_checksum)?;
    let seed = seed(&src, &base, &raw)?;
    let boot_args = boot_args(&src, &raw)?;
    let config = config_dir(&src, &base, &raw)?;
    let cd_label = cd_label(&src, &raw)?;
    let disk_size = disk_size(&src, &raw)?;
    let firmware = enum_field(
        &src,
        "firmware",
        &raw.firmware,
        Firmware::Uefi,
        &[
            ("bios", Firmware::Bios),
            ("uefi", Firmware::Uefi),
            ("uefi-secure", Firmware::UefiSecure),
        ],
    )?;
    let memory = positive(&src, "memory", &raw.memory, DEFAULT_MEMORY, 1 << 20)?;
    let cpus = positive(&src, "cpus", &raw.cpus, DEFAULT_CPUS, 256)?;
    let shutdown_timeout = shutdown_timeout(&src, &raw)?;
    let (accel, machine_type) = machine(&src, &raw, firmware)?;
    let output_directory = resolve(
        &base,
        raw.output_directory
            .as_ref()
            .map(|o| o.get_ref().as_str())
            .unwrap_or("output"),
    );
    let providers = providers(&src, &raw)?;
    let disk_block_size = block_size(&src, &raw)?;

    let mut notes = Vec::new();
    let recipe_min = recipe_check(&src, &raw, &seed, memory, disk_size, &mut notes)?;
    Ok(BuildSpec {
        file: file.to_path_buf(),
        name,
        version,
        short_name,
        iso,
        iso_checksum,
        seed,
        boot_args,
        config,
        cd_label,
        disk_size,
        disk_block_size,
        firmware,
        memory,
        cpus,
        shutdown_timeout,
        accel,
        machine_type,
        output_directory,
        providers,
        recipe_min,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_is_lexical() {
        assert_eq!(
            resolve(Path::new("fixtures/build"), "../config"),
            Path::new("fixtures/config")
        );
        assert_eq!(resolve(Path::new("."), "../x"), Path::new("../x"));
        assert_eq!(resolve(Path::new("a"), "../../x"), Path::new("../x"));
        assert_eq!(resolve(Path::new("/a/b"), "/abs"), Path::new("/abs"));
        assert_eq!(resolve(Path::new("a"), "."), Path::new("a"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("600s"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("5d"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn unknown_key_names_key_line_and_offset() {
        let text = "name = \"a\"\nversion = \"1\"\nisos_url = \"x\"\n";
        let e = parse(Path::new("b.toml"), text).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidConfig);
        assert!(e.message().contains("unknown field `isos_url`"), "{e}");
        assert!(e.message().contains("line 3, column 1"), "{e}");
        assert_eq!(e.offset(), Some(25));
        assert_eq!(e.path(), Some(Path::new("b.toml")));
    }

    #[test]
    fn line_and_column() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
