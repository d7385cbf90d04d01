//! Packages checked by the tools that consume them: GNU tar lists and extracts them, sha256sum
//! re-verifies the OVA manifest, the OVF is parsed (quick-xml) and checked against the disk,
//! qemu-img compares the disks inside with the source, GCP's disk.raw keeps its holes.

mod formats_common;
use formats_common::*;
use isotool::context::BuildContext;
use isotool::disk::raw::RawImage;
use isotool::disk::{DiskImage, NoProgress};
use isotool::pack::{Firmware, PackOptions, Target};
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

fn source(dir: &Path) -> PathBuf {
    let raw = dir.join("src.raw");
    // 30 separate data runs: the GNU sparse map spills into extension blocks
    let mut chunks: Vec<(u64, Vec<u8>)> = (0..30u64)
        .map(|i| (i * 3 * MIB + 4096 * i, text(20_000 + i as usize * 100, i)))
        .collect();
    chunks.push((100 * MIB - 4096, noise(4096, 99)));
    sparse_raw(&raw, 100 * MIB, &chunks);
    raw
}

fn pack(raw: &Path, out: &Path, t: Target, opts: &PackOptions) -> isotool::pack::PackReport {
    let src = RawImage::open(raw).unwrap();
    isotool::pack::pack(
        &src,
        raw,
        out,
        t,
        opts,
        &BuildContext::fixed(1_700_000_000),
        &NoProgress,
    )
    .unwrap()
}

fn tar_list(args: &[&str]) -> Vec<String> {
    run("tar", "tar", args)
        .lines()
        .map(|l| l.split_whitespace().last().unwrap().to_string())
        .collect()
}

fn no_scratch_left(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            !n.contains("scratch") && !n.contains(".tmp"),
            "left behind: {n}"
        );
    }
}

fn attr(xml: &str, elem: &str, name: &str) -> String {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_str(xml);
    loop {
        match r.read_event().unwrap() {
            Event::Empty(e) | Event::Start(e) if e.name().as_ref() == elem.as_bytes() => {
                for a in e.attributes() {
                    let a = a.unwrap();
                    if a.key.as_ref() == name.as_bytes() {
                        return a.unescape_value().unwrap().to_string();
                    }
                }
            }
            Event::Eof => panic!("no {elem}@{name} in the OVF"),
            _ => {}
        }
    }
}

fn texts(xml: &str, elem: &str) -> Vec<String> {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    let mut inside = false;
    loop {
        match r.read_event().unwrap() {
            Event::Start(e) => inside = e.name().as_ref() == elem.as_bytes(),
            Event::Text(t) if inside => out.push(String::from_utf8_lossy(&t).to_string()),
            Event::End(_) => inside = false,
            Event::Eof => return out,
            _ => {}
        }
    }
}

#[test]
fn ova_order_manifest_ovf_and_disk() {
    let dir = tempfile::tempdir().unwrap();
    let raw = source(dir.path());
    let out = dir.path().join("vm.ova");
    let opts = PackOptions {
        name: "web-1".into(),
        cpus: 4,
        memory_mib: 4096,
        firmware: Firmware::Efi,
        ..Default::default()
    };
    let rep = pack(&raw, &out, Target::Ova, &opts);
    no_scratch_left(dir.path());
    let names = tar_list(&["-tvf", p(&out)]);
    assert_eq!(names, vec!["web-1.ovf", "web-1.mf", "web-1-disk1.vmdk"]);
    let x = dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    run("tar", "tar", &["-xf", p(&out), "-C", p(&x)]);
    // manifest re-verified by sha256sum
    let mf = std::fs::read_to_string(x.join("web-1.mf")).unwrap();
    let mut lines = 0;
    for l in mf.lines() {
        let (name, hash) = l
            .strip_prefix("SHA256(")
            .unwrap()
            .split_once(")= ")
            .unwrap();
        let got = run("sha256sum", "coreutils", &[p(&x.join(name))]);
        assert_eq!(got.split_whitespace().next().unwrap(), hash, "{name}");
        lines += 1;
    }
    assert_eq!(lines, 2);
    // OVF against the disk
    let ovf = std::fs::read_to_string(x.join("web-1.ovf")).unwrap();
    let vmdk = x.join("web-1-disk1.vmdk");
    assert_eq!(attr(&ovf, "File", "ovf:href"), "web-1-disk1.vmdk");
    assert_eq!(
        attr(&ovf, "File", "ovf:size"),
        std::fs::metadata(&vmdk).unwrap().len().to_string()
    );
    assert_eq!(attr(&ovf, "Disk", "ovf:capacity"), (100 * MIB).to_string());
    let src = RawImage::open(&raw).unwrap();
    let populated = isotool::disk::convert::data_bytes(&src).unwrap();
    assert_eq!(
        attr(&ovf, "Disk", "ovf:populatedSize"),
        populated.to_string()
    );
    assert_eq!(rep.data_bytes, populated);
    assert!(attr(&ovf, "Disk", "ovf:format").ends_with("#streamOptimized"));
    assert_eq!(attr(&ovf, "vmw:Config", "vmw:value"), "efi");
    let q = texts(&ovf, "rasd:VirtualQuantity");
    assert_eq!(q, vec!["4", "4096"]);
    // the disk inside is the source
    let c = qemu_img(&["compare", "-f", "raw", "-F", "vmdk", p(&raw), p(&vmdk)]);
    assert!(c.contains("identical"), "{c}");
    // an existing output is refused without --force and left alone
    let src2 = RawImage::open(&raw).unwrap();
    let e = isotool::pack::pack(
        &src2,
        &raw,
        &out,
        Target::Ova,
        &opts,
        &BuildContext::fixed(1),
        &NoProgress,
    )
    .unwrap_err();
    assert_eq!(e.kind(), isotool::ErrorKind::OutputExists);
}

