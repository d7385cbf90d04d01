//! Fuzz targets for every parser, on stable Rust: a deterministic mutator (xorshift PRNG: byte
//! flips, random bytes, boundary values, truncation, block copies) over seeds taken from real
//! third-party images (`../shared/testdata/realdata`) and from images the tests make, with a
//! bounded number of executions per target. A parser may return any error; a panic is a
//! failure: the input is written to `tests/fuzz-corpus/TARGET-HASH.bin` (commit it with the
//! fix) and the test fails. The corpus is replayed first on every run.
//!
//! `ISOTOOL_FUZZ_EXECS` scales the executions (default 1: CI's bounded run; 20 for a longer
//! session); `ISOTOOL_FUZZ_SEED` changes the PRNG seed.

use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A deterministic xorshift64* generator.
struct Rng(u64);

impl Rng {
    fn new(target: &str) -> Rng {
        let base = std::env::var("ISOTOOL_FUZZ_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0x9E37_79B9_7F4A_7C15u64);
        // a different stream per target, the same on every run
        let h = target.bytes().fold(base, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
        });
        Rng(h | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Mutates `data` within `[0, window)` (the metadata of an image; the rest is left alone).
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, window: usize) {
    let window = window.min(data.len());
    if window == 0 {
        return;
    }
    let n = 1 + rng.below(8);
    for _ in 0..n {
        let at = rng.below(window);
        match rng.below(7) {
            0 => data[at] ^= 1 << rng.below(8),
            1 => data[at] = rng.next() as u8,
            2 => data[at] = [0x00, 0xff, 0x7f, 0x80, 0x01][rng.below(5)],
            3 => {
                // a boundary 32-bit value, either byte order
                let v: u32 = [0, u32::MAX, 0x8000_0000, 0x7fff_ffff, 1, 2048][rng.below(6)];
                let b = if rng.below(2) == 0 {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                let end = (at + 4).min(data.len());
                data[at..end].copy_from_slice(&b[..end - at]);
            }
            4 => {
                // copy a run from elsewhere
                let from = rng.below(window);
                let len = rng.below(64).min(data.len() - at).min(data.len() - from);
                let run = data[from..from + len].to_vec();
                data[at..at + len].copy_from_slice(&run);
            }
            5 if rng.below(8) == 0 => data.truncate(at.max(1)),
            _ => {
                let v = rng.next().to_le_bytes();
                let end = (at + 8).min(data.len());
                data[at..end].copy_from_slice(&v[..end - at]);
            }
        }
        if data.len() < window {
            return;
        }
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus")
}

fn realdata(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/realdata")
        .join(name);
    assert!(
        p.is_file(),
        "{} is missing: the fuzz seeds come from ../shared/testdata/realdata",
        p.display()
    );
    p
}

/// `name.xz` from realdata, decompressed with `xz` (package xz-utils).
fn realdata_xz(name: &str) -> Vec<u8> {
    let p = realdata(&format!("{name}.xz"));
    let xz = crate::oracle::need("xz", "xz-utils");
    let o = std::process::Command::new(xz)
        .arg("-dc")
        .arg(&p)
        .output()
        .unwrap();
    assert!(o.status.success(), "xz -dc {} failed", p.display());
    o.stdout
}

fn execs(base: usize) -> usize {
    let scale: usize = std::env::var("ISOTOOL_FUZZ_EXECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    base * scale.max(1)
}

/// Runs `target` on the corpus of `name`, then on `n` mutants of each seed (mutations within
/// `window` bytes). Prints target, execs, time, crashes; fails on a crash after saving it.
fn fuzz(name: &str, seeds: &[Vec<u8>], window: usize, n: usize, target: &dyn Fn(&[u8])) {
    fuzz_with(name, seeds, n, &|rng, m| mutate(rng, m, window), target);
}

/// Text mutations for parsers of text (YAML, JSON, TOML, PEM, descriptors): the byte mutations
/// of [`mutate`], plus insertions of the format's tokens from `dict`, deletions and duplicated
/// runs (which make deep nesting, long lines and repeated keys). Inputs stay under 64 KiB.
fn mutate_text(rng: &mut Rng, data: &mut Vec<u8>, dict: &[&str]) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(5) {
            0 | 1 if !dict.is_empty() => {
                let tok = dict[rng.below(dict.len())].as_bytes();
                let times = if rng.below(8) == 0 {
                    1 + rng.below(300)
                } else {
                    1
                };
                for _ in 0..times {
                    data.splice(at..at, tok.iter().copied());
                }
            }
            2 => {
                let len = rng.below(64).min(data.len() - at);
                data.drain(at..at + len);
            }
            3 => {
                let len = rng.below(64).min(data.len() - at);
                let run = data[at..at + len].to_vec();
                data.splice(at..at, run);
            }
            _ => {
                let w = data.len();
                mutate(rng, data, w);
            }
        }
        data.truncate(64 << 10);
    }
}

/// An execution running longer than this is a hang (the slowest, whole-image executions take
/// about a second on a loaded CI machine).
const HANG_SECS: u64 = 60;

/// Watches one target's executions from another thread: an input that runs over [`HANG_SECS`]
/// is saved to the corpus like a crash and the process aborts (a hang cannot be unwound, and
/// CI must fail rather than wait for its own time-out).
struct Watchdog {
    current: std::sync::Arc<std::sync::Mutex<(Vec<u8>, Instant)>>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Watchdog {
    fn start(name: &str) -> Watchdog {
        let w = Watchdog {
            current: std::sync::Arc::new(std::sync::Mutex::new((Vec::new(), Instant::now()))),
            done: Default::default(),
        };
        let (current, done, name) = (w.current.clone(), w.done.clone(), name.to_string());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(500));
                let c = current.lock().unwrap();
                if !c.0.is_empty() && c.1.elapsed().as_secs() >= HANG_SECS {
                    let h = isotool::checksum::sha256_hex(&c.0);
                    let p = corpus_dir().join(format!("{name}-{}.bin", &h[..16]));
                    let _ = std::fs::write(&p, &c.0);
                    let _ = std::io::stderr().write_all(
                        format!(
                            "fuzz target {name}: an input ran over {HANG_SECS} s (a hang); \
                             saved as {}\n",
                            p.display()
                        )
                        .as_bytes(),
                    );
                    std::process::abort();
                }
            }
        });
        w
    }

