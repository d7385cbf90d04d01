//! Dirty logs: refused without --replay-log, replayed in memory with it (the input file is not
//! modified), and our replay equals qemu-img's (qemu replays the log when it opens the image
//! read-write in `qemu-img check -r all`). qemu-img (qemu-utils) must be installed.

use isotool::checksum::sha256_file;
use isotool::context::BuildContext;
use isotool::disk::OpenOptions;
use isotool::disk::stream::WriteOptions;
use isotool::disk::{ExtentKind, NoProgress};
use isotool::image::convert::{ConvertOptions, TargetFormat, convert};
use isotool::image::open_image;
use isotool::vhdx::format::{HEADER1_OFFSET, HEADER2_OFFSET, Header};
use isotool::vhdx::log::{EntryParams, LogWrite, encode_entry};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

const MIB: u64 = 1 << 20;

fn conv(input: &Path, output: &Path, format: TargetFormat, replay: bool) -> isotool::Result<()> {
    let o = ConvertOptions {
        format,
        write: WriteOptions {
            block_size: Some(MIB),
            logical_sector_size: 512,
            physical_sector_size: 4096,
        },
        azure: false,
        sha256: false,
        force: true,
        open: OpenOptions { replay_log: replay },
        sync: true,
    };
    convert(input, output, &o, &BuildContext::fixed(9), &NoProgress).map(|_| ())
}

fn hash(p: &Path) -> String {
    sha256_file(&File::open(p).unwrap(), p).unwrap()
}

/// Our dynamic VHDX: 8 MiB, 1 MiB blocks; blocks 0 and 2 hold data (file offsets 4 and 5 MiB).
fn base_image(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let raw = dir.join("base.raw");
    let f = File::create(&raw).unwrap();
    f.set_len(8 * MIB).unwrap();
    f.write_all_at(&vec![0x11; MIB as usize], 0).unwrap();
    f.write_all_at(&vec![0x22; 4096], 2 * MIB + 4096).unwrap();
    drop(f);
    let v = dir.join("base.vhdx");
    conv(&raw, &v, TargetFormat::Vhdx, false).unwrap();
    assert_eq!(std::fs::metadata(&v).unwrap().len(), 6 * MIB);
    (raw, v)
}

fn set_log_guid(v: &Path, g: [u8; 16]) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(v)
        .unwrap();
    for at in [HEADER1_OFFSET, HEADER2_OFFSET] {
        let mut b = vec![0u8; 4096];
        f.read_exact_at(&mut b, at).unwrap();
        let mut h = Header::parse(&b, at).unwrap();
        h.log_guid = isotool::guid::Guid::from_mixed_endian(g);
        f.write_all_at(&h.encode(), at).unwrap();
    }
}

const GUID: [u8; 16] = [0x5c; 16];

/// Writes a pending log entry: a sector of block 0 rewritten with 0x5A, and block 3 allocated
/// past the end of the file (BAT sector rewritten, block zeroed, one sector of 0xC3).
fn make_dirty(v: &Path) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(v)
        .unwrap();
    let mut bat = vec![0u8; 4096];
    f.read_exact_at(&mut bat, 3 * MIB).unwrap();
    bat[24..32].copy_from_slice(&((6 * MIB) | 6).to_le_bytes());
    let entry = encode_entry(
        &EntryParams {
            log_guid: GUID,
            sequence: 77,
            tail: 0,
            flushed_file_offset: 6 * MIB,
            last_file_offset: 7 * MIB,
        },
        &[
            LogWrite::Data(4 * MIB + 8192, vec![0x5a; 4096].into_boxed_slice()),
            LogWrite::Zero(6 * MIB, MIB),
            LogWrite::Data(6 * MIB + 4096, vec![0xc3; 4096].into_boxed_slice()),
            LogWrite::Data(3 * MIB, bat.into_boxed_slice()),
        ],
    )
    .unwrap();
    f.write_all_at(&entry, MIB).unwrap();
    drop(f);
    set_log_guid(v, GUID);
}

fn expected(raw: &Path) -> Vec<u8> {
    let mut e = std::fs::read(raw).unwrap();
    e[8192..12288].fill(0x5a);
    e[3 * MIB as usize + 4096..3 * MIB as usize + 8192].fill(0xc3);
    e
}

