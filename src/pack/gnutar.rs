//! GNU tar headers, including old-GNU sparse members (type `S`), as GNU tar reads them
//! (GNU tar manual, "Basic Tar Format" and "Storing Sparse Files", `struct oldgnu_header`).

use crate::err;
use crate::error::Result;

/// Tar block size.
pub const BLOCK: usize = 512;
/// Offset of the name field (100 bytes).
pub const NAME: usize = 0;
/// Offset of the mode field (8 bytes, octal).
pub const MODE: usize = 100;
/// Offset of the uid field.
pub const UID: usize = 108;
/// Offset of the gid field.
pub const GID: usize = 116;
/// Offset of the size field (12 bytes): bytes stored in the archive.
pub const SIZE: usize = 124;
/// Offset of the mtime field (12 bytes).
pub const MTIME: usize = 136;
/// Offset of the checksum field (8 bytes).
pub const CHKSUM: usize = 148;
/// Offset of the type flag.
pub const TYPEFLAG: usize = 156;
/// Offset of the magic (`ustar ` + ` \0` for GNU).
pub const MAGIC: usize = 257;
/// Offset of the user name (32 bytes).
pub const UNAME: usize = 265;
/// Offset of the group name (32 bytes).
pub const GNAME: usize = 297;
/// Offset of the 4 in-header sparse entries (`{offset[12], numbytes[12]}`).
pub const SPARSE: usize = 386;
/// Offset of the "more sparse entries follow in extension blocks" flag.
pub const IS_EXTENDED: usize = 482;
/// Offset of the real (expanded) size (12 bytes).
pub const REALSIZE: usize = 483;
/// Sparse entries in the header.
pub const HEADER_SPARSE: usize = 4;
/// Sparse entries in an extension block (the flag is at byte 504).
pub const EXT_SPARSE: usize = 21;
const _: () = assert!(SPARSE + HEADER_SPARSE * 24 == IS_EXTENDED);
const _: () = assert!(REALSIZE + 12 < BLOCK);
const _: () = assert!(EXT_SPARSE * 24 == 504);

/// Writes a 12-byte (or 8-byte) numeric field: octal when it fits, else GNU base-256.
pub fn put_num(b: &mut [u8], v: u64) {
    let w = b.len();
    let max_octal = 1u64.checked_shl(3 * (w as u32 - 1)).unwrap_or(u64::MAX);
    if v < max_octal {
        let s = format!("{v:0width$o}", width = w - 1);
        b[..w - 1].copy_from_slice(s.as_bytes());
        b[w - 1] = 0;
    } else {
        b.fill(0);
        b[0] = 0x80;
        b[w - 8..].copy_from_slice(&v.to_be_bytes());
    }
}

/// A header for a regular member (`0`, POSIX USTAR magic `ustar\0` `00`) or, with `sparse`, an
/// old-GNU sparse member (`S`, magic `ustar  \0`); the caller fills the sparse fields.
pub fn header(name: &str, size: u64, mtime: u64, sparse: bool) -> Result<[u8; BLOCK]> {
    if name.len() >= 100 {
        return Err(err!(
            InvalidArgument,
            "tar member name {name:?} is 100 bytes or more"
        ));
    }
    let mut b = [0u8; BLOCK];
    b[NAME..NAME + name.len()].copy_from_slice(name.as_bytes());
    put_num(&mut b[MODE..MODE + 8], 0o644);
    put_num(&mut b[UID..UID + 8], 0);
    put_num(&mut b[GID..GID + 8], 0);
    put_num(&mut b[SIZE..SIZE + 12], size);
    put_num(&mut b[MTIME..MTIME + 12], mtime);
    b[TYPEFLAG] = if sparse { b'S' } else { b'0' };
    b[MAGIC..MAGIC + 8].copy_from_slice(if sparse { b"ustar  \0" } else { b"ustar\x0000" });
    b[UNAME..UNAME + 4].copy_from_slice(b"root");
    b[GNAME..GNAME + 4].copy_from_slice(b"root");
    Ok(b)
}

/// Computes and stores the header checksum (sum of bytes with the field as spaces).
pub fn set_checksum(b: &mut [u8; BLOCK]) {
    b[CHKSUM..CHKSUM + 8].fill(b' ');
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    let s = format!("{sum:06o}\0 ");
    b[CHKSUM..CHKSUM + 8].copy_from_slice(s.as_bytes());
}

