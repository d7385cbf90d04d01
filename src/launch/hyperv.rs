//! Hyper-V: the PowerShell for a generation 2 VM that boots the installer and waits for the
//! guest to power off, the way Packer's `hyperv-iso` builder does it minus the keystrokes (the
//! preseed and the config are on the discs).
//!
//! The script creates the VM on the given VHDX (`New-VM -Generation 2`), sets CPU and memory,
//! turns Secure Boot on with the `MicrosoftUEFICertificateAuthority` template (Linux shims are
//! signed by that CA; Hyper-V's default, `MicrosoftWindows`, refuses them), adds a DVD drive for
//! the installer and one per extra disc, puts the installer DVD first in the boot order, starts
//! the VM, polls its state until `Off` with a deadline, and removes the VM (the VHDX stays).
//!
//! Every value from the user lands in a single-quoted PowerShell literal: inside one, nothing is
//! expanded (`$`, backticks and double quotes are plain characters) and the only special
//! characters are the quote characters, which are doubled. PowerShell takes the typographic
//! single quotes U+2018..U+201B as quotes too, so those are doubled as well. Control characters
//! (a newline would end a comment or a statement) are refused.

use crate::err;
use crate::error::{Error, IoContext, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The Secure Boot template for Linux guests on generation 2 VMs.
pub const SECURE_BOOT_TEMPLATE: &str = "MicrosoftUEFICertificateAuthority";
/// Longest VM name Hyper-V accepts.
pub const MAX_NAME_LEN: usize = 100;
/// Seconds between two looks at the VM's state.
pub const POLL_SECONDS: u32 = 5;

/// A generation 2 Hyper-V VM run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HypervConfig {
    /// VM name.
    pub name: String,
    /// The VHDX the installer writes to (a path on the Hyper-V host).
    pub vhdx: String,
    /// The installer ISO (first boot device).
    pub iso: String,
    /// More DVDs (provisioning DVD...), in order.
    pub cdroms: Vec<String>,
    /// Startup memory in MiB (dynamic memory off).
    pub memory_mib: u32,
    /// Virtual processors.
    pub cpus: u32,
    /// Virtual switch to connect, if any.
    pub switch: Option<String>,
    /// Time the guest has to power off before the VM is turned off and the script fails.
    pub timeout: Duration,
}

/// A single-quoted PowerShell string literal holding `value` exactly. Control characters are
/// refused (`what` names the value in the error).
pub fn ps_quote(value: &str, what: &str) -> Result<String> {
    if let Some((i, c)) = value.char_indices().find(|(_, c)| c.is_control()) {
        return Err(err!(
            InvalidArgument,
            "{what} contains the control character U+{:04X} at byte {i}; refused in a PowerShell script",
            c as u32
        ));
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    Ok(out)
}

fn check(cfg: &HypervConfig) -> Result<()> {
    if cfg.name.trim().is_empty() || cfg.name.chars().count() > MAX_NAME_LEN {
        return Err(err!(
            InvalidArgument,
            "VM name must be 1..={MAX_NAME_LEN} characters (got {:?})",
            cfg.name
        ));
    }
    for (what, v) in [("--vhdx", &cfg.vhdx), ("--iso", &cfg.iso)] {
        if v.is_empty() {
            return Err(err!(InvalidArgument, "{what} must not be empty"));
        }
    }
    if cfg.memory_mib < 32 || cfg.cpus == 0 || cfg.cpus > 240 {
        return Err(err!(
            InvalidArgument,
            "memory must be at least 32 MiB and cpus 1..=240 (got {} MiB, {} cpus)",
            cfg.memory_mib,
            cfg.cpus
        ));
    }
    if cfg.timeout.is_zero() {
        return Err(err!(InvalidArgument, "the timeout must be positive"));
    }
    Ok(())
}

/// The PowerShell script (UTF-8, LF line ends; Windows PowerShell 5.1 and PowerShell 7 read it).
pub fn script(cfg: &HypervConfig) -> Result<String> {
    check(cfg)?;
    let mut s = String::new();
    s.push_str(HEADER);
    let mut var = |name: &str, value: String| {
        let _ = writeln!(s, "${name} = {value}");
    };
    var("VmName", ps_quote(&cfg.name, "the VM name")?);
    var("VhdxPath", ps_quote(&cfg.vhdx, "--vhdx")?);
    var("InstallerIso", ps_quote(&cfg.iso, "--iso")?);
    let discs = cfg
        .cdroms
        .iter()
        .map(|c| ps_quote(c, "--cdrom"))
        .collect::<Result<Vec<_>>>()?;
    var("ExtraDvds", format!("@({})", discs.join(", ")));
    var(
        "SwitchName",
        match &cfg.switch {
            Some(sw) => ps_quote(sw, "--switch")?,
            None => "$null".to_string(),
        },
    );
    var(
        "MemoryBytes",
        format!("{}", u64::from(cfg.memory_mib) * 1024 * 1024),
    );
    var("ProcessorCount", cfg.cpus.to_string());
    var("TimeoutSeconds", cfg.timeout.as_secs().max(1).to_string());
    var("PollSeconds", POLL_SECONDS.to_string());
    var(
        "SecureBootTemplate",
        ps_quote(SECURE_BOOT_TEMPLATE, "template")?,
    );
    s.push_str(BODY);
    Ok(s)
}

const HEADER: &str = "\
# Generated by isotool launch hyperv: boots a generation 2 Hyper-V VM from the installer ISO,
# waits for the guest to power off, then removes the VM (the VHDX stays).
# Every value below is a single-quoted literal: nothing in it is expanded or run.
#Requires -Modules Hyper-V
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

";

const BODY: &str = r#"
if (Get-VM -Name $VmName -ErrorAction SilentlyContinue) {
    throw ('A VM with this name already exists: ' + $VmName)
}

$newVm = @{
    Name               = $VmName
    Generation         = 2
    MemoryStartupBytes = $MemoryBytes
    VHDPath            = $VhdxPath
}
if ($null -ne $SwitchName) {
    $newVm['SwitchName'] = $SwitchName
}
$vm = New-VM @newVm
try {
    Set-VMMemory -VM $vm -DynamicMemoryEnabled $false
    Set-VMProcessor -VM $vm -Count $ProcessorCount
    Set-VMFirmware -VM $vm -EnableSecureBoot On -SecureBootTemplate $SecureBootTemplate
    $installerDvd = Add-VMDvdDrive -VM $vm -Path $InstallerIso -Passthru
    foreach ($dvd in $ExtraDvds) {
        Add-VMDvdDrive -VM $vm -Path $dvd | Out-Null
    }
    $systemDisk = Get-VMHardDiskDrive -VM $vm | Select-Object -First 1
    Set-VMFirmware -VM $vm -BootOrder $installerDvd, $systemDisk

    Start-VM -VM $vm
    $deadline = (Get-Date).AddSeconds($TimeoutSeconds)
    while ((Get-VM -Id $vm.Id).State -ne 'Off') {
        if ((Get-Date) -gt $deadline) {
            Stop-VM -VM $vm -TurnOff -Force
            throw ('Timeout: the guest did not power off within ' + $TimeoutSeconds + ' s')
        }
        Start-Sleep -Seconds $PollSeconds
    }
    Write-Output ('The guest powered off: ' + $VmName)
}
finally {
    if ((Get-VM -Id $vm.Id).State -ne 'Off') {
        Stop-VM -VM $vm -TurnOff -Force
    }
    Remove-VM -VM $vm -Force
}
"#;

/// A PowerShell (`powershell.exe`, then `pwsh`) on `PATH` that has the Hyper-V module.
pub fn find_powershell() -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    for name in ["powershell.exe", "pwsh"] {
        let Some(p) = std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
        else {
            continue;
        };
        let probe = Command::new(&p)
            .args(["-NoProfile", "-NonInteractive", "-Command"])
            .arg("if (Get-Module -ListAvailable -Name Hyper-V) { exit 0 } else { exit 3 }")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if probe.is_ok_and(|s| s.success()) {
            return Some(p);
        }
    }
    None
}

