//! ISOs the remaster did not expect, kickstart media, and corrupted images.

use crate::iso_fixture::*;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn mkiso(root: &Path, out: &Path, extra: &[&str]) {
    need("xorriso", "xorriso");
    let mut c = Command::new("xorriso");
    c.args(["-as", "mkisofs", "-quiet", "-r", "-J", "-V", "EDGE"])
        .args(extra)
        .arg("-o")
        .arg(out)
        .arg(root);
    c.env("SOURCE_DATE_EPOCH", "1600000000");
    run(&mut c);
}

fn write(p: PathBuf, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

#[test]
fn plain_iso_needs_no_boot_edit_and_seed_goes_to_root() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("r");
    write(r.join("hello.txt"), "hi\n");
    let iso = d.path().join("plain.iso");
    mkiso(&r, &iso, &[]);
    let seed = d.path().join("s.seed");
    std::fs::write(&seed, "x\n").unwrap();
    let out = d.path().join("o.iso");
    let o = isotool(&[
        "remaster",
        iso.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--preseed",
        seed.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--no-boot-edit"));
    let e = isotool_ok(&[
        "remaster",
        iso.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--preseed",
        seed.to_str().unwrap(),
        "--no-boot-edit",
    ]);
    assert!(e.contains("no /preseed directory"), "{e}");
    let l = lsdl(&out);
    assert!(l.contains_key("/s.seed"));
    assert_eq!(extract(&out, "/s.seed", &d.path().join("x")), b"x\n");
}

#[test]
fn grub_only_iso_gets_uefi_entry_and_note() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("r");
    write(
        r.join("boot/grub/grub.cfg"),
        "set timeout=30\nmenuentry \"Install\" {\n\tlinux\t/install/vmlinuz file=/cdrom/preseed/x.seed quiet ---\n\tinitrd\t/install/initrd.gz\n}\n",
    );
    write(r.join("preseed/x.seed"), "stock\n");
    let iso = d.path().join("g.iso");
    mkiso(&r, &iso, &[]);
    let seed = d.path().join("auto.seed");
    std::fs::write(&seed, "x\n").unwrap();
    let out = d.path().join("o.iso");
    let e = isotool_ok(&[
        "remaster",
        iso.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--preseed",
        seed.to_str().unwrap(),
        "--timeout",
        "0",
    ]);
    assert!(
        e.contains("BIOS path: no /isolinux/isolinux.cfg found; skipped"),
        "{e}"
    );
    let g = String::from_utf8(extract(&out, "/boot/grub/grub.cfg", &d.path().join("x"))).unwrap();
    assert!(
        g.contains("set timeout=0\n") && g.contains("preseed/file=/cdrom/preseed/auto.seed"),
        "{g}"
    );
    assert!(lsdl(&out).contains_key("/preseed/auto.seed"));
}

#[test]
fn kickstart_centos_like() {
    need("mkfs.vfat", "dosfstools");
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("r");
    write(
        r.join("isolinux/isolinux.cfg"),
        "default vesamenu.c32\ntimeout 600\nlabel linux\n  menu label ^Install CentOS 7\n  kernel vmlinuz\n  append initrd=initrd.img inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 quiet\nlabel check\n  menu label Test this ^media & install CentOS 7\n  menu default\n  kernel vmlinuz\n  append initrd=initrd.img inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 rd.live.check quiet\n",
    );
    write(
        r.join("EFI/BOOT/grub.cfg"),
        "set default=\"1\"\nset timeout=60\nmenuentry 'Install CentOS 7' --class fedora --class gnu-linux --class gnu --class os {\n\tlinuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 quiet\n\tinitrdefi /images/pxeboot/initrd.img\n}\n",
    );
    std::fs::copy(
        "/usr/lib/ISOLINUX/isolinux.bin",
        r.join("isolinux/isolinux.bin"),
    )
    .expect("install isolinux");
    std::fs::create_dir_all(r.join("images")).unwrap();
    run(Command::new("mkfs.vfat")
        .arg("-C")
        .arg(r.join("images/efiboot.img"))
        .arg("1440"));
    let iso = d.path().join("c.iso");
    mkiso(
        &r,
        &iso,
        &[
            "-b",
            "isolinux/isolinux.bin",
            "-c",
            "isolinux/boot.cat",
            "-no-emul-boot",
            "-boot-load-size",
            "4",
            "-boot-info-table",
            "-eltorito-alt-boot",
            "-e",
            "images/efiboot.img",
            "-no-emul-boot",
        ],
    );
    let ks = d.path().join("ks.cfg");
    std::fs::write(&ks, "rootpw --plaintext SECRET\n").unwrap();
    let out = d.path().join("o.iso");
    let e = isotool_ok(&[
        "remaster",
        iso.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--kickstart",
        ks.to_str().unwrap(),
        "--kernel-arg",
        "console=ttyS0",
    ]);
    assert!(!e.contains("SECRET"));
    let x = d.path().join("x");
    let c = String::from_utf8(extract(&out, "/isolinux/isolinux.cfg", &x)).unwrap();
    assert!(c.contains("append inst.ks=cdrom:/ks.cfg initrd=initrd.img inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 quiet console=ttyS0\n"), "{c}");
    assert!(c.contains("timeout 10\n"));
    assert_eq!(c.matches("menu default").count(), 1);
    let g = String::from_utf8(extract(&out, "/EFI/BOOT/grub.cfg", &x)).unwrap();
    assert!(
        g.contains("linuxefi\t/images/pxeboot/vmlinuz inst.ks=cdrom:/ks.cfg"),
        "{g}"
    );
    assert!(g.contains("set default=0\n"));
    assert_eq!(extract(&out, "/ks.cfg", &x), std::fs::read(&ks).unwrap());
    assert_eq!(
        boot_report(&out, false)
            .iter()
            .filter(|l| l.contains("El Torito boot img"))
            .count(),
        2
    );
}

fn corrupt(src: &Path, dst: &Path, off: u64, bytes: &[u8]) {
    std::fs::copy(src, dst).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(dst).unwrap();
    f.write_all_at(bytes, off).unwrap();
}

fn ls_fails(iso: &Path, code: &str) -> String {
    let o = Command::new(BIN)
        .args(["iso", "ls", "-R"])
        .arg(iso)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected a clean failure, got {:?}: {e}",
        o.status
    );
    assert!(e.contains(&format!("[{code}]")), "expected [{code}]: {e}");
    assert!(!e.contains("panicked"), "{e}");
    e
}

