//! VMDK against qemu-img (and libvmdk's vmdkinfo): what we write is checked and compared
//! identical, in VMware's streamOptimized layout; what qemu-img writes (monolithicSparse,
//! streamOptimized) and a real qemu-made image read the same as qemu-img reads them.

mod formats_common;
use formats_common::*;
use isotool::context::BuildContext;
use isotool::disk::raw::RawImage;
use isotool::disk::{DiskImage, ExtentKind, NoProgress};
use isotool::vmdk::VmdkImage;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

fn write_vmdk(raw: &Path, out: &Path) {
    let src = RawImage::open(raw).unwrap();
    let f = std::fs::File::create(out).unwrap();
    let name = out.file_name().unwrap().to_str().unwrap();
    isotool::vmdk::write_stream_optimized(
        &src,
        &f,
        out,
        name,
        &BuildContext::fixed(1_700_000_000),
        &NoProgress,
    )
    .unwrap();
}

fn source(dir: &Path, size: u64) -> PathBuf {
    let raw = dir.join("src.raw");
    sparse_raw(
        &raw,
        size,
        &[
            (0, noise(70_000, 1)),
            (3 * MIB + 100, text(300_000, 2)),
            (size - 5000, noise(5000, 3)),
        ],
    );
    raw
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

#[test]
fn qemu_img_reads_ours_identical() {
    let dir = tempfile::tempdir().unwrap();
    for size in [9 * MIB + 1536, 40 * MIB + 7] {
        let raw = source(dir.path(), size);
        let v = dir.path().join("o.vmdk");
        write_vmdk(&raw, &v);
        let info = qemu_img(&["info", "--output=json", p(&v)]);
        assert!(
            info.contains("\"create-type\": \"streamOptimized\""),
            "{info}"
        );
        assert!(info.contains("\"compressed\": true"), "{info}");
        let c = qemu_img(&["check", "-f", "vmdk", p(&v)]);
        assert!(c.contains("No errors"), "{c}");
        let c = qemu_img(&["compare", "-f", "raw", "-F", "vmdk", p(&raw), p(&v)]);
        assert!(c.contains("Images are identical"), "{c}");
        let img = VmdkImage::open(&v).unwrap();
        assert_same_as_raw(&img, &raw);
    }
}

#[test]
fn vmware_stream_layout_markers_footer_eos() {
    let dir = tempfile::tempdir().unwrap();
    let raw = source(dir.path(), 64 * MIB);
    let v = dir.path().join("l.vmdk");
    write_vmdk(&raw, &v);
    let b = std::fs::read(&v).unwrap();
    assert_eq!(&b[..4], b"KDMV");
    assert_eq!(le32(&b, 4), 3, "version 3");
    assert_eq!(
        le32(&b, 8),
        0x30001,
        "flags: newline detection, compressed, markers"
    );
    assert_eq!(le64(&b, 56), u64::MAX, "gdOffset at end in the header");
    assert!(b[512..].starts_with(b"# Disk DescriptorFile\n"));
    let desc = String::from_utf8_lossy(&b[512..512 * 21]);
    assert!(desc.contains("createType=\"streamOptimized\""), "{desc}");
    assert!(
        desc.contains(&format!("RW {} SPARSE \"l.vmdk\"", 64 * MIB / 512)),
        "{desc}"
    );
    // first grain marker at the overhead: lba 0
    assert_eq!(le64(&b, 128 * 512), 0);
    // tail: footer marker, footer, EOS
    let n = b.len();
    assert_eq!(n % 512, 0);
    assert_eq!(&b[n - 512..], &[0u8; 512][..], "EOS marker");
    assert_eq!(le32(&b, n - 1536 + 12), 3, "footer marker");
    assert_eq!(&b[n - 1024..n - 1020], b"KDMV");
    let gd = le64(&b, n - 1024 + 56);
    assert_ne!(gd, u64::MAX);
    // a GD marker precedes the grain directory, and every GD entry's table is behind a GT marker
    let gdm = (gd as usize - 1) * 512;
    assert_eq!(le32(&b, gdm + 12), 2, "GD marker");
    let entries = (64 * MIB / 65536).div_ceil(512) as usize;
    let mut tables = 0;
    for i in 0..entries {
        let s = le32(&b, gd as usize * 512 + 4 * i) as usize;
        if s != 0 {
            assert_eq!(le32(&b, (s - 1) * 512 + 12), 1, "GT marker");
            assert_eq!(le64(&b, (s - 1) * 512), 4, "GT marker sector count");
            tables += 1;
        }
    }
    assert_eq!(
        tables, 2,
        "data at the start and at the end: two grain tables"
    );
    // deterministic with a fixed context
    let v2 = dir.path().join("m.vmdk");
    write_vmdk(&raw, &v2);
    let b2 = std::fs::read(&v2).unwrap();
    assert_eq!(b.len(), b2.len());
}

#[test]
fn libvmdk_reads_ours() {
    let dir = tempfile::tempdir().unwrap();
    let raw = source(dir.path(), 20 * MIB);
    let v = dir.path().join("lib.vmdk");
    write_vmdk(&raw, &v);
    let out = run("vmdkinfo", "libvmdk-utils", &[p(&v)]);
    assert!(
        out.contains("Stream optimized") || out.contains("streamOptimized"),
        "{out}"
    );
    assert!(out.contains(&format!("{}", 20 * MIB)), "{out}");
}

#[test]
fn we_read_what_qemu_img_writes() {
    let dir = tempfile::tempdir().unwrap();
    let raw = source(dir.path(), 10 * MIB + 512);
    for sub in ["monolithicSparse", "streamOptimized"] {
        let v = dir.path().join(format!("{sub}.vmdk"));
        qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            &format!("subformat={sub}"),
            p(&raw),
            p(&v),
        ]);
        let img = VmdkImage::open(&v).unwrap_or_else(|e| panic!("{sub}: {e}"));
        assert_same_as_raw(&img, &raw);
        assert!(img.info().format.contains(sub), "{:?}", img.info());
        let data: u64 = img
            .extents(0, img.len())
            .unwrap()
            .iter()
            .filter(|e| e.kind == ExtentKind::Data)
            .map(|e| e.len)
            .sum();
        assert!(data < 2 * MIB, "{sub}: sparse, {data}");
    }
    // a zeroed grain (qemu-io write -z on a zeroed_grain image)
    let z = dir.path().join("z.vmdk");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vmdk",
        "-o",
        "subformat=monolithicSparse,zeroed_grain=on",
        p(&raw),
        p(&z),
    ]);
    run("qemu-io", "qemu-utils", &["-c", "write -z 0 64k", p(&z)]);
    let flat = dir.path().join("zflat.raw");
    qemu_img(&["convert", "-O", "raw", p(&z), p(&flat)]);
    let img = VmdkImage::open(&z).unwrap();
    assert_same_as_raw(&img, &flat);
}

