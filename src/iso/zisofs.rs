//! zisofs: files stored zlib-compressed block by block, announced by the Rock Ridge `ZF` entry
//! (zisofs format as written by mkisofs -z and libisofs; the Linux kernel's isofs reads it).
//!
//! Stored bytes: a 16-byte file header ([`MAGIC`], uncompressed size LE32, header size / 4,
//! log2 block size, 2 reserved), then `blocks + 1` LE32 pointers (offsets from the file start),
//! then one zlib stream per block; two equal pointers mean a block of zeros.

use crate::err;
use crate::error::Result;

/// The zisofs file header magic.
pub const MAGIC: [u8; 8] = [0x37, 0xE4, 0x53, 0x96, 0xC9, 0xDB, 0xD6, 0x07];
/// Size of the file header.
pub const HEADER_LEN: usize = 16;
/// Block sizes zisofs allows: 2^15 to 2^17 bytes.
pub const LOG2_BLOCK: std::ops::RangeInclusive<u8> = 15..=17;

/// Offsets in the `ZF` entry body (after the 4-byte SUSP entry header).
pub mod zf_field {
    /// Algorithm, two bytes (`pz` = zlib).
    pub const ALGORITHM: usize = 0;
    /// Header size in 4-byte words.
    pub const HEADER_WORDS: usize = 2;
    /// log2 of the block size.
    pub const LOG2_BLOCK: usize = 3;
    /// Uncompressed size, both-endian 32-bit.
    pub const SIZE: usize = 4;
    /// Length of the body.
    pub const LEN: usize = 12;
}

/// The Rock Ridge `ZF` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zf {
    /// Compression algorithm (`pz` for zlib).
    pub algorithm: [u8; 2],
    /// log2 of the block size.
    pub log2_block: u8,
    /// Uncompressed size in bytes.
    pub size: u32,
}

impl Zf {
    /// Parses a `ZF` entry body.
    pub fn parse(e: &[u8]) -> Result<Zf> {
        if e.len() < zf_field::LEN {
            return Err(err!(
                BadField,
                "ZF entry of {} bytes (needs 12)",
                e.len() + 4
            ));
        }
        Ok(Zf {
            algorithm: [e[zf_field::ALGORITHM], e[zf_field::ALGORITHM + 1]],
            log2_block: e[zf_field::LOG2_BLOCK],
            size: crate::bytes::le32(e, zf_field::SIZE),
        })
    }
}

/// Decodes a zisofs stream whose stored bytes `read(offset, len)` gives (`stored` bytes in
/// all), handing the uncompressed bytes to `out` block by block. Memory: one block.
pub fn decode(
    zf: &Zf,
    stored: u64,
    read: &mut dyn FnMut(u64, u64) -> Result<Vec<u8>>,
    out: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    if &zf.algorithm != b"pz" {
        return Err(err!(
            Unsupported,
            "zisofs algorithm {:?} (only \"pz\", zlib, is known)",
            String::from_utf8_lossy(&zf.algorithm)
        ));
    }
    if stored < HEADER_LEN as u64 {
        return Err(err!(
            Truncated,
            "zisofs file of {stored} bytes has no header"
        ));
    }
    let h = read(0, HEADER_LEN as u64)?;
    if h[..8] != MAGIC {
        return Err(err!(
            BadSignature,
            "no zisofs magic at the start of the file"
        ));
    }
    let size = crate::bytes::le32(&h, 8) as u64;
    let (header, log2) = (h[12] as u64 * 4, h[13]);
    if !LOG2_BLOCK.contains(&log2) || header < HEADER_LEN as u64 {
        return Err(err!(
            BadField,
            "zisofs header size {header} and block size 2^{log2} (needs >= 16 and 2^15..2^17)"
        ));
    }
    let bs = 1u64 << log2;
    let blocks = size.div_ceil(bs);
    let table_len = (blocks + 1) * 4;
    if header + table_len > stored {
        return Err(err!(
            Truncated,
            "zisofs block table of {blocks} blocks does not fit {stored} bytes"
        ));
    }
    let table = read(header, table_len)?;
    let ptr = |i: u64| crate::bytes::le32(&table, i as usize * 4) as u64;
    let mut done = 0u64;
    for i in 0..blocks {
        let (a, b) = (ptr(i), ptr(i + 1));
        let want = bs.min(size - done);
        if b < a || b > stored || (b > a && a < header + table_len) {
            return Err(err!(
                BadField,
                "zisofs block {i} at {a}..{b} outside the file's {stored} bytes"
            ));
        }
        let block = if a == b {
            vec![0u8; want as usize]
        } else {
            inflate(&read(a, b - a)?, want).map_err(|e| e.at(a))?
        };
        out(&block)?;
        done += want;
    }
    Ok(done)
}

