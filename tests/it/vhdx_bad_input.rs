//! Corrupted VHDX inputs: each corruption gives its own ErrorKind, and nothing panics.

use isotool::ErrorKind;
use isotool::context::BuildContext;
use isotool::disk::DiskImage;
use isotool::disk::NoProgress;
use isotool::disk::OpenOptions;
use isotool::disk::stream::WriteOptions;
use isotool::guid::Guid;
use isotool::image::convert::{ConvertOptions, TargetFormat, convert};
use isotool::vhdx::format::*;
use isotool::vhdx::log::{EntryParams, LogWrite, encode_entry};
use isotool::vhdx::writer::{Layout, encode_metadata};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Our dynamic VHDX: 8 MiB, 1 MiB blocks, blocks 0 and 2 allocated at file offsets 4 and 5 MiB;
/// metadata at 2 MiB (items from 2 MiB + 64 KiB: file parameters, size, page 83, logical,
/// physical), BAT at 3 MiB, log at 1 MiB.
fn base(dir: &Path, name: &str) -> PathBuf {
    let raw = dir.join(format!("{name}.raw"));
    let f = File::create(&raw).unwrap();
    f.set_len(8 * MIB).unwrap();
    f.write_all_at(&[1u8; 4096], 0).unwrap();
    f.write_all_at(&[2u8; 4096], 2 * MIB).unwrap();
    drop(f);
    let v = dir.join(format!("{name}.vhdx"));
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
    convert(&raw, &v, &o, &BuildContext::fixed(5), &NoProgress).unwrap();
    assert_eq!(std::fs::metadata(&v).unwrap().len(), 6 * MIB);
    v
}

fn rw(p: &Path) -> File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap()
}

fn poke(p: &Path, at: u64, bytes: &[u8]) {
    rw(p).write_all_at(bytes, at).unwrap();
}

fn cut(p: &Path, len: u64) {
    rw(p).set_len(len).unwrap();
}

const META: u64 = 2 * MIB;
const ITEMS: u64 = META + 64 * 1024;
const BAT: u64 = 3 * MIB;

fn edit_regions(p: &Path, f: impl Fn(&mut RegionTable)) {
    let file = rw(p);
    for at in [REGION1_OFFSET, REGION2_OFFSET] {
        let mut b = vec![0u8; REGION_TABLE_SIZE];
        file.read_exact_at(&mut b, at).unwrap();
        let mut t = RegionTable::parse(&b, at, true).unwrap();
        f(&mut t);
        file.write_all_at(&t.encode(), at).unwrap();
    }
}

fn edit_metadata_table(p: &Path, f: impl Fn(&mut MetadataTable)) {
    let file = rw(p);
    let mut b = vec![0u8; METADATA_TABLE_SIZE];
    file.read_exact_at(&mut b, META).unwrap();
    let mut t = MetadataTable::parse(&b, META).unwrap();
    f(&mut t);
    file.write_all_at(&t.encode(), META).unwrap();
}

fn open(p: &Path) -> isotool::Result<Box<dyn DiskImage>> {
    let img = isotool::vhdx::open(
        p,
        &OpenOptions::default(),
        0,
        &isotool::image::Opener::default(),
    )?;
    // read what opens (up to 64 MiB, 1 MiB at a time), so lazy corruption is found too
    let mut buf = vec![0u8; MIB as usize];
    let mut pos = 0;
    while pos < img.len().min(64 * MIB) {
        let n = (img.len() - pos).min(MIB) as usize;
        img.read_at(&mut buf[..n], pos)?;
        pos += n as u64;
    }
    img.extents(0, 64 * MIB)?;
    Ok(img)
}

fn expect(p: &Path, kind: ErrorKind, what: &str) -> isotool::Error {
    match open(p) {
        Ok(_) => panic!("{what}: opened a corrupt image"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{what}: {e}");
            assert_eq!(e.path(), Some(p), "{what}: the error names the file: {e}");
            e
        }
    }
}

const ODD_GUID: Guid = Guid::from_bytes([0xab; 16]);

