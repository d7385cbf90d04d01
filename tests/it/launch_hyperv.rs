//! `isotool launch hyperv`: the generated PowerShell against golden files, a syntax check with
//! the tree-sitter PowerShell grammar (PowerShell itself cannot be installed here), and hostile
//! names that must stay inside their string literals.
//!
//! `ISOTOOL_BLESS=1` rewrites the golden files (review the diff before committing).

use isotool::ErrorKind;
use isotool::launch::hyperv::{HypervConfig, script};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tree_sitter::{Node, Parser, Tree};

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/launch_golden")
        .join(name)
}

fn check_golden(name: &str, got: &str) {
    let path = golden_path(name);
    if std::env::var_os("ISOTOOL_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (ISOTOOL_BLESS=1 writes it)", path.display()));
    assert_eq!(got, want, "script differs from {}", path.display());
}

fn gen2() -> HypervConfig {
    HypervConfig {
        name: "ubuntu-18.04-base".into(),
        vhdx: r"C:\Builds\1.2.3\ubuntu\hyperv\ubuntu-1.2.3_hyperv.vhdx".into(),
        iso: r"C:\Builds\work\ubuntu-18.04.3-unattended.iso".into(),
        cdroms: vec![r"C:\Builds\work\provisioning.iso".into()],
        memory_mib: 2048,
        cpus: 2,
        switch: Some("Default Switch".into()),
        timeout: Duration::from_secs(7200),
    }
}

fn parse(script: &str) -> Tree {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_powershell::LANGUAGE.into())
        .expect("the PowerShell grammar loads");
    parser.parse(script, None).expect("tree-sitter parses")
}

/// Every ERROR or MISSING node, with its position.
fn syntax_errors(script: &str) -> Vec<String> {
    fn walk(n: Node, src: &str, out: &mut Vec<String>) {
        if n.is_error() || n.is_missing() {
            let p = n.start_position();
            let text = &src[n.start_byte()..n.end_byte().min(n.start_byte() + 60)];
            out.push(format!(
                "{} at {}:{}: {text:?}",
                n.kind(),
                p.row + 1,
                p.column + 1
            ));
        }
        let mut c = n.walk();
        for child in n.children(&mut c) {
            walk(child, src, out);
        }
    }
    let tree = parse(script);
    let mut out = Vec::new();
    walk(tree.root_node(), script, &mut out);
    out
}

/// The kinds of every node in the tree (to count commands, sub-expressions...).
fn kinds(script: &str) -> Vec<String> {
    fn walk(n: Node, out: &mut Vec<String>) {
        out.push(n.kind().to_string());
        let mut c = n.walk();
        for child in n.children(&mut c) {
            walk(child, out);
        }
    }
    let tree = parse(script);
    let mut out = Vec::new();
    walk(tree.root_node(), &mut out);
    out
}

/// The texts of every single-quoted string literal.
fn verbatim_strings(script: &str) -> Vec<String> {
    fn walk(n: Node, src: &str, out: &mut Vec<String>) {
        if n.kind() == "verbatim_string_characters" {
            out.push(src[n.start_byte()..n.end_byte()].to_string());
        }
        let mut c = n.walk();
        for child in n.children(&mut c) {
            walk(child, src, out);
        }
    }
    let tree = parse(script);
    let mut out = Vec::new();
    walk(tree.root_node(), script, &mut out);
    out
}

#[test]
fn gen2_secure_boot_two_dvds_golden_and_syntax() {
    let s = script(&gen2()).unwrap();
    check_golden("hyperv_gen2.ps1", &s);
    let errors = syntax_errors(&s);
    assert!(errors.is_empty(), "syntax errors: {errors:#?}\n{s}");
    for want in [
        "Generation         = 2",
        "VHDPath            = $VhdxPath",
        "-EnableSecureBoot On -SecureBootTemplate $SecureBootTemplate",
        "$SecureBootTemplate = 'MicrosoftUEFICertificateAuthority'",
        "$installerDvd = Add-VMDvdDrive -VM $vm -Path $InstallerIso -Passthru",
        "Set-VMFirmware -VM $vm -BootOrder $installerDvd, $systemDisk",
        "Start-VM -VM $vm",
        "-ne 'Off'",
        "Remove-VM -VM $vm -Force",
        "$MemoryBytes = 2147483648",
        "$ExtraDvds = @('C:\\Builds\\work\\provisioning.iso')",
    ] {
        assert!(s.contains(want), "{want:?} not in:\n{s}");
    }
    // The VHDX is never removed, only the VM.
    assert!(!s.contains("Remove-Item"), "{s}");
}

#[test]
fn no_switch_no_extra_dvd_golden_and_syntax() {
    let cfg = HypervConfig {
        cdroms: vec![],
        switch: None,
        ..gen2()
    };
    let s = script(&cfg).unwrap();
    check_golden("hyperv_minimal.ps1", &s);
    assert!(syntax_errors(&s).is_empty(), "{:#?}", syntax_errors(&s));
    assert!(
        s.contains("$ExtraDvds = @()") && s.contains("$SwitchName = $null"),
        "{s}"
    );
}

