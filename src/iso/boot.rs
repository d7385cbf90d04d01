//! El Torito boot catalog, boot-info-table, and the system area (MBR, GPT, APM): reading, and
//! re-pointing the whole-image partitions when an image grows.

use super::layout::{bit, el_torito as et};
use super::read::{BLOCK, IsoFile, be32, le16, le32};
use crate::err;
use crate::error::Result;
use crate::gpt::layout::{self as pl, GptHeader, gpt_header as gh, mbr};
use serde::Serialize;

/// One El Torito boot entry.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BootEntry {
    /// Platform id (0 = x86 BIOS, 0xEF = UEFI).
    pub platform: u8,
    /// Bootable (indicator 0x88).
    pub bootable: bool,
    /// Emulation (0 = none).
    pub emulation: u8,
    /// Load segment.
    pub load_segment: u16,
    /// Load size in 512-byte sectors.
    pub load_sectors: u16,
    /// Image LBA.
    pub lba: u32,
    /// Byte offset of the catalog entry.
    pub entry_offset: u64,
}

/// The boot catalog.
#[derive(Debug, Clone, Serialize)]
pub struct BootCatalog {
    /// LBA of the catalog.
    pub lba: u32,
    /// Entries: initial/default first.
    pub entries: Vec<BootEntry>,
}

fn entry(b: &[u8], platform: u8, off: u64) -> BootEntry {
    BootEntry {
        platform,
        bootable: b[et::INDICATOR] == et::BOOTABLE,
        emulation: b[et::MEDIA] & 0x0f,
        load_segment: le16(b, et::LOAD_SEGMENT),
        load_sectors: le16(b, et::SECTOR_COUNT),
        lba: le32(b, et::LOAD_RBA),
        entry_offset: off,
    }
}

/// Parses the boot catalog at `lba` (at most 4 blocks, bounded entry count).
pub fn parse_catalog(iso: &IsoFile, lba: u32) -> Result<BootCatalog> {
    let off = lba as u64 * BLOCK;
    let len = (iso.len().saturating_sub(off)).min(4 * BLOCK);
    if len < 64 {
        return Err(iso.bad(
            err!(Truncated, "boot catalog past the end of the image"),
            "El Torito boot catalog",
            off,
        ));
    }
    let c = iso.read(off, len, "El Torito boot catalog")?;
    let key = &c[et::VALIDATION_KEY..et::VALIDATION_KEY + 2];
    if c[et::VALIDATION_HEADER_ID] != 1 || key != [0x55, 0xAA] {
        return Err(iso.bad(
            err!(
                BadSignature,
                "validation entry: header id {} key {:02x}{:02x}",
                c[et::VALIDATION_HEADER_ID],
                key[0],
                key[1]
            ),
            "El Torito validation entry",
            off,
        ));
    }
    let sum = (0..et::ENTRY_LEN / 2).fold(0u16, |s, i| s.wrapping_add(le16(&c, i * 2)));
    if sum != 0 {
        return Err(iso.bad(
            err!(
                BadChecksum,
                "validation entry words sum to 0x{sum:04x}, not 0"
            ),
            "El Torito validation entry",
            off,
        ));
    }
    const N: usize = et::ENTRY_LEN;
    let mut platform = c[et::VALIDATION_PLATFORM];
    let mut entries = vec![entry(&c[N..2 * N], platform, off + N as u64)];
    let mut p = 2 * N;
    let mut remaining_in_section = 0u32;
    let mut final_section = false;
    while p + N <= c.len() {
        let e = &c[p..p + N];
        if remaining_in_section > 0 {
            if e[0] != et::EXTENSION {
                entries.push(entry(e, platform, off + p as u64));
                remaining_in_section -= 1;
            }
            p += N;
            continue;
        }
        if final_section {
            break;
        }
        match e[0] {
            et::SECTION_MORE | et::SECTION_FINAL => {
                platform = e[et::SECTION_PLATFORM];
                remaining_in_section = le16(e, et::SECTION_ENTRIES) as u32;
                final_section = e[0] == et::SECTION_FINAL;
                p += N;
            }
            _ => break,
        }
    }
    Ok(BootCatalog { lba, entries })
}