#[test]
fn the_base_image_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let v = base(dir.path(), "ok");
    let img = open(&v).unwrap();
    assert_eq!(img.len(), 8 * MIB);
    let mut b = [0u8; 4];
    img.read_at(&mut b, 2 * MIB).unwrap();
    assert_eq!(b, [2; 4]);
}

#[test]
fn truncated_files() {
    let dir = tempfile::tempdir().unwrap();
    for (len, kind) in [
        (100, ErrorKind::Truncated),
        (64 * 1024 + 100, ErrorKind::Truncated),
        (130 * 1024, ErrorKind::Truncated),
        (200 * 1024, ErrorKind::Truncated),
        (MIB + MIB / 2, ErrorKind::Truncated),
        (2 * MIB + 1000, ErrorKind::Truncated),
        (3 * MIB + 100, ErrorKind::Truncated),
        (4 * MIB + 4096, ErrorKind::BatOutOfFile),
        (5 * MIB + 4096, ErrorKind::BatOutOfFile),
    ] {
        let v = base(dir.path(), &format!("cut{len}"));
        cut(&v, len);
        expect(&v, kind, &format!("cut at {len}"));
    }
}

#[test]
fn headers() {
    let dir = tempfile::tempdir().unwrap();
    let v = base(dir.path(), "h1");
    poke(&v, HEADER1_OFFSET + 200, &[9]);
    assert!(open(&v).is_ok(), "one valid header is enough");
    poke(&v, HEADER2_OFFSET + 200, &[9]);
    let e = expect(&v, ErrorKind::BadChecksum, "both header CRCs");
    assert!(
        e.message().contains("65536") && e.message().contains("131072"),
        "{e}"
    );

    let v = base(dir.path(), "h2");
    poke(&v, HEADER1_OFFSET, b"HEAD");
    poke(&v, HEADER2_OFFSET, b"xxxx");
    expect(&v, ErrorKind::BadSignature, "both header signatures");

    let v = base(dir.path(), "id");
    poke(&v, 0, b"vhdxfila");
    expect(&v, ErrorKind::BadSignature, "file identifier");
}

#[test]
fn the_valid_header_with_the_higher_sequence_wins() {
    let dir = tempfile::tempdir().unwrap();
    let v = base(dir.path(), "seq");
    let f = rw(&v);
    let mut b = vec![0u8; 4096];
    f.read_exact_at(&mut b, HEADER1_OFFSET).unwrap();
    let mut h = Header::parse(&b, HEADER1_OFFSET).unwrap();
    h.sequence = 10;
    h.data_write_guid = Guid::from_bytes([0x10; 16]);
    f.write_all_at(&h.encode(), HEADER1_OFFSET).unwrap();
    h.sequence = 9;
    h.data_write_guid = Guid::from_bytes([0x09; 16]);
    f.write_all_at(&h.encode(), HEADER2_OFFSET).unwrap();
    let open_guid = || {
        isotool::vhdx::image::open_vhdx(
            &v,
            &OpenOptions::default(),
            0,
            &isotool::image::Opener::default(),
        )
        .unwrap()
        .data_write_guid()
    };
    assert_eq!(open_guid(), Guid::from_bytes([0x10; 16]));
    // the newer header is corrupt: the older valid one is used
    f.write_all_at(&[0xff], HEADER1_OFFSET + 300).unwrap();
    assert_eq!(open_guid(), Guid::from_bytes([0x09; 16]));
    let img = isotool::vhdx::open(
        &v,
        &OpenOptions::default(),
        0,
        &isotool::image::Opener::default(),
    )
    .unwrap();
    assert!(img.info().notes.iter().any(|n| n.contains("header")));
}

