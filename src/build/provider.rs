//! Providers: what each target platform gets from the installed disk.
//!
//! A provider is a row of facts (artifact kind: a disk format or a package; extension, block
//! size, validation target, the media its first boot reads). Adding one is a new variant here
//! and, when its format needs one, a writer in `src/<format>/` or a package in `src/pack/`; the
//! plan and the pipeline walk the list.

use super::file::Firmware;
use crate::image::convert::TargetFormat;
use crate::image::validate::Target;
use crate::pack;

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
    /// OpenStack (Glance): qcow2 version 3, sparse.
    Openstack,
    /// Google Compute Engine: `disk.raw` (whole GiB) in a sparse GNU tar, gzip.
    Gcp,
    /// AWS (VM Import): OVA with a streamOptimized VMDK.
    Aws,
    /// VMware (vSphere, Workstation, Fusion): OVA with a streamOptimized VMDK.
    Vmware,
    /// Vagrant box for the VirtualBox provider (OVF + streamOptimized VMDK).
    Virtualbox,
    /// Vagrant box for the libvirt provider (qcow2).
    #[serde(rename = "vagrant-libvirt")]
    VagrantLibvirt,
}

/// What a provider's artifact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    /// A disk image written by `convert`.
    Disk(TargetFormat),
    /// A package written by `pack` (the disk inside an archive with its descriptors).
    Package(pack::Target),
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

impl Provider {
    /// Every provider, in documentation order.
    pub const ALL: [Provider; 9] = [
        Provider::Hyperv,
        Provider::Azure,
        Provider::Raw,
        Provider::Openstack,
        Provider::Gcp,
        Provider::Aws,
        Provider::Vmware,
        Provider::Virtualbox,
        Provider::VagrantLibvirt,
    ];

    /// Parses a build file's provider name; the error message lists what exists.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        if let Some(p) = Self::ALL.iter().find(|p| p.name() == s) {
            return Ok(*p);
        }
        let known: Vec<&str> = Self::ALL.iter().map(|p| p.name()).collect();
        let hint = if s == "vagrant" {
            " (a Vagrant box is made per Vagrant provider: virtualbox or vagrant-libvirt)"
        } else {
            ""
        };
        Err(format!(
            "unknown provider {s:?}{hint}: expected one of {}",
            known.join(", ")
        ))
    }

    /// The build file's name, also the provider's directory name.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Hyperv => "hyperv",
            Provider::Azure => "azure",
            Provider::Raw => "raw",
            Provider::Openstack => "openstack",
            Provider::Gcp => "gcp",
            Provider::Aws => "aws",
            Provider::Vmware => "vmware",
            Provider::Virtualbox => "virtualbox",
            Provider::VagrantLibvirt => "vagrant-libvirt",
        }
    }

    /// The artifact's extension.
    pub fn extension(self) -> &'static str {
        match self {
            Provider::Hyperv => "vhdx",
            Provider::Azure => "vhd",
            Provider::Raw => "raw",
            Provider::Openstack => "qcow2",
            Provider::Gcp => "tar.gz",
            Provider::Aws | Provider::Vmware => "ova",
            Provider::Virtualbox | Provider::VagrantLibvirt => "box",
        }
    }

    /// What the artifact is: a disk format, or a package.
    pub fn artifact(self) -> ArtifactKind {
        use ArtifactKind::{Disk, Package};
        match self {
            Provider::Hyperv => Disk(TargetFormat::Vhdx),
            Provider::Azure => Disk(TargetFormat::Vhd),
            Provider::Raw => Disk(TargetFormat::Raw),
            Provider::Openstack => Disk(TargetFormat::Qcow2),
            Provider::Gcp => Package(pack::Target::Gcp),
            Provider::Aws | Provider::Vmware => Package(pack::Target::Ova),
            Provider::Virtualbox => Package(pack::Target::VagrantVirtualbox),
            Provider::VagrantLibvirt => Package(pack::Target::VagrantLibvirt),
        }
    }

    /// One line saying what the artifact is (the plan's convert/pack step).
    pub fn describe(self, disk_block_size: u64) -> String {
        match self {
            Provider::Hyperv => format!("dynamic VHDX, {} MiB blocks", disk_block_size >> 20),
            Provider::Azure => "fixed VHD, virtual size rounded up to a whole MiB".into(),
            Provider::Raw => "raw, sparse".into(),
            Provider::Openstack => "qcow2 v3, sparse, 64 KiB clusters".into(),
            Provider::Gcp => "disk.raw (whole GiB) in a sparse GNU tar, gzip".into(),
            Provider::Aws | Provider::Vmware => {
                "OVA: OVF descriptor, SHA-256 manifest, streamOptimized VMDK".into()
            }
            Provider::Virtualbox => {
                "Vagrant box: metadata.json, Vagrantfile, OVF, streamOptimized VMDK; tar.gz".into()
            }
            Provider::VagrantLibvirt => {
                "Vagrant box: metadata.json, Vagrantfile, qcow2 box.img; tar.gz".into()
            }
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
            _ => None,
        }
    }

    /// What `validate` checks the artifact against (`None`: partition table only).
    pub fn validation_target(self, firmware: Firmware) -> Option<Target> {
        match (self, firmware) {
            (Provider::Hyperv, Firmware::Bios) => Some(Target::HypervGen1),
            (Provider::Hyperv, _) => Some(Target::HypervGen2),
            (Provider::Azure, _) => Some(Target::Azure),
            _ => None,
        }
    }

    /// The media the provider's first boot reads its config from: Hyper-V the provisioning
    /// DVD, the clouds and local hypervisors a NoCloud seed (cloud-init's datasource when the
    /// image is booted outside its cloud), Azure its custom data too.
    pub fn media(self) -> &'static [Media] {
        match self {
            Provider::Hyperv => &[Media::ProvisioningDvd],
            Provider::Azure => &[Media::NocloudSeed, Media::AzureCustomData],
            _ => &[Media::NocloudSeed],
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
        let e = Provider::parse("vagrant").unwrap_err();
        assert!(e.contains("virtualbox or vagrant-libvirt"), "{e}");
        let e = Provider::parse("hyper-v").unwrap_err();
        assert!(
            e.contains(
                "expected one of hyperv, azure, raw, openstack, gcp, aws, vmware, virtualbox, vagrant-libvirt"
            ),
            "{e}"
        );
        assert_eq!(
            Provider::Azure.artifact_name("base", "1.2.3"),
            "base-1.2.3_azure.vhd"
        );
        assert_eq!(
            Provider::Gcp.artifact_name("base", "1.2.3"),
            "base-1.2.3_gcp.tar.gz"
        );
        assert_eq!(
            serde_json::to_value(Provider::VagrantLibvirt).unwrap(),
            "vagrant-libvirt"
        );
    }
}
