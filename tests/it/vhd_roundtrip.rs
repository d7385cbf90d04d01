//! raw -> VHD (fixed / dynamic, several block sizes) -> read back: byte-identical, sparse,
//! reproducible.

use isotool::context::BuildContext;
use isotool::disk::OpenOptions;
use isotool::disk::stream::WriteOptions;
use isotool::disk::{DiskImage, ExtentKind, NoProgress, Progress};
use isotool::image::convert::{ConvertOptions, TargetFormat, convert};
use isotool::image::open_image;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A sparse raw file of `len` bytes with data at `chunks` (offset, length).
fn sparse_raw(path: &Path, len: u64, chunks: &[(u64, usize)]) {
    let f = File::create(path).unwrap();
    f.set_len(len).unwrap();
    for (i, &(off, n)) in chunks.iter().enumerate() {
        f.write_all_at(&pattern(i as u64 + 1, n), off).unwrap();
    }
}

fn opts(format: TargetFormat, block: Option<u64>) -> ConvertOptions {
    ConvertOptions {
        format,
        write: WriteOptions {
            block_size: block,
            ..Default::default()
        },
        ..ConvertOptions::default()
    }
}

fn to(
    input: &Path,
    out: &Path,
    format: TargetFormat,
    block: Option<u64>,
    progress: &dyn Progress,
) -> PathBuf {
    let ctx = BuildContext::fixed(1_700_000_000);
    convert(input, out, &opts(format, block), &ctx, progress).unwrap();
    out.to_path_buf()
}

/// Compares every byte of two disks, 8 MiB at a time.
fn assert_same(a: &dyn DiskImage, b: &dyn DiskImage, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let mut x = vec![0u8; 8 << 20];
    let mut y = vec![0u8; 8 << 20];
    let mut pos = 0;
    while pos < a.len() {
        let n = (a.len() - pos).min(x.len() as u64) as usize;
        a.read_at(&mut x[..n], pos).unwrap();
        b.read_at(&mut y[..n], pos).unwrap();
        if x[..n] != y[..n] {
            let i = (0..n).find(|&i| x[i] != y[i]).unwrap();
            panic!("{what}: first difference at byte {}", pos + i as u64);
        }
        pos += n as u64;
    }
}

/// Compares only where either disk claims data, and checks that everything else the VHD calls
/// not-data reads as zeros in the source (cheap for huge sparse disks).
fn assert_same_by_extents(src: &dyn DiskImage, vhd: &dyn DiskImage, what: &str) {
    assert_eq!(src.len(), vhd.len(), "{what}: lengths");
    let mut ranges = Vec::new();
    for img in [src, vhd] {
        for e in img.extents(0, u64::MAX).unwrap() {
            if e.kind == ExtentKind::Data {
                ranges.push((e.offset, e.end()));
            }
        }
    }
    let ex = vhd.extents(0, u64::MAX).unwrap();
    assert_eq!(ex.first().unwrap().offset, 0, "{what}");
    assert_eq!(ex.last().unwrap().end(), vhd.len(), "{what}");
    for w in ex.windows(2) {
        assert_eq!(w[0].end(), w[1].offset, "{what}: extents not adjacent");
    }
    for (a, b) in ranges {
        let mut p = a;
        while p < b {
            let n = (b - p).min(8 << 20) as usize;
            let mut x = vec![0u8; n];
            let mut y = vec![0u8; n];
            src.read_at(&mut x, p).unwrap();
            vhd.read_at(&mut y, p).unwrap();
            assert!(x == y, "{what}: difference in {p}..{}", p + n as u64);
            p += n as u64;
        }
    }
}

/// Reads every byte of `img` and checks it against the known content: `chunks` of
/// `pattern(i + 1)`, zeros elsewhere (no second image read: cheap for huge sparse disks).
fn assert_content(img: &dyn DiskImage, chunks: &[(u64, usize)], what: &str) {
    let win = 16u64 << 20;
    let mut got = vec![0u8; win as usize];
    let mut want = vec![0u8; win as usize];
    let mut pos = 0;
    while pos < img.len() {
        let n = (img.len() - pos).min(win);
        img.read_at(&mut got[..n as usize], pos).unwrap();
        want[..n as usize].fill(0);
        for (i, &(off, len)) in chunks.iter().enumerate() {
            let (a, b) = (off.max(pos), (off + len as u64).min(pos + n));
            if a < b {
                let p = pattern(i as u64 + 1, len);
                want[(a - pos) as usize..(b - pos) as usize]
                    .copy_from_slice(&p[(a - off) as usize..(b - off) as usize]);
            }
        }
        if got[..n as usize] != want[..n as usize] {
            let i = (0..n as usize).find(|&i| got[i] != want[i]).unwrap();
            panic!("{what}: wrong byte at {}", pos + i as u64);
        }
        pos += n;
    }
}

