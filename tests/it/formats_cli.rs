//! The command line over the new formats: convert to/from qcow2 and VMDK, info facts, probe
//! refusals with `--input-format raw` as the override, `pack`.

use crate::formats_common;
use formats_common::*;
use std::path::Path;
use std::process::{Command, Output};

const MIB: u64 = 1 << 20;

fn isotool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_isotool"))
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = isotool(args);
    assert!(
        o.status.success(),
        "isotool {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn src(dir: &Path) -> std::path::PathBuf {
    let raw = dir.join("in.raw");
    sparse_raw(
        &raw,
        32 * MIB,
        &[(0, text(500_000, 1)), (20 * MIB, noise(100_000, 2))],
    );
    raw
}

#[test]
fn convert_to_and_from_qcow2_and_vmdk() {
    let dir = tempfile::tempdir().unwrap();
    let raw = src(dir.path());
    let q = dir.path().join("o.qcow2");
    ok(&["-q", "convert", p(&raw), p(&q)]);
    assert!(
        qemu_img(&["compare", "-f", "raw", "-F", "qcow2", p(&raw), p(&q)]).contains("identical")
    );
    let qc = dir.path().join("c.qcow2");
    ok(&[
        "-q",
        "convert",
        p(&raw),
        p(&qc),
        "--compress",
        "--block-size",
        "4K",
    ]);
    assert!(qemu_img(&["check", p(&qc)]).contains("No errors"));
    assert!(
        qemu_img(&["compare", "-f", "raw", "-F", "qcow2", p(&raw), p(&qc)]).contains("identical")
    );
    assert!(std::fs::metadata(&qc).unwrap().len() < std::fs::metadata(&q).unwrap().len());
    let v = dir.path().join("o.vmdk");
    ok(&["-q", "convert", p(&raw), p(&v), "--to", "vmdk"]);
    assert!(
        qemu_img(&["compare", "-f", "raw", "-F", "vmdk", p(&raw), p(&v)]).contains("identical")
    );
    let desc = std::fs::read(&v).unwrap();
    assert!(String::from_utf8_lossy(&desc[512..2048]).contains("RW 65536 SPARSE \"o.vmdk\""));
    // qemu-img's qcow2 and VMDK back to raw, through the probe
    for (fmt, name) in [("qcow2", "q.qcow2"), ("vmdk", "q.vmdk")] {
        let theirs = dir.path().join(name);
        qemu_img(&["convert", "-f", "raw", "-O", fmt, p(&raw), p(&theirs)]);
        let back = dir.path().join(format!("{name}.raw"));
        ok(&["-q", "convert", p(&theirs), p(&back)]);
        assert!(
            qemu_img(&["compare", "-f", "raw", "-F", "raw", p(&raw), p(&back)])
                .contains("identical")
        );
    }
}

#[test]
fn info_reports_cluster_grain_compression_and_backing_chain() {
    let dir = tempfile::tempdir().unwrap();
    let raw = src(dir.path());
    let base = dir.path().join("base.qcow2");
    ok(&["-q", "convert", p(&raw), p(&base), "--compress"]);
    let top = dir.path().join("top.qcow2");
    qcow2_overlay("base.qcow2", &top);
    let out = ok(&["info", p(&top)]);
    assert!(out.contains("qcow2"), "{out}");
    assert!(out.contains("base.qcow2"), "{out}");
    let out = ok(&["info", p(&base), "--json"]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["block_size"], 65536);
    let notes = j["notes"].to_string();
    assert!(
        notes.contains("compressed (deflate)") && notes.contains("cluster size 65536"),
        "{notes}"
    );
    let v = dir.path().join("o.vmdk");
    ok(&["-q", "convert", p(&raw), p(&v)]);
    let out = ok(&["info", p(&v)]);
    assert!(out.contains("vmdk-streamOptimized"), "{out}");
    assert!(out.contains("zlib"), "{out}");
}

#[test]
fn unknown_formats_refused_by_name_and_raw_forced_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("disk.img");
    let mut b = vec![0u8; MIB as usize];
    b[..3].copy_from_slice(b"\x1f\x8b\x08");
    std::fs::write(&gz, &b).unwrap();
    let out = dir.path().join("o.vhdx");
    let o = isotool(&["convert", p(&gz), p(&out)]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("gzip") && err.contains("[unsupported-format]"),
        "{err}"
    );
    assert!(!out.exists());
    ok(&["-q", "convert", p(&gz), p(&out), "--input-format", "raw"]);
    // a VDI header
    let vdi = dir.path().join("x.vdi");
    let mut b = vec![0u8; 4096];
    b[..4].copy_from_slice(b"<<< ");
    b[64..68].copy_from_slice(b"\x7f\x10\xda\xbe");
    std::fs::write(&vdi, &b).unwrap();
    let o = isotool(&["info", p(&vdi)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("VirtualBox VDI"));
    // a qemu QED image
    let qed = dir.path().join("x.qed");
    qemu_img(&["create", "-f", "qed", p(&qed), "16M"]);
    let o = isotool(&["info", p(&qed)]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("QED"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn pack_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let raw = src(dir.path());
    let q = dir.path().join("d.qcow2");
    ok(&["-q", "convert", p(&raw), p(&q)]);
    let ova = dir.path().join("vm.ova");
    // Not quiet: the member list is printed (-q prints nothing, as for convert).
    let out = ok(&[
        "pack",
        p(&q),
        "--for",
        "ova",
        "-o",
        p(&ova),
        "--name",
        "vm",
        "--firmware",
        "efi",
    ]);
    assert!(out.contains("vm-disk1.vmdk"), "{out}");
    let list = run("tar", "tar", &["-tf", p(&ova)]);
    assert_eq!(list, "vm.ovf\nvm.mf\nvm-disk1.vmdk\n");
    let gcp = dir.path().join("img.tar.gz");
    ok(&["-q", "pack", p(&q), "--for", "gcp", "-o", p(&gcp)]);
    let o = isotool(&["pack", p(&q), "--for", "gcp", "-o", p(&gcp)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("[output-exists]"));
}
