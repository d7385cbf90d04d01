//! Streaming digests: SHA-256 of outputs (sparse-aware), MD5 for `md5sum.txt`, hex helpers.

use crate::error::{IoContext, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

/// SHA-256 of a file's whole content, reading only its data ranges (holes are hashed as the
/// zeros they read as, without reading them).
pub fn sha256_file(file: &File, path: &Path) -> Result<String> {
    sha256_file_progress(file, path, &crate::disk::NoProgress)
}

/// [`sha256_file`], reporting a "sha256" phase of the file's length to `progress` (holes count
/// as done when skipped).
pub fn sha256_file_progress(
    file: &File,
    path: &Path,
    progress: &dyn crate::disk::Progress,
) -> Result<String> {
    let len = file.metadata().ctx(path, "reading metadata")?.len();
    progress.start("sha256", len);
    let ranges = crate::disk::raw::data_ranges(file, 0, len).ctx(path, "mapping data and holes")?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    let zeros = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    let feed_zeros = |h: &mut Sha256, mut n: u64| {
        while n > 0 {
            let k = n.min(zeros.len() as u64) as usize;
            h.update(&zeros[..k]);
            n -= k as u64;
        }
    };
    for (a, b) in ranges {
        feed_zeros(&mut h, a - pos);
        progress.advance(a - pos);
        let mut off = a;
        while off < b {
            let n = (b - off).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], off)
                .ctx(path, "reading for SHA-256")?;
            h.update(&buf[..n]);
            progress.advance(n as u64);
            off += n as u64;
        }
        pos = b;
    }
    feed_zeros(&mut h, len - pos);
    progress.advance(len - pos);
    progress.finish();
    Ok(hex(&h.finalize()))
}

/// SHA-256 of bytes, as hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// MD5 of bytes, as hex.
pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::Md5;
    hex(&Md5::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn sparse_file_hash_equals_dense_hash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let f = File::create(&p).unwrap();
        f.set_len(9 << 20).unwrap();
        f.write_all_at(b"data", 5 << 20).unwrap();
        drop(f);
        let dense = std::fs::read(&p).unwrap();
        let f = File::open(&p).unwrap();
        assert_eq!(sha256_file(&f, &p).unwrap(), sha256_hex(&dense));
    }
}