#[test]
fn dirty_log_refused_then_replayed_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, v) = base_image(dir.path());
    make_dirty(&v);
    let before = hash(&v);

    let e = open_image(&v, &OpenOptions::default())
        .err()
        .expect("must refuse");
    assert_eq!(e.kind(), isotool::ErrorKind::DirtyLog, "{e}");
    assert!(e.to_string().contains("--replay-log"), "{e}");
    let out = dir.path().join("out.raw");
    let e = conv(&v, &out, TargetFormat::Raw, false).unwrap_err();
    assert_eq!(e.kind(), isotool::ErrorKind::DirtyLog);
    assert!(!out.exists());

    let img = open_image(&v, &OpenOptions { replay_log: true }).unwrap();
    let mut b = vec![0u8; 4096];
    img.read_at(&mut b, 8192).unwrap();
    assert!(b.iter().all(|&x| x == 0x5a));
    img.read_at(&mut b, 3 * MIB + 4096).unwrap();
    assert!(b.iter().all(|&x| x == 0xc3));
    img.read_at(&mut b, 3 * MIB).unwrap();
    assert!(b.iter().all(|&x| x == 0));
    let ex = img.extents(3 * MIB, MIB).unwrap();
    assert!(ex.iter().any(|e| e.kind == ExtentKind::Data), "{ex:?}");
    assert!(img.info().notes.iter().any(|n| n.contains("replayed")));
    drop(img);

    conv(&v, &out, TargetFormat::Raw, true).unwrap();
    assert!(std::fs::read(&out).unwrap() == expected(&raw));
    // and into a new VHDX, which is clean
    let clean = dir.path().join("clean.vhdx");
    conv(&v, &clean, TargetFormat::Vhdx, true).unwrap();
    let c = open_image(&clean, &OpenOptions::default()).unwrap();
    let mut all = vec![0u8; 8 * MIB as usize];
    c.read_at(&mut all, 0).unwrap();
    assert!(all == expected(&raw));

    assert_eq!(hash(&v), before, "the input file must not change");
}

#[test]
fn our_replay_equals_qemus() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, v) = base_image(dir.path());
    make_dirty(&v);
    let ours = dir.path().join("ours.raw");
    conv(&v, &ours, TargetFormat::Raw, true).unwrap();

    let copy = dir.path().join("copy.vhdx");
    std::fs::copy(&v, &copy).unwrap();
    let run = |args: &[&str]| {
        crate::oracle::qemu_img(args);
    };
    // qemu refuses to read a dirty image read-only, like we do
    let o = crate::oracle::qemu_img_output(&[
        "convert",
        "-f",
        "vhdx",
        "-O",
        "raw",
        copy.to_str().unwrap(),
        "/dev/null",
    ]);
    assert!(!o.status.success(), "qemu-img read a dirty log read-only?");
    run(&["check", "-r", "all", "-f", "vhdx", copy.to_str().unwrap()]);
    let theirs = dir.path().join("theirs.raw");
    run(&[
        "convert",
        "-f",
        "vhdx",
        "-O",
        "raw",
        copy.to_str().unwrap(),
        theirs.to_str().unwrap(),
    ]);
    assert!(std::fs::read(&theirs).unwrap() == std::fs::read(&ours).unwrap());
    assert!(std::fs::read(&ours).unwrap() == expected(&raw));
    // after qemu's replay the log is empty: we open it without --replay-log
    let img = open_image(&copy, &OpenOptions::default()).unwrap();
    let mut b = vec![0u8; 4096];
    img.read_at(&mut b, 8192).unwrap();
    assert!(b.iter().all(|&x| x == 0x5a));
}

#[test]
fn log_guid_with_empty_log_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, v) = base_image(dir.path());
    set_log_guid(&v, GUID);
    let img = open_image(&v, &OpenOptions::default()).unwrap();
    assert!(
        img.info().notes.iter().any(|n| n.contains("clean")),
        "{:?}",
        img.info().notes
    );
    let mut all = vec![0u8; 8 * MIB as usize];
    img.read_at(&mut all, 0).unwrap();
    assert!(all == std::fs::read(&raw).unwrap());
    // an entry for another log GUID (a stale log) is not replayed either
    make_dirty(&v);
    set_log_guid(&v, [0x77; 16]);
    assert!(open_image(&v, &OpenOptions::default()).is_ok());
}