/// The boot-info-table of a boot image, as found.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct BootInfoTable {
    /// bi_pvd
    pub pvd: u32,
    /// bi_file
    pub file: u32,
    /// bi_length
    pub length: u32,
    /// bi_csum
    pub checksum: u32,
    /// Whether the stored checksum matches the file's bytes from offset 64.
    pub checksum_ok: bool,
}

/// Reads the boot-info-table of the image at `lba` of `len` bytes, if it looks like one
/// (bi_pvd = 16 and bi_file = `lba`).
pub fn boot_info_table(iso: &IsoFile, lba: u32, len: u64) -> Result<Option<BootInfoTable>> {
    if !(bit::SUMMED_FROM as u64..=64 << 20).contains(&len) {
        return Ok(None);
    }
    let off = lba as u64 * BLOCK;
    if off + len > iso.len() {
        return Ok(None);
    }
    let b = iso.read(off, len, "boot image")?;
    let t = BootInfoTable {
        pvd: le32(&b, bit::PVD),
        file: le32(&b, bit::FILE),
        length: le32(&b, bit::LENGTH),
        checksum: le32(&b, bit::CHECKSUM),
        checksum_ok: false,
    };
    if t.pvd != 16 || t.file != lba {
        return Ok(None);
    }
    let n = (t.length as usize).min(b.len());
    Ok(Some(BootInfoTable {
        checksum_ok: boot_info_checksum(b.get(bit::SUMMED_FROM..n).unwrap_or(&[])) == t.checksum,
        ..t
    }))
}

/// The boot-info-table checksum: the sum of the little-endian 32-bit words of the boot file from
/// byte 64, the last partial word zero-padded (as mkisofs and xorriso write it).
pub fn boot_info_checksum(from_64: &[u8]) -> u32 {
    from_64.chunks(4).fold(0u32, |sum, w| {
        let mut word = [0u8; 4];
        word[..w.len()].copy_from_slice(w);
        sum.wrapping_add(u32::from_le_bytes(word))
    })
}

/// An MBR partition entry.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct MbrPart {
    /// Slot 1-4.
    pub index: usize,
    /// Status byte.
    pub status: u8,
    /// Type byte.
    pub ptype: u8,
    /// Start in 512-byte sectors.
    pub start: u32,
    /// Length in sectors.
    pub sectors: u32,
}

/// A GPT partition entry.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GptPart {
    /// Slot (1-based).
    pub index: usize,
    /// Type GUID (on-disk byte order, hex).
    pub type_guid: String,
    /// First LBA (512).
    pub first: u64,
    /// Last LBA inclusive.
    pub last: u64,
    /// Name.
    pub name: String,
}

/// The GPT header facts.
#[derive(Debug, Clone, Serialize)]
pub struct Gpt {
    /// Backup header LBA.
    pub backup_lba: u64,
    /// First usable.
    pub first_usable: u64,
    /// Last usable.
    pub last_usable: u64,
    /// Entries LBA.
    pub entries_lba: u64,
    /// Entry count.
    pub entry_count: u32,
    /// Entry size.
    pub entry_size: u32,
    /// Used entries.
    pub partitions: Vec<GptPart>,
}

/// An APM entry.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ApmPart {
    /// Slot (1-based).
    pub index: usize,
    /// Name.
    pub name: String,
    /// Type.
    pub ptype: String,
    /// Start in APM blocks.
    pub start: u32,
    /// Length in blocks.
    pub blocks: u32,
}

/// The system area (first 32 KiB) as understood.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SystemArea {
    /// MBR partitions (non-empty slots) when the 0x55AA signature is there.
    pub mbr: Vec<MbrPart>,
    /// isohybrid boot code recognised (isolinux LBA x4 at byte 432 points at a BIOS image).
    pub mbr_signature: bool,
    /// GPT, when the primary header at 512 is valid.
    pub gpt: Option<Gpt>,
    /// APM block size and entries.
    pub apm_block_size: Option<u16>,
    /// APM entries.
    pub apm: Vec<ApmPart>,
}

