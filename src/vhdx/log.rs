//! The VHDX metadata log: finding the active sequence and replaying it in memory.
//!
//! The log is a circular buffer of 4 KiB sectors. An entry is a header sector (`loge`) with
//! descriptors (`zero` / `desc`) followed by one data sector (`data`) per data descriptor; a
//! CRC-32C covers the whole entry. Entries with consecutive sequence numbers form a sequence;
//! the sequence whose last entry has the highest sequence number is the active one, and its
//! entries, replayed in order from the one its last entry's `tail` points at, give the file's
//! true metadata. Replay here never writes the file: it builds an overlay of 4 KiB sectors.

use super::format::crc32c;
use super::layout::{
    DataDescriptorLayout, DataSectorLayout, LogEntryHeaderLayout, ZeroDescriptorLayout,
};
use crate::err;
use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::mem::offset_of;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// MS-VHDX 2.3.1.1: signature of an entry header.
const LOG_ENTRY_SIGNATURE: &[u8; 4] = b"loge";
/// MS-VHDX 2.3.1.2: signature of a zero descriptor.
const ZERO_DESCRIPTOR_SIGNATURE: &[u8; 4] = b"zero";
/// MS-VHDX 2.3.1.3: signature of a data descriptor.
const DATA_DESCRIPTOR_SIGNATURE: &[u8; 4] = b"desc";
/// MS-VHDX 2.3.1.4: signature of a data sector.
const DATA_SECTOR_SIGNATURE: &[u8; 4] = b"data";

/// Log sector size.
pub const SECTOR: u64 = 4096;
/// Largest amount of logged data we keep in memory while replaying.
pub const MAX_OVERLAY_DATA: u64 = 256 << 20;
/// Largest number of overlay sectors (zeroed sectors cost a map entry each).
pub const MAX_OVERLAY_SECTORS: u64 = 4 << 20;

/// What a logged write puts in a 4 KiB sector of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sector {
    /// Zeros.
    Zero,
    /// These 4096 bytes.
    Data(Box<[u8]>),
}

