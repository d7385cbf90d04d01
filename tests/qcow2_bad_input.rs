//! Broken qcow2 files: every one is refused with a named error (kind, structure, offset), no
//! panic, and nothing large is allocated from a field's say-so.

mod formats_common;
use formats_common::*;
use isotool::ErrorKind;
use isotool::disk::raw::RawImage;
use isotool::disk::{DiskImage, NoProgress};
use isotool::qcow2::{Qcow2Image, Qcow2WriteOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

/// A valid qcow2 (64 KiB clusters, data in two L2 ranges) and its header fields' values.
fn good(dir: &Path, compress: bool) -> PathBuf {
    let raw = dir.join("g.raw");
    sparse_raw(
        &raw,
        1024 * MIB,
        &[(0, text(200_000, 1)), (600 * MIB, noise(70_000, 2))],
    );
    let q = dir.join(if compress { "gc.qcow2" } else { "g.qcow2" });
    let f = std::fs::File::create(&q).unwrap();
    let o = Qcow2WriteOptions::with_cluster_size(65536, compress).unwrap();
    isotool::qcow2::write(&RawImage::open(&raw).unwrap(), &f, &q, &o, &NoProgress).unwrap();
    q
}

fn patch(src: &Path, dst: &Path, at: u64, bytes: &[u8]) {
    std::fs::copy(src, dst).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(dst).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

fn be64_at(path: &Path, at: u64) -> u64 {
    let mut b = [0u8; 8];
    std::fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut b, at)
        .unwrap();
    u64::from_be_bytes(b)
}

fn open_err(path: &Path) -> isotool::Error {
    match Qcow2Image::open(path, 0, &open_any) {
        Ok(img) => {
            // Lazily checked tables fail on first read instead.
            let mut buf = vec![0u8; 1 << 20];
            let mut o = 0;
            while o < img.len() {
                let n = (img.len() - o).min(buf.len() as u64) as usize;
                if let Err(e) = img.read_at(&mut buf[..n], o) {
                    return e;
                }
                o += n as u64;
            }
            panic!("{} was accepted", path.display())
        }
        Err(e) => e,
    }
}

fn expect(path: &Path, kind: ErrorKind, structure: &str) {
    let e = open_err(path);
    assert_eq!(e.kind(), kind, "{e}");
    assert!(e.structure().unwrap_or("").contains(structure), "{e}");
    assert_eq!(e.path(), Some(path), "{e}");
    assert!(!e.to_string().is_empty());
}

#[test]
fn header_fields_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), false);
    let b = dir.path().join("b.qcow2");
    // L1 table past the end of the file
    patch(&g, &b, 40, &(1u64 << 40).to_be_bytes());
    expect(&b, ErrorKind::BatOutOfFile, "qcow2 header");
    // refcount table past the end of the file
    patch(&g, &b, 48, &(1u64 << 40).to_be_bytes());
    expect(&b, ErrorKind::BatOutOfFile, "qcow2 header");
    // absurd virtual size
    patch(&g, &b, 24, &(1u64 << 62).to_be_bytes());
    expect(&b, ErrorKind::AbsurdSize, "qcow2 header");
    // absurd refcount table
    patch(&g, &b, 56, &u32::MAX.to_be_bytes());
    expect(&b, ErrorKind::AbsurdSize, "qcow2 header");
    // absurd L1 size
    patch(&g, &b, 36, &u32::MAX.to_be_bytes());
    expect(&b, ErrorKind::AbsurdSize, "qcow2 header");
    // cluster bits out of range
    patch(&g, &b, 20, &30u32.to_be_bytes());
    expect(&b, ErrorKind::BadField, "qcow2 header");
    // bad magic
    patch(&g, &b, 0, b"QFI\0");
    expect(&b, ErrorKind::BadSignature, "qcow2 header");
    // version 4
    patch(&g, &b, 4, &4u32.to_be_bytes());
    expect(&b, ErrorKind::Unsupported, "qcow2 header");
}

