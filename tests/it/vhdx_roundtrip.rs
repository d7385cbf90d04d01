//! raw -> VHDX (dynamic and fixed) -> raw round trips, read back through `open_image`.

use isotool::context::BuildContext;
use isotool::disk::OpenOptions;
use isotool::disk::stream::WriteOptions;
use isotool::disk::{ExtentKind, NoProgress};
use isotool::image::convert::{ConvertOptions, TargetFormat, convert};
use isotool::image::open_image;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

const MIB: u64 = 1 << 20;

fn opts(format: TargetFormat, block: Option<u64>, lss: u32) -> ConvertOptions {
    ConvertOptions {
        format,
        write: WriteOptions {
            block_size: block,
            logical_sector_size: lss,
            physical_sector_size: 4096,
        },
        force: true,
        ..ConvertOptions::default()
    }
}

fn conv(input: &Path, output: &Path, o: &ConvertOptions) {
    convert(
        input,
        output,
        o,
        &BuildContext::fixed(1_700_000_000),
        &NoProgress,
    )
    .unwrap_or_else(|e| panic!("convert {} -> {}: {e}", input.display(), output.display()));
}

/// A sparse raw file of `len` bytes with pseudo-random data written at each `(offset, len)`.
fn sparse_raw(path: &Path, len: u64, data: &[(u64, usize)]) {
    let f = File::create(path).unwrap();
    f.set_len(len).unwrap();
    for (i, &(off, n)) in data.iter().enumerate() {
        let mut x = 0x9e37_79b9_u32.wrapping_mul(i as u32 + 1);
        let buf: Vec<u8> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8 | 1
            })
            .collect();
        f.write_all_at(&buf, off).unwrap();
    }
}

/// Byte-compares two files sparse-aware: over the union of their data ranges; elsewhere both
/// are holes (zeros). Files may differ in length only by trailing zeros of `b` past `a`.
fn same_content(a: &Path, b: &Path) {
    let fa = File::open(a).unwrap();
    let fb = File::open(b).unwrap();
    let (la, lb) = (fa.metadata().unwrap().len(), fb.metadata().unwrap().len());
    assert!(lb >= la, "{} shorter than {}", b.display(), a.display());
    let mut ranges = isotool::disk::raw::data_ranges(&fa, 0, la).unwrap();
    ranges.extend(isotool::disk::raw::data_ranges(&fb, 0, lb).unwrap());
    ranges.sort();
    let mut ba = vec![0u8; MIB as usize];
    let mut bb = vec![0u8; MIB as usize];
    for (s, e) in ranges {
        let mut p = s;
        while p < e {
            let n = (e - p).min(MIB) as usize;
            let na = if p >= la {
                0
            } else {
                ((la - p) as usize).min(n)
            };
            ba[..n].fill(0);
            fa.read_exact_at(&mut ba[..na], p).unwrap();
            fb.read_exact_at(&mut bb[..n], p).unwrap();
            assert!(
                ba[..n] == bb[..n],
                "content differs in [{p}, {})",
                p + n as u64
            );
            p += n as u64;
        }
    }
}

fn allocated_bytes(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().blocks() * 512
}

/// Writes `src` as dynamic and fixed VHDX, reads both back into raw, compares.
fn roundtrip(dir: &Path, src: &Path, block: Option<u64>, lss: u32, tag: &str) {
    for (fmt, name) in [
        (TargetFormat::Vhdx, "dyn"),
        (TargetFormat::VhdxFixed, "fixed"),
    ] {
        let v = dir.join(format!("{tag}-{name}.vhdx"));
        let back = dir.join(format!("{tag}-{name}.raw"));
        conv(src, &v, &opts(fmt, block, lss));
        let img = open_image(&v, &OpenOptions::default()).unwrap();
        let info = img.info();
        let srclen = std::fs::metadata(src).unwrap().len();
        let lss64 = u64::from(lss);
        assert_eq!(img.len(), srclen.div_ceil(lss64) * lss64, "{tag} {name}");
        assert_eq!(info.block_size, Some(block.unwrap_or(32 * MIB)));
        assert_eq!(info.logical_sector_size, lss);
        assert_eq!(
            info.format,
            if name == "fixed" {
                "vhdx-fixed"
            } else {
                "vhdx"
            }
        );
        assert!(
            info.creator
                .as_deref()
                .unwrap_or("")
                .starts_with("isotool ")
        );
        conv(&v, &back, &opts(TargetFormat::Raw, None, 512));
        same_content(src, &back);
        // outputs stay sparse: allocation follows the data, not the virtual size
        let data = allocated_bytes(src);
        assert!(
            allocated_bytes(&v) <= data + 8 * MIB,
            "{tag} {name}: vhdx allocates {} for {} of data",
            allocated_bytes(&v),
            data
        );
        assert!(
            allocated_bytes(&back) <= data + MIB,
            "{tag} {name}: raw not sparse"
        );
    }
}