    fn running(&self, input: &[u8]) {
        let mut c = self.current.lock().unwrap();
        c.0.clear();
        c.0.extend_from_slice(input);
        c.1 = Instant::now();
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// [`fuzz`] with the mutator given (`mutator(rng, input)` changes one copy of a seed).
fn fuzz_with(
    name: &str,
    seeds: &[Vec<u8>],
    n: usize,
    mutator: &dyn Fn(&mut Rng, &mut Vec<u8>),
    target: &dyn Fn(&[u8]),
) {
    let started = Instant::now();
    let mut runs = 0usize;
    let mut crashes = Vec::new();
    let dog = Watchdog::start(name);
    let mut run_one = |input: &[u8], crashes: &mut Vec<PathBuf>, save: bool| {
        runs += 1;
        dog.running(input);
        if catch_unwind(AssertUnwindSafe(|| target(input))).is_err() {
            let h = isotool::checksum::sha256_hex(input);
            let p = corpus_dir().join(format!("{name}-{}.bin", &h[..16]));
            if save {
                let _ = std::fs::create_dir_all(corpus_dir());
                std::fs::write(&p, input).unwrap();
            }
            crashes.push(p);
        }
    };
    // 1. every input that ever failed
    if let Ok(rd) = std::fs::read_dir(corpus_dir()) {
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{name}-")) && n.ends_with(".bin"))
            })
            .collect();
        files.sort();
        for f in files {
            let input = std::fs::read(&f).unwrap();
            run_one(&input, &mut crashes, false);
        }
    }
    // 2. the seeds as they are, then mutants
    let mut rng = Rng::new(name);
    for seed in seeds {
        run_one(seed, &mut crashes, true);
        for _ in 0..n {
            let mut m = seed.clone();
            mutator(&mut rng, &mut m);
            run_one(&m, &mut crashes, true);
        }
    }
    // straight to stderr, past the test harness's capture: CI logs show every target's numbers
    // (one write, so lines of targets running in parallel never mix; .ci/run tabulates them)
    let line = format!(
        "fuzz target {name}: {} seeds, {runs} execs, {:.1} s, {} crashes\n",
        seeds.len(),
        started.elapsed().as_secs_f64(),
        crashes.len()
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    assert!(
        crashes.is_empty(),
        "fuzz target {name}: {} input(s) made a parser panic; saved as {:?}",
        crashes.len(),
        crashes
    );
}

/// Writes `bytes` to a scratch file (file-based readers) and returns its path.
fn scratch(dir: &Path, bytes: &[u8]) -> PathBuf {
    let p = dir.join("input.bin");
    std::fs::write(&p, bytes).unwrap();
    p
}

fn iso_seeds() -> Vec<Vec<u8>> {
    [
        "dfvfs-iso9660.iso",
        "libarchive-test_read_format_iso.iso",
        "libarchive-test_read_format_iso_joliet_rockridge.iso",
    ]
    .iter()
    .map(|n| std::fs::read(realdata(n)).unwrap())
    .collect()
}

#[test]
fn iso_volume_and_directories() {
    let d = tempfile::tempdir().unwrap();
    // descriptors, path tables and directories of these images lie in their first 64 KiB
    fuzz("iso-volume", &iso_seeds(), 64 << 10, execs(60), &|b| {
        // in memory: the ISO readers work over a ReadAt source, no temp file
        let iso = isotool::iso::read::IsoFile::from_bytes(d.path(), b.to_vec());
        let _ = isotool::iso::info::inspect_iso(&iso);
        let _ = isotool::iso::info::list_iso(&iso, "/", true);
    });
}

#[test]
fn iso_el_torito_and_system_area() {
    let d = tempfile::tempdir().unwrap();
    let mini = crate::iso_fixture::ubuntu_mini(d.path());
    // system area (MBR, GPT, APM), descriptors and the boot catalog of the mini ISO
    let seeds = vec![std::fs::read(&mini).unwrap()];
    fuzz("iso-boot", &seeds, 40 << 11, execs(120), &|b| {
        let iso = isotool::iso::read::IsoFile::from_bytes(d.path(), b.to_vec());
        let _ = isotool::iso::info::inspect_iso(&iso);
        let mut sys = b[..b.len().min(32768)].to_vec();
        sys.resize(32768, 0);
        let _ = isotool::iso::boot::repoint_system_area(&mut sys, b.len() as u64, 1 << 30);
    });
}

#[test]
fn vhd_structures_and_images() {
    let d = tempfile::tempdir().unwrap();
    let seeds: Vec<Vec<u8>> = [
        "dfvfs-ext2.vhd",
        "dissect-dynamic.vhd",
        "dfvfs-image-differential.vhd",
    ]
    .iter()
    .map(|n| realdata_xz(n))
    .collect();
    // pure parsers: the footer (last 512 bytes) and the dynamic header (at 512)
    let tails: Vec<Vec<u8>> = seeds
        .iter()
        .map(|s| s[s.len().saturating_sub(512)..].to_vec())
        .collect();
    fuzz("vhd-footer", &tails, 512, execs(400), &|b| {
        if let Ok(f) = isotool::vhd::Footer::parse(b) {
            let _ = isotool::vhd::Footer::parse(&f.encode());
        }
    });
    let heads: Vec<Vec<u8>> = seeds
        .iter()
        .filter(|s| s.len() >= 1536)
        .map(|s| s[512..1536].to_vec())
        .collect();
    fuzz("vhd-header", &heads, 1024, execs(400), &|b| {
        let _ = isotool::vhd::DynHeader::parse(b);
    });
    // whole images: footer copy, header, BAT, locators at the start; the footer at the end
    fuzz("vhd-image", &seeds, 8192, execs(60), &|b| {
        let p = scratch(d.path(), b);
        if let Ok(img) = isotool::image::open_image(&p, &Default::default()) {
            let _ = img.extents(0, img.len());
            let mut buf = vec![0u8; 4096.min(img.len() as usize)];
            let _ = img.read_at(&mut buf, 0);
        }
    });
}

#[test]
fn vhdx_structures_and_images() {
    use isotool::vhdx::format::{
        FileIdentifier, Header, MetadataTable, ParentLocator, RegionTable,
    };
    let d = tempfile::tempdir().unwrap();
    let seeds: Vec<Vec<u8>> = ["dissect-dynamic.vhdx", "dissect-fixed.vhdx"]
        .iter()
        .map(|n| realdata_xz(n))
        .collect();
    let at = |s: &Vec<u8>, off: usize, len: usize| s[off..(off + len).min(s.len())].to_vec();
    let hdrs: Vec<Vec<u8>> = seeds.iter().map(|s| at(s, 64 << 10, 4096)).collect();
    fuzz("vhdx-header", &hdrs, 4096, execs(300), &|b| {
        let _ = FileIdentifier::parse(b);
        let _ = Header::parse(b, 64 << 10);
    });
    let rts: Vec<Vec<u8>> = seeds.iter().map(|s| at(s, 192 << 10, 64 << 10)).collect();
    fuzz("vhdx-region-table", &rts, 4096, execs(300), &|b| {
        let _ = RegionTable::parse(b, 192 << 10, false);
        let _ = RegionTable::parse(b, 192 << 10, true);
    });
    let metas: Vec<Vec<u8>> = seeds
        .iter()
        .filter_map(|s| {
            // the metadata region: where the region table says (its second entry, usually)
            let rt = RegionTable::parse(&s[192 << 10..256 << 10], 192 << 10, true).ok()?;
            let e = rt.entries.iter().max_by_key(|e| e.offset)?;
            Some(at(s, e.offset as usize, 64 << 10))
        })
        .collect();
    fuzz("vhdx-metadata", &metas, 4096, execs(300), &|b| {
        let _ = MetadataTable::parse(b, 1 << 20);
        let _ = ParentLocator::parse(b, 1 << 20);
    });
    // whole images (headers, region tables, metadata, BAT, log: the first 2 MiB)
    fuzz("vhdx-image", &seeds, 2 << 20, execs(40), &|b| {
        let p = scratch(d.path(), b);
        let opts = isotool::disk::OpenOptions { replay_log: true };
        if let Ok(img) = isotool::image::open_image(&p, &opts) {
            let _ = img.extents(0, img.len());
            let mut buf = vec![0u8; 4096.min(img.len() as usize)];
            let _ = img.read_at(&mut buf, 0);
        }
    });
}

#[test]
fn gpt_and_mbr() {
    let mbr = std::fs::read(realdata("dfvfs-mbr.raw")).unwrap();
    // a GPT disk made by sgdisk (the oracle), two partitions
    let d = tempfile::tempdir().unwrap();
    let g = d.path().join("gpt.raw");
    std::fs::write(&g, vec![0u8; 4 << 20]).unwrap();
    crate::oracle::run(
        std::process::Command::new(crate::oracle::need("sgdisk", "gdisk"))
            .args(["-n", "1:2048:4095", "-n", "2:4096:0", "-t", "1:ef00"])
            .arg(&g),
    );
    let gpt = std::fs::read(&g).unwrap();
    let seeds = vec![mbr[..64 << 10].to_vec(), gpt];
    fuzz("gpt-mbr", &seeds, 34 * 512, execs(400), &|b| {
        let mut m = isotool::disk::mem::MemImage::new(b.len(), 4096);
        m.write(0, b);
        let _ = isotool::gpt::inspect(&m);
    });
}

#[test]
fn boot_configs() {
    use isotool::remaster::bootcfg::{self, Flavor, Unattended};
    let seeds: Vec<Vec<u8>> = [
        "default install\nlabel install\n  menu label ^Install Ubuntu Server\n  kernel /install/vmlinuz\n  append  file=/cdrom/preseed/ubuntu-server.seed vga=788 initrd=/install/initrd.gz quiet ---\n",
        "include menu.cfg\ndefault vesamenu.c32\nprompt 0\ntimeout 300\nui gfxboot bootlogo\n",
        "set timeout=5\nmenuentry \"Install Ubuntu Server\" {\n\tset gfxpayload=keep\n\tlinux\t/install/vmlinuz  file=/cdrom/preseed/ubuntu-server.seed quiet ---\n\tinitrd\t/install/initrd.gz\n}\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let u = Unattended {
        flavor: Flavor::Preseed,
        seed_path: "/preseed/a.seed".into(),
        extra_args: vec!["console=ttyS0".into()],
        timeout: 1,
    };
    fuzz("boot-configs", &seeds, 4096, execs(800), &|b| {
        let s = String::from_utf8_lossy(b);
        let _ = bootcfg::edit_isolinux_timeout(&s, 1);
        let _ = bootcfg::has_syslinux_entry(&s);
        let _ = bootcfg::edit_syslinux_labels(&s, &u);
        let _ = bootcfg::has_grub_entry(&s);
        let _ = bootcfg::edit_grub(&s, &u);
        let _ = bootcfg::check_kernel_arg(&s);
    });
}

/// Opens `p` as a disk image the way `info` and `convert` do and reads it: every extent, and
/// 4 KiB at the start, the middle and the end.
fn open_and_read(p: &Path) {
    if let Ok(img) = isotool::image::open_image(p, &Default::default()) {
        let len = img.len();
        let _ = img.extents(0, len);
        let mut buf = vec![0u8; 4096.min(len as usize)];
        for at in [0, len / 2, len.saturating_sub(4096)] {
            let _ = img.read_at(&mut buf, at);
        }
    }
}

/// A raw disk of `mib` MiB with a few runs of data (compressible and not), for qemu-img.
fn raw_with_data(dir: &Path, mib: u64) -> PathBuf {
    let p = dir.join("data.raw");
    let mut v = vec![0u8; (mib << 20) as usize];
    let mut rng = Rng::new("raw-data");
    for (i, at) in [0usize, 70 << 10, 1 << 20, (mib as usize - 1) << 20]
        .into_iter()
        .enumerate()
    {
        for b in &mut v[at..at + (64 << 10)] {
            *b = if i % 2 == 0 { rng.next() as u8 } else { b'a' };
        }
    }
    std::fs::write(&p, v).unwrap();
    p
}

/// `qemu-img convert -O FMT [opts] raw out` (package qemu-utils): a seed made by the peer.
fn qemu_img_made(raw: &Path, out: &Path, fmt: &str, opts: &[&str]) -> Vec<u8> {
    let mut args = vec!["convert", "-O", fmt];
    args.extend_from_slice(opts);
    args.extend([raw.to_str().unwrap(), out.to_str().unwrap()]);
    crate::oracle::qemu_img(&args);
    std::fs::read(out).unwrap()
}

#[test]
fn qcow2_headers_and_images() {
    let d = tempfile::tempdir().unwrap();
    let raw = raw_with_data(d.path(), 4);
    let seeds = vec![
        std::fs::read(realdata("dfvfs-ext2.qcow2")).unwrap(),
        qemu_img_made(&raw, &d.path().join("a.qcow2"), "qcow2", &[]),
        // compressed clusters, 4 KiB clusters (many L2 tables), compat 0.10 (version 2)
        qemu_img_made(
            &raw,
            &d.path().join("b.qcow2"),
            "qcow2",
            &["-c", "-o", "cluster_size=4096"],
        ),
        qemu_img_made(
            &raw,
            &d.path().join("c.qcow2"),
            "qcow2",
            &["-o", "compat=0.10"],
        ),
    ];
    let heads: Vec<Vec<u8>> = seeds.iter().map(|s| s[..4096].to_vec()).collect();
    fuzz("qcow2-header", &heads, 512, execs(2000), &|b| {
        if let Ok(h) = isotool::qcow2::layout::Header::parse(b) {
            let _ = isotool::qcow2::layout::Header::parse(&h.encode());
        }
    });
    // header, L1, refcount table and the first L2 tables lie in the first 256 KiB
    let s = scratch_dir(&d);
    fuzz("qcow2-image", &seeds, 256 << 10, execs(150), &|b| {
        open_and_read(&scratch(&s, b));
    });
}

/// A scratch directory of its own inside `d` (targets whose images name other files).
fn scratch_dir(d: &tempfile::TempDir) -> PathBuf {
    let p = d.path().join("scratch");
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn vmdk_headers_descriptors_and_images() {
    use isotool::vmdk::layout::{Descriptor, Header};
    let d = tempfile::tempdir().unwrap();
    let raw = raw_with_data(d.path(), 4);
    let seeds = vec![
        // monolithicSparse by qemu-img (dfvfs) and VMware's version 3 (qemu's iotest sample)
        std::fs::read(realdata("dfvfs-ext2.vmdk")).unwrap(),
        std::fs::read(realdata("qemu-iotest-version3.vmdk")).unwrap(),
        qemu_img_made(&raw, &d.path().join("s.vmdk"), "vmdk", &[]),
        qemu_img_made(
            &raw,
            &d.path().join("so.vmdk"),
            "vmdk",
            &["-o", "subformat=streamOptimized"],
        ),
    ];
    let heads: Vec<Vec<u8>> = seeds.iter().map(|s| s[..512].to_vec()).collect();
    fuzz("vmdk-header", &heads, 512, execs(2000), &|b| {
        if let Ok(h) = Header::parse(b) {
            let _ = Header::parse(&h.encode());
        }
    });
    // the embedded descriptors (text after the header), and a monolithicFlat one
    let mut texts: Vec<Vec<u8>> = seeds
        .iter()
        .filter_map(|s| {
            let h = Header::parse(&s[..512]).ok()?;
            let (at, len) = (
                h.descriptor_offset as usize * 512,
                h.descriptor_size as usize * 512,
            );
            let t = s.get(at..at + len)?;
            let end = t.iter().position(|&c| c == 0).unwrap_or(t.len());
            Some(t[..end].to_vec())
        })
        .collect();
    texts.push(
        b"# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n# Extent description\nRW 8192 FLAT \"disk-flat.vmdk\" 0\n\nddb.virtualHWVersion = \"4\"\nddb.geometry.cylinders = \"8\"\n"
            .to_vec(),
    );
    assert!(texts.len() >= 4, "descriptors found: {}", texts.len());
    let dict = [
        "\n",
        "=",
        "\"",
        "RW ",
        "SPARSE ",
        "FLAT ",
        "createType",
        "parentCID",
        "#",
        " 0",
    ];
    fuzz_with(
        "vmdk-descriptor",
        &texts,
        execs(2000),
        &|rng, m| mutate_text(rng, m, &dict),
        &|b| {
            let _ = Descriptor::parse(&String::from_utf8_lossy(b));
        },
    );
    // whole images: header, descriptor, grain directory and tables (and, streamOptimized, the
    // footer and markers at the end: a mutant that truncates reaches them)
    let s = scratch_dir(&d);
    fuzz("vmdk-image", &seeds, 128 << 10, execs(150), &|b| {
        open_and_read(&scratch(&s, b));
    });
}

#[test]
fn cloud_init_yaml() {
    use isotool::cloudinit::{check_user_data, check_yaml_mapping};
    let seeds: Vec<Vec<u8>> = [
        "#cloud-config\nhostname: seed-test\nusers:\n  - name: ops\n    groups: [sudo, adm]\n    ssh_authorized_keys:\n      - ssh-ed25519 AAAA ops@example\nruncmd:\n  - [echo, hi]\n  - - sh\n    - -c\n    - 'echo \"quoted: [x]\"'\nwrite_files:\n  - path: /etc/x\n    content: |\n      line one\n      line two\n    permissions: '0644'\n",
        "instance-id: iid-0123\nlocal-hostname: node1\n",
        "version: 2\nethernets:\n  eth0:\n    match: {macaddress: '00:11:22:33:44:55'}\n    dhcp4: true\n    addresses: [192.0.2.2/24]\n",
        "#cloud-config\nbase: &b {a: 1, b: [1, 2]}\nother:\n  <<: *b\n  c: !!str 3\n",
        "{\"instance-id\": \"iid-1\", \"network\": {\"version\": 1, \"config\": []}}\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let dict = [
        "\n",
        "\n  ",
        "- ",
        ": ",
        "[",
        "]",
        "{",
        "}",
        ", ",
        "\"",
        "'",
        "&a ",
        "*a",
        "!!str ",
        "!!binary ",
        "<<: ",
        "? ",
        "|\n",
        ">-\n",
        "#",
        "---\n",
        "...\n",
        "%YAML 1.1\n",
    ];
    let p = Path::new("user-data");
    fuzz_with(
        "yaml-cloud-init",
        &seeds,
        execs(2000),
        &|rng, m| mutate_text(rng, m, &dict),
        &|b| {
            let _ = check_user_data(b, p);
            let _ = check_yaml_mapping(b, p, "meta-data");
        },
    );
}

#[test]
fn json_documents() {
    // the config tree's files and Azure's recorded answers (ARM and the token endpoint)
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for rel in [
        "fixtures/config/run_provisioning.json",
        "fixtures/config/allow_ssh.json",
        "fixtures/config/consul/consul_region.json",
        "fixtures/config/consul/consul_connect.json",
    ] {
        seeds.push(std::fs::read(root.join(rel)).unwrap());
    }
    for g in ["image_create", "vm_create"] {
        let t = std::fs::read(root.join(format!("tests/azure_golden/{g}.json"))).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&t).unwrap();
        for x in v["exchanges"].as_array().unwrap() {
            for body in [&x["response"], &x["body"]] {
                if !body.is_null() {
                    seeds.push(serde_json::to_vec_pretty(body).unwrap());
                }
            }
        }
    }
    assert!(seeds.len() >= 8, "JSON seeds: {}", seeds.len());
    let dict = [
        "[", "]", "{", "}", ",", ":", "\"", "\\u0000", "\\ud800", "1e999", "-0", "null", "true",
        " ", "\"k\":", "[[[[", "{\"a\":",
    ];
    fuzz_with(
        "json",
        &seeds,
        execs(600),
        &|rng, m| mutate_text(rng, m, &dict),
        &|b| {
            if let Ok(v) = isotool::limits::parse_json(b, "fuzz.json") {
                // what the readers then ask of it
                let _ = v.pointer("/error/code");
                let _ = v["status"].as_str();
                let _ = v.to_string();
            }
        },
    );
}

/// PEM texts, their DER, and a PKCS#12 file made for the fuzz seeds.
struct CertSeeds {
    pem: Vec<Vec<u8>>,
    der: Vec<Vec<u8>>,
    pfx: Vec<u8>,
}

fn cert_seeds() -> CertSeeds {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePrivateKey;
    let ec = crate::prov_fixture::ec_certs();
    let r = crate::prov_fixture::rsa_pfx(1, 16, 16);
    let (rsa_key, pfx) = (r.key, r.pfx);
    let pkcs8 = rsa_key.to_pkcs8_der().unwrap();
    let pkcs1 = rsa_key.to_pkcs1_der().unwrap();
    let ec_der = x509_cert::der::pem::decode_vec(ec.cert_pem.as_bytes())
        .unwrap()
        .1;
    let sec1 = crate::prov_fixture::to_sec1(&ec.key_pem);
    CertSeeds {
        pem: vec![
            ec.cert_pem.into_bytes(),
            ec.key_pem.into_bytes(),
            sec1.into_bytes(),
            (ec.bundle_pem.clone() + &r.cert_pem).into_bytes(),
            rsa_key
                .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
                .unwrap()
                .as_bytes()
                .to_vec(),
        ],
        der: vec![
            ec_der,
            r.cert_der.clone(),
            pkcs8.as_bytes().to_vec(),
            pkcs1.as_bytes().to_vec(),
        ],
        pfx,
    }
}

/// A DER element at the start of `b`: (header length, whole length).
fn der_element(b: &[u8]) -> (usize, usize) {
    let (hl, len) = match b[1] {
        l if l < 0x80 => (2, l as usize),
        l => {
            let n = (l & 0x7f) as usize;
            (
                2 + n,
                b[2..2 + n].iter().fold(0, |a, &x| a << 8 | x as usize),
            )
        }
    };
    (hl, hl + len)
}

/// The PFX without its MacData (optional in PKCS#12): mutants of the authenticated safe then
/// reach the bag parsers and the decryption instead of failing the MAC check.
fn without_mac(pfx: &[u8]) -> Vec<u8> {
    let (hl, end) = der_element(pfx);
    let body = &pfx[hl..end];
    let (_, v) = der_element(body);
    let (_, a) = der_element(&body[v..]);
    let kept = &body[..v + a];
    let mut out = vec![0x30, 0x82, (kept.len() >> 8) as u8, kept.len() as u8];
    out.extend_from_slice(kept);
    out
}

/// Every PEM entry point of the config tree's checks, on `text`.
fn pem_entry_points(text: &[u8]) {
    use isotool::provisioning::pem;
    let c = pem::parse_certificate(text);
    let k = pem::parse_private_key(text);
    let _ = pem::parse_bundle(text);
    if let (Ok(c), Ok(k)) = (c, k) {
        let _ = pem::key_matches(&c, &k);
    }
}

#[test]
fn pem_x509_and_pkcs12() {
    use isotool::azure::auth::CertCredential;
    use isotool::azure::secret::Secret;
    let s = cert_seeds();
    // PEM text: labels, lines, base64
    let dict = [
        "-----BEGIN ",
        "-----END ",
        "CERTIFICATE-----\n",
        "PRIVATE KEY-----\n",
        "\n",
        "=",
        "A",
        "/",
    ];
    fuzz_with(
        "pem-text",
        &s.pem,
        execs(1500),
        &|rng, m| mutate_text(rng, m, &dict),
        &pem_entry_points,
    );
    // DER under valid PEM armour: certificates and keys reach the X.509, PKCS#8, PKCS#1 and
    // SEC1 decoders
    fuzz("x509-der", &s.der, 4096, execs(1000), &|b| {
        for label in [
            "CERTIFICATE",
            "PRIVATE KEY",
            "RSA PRIVATE KEY",
            "EC PRIVATE KEY",
        ] {
            let le = x509_cert::der::pem::LineEnding::LF;
            if let Ok(t) = x509_cert::der::pem::encode_string(label, le, b) {
                pem_entry_points(t.as_bytes());
            }
        }
        let _ = CertCredential::from_parts(b, &[b.to_vec()]);
    });
    // PKCS#12 (the MAC and key derivation run on every mutant that still parses; the seed
    // asks for 16 rounds, so executions stay cheap)
    let pw = Secret::new("pw");
    // and one whose key bag is inside the encrypted safe (the reader's second round)
    let hidden = crate::hostile_parse::hidden_bags_pfx(1, 16, 16).0;
    let seeds = [without_mac(&s.pfx), s.pfx, hidden];
    for seed in &seeds {
        CertCredential::from_pkcs12(seed, Some(&pw)).expect("the PKCS#12 seeds load");
    }
    fuzz("pkcs12", &seeds, 8192, execs(1500), &|b| {
        let _ = CertCredential::from_pkcs12(b, Some(&pw));
        let _ = isotool::limits::check_pkcs12(b, "fuzz.pfx");
    });
}

#[test]
fn build_file_toml() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read(root.join("fixtures/build/build.toml")).unwrap();
    let small = b"name = \"x\"\nversion = \"1\"\niso_url = \"a.iso\"\niso_checksum = \"none\"\npreseed = \"p.seed\"\nboot_args = [\"a\", 'b']\ndisk_size = 40960\nproviders = [\"raw\"]\n[hyperv]\nx = { a = 1, b = [1.5, 2e3] }\n".to_vec();
    let dict = [
        "\n",
        " = ",
        "\"",
        "'",
        "\"\"\"",
        "[",
        "]",
        "[[",
        "]]",
        "{",
        "}",
        ", ",
        ".",
        "#",
        "1979-05-27T07:32:00Z",
        "0x7f",
        "inf",
        "nan",
        "a.b.c = 1\n",
    ];
    let f = Path::new("build.toml");
    fuzz_with(
        "toml-build-file",
        &[example, small],
        execs(3000),
        &|rng, m| mutate_text(rng, m, &dict),
        &|b| {
            let _ = isotool::build::file::parse(f, &String::from_utf8_lossy(b));
        },
    );
}

