//! `isotool validate IMG --for azure|hyperv-gen1|hyperv-gen2`: every finding at once.

use crate::disk::{DiskImage, ImageInfo, ImageKind, OpenOptions};
use crate::gpt::{self, PartitionTables};
use crate::report::{Report, Severity};
use serde::Serialize;
use std::path::Path;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A platform an image is validated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Azure: fixed VHD, whole-MiB virtual size.
    Azure,
    /// Hyper-V generation 1 (BIOS, IDE boot).
    HypervGen1,
    /// Hyper-V generation 2 (UEFI, SCSI boot, VHDX only).
    HypervGen2,
}

impl Target {
    /// Parses `azure`, `hyperv-gen1`, `hyperv-gen2`.
    pub fn parse(s: &str) -> crate::Result<Self> {
        match s {
            "azure" => Ok(Target::Azure),
            "hyperv-gen1" => Ok(Target::HypervGen1),
            "hyperv-gen2" => Ok(Target::HypervGen2),
            _ => Err(crate::err!(
                InvalidArgument,
                "unknown target {s:?} (expected azure, hyperv-gen1 or hyperv-gen2)"
            )),
        }
    }
}

/// Result of a validation.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// The image.
    pub image: String,
    /// The target.
    pub target: Target,
    /// True when nothing blocks the target.
    pub ok: bool,
    /// Image facts, when it could be opened.
    pub info: Option<ImageInfo>,
    /// Everything found.
    pub findings: Vec<crate::report::Finding>,
}

/// Validates the image at `path` for `target`. Problems are findings; only a failure to report
/// at all would be an error (there is none: an unreadable image is a finding too).
pub fn validate(path: &Path, target: Target, open: &OpenOptions) -> Validation {
    let mut r = Report::default();
    let loc = |what: &str| Some(format!("{}: {what}", path.display()));
    let img = match super::open::open_image(path, open) {
        Ok(i) => i,
        Err(e) => {
            let fix = match e.kind() {
                crate::ErrorKind::DirtyLog => {
                    Some("convert it into a clean copy: isotool convert IMG OUT --replay-log")
                }
                crate::ErrorKind::MissingParent => Some(
                    "put the parent where a locator points, or next to the child; then the chain can be merged: isotool convert IMG OUT",
                ),
                _ => Some("the image is unreadable; rebuild or re-export it"),
            };
            r.error(
                e.kind().code(),
                e.detail(),
                Some(path.display().to_string()),
                fix,
            );
            return finish(path, target, None, r);
        }
    };
    let info = img.info();
    check_common(&*img, &info, &mut r, &loc);
    let parts = match gpt::inspect(&*img) {
        Ok(p) => p,
        Err(e) => {
            r.error(
                e.kind().code(),
                format!("reading the partition tables: {e}"),
                loc("partition tables"),
                None,
            );
            PartitionTables::default()
        }
    };
    for p in &parts.problems {
        r.warn(
            "partition-table-damage",
            p.clone(),
            loc("partition tables"),
            Some("repair the table (sgdisk -v / -e) before shipping the image"),
        );
    }
    if parts.partitions().is_empty() {
        r.warn(
            "no-partition-table",
            "no MBR or GPT partition found: nothing on this disk can boot",
            loc("LBA 0-1"),
            Some("check that the right disk was exported"),
        );
    }
    match target {
        Target::Azure => check_azure(&info, &parts, &mut r, &loc),
        Target::HypervGen1 => check_gen1(&info, &parts, &mut r, &loc),
        Target::HypervGen2 => check_gen2(&info, &parts, &mut r, &loc),
    }
    finish(path, target, Some(info), r)
}

fn finish(path: &Path, target: Target, info: Option<ImageInfo>, mut r: Report) -> Validation {
    for f in &mut r.findings {
        if let Some(fix) = &mut f.fix {
            *fix = real_command(fix, path);
        }
    }
    Validation {
        image: path.display().to_string(),
        target,
        ok: !r.has_errors(),
        info,
        findings: r.findings,
    }
}

