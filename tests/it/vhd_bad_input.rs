//! Damaged VHDs: each kind of damage gives its own ErrorKind, nothing panics.

use isotool::ErrorKind;
use isotool::context::BuildContext;
use isotool::disk::OpenOptions;
use isotool::disk::stream::WriteOptions;
use isotool::disk::{DiskImage, NoProgress};
use isotool::image::convert::{ConvertOptions, TargetFormat, convert};
use isotool::image::open_image;
use isotool::vhd::footer::{FOOTER_SIZE as FOOTER, checksum, field};
use isotool::vhd::header::HEADER_SIZE;
use isotool::vhd::layout::{DynHeaderLayout as H, ParentLocatorLayout as L};
use std::fs::File;
use std::mem::offset_of;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// Our writer's dynamic layout: footer copy, header right after it, then the BAT.
const HDR: usize = FOOTER;
const BAT: usize = HDR + HEADER_SIZE;

/// A 3 MiB dynamic VHD with 512 KiB blocks holding data in blocks 0, 2 and 5 (six entries),
/// and the same disk as a fixed VHD. Returns (dynamic bytes, fixed bytes).
fn good_images(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let raw = dir.join("good.raw");
    let f = File::create(&raw).unwrap();
    f.set_len(3 * MIB).unwrap();
    for (i, off) in [0u64, 1100 * KIB, 3 * MIB - 512].iter().enumerate() {
        f.write_all_at(&vec![0x11 * (i as u8 + 1); 512], *off)
            .unwrap();
    }
    let mut out = Vec::new();
    for (fmt, name) in [
        (TargetFormat::VhdDynamic, "d.vhd"),
        (TargetFormat::Vhd, "f.vhd"),
    ] {
        let p = dir.join(name);
        let o = ConvertOptions {
            format: fmt,
            write: WriteOptions {
                block_size: Some(512 * KIB),
                ..Default::default()
            },
            ..ConvertOptions::default()
        };
        convert(
            &raw,
            &p,
            &o,
            &BuildContext::fixed(1_700_000_000),
            &NoProgress,
        )
        .unwrap();
        out.push(std::fs::read(&p).unwrap());
        std::fs::remove_file(&p).unwrap();
    }
    let fixed = out.pop().unwrap();
    (out.pop().unwrap(), fixed)
}

fn fix_footer(b: &mut [u8], off: usize) {
    let sum = off + field::CHECKSUM.start..off + field::CHECKSUM.end;
    b[sum.clone()].fill(0);
    let c = checksum(&b[off..off + FOOTER]);
    b[sum].copy_from_slice(&c.to_be_bytes());
}

fn fix_header(b: &mut [u8]) {
    let sum = HDR + offset_of!(H, checksum);
    b[sum..sum + 4].fill(0);
    let c = checksum(&b[HDR..HDR + HEADER_SIZE]);
    b[sum..sum + 4].copy_from_slice(&c.to_be_bytes());
}

/// Sets a footer field in every footer copy (offset 0 for dynamic, the end always).
fn set_footer(b: &mut [u8], field: usize, val: &[u8]) {
    let end = b.len() - FOOTER;
    let copies: Vec<usize> = if &b[field::COOKIE] == b"conectix" && end != 0 {
        vec![0, end]
    } else {
        vec![end]
    };
    for off in copies {
        b[off + field..off + field + val.len()].copy_from_slice(val);
        fix_footer(b, off);
    }
}

fn set_header(b: &mut [u8], field: usize, val: &[u8]) {
    b[HDR + field..HDR + field + val.len()].copy_from_slice(val);
    fix_header(b);
}

fn bat_entry(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(b[BAT + 4 * i..BAT + 4 * i + 4].try_into().unwrap())
}

fn set_bat(b: &mut [u8], i: usize, v: u32) {
    b[BAT + 4 * i..BAT + 4 * i + 4].copy_from_slice(&v.to_be_bytes());
}

fn put(dir: &Path, name: &str, b: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, b).unwrap();
    p
}

/// Opens through the VHD backend directly (a damaged fixed VHD may no longer be probed as VHD).
fn open_vhd(p: &Path) -> isotool::Result<Box<dyn DiskImage>> {
    isotool::vhd::open(p, 0, &isotool::image::Opener::default())
}