/// Parses the system area: MBR, GPT at LBA 1 (512), APM.
pub fn parse_system_area(iso: &IsoFile) -> Result<SystemArea> {
    let mut sa = SystemArea::default();
    if iso.len() < 32768 {
        return Ok(sa);
    }
    let s = iso.read(0, 32768, "system area")?;
    if let Some(entries) = pl::mbr_entries(&s) {
        sa.mbr_signature = true;
        for (i, e) in entries.iter().enumerate().filter(|(_, e)| !e.is_empty()) {
            sa.mbr.push(MbrPart {
                index: i + 1,
                status: e.status,
                ptype: e.ptype,
                start: e.start,
                sectors: e.sectors,
            });
        }
    }
    sa.gpt = system_area_gpt(iso, &s[512..1024])?;
    if &s[0..2] == b"ER" {
        let bs = u16::from_be_bytes([s[2], s[3]]);
        if bs == 512 || bs == 2048 {
            let bsz = bs as usize;
            if s.len() >= 2 * bsz && &s[bsz..bsz + 2] == b"PM" {
                sa.apm_block_size = Some(bs);
                let n = be32(&s, bsz + 4) as usize;
                for i in 0..n.min(32768 / bsz - 1) {
                    let e = &s[bsz * (i + 1)..bsz * (i + 2)];
                    if &e[0..2] != b"PM" {
                        break;
                    }
                    let cstr = |b: &[u8]| {
                        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                        String::from_utf8_lossy(&b[..end]).to_string()
                    };
                    sa.apm.push(ApmPart {
                        index: i + 1,
                        name: cstr(&e[16..48]),
                        ptype: cstr(&e[48..80]),
                        start: be32(e, 8),
                        blocks: be32(e, 12),
                    });
                }
            }
        }
    }
    Ok(sa)
}

/// The GPT whose header is at byte 512 of the system area (no CRC check: inspection shows what
/// is there), with its entries when they lie inside the image.
fn system_area_gpt(iso: &IsoFile, h: &[u8]) -> Result<Option<Gpt>> {
    let Ok(g) = GptHeader::parse(h, 512) else {
        return Ok(None);
    };
    let mut partitions = Vec::new();
    let (eoff, bytes) = (g.entries_lba.saturating_mul(512), g.entries_len());
    if bytes <= 1 << 20 && eoff.checked_add(bytes).is_some_and(|e| e <= iso.len()) {
        let ents = iso.read(eoff, bytes, "GPT partition entries")?;
        for (index, e) in pl::gpt_entries(&ents, g.entry_size as usize) {
            partitions.push(GptPart {
                index,
                type_guid: crate::checksum::hex(&e.type_guid),
                first: e.first,
                last: e.last,
                name: e.name,
            });
        }
    }
    Ok(Some(Gpt {
        backup_lba: g.alternate_lba,
        first_usable: g.first_usable,
        last_usable: g.last_usable,
        entries_lba: g.entries_lba,
        entry_count: g.entry_count,
        entry_size: g.entry_size,
        partitions,
    }))
}

/// CHS triple of a 512-byte sector for an MBR entry (capped at the largest address).
pub fn chs(lba: u64, heads: u64, secs: u64) -> [u8; 3] {
    let c = lba / (heads * secs);
    if c > 1023 {
        return [0xFE, 0xFF, 0xFF];
    }
    let h = (lba / secs) % heads;
    let s = lba % secs + 1;
    [h as u8, (s as u8) | (((c >> 8) as u8 & 3) << 6), c as u8]
}

