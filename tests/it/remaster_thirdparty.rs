//! Third-party ISOs from Debian packages (ipxe, grub-rescue-pc): a remaster that adds a file
//! keeps the boot equipment xorriso's own replay keeps.

use crate::iso_fixture::*;
use std::path::Path;

fn check(stock: &str, package: &str, has_boot_cfg: bool) {
    need("xorriso", "xorriso");
    let input = Path::new(stock);
    assert!(
        input.exists(),
        "{stock} is missing: install the Debian package `{package}`"
    );
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("README.txt");
    std::fs::write(&src, "added by the remaster test\n").unwrap();
    let out = d.path().join("out.iso");
    let add = format!("{}=/README.txt", src.display());
    let before = sha(input);
    // a preseed on a disc with nothing to edit is refused...
    if !has_boot_cfg {
        let o = isotool(&[
            "remaster",
            stock,
            "-o",
            out.to_str().unwrap(),
            "--preseed",
            src.to_str().unwrap(),
        ]);
        assert!(
            !o.status.success(),
            "preseed without a boot config must fail"
        );
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains("no boot config to edit"), "{e}");
        assert!(!out.exists());
    }
    // ...and only adding a file works
    isotool_ok(&[
        "remaster",
        stock,
        "-o",
        out.to_str().unwrap(),
        "--add",
        &add,
        "--no-boot-edit",
    ]);
    assert_eq!(sha(input), before, "input modified");
    let rx = d.path().join("replay.iso");
    xorriso_replay(input, &rx, &[(&src, "/README.txt")]);
    assert_eq!(
        boot_report(&out, true),
        boot_report(&rx, true),
        "{stock}: boot equipment differs"
    );
    let a = lsdl(input);
    let b = lsdl(&out);
    for (p, l) in &a {
        assert_eq!(Some(l), b.get(p), "{p}");
    }
    assert_eq!(b.len(), a.len() + 1);
    let x = d.path().join("x");
    assert_eq!(
        extract(&out, "/README.txt", &x),
        std::fs::read(&src).unwrap()
    );
    // boot images did not move
    let old = boot_report(input, false);
    let new = boot_report(&out, false);
    for l in old
        .iter()
        .filter(|l| l.contains("El Torito boot img") || l.contains("El Torito catalog"))
    {
        assert!(new.contains(l), "{l} moved");
    }
    let len = std::fs::metadata(&out).unwrap().len();
    assert!(
        new.iter()
            .any(|l| l.starts_with("MBR partition      :   1") && {
                let f: Vec<&str> = l.split_whitespace().collect();
                let start: u64 = f[f.len() - 2].parse().unwrap();
                let n: u64 = f[f.len() - 1].parse().unwrap();
                start + n == len / 512
            }),
        "MBR partition 1 does not end at the image end: {new:?}"
    );
}

#[test]
fn ipxe_iso_add_file() {
    check("/usr/lib/ipxe/ipxe.iso", "ipxe", false);
}

#[test]
fn grub_rescue_cdrom_add_file() {
    // its /boot/grub/grub.cfg is GRUB's sample, with a linux entry: editable
    check(
        "/usr/lib/grub-rescue/grub-rescue-cdrom.iso",
        "grub-rescue-pc",
        true,
    );
}