#[track_caller]
fn expect(dir: &Path, name: &str, b: &[u8], kind: ErrorKind) -> String {
    let p = put(dir, name, b);
    match open_vhd(&p) {
        Ok(_) => panic!("{name}: opened, expected {kind:?}"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{name}: {e}");
            assert_eq!(
                e.path(),
                Some(p.as_path()),
                "{name}: the error names the file"
            );
            e.to_string()
        }
    }
}

#[test]
fn the_good_images_open() {
    let dir = tempfile::tempdir().unwrap();
    let (d, f) = good_images(dir.path());
    for (name, b) in [("d.vhd", &d), ("f.vhd", &f)] {
        let img = open_vhd(&put(dir.path(), name, b)).unwrap();
        let mut x = [0u8; 512];
        img.read_at(&mut x, 1100 * KIB).unwrap();
        assert_eq!(x, [0x22; 512]);
        assert!(img.info().notes.iter().all(|n| !n.contains("unusable")));
    }
    // Old Virtual PC wrote 511-byte footers (the last reserved byte missing): accepted.
    for (name, b) in [("d511.vhd", &d), ("f511.vhd", &f)] {
        let p = put(dir.path(), name, &b[..b.len() - 1]);
        let img = open_image(&p, &OpenOptions::default()).unwrap();
        assert_eq!(img.len(), 3 * MIB, "{name}");
        let mut x = [0u8; 512];
        img.read_at(&mut x, 3 * MIB - 512).unwrap();
        assert_eq!(x, [0x33; 512], "{name}");
        assert!(
            img.info().notes.iter().any(|n| n.contains("511-byte")),
            "{name}: {:?}",
            img.info().notes
        );
    }
    assert_eq!(bat_entry(&d, 1), 0xFFFF_FFFF);
    assert_ne!(bat_entry(&d, 2), 0xFFFF_FFFF);
}

#[test]
fn truncated_files() {
    let dir = tempfile::tempdir().unwrap();
    let (d, f) = good_images(dir.path());
    let last_block = bat_entry(&d, 5) as usize * 512;
    for (cut, what) in [
        (300, "inside the footer copy"),
        (1000, "inside the dynamic header"),
        (BAT + 10, "inside the BAT"),
        (last_block + 1000, "inside the last block"),
        (d.len() - 600, "just before the trailing footer"),
    ] {
        let m = expect(dir.path(), "cut.vhd", &d[..cut], ErrorKind::Truncated);
        assert!(!m.is_empty(), "{what}");
        // Through the probe too: the footer copy at offset 0 still says VHD.
        let e = open_image(&dir.path().join("cut.vhd"), &OpenOptions::default())
            .err()
            .unwrap_or_else(|| panic!("{what}: opened"));
        assert_eq!(e.kind(), ErrorKind::Truncated, "{what}: {e}");
    }
    // Cut inside the trailing footer only: the data is complete, the copy at 0 is used.
    let p = put(dir.path(), "cut-footer.vhd", &d[..d.len() - 100]);
    let img = open_vhd(&p).unwrap();
    assert!(
        img.info().notes.iter().any(|n| n.contains("unusable")),
        "{:?}",
        img.info().notes
    );
    let mut x = [0u8; 512];
    img.read_at(&mut x, 3 * MIB - 512).unwrap();
    assert_eq!(x, [0x33; 512]);
    // Fixed: payload shortened (footer kept).
    let mut short = f[..MIB as usize].to_vec();
    short.extend_from_slice(&f[f.len() - FOOTER..]);
    let m = expect(dir.path(), "short-fixed.vhd", &short, ErrorKind::Truncated);
    assert!(m.contains("fixed"), "{m}");
    // Fixed: footer cut off: no footer at all.
    expect(
        dir.path(),
        "nofooter.vhd",
        &f[..f.len() - 200],
        ErrorKind::BadSignature,
    );
    expect(dir.path(), "tiny.vhd", &f[..100], ErrorKind::Truncated);
}