/// Re-points the system area of an image that grew from `old_len` to `new_len` bytes: MBR and
/// GPT partitions starting in the system area (the whole-image ones) keep their distance to the
/// end; the GPT's backup moves to the new end; APM entries and the DDM that reached the old end
/// reach the new one. `sys` is the first 32 KiB (patched in place); returns the backup GPT
/// (entries then header) to write at `new_len - returned.len()`, if any.
pub fn repoint_system_area(sys: &mut [u8], old_len: u64, new_len: u64) -> Result<Option<Vec<u8>>> {
    if sys.len() < 32768 || new_len < old_len || !new_len.is_multiple_of(512) {
        return Err(err!(
            InvalidArgument,
            "system area re-point: {old_len} -> {new_len}"
        ));
    }
    let delta = (new_len - old_len) / 512;
    let old_sectors = old_len.div_ceil(512);
    if let Some(entries) = pl::mbr_entries(sys) {
        // geometry of isohybrid: 64 heads, 32 sectors (what xorriso and isohybrid write)
        for (i, e) in entries.iter().enumerate() {
            let o = mbr::entry(i);
            let (start, n) = (e.start as u64, e.sectors as u64);
            if n == 0 || start >= 64 {
                continue;
            }
            let end = start + n;
            if end + 64 * 32 * 2 < old_sectors {
                continue; // a small partition in the system area: leave it
            }
            let new_n = (n + delta).min(u32::MAX as u64 - start);
            let at = o + mbr::SECTORS;
            sys[at..at + 4].copy_from_slice(&(new_n as u32).to_le_bytes());
            let last = start + new_n - 1;
            let c = chs(last, 64, 32);
            // keep an old all-ones "beyond CHS" marker style as is
            let at = o + mbr::CHS_LAST;
            if sys[at..at + 3] != [0xFF, 0xFF, 0xFF] {
                sys[at..at + 3].copy_from_slice(&c);
            }
        }
    }
    let backup = if &sys[512..520] == gh::MAGIC {
        Some(repoint_gpt(sys, old_sectors, delta, new_len)?)
    } else {
        None
    };
    if &sys[0..2] == b"ER" {
        let bs = u16::from_be_bytes([sys[2], sys[3]]) as u64;
        if (bs == 512 || bs == 2048) && &sys[bs as usize..bs as usize + 2] == b"PM" {
            let old_blocks = old_len / bs;
            let new_blocks = new_len / bs;
            let d = new_blocks - old_blocks;
            if be32(sys, 4) as u64 == old_blocks {
                sys[4..8].copy_from_slice(&(new_blocks as u32).to_be_bytes());
            }
            let n = be32(sys, bs as usize + 4) as usize;
            for i in 0..n.min(32768 / bs as usize - 1) {
                let o = bs as usize * (i + 1);
                if &sys[o..o + 2] != b"PM" {
                    break;
                }
                let start = be32(sys, o + 8) as u64;
                let cnt = be32(sys, o + 12) as u64;
                if start + cnt >= old_blocks && start < old_blocks {
                    let nc = (cnt + d).min(u32::MAX as u64);
                    sys[o + 12..o + 16].copy_from_slice(&(nc as u32).to_be_bytes());
                    if be32(sys, o + 84) as u64 == cnt {
                        sys[o + 84..o + 88].copy_from_slice(&(nc as u32).to_be_bytes());
                    }
                }
            }
        }
    }
    Ok(backup)
}

