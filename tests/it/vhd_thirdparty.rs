//! VHD reading checked on real third-party files (shared/testdata/thirdparty, see its README):
//! images made by qemu and Windows, corrupt samples, and structures cut from Windows images.

use isotool::ErrorKind;
use isotool::disk::OpenOptions;
use isotool::image::open_image;
use isotool::vhd::footer::FOOTER_SIZE;
use isotool::vhd::header::HEADER_SIZE;
use isotool::vhd::{DiskType, DynHeader, Footer};
use std::path::{Path, PathBuf};
use std::process::Command;

const TP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/testdata/thirdparty");

fn thirdparty(name: &str) -> PathBuf {
    let p = Path::new(TP).join(name);
    assert!(
        p.exists(),
        "third-party test file {} is missing: shared/ must be checked out beside the repository",
        p.display()
    );
    p
}

/// Decompresses `name.xz` into `dir` with the `xz` command (package xz-utils).
fn unxz(name: &str, dir: &Path) -> PathBuf {
    let src = thirdparty(&format!("{name}.xz"));
    let out = dir.join(name);
    let o = Command::new("xz")
        .arg("-dc")
        .arg(&src)
        .output()
        .expect("the `xz` command (Debian package xz-utils) is required by this test");
    assert!(o.status.success(), "xz -dc {} failed", src.display());
    std::fs::write(&out, &o.stdout).unwrap();
    out
}

use crate::oracle::qemu_img_path as qemu_img;

fn read_all(img: &dyn isotool::disk::DiskImage) -> Vec<u8> {
    let mut v = vec![0u8; img.len() as usize];
    img.read_at(&mut v, 0).unwrap();
    v
}

#[test]
fn qemu_made_dynamic_ext2_reads_like_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let vhd = unxz("dfvfs-ext2.vhd", dir.path());
    let raw = dir.path().join("ext2.raw");
    let st = Command::new(qemu_img())
        .args(["convert", "-f", "vpc", "-O", "raw"])
        .arg(&vhd)
        .arg(&raw)
        .status()
        .unwrap();
    assert!(st.success());
    let want = std::fs::read(&raw).unwrap();
    let img = open_image(&vhd, &OpenOptions::default()).unwrap();
    assert_eq!(img.len(), 4_212_736);
    assert_eq!(img.len(), want.len() as u64);
    let got = read_all(img.as_ref());
    assert!(
        got == want,
        "our reading of dfvfs-ext2.vhd differs from qemu-img's"
    );
    // An ext2 superblock magic at 1024 + 56 proves the data is really there.
    assert_eq!(&got[1080..1082], &[0x53, 0xef]);
    // Unaligned reads across a block boundary.
    let mut b = vec![0u8; 5000];
    img.read_at(&mut b, (2 << 20) - 2500).unwrap();
    assert_eq!(&b[..], &want[(2 << 20) - 2500..(2 << 20) + 2500]);
    let info = img.info();
    assert_eq!(info.format, "vhd-dynamic");
    assert_eq!(info.virtual_size, 4_212_736);
    assert_eq!(info.block_size, Some(2 << 20));
    assert_eq!(info.creator.as_deref(), Some("qemu 5.3 (Wi2k)"));
    assert_eq!(info.geometry, Some((121, 4, 17)));
    assert_eq!(info.allocated, Some(2 << 20));
    // Extents: the second block is unallocated.
    let ex = img.extents(0, u64::MAX).unwrap();
    assert_eq!(ex.last().unwrap().end(), 4_212_736);
    assert!(
        ex.iter()
            .filter(|e| e.offset >= 2 << 20)
            .all(|e| e.kind == isotool::disk::ExtentKind::Unallocated),
        "{ex:?}"
    );
}