#[test]
fn footer_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let (d, f) = good_images(dir.path());
    let mut b = f.clone();
    let n = b.len();
    b[n - FOOTER + field::CREATOR_APP.start + 2] ^= 1;
    let m = expect(dir.path(), "fixed.vhd", &b, ErrorKind::BadChecksum);
    assert!(m.contains("VHD footer"), "{m}");
    // Dynamic: both copies damaged.
    let mut b = d.clone();
    let n = b.len();
    b[field::CREATOR_APP.start + 2] ^= 1;
    b[n - FOOTER + field::CREATOR_APP.start + 2] ^= 1;
    expect(dir.path(), "dyn.vhd", &b, ErrorKind::BadChecksum);
    // Only the trailing one: the copy at offset 0 is used, and that is reported.
    let mut b = d.clone();
    b[n - FOOTER + field::CHECKSUM.start] ^= 1;
    let img = open_vhd(&put(dir.path(), "dyn1.vhd", &b)).unwrap();
    assert!(
        img.info()
            .notes
            .iter()
            .any(|x| x.contains("unusable") && x.contains("checksum")),
        "{:?}",
        img.info().notes
    );
    // Only the copy at offset 0: the trailing footer is used, and that is reported.
    let mut b = d.clone();
    b[field::CHECKSUM.start] ^= 1;
    let img = open_vhd(&put(dir.path(), "dyn0.vhd", &b)).unwrap();
    assert!(
        img.info()
            .notes
            .iter()
            .any(|x| x.contains("offset 0 is unusable") && x.contains("checksum")),
        "{:?}",
        img.info().notes
    );
    // A bad cookie at the end and at 0.
    let mut b = d.clone();
    b[field::COOKIE.start] = b'X';
    b[n - FOOTER + field::COOKIE.start] = b'X';
    expect(dir.path(), "cookie.vhd", &b, ErrorKind::BadSignature);
}

#[test]
fn header_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _) = good_images(dir.path());
    let mut b = d.clone();
    b[HDR + offset_of!(H, parent_unicode_name) + 36] ^= 1;
    let m = expect(dir.path(), "h.vhd", &b, ErrorKind::BadChecksum);
    assert!(
        m.contains("dynamic disk header") && m.contains("offset 512"),
        "{m}"
    );
    let mut b = d.clone();
    set_header(&mut b, offset_of!(H, cookie), b"cxsparsX");
    expect(dir.path(), "h.vhd", &b, ErrorKind::BadSignature);
    // Header offset: none, or past the end.
    let mut b = d.clone();
    set_footer(&mut b, field::DATA_OFFSET.start, &u64::MAX.to_be_bytes());
    expect(dir.path(), "h.vhd", &b, ErrorKind::BadField);
    let mut b = d.clone();
    set_footer(
        &mut b,
        field::DATA_OFFSET.start,
        &(1u64 << 40).to_be_bytes(),
    );
    expect(dir.path(), "h.vhd", &b, ErrorKind::Truncated);
    // BAT offset past the end.
    let mut b = d.clone();
    set_header(
        &mut b,
        offset_of!(H, table_offset),
        &(1u64 << 40).to_be_bytes(),
    );
    expect(dir.path(), "h.vhd", &b, ErrorKind::Truncated);
}

#[test]
fn bat_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _) = good_images(dir.path());
    let len = d.len() as u32;
    // Outside the file.
    let mut b = d.clone();
    set_bat(&mut b, 1, len / 512 + 100);
    let m = expect(dir.path(), "b.vhd", &b, ErrorKind::BatOutOfFile);
    assert!(m.contains("entry 1"), "{m}");
    let mut b = d.clone();
    set_bat(&mut b, 3, 0xFFFF_FFFE);
    expect(dir.path(), "b.vhd", &b, ErrorKind::BatOutOfFile);
    // Over the trailing footer.
    let mut b = d.clone();
    set_bat(&mut b, 1, (len - 512) / 512 - 10);
    expect(dir.path(), "b.vhd", &b, ErrorKind::BatOutOfFile);
    // Two blocks overlapping.
    let mut b = d.clone();
    let e0 = bat_entry(&d, 0);
    set_bat(&mut b, 2, e0 + 1);
    let m = expect(dir.path(), "b.vhd", &b, ErrorKind::BatOverlap);
    assert!(m.contains("blocks 0") && m.contains(" 2 "), "{m}");
    // The same block twice.
    let mut b = d.clone();
    set_bat(&mut b, 1, e0);
    expect(dir.path(), "b.vhd", &b, ErrorKind::BatOverlap);
    // A block over the BAT / header / footer copy.
    for at in [3u32, 1, 0] {
        let mut b = d.clone();
        for i in 0..6 {
            set_bat(&mut b, i, 0xFFFF_FFFF);
        }
        set_bat(&mut b, 1, at);
        let m = expect(dir.path(), "b.vhd", &b, ErrorKind::BatOverlap);
        assert!(m.contains("overlaps the"), "{m}");
    }
}

