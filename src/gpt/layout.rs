//! On-disk structures of the MBR (the classic PC partition table) and GPT (UEFI 2.10, section
//! 5), each declared once: a `#[repr(C)]` byte struct mirroring the specification's table
//! (`offset_of!` gives the field positions, `size_of` the length, both checked below), and a
//! parsed form with the checks every reader shares. Used by disk inspection (`gpt::inspect`)
//! and by the ISO system-area reader and re-pointer (`iso::boot`).

use crate::bytes::{le32, le64};
use std::mem::{offset_of, size_of};

/// One MBR partition table entry (UEFI 2.10 table 5.2 "Legacy MBR Partition Record").
#[repr(C)]
pub struct MbrEntryRaw {
    /// 0x80 = bootable.
    pub status: u8,
    /// CHS address of the first sector.
    pub chs_first: [u8; 3],
    /// Partition type (0xEE protective, 0xEF EFI system...).
    pub ptype: u8,
    /// CHS address of the last sector.
    pub chs_last: [u8; 3],
    /// First LBA (LE32).
    pub start: [u8; 4],
    /// Number of sectors (LE32).
    pub sectors: [u8; 4],
}
const _: () = assert!(size_of::<MbrEntryRaw>() == 16);

/// Offsets in the MBR sector and in one entry.
pub mod mbr {
    use super::{MbrEntryRaw as E, offset_of};
    /// Boot code area (the bytes before the disk signature).
    pub const BOOT_CODE_LEN: usize = 440;
    /// First partition entry.
    pub const ENTRIES: usize = 446;
    /// Size of one entry.
    pub const ENTRY_LEN: usize = 16;
    /// Boot signature 0x55 0xAA.
    pub const SIGNATURE: usize = 510;
    /// Entry: status.
    pub const STATUS: usize = offset_of!(E, status);
    /// Entry: CHS of the last sector.
    pub const CHS_LAST: usize = offset_of!(E, chs_last);
    /// Entry: type.
    pub const TYPE: usize = offset_of!(E, ptype);
    /// Entry: first LBA.
    pub const START: usize = offset_of!(E, start);
    /// Entry: sector count.
    pub const SECTORS: usize = offset_of!(E, sectors);
    /// Offset of entry `i` (0-3) in the sector.
    pub const fn entry(i: usize) -> usize {
        ENTRIES + i * ENTRY_LEN
    }
}
const _: () = assert!(mbr::entry(4) == mbr::SIGNATURE);
const _: () = assert!(mbr::TYPE == 4 && mbr::START == 8 && mbr::SECTORS == 12);

/// An MBR partition entry, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbrEntry {
    /// Status byte (0x80 bootable).
    pub status: u8,
    /// Type byte.
    pub ptype: u8,
    /// First LBA (512-byte sectors).
    pub start: u32,
    /// Sector count.
    pub sectors: u32,
}

impl MbrEntry {
    /// True for an unused slot (type 0 and no sectors).
    pub fn is_empty(&self) -> bool {
        self.ptype == 0 && self.sectors == 0
    }
}

/// The four entries of an MBR sector, or None without the 0x55AA signature.
pub fn mbr_entries(sector: &[u8]) -> Option<[MbrEntry; 4]> {
    if sector.get(mbr::SIGNATURE..mbr::SIGNATURE + 2)? != [0x55, 0xAA] {
        return None;
    }
    Some(std::array::from_fn(|i| {
        let e = &sector[mbr::entry(i)..mbr::entry(i) + mbr::ENTRY_LEN];
        MbrEntry {
            status: e[mbr::STATUS],
            ptype: e[mbr::TYPE],
            start: le32(e, mbr::START),
            sectors: le32(e, mbr::SECTORS),
        }
    }))
}

/// GPT header (UEFI 2.10 table 5.5), the 92 bytes the header CRC covers at most.
#[repr(C)]
pub struct GptHeaderRaw {
    /// `EFI PART`.
    pub signature: [u8; 8],
    /// Revision (0x00010000).
    pub revision: [u8; 4],
    /// Header size (92..=sector size).
    pub header_size: [u8; 4],
    /// CRC-32 of the header with this field zeroed.
    pub header_crc: [u8; 4],
    /// Reserved, zero.
    pub reserved: [u8; 4],
    /// LBA of this header.
    pub my_lba: [u8; 8],
    /// LBA of the other header.
    pub alternate_lba: [u8; 8],
    /// First usable LBA.
    pub first_usable: [u8; 8],
    /// Last usable LBA.
    pub last_usable: [u8; 8],
    /// Disk GUID (mixed-endian).
    pub disk_guid: [u8; 16],
    /// LBA of the partition entry array.
    pub entries_lba: [u8; 8],
    /// Number of entries.
    pub entry_count: [u8; 4],
    /// Size of one entry (128 x 2^n).
    pub entry_size: [u8; 4],
    /// CRC-32 of the entry array.
    pub entries_crc: [u8; 4],
}
const _: () = assert!(size_of::<GptHeaderRaw>() == 92);

