//! The OVF descriptor (DMTF DSP0243 OVF 1.0 envelope, as VMware and VirtualBox export and
//! import it): one streamOptimized VMDK, a SCSI controller, CPUs, memory, a NAT network card,
//! and the firmware (`bios` / `efi`) as VMware's `vmw:Config` key.

/// Firmware of the virtual machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// Legacy BIOS.
    Bios,
    /// UEFI.
    Efi,
}

impl Firmware {
    /// `bios` or `efi`.
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Efi => "efi",
        }
    }
}

/// What the descriptor describes.
#[derive(Debug, Clone)]
pub struct OvfParams<'a> {
    /// Virtual machine name.
    pub name: &'a str,
    /// The disk file's name in the package.
    pub disk_file: &'a str,
    /// The disk file's size in bytes.
    pub disk_file_size: u64,
    /// Virtual size of the disk in bytes.
    pub capacity: u64,
    /// Bytes of the disk that hold data.
    pub populated: u64,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Firmware.
    pub firmware: Firmware,
}

/// Escapes text for XML attributes and content.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn item(id: u32, rtype: u32, name: &str, extra: &str) -> String {
    format!(
        "      <Item>\n        <rasd:ElementName>{name}</rasd:ElementName>\n        <rasd:InstanceID>{id}</rasd:InstanceID>\n        <rasd:ResourceType>{rtype}</rasd:ResourceType>\n{extra}      </Item>\n"
    )
}

/// The descriptor's XML text.
pub fn descriptor(p: &OvfParams) -> String {
    let name = xml_escape(p.name);
    let file = xml_escape(p.disk_file);
    let mut hw = String::new();
    hw.push_str(&item(1, 3, &format!("{} virtual CPU(s)", p.cpus), &format!(
        "        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>\n        <rasd:VirtualQuantity>{}</rasd:VirtualQuantity>\n", p.cpus)));
    hw.push_str(&item(2, 4, &format!("{}MB of memory", p.memory_mib), &format!(
        "        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>\n        <rasd:VirtualQuantity>{}</rasd:VirtualQuantity>\n", p.memory_mib)));
    hw.push_str(&item(3, 6, "SCSI Controller 0", "        <rasd:Address>0</rasd:Address>\n        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>\n"));
    hw.push_str(&item(4, 17, "Hard Disk 1", "        <rasd:AddressOnParent>0</rasd:AddressOnParent>\n        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>\n        <rasd:Parent>3</rasd:Parent>\n"));
    hw.push_str(&item(5, 10, "Network adapter 1", "        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>\n        <rasd:Connection>nat</rasd:Connection>\n        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>\n"));
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope vmw:buildId="isotool" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="{file}" ovf:id="file1" ovf:size="{size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{cap}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized" ovf:populatedSize="{pop}"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="nat">
      <Description>The nat network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="otherLinux64Guest">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>
      </System>
{hw}      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="{fw}"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#,
        size = p.disk_file_size,
        cap = p.capacity,
        pop = p.populated,
        fw = p.firmware.name(),
    )
}