#[test]
fn region_tables() {
    let dir = tempfile::tempdir().unwrap();
    let v = base(dir.path(), "r1");
    poke(&v, REGION1_OFFSET + 1000, &[1]);
    assert!(open(&v).is_ok(), "the second region table is used");
    poke(&v, REGION2_OFFSET + 1000, &[1]);
    expect(&v, ErrorKind::BadChecksum, "both region table CRCs");

    let v = base(dir.path(), "r2");
    edit_regions(&v, |t| {
        t.entries.push(RegionEntry {
            guid: ODD_GUID,
            offset: 0,
            length: 0,
            required: true,
        })
    });
    expect(&v, ErrorKind::Unsupported, "unknown required region");
    let v = base(dir.path(), "r3");
    edit_regions(&v, |t| {
        t.entries.push(RegionEntry {
            guid: ODD_GUID,
            offset: 0,
            length: 0,
            required: false,
        })
    });
    assert!(open(&v).is_ok(), "an unknown optional region is ignored");
    let v = base(dir.path(), "r4");
    edit_regions(&v, |t| t.entries[0].offset = 3 * MIB + 4096);
    expect(&v, ErrorKind::BadField, "misaligned region");
}

#[test]
fn bat_entries() {
    let dir = tempfile::tempdir().unwrap();
    let entry2 = BAT + 16;
    for (val, kind, what) in [
        (
            (100 * MIB) | 6,
            ErrorKind::BatOutOfFile,
            "block past the end",
        ),
        (
            (4 * MIB) | 6,
            ErrorKind::BatOverlap,
            "two blocks at one offset",
        ),
        (MIB | 6, ErrorKind::BatOverlap, "block over the log"),
        (
            (2 * MIB) | 6,
            ErrorKind::BatOverlap,
            "block over the metadata",
        ),
        ((5 * MIB) | 4, ErrorKind::UnknownBatState, "state 4"),
        (
            (5 * MIB) | 7,
            ErrorKind::UnknownBatState,
            "partially present, not differencing",
        ),
    ] {
        let v = base(dir.path(), "bat");
        poke(&v, entry2, &val.to_le_bytes());
        let e = expect(&v, kind, what);
        if kind == ErrorKind::UnknownBatState {
            assert_eq!(e.offset(), Some(entry2), "{e}");
            assert!(e.message().contains("entry 2"), "{e}");
        }
    }
}

#[test]
fn metadata_values() {
    let dir = tempfile::tempdir().unwrap();
    for (at, bytes, kind, what) in [
        (
            ITEMS + 8,
            (1u64 << 60).to_le_bytes().to_vec(),
            ErrorKind::AbsurdSize,
            "virtual size 2^60",
        ),
        (
            ITEMS + 8,
            0u64.to_le_bytes().to_vec(),
            ErrorKind::AbsurdSize,
            "virtual size 0",
        ),
        (
            ITEMS + 8,
            1000u64.to_le_bytes().to_vec(),
            ErrorKind::AbsurdSize,
            "size not a sector multiple",
        ),
        (
            ITEMS + 8,
            (60u64 << 40).to_le_bytes().to_vec(),
            ErrorKind::AbsurdSize,
            "BAT larger than its region",
        ),
        (
            ITEMS,
            (3 * MIB as u32).to_le_bytes().to_vec(),
            ErrorKind::AbsurdSize,
            "block size 3 MiB",
        ),
        (
            ITEMS,
            0u32.to_le_bytes().to_vec(),
            ErrorKind::AbsurdSize,
            "block size 0",
        ),
        (
            ITEMS,
            (512u32 << 20).to_le_bytes().to_vec(),
            ErrorKind::AbsurdSize,
            "block size 512 MiB",
        ),
        (
            ITEMS + 32,
            1000u32.to_le_bytes().to_vec(),
            ErrorKind::AbsurdSize,
            "logical sector 1000",
        ),
        (
            ITEMS + 36,
            0u32.to_le_bytes().to_vec(),
            ErrorKind::AbsurdSize,
            "physical sector 0",
        ),
        (
            META,
            b"metadat!".to_vec(),
            ErrorKind::BadSignature,
            "metadata signature",
        ),
        (
            META + 10,
            5000u16.to_le_bytes().to_vec(),
            ErrorKind::AbsurdSize,
            "metadata entry count",
        ),
    ] {
        let v = base(dir.path(), "meta");
        poke(&v, at, &bytes);
        expect(&v, kind, what);
    }
}

