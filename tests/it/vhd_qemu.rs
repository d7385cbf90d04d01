//! qemu-img as the oracle (Debian package qemu-utils; the test fails if it is missing):
//! qemu reads our VHDs as we wrote them, and we read qemu's VHDs as qemu does.

use isotool::context::BuildContext;
use isotool::disk::NoProgress;
use isotool::disk::OpenOptions;
use isotool::disk::stream::WriteOptions;
use isotool::image::convert::{ConvertOptions, TargetFormat, convert};
use isotool::image::open_image;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1 << 20;

use crate::oracle::qemu_img_output as qemu_img;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn qemu_virtual_size(p: &Path) -> u64 {
    let o = qemu_img(&["info", "-f", "vpc", "--output=json", s(p)]);
    assert!(
        o.status.success(),
        "qemu-img info {}: {}",
        p.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["virtual-size"].as_u64().unwrap()
}

fn make_raw(path: &Path, len: u64) {
    let f = File::create(path).unwrap();
    f.set_len(len).unwrap();
    let mut x = 0x1234_5678u32;
    for &(off, n) in &[(0u64, 4096usize), (MIB + 17, 100_000), (len - 512, 512)] {
        let d: Vec<u8> = (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        f.write_all_at(&d, off).unwrap();
    }
}

fn ours(raw: &Path, out: &Path, format: TargetFormat, block: Option<u64>) {
    let opts = ConvertOptions {
        format,
        write: WriteOptions {
            block_size: block,
            ..Default::default()
        },
        ..ConvertOptions::default()
    };
    convert(
        raw,
        out,
        &opts,
        &BuildContext::fixed(1_700_000_000),
        &NoProgress,
    )
    .unwrap();
}

#[test]
fn qemu_reads_our_vhds_identically() {
    let dir = tempfile::tempdir().unwrap();
    // Not a CHS size and not MiB-aligned; and a sparse one above 4 GiB.
    for (len, blocks) in [
        (
            5 * MIB + 4096 + 512,
            vec![None, Some(512 << 10), Some(16 * MIB)],
        ),
        ((4 << 30) + 3 * MIB + 512, vec![None]),
    ] {
        let raw = dir.path().join(format!("in-{len}.raw"));
        make_raw(&raw, len);
        let mut variants = vec![(TargetFormat::Vhd, None)];
        variants.extend(blocks.iter().map(|&b| (TargetFormat::VhdDynamic, b)));
        for (fmt, block) in variants {
            let what = format!("{} {len} block {block:?}", fmt.name());
            let out = dir
                .path()
                .join(format!("o-{len}-{}-{block:?}.vhd", fmt.name()));
            ours(&raw, &out, fmt, block);
            // qemu-img check: vpc has no check in qemu; if it ever grows one it must be clean.
            let c = qemu_img(&["check", "-f", "vpc", s(&out)]);
            let cerr = String::from_utf8_lossy(&c.stderr);
            assert!(
                c.status.success() || cerr.contains("does not support checks"),
                "{what}: qemu-img check: {cerr}"
            );
            assert_eq!(qemu_virtual_size(&out), len, "{what}: qemu's virtual size");
            let cmp = qemu_img(&["compare", "-f", "raw", "-F", "vpc", s(&raw), s(&out)]);
            assert!(
                cmp.status.success(),
                "{what}: qemu-img compare: {}{}",
                String::from_utf8_lossy(&cmp.stdout),
                String::from_utf8_lossy(&cmp.stderr)
            );
            std::fs::remove_file(&out).unwrap();
        }
    }
}

fn assert_reads_like_qemu(vhd: &Path, what: &str) {
    let dir = vhd.parent().unwrap();
    let qraw = dir.join("qemu-view.raw");
    let _ = std::fs::remove_file(&qraw);
    let o = qemu_img(&["convert", "-f", "vpc", "-O", "raw", s(vhd), s(&qraw)]);
    assert!(
        o.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let want = std::fs::read(&qraw).unwrap();
    let img = open_image(vhd, &OpenOptions::default()).unwrap();
    assert_eq!(img.len(), qemu_virtual_size(vhd), "{what}: virtual size");
    assert_eq!(img.len(), want.len() as u64, "{what}: virtual size");
    let mut got = vec![0u8; img.len() as usize];
    img.read_at(&mut got, 0).unwrap();
    assert!(got == want, "{what}: our bytes differ from qemu-img's");
    // And through our own raw writer (copy_to / extents path).
    let back = dir.join("ours.raw");
    let _ = std::fs::remove_file(&back);
    ours(vhd, &back, TargetFormat::Raw, None);
    assert!(
        std::fs::read(&back).unwrap() == want,
        "{what}: convert path"
    );
}

#[test]
fn we_read_qemu_made_vhds_like_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let len = 5 * MIB + 4096 + 512;
    let raw = dir.path().join("in.raw");
    make_raw(&raw, len);
    for sub in ["fixed", "dynamic"] {
        for force in [false, true] {
            let what = format!("qemu subformat={sub} force_size={force}");
            let out = dir.path().join(format!("q-{sub}-{force}.vhd"));
            let o = format!(
                "subformat={sub}{}",
                if force { ",force_size=on" } else { "" }
            );
            let r = qemu_img(&[
                "convert",
                "-f",
                "raw",
                "-O",
                "vpc",
                "-o",
                &o,
                s(&raw),
                s(&out),
            ]);
            assert!(
                r.status.success(),
                "{what}: {}",
                String::from_utf8_lossy(&r.stderr)
            );
            assert_reads_like_qemu(&out, &what);
            let img = open_image(&out, &OpenOptions::default()).unwrap();
            let info = img.info();
            assert_eq!(info.format, format!("vhd-{sub}"), "{what}");
            if force {
                // force_size keeps the exact size (creator qem2).
                assert_eq!(img.len(), len, "{what}");
                assert!(info.creator.unwrap().starts_with("qem2"), "{what}");
            } else {
                // Without it qemu rounds the size up to a CHS size, and stores that as
                // current_size: both readings agree, and the geometry covers it exactly.
                assert!(img.len() > len, "{what}");
                let (c, h, sct) = info.geometry.unwrap();
                assert_eq!(
                    u64::from(c) * u64::from(h) * u64::from(sct) * 512,
                    img.len()
                );
                assert!(info.creator.unwrap().starts_with("qemu"), "{what}");
            }
            // The data we put in is there.
            let mut head = vec![0u8; 4096];
            img.read_at(&mut head, 0).unwrap();
            let mut want = vec![0u8; 4096];
            File::open(&raw)
                .unwrap()
                .read_exact_at(&mut want, 0)
                .unwrap();
            assert_eq!(head, want, "{what}");
        }
    }
}

#[test]
fn qemu_made_sparse_dynamic_over_4_gib() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big.vhd");
    let r = qemu_img(&[
        "create",
        "-f",
        "vpc",
        "-o",
        "subformat=dynamic,force_size=on",
        s(&out),
        "4100M",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // qemu-io is part of qemu-utils too; write a pattern beyond 4 GiB with it.
    let w = Command::new("qemu-io")
        .args([
            "-f",
            "vpc",
            "-c",
            "write -P 0xa5 4294967296 65536",
            "-c",
            "write -P 0x3c 4299161088 512",
            s(&out),
        ])
        .output()
        .expect("qemu-io (Debian package qemu-utils) is required");
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    let img = open_image(&out, &OpenOptions::default()).unwrap();
    assert_eq!(img.len(), 4100 * MIB);
    assert_eq!(img.len(), qemu_virtual_size(&out));
    let mut b = vec![0u8; 65536 + 1024];
    img.read_at(&mut b, 4294967296 - 512).unwrap();
    assert!(b[..512].iter().all(|&x| x == 0));
    assert!(b[512..512 + 65536].iter().all(|&x| x == 0xa5));
    assert!(b[512 + 65536..].iter().all(|&x| x == 0));
    let mut c = [0u8; 512];
    img.read_at(&mut c, 4299161088).unwrap();
    assert!(c.iter().all(|&x| x == 0x3c));
    assert_eq!(img.info().allocated, Some(2 * 2 * MIB));
}

/// Where we deliberately differ from qemu: a `vpc ` (Virtual PC) image whose CHS geometry
/// covers less than `current_size`. qemu shows the CHS size; we show `current_size` (what the
/// specification, Hyper-V and Azure use: nothing stored is hidden) and say what qemu sees.
#[test]
fn virtual_pc_image_chs_smaller_than_current_size() {
    let dir = tempfile::tempdir().unwrap();
    let len = 5 * MIB + 4096 + 512;
    let raw = dir.path().join("in.raw");
    make_raw(&raw, len);
    let out = dir.path().join("vpc.vhd");
    ours(&raw, &out, TargetFormat::Vhd, None);
    let mut b = std::fs::read(&out).unwrap();
    let n = b.len() - isotool::vhd::footer::FOOTER_SIZE;
    let mut f = isotool::vhd::Footer::parse(&b[n..]).unwrap();
    f.creator_app = *b"vpc ";
    b[n..].copy_from_slice(&f.encode());
    std::fs::write(&out, &b).unwrap();
    let chs = f.geometry.bytes();
    assert!(chs < len);
    assert_eq!(
        qemu_virtual_size(&out),
        chs,
        "qemu sizes a 'vpc ' image by CHS"
    );
    let img = open_image(&out, &OpenOptions::default()).unwrap();
    assert_eq!(img.len(), len, "we use current_size");
    let note = format!("qemu (creator 'vpc ') would see {chs} bytes");
    assert!(
        img.info().notes.iter().any(|x| x.contains(&note)),
        "{:?}",
        img.info().notes
    );
    // The bytes both see agree.
    let qraw = dir.path().join("q.raw");
    let o = qemu_img(&["convert", "-f", "vpc", "-O", "raw", s(&out), s(&qraw)]);
    assert!(o.status.success());
    let want = std::fs::read(&qraw).unwrap();
    let mut got = vec![0u8; chs as usize];
    img.read_at(&mut got, 0).unwrap();
    assert!(got == want);
}