#[test]
fn every_block_size_and_sector_size() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.raw");
    // 300 MiB + 1234 sectors: not MiB-aligned; data at the start, across block boundaries of
    // every block size, and at the very end.
    let len = 300 * MIB + 1234 * 4096;
    sparse_raw(
        &src,
        len,
        &[
            (0, 70_000),
            (MIB - 5000, 10_000),
            (64 * MIB - 3, 9),
            (256 * MIB - 4096, 8192),
            (len - 4096, 4096),
        ],
    );
    for (i, shift) in (0..=8).enumerate() {
        let bs = MIB << shift;
        let lss = if i % 2 == 0 { 512 } else { 4096 };
        roundtrip(dir.path(), &src, Some(bs), lss, &format!("bs{shift}"));
    }
}

#[test]
fn size_not_a_sector_multiple_is_padded() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("odd.raw");
    sparse_raw(&src, 3 * MIB + 100, &[(0, 10), (3 * MIB, 100)]);
    roundtrip(dir.path(), &src, Some(MIB), 4096, "odd4k");
    roundtrip(dir.path(), &src, None, 512, "odd512");
    let v = dir.path().join("odd4k-dyn.vhdx");
    let img = open_image(&v, &OpenOptions::default()).unwrap();
    assert_eq!(img.len(), 3 * MIB + 4096);
    let mut b = vec![1u8; 4096];
    img.read_at(&mut b, 3 * MIB).unwrap();
    assert!(b[100..].iter().all(|&x| x == 0));
    assert!(b[..100].iter().all(|&x| x != 0));
}

#[test]
fn sparse_beyond_4gib_and_beyond_the_first_chunk() {
    // 512-byte sectors and 1 MiB blocks: one sector bitmap chunk covers 4 GiB, so data at
    // 5 GiB lives past the first interleaved sector bitmap entry of the BAT.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.raw");
    let len = 6 * (1u64 << 30) + 512 * 3;
    let spots = [
        (4096, 4096),
        ((4u64 << 30) - 2048, 4096), // crosses the chunk boundary at 4 GiB
        ((5u64 << 30) + 12345, 50_000),
        (len - 512, 512),
    ];
    sparse_raw(&src, len, &spots);
    roundtrip(dir.path(), &src, Some(MIB), 512, "big");
    let v = dir.path().join("big-dyn.vhdx");
    let img = open_image(&v, &OpenOptions::default()).unwrap();
    let raw = File::open(&src).unwrap();
    for &(off, n) in &spots {
        let mut a = vec![0u8; n];
        let mut b = vec![0u8; n];
        raw.read_exact_at(&mut a, off).unwrap();
        img.read_at(&mut b, off).unwrap();
        assert!(a == b, "data at {off} differs");
        let ex = img.extents(off, n as u64).unwrap();
        assert!(ex.iter().all(|e| e.kind == ExtentKind::Data), "{ex:?}");
    }
    // the whole map: little data, the rest unallocated
    let ex = img.extents(0, u64::MAX).unwrap();
    let data: u64 = ex
        .iter()
        .filter(|e| e.kind == ExtentKind::Data)
        .map(|e| e.len)
        .sum();
    assert!(data < 4 * MIB, "{data}");
    assert_eq!(ex.last().unwrap().end(), img.len());
    assert!(allocated_bytes(&v) < 16 * MIB);
}

#[test]
fn same_context_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("s.raw");
    sparse_raw(&src, 40 * MIB, &[(MIB, 5000)]);
    let a = dir.path().join("a.vhdx");
    let b = dir.path().join("b.vhdx");
    conv(&src, &a, &opts(TargetFormat::Vhdx, Some(MIB), 512));
    conv(&src, &b, &opts(TargetFormat::Vhdx, Some(MIB), 512));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let c = dir.path().join("c.vhdx");
    sparse_raw(&src, 41 * MIB, &[(MIB, 5000)]);
    conv(&src, &c, &opts(TargetFormat::Vhdx, Some(MIB), 512));
    let ia = open_image(&a, &OpenOptions::default()).unwrap().info();
    let ic = open_image(&c, &OpenOptions::default()).unwrap().info();
    assert_ne!(
        ia.disk_id, ic.disk_id,
        "different sources get different disk ids"
    );
}

#[test]
fn bad_write_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("s.raw");
    sparse_raw(&src, 4 * MIB, &[]);
    for (bs, lss, pss) in [
        (Some(3 * MIB), 512, 4096),
        (Some(512 * 1024), 512, 4096),
        (Some(512 * MIB), 512, 4096),
        (None, 1024, 4096),
        (None, 512, 520),
    ] {
        let mut o = opts(TargetFormat::Vhdx, bs, lss);
        o.write.physical_sector_size = pss;
        let e = convert(
            &src,
            &dir.path().join("x.vhdx"),
            &o,
            &BuildContext::fixed(1),
            &NoProgress,
        )
        .unwrap_err();
        assert_eq!(
            e.kind(),
            isotool::ErrorKind::InvalidArgument,
            "{bs:?} {lss} {pss}: {e}"
        );
    }
    assert!(!dir.path().join("x.vhdx").exists());
}
