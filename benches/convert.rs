//! Criterion benches of the write paths. `convert`: a sparse raw image (data in runs) converted
//! to every format; the peer comparison (qemu-img, plain copy) is benches/compare.sh. `md5`:
//! the md5sum.txt hashing of `isotool remaster` ([`md5_files`]: reads ahead on a second thread,
//! files in parallel) against the single-thread 1 MiB read-then-hash loop it replaced and MD5
//! of bytes in memory (one core's ceiling); the peer comparison (xorriso + md5sum) is
//! benches/remaster_compare.sh.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use isotool::checksum::{hex, md5_files};
use isotool::context::BuildContext;
use isotool::disk::NoProgress;
use isotool::disk::stream::WriteOptions;
use isotool::image::convert::{ConvertOptions, TargetFormat, convert};
use md5::{Digest, Md5};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in.raw");
    let f = std::fs::File::create(&input).expect("create input");
    f.set_len(256 << 20).expect("size input");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let block: Vec<u8> = (0..(8 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for i in 0..8u64 {
        f.write_all_at(&block, i * (32 << 20)).expect("write input");
    }
    drop(f);
    let ctx = BuildContext::fixed(0);
    let mut g = c.benchmark_group("convert 256 MiB raw with 64 MiB data");
    g.sample_size(10);
    for format in [
        TargetFormat::Raw,
        TargetFormat::Vhd,
        TargetFormat::VhdDynamic,
        TargetFormat::Vhdx,
        TargetFormat::VhdxFixed,
    ] {
        let out = dir.path().join(format!("out.{}", format.name()));
        let opts = ConvertOptions {
            format,
            write: WriteOptions {
                block_size: None,
                ..WriteOptions::default()
            },
            force: true,
            ..ConvertOptions::default()
        };
        g.bench_function(format.name(), |b| {
            b.iter(|| convert(&input, &out, &opts, &ctx, &NoProgress).expect("convert"))
        });
    }
    g.finish();
}

/// The loop md5sum.txt used before: one thread, 1 MiB reads, hash, repeat.
fn md5_read_then_hash(p: &Path) -> String {
    let mut f = std::fs::File::open(p).expect("open");
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex(&h.finalize())
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn bench_md5(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let big = dir.path().join("big");
    let data = noise(128 << 20, 0x9e37_79b9_7f4a_7c15);
    std::fs::write(&big, &data).expect("write");
    let halves = [dir.path().join("a"), dir.path().join("b")];
    for (i, p) in halves.iter().enumerate() {
        std::fs::write(p, noise(64 << 20, i as u64 + 2)).expect("write");
    }
    let mut g = c.benchmark_group("md5 128 MiB (page cache)");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(128 << 20));
    g.bench_function("in memory (one core's ceiling)", |b| {
        b.iter(|| hex(&Md5::digest(&data)))
    });
    g.bench_function("one file: read then hash (before)", |b| {
        b.iter(|| md5_read_then_hash(&big))
    });
    g.bench_function("one file: md5_files", |b| {
        b.iter(|| md5_files(&[big.as_path()], &NoProgress).expect("md5"))
    });
    g.bench_function("two 64 MiB files: read then hash (before)", |b| {
        b.iter(|| {
            halves
                .iter()
                .map(|p| md5_read_then_hash(p))
                .collect::<Vec<_>>()
        })
    });
    let refs: Vec<&Path> = halves.iter().map(|p| p.as_path()).collect();
    g.bench_function("two 64 MiB files: md5_files", |b| {
        b.iter(|| md5_files(&refs, &NoProgress).expect("md5"))
    });
    g.finish();
}

criterion_group!(benches, bench, bench_md5);
criterion_main!(benches);