#[test]
fn corrupted_images_give_named_errors() {
    let d = tempfile::tempdir().unwrap();
    let good = ubuntu_mini(d.path());
    let bad = d.path().join("bad.iso");

    corrupt(&good, &bad, 16 * 2048 + 1, b"X");
    ls_fails(&bad, "bad-signature");

    let iso = isotool::iso::read::IsoFile::open(&good).unwrap();
    let t = isotool::iso::info::primary_tree(&iso).unwrap();
    let root = t.root(&iso).unwrap();
    let doc = root.entries.iter().find(|e| e.name == "doc").unwrap();
    let docdir = t.read_dir(&iso, doc.rec().extent, doc.rec().size).unwrap();
    let many = docdir.entries.iter().find(|e| e.name == "many").unwrap();

    // a record length below the minimum
    corrupt(&good, &bad, many.rec().offset, &[7]);
    let e = ls_fails(&bad, "bad-field");
    assert!(e.contains("directory record"), "{e}");

    // a directory pointing back at the root: a loop
    let mut ext = [0u8; 8];
    ext[..4].copy_from_slice(&root.extent.to_le_bytes());
    ext[4..].copy_from_slice(&root.extent.to_be_bytes());
    corrupt(&good, &bad, many.rec().offset + 2, &ext);
    let e = ls_fails(&bad, "bad-field");
    assert!(e.contains("loop"), "{e}");

    // an absurd directory size
    corrupt(
        &good,
        &bad,
        many.rec().offset + 10,
        &[0xff, 0xff, 0xff, 0x7f],
    );
    ls_fails(&bad, "absurd-size");

    // a truncated image
    std::fs::copy(&good, &bad).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&bad)
        .unwrap()
        .set_len(17 * 2048)
        .unwrap();
    ls_fails(&bad, "truncated");

    // remaster of a corrupted image fails cleanly and leaves no output
    corrupt(&good, &bad, many.rec().offset + 2, &ext);
    let out = d.path().join("o.iso");
    let o = isotool(&[
        "remaster",
        bad.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--add",
        &format!("{}=/x", good.display()),
    ]);
    assert!(!o.status.success());
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(d.path())
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp"))
            .count(),
        0
    );

    // info of a good image
    let j = run(Command::new(BIN).args(["iso", "info", "--json"]).arg(&good));
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(v["volume_id"], "Ubuntu-Server 18.04.3 LTS amd64");
    assert_eq!(v["boot_images"][0]["path"], "/isolinux/isolinux.bin");
    assert_eq!(v["boot_images"][0]["boot_info_table"]["checksum_ok"], true);
    assert_eq!(v["boot_images"][1]["platform_name"], "uefi");
    assert_eq!(v["boot_images"][1]["path"], "/boot/grub/efi.img");
}