/// Re-points the GPT whose header is at byte 512 of `sys` (entries inside `sys`): partitions
/// reaching the old end grow by `delta` sectors, the backup moves to the new end. Returns the
/// backup (entries, then header) for the last sectors of the grown image.
fn repoint_gpt(sys: &mut [u8], old_sectors: u64, delta: u64, new_len: u64) -> Result<Vec<u8>> {
    let h = 512usize;
    let at = |e: crate::Error| e.with_structure("GPT header").at(h as u64);
    let g = GptHeader::parse(&sys[h..h + 512], 512).map_err(|m| at(err!(BadField, "{m}")))?;
    let (hsize, esize, ebytes) = (
        g.header_size as usize,
        g.entry_size as usize,
        g.entries_len() as usize,
    );
    let eoff = g.entries_lba.saturating_mul(512).min(u32::MAX as u64) as usize;
    if eoff.saturating_add(ebytes) > sys.len() {
        return Err(at(err!(
            Unsupported,
            "GPT entries at LBA {} ({} x {esize}) outside the system area",
            g.entries_lba,
            g.entry_count
        )));
    }
    if !g.crc_ok(&sys[h..h + hsize]) {
        return Err(at(err!(BadChecksum, "GPT header CRC mismatch")));
    }
    let new_backup = new_len / 512 - 1;
    let new_last_usable = g
        .last_usable
        .saturating_add(new_backup.saturating_sub(g.alternate_lba));
    for (i, e) in pl::gpt_entries(&sys[eoff..eoff + ebytes], esize) {
        if e.first < 64 && e.last.saturating_add(64 * 32 * 2) >= old_sectors.saturating_sub(1) {
            let nl = e
                .last
                .saturating_add(delta)
                .min(new_last_usable.max(e.last));
            let o = eoff + (i - 1) * esize + pl::gpt_entry::LAST_LBA;
            sys[o..o + 8].copy_from_slice(&nl.to_le_bytes());
        }
    }
    let ents = sys[eoff..eoff + ebytes].to_vec();
    let put64 = |b: &mut [u8], o: usize, v: u64| b[o..o + 8].copy_from_slice(&v.to_le_bytes());
    let ecrc = crc32fast::hash(&ents);
    sys[h + gh::ENTRIES_CRC..h + gh::ENTRIES_CRC + 4].copy_from_slice(&ecrc.to_le_bytes());
    put64(sys, h + gh::ALTERNATE_LBA, new_backup);
    put64(sys, h + gh::LAST_USABLE, new_last_usable);
    pl::seal_gpt_header(&mut sys[h..], hsize);
    // backup: entries just before the last sector, header in the last sector
    let esectors = ebytes.div_ceil(512) as u64;
    let mut b = vec![0u8; esectors as usize * 512 + 512];
    b[..ebytes].copy_from_slice(&ents);
    let mut bh = sys[h..h + 512].to_vec();
    put64(&mut bh, gh::MY_LBA, new_backup);
    put64(&mut bh, gh::ALTERNATE_LBA, 1);
    put64(
        &mut bh,
        gh::ENTRIES_LBA,
        new_backup.saturating_sub(esectors),
    );
    pl::seal_gpt_header(&mut bh, hsize);
    let blen = b.len();
    b[blen - 512..].copy_from_slice(&bh);
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chs_of_isohybrid_geometry() {
        assert_eq!(chs(0, 64, 32), [0, 1, 0]);
        assert_eq!(chs(6143, 64, 32), [63, 32, 2]);
        assert_eq!(chs(64 * 32 * 2000, 64, 32), [0xFE, 0xFF, 0xFF]);
    }

    #[test]
    fn repoint_grows_mbr_and_gpt() {
        let mut sys = vec![0u8; 32768];
        sys[510] = 0x55;
        sys[511] = 0xAA;
        // partition 1: whole image 0..6144
        sys[446] = 0x80;
        sys[446 + 12..446 + 16].copy_from_slice(&6144u32.to_le_bytes());
        // partition 2: small, at 276
        sys[462 + 4] = 0xEF;
        sys[462 + 8..462 + 12].copy_from_slice(&276u32.to_le_bytes());
        sys[462 + 12..462 + 16].copy_from_slice(&2880u32.to_le_bytes());
        // GPT header
        let h = 512;
        sys[h..h + 8].copy_from_slice(b"EFI PART");
        sys[h + 8..h + 12].copy_from_slice(&0x10000u32.to_le_bytes());
        sys[h + 12..h + 16].copy_from_slice(&92u32.to_le_bytes());
        sys[h + 24..h + 32].copy_from_slice(&1u64.to_le_bytes());
        sys[h + 32..h + 40].copy_from_slice(&6143u64.to_le_bytes());
        sys[h + 40..h + 48].copy_from_slice(&64u64.to_le_bytes());
        sys[h + 48..h + 56].copy_from_slice(&6110u64.to_le_bytes());
        sys[h + 72..h + 80].copy_from_slice(&2u64.to_le_bytes());
        sys[h + 80..h + 84].copy_from_slice(&128u32.to_le_bytes());
        sys[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
        let e = 1024;
        sys[e] = 1;
        sys[e + 40..e + 48].copy_from_slice(&6087u64.to_le_bytes());
        let ecrc = crc32fast::hash(&sys[1024..1024 + 128 * 128]);
        sys[h + 88..h + 92].copy_from_slice(&ecrc.to_le_bytes());
        let c = crc32fast::hash(&sys[h..h + 92]);
        sys[h + 16..h + 20].copy_from_slice(&c.to_le_bytes());
        let b = repoint_system_area(&mut sys, 6144 * 512, 8192 * 512)
            .unwrap()
            .unwrap();
        assert_eq!(le32(&sys, 446 + 12), 8192);
        assert_eq!(le32(&sys, 462 + 12), 2880, "small partition untouched");
        assert_eq!(
            u64::from_le_bytes(sys[h + 32..h + 40].try_into().unwrap()),
            8191
        );
        assert_eq!(
            u64::from_le_bytes(sys[h + 48..h + 56].try_into().unwrap()),
            8158
        );
        assert_eq!(
            u64::from_le_bytes(sys[e + 40..e + 48].try_into().unwrap()),
            8135
        );
        assert_eq!(b.len(), 32 * 512 + 512);
        assert_eq!(&b[b.len() - 512..b.len() - 504], b"EFI PART");
        // header CRC verifies
        let mut hdr = sys[h..h + 92].to_vec();
        let stored = le32(&hdr, 16);
        hdr[16..20].fill(0);
        assert_eq!(crc32fast::hash(&hdr), stored);
        // a corrupted header CRC is refused
        sys[h + 60] ^= 1;
        let e = repoint_system_area(&mut sys, 8192 * 512, 9000 * 512).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::BadChecksum);
    }
}