#[test]
fn absurd_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let (d, f) = good_images(dir.path());
    for img in [&d, &f] {
        let mut b = img.clone();
        set_footer(
            &mut b,
            field::CURRENT_SIZE.start,
            &(3 * MIB + 100).to_be_bytes(),
        );
        expect(dir.path(), "s.vhd", &b, ErrorKind::AbsurdSize);
        let mut b = img.clone();
        set_footer(
            &mut b,
            field::CURRENT_SIZE.start,
            &(4u64 << 40).to_be_bytes(),
        );
        expect(dir.path(), "s.vhd", &b, ErrorKind::AbsurdSize);
    }
    // Fixed: current size larger than the file holds.
    let mut b = f.clone();
    set_footer(
        &mut b,
        field::CURRENT_SIZE.start,
        &(1u64 << 40).to_be_bytes(),
    );
    expect(dir.path(), "s.vhd", &b, ErrorKind::Truncated);
    // Dynamic: current size beyond what the BAT covers.
    let mut b = d.clone();
    set_footer(
        &mut b,
        field::CURRENT_SIZE.start,
        &(100 * MIB).to_be_bytes(),
    );
    let m = expect(dir.path(), "s.vhd", &b, ErrorKind::AbsurdSize);
    assert!(m.contains("needs 200 blocks"), "{m}");
    // max_table_entries: absurd, and too small.
    for v in [0xFFFF_FFFFu32, 1 << 30, 5] {
        let mut b = d.clone();
        set_header(&mut b, offset_of!(H, max_table_entries), &v.to_be_bytes());
        expect(dir.path(), "s.vhd", &b, ErrorKind::AbsurdSize);
    }
    // Block size: not a power of two, too small, too large.
    for v in [0u32, 3 << 20, 256, 1 << 30, 0xFFFF_FFFF] {
        let mut b = d.clone();
        set_header(&mut b, offset_of!(H, block_size), &v.to_be_bytes());
        let m = expect(dir.path(), "s.vhd", &b, ErrorKind::AbsurdSize);
        assert!(m.contains("block size"), "{m}");
    }
}

#[test]
fn unknown_disk_type() {
    let dir = tempfile::tempdir().unwrap();
    let (d, f) = good_images(dir.path());
    for t in [0u32, 1, 5, 0xFFFF_FFFF] {
        for img in [&d, &f] {
            let mut b = img.clone();
            set_footer(&mut b, field::DISK_TYPE.start, &t.to_be_bytes());
            let m = expect(dir.path(), "t.vhd", &b, ErrorKind::BadField);
            assert!(m.contains("disk type"), "{m}");
        }
    }
}

