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
    let started = Instant::now();
    let mut runs = 0usize;
    let mut crashes = Vec::new();
    let mut run_one = |input: &[u8], crashes: &mut Vec<PathBuf>, save: bool| {
        runs += 1;
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
            mutate(&mut rng, &mut m, window);
            run_one(&m, &mut crashes, true);
        }
    }
    // straight to stderr, past the test harness's capture: CI logs show every target's numbers
    let _ = writeln!(
        std::io::stderr(),
        "fuzz target {name}: {} seeds, {runs} execs, {:.1} s, {} crashes",
        seeds.len(),
        started.elapsed().as_secs_f64(),
        crashes.len()
    );
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