#[cfg(test)]
mod catalog_tests {
    use super::*;

    #[test]
    fn boot_info_checksum_pads_the_last_partial_word() {
        // 5 bytes: one whole word and one byte, zero-padded (mkisofs, xorriso)
        assert_eq!(boot_info_checksum(&[1, 2, 3, 4, 5]), 0x0403_0206);
        assert_eq!(boot_info_checksum(&[0xff; 8]), 0xffff_fffe);
        assert_eq!(boot_info_checksum(&[]), 0);
    }

    fn catalog() -> Vec<u8> {
        let mut c = vec![0u8; 2048];
        c[0] = 1;
        c[30] = 0x55;
        c[31] = 0xAA;
        let sum = (0..16).fold(0u16, |s, i| s.wrapping_add(le16(&c, i * 2)));
        c[28..30].copy_from_slice(&(0u16.wrapping_sub(sum)).to_le_bytes());
        // initial entry: bootable, no emulation, 4 sectors at LBA 40
        c[32] = 0x88;
        c[38..40].copy_from_slice(&4u16.to_le_bytes());
        c[40..44].copy_from_slice(&40u32.to_le_bytes());
        // final section header: UEFI, one entry
        c[64] = 0x91;
        c[65] = 0xEF;
        c[66..68].copy_from_slice(&1u16.to_le_bytes());
        c[96] = 0x88;
        c[102..104].copy_from_slice(&2880u16.to_le_bytes());
        c[104..108].copy_from_slice(&30u32.to_le_bytes());
        c
    }

    fn iso_with(cat: &[u8]) -> IsoFile {
        let mut img = vec![0u8; 20 * 2048];
        img[19 * 2048..19 * 2048 + cat.len()].copy_from_slice(cat);
        IsoFile::from_bytes(std::path::Path::new("catalog.iso"), img)
    }

    #[test]
    fn golden_catalog_bios_and_uefi() {
        let iso = iso_with(&catalog());
        let c = parse_catalog(&iso, 19).unwrap();
        assert_eq!(c.entries.len(), 2);
        assert_eq!(
            (
                c.entries[0].platform,
                c.entries[0].load_sectors,
                c.entries[0].lba
            ),
            (0, 4, 40)
        );
        assert_eq!(
            (
                c.entries[1].platform,
                c.entries[1].load_sectors,
                c.entries[1].lba
            ),
            (0xEF, 2880, 30)
        );
        assert!(c.entries[1].bootable);
    }

    #[test]
    fn corrupted_catalog_errors() {
        let mut c = catalog();
        c[4] ^= 1;
        let iso = iso_with(&c);
        let e = parse_catalog(&iso, 19).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::BadChecksum);
        let mut c = catalog();
        c[31] = 0;
        let iso = iso_with(&c);
        assert_eq!(
            parse_catalog(&iso, 19).unwrap_err().kind(),
            crate::ErrorKind::BadSignature
        );
        let iso = iso_with(&catalog());
        assert_eq!(
            parse_catalog(&iso, 1000).unwrap_err().kind(),
            crate::ErrorKind::Truncated
        );
    }
}
