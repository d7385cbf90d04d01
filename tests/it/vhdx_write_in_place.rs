//! In-place writes (DiskImageMut) into our VHDX and qemu's: qemu-img then finds the image clean
//! and identical to a raw mirror that got the same writes. qemu-img (qemu-utils) must exist.

use crate::oracle::qemu_img;

use isotool::context::BuildContext;
use isotool::disk::OpenOptions;
use isotool::disk::stream::WriteOptions;
use isotool::disk::{DiskImage, DiskImageMut, NoProgress};
use isotool::image::convert::{ConvertOptions, TargetFormat, convert};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

const MIB: u64 = 1 << 20;

fn writes() -> Vec<(u64, Vec<u8>)> {
    vec![
        (MIB - 100, vec![0xa1; 200]),                 // across a block boundary
        (10 * MIB + 7, vec![0xb2; 3 * MIB as usize]), // several blocks
        (20 * MIB, vec![0; 4096]),                    // zeros into an unallocated block
        (100, vec![0xc3; 10]),                        // into an allocated block
        (64 * MIB - 512, vec![0xd4; 512]),            // the last sector
    ]
}

fn apply_and_check(dir: &Path, v: &Path, raw: &Path) {
    let before = isotool::vhdx::image::open_vhdx(
        v,
        &OpenOptions::default(),
        0,
        &isotool::image::Opener::default(),
    )
    .unwrap()
    .data_write_guid();
    let mut img = isotool::vhdx::open_rw(v).unwrap();
    let mirror = std::fs::OpenOptions::new().write(true).open(raw).unwrap();
    for (off, data) in writes() {
        img.write_at(&data, off).unwrap();
        mirror.write_all_at(&data, off).unwrap();
    }
    img.flush().unwrap();
    assert_ne!(
        img.data_write_guid(),
        before,
        "the data write GUID changes on write"
    );
    // reads through the same handle see the writes
    let mut b = vec![0u8; 200];
    img.read_at(&mut b, MIB - 100).unwrap();
    assert!(b.iter().all(|&x| x == 0xa1));
    drop(img);
    let c = qemu_img(&["check", "-f", "vhdx", v.to_str().unwrap()]);
    assert!(c.contains("No errors were found"), "{c}");
    let c = qemu_img(&[
        "compare",
        "-f",
        "raw",
        "-F",
        "vhdx",
        raw.to_str().unwrap(),
        v.to_str().unwrap(),
    ]);
    assert!(c.contains("Images are identical"), "{c}");
    let img = isotool::image::open_image(v, &OpenOptions::default()).unwrap();
    let mut all = vec![0u8; img.len() as usize];
    img.read_at(&mut all, 0).unwrap();
    assert!(all == std::fs::read(raw).unwrap());
    // zeros into an unallocated block allocated nothing
    let ex = img.extents(20 * MIB, MIB).unwrap();
    assert!(
        ex.iter().all(|e| e.kind.is_zero()),
        "{ex:?} in {}",
        dir.display()
    );
}

#[test]
fn write_into_our_vhdx() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("m.raw");
    let f = File::create(&raw).unwrap();
    f.set_len(64 * MIB).unwrap();
    f.write_all_at(&[7u8; 5000], 0).unwrap();
    drop(f);
    let v = dir.path().join("o.vhdx");
    let o = ConvertOptions {
        format: TargetFormat::Vhdx,
        write: WriteOptions {
            block_size: Some(MIB),
            logical_sector_size: 512,
            physical_sector_size: 4096,
        },
        force: true,
        ..ConvertOptions::default()
    };
    convert(&raw, &v, &o, &BuildContext::fixed(3), &NoProgress).unwrap();
    apply_and_check(dir.path(), &v, &raw);
}

#[test]
fn write_into_qemus_vhdx() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("m.raw");
    let f = File::create(&raw).unwrap();
    f.set_len(64 * MIB).unwrap();
    f.write_all_at(&[9u8; 3 * MIB as usize], 5 * MIB).unwrap();
    drop(f);
    let v = dir.path().join("q.vhdx");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vhdx",
        "-o",
        "block_size=2M",
        raw.to_str().unwrap(),
        v.to_str().unwrap(),
    ]);
    apply_and_check(dir.path(), &v, &raw);
}

#[test]
fn read_only_images_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("e.vhdx");
    qemu_img(&["create", "-q", "-f", "vhdx", v.to_str().unwrap(), "8M"]);
    let mut img = isotool::vhdx::image::open_vhdx(
        &v,
        &OpenOptions::default(),
        0,
        &isotool::image::Opener::default(),
    )
    .unwrap();
    let e = img.write_at(&[1], 0).unwrap_err();
    assert_eq!(e.kind(), isotool::ErrorKind::InvalidArgument);
    let mut img = isotool::vhdx::open_rw(&v).unwrap();
    let e = img.write_at(&[1; 2], 8 * MIB - 1).unwrap_err();
    assert_eq!(
        e.kind(),
        isotool::ErrorKind::InvalidArgument,
        "past the end"
    );
}
