//! Helpers shared by the qcow2, VMDK and pack integration tests.
#![allow(dead_code)]

use isotool::disk::DiskImage;
use isotool::disk::raw::RawImage;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

/// Runs an external oracle (the test fails when it is missing or exits non-zero); stdout.
pub fn run(tool: &str, pkg: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("{tool} is required for this oracle test (apt-get install {pkg}): {e}")
    });
    let so = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {so}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    so
}

/// qemu-img, the oracle.
pub fn qemu_img(args: &[&str]) -> String {
    run("qemu-img", "qemu-utils", args)
}

/// A path as `&str` for command arguments.
pub fn p(x: &Path) -> &str {
    x.to_str().expect("utf-8 path")
}

/// Deterministic bytes that do not compress (xorshift), seeded.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Bytes that compress well but are not zero (text-like).
pub fn text(len: usize, seed: u64) -> Vec<u8> {
    let words = [
        "alpha ", "bravo ", "charlie ", "delta\n", "echo ", "foxtrot ",
    ];
    let n = noise(len / 4 + 1, seed);
    let mut v = Vec::with_capacity(len + 16);
    let mut i = 0;
    while v.len() < len {
        v.extend_from_slice(words[n[i % n.len()] as usize % words.len()].as_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

/// A sparse raw file of `size` bytes with `chunks` written at their offsets.
pub fn sparse_raw(path: &Path, size: u64, chunks: &[(u64, Vec<u8>)]) {
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .unwrap();
    f.set_len(size).unwrap();
    for (o, d) in chunks {
        f.write_all_at(d, *o).unwrap();
    }
}

/// Opens an image the way the tool's probe will: qcow2 by magic, else raw (the backing-file
/// callback passed to readers in these tests).
pub fn open_any(
    path: &Path,
    _fmt: Option<&str>,
    depth: u32,
) -> isotool::Result<Box<dyn DiskImage>> {
    let mut head = [0u8; 4];
    let f = std::fs::File::open(path)
        .map_err(|e| isotool::Error::io(e, "opening a backing file").with_path(path))?;
    let _ = f.read_exact_at(&mut head, 0);
    if &head == b"QFI\xfb" {
        Ok(Box::new(isotool::qcow2::Qcow2Image::open(
            path, depth, &open_any,
        )?))
    } else {
        Ok(Box::new(RawImage::open(path)?))
    }
}

/// Reads a whole disk image into memory (small test images only).
pub fn read_all(img: &dyn DiskImage) -> Vec<u8> {
    let mut v = vec![0u8; img.len() as usize];
    // Odd-sized reads cross cluster boundaries on purpose.
    let mut o = 0usize;
    let step = 1_000_003usize;
    while o < v.len() {
        let n = step.min(v.len() - o);
        img.read_at(&mut v[o..o + n], o as u64).unwrap();
        o += n;
    }
    v
}

/// Compares a disk image with a raw file chunk by chunk (bounded memory, big images).
pub fn assert_same_as_raw(img: &dyn DiskImage, raw: &Path) {
    let r = RawImage::open(raw).unwrap();
    let len = r.len();
    assert!(img.len() >= len, "image {} < raw {len}", img.len());
    let mut a = vec![0u8; 4 << 20];
    let mut b = vec![0u8; 4 << 20];
    let mut o = 0;
    while o < img.len() {
        let n = (img.len() - o).min(a.len() as u64) as usize;
        img.read_at(&mut a[..n], o).unwrap();
        if o < len {
            let k = n.min((len - o) as usize);
            r.read_at(&mut b[..k], o).unwrap();
            b[k..n].fill(0);
        } else {
            b[..n].fill(0);
        }
        assert!(
            a[..n] == b[..n],
            "content differs in [{o}, {})",
            o + n as u64
        );
        o += n as u64;
    }
}

/// A qcow2 overlay at `path` on `backing` (named as given: relative to the overlay's folder).
pub fn qcow2_overlay(backing: &str, path: &Path) {
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        backing,
        "-F",
        "qcow2",
        p(path),
    ]);
}
