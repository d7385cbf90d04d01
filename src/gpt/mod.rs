//! Partition tables (GPT and MBR) found inside any [`DiskImage`]: read-only inspection for
//! `isotool info` and `isotool validate`.
//!
//! Our own small parser rather than gptman/mbrman: it reads through the format-agnostic disk
//! layer (no `Read + Seek` adapter), tries both 512- and 4096-byte sectors, verifies both CRC-32s,
//! and never panics on the isohybrid MBRs that mbrman chokes on (DESIGN.md section 4).

pub mod layout;

use crate::context::guid_string_le;
use crate::disk::DiskImage;
use crate::err;
use crate::error::Result;
use layout::GptHeader;
use serde::Serialize;

/// Which table a partition came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// GUID partition table.
    Gpt,
    /// Master boot record (primary partitions only).
    Mbr,
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// 1-based index in its table.
    pub index: u32,
    /// Type: a name when known (`EFI system`, `Linux filesystem`...), else the GUID / hex byte.
    pub type_name: String,
    /// Raw type: GUID string (GPT) or `0xNN` (MBR).
    pub type_id: String,
    /// Start in bytes.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
    /// GPT partition name (empty for MBR).
    pub name: String,
    /// MBR boot flag.
    pub bootable: bool,
}

/// The partition tables of a disk.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PartitionTables {
    /// GPT sector size found (512 or 4096), if a GPT was found.
    pub gpt_sector_size: Option<u32>,
    /// GPT disk GUID.
    pub gpt_disk_guid: Option<String>,
    /// GPT partitions.
    pub gpt: Vec<Partition>,
    /// True when the primary GPT header failed and the backup was used.
    pub gpt_used_backup: bool,
    /// MBR present (0x55AA signature).
    pub mbr_present: bool,
    /// MBR has boot code (first 440 bytes not all zero).
    pub mbr_boot_code: bool,
    /// MBR is protective (one 0xEE partition).
    pub mbr_protective: bool,
    /// MBR primary partitions.
    pub mbr: Vec<Partition>,
    /// Problems found (bad CRCs, entries past the end...). Not fatal for inspection.
    pub problems: Vec<String>,
}

impl PartitionTables {
    /// The partitions to show: GPT when present, else MBR.
    pub fn partitions(&self) -> &[Partition] {
        if self.gpt.is_empty() {
            &self.mbr
        } else {
            &self.gpt
        }
    }

    /// True when a GPT partition of the EFI system type exists (or an MBR 0xEF partition).
    pub fn has_efi_system(&self) -> bool {
        self.gpt.iter().any(|p| p.type_id == EFI_SYSTEM)
            || self.mbr.iter().any(|p| p.type_id == "0xef")
    }
}

const EFI_SYSTEM: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";

/// Known GPT partition type GUIDs.
const GPT_TYPES: &[(&str, &str)] = &[
    (EFI_SYSTEM, "EFI system"),
    ("21686148-6449-6e6f-744e-656564454649", "BIOS boot"),
    ("0fc63daf-8483-4772-8e79-3d69d8477de4", "Linux filesystem"),
    (
        "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
        "Linux root (x86-64)",
    ),
    ("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f", "Linux swap"),
    ("e6d6d379-f507-44c2-a23c-238f2a3df928", "Linux LVM"),
    ("a19d880f-05fc-4d3b-a006-743f0f84911e", "Linux RAID"),
    (
        "bc13c2ff-59e6-4262-a352-b275fd6f7172",
        "Linux extended boot",
    ),
    ("933ac7e1-2eb4-4f13-b844-0e14e2aef915", "Linux home"),
    (
        "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7",
        "Microsoft basic data",
    ),
    ("e3c9e316-0b5c-4db8-817d-f92df00215ae", "Microsoft reserved"),
    ("de94bba4-06d1-4d40-a16a-bfd50179d6ac", "Windows recovery"),
    ("48465300-0000-11aa-aa11-00306543ecac", "Apple HFS+"),
];

fn mbr_type_name(t: u8) -> String {
    match t {
        0x00 => "empty (isohybrid whole-image)".into(),
        0x01 => "FAT12".into(),
        0x04 | 0x06 | 0x0e => "FAT16".into(),
        0x05 | 0x0f => "extended".into(),
        0x07 => "NTFS/exFAT".into(),
        0x0b | 0x0c => "FAT32".into(),
        0x17 => "hidden NTFS/IFS (isohybrid)".into(),
        0x82 => "Linux swap".into(),
        0x83 => "Linux".into(),
        0x8e => "Linux LVM".into(),
        0xcd => "ISO 9660 (isohybrid)".into(),
        0xee => "GPT protective".into(),
        0xef => "EFI system".into(),
        0xfd => "Linux RAID".into(),
        t => format!("0x{t:02x}"),
    }
}