/// Regression (found by `x509-der`): a certificate cut short inside its PEM armour (the DER
/// claims 2,007 bytes, the block holds 1,003) made `Certificate::from_pem` and
/// `load_pem_chain` loop forever; it is now a named error. Runs in a thread so the old
/// behaviour fails the test instead of hanging it.
#[test]
fn truncated_certificate_in_pem_is_an_error_not_a_hang() {
    let der = std::fs::read(corpus_dir().join("x509-der-70edf3ac90f89c58.bin")).unwrap();
    let le = x509_cert::der::pem::LineEnding::LF;
    let pem = x509_cert::der::pem::encode_string("CERTIFICATE", le, &der).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use isotool::provisioning::pem;
        let one = pem::parse_certificate(pem.as_bytes()).map(|_| ());
        let bundle = pem::parse_bundle(pem.as_bytes()).map(|_| ());
        let _ = tx.send((one, bundle));
    });
    let (one, bundle) = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("parsing a truncated PEM certificate did not finish in 30 s (a hang)");
    let one = one.unwrap_err();
    assert!(one.starts_with("the certificate does not parse"), "{one}");
    let bundle = bundle.unwrap_err();
    assert!(
        bundle.starts_with("a certificate of the bundle does not parse"),
        "{bundle}"
    );
}