#[test]
fn corrupt_footer_checksums_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["dfvfs-image.vhd", "dfvfs-image-differential.vhd"] {
        let p = unxz(name, dir.path());
        let e = open_image(&p, &OpenOptions::default())
            .err()
            .unwrap_or_else(|| panic!("{name} must be refused"));
        assert_eq!(e.kind(), ErrorKind::BadChecksum, "{name}: {e}");
        assert_eq!(e.path(), Some(p.as_path()));
        assert!(e.structure().unwrap().contains("VHD footer"), "{e}");
        assert_eq!(
            e.offset(),
            Some(std::fs::metadata(&p).unwrap().len() - FOOTER_SIZE as u64)
        );
    }
}

#[test]
fn windows_differencing_without_parent_names_every_path_tried() {
    let dir = tempfile::tempdir().unwrap();
    let p = unxz("dfvfs-fat-differential.vhd", dir.path());
    let e = open_image(&p, &OpenOptions::default()).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::MissingParent, "{e}");
    let m = e.to_string();
    let beside = dir.path().join("fat-parent.vhd");
    for want in [
        beside.display().to_string(),
        "/Projects/dfvfs/test_data/fat-parent.vhd".to_string(),
        "/mnt/c/Projects/dfvfs/test_data/fat-parent.vhd".to_string(),
        "C:\\\\Projects\\\\dfvfs\\\\test_data\\\\fat-parent.vhd".to_string(),
    ] {
        assert!(m.contains(&want), "{want} not in: {m}");
    }
}

/// Writes a footer (both copies) with `f` changed, checksums recomputed.
fn rewrite_footers(p: &Path, f: &Footer) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    let len = file.metadata().unwrap().len();
    let b = f.encode();
    file.write_all_at(&b, 0).unwrap();
    file.write_all_at(&b, len - FOOTER_SIZE as u64).unwrap();
}

#[test]
fn windows_differencing_with_parent_reads_child_sectors_then_parent() {
    let dir = tempfile::tempdir().unwrap();
    let child = unxz("dfvfs-fat-differential.vhd", dir.path());
    let bytes = std::fs::read(&child).unwrap();
    let footer = Footer::parse(&bytes[bytes.len() - FOOTER_SIZE..]).unwrap();
    assert_eq!(footer.disk_type, DiskType::Differencing);
    assert_eq!(&footer.creator_app, b"win ");
    let hoff = footer.data_offset as usize;
    let hdr = DynHeader::parse(&bytes[hoff..hoff + HEADER_SIZE]).unwrap();

    // A parent with a recognisable pattern, made by our writer, then given the unique id the
    // child expects.
    let raw = dir.path().join("parent.raw");
    let pattern: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8 | 1).collect();
    std::fs::write(&raw, &pattern).unwrap();
    let parent = dir.path().join("fat-parent.vhd");
    let ctx = isotool::context::BuildContext::fixed(1_700_000_000);
    let opts = isotool::image::convert::ConvertOptions {
        format: isotool::image::convert::TargetFormat::VhdDynamic,
        ..isotool::image::convert::ConvertOptions::default()
    };
    isotool::image::convert::convert(&raw, &parent, &opts, &ctx, &isotool::disk::NoProgress)
        .unwrap();

    // Wrong unique id first: refused.
    let e = open_image(&child, &OpenOptions::default()).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::ParentMismatch, "{e}");

    let pb = std::fs::read(&parent).unwrap();
    let mut pf = Footer::parse(&pb[pb.len() - FOOTER_SIZE..]).unwrap();
    pf.unique_id = hdr.parent_unique_id;
    rewrite_footers(&parent, &pf);

    let img = open_image(&child, &OpenOptions::default()).unwrap();
    let info = img.info();
    assert_eq!(info.format, "vhd-differencing");
    assert_eq!(info.parents, vec![parent.display().to_string()]);
    assert!(
        info.notes.iter().any(|n| n.contains("4177920")),
        "{:?}",
        info.notes
    );
    let got = read_all(img.as_ref());

    // Expected: for each sector, the child's when its bitmap bit (MSB first) is set, else the
    // parent's. qemu-img reads the child alone (no backing support for VHD): its bytes are the
    // child's sectors.
    let qraw = dir.path().join("child-alone.raw");
    assert!(
        Command::new(qemu_img())
            .args(["convert", "-f", "vpc", "-O", "raw"])
            .arg(&child)
            .arg(&qraw)
            .status()
            .unwrap()
            .success()
    );
    let alone = std::fs::read(&qraw).unwrap();
    let toff = hdr.table_offset as usize;
    let bs = hdr.block_size as usize;
    let mut from_child = 0;
    for s in 0..(4 << 20) / 512 {
        let blk = s * 512 / bs;
        let e = u32::from_be_bytes(
            bytes[toff + 4 * blk..toff + 4 * blk + 4]
                .try_into()
                .unwrap(),
        );
        let in_child = e != 0xFFFF_FFFF && {
            let bm = e as usize * 512;
            let k = s % (bs / 512);
            bytes[bm + k / 8] & (0x80 >> (k % 8)) != 0
        };
        let want = if in_child {
            from_child += 1;
            &alone[s * 512..s * 512 + 512]
        } else {
            &pattern[s * 512..s * 512 + 512]
        };
        assert!(
            &got[s * 512..s * 512 + 512] == want,
            "sector {s} (child: {in_child})"
        );
    }
    assert!(from_child > 0, "the child holds some sectors");
    assert!(from_child < 8192, "and the parent others");
}

