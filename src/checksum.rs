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
    let h = digest_file::<Sha256>(file, path, len, 4 << 20, progress)?;
    progress.finish();
    Ok(h)
}

/// Digest `D` (lower-case hex) of the first `len` bytes of `file`, reading only its data ranges
/// in pieces of `chunk` bytes (holes are hashed as the zeros they read as); every byte hashed
/// is reported to `progress`.
fn digest_file<D: Digest>(
    file: &File,
    path: &Path,
    len: u64,
    chunk: usize,
    progress: &dyn crate::disk::Progress,
) -> Result<String> {
    let ranges = crate::disk::raw::data_ranges(file, 0, len).ctx(path, "mapping data and holes")?;
    let mut h = D::new();
    let mut buf = vec![0u8; chunk];
    let zeros = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    let feed_zeros = |h: &mut D, mut n: u64| {
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
                .ctx(path, "reading a file to hash")?;
            h.update(&buf[..n]);
            progress.advance(n as u64);
            off += n as u64;
        }
        pos = b;
    }
    feed_zeros(&mut h, len - pos);
    progress.advance(len - pos);
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

/// Bytes per read when hashing a file: small enough that the chunk the kernel just copied is
/// still in the core's cache when it is hashed, large enough that the syscalls cost little.
const MD5_CHUNK: usize = 128 << 10;

/// MD5 (lower-case hex) of every file of `paths`, in their order, each chunk hashed reported
/// to `progress`. MD5 is sequential within a file: the files are hashed in parallel, one
/// worker per core, the largest file first.
pub fn md5_files(paths: &[&Path], progress: &dyn crate::disk::Progress) -> Result<Vec<String>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(paths.len());
    if workers <= 1 {
        return paths.iter().map(|p| md5_file(p, progress)).collect();
    }
    let mut order: Vec<usize> = (0..paths.len()).collect();
    // a file whose metadata cannot be read fails when it is opened, with its own error
    order.sort_by_key(|&i| std::cmp::Reverse(std::fs::metadata(paths[i]).map_or(0, |m| m.len())));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<String>>>> =
        paths.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let work = || {
        loop {
            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&i) = order.get(k) else { break };
            let r = md5_file(paths[i], progress);
            *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..workers {
            // a worker that cannot be started leaves its files to the others
            let _ = std::thread::Builder::new().spawn_scoped(s, work);
        }
        work();
    });
    results
        .into_iter()
        .zip(paths)
        .map(|(r, p)| {
            let r = r.into_inner().unwrap_or_else(|e| e.into_inner());
            r.unwrap_or_else(|| Err(crate::err!(Io, "a hashing worker stopped").with_path(p)))
        })
        .collect()
}

/// MD5 (lower-case hex) of one file, read in `MD5_CHUNK` pieces; each piece hashed is
/// reported to `progress`.
pub fn md5_file(p: &Path, progress: &dyn crate::disk::Progress) -> Result<String> {
    let f = File::open(p).ctx(p, "opening a file to hash")?;
    let len = f.metadata().ctx(p, "reading a file to hash")?.len();
    digest_file::<md5::Md5>(&f, p, len, MD5_CHUNK, progress)
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
    fn md5_files_equal_one_shot_md5_in_order() {
        let dir = tempfile::tempdir().unwrap();
        // sizes around the chunk size and a multi-chunk file not a multiple of it; the largest
        // is not first, so the workers finish out of order
        let sizes = [0usize, 1, MD5_CHUNK - 1, MD5_CHUNK, 5 * MD5_CHUNK + 7, 3];
        let mut paths = Vec::new();
        let mut want = Vec::new();
        for (i, n) in sizes.iter().enumerate() {
            let b: Vec<u8> = (0..*n).map(|j| (j * 31 + i * 7) as u8).collect();
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, &b).unwrap();
            want.push(md5_hex(&b));
            paths.push(p);
        }
        let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
        assert_eq!(md5_files(&refs, &crate::disk::NoProgress).unwrap(), want);
        assert_eq!(
            md5_files(&refs[4..5], &crate::disk::NoProgress).unwrap(),
            want[4..5]
        );
    }

    #[test]
    fn md5_files_name_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        std::fs::write(&ok, b"x").unwrap();
        let missing = dir.path().join("missing");
        let e = md5_files(&[&ok, &missing], &crate::disk::NoProgress).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
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