#[test]
fn dirty_and_unknown_features_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), false);
    let b = dir.path().join("b.qcow2");
    patch(&g, &b, 72, &1u64.to_be_bytes());
    let e = open_err(&b);
    assert_eq!(e.kind(), ErrorKind::DirtyImage);
    assert!(e.to_string().contains("dirty"), "{e}");
    patch(&g, &b, 72, &(1u64 << 10).to_be_bytes());
    let e = open_err(&b);
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.to_string().contains("bit 10"), "{e}");
    patch(&g, &b, 72, &(1u64 << 4).to_be_bytes());
    let e = open_err(&b);
    assert!(e.to_string().contains("extended L2"), "{e}");
    patch(&g, &b, 32, &1u32.to_be_bytes());
    assert_eq!(open_err(&b).kind(), ErrorKind::Unsupported);
}

#[test]
fn tables_pointing_out_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), false);
    let b = dir.path().join("b.qcow2");
    let l1 = be64_at(&g, 40);
    let rt = be64_at(&g, 48);
    // an L1 entry out of the file
    patch(&g, &b, l1, &((1u64 << 40) | (1 << 63)).to_be_bytes());
    expect(&b, ErrorKind::BatOutOfFile, "qcow2 L1 table");
    // a refcount table entry out of the file
    patch(&g, &b, rt, &(1u64 << 40).to_be_bytes());
    expect(&b, ErrorKind::BatOutOfFile, "qcow2 refcount table");
    // an L2 entry out of the file
    let l2 = be64_at(&g, l1) & 0x00ff_ffff_ffff_fe00;
    patch(&g, &b, l2, &((1u64 << 40) | (1 << 63)).to_be_bytes());
    expect(&b, ErrorKind::BatOutOfFile, "qcow2 L2 table");
}

#[test]
fn garbage_compressed_cluster_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), true);
    let b = dir.path().join("b.qcow2");
    let l1 = be64_at(&g, 40);
    let l2 = be64_at(&g, l1) & 0x00ff_ffff_ffff_fe00;
    let e0 = be64_at(&g, l2);
    assert!(e0 & (1 << 62) != 0, "first cluster is compressed");
    let at = e0 & ((1u64 << 54) - 1);
    patch(&g, &b, at, &[0xffu8; 64]);
    expect(&b, ErrorKind::BadField, "qcow2 compressed cluster");
    // truncated: the header only
    let bytes = std::fs::read(&g).unwrap();
    std::fs::write(&b, &bytes[..50]).unwrap();
    expect(&b, ErrorKind::Truncated, "qcow2 header");
    // truncated: tables gone
    std::fs::write(&b, &bytes[..65536 * 2]).unwrap();
    let e = open_err(&b);
    assert!(
        matches!(e.kind(), ErrorKind::BatOutOfFile | ErrorKind::Truncated),
        "{e}"
    );
}

#[test]
fn backing_loops_and_missing_backing() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.qcow2");
    let b = dir.path().join("b.qcow2");
    qemu_img(&["create", "-f", "qcow2", p(&a), "1M"]);
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "a.qcow2",
        "-F",
        "qcow2",
        p(&b),
    ]);
    // a now names b as its backing file: a loop (qemu-img refuses to make one)
    qemu_img(&[
        "rebase",
        "-u",
        "-f",
        "qcow2",
        "-b",
        "b.qcow2",
        "-F",
        "qcow2",
        p(&a),
    ]);
    let e = open_err(&b);
    assert_eq!(e.kind(), ErrorKind::ParentChainTooDeep, "{e}");
    let c = dir.path().join("c.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "gone.qcow2",
        "-F",
        "qcow2",
        "-u",
        p(&c),
        "1M",
    ]);
    let e = open_err(&c);
    assert_eq!(e.kind(), ErrorKind::MissingParent, "{e}");
    assert!(e.to_string().contains("gone.qcow2"), "{e}");
}