/// The error for a run where no PowerShell with Hyper-V exists and no script file was asked for.
pub fn no_powershell_error() -> Error {
    err!(
        MissingTool,
        "no powershell.exe or pwsh with the Hyper-V module here: write the script with \
         --emit-script FILE and run it on the Hyper-V host"
    )
}

/// Runs `script_file` with `powershell` and waits; the script's own deadline ends a stuck VM,
/// so only the script's failure (non-zero exit, with its stderr) is an error.
pub fn run_script(powershell: &Path, script_file: &Path) -> Result<String> {
    let out = Command::new(powershell)
        .args([
            "-NoProfile",
            "-NonInteractive",
            "-ExecutionPolicy",
            "Bypass",
            "-File",
        ])
        .arg(script_file)
        .stdin(Stdio::null())
        .output()
        .ctx(powershell, "starting PowerShell")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kind = if stderr.contains("Timeout: the guest did not power off") {
        crate::ErrorKind::Timeout
    } else {
        crate::ErrorKind::External
    };
    Err(Error::new(
        kind,
        format!(
            "the Hyper-V script failed ({}): {}",
            out.status,
            stderr.trim()
        ),
    )
    .with_path(script_file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_every_single_quote_and_refuses_control_characters() {
        assert_eq!(ps_quote("a'b", "x").unwrap(), "'a''b'");
        assert_eq!(ps_quote("$(calc)`n\"", "x").unwrap(), "'$(calc)`n\"'");
        assert_eq!(ps_quote("\u{2019}", "x").unwrap(), "'\u{2019}\u{2019}'");
        assert_eq!(ps_quote("", "x").unwrap(), "''");
        for bad in ["a\nb", "a\rb", "a\0b", "\u{1b}[0m", "\u{85}"] {
            let e = ps_quote(bad, "the VM name").unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{bad:?}");
            assert!(e.to_string().contains("the VM name"), "{e}");
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        let ok = HypervConfig {
            name: "vm".into(),
            vhdx: "C:\\d.vhdx".into(),
            iso: "C:\\i.iso".into(),
            cdroms: vec![],
            memory_mib: 1024,
            cpus: 2,
            switch: None,
            timeout: Duration::from_secs(60),
        };
        assert!(script(&ok).is_ok());
        for bad in [
            HypervConfig {
                name: String::new(),
                ..ok.clone()
            },
            HypervConfig {
                name: "x".repeat(101),
                ..ok.clone()
            },
            HypervConfig {
                cpus: 0,
                ..ok.clone()
            },
            HypervConfig {
                timeout: Duration::ZERO,
                ..ok.clone()
            },
            HypervConfig {
                iso: String::new(),
                ..ok.clone()
            },
        ] {
            assert!(script(&bad).is_err(), "{bad:?}");
        }
    }
}