#[test]
fn differencing_parents() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _) = good_images(dir.path());
    // No locator, no name.
    let mut b = d.clone();
    set_footer(&mut b, field::DISK_TYPE.start, &4u32.to_be_bytes());
    let m = expect(dir.path(), "diff.vhd", &b, ErrorKind::MissingParent);
    assert!(m.contains("nothing"), "{m}");
    // A parent name only: looked for beside the child.
    let name: Vec<u8> = "gone.vhd"
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    set_header(&mut b, offset_of!(H, parent_unicode_name), &name);
    let m = expect(dir.path(), "diff.vhd", &b, ErrorKind::MissingParent);
    assert!(
        m.contains(&dir.path().join("gone.vhd").display().to_string()),
        "{m}"
    );

    // A relative W2ru locator naming the child itself, and a parent id equal to its own id:
    // the chain loops, and the depth limit stops it.
    let loc: Vec<u8> = ".\\self.vhd"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    b[2048..2048 + loc.len()].copy_from_slice(&loc);
    let mut entry = [0u8; size_of::<L>()];
    const LOC_LEN: usize = offset_of!(L, platform_data_length);
    entry[offset_of!(L, platform_code)..][..4].copy_from_slice(b"W2ru");
    entry[offset_of!(L, platform_data_space)..][..4].copy_from_slice(&512u32.to_be_bytes());
    entry[LOC_LEN..LOC_LEN + 4].copy_from_slice(&(loc.len() as u32).to_be_bytes());
    entry[offset_of!(L, platform_data_offset)..][..8].copy_from_slice(&2048u64.to_be_bytes());
    let n = b.len();
    let uid: [u8; 16] = b[n - FOOTER..][field::UNIQUE_ID].try_into().unwrap();
    set_header(&mut b, offset_of!(H, parent_locators), &entry);
    set_header(&mut b, offset_of!(H, parent_unique_id), &uid);
    let p = put(dir.path(), "self.vhd", &b);
    let e = open_image(&p, &OpenOptions::default()).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::ParentChainTooDeep, "{e}");

    // A parent that exists but has another unique id.
    put(dir.path(), "other.vhd", &d);
    let loc: Vec<u8> = "other.vhd"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    b[2048..2048 + 512].fill(0);
    b[2048..2048 + loc.len()].copy_from_slice(&loc);
    entry[LOC_LEN..LOC_LEN + 4].copy_from_slice(&(loc.len() as u32).to_be_bytes());
    set_header(&mut b, offset_of!(H, parent_locators), &entry);
    set_header(&mut b, offset_of!(H, parent_unique_id), &[7u8; 16]);
    let p = put(dir.path(), "self.vhd", &b);
    let e = open_image(&p, &OpenOptions::default()).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::ParentMismatch, "{e}");

    // A raw parent of the right size: read through, sectors absent here come from it.
    let praw = dir.path().join("p.raw");
    std::fs::write(&praw, vec![0x77u8; 3 * MIB as usize]).unwrap();
    let loc: Vec<u8> = "p.raw".encode_utf16().flat_map(u16::to_le_bytes).collect();
    b[2048..2048 + 512].fill(0);
    b[2048..2048 + loc.len()].copy_from_slice(&loc);
    entry[LOC_LEN..LOC_LEN + 4].copy_from_slice(&(loc.len() as u32).to_be_bytes());
    set_header(&mut b, offset_of!(H, parent_locators), &entry);
    // Block 0's bitmap: only sector 0 present in the child.
    let bm = bat_entry(&b, 0) as usize * 512;
    b[bm..bm + 512].fill(0);
    b[bm] = 0x80;
    let p = put(dir.path(), "child.vhd", &b);
    let img = open_image(&p, &OpenOptions::default()).unwrap();
    assert_eq!(img.info().parents, vec![praw.display().to_string()]);
    let mut x = vec![0u8; 1024];
    img.read_at(&mut x, 0).unwrap();
    assert_eq!(&x[..512], &[0x11; 512][..]);
    assert_eq!(&x[512..], &[0x77; 512][..]);
    // Unallocated block 1 comes from the parent too.
    img.read_at(&mut x, 600 * KIB).unwrap();
    assert!(x.iter().all(|&v| v == 0x77));
    let ex = img.extents(0, 1024).unwrap();
    assert_eq!(ex.len(), 1, "{ex:?}");
    // A parent too small.
    std::fs::write(&praw, vec![0x77u8; MIB as usize]).unwrap();
    let e = open_image(&p, &OpenOptions::default()).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::ParentMismatch, "{e}");
}

#[test]
fn no_single_byte_damage_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (d, f) = good_images(dir.path());
    let n = d.len();
    let positions: Vec<usize> = (0..2048).chain(n - FOOTER..n).collect();
    let p = dir.path().join("fuzz.vhd");
    std::fs::write(&p, &d).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    // Only the metadata (first 2048 bytes, last 512) is patched in place: copying whole
    // images thousands of times is slow.
    let mut opened = 0;
    for &i in &positions {
        for v in [0x00u8, 0xff, d[i] ^ 0x80] {
            let mut head = d[..2048].to_vec();
            let mut tail = d[n - FOOTER..].to_vec();
            if i < 2048 {
                head[i] = v;
            } else {
                tail[i - (n - FOOTER)] = v;
            }
            // Keep checksums right half of the time so the deeper checks are reached.
            if i % 2 == 0 {
                fix_footer(&mut head, 0);
                fix_footer(&mut tail, 0);
                fix_header(&mut head);
            }
            file.write_all_at(&head, 0).unwrap();
            file.write_all_at(&tail, (n - FOOTER) as u64).unwrap();
            if let Ok(img) = open_vhd(&p) {
                opened += 1;
                let mut x = vec![0u8; 64 << 10];
                let _ = img.read_at(&mut x, 0);
                let _ = img.extents(0, u64::MAX);
                let _ = img.info();
            }
        }
    }
    assert!(opened > 0);
    let m = f.len();
    std::fs::write(&p, &f).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    for i in m - FOOTER..m {
        let mut b = f.clone();
        b[i] ^= 0x55;
        fix_footer(&mut b, m - FOOTER);
        file.write_all_at(&b[m - FOOTER..], (m - FOOTER) as u64)
            .unwrap();
        if let Ok(img) = open_vhd(&p) {
            let _ = img.extents(0, u64::MAX);
            let _ = img.info();
        }
    }
}
