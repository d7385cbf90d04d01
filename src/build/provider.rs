//! Providers: what each target platform gets from the installed disk.
//!
//! A provider is a row of facts (format, extension, block size, validation target, the media
//! its first boot reads). Adding one (openstack/qcow2, gcp, aws/vmware/ova, vagrant) is a new
//! variant here and, when its format needs one, a writer in `src/<format>/`; the plan and the
//! pipeline walk the list and need no change.

use super::file::Firmware;
use crate::disk::convert::TargetFormat;
use crate::disk::validate::Target;

/// A target platform of the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Hyper-V: dynamic VHDX (block size `disk_block_size`, 1 MiB by default).
    Hyperv,
    /// Azure: fixed VHD, virtual size a whole number of MiB.
    Azure,
    /// A raw disk image (sparse).
    Raw,
}

/// Media a provider's first boot reads its config from (built next to the remastered ISO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Media {
    /// The provisioning DVD (Hyper-V: a second DVD drive).
    ProvisioningDvd,
    /// A NoCloud `cidata` seed (what Azure's /run/cloud-init stands in for when booted in qemu).
    NocloudSeed,
    /// Azure custom data (the same tree as a #cloud-config).
    AzureCustomData,
}

/// Providers not written yet, named so a build file asking for one gets a clear answer.
const PLANNED: &[&str] = &["openstack", "gcp", "aws", "vmware", "vagrant"];

impl Provider {
    /// Every provider, in documentation order.
    pub const ALL: [Provider; 3] = [Provider::Hyperv, Provider::Azure, Provider::Raw];

    /// Parses a build file's provider name; the error message lists what exists.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        if let Some(p) = Self::ALL.iter().find(|p| p.name() == s) {
            return Ok(*p);
        }
        let known: Vec<&str> = Self::ALL.iter().map(|p| p.name()).collect();
        let planned = if PLANNED.contains(&s) {
            " (planned, not written yet)"
        } else {
            ""
        };
        Err(format!(
            "unknown provider {s:?}{planned}: expected one of {}",
            known.join(", ")
        ))
    }

    /// The build file's name, also the provider's directory name.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Hyperv => "hyperv",
            Provider::Azure => "azure",
            Provider::Raw => "raw",
        }
    }

    /// The artifact's extension.
    pub fn extension(self) -> &'static str {
        match self {
            Provider::Hyperv => "vhdx",
            Provider::Azure => "vhd",
            Provider::Raw => "raw",
        }
    }

    /// The disk format written.
    pub fn format(self) -> TargetFormat {
        match self {
            Provider::Hyperv => TargetFormat::Vhdx,
            Provider::Azure => TargetFormat::Vhd,
            Provider::Raw => TargetFormat::Raw,
        }
    }

    /// True when Azure's size rule applies (whole MiB, rounded up).
    pub fn azure_rules(self) -> bool {
        self == Provider::Azure
    }

    /// The block size of a dynamic format, when the build file's `disk_block_size` applies.
    pub fn block_size(self, disk_block_size: u64) -> Option<u64> {
        match self {
            Provider::Hyperv => Some(disk_block_size),
            Provider::Azure | Provider::Raw => None,
        }
    }

    /// What `validate` checks the artifact against (`None`: partition table only).
    pub fn validation_target(self, firmware: Firmware) -> Option<Target> {
        match (self, firmware) {
            (Provider::Hyperv, Firmware::Bios) => Some(Target::HypervGen1),
            (Provider::Hyperv, _) => Some(Target::HypervGen2),
            (Provider::Azure, _) => Some(Target::Azure),
            (Provider::Raw, _) => None,
        }
    }

    /// The media the provider's first boot reads its config from.
    pub fn media(self) -> &'static [Media] {
        match self {
            Provider::Hyperv => &[Media::ProvisioningDvd],
            Provider::Azure => &[Media::NocloudSeed, Media::AzureCustomData],
            Provider::Raw => &[Media::NocloudSeed],
        }
    }

    /// `NAME-VERSION_PROVIDER.EXT`.
    pub fn artifact_name(self, name: &str, version: &str) -> String {
        format!("{name}-{version}_{}.{}", self.name(), self.extension())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_and_refusals() {
        for p in Provider::ALL {
            assert_eq!(Provider::parse(p.name()), Ok(p));
        }
        let e = Provider::parse("gcp").unwrap_err();
        assert!(e.contains("planned"), "{e}");
        let e = Provider::parse("hyper-v").unwrap_err();
        assert!(e.contains("expected one of hyperv, azure, raw"), "{e}");
        assert_eq!(
            Provider::Azure.artifact_name("base", "1.2.3"),
            "base-1.2.3_azure.vhd"
        );
    }
}
