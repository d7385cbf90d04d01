//! The JSON contract (docs/json.md): one document per command, its first key `schema` =
//! `isotool/<command>/<version>`, the other keys in the order of these structs. Formats use the
//! names `info` gives them ([`isotool::disk::ImageKind`]), modes are octal strings.

use isotool::image::convert::{ConvertReport, TargetFormat};
use serde::Serialize;
use std::path::Path;

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// `isotool info --json`.
#[derive(Serialize)]
pub(crate) struct Info<'a> {
    pub schema: &'static str,
    pub image: String,
    #[serde(flatten)]
    pub info: &'a isotool::disk::ImageInfo,
    pub partitions: &'a isotool::gpt::PartitionTables,
}

/// `isotool validate --json`.
#[derive(Serialize)]
pub(crate) struct Validate<'a> {
    pub schema: &'static str,
    #[serde(flatten)]
    pub validation: &'a isotool::image::validate::Validation,
}

/// `isotool convert --json`.
#[derive(Serialize)]
pub(crate) struct Convert {
    schema: &'static str,
    input: String,
    input_format: &'static str,
    output: String,
    format: &'static str,
    compressed: bool,
    input_size: u64,
    virtual_size: u64,
    data_bytes: u64,
    sha256: Option<String>,
}

impl Convert {
    pub fn new(input: &Path, r: &ConvertReport) -> Self {
        Convert {
            schema: "isotool/convert/1",
            input: path(input),
            input_format: r.input_format.as_str(),
            output: path(&r.output),
            format: r.format.kind().as_str(),
            compressed: r.format == TargetFormat::Qcow2Compressed || r.format == TargetFormat::Vmdk,
            input_size: r.input_size,
            virtual_size: r.virtual_size,
            data_bytes: r.data_bytes,
            sha256: r.sha256.clone(),
        }
    }
}

/// `isotool disk create --json`.
#[derive(Serialize)]
pub(crate) struct DiskCreate {
    schema: &'static str,
    output: String,
    format: &'static str,
    virtual_size: u64,
    sha256: Option<String>,
}

impl DiskCreate {
    pub fn new(output: &Path, f: TargetFormat, size: u64, sha256: Option<&str>) -> Self {
        DiskCreate {
            schema: "isotool/disk-create/1",
            output: path(output),
            format: f.kind().as_str(),
            virtual_size: size,
            sha256: sha256.map(str::to_string),
        }
    }
}

/// One entry of `isotool iso ls --json`.
#[derive(Serialize)]
pub(crate) struct LsEntry<'a> {
    path: &'a str,
    /// file, dir, symlink, block, char, fifo or socket.
    kind: isotool::iso::read::NodeKind,
    /// Content size (decoded size of a zisofs file).
    size: u64,
    /// Size as stored in the image (differs from `size` for zisofs files).
    stored_size: u64,
    zisofs: bool,
    /// Octal, e.g. "0755"; null without Rock Ridge.
    mode: Option<String>,
    target: Option<&'a str>,
    /// [major, minor] of block and character device nodes (Rock Ridge PN).
    device: Option<[u32; 2]>,
}

/// `isotool iso ls --json`.
#[derive(Serialize)]
pub(crate) struct IsoLs<'a> {
    schema: &'static str,
    iso: String,
    dir: &'a str,
    entries: Vec<LsEntry<'a>>,
}

impl<'a> IsoLs<'a> {
    pub fn new(iso: &Path, dir: &'a str, v: &'a [isotool::iso::info::LsEntry]) -> Self {
        IsoLs {
            schema: "isotool/iso-ls/1",
            iso: path(iso),
            dir,
            entries: v
                .iter()
                .map(|e| LsEntry {
                    path: &e.path,
                    kind: e.kind,
                    size: e.size,
                    stored_size: e.stored_size,
                    zisofs: e.zisofs,
                    mode: e.mode.map(octal_mode),
                    target: e.target.as_deref(),
                    device: e.device.map(|(hi, lo)| [hi, lo]),
                })
                .collect(),
        }
    }
}

/// A mode as `ls` and `chmod` write it: permission and special bits in octal, at least 4 digits.
pub(crate) fn octal_mode(m: u32) -> String {
    format!("{:04o}", m & 0o7777)
}

/// `isotool iso info --json`.
#[derive(Serialize)]
pub(crate) struct IsoInfo<'a> {
    pub schema: &'static str,
    pub iso: String,
    #[serde(flatten)]
    pub info: &'a isotool::iso::info::IsoInfo,
}

/// `isotool iso extract --json`.
#[derive(Serialize)]
pub(crate) struct IsoExtract<'a> {
    pub schema: &'static str,
    pub iso: String,
    pub path: &'a str,
    pub output: String,
    pub size: u64,
}

/// `isotool remaster --json`.
#[derive(Serialize)]
pub(crate) struct Remaster<'a> {
    pub schema: &'static str,
    pub input: String,
    pub output: String,
    #[serde(flatten)]
    pub report: &'a isotool::remaster::RemasterReport,
}

/// `isotool provisioning-cd --json` (also with --dry-run: `output` null, nothing written).
#[derive(Serialize)]
pub(crate) struct ProvisioningCd {
    pub schema: &'static str,
    pub output: Option<String>,
    pub size: Option<u64>,
    pub volume_id: String,
    pub role: Option<String>,
    pub entries: Vec<MediaEntry>,
}

/// A file or directory on the provisioning DVD.
#[derive(Serialize)]
pub(crate) struct MediaEntry {
    pub path: String,
    pub kind: &'static str,
    pub size: u64,
    pub mode: String,
}

/// `isotool cloud-init-seed --json`.
#[derive(Serialize)]
pub(crate) struct CloudInitSeed {
    pub schema: &'static str,
    pub output: String,
    /// `nocloud-iso`, `nocloud-vfat` or `azure-custom-data`.
    pub kind: &'static str,
    pub size: u64,
    pub label: Option<&'static str>,
}

/// `isotool pack --json`.
#[derive(Serialize)]
pub(crate) struct Pack<'a> {
    schema: &'static str,
    input: String,
    output: String,
    target: isotool::pack::Target,
    members: &'a [(String, u64)],
    virtual_size: u64,
    data_bytes: u64,
}

impl<'a> Pack<'a> {
    /// Paths as text (lossy, like every other document): a non-UTF-8 name is no reason to fail
    /// after the package is in place.
    pub fn new(input: &Path, r: &'a isotool::pack::PackReport) -> Self {
        Pack {
            schema: "isotool/pack/1",
            input: path(input),
            output: path(&r.output),
            target: r.target,
            members: &r.members,
            virtual_size: r.virtual_size,
            data_bytes: r.data_bytes,
        }
    }
}

/// `isotool launch qemu --json`.
#[derive(Serialize)]
pub(crate) struct LaunchQemu {
    pub schema: &'static str,
    pub result: &'static str,
    pub elapsed_seconds: f64,
    pub accel: &'static str,
    pub serial_log: Option<String>,
}

/// `isotool launch hyperv --json`.
#[derive(Serialize)]
pub(crate) struct LaunchHyperv<'a> {
    pub schema: &'static str,
    pub name: &'a str,
    pub script: Option<String>,
    pub ran: bool,
    pub powershell_output: Option<&'a str>,
}

/// `isotool build --json`.
#[derive(Serialize)]
pub(crate) struct Build<'a> {
    pub schema: &'static str,
    #[serde(flatten)]
    pub report: &'a isotool::build::pipeline::BuildReport,
    pub peak_rss_kib: Option<u64>,
}