#[test]
fn metadata_items() {
    let dir = tempfile::tempdir().unwrap();
    let v = base(dir.path(), "m1");
    edit_metadata_table(&v, |t| {
        t.entries.push(MetadataEntry {
            guid: ODD_GUID,
            offset: 0,
            length: 0,
            is_user: false,
            is_virtual_disk: false,
            is_required: true,
        })
    });
    expect(&v, ErrorKind::Unsupported, "unknown required item");

    let v = base(dir.path(), "m2");
    edit_metadata_table(&v, |t| {
        t.entries.push(MetadataEntry {
            guid: ODD_GUID,
            offset: 0,
            length: 0,
            is_user: true,
            is_virtual_disk: false,
            is_required: false,
        })
    });
    assert!(open(&v).is_ok(), "an unknown optional item is ignored");

    let v = base(dir.path(), "m3");
    edit_metadata_table(&v, |t| t.entries[1].offset = (MIB as u32) - 4);
    expect(&v, ErrorKind::BadField, "item past the metadata region");

    let v = base(dir.path(), "m4");
    edit_metadata_table(&v, |t| {
        t.entries[1].guid = ODD_GUID;
        t.entries[1].is_required = false;
    });
    expect(&v, ErrorKind::BadField, "virtual size item missing");
}

#[test]
fn dirty_log() {
    let dir = tempfile::tempdir().unwrap();
    let v = base(dir.path(), "dirty");
    let g = [3u8; 16];
    let e = encode_entry(
        &EntryParams {
            log_guid: g,
            sequence: 1,
            tail: 0,
            flushed_file_offset: 6 * MIB,
            last_file_offset: 6 * MIB,
        },
        &[LogWrite::Zero(4 * MIB, 4096)],
    )
    .unwrap();
    poke(&v, MIB, &e);
    let f = rw(&v);
    for at in [HEADER1_OFFSET, HEADER2_OFFSET] {
        let mut b = vec![0u8; 4096];
        f.read_exact_at(&mut b, at).unwrap();
        let mut h = Header::parse(&b, at).unwrap();
        h.log_guid = Guid::from_mixed_endian(g);
        f.write_all_at(&h.encode(), at).unwrap();
    }
    expect(&v, ErrorKind::DirtyLog, "pending log");
    let img = isotool::vhdx::open(
        &v,
        &OpenOptions { replay_log: true },
        0,
        &isotool::image::Opener::default(),
    )
    .unwrap();
    let mut b = [9u8; 4];
    img.read_at(&mut b, 0).unwrap();
    assert_eq!(
        b, [0; 4],
        "the replayed zero descriptor wins over the block's data"
    );
}

fn make_differencing(v: &Path, parent_rel: &str, linkage: &str) {
    let l = Layout::new(
        8 * MIB,
        &WriteOptions {
            block_size: Some(MIB),
            logical_sector_size: 512,
            physical_sector_size: 4096,
        },
    )
    .unwrap();
    let loc = ParentLocator {
        locator_type: PARENT_LOCATOR_TYPE_VHDX,
        entries: vec![
            ("parent_linkage".into(), linkage.into()),
            ("relative_path".into(), format!(".\\{parent_rel}")),
            (
                "absolute_win32_path".into(),
                format!("C:\\nowhere\\{parent_rel}.gone"),
            ),
        ],
    };
    poke(
        v,
        META,
        &encode_metadata(&l, false, Guid::from_bytes([1; 16]), Some(&loc)),
    );
}

#[test]
fn differencing_without_its_parent() {
    let dir = tempfile::tempdir().unwrap();
    let v = base(dir.path(), "child");
    make_differencing(&v, "parent.vhdx", "{00000000-0000-0000-0000-000000000000}");
    let e = expect(&v, ErrorKind::MissingParent, "missing parent");
    assert!(e.message().contains("parent.vhdx"), "{e}");
    assert!(
        e.message().contains("nowhere"),
        "every path tried is named: {e}"
    );
}