fn allocated(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().blocks() * 512
}

struct Notes(Mutex<Vec<String>>);
impl Progress for Notes {
    fn note(&self, m: &str) {
        self.0.lock().unwrap().push(m.to_string());
    }
}

#[test]
fn small_unaligned_disk_all_variants() {
    let dir = tempfile::tempdir().unwrap();
    let len = 3 * MIB + 4096 + 512;
    let raw = dir.path().join("in.raw");
    sparse_raw(
        &raw,
        len,
        &[
            (0, 4096),
            (MIB - 100, 300),
            (2 * MIB - 512, 1024),
            (len - 512, 512),
        ],
    );
    let src = open_image(&raw, &OpenOptions::default()).unwrap();
    let variants: [(TargetFormat, Option<u64>, &str); 5] = [
        (TargetFormat::Vhd, None, "vhd-fixed"),
        (TargetFormat::VhdDynamic, None, "vhd-dynamic"),
        (TargetFormat::VhdDynamic, Some(512 << 10), "vhd-dynamic"),
        (TargetFormat::VhdDynamic, Some(16 * MIB), "vhd-dynamic"),
        (TargetFormat::VhdDynamic, Some(256 * MIB), "vhd-dynamic"),
    ];
    for (i, (fmt, block, name)) in variants.into_iter().enumerate() {
        let out = to(
            &raw,
            &dir.path().join(format!("o{i}.vhd")),
            fmt,
            block,
            &NoProgress,
        );
        let img = open_image(&out, &OpenOptions::default()).unwrap();
        let what = format!("{name} block {block:?}");
        assert_eq!(img.info().format, name, "{what}");
        assert_eq!(img.len(), len, "{what}");
        assert_same(src.as_ref(), img.as_ref(), &what);
        let info = img.info();
        assert_eq!(info.creator.as_deref(), Some("qem2 5.3 (Wi2k)"));
        assert_eq!(info.geometry, Some((90, 4, 17)));
        if fmt == TargetFormat::VhdDynamic {
            let bs = block.unwrap_or(2 * MIB);
            assert_eq!(info.block_size, Some(bs), "{what}");
            // Blocks holding data only: 0, 1 (MiB-100..), 3 (2MiB-512..) ... depends on bs.
            let want: std::collections::BTreeSet<u64> = [
                0,
                MIB - 100,
                MIB + 199,
                2 * MIB - 512,
                2 * MIB + 511,
                len - 1,
            ]
            .iter()
            .map(|o| o / bs)
            .collect();
            assert_eq!(info.allocated, Some(want.len() as u64 * bs), "{what}");
        }
        // Back to raw: identical and sparse.
        let back = to(
            &out,
            &dir.path().join(format!("b{i}.raw")),
            TargetFormat::Raw,
            None,
            &NoProgress,
        );
        assert_eq!(
            std::fs::read(&back).unwrap(),
            std::fs::read(&raw).unwrap(),
            "{what}"
        );
        assert!(
            allocated(&back) <= 64 << 10,
            "{what}: {} bytes allocated",
            allocated(&back)
        );
        // The VHD itself is sparse: data + metadata, not the virtual size.
        assert!(
            allocated(&out) <= 128 << 10,
            "{what}: {} bytes allocated",
            allocated(&out)
        );
    }
}

#[test]
fn size_not_multiple_of_512_is_padded_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let len = 3 * MIB + 4096 + 100;
    let raw = dir.path().join("odd.raw");
    sparse_raw(&raw, len, &[(len - 100, 100), (5000, 10)]);
    for fmt in [TargetFormat::Vhd, TargetFormat::VhdDynamic] {
        let notes = Notes(Mutex::new(Vec::new()));
        let out = to(
            &raw,
            &dir.path().join(format!("{}.vhd", fmt.name())),
            fmt,
            None,
            &notes,
        );
        let notes = notes.0.into_inner().unwrap();
        assert!(
            notes
                .iter()
                .any(|n| n.contains("padded") && n.contains(&(len + 412).to_string())),
            "{notes:?}"
        );
        let img = open_image(&out, &OpenOptions::default()).unwrap();
        assert_eq!(img.len(), len + 412);
        let mut got = vec![0u8; img.len() as usize];
        img.read_at(&mut got, 0).unwrap();
        let mut want = std::fs::read(&raw).unwrap();
        want.resize(got.len(), 0);
        assert!(got == want, "{}", fmt.name());
    }
}