#[test]
fn libvhdi_footer_fragment() {
    let b = std::fs::read(thirdparty("fragments/libvhdi-file_footer.1")).unwrap();
    let f = Footer::parse(&b).unwrap();
    assert_eq!(&f.creator_app, b"vpc ");
    assert_eq!(f.creator_version, 0x0001_0000);
    assert_eq!(&f.creator_os, b"Wi2k");
    assert_eq!(f.disk_type, DiskType::Differencing);
    assert_eq!(f.current_size, 512 << 20);
    assert_eq!(f.original_size, 512 << 20);
    assert_eq!(
        (f.geometry.cylinders, f.geometry.heads, f.geometry.sectors),
        (1040, 16, 63)
    );
    assert_eq!(f.data_offset, 512);
    // Our encoder reproduces the bytes exactly (checksum included).
    assert_eq!(f.encode().to_vec(), b);
    assert_eq!(
        isotool::vhd::Geometry::for_sectors(f.current_size / 512),
        f.geometry
    );
}

#[test]
fn libvhdi_dynamic_header_fragment() {
    let b = std::fs::read(thirdparty("fragments/libvhdi-dynamic_disk_header.1")).unwrap();
    let h = DynHeader::parse(&b).unwrap();
    assert_eq!(h.table_offset, 0x600);
    assert_eq!(h.max_table_entries, 256);
    assert_eq!(h.block_size, 2 << 20);
    assert_eq!(h.version, 0x0001_0000);
    assert_eq!(h.parent_name(), "dynamic.vhd");
    let codes: Vec<&[u8; 4]> = h
        .locators
        .iter()
        .filter(|l| l.is_used())
        .map(|l| &l.code)
        .collect();
    assert_eq!(codes, vec![b"W2ku", b"W2ru", b"Wi2k", b"Wi2r"]);
    // Entries 4..8 are used (the first four are empty).
    assert!(h.locators[..4].iter().all(|l| !l.is_used()));
    assert_eq!(h.locators[4].data_len, 42);
    assert_eq!(h.locators[4].data_space, 512);
    assert_eq!(h.locators[4].data_offset, 0x1200);
    assert_eq!(h.locators[5].data_len, 26);
    assert_eq!(h.locators[5].data_offset, 0x1000);
    assert_eq!(h.encode().to_vec(), b);
    let mut bad = b.clone();
    bad[64] ^= 1;
    assert_eq!(
        DynHeader::parse(&bad).unwrap_err().kind(),
        ErrorKind::BadChecksum
    );
}
