//! `isotool build` with an installed disk given (no VM): the artifact layout
//! `OUTPUT/VERSION/NAME/PROVIDER/NAME-VERSION_PROVIDER.EXT` + `SHA256SUMS` (checked by
//! `sha256sum -c`), the formats (qemu-img), reruns, the media's reproducibility, and interrupted
//! builds that leave nothing under a final name.

use crate::build_common;
use build_common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn qemu_img_json(args: &[&str], file: &Path) -> serde_json::Value {
    need("qemu-img", "qemu-utils");
    let o = Command::new("qemu-img")
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    assert!(o.status.success(), "qemu-img {args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn qemu_img_compare(a: &Path, fmt: &str, b: &Path) {
    let o = Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", fmt])
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "qemu-img compare {}: {}{}",
        b.display(),
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

#[test]
fn layout_sums_formats_and_reruns() {
    let b = BuildDir::new();
    let disk = b.path().join("disk.raw");
    installed_disk(&disk, 8);
    let o = b.build(&["--installed-disk", "disk.raw"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = b.image_dir();
    let want: Vec<String> = [
        "hyperv/demo-1.0.0_hyperv.vhdx",
        "azure/demo-1.0.0_azure.vhd",
        "raw/demo-1.0.0_raw.raw",
    ]
    .iter()
    .flat_map(|a| {
        let dir = a.split('/').next().unwrap();
        [
            format!("d {dir}"),
            format!("f {a}"),
            format!("f {dir}/SHA256SUMS"),
        ]
    })
    .collect();
    let got: Vec<String> = listing(&img)
        .into_iter()
        .filter(|l| !l.contains(".work"))
        .collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(got, want_sorted);
    for dir in ["hyperv", "azure", "raw"] {
        sha256sum_check(&img.join(dir));
    }
    // The stdout report lists each artifact with the SHA-256 of its SHA256SUMS.
    let report = String::from_utf8_lossy(&o.stdout).to_string();
    let sums = std::fs::read_to_string(img.join("azure/SHA256SUMS")).unwrap();
    let hex = sums.split_whitespace().next().unwrap();
    assert!(
        report.contains(&format!("{hex}  out/1.0.0/demo/azure/demo-1.0.0_azure.vhd")),
        "{report}"
    );
    let vhdx = img.join("hyperv/demo-1.0.0_hyperv.vhdx");
    let vhd = img.join("azure/demo-1.0.0_azure.vhd");
    let raw = img.join("raw/demo-1.0.0_raw.raw");
    // Formats as each provider needs them.
    let i = qemu_img_json(&["info", "--output=json", "-f", "vhdx"], &vhdx);
    assert_eq!(i["cluster-size"], 1 << 20, "hyperv: 1 MiB blocks: {i}");
    let i = qemu_img_json(&["info", "--output=json", "-f", "vpc"], &vhd);
    let vs = i["virtual-size"].as_u64().unwrap();
    assert_eq!(vs % (1 << 20), 0, "azure: whole MiB: {i}");
    assert_eq!(
        std::fs::metadata(&vhd).unwrap().len(),
        vs + 512,
        "azure: fixed VHD"
    );
    qemu_img_compare(&disk, "vhdx", &vhdx);
    qemu_img_compare(&disk, "vpc", &vhd);
    qemu_img_compare(&disk, "raw", &raw);
    // The media stay in the work directory; no temporary or staging file is left.
    let all = listing(&b.out());
    for f in [
        "installer.iso",
        "provisioning.iso",
        "seed.iso",
        "custom-data.txt",
    ] {
        assert!(
            all.contains(&format!("f 1.0.0/demo/.work/{f}")),
            "{f} missing: {all:?}"
        );
    }
    assert!(
        !all.iter()
            .any(|l| l.contains(".partial") || l.ends_with(".tmp")),
        "{all:?}"
    );

    // A rerun refuses to replace the build, and leaves it alone.
    let sums_before = std::fs::read(img.join("hyperv/SHA256SUMS")).unwrap();
    let o = b.build(&["--installed-disk", "disk.raw"]);
    expect_error(&o, "output-exists", &["hyperv", "--force"]);
    assert_eq!(
        std::fs::read(img.join("hyperv/SHA256SUMS")).unwrap(),
        sums_before
    );
    // With --force it replaces it; same inputs and SOURCE_DATE_EPOCH: the same artifact bytes.
    let o = b.build(&["--installed-disk", "disk.raw", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for dir in ["hyperv", "azure", "raw"] {
        assert_eq!(listing(&img.join(dir)).len(), 2);
    }
    assert_eq!(
        std::fs::read(img.join("hyperv/SHA256SUMS")).unwrap(),
        sums_before
    );
    assert!(
        !listing(&img)
            .iter()
            .any(|l| l.contains(".old") || l.contains(".partial"))
    );
}

#[test]
fn media_are_reproducible() {
    let b = BuildDir::new();
    let media = [
        "installer.iso",
        "provisioning.iso",
        "seed.iso",
        "custom-data.txt",
    ];
    let run = |epoch: &str| -> Vec<Vec<u8>> {
        let o = b
            .command(&["--stop-after", "azure-custom-data"])
            .env("SOURCE_DATE_EPOCH", epoch)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let work = b.image_dir().join(".work");
        media
            .iter()
            .map(|m| std::fs::read(work.join(m)).unwrap())
            .collect()
    };
    let a = run("1700000000");
    let again = run("1700000000");
    for (i, m) in media.iter().enumerate() {
        assert!(
            a[i] == again[i],
            "{m} differs between two runs with the same SOURCE_DATE_EPOCH"
        );
    }
    // Stopped early: nothing published.
    assert!(!b.image_dir().join("hyperv").exists());
    // The clock is the build context's: another epoch, other dates on the discs.
    let other = run("1600000000");
    assert!(a[0] != other[0], "installer.iso ignores SOURCE_DATE_EPOCH");
    assert!(
        a[1] != other[1],
        "provisioning.iso ignores SOURCE_DATE_EPOCH"
    );
}

/// Starts a build and sends `sig` once a temporary output appears in the hyperv staging
/// directory (the convert step is writing).
fn interrupt_during_convert(b: &BuildDir, sig: i32) -> std::process::ExitStatus {
    let mut child = b
        .command(&["--installed-disk", "disk.raw", "--force"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let staging = b.image_dir().join(".hyperv.partial");
    let t = Instant::now();
    loop {
        let writing = std::fs::read_dir(&staging)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            })
            .unwrap_or(false);
        if writing {
            break;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("the build ended ({st}) before the convert step was seen writing");
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "convert never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, sig) };
    child.wait().unwrap()
}

#[test]
fn interrupted_build_leaves_no_final_artifact() {
    let b = BuildDir::new();
    installed_disk(&b.path().join("disk.raw"), 600);
    b.write_toml(&[("providers", Some("[\"hyperv\", \"azure\"]"))]);
    let finals = |b: &BuildDir| -> Vec<String> {
        listing(&b.image_dir())
            .into_iter()
            .filter(|l| !l.contains("/.") && !l.starts_with("d .") && !l.starts_with("f ."))
            .collect()
    };

    let st = interrupt_during_convert(&b, libc::SIGTERM);
    assert_eq!(st.code(), Some(128 + libc::SIGTERM), "{st}");
    assert!(
        finals(&b).is_empty(),
        "final names after SIGTERM: {:?}",
        finals(&b)
    );
    let left = listing(&b.out());
    assert!(
        !left.iter().any(|l| l.ends_with(".tmp")),
        "temporary outputs left after SIGTERM: {left:?}"
    );

    let st = interrupt_during_convert(&b, libc::SIGKILL);
    assert_eq!(st.signal_or_none(), Some(libc::SIGKILL));
    assert!(
        finals(&b).is_empty(),
        "final names after SIGKILL: {:?}",
        finals(&b)
    );

    // The next run cleans up what the killed one left and publishes.
    let o = b.build(&["--installed-disk", "disk.raw"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let all = listing(&b.out());
    assert!(
        !all.iter()
            .any(|l| l.ends_with(".tmp") || l.contains(".partial")),
        "{all:?}"
    );
    assert!(
        b.image_dir()
            .join("hyperv/demo-1.0.0_hyperv.vhdx")
            .is_file()
    );
    assert!(b.image_dir().join("azure/SHA256SUMS").is_file());
}

trait SignalOrNone {
    fn signal_or_none(&self) -> Option<i32>;
}
impl SignalOrNone for std::process::ExitStatus {
    fn signal_or_none(&self) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(self)
    }
}

/// `tar ARGS` in `dir`; its stdout.
fn tar(dir: &Path, args: &[&str]) -> String {
    need("tar", "tar");
    let o = Command::new("tar")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "tar {args:?}: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Member names of `tar -tvf` output, in archive order.
fn tar_names(verbose: &str) -> Vec<String> {
    verbose
        .lines()
        .map(|l| l.split_whitespace().last().unwrap().to_string())
        .collect()
}

fn qemu_img_check(fmt: &str, file: &Path) {
    let o = Command::new("qemu-img")
        .args(["check", "-f", fmt])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "qemu-img check {}: {}{}",
        file.display(),
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

/// Extracts the package `pkg` into a new directory beside it; the directory.
fn extract(pkg: &Path, flags: &str) -> std::path::PathBuf {
    let dir = pkg.with_extension("x");
    std::fs::create_dir_all(&dir).unwrap();
    tar(&dir, &[flags, pkg.to_str().unwrap()]);
    dir
}

const PACKAGES: [&str; 6] = [
    "openstack/demo-1.0.0_openstack.qcow2",
    "gcp/demo-1.0.0_gcp.tar.gz",
    "aws/demo-1.0.0_aws.ova",
    "vmware/demo-1.0.0_vmware.ova",
    "virtualbox/demo-1.0.0_virtualbox.box",
    "vagrant-libvirt/demo-1.0.0_vagrant-libvirt.box",
];

fn check_ova(disk: &Path, ova: &Path) {
    let names = tar_names(&tar(
        ova.parent().unwrap(),
        &["-tvf", ova.to_str().unwrap()],
    ));
    assert_eq!(
        names,
        ["demo.ovf", "demo.mf", "demo-disk1.vmdk"],
        "{}",
        ova.display()
    );
    let x = extract(ova, "-xf");
    // Every manifest line re-verified by sha256sum over the extracted files.
    let mf = std::fs::read_to_string(x.join("demo.mf")).unwrap();
    assert_eq!(mf.lines().count(), 2, "{mf}");
    for f in ["demo.ovf", "demo-disk1.vmdk"] {
        let h = isotool::checksum::sha256_hex(&std::fs::read(x.join(f)).unwrap());
        assert!(mf.contains(&format!("SHA256({f})= {h}\n")), "{f}: {mf}");
    }
    let ovf = std::fs::read_to_string(x.join("demo.ovf")).unwrap();
    let cap = std::fs::metadata(disk).unwrap().len();
    assert!(ovf.contains(&format!("ovf:capacity=\"{cap}\"")), "{ovf}");
    assert!(ovf.contains("vmw:value=\"bios\""), "{ovf}");
    let vmdk = x.join("demo-disk1.vmdk");
    qemu_img_check("vmdk", &vmdk);
    qemu_img_compare(disk, "vmdk", &vmdk);
}

fn check_box(disk: &Path, bx: &Path, provider: &str, want: &[&str], img: &str, fmt: &str) {
    let names = tar_names(&tar(bx.parent().unwrap(), &["-tvzf", bx.to_str().unwrap()]));
    assert_eq!(names, want, "{}", bx.display());
    let x = extract(bx, "-xzf");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["provider"], provider, "{meta}");
    let vf = std::fs::read_to_string(x.join("Vagrantfile")).unwrap();
    assert!(vf.contains("p.memory = 1024"), "{vf}");
    qemu_img_check(fmt, &x.join(img));
    qemu_img_compare(disk, fmt, &x.join(img));
}

fn check_gcp(disk: &Path, tgz: &Path) {
    let names = tar_names(&tar(
        tgz.parent().unwrap(),
        &["-tvzf", tgz.to_str().unwrap()],
    ));
    assert_eq!(names, ["disk.raw"]);
    let x = extract(tgz, "-xzf");
    let raw = x.join("disk.raw");
    let m = std::fs::metadata(&raw).unwrap();
    assert_eq!(m.len(), 1 << 30, "disk.raw padded to a whole GiB");
    use std::os::unix::fs::MetadataExt;
    assert!(
        m.blocks() * 512 < 200 << 20,
        "the extracted disk.raw lost its holes: {} bytes allocated",
        m.blocks() * 512
    );
    // qemu-img compare: same bytes, and the part past the source's end reads as zeros.
    qemu_img_compare(disk, "raw", &raw);
}

#[test]
fn package_providers_layout_sums_and_oracles() {
    need("qemu-img", "qemu-utils");
    let b = BuildDir::new();
    let disk = b.path().join("disk.raw");
    installed_disk(&disk, 8);
    b.write_toml(&[
        (
            "providers",
            Some("[\"openstack\", \"gcp\", \"aws\", \"vmware\", \"virtualbox\", \"vagrant-libvirt\"]"),
        ),
        ("firmware", Some("\"bios\"")),
    ]);
    let o = b.build(&["--installed-disk", "disk.raw"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = b.image_dir();
    let mut want: Vec<String> = PACKAGES
        .iter()
        .flat_map(|a| {
            let dir = a.split('/').next().unwrap();
            [
                format!("d {dir}"),
                format!("f {a}"),
                format!("f {dir}/SHA256SUMS"),
            ]
        })
        .collect();
    want.sort();
    let got: Vec<String> = listing(&img)
        .into_iter()
        .filter(|l| !l.contains(".work"))
        .collect();
    assert_eq!(got, want);
    let mut sums_before = Vec::new();
    for a in PACKAGES {
        let dir = img.join(a.split('/').next().unwrap());
        sha256sum_check(&dir);
        sums_before.push(std::fs::read(dir.join("SHA256SUMS")).unwrap());
    }
    let qcow2 = img.join(PACKAGES[0]);
    let i = qemu_img_json(&["info", "--output=json", "-f", "qcow2"], &qcow2);
    assert_eq!(
        i["format-specific"]["data"]["compat"], "1.1",
        "qcow2 v3: {i}"
    );
    qemu_img_check("qcow2", &qcow2);
    qemu_img_compare(&disk, "qcow2", &qcow2);
    check_gcp(&disk, &img.join(PACKAGES[1]));
    check_ova(&disk, &img.join(PACKAGES[2]));
    check_ova(&disk, &img.join(PACKAGES[3]));
    check_box(
        &disk,
        &img.join(PACKAGES[4]),
        "virtualbox",
        &[
            "metadata.json",
            "Vagrantfile",
            "box.ovf",
            "box-disk001.vmdk",
        ],
        "box-disk001.vmdk",
        "vmdk",
    );
    check_box(
        &disk,
        &img.join(PACKAGES[5]),
        "libvirt",
        &["metadata.json", "Vagrantfile", "box.img"],
        "box.img",
        "qcow2",
    );
    // Same inputs and SOURCE_DATE_EPOCH: the same package bytes.
    let o = b.build(&["--installed-disk", "disk.raw", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (a, before) in PACKAGES.iter().zip(&sums_before) {
        let dir = img.join(a.split('/').next().unwrap());
        assert_eq!(
            &std::fs::read(dir.join("SHA256SUMS")).unwrap(),
            before,
            "{a}"
        );
    }
}