/// A fix's `isotool convert IMG OUT[.EXT]` with the image's path and an output beside it
/// (`disk.raw` -> `disk.vhd`; `-fixed` added when that would be the image itself), quoted for a
/// POSIX shell: a command to paste.
fn real_command(fix: &str, path: &Path) -> String {
    const T: &str = "isotool convert IMG OUT";
    let Some(i) = fix.find(T) else {
        return fix.to_string();
    };
    let rest = &fix[i + T.len()..];
    let (ext, rest) = match rest.strip_prefix(".vhdx") {
        Some(r) => ("vhdx", r),
        None => match rest.strip_prefix(".vhd") {
            Some(r) => ("vhd", r),
            None => (
                path.extension().and_then(|e| e.to_str()).unwrap_or("img"),
                rest,
            ),
        },
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    let mut out = path.with_file_name(format!("{stem}.{ext}"));
    if out == path {
        out = path.with_file_name(format!("{stem}-converted.{ext}"));
    }
    format!(
        "{}isotool convert {} {}{rest}",
        &fix[..i],
        shell_quote(&path.to_string_lossy()),
        shell_quote(&out.to_string_lossy())
    )
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

type Loc<'a> = dyn Fn(&str) -> Option<String> + 'a;

fn chs_bytes(info: &ImageInfo) -> Option<u64> {
    info.geometry
        .map(|(c, h, s)| c as u64 * h as u64 * s as u64 * 512)
}

fn check_common(img: &dyn DiskImage, info: &ImageInfo, r: &mut Report, loc: &Loc) {
    if info.virtual_size == 0 {
        r.error(
            "empty-disk",
            "the virtual size is 0",
            loc("virtual size"),
            None,
        );
    }
    if !info.parents.is_empty() {
        r.warn(
            "differencing-disk",
            format!(
                "differencing disk with parents {:?}: the platform needs the whole chain",
                info.parents
            ),
            loc("parent locator"),
            Some("merge the chain into one image: isotool convert IMG OUT"),
        );
    }
    let mut has_data = false;
    let _ = crate::disk::for_each_extent(img, crate::disk::stream::EXTENT_WINDOW, |e| {
        has_data |= e.kind == crate::disk::ExtentKind::Data;
        Ok(())
    });
    if !has_data {
        r.warn(
            "no-data",
            "the disk holds no data at all (never installed?)",
            loc("allocation map"),
            None,
        );
    }
}

fn check_azure(info: &ImageInfo, parts: &PartitionTables, r: &mut Report, loc: &Loc) {
    if info.format != ImageKind::VhdFixed {
        r.error(
            "azure-not-fixed-vhd",
            format!(
                "Azure accepts only a fixed VHD; this image is {}",
                info.format
            ),
            loc("format"),
            Some("isotool convert IMG OUT.vhd --azure"),
        );
    }
    if !info.virtual_size.is_multiple_of(MIB) {
        r.error(
            "azure-size-not-mib",
            format!(
                "virtual size {} bytes is not a whole number of MiB (next: {} bytes)",
                info.virtual_size,
                info.virtual_size.div_ceil(MIB) * MIB
            ),
            loc("virtual size"),
            Some("isotool convert IMG OUT.vhd --azure"),
        );
    }
    if info.format == ImageKind::VhdFixed && info.file_size != info.virtual_size + 512 {
        r.error(
            "azure-file-size",
            format!(
                "file size {} is not virtual size + 512-byte footer ({})",
                info.file_size,
                info.virtual_size + 512
            ),
            loc("footer"),
            Some("isotool convert IMG OUT.vhd --azure"),
        );
    }
    if info.virtual_size > 1023 * GIB {
        r.warn(
            "azure-os-disk-size",
            format!("virtual size {} GiB exceeds 1023 GiB, the limit of Azure OS-disk VHD uploads for older image tooling", info.virtual_size / GIB),
            loc("virtual size"),
            Some("shrink the file system and partition, then convert with --azure"),
        );
    }
    if let Some(chs) = chs_bytes(info)
        && chs != info.virtual_size
    {
        r.add(
            Severity::Info,
            "vhd-chs-size-differs",
            format!(
                "CHS geometry covers {chs} bytes, current size is {}: tools that size a VHD by CHS (old qemu 'vpc '/'qemu' rule) see a smaller disk",
                info.virtual_size
            ),
            loc("footer geometry"),
            None,
        );
    }
    if !parts.mbr_present && parts.gpt.is_empty() {
        r.warn(
            "azure-no-boot-record",
            "no MBR: an Azure generation 1 VM cannot boot it",
            loc("LBA 0"),
            None,
        );
    }
}

fn check_gen1(info: &ImageInfo, parts: &PartitionTables, r: &mut Report, loc: &Loc) {
    if info.format == ImageKind::Raw {
        r.error(
            "hyperv-raw",
            "Hyper-V cannot attach a raw image",
            loc("format"),
            Some("isotool convert IMG OUT.vhdx --to vhdx"),
        );
    }
    if info.logical_sector_size != 512 {
        r.error(
            "gen1-4k-logical-sectors",
            format!("logical sector size {}: a generation 1 VM boots from IDE, which needs 512-byte logical sectors", info.logical_sector_size),
            loc("metadata: logical sector size"),
            Some("isotool convert IMG OUT.vhdx --to vhdx --logical-sector-size 512"),
        );
    }
    if info.virtual_size > 2040 * GIB {
        r.error(
            "gen1-disk-too-large",
            "an IDE boot disk of a generation 1 VM is limited to 2040 GiB",
            loc("virtual size"),
            None,
        );
    }
    let bios_boot = parts.gpt.iter().any(|p| p.type_name == "BIOS boot");
    if !parts.mbr_present {
        r.error(
            "no-mbr",
            "no MBR (0x55AA): a BIOS (generation 1) VM cannot boot this disk",
            loc("LBA 0"),
            Some("install a BIOS boot loader (grub-pc) on the disk"),
        );
    } else if !parts.mbr_boot_code {
        r.error(
            "no-mbr-boot-code",
            "the MBR has no boot code: a BIOS (generation 1) VM cannot boot this disk",
            loc("LBA 0, bytes 0-439"),
            Some("install a BIOS boot loader (grub-install --target=i386-pc)"),
        );
    } else if parts.mbr_protective && !bios_boot {
        r.warn(
            "gpt-without-bios-boot",
            "GPT disk without a BIOS boot partition: GRUB for BIOS usually needs one",
            loc("GPT"),
            None,
        );
    }
}

fn check_gen2(info: &ImageInfo, parts: &PartitionTables, r: &mut Report, loc: &Loc) {
    if !info.format.is_vhdx() {
        r.error(
            "gen2-needs-vhdx",
            format!(
                "a generation 2 VM boots only from VHDX; this image is {}",
                info.format
            ),
            loc("format"),
            Some("isotool convert IMG OUT.vhdx --to vhdx --block-size 1M"),
        );
    }
    if parts.gpt.is_empty() {
        r.error(
            "gen2-no-gpt",
            "no GUID partition table: UEFI firmware of a generation 2 VM boots from a GPT disk",
            loc("LBA 1"),
            Some("partition the disk with GPT and an EFI system partition"),
        );
    }
    if !parts.has_efi_system() {
        r.error(
            "gen2-no-efi-system-partition",
            "no EFI system partition: a generation 2 VM has nothing to boot",
            loc("partition tables"),
            Some("add an EFI system partition (FAT) with EFI/BOOT/BOOTX64.EFI"),
        );
    }
    if let Some(bs) = info.block_size
        && info.format == ImageKind::Vhdx
        && bs != MIB
    {
        r.info(
            "vhdx-block-size",
            format!(
                "block size {} MiB; 1 MiB is recommended for Linux guests",
                bs / MIB
            ),
            loc("metadata: file parameters"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(format: &str, size: u64) -> ImageInfo {
        ImageInfo {
            format: format.parse().unwrap(),
            virtual_size: size,
            file_size: size + 512,
            logical_sector_size: 512,
            physical_sector_size: 512,
            ..Default::default()
        }
    }

    fn loc(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn azure_rules() {
        let mut r = Report::default();
        check_azure(
            &info("vhd-dynamic", MIB + 512),
            &PartitionTables::default(),
            &mut r,
            &loc,
        );
        assert!(r.has("azure-not-fixed-vhd"));
        assert!(r.has("azure-size-not-mib"));
        let mut r = Report::default();
        let p = PartitionTables {
            mbr_present: true,
            ..Default::default()
        };
        check_azure(&info("vhd-fixed", 64 * MIB), &p, &mut r, &loc);
        assert!(!r.has_errors(), "{:?}", r.findings);
    }

    #[test]
    fn gen2_rules() {
        let mut r = Report::default();
        check_gen2(
            &info("vhd-fixed", 64 * MIB),
            &PartitionTables::default(),
            &mut r,
            &loc,
        );
        assert!(
            r.has("gen2-needs-vhdx")
                && r.has("gen2-no-gpt")
                && r.has("gen2-no-efi-system-partition")
        );
    }

    #[test]
    fn gen1_rules() {
        let mut r = Report::default();
        let mut i = info("vhdx", 64 * MIB);
        i.logical_sector_size = 4096;
        check_gen1(&i, &PartitionTables::default(), &mut r, &loc);
        assert!(r.has("gen1-4k-logical-sectors") && r.has("no-mbr"));
    }
}
