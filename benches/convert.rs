//! Criterion bench of the disk writers: a sparse raw image (data in runs) converted to every
//! format. The peer comparison (qemu-img, plain copy) is benches/compare.sh.

use criterion::{Criterion, criterion_group, criterion_main};
use isotool::context::BuildContext;
use isotool::disk::NoProgress;
use isotool::disk::stream::WriteOptions;
use isotool::image::convert::{ConvertOptions, TargetFormat, convert};
use std::os::unix::fs::FileExt;

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

criterion_group!(benches, bench);
criterion_main!(benches);