/// Inflates one zlib block that must give exactly `want` bytes.
fn inflate(z: &[u8], want: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::with_capacity(want as usize);
    flate2::read::ZlibDecoder::new(z)
        .take(want + 1)
        .read_to_end(&mut out)
        .map_err(|e| err!(BadField, "zisofs block does not inflate: {e}"))?;
    if out.len() as u64 != want {
        return Err(err!(
            BadField,
            "zisofs block inflates to {} bytes, {want} expected",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A zisofs stream of `data` with 32 KiB blocks (a zero block stored as two equal pointers).
    pub(crate) fn encode(data: &[u8]) -> Vec<u8> {
        let bs = 1usize << 15;
        let blocks = data.len().div_ceil(bs);
        let mut out = MAGIC.to_vec();
        out.extend((data.len() as u32).to_le_bytes());
        out.extend([4, 15, 0, 0]);
        let table_at = out.len();
        out.resize(table_at + (blocks + 1) * 4, 0);
        let mut ptrs = vec![out.len() as u32];
        for c in data.chunks(bs) {
            if c.iter().any(|&b| b != 0) {
                let mut z = flate2::write::ZlibEncoder::new(Vec::new(), Default::default());
                z.write_all(c).unwrap();
                out.extend(z.finish().unwrap());
            }
            ptrs.push(out.len() as u32);
        }
        for (i, p) in ptrs.iter().enumerate() {
            out[table_at + i * 4..table_at + i * 4 + 4].copy_from_slice(&p.to_le_bytes());
        }
        out
    }

    fn run(stored: &[u8]) -> Result<Vec<u8>> {
        let zf = Zf {
            algorithm: *b"pz",
            log2_block: 15,
            size: 0,
        };
        let mut got = Vec::new();
        decode(
            &zf,
            stored.len() as u64,
            &mut |o, n| {
                stored
                    .get(o as usize..(o + n) as usize)
                    .map(|s| s.to_vec())
                    .ok_or_else(|| err!(Truncated, "past the end"))
            },
            &mut |b| {
                got.extend_from_slice(b);
                Ok(())
            },
        )?;
        Ok(got)
    }

    #[test]
    fn round_trip_with_zero_blocks() {
        let mut data = vec![0u8; 100_000];
        data[..5000].fill(b'a');
        data[90_000..].fill(b'z');
        assert_eq!(run(&encode(&data)).unwrap(), data);
        assert_eq!(run(&encode(b"")).unwrap(), b"");
    }

    #[test]
    fn bad_streams_are_named() {
        let data = vec![7u8; 70_000];
        let good = encode(&data);
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert!(run(&bad).unwrap_err().to_string().contains("magic"));
        let mut bad = good.clone();
        bad[13] = 20;
        assert!(run(&bad).unwrap_err().to_string().contains("2^20"));
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(run(&bad).is_err());
        let mut bad = good.clone();
        bad[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(run(&bad).unwrap_err().to_string().contains("outside"));
        assert!(run(&good[..20]).is_err());
    }
}