/// Reads the partition tables of `disk`. Damage is recorded in `problems`, not returned as an
/// error; only I/O errors fail.
pub fn inspect(disk: &dyn DiskImage) -> Result<PartitionTables> {
    let mut t = PartitionTables::default();
    let len = disk.len();
    if len < 512 {
        return Ok(t);
    }
    let mut mbr = [0u8; 512];
    disk.read_at(&mut mbr, 0)?;
    parse_mbr(&mbr, len, &mut t);
    for ss in [512u32, 4096] {
        if len < 2 * ss as u64 {
            continue;
        }
        if read_gpt(disk, ss, &mut t)? {
            t.gpt_sector_size = Some(ss);
            break;
        }
    }
    Ok(t)
}

fn parse_mbr(sector: &[u8; 512], disk_len: u64, t: &mut PartitionTables) {
    let Some(entries) = layout::mbr_entries(sector) else {
        return;
    };
    t.mbr_present = true;
    t.mbr_boot_code = sector[..layout::mbr::BOOT_CODE_LEN].iter().any(|&b| b != 0);
    for (i, e) in entries.iter().enumerate() {
        let typ = e.ptype;
        let start = e.start as u64 * 512;
        let size = e.sectors as u64 * 512;
        if e.is_empty() {
            continue;
        }
        if e.status != 0 && e.status != 0x80 {
            t.problems.push(format!(
                "MBR entry {} has an invalid boot flag 0x{:02x}",
                i + 1,
                e.status
            ));
        }
        if typ != 0xee && start.saturating_add(size) > disk_len {
            t.problems.push(format!(
                "MBR partition {} ends at byte {} past the end of the disk ({disk_len})",
                i + 1,
                start + size
            ));
        }
        t.mbr.push(Partition {
            index: i as u32 + 1,
            type_name: mbr_type_name(typ),
            type_id: format!("0x{typ:02x}"),
            start,
            size,
            name: String::new(),
            bootable: e.status == 0x80,
        });
    }
    t.mbr_protective = t.mbr.len() == 1 && t.mbr[0].type_id == "0xee";
}

/// Parses and checks a GPT header sector (signature, sizes, CRC, entries inside the disk), or
/// describes the problem.
fn parse_gpt_header(
    h: &[u8],
    lba: u64,
    ss: u32,
    disk_len: u64,
) -> std::result::Result<GptHeader, String> {
    let g = GptHeader::parse(h, ss as usize)
        .map_err(|m| format!("GPT header at LBA {lba} ({ss}-byte sectors): {m}"))?;
    let crc = g.computed_crc(h);
    if crc != g.header_crc {
        return Err(format!(
            "GPT header at LBA {lba}: CRC-32 mismatch (stored 0x{:08x}, computed 0x{crc:08x})",
            g.header_crc
        ));
    }
    let end = g
        .entries_lba
        .checked_mul(ss as u64)
        .and_then(|s| s.checked_add(g.entries_len()));
    if end.is_none_or(|e| e > disk_len) {
        return Err(format!(
            "GPT header at LBA {lba}: partition entries lie past the end of the disk"
        ));
    }
    Ok(g)
}

fn read_gpt(disk: &dyn DiskImage, ss: u32, t: &mut PartitionTables) -> Result<bool> {
    let len = disk.len();
    let mut hdr = vec![0u8; ss as usize];
    let last_lba = len / ss as u64 - 1;
    let mut parsed = None;
    for (lba, backup) in [(1u64, false), (last_lba, true)] {
        disk.read_at(&mut hdr, lba * ss as u64)?;
        match parse_gpt_header(&hdr, lba, ss, len) {
            Ok(p) => {
                parsed = Some((p, backup));
                break;
            }
            Err(msg) if &hdr[..8] == layout::gpt_header::MAGIC => t.problems.push(msg),
            Err(_) => {}
        }
    }
    let Some((g, backup)) = parsed else {
        return Ok(false);
    };
    let (entries_lba, count, esize, ecrc) =
        (g.entries_lba, g.entry_count, g.entry_size, g.entries_crc);
    let guid = guid_string_le(&g.disk_guid);
    let mut entries = vec![0u8; count as usize * esize as usize];
    disk.read_at(&mut entries, entries_lba * ss as u64)?;
    let crc = crc32fast::hash(&entries);
    if crc != ecrc {
        t.problems.push(format!(
            "GPT partition entries at LBA {entries_lba}: CRC-32 mismatch (stored 0x{ecrc:08x}, computed 0x{crc:08x})"
        ));
    }
    t.gpt_used_backup = backup;
    if backup {
        t.problems
            .push("primary GPT header unusable: the backup header was used".into());
    }
    t.gpt_disk_guid = Some(guid);
    for (index, e) in layout::gpt_entries(&entries, esize as usize) {
        let type_id = guid_string_le(&e.type_guid);
        let (first, last, i) = (e.first, e.last, index - 1);
        if last < first {
            t.problems
                .push(format!("GPT partition {} ends before it starts", i + 1));
            continue;
        }
        let start = first.saturating_mul(ss as u64);
        let size = (last - first + 1).saturating_mul(ss as u64);
        if start.saturating_add(size) > len {
            t.problems.push(format!(
                "GPT partition {} lies past the end of the disk",
                i + 1
            ));
        }

        let type_name = GPT_TYPES
            .iter()
            .find(|(g, _)| *g == type_id)
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|| type_id.clone());
        t.gpt.push(Partition {
            index: i as u32 + 1,
            type_name,
            type_id,
            start,
            size,
            name: e.name,
            bootable: false,
        });
    }
    Ok(true)
}