/// One descriptor of a parsed entry.
#[derive(Debug, Clone, Copy)]
enum Desc {
    Zero {
        file_offset: u64,
        len: u64,
    },
    Data {
        file_offset: u64,
        leading: u64,
        trailing: u32,
        sector_pos: u64,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    pos: u64,
    seq: u64,
    len: u64,
    tail: u64,
    flushed_file_offset: u64,
    last_file_offset: u64,
    descs: Vec<Desc>,
}

/// Result of reading a log.
#[derive(Debug, Default)]
pub struct Replay {
    /// Entries in the active sequence (0: nothing to replay).
    pub entries: usize,
    /// Sequence number of the last entry.
    pub head_sequence: u64,
    /// File sectors the log rewrites (4 KiB aligned file offset -> content).
    pub overlay: BTreeMap<u64, Sector>,
    /// File size after replay (at least the real size).
    pub file_size: u64,
    /// Human notes.
    pub notes: Vec<String>,
}

/// Number of 4 KiB sectors holding an entry header and `count` descriptors.
pub fn desc_sectors(count: u64) -> u64 {
    (count + 2).div_ceil(128)
}

/// Reads the log at `log_offset` (`log_length` bytes) with `read(buf, file_offset)` and returns
/// the active sequence replayed into an overlay. `file_len` is the real file size.
pub fn replay(
    read: &dyn Fn(&mut [u8], u64) -> Result<()>,
    log_offset: u64,
    log_length: u64,
    log_guid: &[u8; 16],
    file_len: u64,
) -> Result<Replay> {
    let s = "VHDX log";
    let read_log = |buf: &mut [u8], pos: u64| -> Result<()> {
        // one 4 KiB sector at a log-relative position (wrapping)
        read(buf, log_offset + pos % log_length)
    };
    let mut sec = vec![0u8; SECTOR as usize];
    let entries = scan_entries(&read_log, &mut sec, log_length, log_guid)?;
    let mut out = Replay {
        file_size: file_len,
        ..Default::default()
    };
    if entries.is_empty() {
        out.notes.push(
            "log GUID is set but the log holds no valid entry: nothing to replay (clean)".into(),
        );
        return Ok(out);
    }
    let Some(chain) = longest_sequence(&entries, log_length) else {
        return Ok(out);
    };
    let head = &entries[chain.last().unwrap_or(&0)];
    let from = match chain.iter().position(|&p| p == head.tail) {
        Some(i) => i,
        None => {
            out.notes.push(format!(
                "log head's tail 0x{:x} is not inside its sequence: replaying the whole sequence",
                head.tail
            ));
            0
        }
    };
    let active = &chain[from..];
    out.entries = active.len();
    out.head_sequence = head.seq;
    let mut data_bytes = 0u64;
    for p in active {
        let e = &entries[p];
        if e.flushed_file_offset > file_len {
            return Err(err!(
                Truncated,
                "log entry {} says the file had at least {} bytes, it has {}",
                e.seq,
                e.flushed_file_offset,
                file_len
            )
            .with_structure(s)
            .at(log_offset + e.pos));
        }
        apply_entry(
            &mut out,
            e,
            &read_log,
            &mut sec,
            &mut data_bytes,
            log_offset,
        )?;
        if out.file_size < e.last_file_offset {
            out.file_size = e.last_file_offset;
        }
    }
    out.notes.push(format!(
        "log replayed in memory: {} entr{} up to sequence {}, {} sector(s) rewritten",
        out.entries,
        if out.entries == 1 { "y" } else { "ies" },
        out.head_sequence,
        out.overlay.len()
    ));
    Ok(out)
}

/// Every valid entry of the log, by log position (entries start on 4 KiB boundaries).
fn scan_entries(
    read_log: &dyn Fn(&mut [u8], u64) -> Result<()>,
    sec: &mut [u8],
    log_length: u64,
    log_guid: &[u8; 16],
) -> Result<HashMap<u64, Entry>> {
    let mut entries: HashMap<u64, Entry> = HashMap::new();
    let mut pos = 0;
    while pos < log_length {
        if let Some(e) = parse_entry(read_log, sec, pos, log_length, log_guid)? {
            entries.insert(pos, e);
        }
        pos += SECTOR;
    }
    Ok(entries)
}

/// The sequence to replay: of the chains of entries whose sequence numbers follow each other,
/// the one whose head has the highest sequence number (positions, tail first).
fn longest_sequence(entries: &HashMap<u64, Entry>, log_length: u64) -> Option<Vec<u64>> {
    // links: entry -> next entry in the sequence
    let next_of = |e: &Entry| -> Option<u64> {
        let np = (e.pos + e.len) % log_length;
        entries
            .get(&np)
            .filter(|n| n.seq == e.seq.wrapping_add(1) && np != e.pos)
            .map(|n| n.pos)
    };
    let mut has_pred: HashMap<u64, bool> = HashMap::new();
    for e in entries.values() {
        if let Some(n) = next_of(e) {
            has_pred.insert(n, true);
        }
    }
    let mut best: Option<Vec<u64>> = None;
    let mut best_seq = 0;
    let mut starts: Vec<u64> = entries
        .keys()
        .copied()
        .filter(|p| !has_pred.contains_key(p))
        .collect();
    starts.sort_unstable();
    for start in starts {
        let mut chain = vec![start];
        let mut cur = start;
        while let Some(n) = entries.get(&cur).and_then(next_of) {
            if chain.len() as u64 > log_length / SECTOR {
                break;
            }
            chain.push(n);
            cur = n;
        }
        let head_seq = entries.get(&cur).map(|e| e.seq).unwrap_or(0);
        if best.is_none() || head_seq > best_seq {
            best_seq = head_seq;
            best = Some(chain);
        }
    }
    best
}

/// Applies the descriptors of entry `e` to the overlay (zero runs and data sectors, bounded).
fn apply_entry(
    out: &mut Replay,
    e: &Entry,
    read_log: &dyn Fn(&mut [u8], u64) -> Result<()>,
    sec: &mut [u8],
    data_bytes: &mut u64,
    log_offset: u64,
) -> Result<()> {
    let s = "VHDX log";
    for d in &e.descs {
        match *d {
            Desc::Zero { file_offset, len } => {
                let n = len / SECTOR;
                if out.overlay.len() as u64 + n > MAX_OVERLAY_SECTORS {
                    return Err(err!(
                        LimitExceeded,
                        "log zeroes more than {} sectors: too large to replay in memory",
                        MAX_OVERLAY_SECTORS
                    )
                    .with_structure(s)
                    .at(log_offset + e.pos));
                }
                for i in 0..n {
                    out.overlay.insert(file_offset + i * SECTOR, Sector::Zero);
                }
                out.file_size = out.file_size.max(file_offset.saturating_add(len));
            }
            Desc::Data {
                file_offset,
                leading,
                trailing,
                sector_pos,
            } => {
                read_log(sec, sector_pos)?;
                let mut v = vec![0u8; SECTOR as usize];
                // The descriptor holds what the data sector's frame displaced.
                let (head, tail) = (
                    offset_of!(DataSectorLayout, data),
                    offset_of!(DataSectorLayout, sequence_low),
                );
                v[..head].copy_from_slice(&leading.to_le_bytes());
                v[head..tail].copy_from_slice(&sec[head..tail]);
                v[tail..].copy_from_slice(&trailing.to_le_bytes());
                *data_bytes += SECTOR;
                if *data_bytes > MAX_OVERLAY_DATA || out.overlay.len() as u64 >= MAX_OVERLAY_SECTORS
                {
                    return Err(err!(
                        LimitExceeded,
                        "log holds more than {} MiB of data: too large to replay in memory",
                        MAX_OVERLAY_DATA >> 20
                    )
                    .with_structure(s)
                    .at(log_offset + e.pos));
                }
                out.overlay
                    .insert(file_offset, Sector::Data(v.into_boxed_slice()));
                out.file_size = out.file_size.max(file_offset.saturating_add(SECTOR));
            }
        }
    }
    Ok(())
}

/// Parses and fully validates the entry at log position `pos`; `None` when there is no valid
/// entry there (which is normal: most positions are not entry starts).
fn parse_entry(
    read_log: &dyn Fn(&mut [u8], u64) -> Result<()>,
    sec: &mut [u8],
    pos: u64,
    log_length: u64,
    log_guid: &[u8; 16],
) -> Result<Option<Entry>> {
    read_log(sec, pos)?;
    let Some(h) = entry_header(sec, log_length, log_guid) else {
        return Ok(None);
    };
    let seq = h.sequence_number.get();
    let len = u64::from(h.entry_length.get());
    let count = u64::from(h.descriptor_count.get());
    let Some(descs_raw) = read_checked_entry(read_log, sec, pos, len, count, h.checksum.get())?
    else {
        return Ok(None);
    };
    let frame = EntryFrame {
        pos,
        seq,
        data_start: desc_sectors(count),
        sectors: len / SECTOR,
        log_length,
    };
    let Some(descs) = parse_descriptors(read_log, &descs_raw, count, &frame)? else {
        return Ok(None);
    };
    Ok(Some(Entry {
        pos,
        seq,
        len,
        tail: u64::from(h.tail.get()),
        flushed_file_offset: h.flushed_file_offset.get(),
        last_file_offset: h.last_file_offset.get(),
        descs,
    }))
}

/// The entry header in `sec` when its signature, length, tail, sequence number and log GUID
/// are plausible for this log.
fn entry_header(sec: &[u8], log_length: u64, log_guid: &[u8; 16]) -> Option<LogEntryHeaderLayout> {
    let (h, _) = LogEntryHeaderLayout::read_from_prefix(sec).ok()?;
    let len = u64::from(h.entry_length.get());
    let tail = u64::from(h.tail.get());
    if &h.signature != LOG_ENTRY_SIGNATURE
        || len == 0
        || len % SECTOR != 0
        || len > log_length
        || h.sequence_number.get() == 0
        || &h.log_guid != log_guid
    {
        return None;
    }
    let dsec = desc_sectors(u64::from(h.descriptor_count.get()));
    if dsec > len / SECTOR || tail % SECTOR != 0 || tail >= log_length {
        return None;
    }
    Some(h)
}

/// Reads the rest of the entry (`sec` holds its first sector) and checks its CRC-32C (over the
/// whole entry, checksum field as zero). Returns the descriptor sectors, or `None` on a
/// checksum mismatch.
fn read_checked_entry(
    read_log: &dyn Fn(&mut [u8], u64) -> Result<()>,
    sec: &[u8],
    pos: u64,
    len: u64,
    count: u64,
    stored_crc: u32,
) -> Result<Option<Vec<u8>>> {
    let sum_at = offset_of!(LogEntryHeaderLayout, checksum);
    let mut crc = crc32c::crc32c(&sec[..sum_at]);
    crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc = crc32c::crc32c_append(crc, &sec[sum_at + 4..]);
    let dsec = desc_sectors(count);
    let mut descs_raw: Vec<u8> = sec.to_vec();
    let mut buf = vec![0u8; SECTOR as usize];
    for i in 1..len / SECTOR {
        read_log(&mut buf, pos + i * SECTOR)?;
        crc = crc32c::crc32c_append(crc, &buf);
        if i < dsec {
            descs_raw.extend_from_slice(&buf);
        }
    }
    Ok((crc == stored_crc).then_some(descs_raw))
}

/// Where an entry sits: its log position, sequence number, first data sector and size in
/// sectors, in a log of `log_length` bytes.
struct EntryFrame {
    pos: u64,
    seq: u64,
    data_start: u64,
    sectors: u64,
    log_length: u64,
}

/// The entry's descriptors (after the 64-byte header in `descs_raw`), each checked against the
/// entry's sequence number; data descriptors against their data sector. `None` when one is
/// invalid.
fn parse_descriptors(
    read_log: &dyn Fn(&mut [u8], u64) -> Result<()>,
    descs_raw: &[u8],
    count: u64,
    f: &EntryFrame,
) -> Result<Option<Vec<Desc>>> {
    const D: usize = size_of::<ZeroDescriptorLayout>();
    let mut descs = Vec::with_capacity(count as usize);
    let mut data_idx = f.data_start;
    let mut buf = vec![0u8; SECTOR as usize];
    for i in 0..count as usize {
        let o = size_of::<LogEntryHeaderLayout>() + i * D;
        let Some(raw) = descs_raw.get(o..o + D) else {
            return Ok(None);
        };
        // Both descriptor kinds share the signature, file offset and sequence number fields.
        let Ok(z) = ZeroDescriptorLayout::read_from_bytes(raw) else {
            return Ok(None);
        };
        let file_offset = z.file_offset.get();
        if z.sequence_number.get() != f.seq || !file_offset.is_multiple_of(SECTOR) {
            return Ok(None);
        }
        match &z.signature {
            ZERO_DESCRIPTOR_SIGNATURE => {
                let zl = z.zero_length.get();
                if !zl.is_multiple_of(SECTOR) || file_offset.checked_add(zl).is_none() {
                    return Ok(None);
                }
                descs.push(Desc::Zero {
                    file_offset,
                    len: zl,
                });
            }
            DATA_DESCRIPTOR_SIGNATURE => {
                let Ok(d) = DataDescriptorLayout::read_from_bytes(raw) else {
                    return Ok(None);
                };
                if data_idx >= f.sectors {
                    return Ok(None);
                }
                let sp = f.pos + data_idx * SECTOR;
                read_log(&mut buf, sp)?;
                let Ok(ds) = DataSectorLayout::ref_from_bytes(&buf[..]) else {
                    return Ok(None);
                };
                let dseq =
                    (u64::from(ds.sequence_high.get()) << 32) | u64::from(ds.sequence_low.get());
                if &ds.signature != DATA_SECTOR_SIGNATURE || dseq != f.seq {
                    return Ok(None);
                }
                descs.push(Desc::Data {
                    file_offset,
                    leading: u64::from_le_bytes(d.leading_bytes),
                    trailing: u32::from_le_bytes(d.trailing_bytes),
                    sector_pos: sp % f.log_length,
                });
                data_idx += 1;
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(descs))
}

/// A write a log entry records (for building logs: tests and in-place writers).
#[derive(Debug, Clone)]
pub enum LogWrite {
    /// 4096 bytes at a 4 KiB aligned file offset.
    Data(u64, Box<[u8]>),
    /// `len` zero bytes (multiple of 4 KiB) at a 4 KiB aligned file offset.
    Zero(u64, u64),
}

/// Parameters of an encoded log entry.
#[derive(Debug, Clone, Copy)]
pub struct EntryParams {
    /// The header's log GUID.
    pub log_guid: [u8; 16],
    /// Sequence number (> 0).
    pub sequence: u64,
    /// Log-relative offset of the sequence's first entry.
    pub tail: u32,
    /// File size when the entry was written.
    pub flushed_file_offset: u64,
    /// File size after the entry is applied.
    pub last_file_offset: u64,
}

/// Encodes one log entry (header, descriptors, data sectors) with its checksum.
pub fn encode_entry(p: &EntryParams, writes: &[LogWrite]) -> Result<Vec<u8>> {
    let count = writes.len() as u64;
    let dsec = desc_sectors(count);
    let ndata = writes
        .iter()
        .filter(|w| matches!(w, LogWrite::Data(..)))
        .count() as u64;
    let total = (dsec + ndata) * SECTOR;
    let total32 = u32::try_from(total).map_err(|_| err!(InvalidArgument, "log entry too big"))?;
    let mut b = vec![0u8; total as usize];
    let mut h = LogEntryHeaderLayout::new_zeroed();
    h.signature = *LOG_ENTRY_SIGNATURE;
    h.entry_length.set(total32);
    h.tail.set(p.tail);
    h.sequence_number.set(p.sequence);
    h.descriptor_count.set(count as u32);
    h.log_guid = p.log_guid;
    h.flushed_file_offset.set(p.flushed_file_offset);
    h.last_file_offset.set(p.last_file_offset);
    let hlen = size_of::<LogEntryHeaderLayout>();
    b[..hlen].copy_from_slice(h.as_bytes());
    const D: usize = size_of::<ZeroDescriptorLayout>();
    let mut data_at = (dsec * SECTOR) as usize;
    for (i, w) in writes.iter().enumerate() {
        let o = hlen + i * D;
        match w {
            LogWrite::Zero(off, len) => {
                let mut z = ZeroDescriptorLayout::new_zeroed();
                z.signature = *ZERO_DESCRIPTOR_SIGNATURE;
                z.zero_length.set(*len);
                z.file_offset.set(*off);
                z.sequence_number.set(p.sequence);
                b[o..o + D].copy_from_slice(z.as_bytes());
            }
            LogWrite::Data(off, data) => {
                let Ok(sector) = DataSectorLayout::ref_from_bytes(&data[..]) else {
                    return Err(err!(InvalidArgument, "a logged sector is 4096 bytes"));
                };
                // The sector's first 8 and last 4 bytes go to the descriptor; the data sector
                // carries the signature and the sequence number there instead.
                let mut d = DataDescriptorLayout::new_zeroed();
                d.signature = *DATA_DESCRIPTOR_SIGNATURE;
                let (head, tail) = (
                    offset_of!(DataSectorLayout, data),
                    offset_of!(DataSectorLayout, sequence_low),
                );
                d.trailing_bytes.copy_from_slice(&data[tail..]);
                d.leading_bytes.copy_from_slice(&data[..head]);
                d.file_offset.set(*off);
                d.sequence_number.set(p.sequence);
                b[o..o + D].copy_from_slice(d.as_bytes());
                let mut ds = *sector;
                ds.signature = *DATA_SECTOR_SIGNATURE;
                ds.sequence_high.set((p.sequence >> 32) as u32);
                ds.sequence_low.set(p.sequence as u32);
                b[data_at..data_at + SECTOR as usize].copy_from_slice(ds.as_bytes());
                data_at += SECTOR as usize;
            }
        }
    }
    let c = crc32c(&b);
    let sum_at = offset_of!(LogEntryHeaderLayout, checksum);
    b[sum_at..sum_at + 4].copy_from_slice(&c.to_le_bytes());
    Ok(b)
}

/// Wraps an error from reading the log with its location.
pub fn log_err(e: Error, at: u64) -> Error {
    e.with_structure("VHDX log").at(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(log: &[u8], guid: &[u8; 16], file_len: u64) -> Result<Replay> {
        let r = |buf: &mut [u8], off: u64| -> Result<()> {
            let o = off as usize;
            buf.copy_from_slice(&log[o..o + buf.len()]);
            Ok(())
        };
        replay(&r, 0, log.len() as u64, guid, file_len)
    }

    fn sector(v: u8) -> Box<[u8]> {
        let mut s = vec![v; 4096];
        s[0] = 0xAA;
        s[4095] = 0xBB;
        s.into_boxed_slice()
    }

    #[test]
    fn an_entry_may_wrap_around_the_end_of_the_log() {
        let g = [9u8; 16];
        let mut log = vec![0u8; 1 << 20];
        let e = encode_entry(
            &EntryParams {
                log_guid: g,
                sequence: 5,
                tail: (1 << 20) - 4096,
                flushed_file_offset: 0,
                last_file_offset: 0,
            },
            &[LogWrite::Data(8192, sector(4))],
        )
        .unwrap();
        assert_eq!(e.len(), 8192);
        // header sector in the last log sector, data sector wrapped to the first
        log[(1 << 20) - 4096..].copy_from_slice(&e[..4096]);
        log[..4096].copy_from_slice(&e[4096..]);
        let r = run(&log, &g, 1 << 20).unwrap();
        assert_eq!(r.entries, 1);
        assert_eq!(r.overlay.get(&8192), Some(&Sector::Data(sector(4))));
    }

    #[test]
    fn empty_log_is_clean() {
        let log = vec![0u8; 1 << 20];
        let r = run(&log, &[7; 16], 1 << 30).unwrap();
        assert_eq!(r.entries, 0);
        assert!(r.overlay.is_empty());
        assert!(r.notes[0].contains("clean"));
    }

    #[test]
    fn sequence_with_highest_number_wins_and_applies_in_order() {
        let g = [7u8; 16];
        let mut log = vec![0u8; 1 << 20];
        let p = |seq, tail| EntryParams {
            log_guid: g,
            sequence: seq,
            tail,
            flushed_file_offset: 8 << 20,
            last_file_offset: 8 << 20,
        };
        // an old sequence at the end of the log (seq 3) and the active one at 0 (seq 10, 11)
        let old = encode_entry(&p(3, 0x80000), &[LogWrite::Data(4 << 20, sector(1))]).unwrap();
        log[0x80000..0x80000 + old.len()].copy_from_slice(&old);
        let e1 = encode_entry(
            &p(10, 0),
            &[
                LogWrite::Data(4 << 20, sector(2)),
                LogWrite::Zero(5 << 20, 8192),
            ],
        )
        .unwrap();
        let n1 = e1.len();
        log[..n1].copy_from_slice(&e1);
        let e2 = encode_entry(&p(11, 0), &[LogWrite::Data(4 << 20, sector(3))]).unwrap();
        log[n1..n1 + e2.len()].copy_from_slice(&e2);
        let r = run(&log, &g, 8 << 20).unwrap();
        assert_eq!(r.entries, 2);
        assert_eq!(r.head_sequence, 11);
        assert_eq!(r.overlay.get(&(4 << 20)), Some(&Sector::Data(sector(3))));
        assert_eq!(r.overlay.get(&((5 << 20) + 4096)), Some(&Sector::Zero));
        assert_eq!(r.overlay.len(), 3);
        // a wrong GUID makes every entry invalid
        assert_eq!(run(&log, &[8; 16], 8 << 20).unwrap().entries, 0);
        // a corrupted byte of a data sector invalidates its entry: the older sequence wins
        let mut bad = log.clone();
        bad[n1 + 4096 + 100] ^= 1;
        let r = run(&bad, &g, 8 << 20).unwrap();
        assert_eq!(r.head_sequence, 10);
        assert_eq!(r.overlay.get(&(4 << 20)), Some(&Sector::Data(sector(2))));
        // a file shorter than the log's flushed offset is truncated
        assert_eq!(
            run(&log, &g, 1 << 20).unwrap_err().kind(),
            crate::ErrorKind::Truncated
        );
    }
}
