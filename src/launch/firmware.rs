//! OVMF lookup and the per-run writable copy of its VARS file.
//!
//! Debian's `ovmf` package ships, in `/usr/share/OVMF`:
//! - `OVMF_CODE_4M.fd` + `OVMF_VARS_4M.fd`: UEFI without Secure Boot;
//! - `OVMF_CODE_4M.secboot.fd` + `OVMF_VARS_4M.ms.fd`: the SMM build with Secure Boot on and
//!   Microsoft's keys enrolled (PK/KEK/db), the counterpart of Hyper-V's
//!   `MicrosoftUEFICertificateAuthority` template. It needs `-machine q35,smm=on` and
//!   `-global driver=cfi.pflash01,property=secure,value=on`, or it does not start.
//!
//! The VARS file is the VM's NVRAM: OVMF writes boot entries into it, so every run gets its own
//! copy and the packaged template is never opened for writing.

use super::Firmware;
use crate::err;
use crate::error::{IoContext, Result};
use std::path::{Path, PathBuf};

/// Debian package that ships OVMF.
pub const OVMF_PACKAGE: &str = "ovmf";

/// Code and VARS template of a UEFI firmware, checked to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedFirmware {
    /// Read-only firmware code (first pflash unit).
    pub code: PathBuf,
    /// VARS template, copied per run (second pflash unit).
    pub vars_template: PathBuf,
    /// Secure Boot build (needs SMM and a secure pflash).
    pub secure: bool,
}

/// File names (code, vars) of a firmware in an OVMF directory; `None` for BIOS.
pub fn file_names(firmware: Firmware) -> Option<(&'static str, &'static str)> {
    match firmware {
        Firmware::Bios => None,
        Firmware::Uefi => Some(("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd")),
        Firmware::UefiSecure => Some(("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd")),
    }
}

/// Finds the firmware files in `ovmf_dir`; `Ok(None)` for BIOS (SeaBIOS is built into qemu).
/// A missing file is a [`crate::ErrorKind::MissingTool`] error naming the `ovmf` package.
pub fn resolve(firmware: Firmware, ovmf_dir: &Path) -> Result<Option<ResolvedFirmware>> {
    let Some((code, vars)) = file_names(firmware) else {
        return Ok(None);
    };
    let code = ovmf_dir.join(code);
    let vars_template = ovmf_dir.join(vars);
    for f in [&code, &vars_template] {
        if !f.is_file() {
            return Err(err!(
                MissingTool,
                "UEFI firmware file is missing (apt-get install {OVMF_PACKAGE})"
            )
            .with_path(f));
        }
    }
    Ok(Some(ResolvedFirmware {
        code,
        vars_template,
        secure: firmware == Firmware::UefiSecure,
    }))
}

impl ResolvedFirmware {
    /// Copies the VARS template to `dir/OVMF_VARS.fd` (writable, mode 0600) and returns its path.
    pub fn copy_vars(&self, dir: &Path) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let dest = dir.join("OVMF_VARS.fd");
        std::fs::copy(&self.vars_template, &dest)
            .ctx(&self.vars_template, "copying the OVMF VARS template")?;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600))
            .ctx(&dest, "making the VARS copy writable")?;
        Ok(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn bios_needs_no_files() {
        assert_eq!(
            resolve(Firmware::Bios, Path::new("/nonexistent")).unwrap(),
            None
        );
    }

    #[test]
    fn missing_ovmf_names_the_package_and_file() {
        let e = resolve(Firmware::Uefi, Path::new("/nonexistent/ovmf")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingTool);
        assert!(e.to_string().contains("apt-get install ovmf"), "{e}");
        assert_eq!(
            e.path(),
            Some(Path::new("/nonexistent/ovmf/OVMF_CODE_4M.fd"))
        );
    }

    #[test]
    fn secure_boot_uses_the_secboot_code_and_microsoft_vars() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let r = resolve(Firmware::UefiSecure, dir.path()).unwrap().unwrap();
        assert!(r.secure);
        assert!(r.code.ends_with("OVMF_CODE_4M.secboot.fd"));
        assert!(r.vars_template.ends_with("OVMF_VARS_4M.ms.fd"));
        // The plain firmware is not there: asking for it fails.
        assert!(resolve(Firmware::Uefi, dir.path()).is_err());
        let run = tempfile::tempdir().unwrap();
        let copy = r.copy_vars(run.path()).unwrap();
        assert_eq!(std::fs::read(copy).unwrap(), b"x");
    }
}
