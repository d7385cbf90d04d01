//! End-to-end tests of `isotool convert`, `disk create`, `info` and `validate` through the binary.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn isotool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_isotool"))
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("run isotool")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn require(tool: &str) {
    crate::oracle::need(tool, "see .ci/apt-packages");
}

/// A 64 MiB raw disk with a GPT made by sgdisk (the oracle): an EFI system partition, a BIOS
/// boot partition and a Linux partition, plus some data inside the Linux partition.
fn gpt_raw(dir: &Path) -> PathBuf {
    require("sgdisk");
    let p = dir.join("gpt.raw");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(64 << 20).unwrap();
    drop(f);
    let st = Command::new("sgdisk")
        .args([
            "-n",
            "1:2048:+16M",
            "-t",
            "1:ef00",
            "-c",
            "1:EFI stuff",
            "-n",
            "2:0:+1M",
            "-t",
            "2:ef02",
            "-n",
            "3:0:0",
            "-t",
            "3:8300",
            "-c",
            "3:rootfs",
        ])
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "sgdisk: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.write_all_at(&[0xab; 1 << 20], 40 << 20).unwrap();
    p
}

#[test]
fn convert_refuses_same_file_and_existing_output_and_leaves_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let raw = gpt_raw(dir.path());
    let before = std::fs::read(&raw).unwrap();
    let o = isotool(&["convert", s(&raw), s(&raw), "--to", "raw", "--force"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("same-file"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = dir.path().join("out.raw");
    std::fs::write(&out, b"keep me").unwrap();
    let o = isotool(&["convert", s(&raw), s(&out), "--to", "raw"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("output-exists"));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    // A failing conversion (unknown format name) leaves nothing behind either.
    let o = isotool(&["convert", s(&raw), s(&dir.path().join("x")), "--to", "qed"]);
    assert!(!o.status.success());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "unexpected files: {names:?}");
    assert_eq!(std::fs::read(&raw).unwrap(), before, "input modified");
}

#[test]
fn convert_raw_to_raw_is_identical_and_sparse_with_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let raw = gpt_raw(dir.path());
    let out = dir.path().join("copy.raw");
    let o = isotool(&["convert", s(&raw), s(&out), "--to", "raw", "--sha256"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a = std::fs::read(&raw).unwrap();
    let b = std::fs::read(&out).unwrap();
    assert!(a == b, "raw copy differs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(&isotool::checksum::sha256_hex(&b)),
        "{stdout}"
    );
    use std::os::unix::fs::MetadataExt;
    let blocks = std::fs::metadata(&out).unwrap().blocks() * 512;
    assert!(
        blocks < 8 << 20,
        "output not sparse: {blocks} bytes allocated"
    );
}

#[test]
fn info_lists_gpt_partitions_found_by_sgdisk() {
    let dir = tempfile::tempdir().unwrap();
    let raw = gpt_raw(dir.path());
    let o = isotool(&["info", s(&raw), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let parts = v["partitions"]["gpt"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0]["type_name"], "EFI system");
    assert_eq!(parts[0]["name"], "EFI stuff");
    assert_eq!(parts[0]["start"], 2048 * 512);
    assert_eq!(parts[0]["size"], 16 << 20);
    assert_eq!(parts[1]["type_name"], "BIOS boot");
    assert_eq!(parts[2]["type_name"], "Linux filesystem");
    assert_eq!(parts[2]["name"], "rootfs");
    assert_eq!(v["schema"], "isotool/info/1");
    assert_eq!(v["format"], "raw");
    assert_eq!(v["virtual_size"], 64u64 << 20);
    assert!(v["partitions"]["problems"].as_array().unwrap().is_empty());
    let o = isotool(&["info", s(&raw)]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("GPT (512-byte sectors)") && text.contains("rootfs"),
        "{text}"
    );
}

#[test]
fn validate_reports_every_blocking_finding_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let raw = gpt_raw(dir.path());
    // A raw image is not what Azure or Hyper-V take: blocked, with the fix named.
    let o = isotool(&["validate", s(&raw), "--for", "azure", "--json"]);
    assert_eq!(o.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let codes: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"azure-not-fixed-vhd"), "{codes:?}");
    let o = isotool(&["validate", s(&raw), "--for", "hyperv-gen2"]);
    assert_eq!(o.status.code(), Some(3));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("gen2-needs-vhdx") && text.contains("fix: isotool convert"),
        "{text}"
    );
    assert!(
        !text.contains("gen2-no-efi-system-partition"),
        "the sgdisk disk has an ESP: {text}"
    );
    // Unknown target: a usage error (exit 2, the values listed), not a crash.
    let o = isotool(&["validate", s(&raw), "--for", "vmware"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("hyperv-gen2"));
    // An unreadable image is a finding, not a panic.
    let junk = dir.path().join("junk.vhdx");
    let mut bytes = vec![0u8; 1 << 20];
    bytes[..8].copy_from_slice(b"vhdxfile");
    std::fs::write(&junk, &bytes).unwrap();
    let o = isotool(&["validate", s(&junk), "--for", "hyperv-gen2", "--json"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["findings"][0]["severity"], "error");
}

#[test]
fn disk_create_raw_is_sparse_and_sized() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d.raw");
    let o = isotool(&["disk", "create", s(&out), "--size", "3G", "--format", "raw"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = std::fs::metadata(&out).unwrap();
    assert_eq!(m.len(), 3 << 30);
    use std::os::unix::fs::MetadataExt;
    assert!(m.blocks() < 64);
    let o = isotool(&[
        "disk",
        "create",
        s(&out),
        "--size",
        "0",
        "--format",
        "raw",
        "--force",
    ]);
    assert!(!o.status.success());
    let o = isotool(&["disk", "create", s(&out), "--size", "12Q", "--force"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown unit"));
}

#[test]
fn azure_rounds_to_whole_mib_prints_it_and_validates() {
    require("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    // 5 MiB + 3 sectors, with data in the last sector.
    let raw = dir.path().join("odd.raw");
    let f = std::fs::File::create(&raw).unwrap();
    let len = (5 << 20) + 1536;
    f.set_len(len).unwrap();
    f.write_all_at(&[0x5a; 512], len - 512).unwrap();
    drop(f);
    let out = dir.path().join("azure.vhd");
    let o = isotool(&["convert", s(&raw), s(&out), "--azure", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(&format!(
            "rounded up from {len} to {} bytes (6 MiB)",
            6 << 20
        )),
        "{stdout}"
    );
    assert_eq!(std::fs::metadata(&out).unwrap().len(), (6 << 20) + 512);
    // qemu-img (told the format: it would probe a fixed VHD as raw) sees exactly 6 MiB, and the
    // data: the first 5 MiB + 1536 equal the input, the rest is zeros.
    let q = Command::new("qemu-img")
        .args(["info", "-f", "vpc", "--output=json", s(&out)])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&q.stdout).unwrap();
    assert_eq!(v["virtual-size"], 6u64 << 20);
    let back = dir.path().join("back.raw");
    let q = Command::new("qemu-img")
        .args(["convert", "-f", "vpc", "-O", "raw", s(&out), s(&back)])
        .output()
        .unwrap();
    assert!(q.status.success());
    let b = std::fs::read(&back).unwrap();
    assert_eq!(&b[..len as usize], &std::fs::read(&raw).unwrap()[..]);
    assert!(b[len as usize..].iter().all(|&x| x == 0));
    let o = isotool(&["validate", s(&out), "--for", "azure"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("OK for azure"), "{text}");
    assert!(!text.contains("azure-size-not-mib"));
    // --azure with another format is refused, not silently changed.
    let o = isotool(&[
        "convert",
        s(&raw),
        s(&dir.path().join("x.vhdx")),
        "--azure",
        "--to",
        "vhdx",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--azure writes a fixed VHD"));
    // Without --to the format comes from the extension; none known is an error.
    let o = isotool(&["convert", s(&raw), s(&dir.path().join("y.vhdx"))]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("(vhdx,"));
    let o = isotool(&["convert", s(&raw), s(&dir.path().join("z.bin"))]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("give the output format with --to"));
}

#[test]
fn interrupt_removes_the_temporary_output() {
    let dir = tempfile::tempdir().unwrap();
    // Hashing 64 GiB of holes takes long enough to interrupt the run while the temp file exists.
    let raw = dir.path().join("big.raw");
    std::fs::File::create(&raw)
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    let out = dir.path().join("out.raw");
    let mut child = Command::new(env!("CARGO_BIN_EXE_isotool"))
        .args(["-q", "convert", s(&raw), s(&out), "--to", "raw", "--sha256"])
        .spawn()
        .unwrap();
    let temp_seen = (0..500).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::read_dir(dir.path())
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".tmp"))
    });
    assert!(temp_seen, "the conversion never created its temp file");
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGINT), "{status:?}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("big.raw")],
        "left behind: {names:?}"
    );
}