/// The header and extension blocks of a sparse member whose data segments are `map`
/// ((offset, length) in the expanded file) and whose expanded size is `real_size`.
pub fn sparse_headers(
    name: &str,
    map: &[(u64, u64)],
    real_size: u64,
    mtime: u64,
) -> Result<Vec<u8>> {
    let stored: u64 = map.iter().map(|m| m.1).sum();
    let mut h = header(name, stored, mtime, true)?;
    put_num(&mut h[REALSIZE..REALSIZE + 12], real_size);
    let (first, rest) = map.split_at(map.len().min(HEADER_SPARSE));
    for (i, (o, n)) in first.iter().enumerate() {
        let at = SPARSE + 24 * i;
        put_num(&mut h[at..at + 12], *o);
        put_num(&mut h[at + 12..at + 24], *n);
    }
    h[IS_EXTENDED] = u8::from(!rest.is_empty());
    set_checksum(&mut h);
    let mut out = h.to_vec();
    let chunks: Vec<&[(u64, u64)]> = rest.chunks(EXT_SPARSE).collect();
    for (k, c) in chunks.iter().enumerate() {
        let mut e = [0u8; BLOCK];
        for (i, (o, n)) in c.iter().enumerate() {
            put_num(&mut e[24 * i..24 * i + 12], *o);
            put_num(&mut e[24 * i + 12..24 * i + 24], *n);
        }
        e[504] = u8::from(k + 1 < chunks.len());
        out.extend_from_slice(&e);
    }
    Ok(out)
}

/// Writes a tar archive front to back: regular members, GNU sparse members, end blocks.
pub struct TarWriter<W: std::io::Write> {
    inner: W,
    mtime: u64,
    written: u64,
}

fn io(e: std::io::Error) -> crate::Error {
    crate::Error::io(e, "writing the tar archive")
}

impl<W: std::io::Write> TarWriter<W> {
    /// An archive whose members carry `mtime`.
    pub fn new(inner: W, mtime: u64) -> Self {
        TarWriter {
            inner,
            mtime,
            written: 0,
        }
    }

    fn put(&mut self, b: &[u8]) -> Result<()> {
        self.inner.write_all(b).map_err(io)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self, n: u64) -> Result<()> {
        let r = (BLOCK as u64 - n % BLOCK as u64) % BLOCK as u64;
        self.put(&[0u8; BLOCK][..r as usize])
    }

    /// A regular member of `size` bytes read from `data`.
    pub fn file(&mut self, name: &str, size: u64, data: &mut dyn std::io::Read) -> Result<()> {
        let mut h = header(name, size, self.mtime, false)?;
        set_checksum(&mut h);
        self.put(&h)?;
        let mut limited = std::io::Read::take(&mut *data, size);
        let n = std::io::copy(&mut limited, &mut self.inner).map_err(io)?;
        self.written += n;
        if n != size {
            return Err(err!(Truncated, "tar member {name}: {n} of {size} bytes"));
        }
        self.pad(size)
    }

    /// A sparse member: `map` lists the data segments; `fill(offset, buf)` reads them.
    pub fn sparse(
        &mut self,
        name: &str,
        map: &[(u64, u64)],
        real_size: u64,
        fill: &mut dyn FnMut(u64, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        let h = sparse_headers(name, map, real_size, self.mtime)?;
        self.put(&h)?;
        let mut buf = vec![0u8; 4 << 20];
        let mut stored = 0;
        for &(o, n) in map {
            let mut done = 0;
            while done < n {
                let k = (n - done).min(buf.len() as u64) as usize;
                fill(o + done, &mut buf[..k])?;
                self.inner.write_all(&buf[..k]).map_err(io)?;
                self.written += k as u64;
                done += k as u64;
            }
            stored += n;
        }
        self.pad(stored)
    }

    /// Two zero blocks, padded to GNU tar's 10 KiB record; returns the inner writer.
    pub fn finish(mut self) -> Result<W> {
        let end = self.written + 2 * BLOCK as u64;
        let total = end.div_ceil(10240) * 10240;
        let zeros = vec![0u8; (total - self.written) as usize];
        self.put(&zeros)?;
        self.inner.flush().map_err(io)?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_octal_and_base256() {
        let mut b = [0u8; 12];
        put_num(&mut b, 0o755);
        assert_eq!(&b, b"00000000755\0");
        put_num(&mut b, 10 << 30);
        assert_eq!(b[0], 0x80);
        assert_eq!(u64::from_be_bytes(b[4..].try_into().unwrap()), 10 << 30);
    }

    #[test]
    fn sparse_map_spills_into_extension_blocks() {
        let map: Vec<(u64, u64)> = (0..30).map(|i| (i * 4096, 512)).collect();
        let h = sparse_headers("disk.raw", &map, 1 << 30, 0).unwrap();
        assert_eq!(h.len(), 3 * BLOCK);
        assert_eq!(h[TYPEFLAG], b'S');
        assert_eq!(h[IS_EXTENDED], 1);
        assert_eq!(h[BLOCK + 504], 1);
        assert_eq!(h[2 * BLOCK + 504], 0);
    }
}