/// Offsets in the GPT header.
pub mod gpt_header {
    use super::{GptHeaderRaw as H, offset_of};
    /// Signature.
    pub const SIGNATURE: usize = offset_of!(H, signature);
    /// Header size.
    pub const HEADER_SIZE: usize = offset_of!(H, header_size);
    /// Header CRC.
    pub const HEADER_CRC: usize = offset_of!(H, header_crc);
    /// This header's LBA.
    pub const MY_LBA: usize = offset_of!(H, my_lba);
    /// The other header's LBA.
    pub const ALTERNATE_LBA: usize = offset_of!(H, alternate_lba);
    /// First usable LBA.
    pub const FIRST_USABLE: usize = offset_of!(H, first_usable);
    /// Last usable LBA.
    pub const LAST_USABLE: usize = offset_of!(H, last_usable);
    /// Disk GUID.
    pub const DISK_GUID: usize = offset_of!(H, disk_guid);
    /// Entry array LBA.
    pub const ENTRIES_LBA: usize = offset_of!(H, entries_lba);
    /// Entry count.
    pub const ENTRY_COUNT: usize = offset_of!(H, entry_count);
    /// Entry size.
    pub const ENTRY_SIZE: usize = offset_of!(H, entry_size);
    /// Entry array CRC.
    pub const ENTRIES_CRC: usize = offset_of!(H, entries_crc);
    /// Smallest header size.
    pub const MIN_SIZE: usize = size_of::<H>();
    /// The signature's bytes.
    pub const MAGIC: &[u8; 8] = b"EFI PART";
    /// Most entries accepted.
    pub const MAX_ENTRIES: u32 = 4096;
    use std::mem::size_of;
}
const _: () = assert!(gpt_header::HEADER_CRC == 16 && gpt_header::ALTERNATE_LBA == 32);
const _: () = assert!(gpt_header::ENTRIES_LBA == 72 && gpt_header::ENTRIES_CRC == 88);

/// A GPT header, parsed (signature and sizes checked; the CRC separately, see
/// [`GptHeader::crc_ok`], since some readers report rather than refuse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptHeader {
    /// Header size.
    pub header_size: u32,
    /// Stored header CRC.
    pub header_crc: u32,
    /// This header's LBA.
    pub my_lba: u64,
    /// The other header's LBA.
    pub alternate_lba: u64,
    /// First usable LBA.
    pub first_usable: u64,
    /// Last usable LBA.
    pub last_usable: u64,
    /// Disk GUID bytes as stored.
    pub disk_guid: [u8; 16],
    /// Entry array LBA.
    pub entries_lba: u64,
    /// Entry count.
    pub entry_count: u32,
    /// Entry size.
    pub entry_size: u32,
    /// Stored entry array CRC.
    pub entries_crc: u32,
}

impl GptHeader {
    /// Parses the header at the start of `h` (one sector of `sector_size` bytes). Errors are
    /// short descriptions for the caller to place.
    pub fn parse(h: &[u8], sector_size: usize) -> std::result::Result<GptHeader, String> {
        use gpt_header as g;
        if h.len() < g::MIN_SIZE || &h[g::SIGNATURE..g::SIGNATURE + 8] != g::MAGIC {
            return Err("no GPT header signature".into());
        }
        let header_size = le32(h, g::HEADER_SIZE);
        if !(g::MIN_SIZE..=sector_size.min(h.len())).contains(&(header_size as usize)) {
            return Err(format!("header size {header_size} out of range"));
        }
        let (entry_count, entry_size) = (le32(h, g::ENTRY_COUNT), le32(h, g::ENTRY_SIZE));
        if entry_count > g::MAX_ENTRIES
            || !(128..=4096).contains(&entry_size)
            || !entry_size.is_multiple_of(8)
        {
            return Err(format!(
                "absurd entry count {entry_count} or size {entry_size}"
            ));
        }
        Ok(GptHeader {
            header_size,
            header_crc: le32(h, g::HEADER_CRC),
            my_lba: le64(h, g::MY_LBA),
            alternate_lba: le64(h, g::ALTERNATE_LBA),
            first_usable: le64(h, g::FIRST_USABLE),
            last_usable: le64(h, g::LAST_USABLE),
            disk_guid: h[g::DISK_GUID..g::DISK_GUID + 16].try_into().expect("16"),
            entries_lba: le64(h, g::ENTRIES_LBA),
            entry_count,
            entry_size,
            entries_crc: le32(h, g::ENTRIES_CRC),
        })
    }

    /// The CRC-32 of the header bytes `h` with the CRC field zeroed.
    pub fn computed_crc(&self, h: &[u8]) -> u32 {
        let mut copy = h[..self.header_size as usize].to_vec();
        copy[gpt_header::HEADER_CRC..gpt_header::HEADER_CRC + 4].fill(0);
        crc32fast::hash(&copy)
    }

    /// True when the stored header CRC matches.
    pub fn crc_ok(&self, h: &[u8]) -> bool {
        self.computed_crc(h) == self.header_crc
    }