#[test]
fn differencing_reads_child_then_parent() {
    let dir = tempfile::tempdir().unwrap();
    let parent = base(dir.path(), "parent");
    // parent: fill block 1 and block 2 (partially) with 0x70
    let praw = dir.path().join("p.raw");
    let f = File::create(&praw).unwrap();
    f.set_len(8 * MIB).unwrap();
    f.write_all_at(&vec![0x70; 2 * MIB as usize], MIB).unwrap();
    drop(f);
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
    convert(&praw, &parent, &o, &BuildContext::fixed(6), &NoProgress).unwrap();
    let pimg = isotool::vhdx::image::open_vhdx(
        &parent,
        &OpenOptions::default(),
        0,
        &isotool::image::Opener::default(),
    )
    .unwrap();
    let link = pimg.data_write_guid().braced();

    // child: block 0 fully present (0x01 in its first 4 KiB), block 1 not present (parent),
    // block 2 partially present: sectors 0..8 of it come from the child's block (0x02), the
    // rest from the parent. The sector bitmap block goes at 6 MiB.
    let child = base(dir.path(), "child");
    make_differencing(&child, "parent.vhdx", &link);
    cut(&child, 7 * MIB);
    let cr = 4096u64;
    poke(&child, BAT + cr * 8, &((6 * MIB) | 6).to_le_bytes());
    // block 2 = sectors 4096..6144 of the disk: bits 4096..4104 set
    poke(&child, 6 * MIB + 4096 / 8, &[0xff]);
    poke(&child, BAT + 16, &((5 * MIB) | 7).to_le_bytes());

    let img = isotool::image::open_image(&child, &OpenOptions::default()).unwrap();
    let info = img.info();
    assert_eq!(info.format, "vhdx-differencing");
    assert_eq!(info.parents.len(), 1);
    let mut all = vec![0u8; 8 * MIB as usize];
    img.read_at(&mut all, 0).unwrap();
    let m = MIB as usize;
    assert!(all[..4096].iter().all(|&x| x == 1));
    assert!(all[4096..m].iter().all(|&x| x == 0));
    assert!(
        all[m..2 * m].iter().all(|&x| x == 0x70),
        "block 1 from the parent"
    );
    assert!(
        all[2 * m..2 * m + 4096].iter().all(|&x| x == 2),
        "child sectors of block 2"
    );
    assert!(
        all[2 * m + 4096..3 * m].iter().all(|&x| x == 0x70),
        "parent sectors of block 2"
    );
    assert!(all[3 * m..].iter().all(|&x| x == 0));
    let ex = img.extents(0, u64::MAX).unwrap();
    assert_eq!(ex.last().unwrap().end(), 8 * MIB);
    assert!(
        ex.iter().any(|e| e.kind == isotool::disk::ExtentKind::Data
            && e.offset <= MIB
            && e.end() >= 2 * MIB),
        "{ex:?}"
    );

    // a parent whose data write GUID differs is refused
    make_differencing(
        &child,
        "parent.vhdx",
        "{11111111-2222-3333-4444-555555555555}",
    );
    expect(&child, ErrorKind::ParentMismatch, "wrong parent linkage");
    // a parent that does not exist
    make_differencing(&child, "other.vhdx", &link);
    expect(&child, ErrorKind::MissingParent, "renamed parent");
}

#[test]
fn flipped_bytes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let v = base(dir.path(), "fuzz");
    let orig = std::fs::read(&v).unwrap();
    let targets: Vec<u64> = vec![
        0,
        8,
        HEADER1_OFFSET,
        HEADER2_OFFSET,
        REGION1_OFFSET,
        REGION2_OFFSET,
        META,
        ITEMS,
        BAT,
    ];
    let mut x = 0x1234_5678u64;
    let mut failures = 0;
    for i in 0..400u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let base_off = targets[(i as usize) % targets.len()];
        let off = base_off + x % 96;
        // also a second byte further in the structure
        let off2 = base_off + (x >> 8) % 4096;
        poke(&v, off, &[orig[off as usize] ^ ((x >> 32) as u8 | 1)]);
        poke(&v, off2, &[(x >> 40) as u8]);
        if open(&v).is_err() {
            failures += 1;
        }
        poke(&v, off2, &[orig[off2 as usize]]);
        poke(&v, off, &[orig[off as usize]]);
    }
    assert!(failures > 0, "corruptions must be noticed");
}