#[test]
fn hostile_names_stay_inside_their_literals() {
    let hostile = [
        "x'; Remove-Item -Recurse C:\\ ; '",
        "$(Stop-Computer -Force)",
        "`$(calc)` \"$env:USERNAME\"",
        "a\u{2019}; Stop-Computer; \u{2018}b",
        "@(1) | % { Format-Volume } #",
        "'''",
        "${function:x}",
    ];
    let clean = script(&gen2()).unwrap();
    let clean_kinds = kinds(&clean);
    for h in hostile {
        let cfg = HypervConfig {
            name: h.to_string(),
            vhdx: format!("C:\\d\\{h}.vhdx"),
            iso: format!("C:\\i\\{h}.iso"),
            cdroms: vec![format!("C:\\p\\{h}.iso")],
            switch: Some(h.to_string()),
            ..gen2()
        };
        let s = script(&cfg).unwrap();
        let errors = syntax_errors(&s);
        assert!(errors.is_empty(), "{h:?}: {errors:#?}\n{s}");
        // Same syntax tree shape as the clean script: the input added no command, no
        // sub-expression, no variable: it only changed the text inside literals.
        assert_eq!(
            kinds(&s),
            clean_kinds,
            "{h:?} changed the script's structure:\n{s}"
        );
        // The name is one literal that reads back exactly.
        let lits = verbatim_strings(&s);
        let quoted_name = format!("'{}'", h.replace('\'', "''"));
        let quoted_name = quoted_name
            .replace('\u{2019}', "\u{2019}\u{2019}")
            .replace('\u{2018}', "\u{2018}\u{2018}");
        assert!(
            lits.contains(&quoted_name),
            "{h:?}: {quoted_name:?} not among {lits:#?}"
        );
    }
}

#[test]
fn control_characters_are_refused() {
    for bad in ["line1\nStop-Computer", "a\r\nb", "nul\0", "esc\u{1b}[2J"] {
        let cfg = HypervConfig {
            name: bad.to_string(),
            ..gen2()
        };
        let e = script(&cfg).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}");
        let cfg = HypervConfig {
            vhdx: bad.to_string(),
            ..gen2()
        };
        assert_eq!(script(&cfg).unwrap_err().kind(), ErrorKind::InvalidArgument);
    }
}

#[test]
fn the_syntax_check_can_fail() {
    // The oracle itself: a broken script has ERROR or MISSING nodes.
    for broken in [
        "$a = 'unterminated\n",
        "if ($x { Start-VM }\n",
        "$x = @(1, 2\n",
    ] {
        assert!(
            !syntax_errors(broken).is_empty(),
            "{broken:?} passed the syntax check"
        );
    }
}

#[test]
fn cli_emits_the_script_and_refuses_to_run_without_powershell() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("launch-hyperv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out_file = dir.join("launch.ps1");
    let g = gen2();
    let args: Vec<String> = vec![
        "launch".into(),
        "hyperv".into(),
        "--name".into(),
        g.name.clone(),
        "--vhdx".into(),
        g.vhdx.clone(),
        "--iso".into(),
        g.iso.clone(),
        "--cdrom".into(),
        g.cdroms[0].clone(),
        "--switch".into(),
        "Default Switch".into(),
        "--memory".into(),
        "2048".into(),
        "--cpus".into(),
        "2".into(),
        "--timeout".into(),
        "2h".into(),
    ];
    let run = |extra: &[&str], path: &str| {
        Command::new(env!("CARGO_BIN_EXE_isotool"))
            .args(&args)
            .args(extra)
            .env("PATH", path)
            .output()
            .unwrap()
    };
    let emit = ["--emit-script", out_file.to_str().unwrap()];
    let o = run(&emit, "/usr/bin:/bin");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        script(&g).unwrap(),
        "the CLI wrote another script than the library makes"
    );
    // An existing script is not replaced without --force.
    let o = run(&emit, "/usr/bin:/bin");
    assert_eq!(o.status.code(), Some(1));
    // --json: the script written, not run (schema isotool/launch-hyperv/1).
    let mut json_args = emit.to_vec();
    json_args.extend(["--force", "--json"]);
    let o = run(&json_args, "/usr/bin:/bin");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = String::from_utf8(o.stdout)
        .unwrap()
        .replace(dir.to_str().unwrap(), "$TMP");
    crate::cli_json::check("launch-hyperv", &got);
    // --json and the script on stdout would mix: refused.
    let o = run(&["--emit-script", "-", "--json"], "/usr/bin:/bin");
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    // No PowerShell on PATH and no --emit-script: a clear error.
    let o = run(&[], dir.to_str().unwrap());
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("[missing-tool]") && err.contains("--emit-script"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