#[test]
fn real_dfvfs_vmdk_reads_like_qemu() {
    let mut src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/realdata/dfvfs-ext2.vmdk");
    if !src.exists() {
        src = PathBuf::from("/work/shared/testdata/realdata/dfvfs-ext2.vmdk");
    }
    assert!(src.exists(), "shared test data missing: {}", src.display());
    let dir = tempfile::tempdir().unwrap();
    let flat = dir.path().join("flat.raw");
    qemu_img(&["convert", "-f", "vmdk", "-O", "raw", p(&src), p(&flat)]);
    let img = VmdkImage::open(&src).unwrap();
    assert_same_as_raw(&img, &flat);
}

#[test]
fn bad_vmdk_tables_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let raw = source(dir.path(), 9 * MIB);
    let good = dir.path().join("g.vmdk");
    qemu_img(&["convert", "-f", "raw", "-O", "vmdk", p(&raw), p(&good)]);
    let bad = dir.path().join("b.vmdk");
    let patch = |at: u64, bytes: &[u8]| {
        std::fs::copy(&good, &bad).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&bad).unwrap();
        f.write_all_at(bytes, at).unwrap();
    };
    let open_err = |p: &Path| -> isotool::Error {
        match VmdkImage::open(p) {
            Err(e) => e,
            Ok(img) => {
                let mut b = vec![0u8; img.len() as usize];
                img.read_at(&mut b, 0).expect_err("accepted")
            }
        }
    };
    use isotool::ErrorKind as K;
    patch(56, &(1u64 << 40).to_le_bytes()); // gdOffset out of file
    let e = open_err(&bad);
    assert_eq!(e.kind(), K::BatOutOfFile, "{e}");
    assert_eq!(e.path(), Some(bad.as_path()));
    patch(12, &(1u64 << 60).to_le_bytes()); // absurd capacity
    assert!(
        matches!(open_err(&bad).kind(), K::AbsurdSize),
        "{}",
        open_err(&bad)
    );
    patch(20, &3u64.to_le_bytes()); // grain size not a power of two
    assert_eq!(open_err(&bad).kind(), K::BadField);
    patch(44, &4096u32.to_le_bytes()); // GT too big
    assert_eq!(open_err(&bad).kind(), K::BadField);
    patch(0, b"KDMX");
    assert_eq!(open_err(&bad).kind(), K::BadSignature);
    // a GD entry out of the file
    let b = std::fs::read(&good).unwrap();
    let gd = le64(&b, 56);
    patch(gd * 512, &u32::MAX.to_le_bytes());
    let e = open_err(&bad);
    assert_eq!(e.kind(), K::BatOutOfFile, "{e}");
    assert_eq!(e.structure(), Some("VMDK grain directory"));
    // truncated
    std::fs::write(&bad, &b[..300]).unwrap();
    assert_eq!(open_err(&bad).kind(), K::Truncated);
    // a stream whose grain is garbage
    let s = dir.path().join("s.vmdk");
    write_vmdk(&raw, &s);
    std::fs::copy(&s, &bad).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&bad).unwrap();
    f.write_all_at(&[0xff; 64], 128 * 512 + 12).unwrap();
    let e = open_err(&bad);
    assert_eq!(e.kind(), K::BadField, "{e}");
    // a stream cut before its footer
    let sb = std::fs::read(&s).unwrap();
    std::fs::write(&bad, &sb[..sb.len() - 1024]).unwrap();
    let e = open_err(&bad);
    assert!(
        matches!(e.kind(), K::BadSignature | K::BadField | K::BatOutOfFile),
        "{e}"
    );
    // unsupported flavour: a descriptor naming a parent
    let d = dir.path().join("d.vmdk");
    qemu_img(&["create", "-f", "vmdk", "-b", p(&good), "-F", "vmdk", p(&d)]);
    assert_eq!(open_err(&d).kind(), K::UnsupportedFormat);
}