/// Checks a claimed GPT sector size (for callers that want an error rather than a report).
pub fn require_gpt(t: &PartitionTables) -> Result<()> {
    if t.gpt_sector_size.is_none() {
        return Err(err!(NotFound, "no GUID partition table found").with_structure("GPT"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::mem::MemImage;

    /// A GPT disk built by hand: protective MBR, header, one EFI and one Linux partition.
    pub(crate) fn gpt_disk(len: usize) -> MemImage {
        let ss = 512usize;
        let mut d = MemImage::new(len, 512);
        let mut mbr = [0u8; 512];
        mbr[446 + 4] = 0xee;
        mbr[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        mbr[446 + 12..446 + 16].copy_from_slice(&((len / ss - 1) as u32).to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        d.write(0, &mbr);
        let mut entries = vec![0u8; 128 * 128];
        let efi: [u8; 16] = [
            0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
            0xc9, 0x3b,
        ];
        let linux: [u8; 16] = [
            0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47,
            0x7d, 0xe4,
        ];
        for (i, (t, first, last, name)) in
            [(efi, 2048u64, 4095u64, "EFI"), (linux, 4096, 8191, "root")]
                .iter()
                .enumerate()
        {
            let e = &mut entries[i * 128..(i + 1) * 128];
            e[..16].copy_from_slice(t);
            e[16] = 1;
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
            for (k, u) in name.encode_utf16().enumerate() {
                e[56 + 2 * k..58 + 2 * k].copy_from_slice(&u.to_le_bytes());
            }
        }
        let mut h = [0u8; 512];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&1u64.to_le_bytes());
        h[32..40].copy_from_slice(&((len / ss - 1) as u64).to_le_bytes());
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32fast::hash(&entries).to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        d.write(512, &h);
        d.write(1024, &entries);
        d
    }

    #[test]
    fn reads_gpt_partitions_with_names_and_types() {
        let d = gpt_disk(8 << 20);
        let t = inspect(&d).unwrap();
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        assert_eq!(t.gpt_sector_size, Some(512));
        assert!(t.mbr_protective);
        assert_eq!(t.gpt.len(), 2);
        assert_eq!(t.gpt[0].type_name, "EFI system");
        assert_eq!(t.gpt[0].start, 2048 * 512);
        assert_eq!(t.gpt[0].size, 2048 * 512);
        assert_eq!(t.gpt[1].type_name, "Linux filesystem");
        assert_eq!(t.gpt[1].name, "root");
        assert!(t.has_efi_system());
    }

    #[test]
    fn corrupt_entry_crc_is_reported_not_fatal() {
        let mut d = gpt_disk(8 << 20);
        d.write(1024 + 60, b"X");
        let t = inspect(&d).unwrap();
        assert!(
            t.problems.iter().any(|p| p.contains("CRC-32 mismatch")),
            "{:?}",
            t.problems
        );
    }

    #[test]
    fn corrupt_primary_header_falls_back_to_nothing_without_backup() {
        let mut d = gpt_disk(8 << 20);
        d.write(512 + 40, &[0xff]);
        let t = inspect(&d).unwrap();
        assert!(t.gpt.is_empty());
        assert!(
            t.problems.iter().any(|p| p.contains("header at LBA 1")),
            "{:?}",
            t.problems
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut d = MemImage::new(1 << 20, 512);
        let mut x: u32 = 12345;
        let mut junk = vec![0u8; 4096];
        for b in junk.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
        junk[510] = 0x55;
        junk[511] = 0xaa;
        junk[512..520].copy_from_slice(b"EFI PART");
        d.write(0, &junk);
        let _ = inspect(&d).unwrap();
    }
}
