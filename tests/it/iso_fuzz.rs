//! Deterministic corruption sweep: flipped bytes in the metadata of an ISO give errors, never
//! panics, in every reader and in the remaster engine.

use crate::iso_fixture::*;
use isotool::iso::{info, patch};

#[test]
fn flipped_metadata_bytes_never_panic() {
    let d = tempfile::tempdir().unwrap();
    let good = ubuntu_mini(d.path());
    let orig = std::fs::read(&good).unwrap();
    let meta_end = 90 * 2048usize;
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let bad = d.path().join("bad.iso");
    let out = d.path().join("out.iso");
    let add = d.path().join("add.txt");
    std::fs::write(&add, "x").unwrap();
    let (mut errors, mut oks) = (0, 0);
    for round in 0..250 {
        let mut img = orig.clone();
        let n = 1 + (next() % 6) as usize;
        for _ in 0..n {
            let at = (next() % meta_end as u64) as usize;
            img[at] = (next() & 0xff) as u8;
        }
        std::fs::write(&bad, &img).unwrap();
        let r = std::panic::catch_unwind(|| {
            let a = info::inspect(&bad).map(|_| ());
            let b = info::list(&bad, "/", true).map(|_| ());
            let plan = patch::PatchPlan {
                ops: vec![
                    patch::FileOp {
                        path: "/preseed/fuzz.seed".into(),
                        source: patch::Source::File(add.clone()),
                    },
                    patch::FileOp {
                        path: "/fuzz-new-dir/sub/f.txt".into(),
                        source: patch::Source::File(add.clone()),
                    },
                ],
                volume_id: None,
                mtime: 0,
                output: isotool::output::OutputOptions::new(true, 0o644),
            };
            let c = patch::patch_iso(&bad, &out, &plan).map(|_| ());
            [a, b, c]
        });
        let res = r.unwrap_or_else(|_| panic!("panic in round {round}"));
        for x in res {
            match x {
                Ok(()) => oks += 1,
                Err(e) => {
                    errors += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
        }
    }
    // the sweep must actually hit the parsers
    assert!(
        errors > 20,
        "only {errors} errors: the corruption missed the metadata"
    );
    assert!(oks > 0);
}
