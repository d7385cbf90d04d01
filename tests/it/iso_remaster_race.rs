//! Remaster's secondary inputs at the final rename: a preseed or an `--add` source moved or
//! linked onto the output path while the ISO is written is refused at the rename (even with
//! `--force`), and its bytes survive. The move happens from the progress sink (on the first
//! bytes of the copy, or when the syncing starts), so after the output was started and its
//! inputs first checked.

use isotool::context::BuildContext;
use isotool::disk::Progress;
use isotool::remaster::bootcfg::Flavor;
use isotool::remaster::{RemasterOptions, Seed, remaster_with_progress};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Runs `act` once: on the first bytes copied by the "remastering" phase, or when the
/// "syncing" phase starts (everything copied, the rename next).
struct Hook<F: Fn() + Sync> {
    when: &'static str,
    phase: Mutex<String>,
    act: Mutex<Option<F>>,
}

impl<F: Fn() + Sync + Send> Hook<F> {
    fn fire(&self) {
        if let Some(f) = self.act.lock().unwrap().take() {
            f();
        }
    }
}

impl<F: Fn() + Sync + Send> Progress for Hook<F> {
    fn start(&self, phase: &str, _total: u64) {
        *self.phase.lock().unwrap() = phase.to_string();
        if phase == "syncing" && self.when == "syncing" {
            self.fire();
        }
    }
    fn advance(&self, _n: u64) {
        if self.when == "remastering" && *self.phase.lock().unwrap() == "remastering" {
            self.fire();
        }
    }
}

fn options(iso: &Path, out: &Path, seed: Option<&Path>, add: Option<&Path>) -> RemasterOptions {
    RemasterOptions {
        input: iso.to_path_buf(),
        output: out.to_path_buf(),
        seed: seed.map(|p| Seed {
            flavor: Flavor::Preseed,
            file: p.to_path_buf(),
            name: "auto.seed".into(),
        }),
        kernel_args: Vec::new(),
        timeout: 1,
        volume_id: None,
        adds: add
            .map(|p| vec![(p.to_path_buf(), "/extra/tool.bin".to_string())])
            .unwrap_or_default(),
        no_boot_edit: seed.is_none(),
        force: true,
        sync: false,
    }
}

fn run(
    o: &RemasterOptions,
    when: &'static str,
    act: impl Fn() + Sync + Send,
) -> isotool::Result<()> {
    let hook = Hook {
        when,
        phase: Mutex::new(String::new()),
        act: Mutex::new(Some(act)),
    };
    let ctx = BuildContext::fixed(1_700_000_000);
    let r = remaster_with_progress(o, &ctx, &hook).map(|_| ());
    assert!(hook.act.lock().unwrap().is_none(), "the hook never ran");
    r
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let iso = crate::iso_fixture::ubuntu_mini(d.path());
    (d, iso)
}

#[test]
fn iso_remaster_race_preseed_moved_onto_the_output_survives_force() {
    let (d, iso) = setup();
    let seed = d.path().join("auto.seed");
    let text = b"d-i debian-installer/locale string en_US\n";
    std::fs::write(&seed, text).unwrap();
    let out = d.path().join("out.iso");
    let (s2, o2) = (seed.clone(), out.clone());
    let mut o = options(&iso, &out, Some(&seed), None);
    o.sync = true;
    let e = run(&o, "syncing", move || std::fs::rename(&s2, &o2).unwrap())
        .expect_err("the preseed moved onto the output was replaced");
    assert_eq!(e.kind(), isotool::ErrorKind::SameFile, "{e}");
    // the preseed's only name is now the output path: its bytes are still there
    assert_eq!(std::fs::read(&out).unwrap(), text);
    // and the discarded output's temp file is gone
    let temps: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(".isotool-"))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
}

#[test]
fn iso_remaster_race_add_source_linked_onto_the_output_is_refused() {
    let (d, iso) = setup();
    let add = d.path().join("tool.bin");
    std::fs::write(&add, vec![7u8; 100_000]).unwrap();
    let out = d.path().join("out.iso");
    let (a2, o2) = (add.clone(), out.clone());
    let e = run(
        &options(&iso, &out, None, Some(&add)),
        "remastering",
        move || std::fs::hard_link(&a2, &o2).unwrap(),
    )
    .expect_err("an --add source linked onto the output was replaced");
    assert_eq!(e.kind(), isotool::ErrorKind::SameFile, "{e}");
    assert_eq!(std::fs::read(&out).unwrap(), vec![7u8; 100_000]);
    // and without a race the same run writes the ISO
    std::fs::remove_file(&out).unwrap();
    run(&options(&iso, &out, None, Some(&add)), "remastering", || {}).unwrap();
    assert!(std::fs::metadata(&out).unwrap().len() > 100_000);
}
