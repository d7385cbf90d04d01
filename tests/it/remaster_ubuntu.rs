//! Remaster of an Ubuntu-shaped ISO checked with xorriso, isoinfo and sgdisk as oracles.

use crate::iso_fixture::*;
use std::process::Command;

const CHANGED: &[&str] = &[
    "/isolinux/isolinux.cfg",
    "/isolinux/txt.cfg",
    "/boot/grub/grub.cfg",
    "/md5sum.txt",
];

#[test]
fn remaster_preseed_keeps_tree_and_boot_equipment() {
    need("isoinfo", "genisoimage");
    need("sgdisk", "gdisk");
    let d = tempfile::tempdir().unwrap();
    let input = ubuntu_mini(d.path());
    let before = sha(&input);
    let seed = d.path().join("auto.seed");
    std::fs::write(&seed, "d-i passwd/root-password password SECRET-VALUE\n").unwrap();
    let out = d.path().join("out.iso");
    let stderr = isotool_ok(&[
        "remaster",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--preseed",
        seed.to_str().unwrap(),
        "--kernel-arg",
        "console=ttyS0",
        "--timeout",
        "2",
    ]);
    assert!(
        !stderr.contains("SECRET-VALUE"),
        "the preseed content was printed"
    );
    assert_eq!(sha(&input), before, "the input was modified");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600,
        "an output carrying the preseed must be 0600"
    );
    // boot images and the catalog cannot be replaced (their catalog entries would go stale)
    let bad = isotool(&[
        "remaster",
        input.to_str().unwrap(),
        "-o",
        d.path().join("bad.iso").to_str().unwrap(),
        "--add",
        &format!("{}=/isolinux/isolinux.bin", seed.display()),
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("El Torito"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    // an ISO path with '..' is refused
    let bad = isotool(&[
        "remaster",
        input.to_str().unwrap(),
        "-o",
        d.path().join("bad.iso").to_str().unwrap(),
        "--add",
        &format!("{}=/doc/../x", seed.display()),
    ]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("invalid-argument"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(!d.path().join("bad.iso").exists());

    // same tree but for the intended changes
    let a = lsdl(&input);
    let b = lsdl(&out);
    for (p, l) in &a {
        let nb = b.get(p).unwrap_or_else(|| panic!("{p} lost"));
        if !CHANGED.contains(&p.as_str()) {
            assert_eq!(l, nb, "{p} changed");
        }
    }
    let added: Vec<&String> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    assert_eq!(added, vec!["/preseed/auto.seed"]);
    assert!(
        b["/preseed/auto.seed"].starts_with("-rw-r--r--"),
        "{}",
        b["/preseed/auto.seed"]
    );
    assert!(
        b["/ubuntu"].contains("-> '.'"),
        "symlink kept: {}",
        b["/ubuntu"]
    );

    // isoinfo reads both trees
    let rr = run(Command::new("isoinfo").args(["-R", "-l", "-i"]).arg(&out));
    assert!(rr.contains("auto.seed"));
    let jo = run(Command::new("isoinfo").args(["-J", "-l", "-i"]).arg(&out));
    assert!(jo.contains("auto.seed"), "Joliet entry missing");
    assert!(jo.contains("a-file-with-a-rather-long-name_and.more.dots.txt"));
    let plain = run(Command::new("isoinfo").args(["-l", "-i"]).arg(&out));
    assert!(plain.contains("AUTO.SEE;1"), "ISO 9660 name: {plain}");

    // contents
    let x = d.path().join("x");
    assert_eq!(
        extract(&out, "/preseed/auto.seed", &x),
        std::fs::read(&seed).unwrap()
    );
    let txt = String::from_utf8(extract(&out, "/isolinux/txt.cfg", &x)).unwrap();
    assert!(
        txt.starts_with("default unattended\nlabel unattended\n"),
        "{txt}"
    );
    assert!(txt.contains("append auto=true priority=critical preseed/file=/cdrom/preseed/auto.seed vga=788 console=ttyS0 initrd=/install/initrd.gz quiet ---"));
    assert!(txt.contains("label install\n"), "stock entry kept");
    let cfg = String::from_utf8(extract(&out, "/isolinux/isolinux.cfg", &x)).unwrap();
    assert!(
        cfg.contains("timeout 20\n") && cfg.contains("prompt 0\n") && cfg.contains("# ui gfxboot"),
        "{cfg}"
    );
    let grub = String::from_utf8(extract(&out, "/boot/grub/grub.cfg", &x)).unwrap();
    assert!(
        grub.contains("set timeout=2\n") && grub.contains("set default=0\n"),
        "{grub}"
    );
    assert!(grub.contains("linux\t/install/vmlinuz auto=true priority=critical preseed/file=/cdrom/preseed/auto.seed console=ttyS0 quiet ---"), "{grub}");
    assert_eq!(
        extract(&out, "/boot/grub/efi.img", &x),
        extract(&input, "/boot/grub/efi.img", &x),
        "efi.img changed"
    );

    // md5sum.txt true for every line
    let tree = d.path().join("tree");
    run(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&out)
        .args(["-extract", "/"])
        .arg(&tree));
    run(Command::new("md5sum")
        .args(["--quiet", "-c", "md5sum.txt"])
        .current_dir(&tree));
    let sums = std::fs::read_to_string(tree.join("md5sum.txt")).unwrap();
    for p in [
        "./preseed/auto.seed",
        "./isolinux/txt.cfg",
        "./boot/grub/grub.cfg",
    ] {
        assert!(sums.contains(&format!("  {p}\n")), "{p} not in md5sum.txt");
    }

    // boot equipment equals xorriso's own replay (positions masked), and exact where it must
    let rx = d.path().join("replay.iso");
    xorriso_replay(&input, &rx, &[(&seed, "/preseed/auto.seed")]);
    let ours = boot_report(&out, true);
    let theirs = boot_report(&rx, true);
    assert_eq!(ours, theirs, "boot equipment differs from xorriso's replay");
    let exact = boot_report(&out, false);
    let len = std::fs::metadata(&out).unwrap().len();
    assert!(
        exact.iter().any(|l| l.contains("boot-info-table")),
        "{exact:?}"
    );
    assert!(
        exact.contains(&format!("ISO image size/512 : {}", len / 512)),
        "{exact:?}"
    );
    assert!(
        exact
            .iter()
            .any(|l| l.starts_with("MBR partition      :   1   0x80  0x00")
                && l.ends_with(&format!(" {}", len / 512))),
        "MBR partition 1 does not cover the image: {exact:?}"
    );
    assert!(
        exact
            .iter()
            .any(|l| l.starts_with("GPT lba range") && l.ends_with(&format!(" {}", len / 512 - 1))),
        "{exact:?}"
    );
    let old = boot_report(&input, false);
    for l in old.iter().filter(|l| {
        l.contains("El Torito boot img")
            || l.contains("APM start")
            || l.contains("MBR partition      :   2")
    }) {
        assert!(exact.contains(l), "boot image / EFI partition moved: {l}");
    }

    // boot-info-table of isolinux.bin verified independently
    let bin = std::fs::read(tree.join("isolinux/isolinux.bin")).unwrap();
    let w = |o: usize| u32::from_le_bytes(bin[o..o + 4].try_into().unwrap());
    assert_eq!(w(8), 16, "bi_pvd");
    assert_eq!(w(16) as usize, bin.len(), "bi_length");
    let sum = (64..bin.len())
        .step_by(4)
        .fold(0u32, |s, o| s.wrapping_add(w(o)));
    assert_eq!(sum, w(20), "bi_csum");
    let bios_lba: u32 = exact
        .iter()
        .find(|l| l.contains("El Torito boot img :   1"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(w(12), bios_lba, "bi_file");

    // GPT: sgdisk sees what it saw in the input (xorriso's layout has inherent overlaps)
    let v_in = Command::new("sgdisk")
        .arg("-v")
        .arg(&input)
        .output()
        .unwrap();
    let v_out = Command::new("sgdisk").arg("-v").arg(&out).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&v_in.stdout),
        String::from_utf8_lossy(&v_out.stdout),
        "sgdisk -v differs"
    );
    assert!(
        !String::from_utf8_lossy(&v_out.stdout).contains("CRC"),
        "GPT CRC problem"
    );

    // reproducible
    let out2 = d.path().join("out2.iso");
    isotool_ok(&[
        "remaster",
        input.to_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
        "--preseed",
        seed.to_str().unwrap(),
        "--kernel-arg",
        "console=ttyS0",
        "--timeout",
        "2",
    ]);
    assert_eq!(sha(&out), sha(&out2), "two runs differ");
}

#[test]
fn directories_that_overflow_move_with_path_tables() {
    need("isoinfo", "genisoimage");
    let d = tempfile::tempdir().unwrap();
    let input = ubuntu_mini(d.path());
    let src = d.path().join("add.txt");
    std::fs::write(&src, "added\n").unwrap();
    let mut args: Vec<String> = vec![
        "remaster".into(),
        input.to_str().unwrap().into(),
        "-o".into(),
        d.path().join("o.iso").to_str().unwrap().into(),
        "--volume-id".into(),
        "NEWVOL".into(),
    ];
    let mut want = Vec::new();
    for i in 0..40 {
        let p = format!("/doc/many/added-file-with-a-long-name-{i:03}.txt");
        args.push("--add".into());
        args.push(format!("{}={p}", src.display()));
        want.push(p);
    }
    for i in 0..30 {
        let p = format!("/root-level-added-file-with-long-name-{i:03}.cfg");
        args.push("--add".into());
        args.push(format!("{}={p}", src.display()));
        want.push(p);
    }
    // a file bigger than the cylinder padding, so the image grows and the system area follows
    let big = d.path().join("big.bin");
    let bytes: Vec<u8> = (0..1_600_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(&big, &bytes).unwrap();
    args.push("--add".into());
    args.push(format!("{}=/doc/big.bin", big.display()));
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let o = isotool(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("rewritten at the end: Primary:/doc/many"),
        "{err}"
    );
    assert!(
        err.contains("rewritten at the end: Primary:/\n") || err.contains("Primary:/\n"),
        "root did not move: {err}"
    );
    let out = d.path().join("o.iso");
    let before = lsdl(&input);
    let after = lsdl(&out);
    for (p, l) in &before {
        if p != "/md5sum.txt" {
            assert_eq!(Some(l), after.get(p), "{p}");
        }
    }
    for p in &want {
        assert!(after.contains_key(p), "{p} missing");
    }
    // Joliet and the path tables (isoinfo -l walks the path table)
    let jo = run(Command::new("isoinfo").args(["-J", "-l", "-i"]).arg(&out));
    assert!(jo.contains("added-file-with-a-long-name-039.txt"));
    assert!(jo.contains("root-level-added-file-with-long-name-029.cfg"));
    let pl = run(Command::new("isoinfo").args(["-l", "-i"]).arg(&out));
    assert!(pl.contains("Directory listing of /DOC/MANY/"), "{pl}");
    let pt = run(Command::new("isoinfo").args(["-p", "-i"]).arg(&out));
    let info = run(Command::new(BIN)
        .args(["iso", "ls", "--json"])
        .arg(&out)
        .arg("/doc"));
    assert!(info.contains("/doc/many"));
    // the path table entry of /doc/many points at the moved extent
    let iso = isotool::iso::read::IsoFile::open(&out).unwrap();
    let t = isotool::iso::info::primary_tree(&iso).unwrap();
    let many = match t.lookup(&iso, "/doc/many").unwrap() {
        isotool::iso::read::Lookup::Found { parent, index } => parent.entries[index].rec().extent,
        _ => panic!("no /doc/many"),
    };
    assert!(
        pt.lines()
            .any(|l| l.contains("MANY") && l.contains(&format!(" {many:x} "))),
        "path table not re-pointed to {many}: {pt}"
    );
    // every directory's '.' is itself and its '..' its parent, in both trees
    let vol = isotool::iso::read::parse_volume(&iso).unwrap();
    for vd in vol.trees() {
        let tree = isotool::iso::read::Tree::new(&iso, vd).unwrap();
        let root = tree.root(&iso).unwrap();
        assert_eq!(root.dot.extent, vd.root.extent);
        assert_eq!(root.dotdot.extent, vd.root.extent);
        let mut dirs = vec![root];
        let mut checked = 0;
        while let Some(dir) = dirs.pop() {
            for e in dir.entries.iter().filter(|e| e.is_dir() && !e.is_symlink()) {
                let sub = tree.read_dir(&iso, e.rec().extent, e.rec().size).unwrap();
                assert_eq!(
                    sub.dot.extent,
                    e.rec().extent,
                    "{:?} {}: '.'",
                    vd.kind,
                    e.name
                );
                assert_eq!(
                    sub.dot.size,
                    e.rec().size,
                    "{:?} {}: '.' size",
                    vd.kind,
                    e.name
                );
                // libisofs' Joliet '..' records point at their own directory: the input's
                // quirk is kept; elsewhere '..' must point at the (possibly moved) parent
                let (want_ext, want_size) = if vd.kind == isotool::iso::read::TreeKind::Joliet {
                    (sub.dot.extent, sub.dot.size)
                } else {
                    (dir.extent, dir.size)
                };
                assert_eq!(
                    sub.dotdot.extent, want_ext,
                    "{:?} {}: '..'",
                    vd.kind, e.name
                );
                assert_eq!(
                    sub.dotdot.size, want_size,
                    "{:?} {}: '..' size",
                    vd.kind, e.name
                );
                checked += 1;
                dirs.push(sub);
            }
        }
        assert!(checked >= 10);
    }
    let dsc = run(Command::new("isoinfo").args(["-d", "-i"]).arg(&out));
    assert!(dsc.contains("Volume id: NEWVOL"), "{dsc}");
    let x = d.path().join("x");
    assert_eq!(extract(&out, "/doc/big.bin", &x), bytes);
    let len = std::fs::metadata(&out).unwrap().len();
    assert!(
        len > std::fs::metadata(&input).unwrap().len(),
        "the image did not grow"
    );
    let rep = boot_report(&out, false);
    assert!(
        rep.contains(&format!("ISO image size/512 : {}", len / 512)),
        "{rep:?}"
    );
    assert!(
        rep.iter()
            .any(|l| l.starts_with("GPT lba range") && l.ends_with(&format!(" {}", len / 512 - 1))),
        "{rep:?}"
    );
    assert!(
        rep.iter()
            .any(|l| l.starts_with("MBR partition      :   1   0x80  0x00")
                && l.ends_with(&format!(" {}", len / 512))),
        "{rep:?}"
    );
    need("sgdisk", "gdisk");
    let v_in = Command::new("sgdisk")
        .arg("-v")
        .arg(&input)
        .output()
        .unwrap();
    let v_out = Command::new("sgdisk").arg("-v").arg(&out).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&v_in.stdout),
        String::from_utf8_lossy(&v_out.stdout)
    );
    assert_eq!(
        extract(&out, "/doc/many/added-file-with-a-long-name-007.txt", &x),
        b"added\n"
    );
    assert_eq!(
        extract(&out, "/doc/many/many-file-number-77.txt", &x),
        b"file 77\n"
    );
}

/// A remaster of a remastered ISO (a new preseed) replaces the unattended entries and the seed,
/// says so, empties the previous seed, and keeps md5sum.txt true (xorriso extracts, md5sum -c).
#[test]
fn remaster_rerun_replaces_the_unattended_entry_and_the_seed() {
    let d = tempfile::tempdir().unwrap();
    let input = ubuntu_mini(d.path());
    let one = d.path().join("one.seed");
    std::fs::write(&one, "d-i passwd/root-password password FIRST\n").unwrap();
    let two = d.path().join("two.seed");
    std::fs::write(&two, "d-i debconf/priority string critical\n").unwrap();
    let first = d.path().join("first.iso");
    isotool_ok(&[
        "remaster",
        input.to_str().unwrap(),
        "-o",
        first.to_str().unwrap(),
        "--preseed",
        one.to_str().unwrap(),
    ]);
    let second = d.path().join("second.iso");
    let o = isotool(&[
        "remaster",
        first.to_str().unwrap(),
        "-o",
        second.to_str().unwrap(),
        "--preseed",
        two.to_str().unwrap(),
        "--kernel-arg",
        "console=ttyS0",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "the rerun was refused: {err}");
    assert!(
        err.contains("/isolinux/txt.cfg: the unattended entry of an earlier remaster is replaced")
            && err.contains("/boot/grub/grub.cfg: the unattended entry of an earlier remaster"),
        "{err}"
    );
    assert!(
        err.contains("/preseed/one.seed: the previous seed is emptied"),
        "{err}"
    );
    let x = d.path().join("x");
    let txt = String::from_utf8(extract(&second, "/isolinux/txt.cfg", &x)).unwrap();
    assert_eq!(txt.matches("label unattended").count(), 1, "{txt}");
    assert!(
        txt.contains("preseed/file=/cdrom/preseed/two.seed"),
        "{txt}"
    );
    assert!(!txt.contains("one.seed"), "{txt}");
    assert!(txt.starts_with("default unattended\n"), "{txt}");
    let grub = String::from_utf8(extract(&second, "/boot/grub/grub.cfg", &x)).unwrap();
    assert_eq!(grub.matches("menuentry \"Unattended install\"").count(), 1);
    assert!(
        grub.contains("preseed/file=/cdrom/preseed/two.seed console=ttyS0"),
        "{grub}"
    );
    assert!(!grub.contains("one.seed"), "{grub}");
    assert_eq!(
        extract(&second, "/preseed/two.seed", &x),
        std::fs::read(&two).unwrap()
    );
    assert!(
        extract(&second, "/preseed/one.seed", &x).is_empty(),
        "the previous seed (it may hold passwords) is still on the disc"
    );
    // the same as one remaster of the stock ISO with the second preseed, for the boot configs
    let direct = d.path().join("direct.iso");
    isotool_ok(&[
        "remaster",
        input.to_str().unwrap(),
        "-o",
        direct.to_str().unwrap(),
        "--preseed",
        two.to_str().unwrap(),
        "--kernel-arg",
        "console=ttyS0",
    ]);
    for p in [
        "/isolinux/txt.cfg",
        "/isolinux/isolinux.cfg",
        "/boot/grub/grub.cfg",
    ] {
        assert_eq!(extract(&second, p, &x), extract(&direct, p, &x), "{p}");
    }
    let tree = d.path().join("tree");
    run(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&second)
        .args(["-extract", "/"])
        .arg(&tree));
    run(Command::new("md5sum")
        .args(["--quiet", "-c", "md5sum.txt"])
        .current_dir(&tree));
}