#[test]
fn sparse_disk_over_4_gib() {
    let dir = tempfile::tempdir().unwrap();
    let len = 4 * GIB + 3 * MIB + 4096 + 512;
    let raw = dir.path().join("big.raw");
    let chunks = [
        (0, 4096),
        (GIB + 12345, 70_000),
        (4 * GIB - 2048, 4096),     // across the 4 GiB boundary
        (4 * GIB + 2 * MIB + 7, 9), // in the last (partial) 2 MiB block
        (len - 512, 512),           // the very last sector
    ];
    sparse_raw(&raw, len, &chunks);
    let src = open_image(&raw, &OpenOptions::default()).unwrap();
    // Every byte is read back for the default dynamic layout (about 4 s here); the others are
    // compared wherever either side has data (a misplaced block shows up as data where the
    // source has none), plus spot checks.
    for (fmt, block, full) in [
        (TargetFormat::Vhd, None, false),
        (TargetFormat::VhdDynamic, None, true),
        (TargetFormat::VhdDynamic, Some(512 << 10), false),
        (TargetFormat::VhdDynamic, Some(16 * MIB), false),
    ] {
        let what = format!("{} block {block:?}", fmt.name());
        let out = to(
            &raw,
            &dir.path().join(format!("big-{}-{block:?}.vhd", fmt.name())),
            fmt,
            block,
            &NoProgress,
        );
        let img = open_image(&out, &OpenOptions::default()).unwrap();
        assert_eq!(img.len(), len, "{what}");
        if full {
            assert_content(img.as_ref(), &chunks, &what);
        }
        assert_same_by_extents(src.as_ref(), img.as_ref(), &what);
        // Spot checks at the far end, independent of extents.
        for &(off, n) in &chunks {
            let mut b = vec![0u8; n];
            img.read_at(&mut b, off).unwrap();
            let i = chunks.iter().position(|c| c.0 == off).unwrap();
            assert!(b == pattern(i as u64 + 1, n), "{what}: chunk at {off}");
        }
        let alloc = allocated(&out);
        let bound = match block {
            Some(b) if b > 2 * MIB => 6 * b + MIB,
            _ => 16 * MIB,
        };
        assert!(alloc <= bound, "{what}: {alloc} bytes allocated");
    }
}

#[test]
fn output_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("r.raw");
    sparse_raw(&raw, 5 * MIB, &[(1000, 5000)]);
    for fmt in [TargetFormat::Vhd, TargetFormat::VhdDynamic] {
        let a = to(&raw, &dir.path().join("a.vhd"), fmt, None, &NoProgress);
        let b = to(&raw, &dir.path().join("b.vhd"), fmt, None, &NoProgress);
        assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
        std::fs::remove_file(&a).unwrap();
        std::fs::remove_file(&b).unwrap();
    }
}

#[test]
fn empty_and_too_large_sources_are_refused() {
    use isotool::ErrorKind;
    let dir = tempfile::tempdir().unwrap();
    let ctx = BuildContext::fixed(1);
    let big = isotool::disk::mem::ZeroImage { len: 2041 * GIB };
    let out = File::create(dir.path().join("x")).unwrap();
    for dynamic in [false, true] {
        let e = isotool::vhd::write(
            &big,
            &out,
            &dir.path().join("x"),
            dynamic,
            &WriteOptions::default(),
            &ctx,
            &NoProgress,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LimitExceeded);
    }
    let empty = isotool::disk::mem::ZeroImage { len: 0 };
    let e = isotool::vhd::write(
        &empty,
        &out,
        &dir.path().join("x"),
        false,
        &WriteOptions::default(),
        &ctx,
        &NoProgress,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = isotool::vhd::write(
        &isotool::disk::mem::ZeroImage { len: MIB },
        &out,
        &dir.path().join("x"),
        true,
        &WriteOptions {
            block_size: Some(3 * MIB),
            ..Default::default()
        },
        &ctx,
        &NoProgress,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn created_2040_gib_dynamic_disk_is_tiny() {
    // The largest VHD: an empty dynamic disk is footer + header + BAT only.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("max.vhd");
    let ctx = BuildContext::fixed(1);
    let opts = isotool::image::convert::CreateOptions {
        size: 2040 * GIB,
        format: TargetFormat::VhdDynamic,
        write: WriteOptions::default(),
        force: false,
        sha256: false,
        sync: true,
    };
    isotool::image::convert::create(&p, &opts, &ctx, &NoProgress).unwrap();
    let img = open_image(&p, &OpenOptions::default()).unwrap();
    assert_eq!(img.len(), 2040 * GIB);
    assert_eq!(img.info().geometry, Some((65535, 16, 255)));
    // 1020 Ki entries * 4 bytes + 1536 + 512.
    assert_eq!(
        std::fs::metadata(&p).unwrap().len(),
        1536 + 4 * 1_044_480 + 512
    );
    let ex = img.extents(0, u64::MAX).unwrap();
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].kind, ExtentKind::Unallocated);
}