/// Path table entries (identifier, extent, parent number) of a table at `lba`.
fn path_table(img: &[u8], lba: u32, size: u32, big: bool) -> Vec<(Vec<u8>, u32, u16)> {
    let t = &img[lba as usize * 2048..lba as usize * 2048 + size as usize];
    let mut out = Vec::new();
    let mut p = 0;
    while p + 8 <= t.len() && t[p] != 0 {
        let n = t[p] as usize;
        let (ext, parent) = if big {
            (
                u32::from_be_bytes(t[p + 2..p + 6].try_into().unwrap()),
                u16::from_be_bytes([t[p + 6], t[p + 7]]),
            )
        } else {
            (
                u32::from_le_bytes(t[p + 2..p + 6].try_into().unwrap()),
                u16::from_le_bytes([t[p + 6], t[p + 7]]),
            )
        };
        out.push((t[p + 8..p + 8 + n].to_vec(), ext, parent));
        p += 8 + n + n % 2;
    }
    out
}

#[test]
fn add_creates_missing_directories_in_both_trees() {
    need("isoinfo", "genisoimage");
    let d = tempfile::tempdir().unwrap();
    let input = ubuntu_mini(d.path());
    let f = d.path().join("f.txt");
    std::fs::write(&f, "new\n").unwrap();
    let out = d.path().join("o.iso");
    let adds = [
        "/newdir/sub/deep.txt",
        "/newdir/top.txt",
        "/doc/newsub/x.txt",
        "/Z-last/y.txt",
    ];
    let mut args = vec![
        "remaster".to_string(),
        input.display().to_string(),
        "-o".into(),
        out.display().to_string(),
    ];
    for a in adds {
        args.push("--add".into());
        args.push(format!("{}={a}", f.display()));
    }
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let e = isotool_ok(&a);
    assert!(e.contains("created directory: /newdir/sub"), "{e}");
    let before = lsdl(&input);
    let after = lsdl(&out);
    for (p, l) in &before {
        if p != "/md5sum.txt" {
            assert_eq!(Some(l), after.get(p), "{p}");
        }
    }
    for p in ["/newdir", "/newdir/sub", "/doc/newsub", "/Z-last"] {
        assert!(
            after.get(p).is_some_and(|l| l.starts_with("drwxr-xr-x")),
            "{p}: {:?}",
            after.get(p)
        );
    }
    let x = d.path().join("x");
    for p in adds {
        assert_eq!(extract(&out, p, &x), b"new\n", "{p}");
    }
    let jo = run(Command::new("isoinfo").args(["-J", "-l", "-i"]).arg(&out));
    assert!(
        jo.contains("Directory listing of /newdir/sub/") && jo.contains("deep.txt"),
        "{jo}"
    );
    let pl = run(Command::new("isoinfo").args(["-l", "-i"]).arg(&out));
    assert!(pl.contains("Directory listing of /NEWDIR/SUB/"), "{pl}");
    check_path_tables(&out, 19);
    // reproducible with new directories too
    let out2 = d.path().join("o2.iso");
    args[3] = out2.display().to_string();
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    isotool_ok(&a);
    assert_eq!(sha(&out), sha(&out2));
    // a file in the way of a directory is refused
    let bad = isotool(&[
        "remaster",
        input.to_str().unwrap(),
        "-o",
        d.path().join("b.iso").to_str().unwrap(),
        "--add",
        &format!("{}=/md5sum.txt/x", f.display()),
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not a directory"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// Path tables: L and M agree, sorted by parent number, list exactly the directories of the
/// tree, and every entry's parent is the directory its '..' names.
fn check_path_tables(out: &Path, expected: usize) {
    let img = std::fs::read(out).unwrap();
    let vol = {
        let iso = isotool::iso::read::IsoFile::open(out).unwrap();
        isotool::iso::read::parse_volume(&iso).unwrap()
    };
    let iso = isotool::iso::read::IsoFile::open(out).unwrap();
    for vd in vol.trees() {
        let l = path_table(&img, vd.l_tables[0], vd.path_table_size, false);
        let m = path_table(&img, vd.m_tables[0], vd.path_table_size, true);
        assert_eq!(l, m, "{:?}: L and M tables differ", vd.kind);
        assert_eq!(l.len(), expected, "{:?}: {l:?}", vd.kind);
        let tree = isotool::iso::read::Tree::new(&iso, vd).unwrap();
        let mut walked = vec![vd.root.extent];
        tree.walk(&iso, &mut |_, e, _| {
            if e.is_dir() && !e.is_symlink() {
                walked.push(e.rec().extent);
            }
            Ok(())
        })
        .unwrap();
        let mut pt_ext: Vec<u32> = l.iter().map(|x| x.1).collect();
        pt_ext.sort();
        walked.sort();
        assert_eq!(pt_ext, walked, "{:?}: path table extents", vd.kind);
        for (i, (id, ext, parent)) in l.iter().enumerate().skip(1) {
            assert!(
                *parent as usize <= i,
                "{:?}: entry {i} has parent {parent}",
                vd.kind
            );
            assert!(
                l[i - 1].2 <= *parent,
                "{:?}: not sorted by parent at {i}",
                vd.kind
            );
            let first = &img[*ext as usize * 2048..*ext as usize * 2048 + 2048];
            let recs = isotool::iso::read::parse_dir_records(first, 0).unwrap();
            let dotdot = recs[1].extent;
            let parent_ext = l[*parent as usize - 1].1;
            // libisofs' Joliet '..' of existing directories points at itself (kept)
            assert!(
                dotdot == parent_ext
                    || (vd.kind == isotool::iso::read::TreeKind::Joliet && dotdot == *ext),
                "{:?} {}: '..' {dotdot} vs parent {parent_ext}",
                vd.kind,
                String::from_utf8_lossy(id)
            );
        }
    }
}

#[test]
fn path_tables_that_outgrow_their_blocks_move() {
    let d = tempfile::tempdir().unwrap();
    let input = ubuntu_mini(d.path());
    let f = d.path().join("f.txt");
    std::fs::write(&f, "pt\n").unwrap();
    let out = d.path().join("o.iso");
    let mut args = vec![
        "remaster".to_string(),
        input.display().to_string(),
        "-o".into(),
        out.display().to_string(),
    ];
    for i in 0..120 {
        args.push("--add".into());
        args.push(format!(
            "{}=/path-table-growth-directory-{i:03}/f.txt",
            f.display()
        ));
    }
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    isotool_ok(&a);
    let iso = isotool::iso::read::IsoFile::open(&out).unwrap();
    let vol = isotool::iso::read::parse_volume(&iso).unwrap();
    let old = isotool::iso::read::parse_volume(&isotool::iso::read::IsoFile::open(&input).unwrap())
        .unwrap();
    assert!(
        vol.primary.path_table_size > 2048,
        "the path table did not grow past a block"
    );
    assert_ne!(
        vol.primary.l_tables[0], old.primary.l_tables[0],
        "the path table did not move"
    );
    check_path_tables(&out, 15 + 120);
    let after = lsdl(&out);
    assert!(after.contains_key("/path-table-growth-directory-119/f.txt"));
    let x = d.path().join("x");
    assert_eq!(
        extract(&out, "/path-table-growth-directory-077/f.txt", &x),
        b"pt\n"
    );
    let pt = run(Command::new("isoinfo").args(["-p", "-i"]).arg(&out));
    assert!(
        pt.contains("PATH_TABLE_GROWTH_DIRECTORY_119") || pt.contains("PATH_TAB"),
        "{pt}"
    );
}