    /// Bytes of the entry array.
    pub fn entries_len(&self) -> u64 {
        self.entry_count as u64 * self.entry_size as u64
    }
}

/// Rewrites the header CRC of the header at the start of `h` (`header_size` bytes).
pub fn seal_gpt_header(h: &mut [u8], header_size: usize) {
    let at = gpt_header::HEADER_CRC;
    h[at..at + 4].fill(0);
    let c = crc32fast::hash(&h[..header_size]);
    h[at..at + 4].copy_from_slice(&c.to_le_bytes());
}

/// GPT partition entry (UEFI 2.10 table 5.6), 128 bytes (larger entries carry more after).
#[repr(C)]
pub struct GptEntryRaw {
    /// Partition type GUID (all zero: unused).
    pub type_guid: [u8; 16],
    /// Unique partition GUID.
    pub unique_guid: [u8; 16],
    /// First LBA.
    pub first_lba: [u8; 8],
    /// Last LBA, inclusive.
    pub last_lba: [u8; 8],
    /// Attribute flags.
    pub attributes: [u8; 8],
    /// Name, UTF-16LE, 36 code units.
    pub name: [u8; 72],
}
const _: () = assert!(size_of::<GptEntryRaw>() == 128);

/// Offsets in a GPT entry.
pub mod gpt_entry {
    use super::{GptEntryRaw as E, offset_of};
    /// Type GUID.
    pub const TYPE_GUID: usize = offset_of!(E, type_guid);
    /// First LBA.
    pub const FIRST_LBA: usize = offset_of!(E, first_lba);
    /// Last LBA.
    pub const LAST_LBA: usize = offset_of!(E, last_lba);
    /// Name.
    pub const NAME: usize = offset_of!(E, name);
    /// Length of the name field.
    pub const NAME_LEN: usize = 72;
}
const _: () = assert!(gpt_entry::FIRST_LBA == 32 && gpt_entry::LAST_LBA == 40);
const _: () = assert!(gpt_entry::NAME == 56);

/// A used GPT entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptEntry {
    /// Type GUID bytes as stored.
    pub type_guid: [u8; 16],
    /// First LBA.
    pub first: u64,
    /// Last LBA, inclusive.
    pub last: u64,
    /// Name.
    pub name: String,
}

impl GptEntry {
    /// Parses an entry (at least 128 bytes); None for an unused one (zero type GUID).
    pub fn parse(e: &[u8]) -> Option<GptEntry> {
        use gpt_entry as g;
        let type_guid: [u8; 16] = e.get(g::TYPE_GUID..g::TYPE_GUID + 16)?.try_into().ok()?;
        if type_guid == [0; 16] || e.len() < g::NAME + g::NAME_LEN {
            return None;
        }
        Some(GptEntry {
            type_guid,
            first: le64(e, g::FIRST_LBA),
            last: le64(e, g::LAST_LBA),
            name: crate::bytes::utf16le(&e[g::NAME..g::NAME + g::NAME_LEN]),
        })
    }
}

/// The used entries of an entry array: (1-based index, entry).
pub fn gpt_entries(array: &[u8], entry_size: usize) -> Vec<(usize, GptEntry)> {
    array
        .chunks_exact(entry_size.max(1))
        .enumerate()
        .filter_map(|(i, e)| GptEntry::parse(e).map(|p| (i + 1, p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbr_entries_need_the_signature() {
        let mut s = vec![0u8; 512];
        assert!(mbr_entries(&s).is_none());
        s[510] = 0x55;
        s[511] = 0xAA;
        s[mbr::entry(1) + mbr::TYPE] = 0xEF;
        s[mbr::entry(1) + mbr::START..][..4].copy_from_slice(&276u32.to_le_bytes());
        s[mbr::entry(1) + mbr::SECTORS..][..4].copy_from_slice(&2880u32.to_le_bytes());
        let e = mbr_entries(&s).unwrap();
        assert!(e[0].is_empty());
        assert_eq!((e[1].ptype, e[1].start, e[1].sectors), (0xEF, 276, 2880));
    }

    #[test]
    fn gpt_header_checks_and_seal() {
        let mut h = vec![0u8; 512];
        h[..8].copy_from_slice(gpt_header::MAGIC);
        h[gpt_header::HEADER_SIZE..][..4].copy_from_slice(&92u32.to_le_bytes());
        h[gpt_header::ENTRY_COUNT..][..4].copy_from_slice(&128u32.to_le_bytes());
        h[gpt_header::ENTRY_SIZE..][..4].copy_from_slice(&128u32.to_le_bytes());
        seal_gpt_header(&mut h, 92);
        let g = GptHeader::parse(&h, 512).unwrap();
        assert!(g.crc_ok(&h));
        assert_eq!(g.entries_len(), 128 * 128);
        h[60] ^= 1;
        assert!(!g.crc_ok(&h));
        h[gpt_header::ENTRY_SIZE] = 100;
        assert!(GptHeader::parse(&h, 512).unwrap_err().contains("entry"));
        h[0] = b'X';
        assert!(GptHeader::parse(&h, 512).is_err());
    }
}
