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