#[test]
fn gcp_disk_raw_extracts_identical_and_keeps_holes() {
    let dir = tempfile::tempdir().unwrap();
    let raw = source(dir.path());
    let out = dir.path().join("image.tar.gz");
    pack(&raw, &out, Target::Gcp, &PackOptions::default());
    no_scratch_left(dir.path());
    let listing = run("tar", "tar", &["-tvzf", p(&out)]);
    assert!(
        listing.contains(" 1073741824 ") && listing.trim_end().ends_with("disk.raw"),
        "{listing}"
    );
    assert_eq!(listing.lines().count(), 1);
    let x = dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    run("tar", "tar", &["-xzSf", p(&out), "-C", p(&x)]);
    let disk = x.join("disk.raw");
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 1 << 30);
    let img = RawImage::open(&disk).unwrap();
    assert_same_as_raw(&img, &raw);
    use std::os::unix::fs::MetadataExt;
    let allocated = std::fs::metadata(&disk).unwrap().blocks() * 512;
    assert!(
        allocated < 4 * MIB,
        "extracted disk.raw allocates {allocated} bytes: holes lost"
    );
    // gzip -t accepts the (multi-member, parallel) stream
    run("gzip", "gzip", &["-t", p(&out)]);
}

#[test]
fn vagrant_boxes_hold_metadata_vagrantfile_and_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let raw = source(dir.path());
    let lv = dir.path().join("libvirt.box");
    pack(&raw, &lv, Target::VagrantLibvirt, &PackOptions::default());
    assert_eq!(
        tar_list(&["-tzf", p(&lv)]),
        vec!["metadata.json", "Vagrantfile", "box.img"]
    );
    let x = dir.path().join("lv");
    std::fs::create_dir(&x).unwrap();
    run("tar", "tar", &["-xzf", p(&lv), "-C", p(&x)]);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["provider"], "libvirt");
    assert_eq!(meta["format"], "qcow2");
    assert_eq!(meta["virtual_size"], 1);
    let c = qemu_img(&["check", "-f", "qcow2", p(&x.join("box.img"))]);
    assert!(c.contains("No errors"), "{c}");
    let c = qemu_img(&[
        "compare",
        "-f",
        "raw",
        "-F",
        "qcow2",
        p(&raw),
        p(&x.join("box.img")),
    ]);
    assert!(c.contains("identical"), "{c}");
    assert!(
        std::fs::read_to_string(x.join("Vagrantfile"))
            .unwrap()
            .contains(":libvirt")
    );

    let vb = dir.path().join("vbox.box");
    pack(
        &raw,
        &vb,
        Target::VagrantVirtualbox,
        &PackOptions::default(),
    );
    assert_eq!(
        tar_list(&["-tzf", p(&vb)]),
        vec![
            "metadata.json",
            "Vagrantfile",
            "box.ovf",
            "box-disk001.vmdk"
        ]
    );
    let y = dir.path().join("vb");
    std::fs::create_dir(&y).unwrap();
    run("tar", "tar", &["-xzf", p(&vb), "-C", p(&y)]);
    let ovf = std::fs::read_to_string(y.join("box.ovf")).unwrap();
    assert_eq!(attr(&ovf, "File", "ovf:href"), "box-disk001.vmdk");
    let c = qemu_img(&[
        "compare",
        "-f",
        "raw",
        "-F",
        "vmdk",
        p(&raw),
        p(&y.join("box-disk001.vmdk")),
    ]);
    assert!(c.contains("identical"), "{c}");
    no_scratch_left(dir.path());
}

#[test]
fn reproducible_with_a_fixed_context() {
    let dir = tempfile::tempdir().unwrap();
    let raw = source(dir.path());
    for t in [Target::Ova, Target::Gcp] {
        let a = dir.path().join("a.pkg");
        let b = dir.path().join("b.pkg");
        pack(&raw, &a, t, &PackOptions::default());
        pack(&raw, &b, t, &PackOptions::default());
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "{t:?} differs"
        );
        std::fs::remove_file(&a).unwrap();
        std::fs::remove_file(&b).unwrap();
    }
    let _ = RawImage::open(&raw).unwrap().len();
}
