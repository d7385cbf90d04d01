//! In-place writes (DiskImageMut) into fixed and dynamic VHDs, checked against a mirror and
//! against qemu-img (Debian package qemu-utils; the test fails if it is missing).

use isotool::context::BuildContext;
use isotool::disk::NoProgress;
use isotool::disk::OpenOptions;
use isotool::disk::stream::WriteOptions;
use isotool::image::convert::{CreateOptions, TargetFormat, create};
use isotool::image::open_image;
use std::path::Path;

const MIB: u64 = 1 << 20;

fn fill(seed: u8, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed | 1)
        .collect()
}

fn qemu_compare(raw: &Path, vhd: &Path) {
    crate::oracle::qemu_img(&[
        "compare",
        "-f",
        "raw",
        "-F",
        "vpc",
        crate::oracle::p(raw),
        crate::oracle::p(vhd),
    ]);
}

#[test]
fn writes_allocate_blocks_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let len = 9 * MIB + 4096 + 512;
    let ctx = BuildContext::fixed(1_700_000_000);
    for (fmt, block) in [
        (TargetFormat::VhdDynamic, Some(512 << 10)),
        (TargetFormat::VhdDynamic, None),
        (TargetFormat::Vhd, None),
    ] {
        let what = format!("{} {block:?}", fmt.name());
        let p = dir.path().join(format!("{}-{block:?}.vhd", fmt.name()));
        let w = WriteOptions {
            block_size: block,
            ..Default::default()
        };
        let opts = CreateOptions {
            size: len,
            format: fmt,
            write: w,
            force: false,
            sha256: false,
            sync: true,
        };
        create(&p, &opts, &ctx, &NoProgress).unwrap();
        let mut mirror = vec![0u8; len as usize];
        {
            let mut img = isotool::vhd::open_rw(&p).unwrap();
            let writes: [(u64, usize); 7] = [
                (0, 512),
                (3 * MIB - 100, 300_000), // across blocks, unaligned
                (7 * MIB + 5, 1),
                (len - 512, 512), // last sector, partial last block
                (100, 50),        // into an allocated block
                (5 * MIB, 4096),  // zeros? no: data
                (8 * MIB + 1000, 10),
            ];
            for (i, &(off, n)) in writes.iter().enumerate() {
                let d = fill(i as u8, n);
                img.write_at(&d, off).unwrap();
                mirror[off as usize..off as usize + n].copy_from_slice(&d);
            }
            // Zeros into an unallocated area allocate nothing.
            img.write_at(&[0u8; 4096], 6 * MIB).unwrap();
            // Past the end: refused.
            assert!(img.write_at(&[1], len).is_err(), "{what}");
            img.flush().unwrap();
            let mut got = vec![0u8; len as usize];
            img.read_at(&mut got, 0).unwrap();
            assert!(got == mirror, "{what}: read through the writer");
        }
        let img = open_image(&p, &OpenOptions::default()).unwrap();
        let mut got = vec![0u8; len as usize];
        img.read_at(&mut got, 0).unwrap();
        assert!(got == mirror, "{what}: after reopening");
        if fmt == TargetFormat::VhdDynamic {
            let bs = block.unwrap_or(2 * MIB);
            let blocks: std::collections::BTreeSet<u64> = [
                0,
                3 * MIB - 100,
                3 * MIB + 299_899,
                7 * MIB + 5,
                len - 1,
                5 * MIB,
                8 * MIB + 1000,
            ]
            .iter()
            .map(|o| o / bs)
            .collect();
            assert_eq!(
                img.info().allocated,
                Some(blocks.len() as u64 * bs),
                "{what}"
            );
        }
        let raw = dir.path().join("mirror.raw");
        std::fs::write(&raw, &mirror).unwrap();
        qemu_compare(&raw, &p);
    }
}

#[test]
fn differencing_disks_are_not_writable() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.vhd");
    let ctx = BuildContext::fixed(1);
    let opts = CreateOptions {
        size: MIB,
        format: TargetFormat::VhdDynamic,
        write: WriteOptions::default(),
        force: false,
        sha256: false,
        sync: true,
    };
    create(&p, &opts, &ctx, &NoProgress).unwrap();
    // Turn it into a differencing disk (without parent): refused for writing before any
    // parent lookup.
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len() - 512;
    let mut f = isotool::vhd::Footer::parse(&b[n..]).unwrap();
    f.disk_type = isotool::vhd::DiskType::Differencing;
    let e = f.encode();
    b[..512].copy_from_slice(&e);
    b[n..].copy_from_slice(&e);
    std::fs::write(&p, &b).unwrap();
    let err = isotool::vhd::open_rw(&p).err().unwrap();
    assert_eq!(err.kind(), isotool::ErrorKind::Unsupported, "{err}");
}
