//! Helpers of the `isotool build` tests: a build directory in a temp dir (small Ubuntu-shaped
//! ISO, the shipped config tree, a preseed with an expert recipe), a build file written from a
//! base with keys replaced, the binary run in that directory.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_isotool");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A preseed whose expert recipe needs 1 + 100 + 200 + 500 MiB + 50% of the RAM for swap.
pub const PRESEED: &str = "d-i debian-installer/locale string en_US.UTF-8\n\
d-i partman-auto/method string regular\n\
d-i partman-auto/expert_recipe string \\\n  test :: \\\n    1 1 1 free method{ biosgrub } . \\\n    100 100 100 fat32 method{ efi } format{ } . \\\n    200 200 200 ext4 mountpoint{ /boot } . \\\n    50% 512 100% linux-swap method{ swap } format{ } . \\\n    500 1000 -1 ext4 mountpoint{ / } .\n\
d-i debian-installer/exit/poweroff boolean true\n";

pub fn need(tool: &str, package: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{tool} is missing: apt-get install {package} (or run .ci/install-deps)"
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// A build directory: `in.iso`, `config/`, `test.seed`, `build.toml`.
pub struct BuildDir {
    pub tmp: tempfile::TempDir,
    pub sha256: String,
}

impl BuildDir {
    pub fn new() -> Self {
        need("xorriso", "xorriso");
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let st = Command::new("sh")
            .arg(Path::new(ROOT).join("fixtures/iso/make-ubuntu-mini.sh"))
            .arg(d.join("in.iso"))
            .stdout(Stdio::null())
            .status()
            .expect("running make-ubuntu-mini.sh");
        assert!(st.success(), "make-ubuntu-mini.sh failed");
        copy_tree(&Path::new(ROOT).join("fixtures/config"), &d.join("config"));
        std::fs::write(d.join("test.seed"), PRESEED).unwrap();
        let sha256 = isotool::checksum::sha256_hex(&std::fs::read(d.join("in.iso")).unwrap());
        let b = BuildDir { tmp, sha256 };
        b.write_toml(&[]);
        b
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// The base build file with `(key, value)` replaced (value `None`: key removed); keys not in
    /// the base are appended.
    pub fn toml(&self, changes: &[(&str, Option<&str>)]) -> String {
        let base = [
            ("name", "\"demo\"".to_string()),
            ("version", "\"1.0.0\"".to_string()),
            ("iso_url", "\"in.iso\"".to_string()),
            ("iso_checksum", format!("\"sha256:{}\"", self.sha256)),
            ("preseed", "\"test.seed\"".to_string()),
            ("boot_args", "[\"console=ttyS0\"]".to_string()),
            ("cd_files", "[\"config\"]".to_string()),
            ("disk_size", "\"2G\"".to_string()),
            ("memory", "1024".to_string()),
            ("output_directory", "\"out\"".to_string()),
            ("providers", "[\"hyperv\", \"azure\", \"raw\"]".to_string()),
        ];
        let mut s = String::new();
        for (k, v) in &base {
            match changes.iter().find(|(c, _)| c == k) {
                Some((_, Some(nv))) => s.push_str(&format!("{k} = {nv}\n")),
                Some((_, None)) => {}
                None => s.push_str(&format!("{k} = {v}\n")),
            }
        }
        for (k, v) in changes {
            if !base.iter().any(|(b, _)| b == k)
                && let Some(v) = v
            {
                s.push_str(&format!("{k} = {v}\n"));
            }
        }
        s
    }

    pub fn write_toml(&self, changes: &[(&str, Option<&str>)]) {
        std::fs::write(self.path().join("build.toml"), self.toml(changes)).unwrap();
    }

    /// Runs `isotool build build.toml ARGS` in the build directory.
    pub fn build(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running isotool")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.path())
            .arg("build")
            .arg("build.toml")
            .args(args)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .stdin(Stdio::null());
        c
    }

    pub fn out(&self) -> PathBuf {
        self.path().join("out")
    }

    pub fn image_dir(&self) -> PathBuf {
        self.out().join("1.0.0/demo")
    }
}

/// Every file and directory under `dir`, relative, sorted ("d " / "f " prefixed).
pub fn listing(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeSet<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                out.insert(format!("d {rel}"));
                walk(root, &e.path(), out);
            } else {
                out.insert(format!("f {rel}"));
            }
        }
    }
    let mut s = BTreeSet::new();
    walk(dir, dir, &mut s);
    s
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Asserts a failed run with `code` in its error.
pub fn expect_error(o: &Output, code: &str, parts: &[&str]) -> String {
    let e = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit 1, got {:?}: {e}",
        o.status
    );
    assert!(
        e.contains(&format!("[{code}]")),
        "expected [{code}] in: {e}"
    );
    for p in parts {
        assert!(e.contains(p), "expected {p:?} in: {e}");
    }
    e
}

/// A 64 MiB raw disk with a GPT (EFI system + Linux root, made by sgdisk) and data in the root:
/// what an installer leaves.
pub fn installed_disk(path: &Path, data_mib: u64) {
    need("sgdisk", "gdisk");
    let f = std::fs::File::create(path).unwrap();
    f.set_len((64 + data_mib) << 20).unwrap();
    let st = Command::new("sgdisk")
        .args([
            "-n",
            "1:2048:+16M",
            "-t",
            "1:ef00",
            "-c",
            "1:EFI",
            "-n",
            "2:0:0",
            "-t",
            "2:8300",
            "-c",
            "2:root",
        ])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "sgdisk failed");
    use std::os::unix::fs::FileExt;
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..data_mib.max(1) {
        for c in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all_at(&block, (32 << 20) + i * (1 << 20)).unwrap();
    }
}

/// `sha256sum -c SHA256SUMS` in `dir` passes, for the one artifact it lists; returns its output.
pub fn sha256sum_check(dir: &Path) -> String {
    let o = Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(dir)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "sha256sum -c in {}: {out}{}",
        dir.display(),
        stderr(&o)
    );
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 1, "{sums}");
    assert!(out.contains(": OK"), "{out}");
    out
}
