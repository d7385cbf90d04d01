//! Azure Resource Manager: images from a VHD blob, and a VM (virtual network, public IP, network
//! security group, NIC, VM with custom data) from an image, each a PUT whose long-running operation is polled through
//! `Azure-AsyncOperation` (or `Location`) and `Retry-After` until Succeeded, Failed or Canceled.
//!
//! Spec: "Track asynchronous Azure operations" (ARM), Compute REST API `Images - Create Or
//! Update` and `Virtual Machines - Create Or Update` (2024-03-01), Network REST API (2023-09-01).
//! With `dry_run`, nothing is sent: every request is recorded (secrets masked) for the caller to
//! print.

use super::http::{Http, Request, Response};
use super::secret::{MASK, Secret};
use crate::err;
use crate::error::{Error, Result};
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Public-cloud ARM endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://management.azure.com";
/// Compute API version.
pub const COMPUTE_API: &str = "2024-03-01";
/// Network API version.
pub const NETWORK_API: &str = "2023-09-01";
/// The smallest general-purpose size that runs Generation 2 Linux images (1 vCPU, 1 GiB).
pub const DEFAULT_VM_SIZE: &str = "Standard_B1s";

/// A request as recorded (URL and body with secrets masked).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LoggedRequest {
    /// Method.
    pub method: String,
    /// URL.
    pub url: String,
    /// Body (JSON or form), masked; empty when none.
    pub body: String,
}

/// An ARM client for one subscription.
pub struct ArmClient {
    http: Http,
    endpoint: String,
    subscription: String,
    token: Secret,
    dry_run: bool,
    /// Delay between polls when the service gives no `Retry-After`.
    pub poll_interval: Duration,
    /// Longest wait for one operation.
    pub timeout: Duration,
    log: Mutex<Vec<LoggedRequest>>,
}

/// Masks secrets inside an ARM body (custom data may carry secrets; passwords do).
pub fn mask_body(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(os) = v.pointer_mut("/properties/osProfile")
        && let Some(o) = os.as_object_mut()
    {
        for k in ["customData", "adminPassword"] {
            if let Some(x) = o.get_mut(k) {
                let n = x.as_str().map_or(0, str::len);
                *x = Value::String(format!("{MASK} ({n} characters)"));
            }
        }
    }
    v
}

impl ArmClient {
    /// A client; `token` is the bearer for ARM (ignored when `dry_run`).
    pub fn new(
        http: Http,
        endpoint: &str,
        subscription: &str,
        token: Secret,
        dry_run: bool,
    ) -> Self {
        ArmClient {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            subscription: subscription.to_string(),
            token,
            dry_run,
            poll_interval: Duration::from_secs(5),
            timeout: Duration::from_secs(30 * 60),
            log: Mutex::new(Vec::new()),
        }
    }

    /// Requests made (or, dry-run, that would have been made), in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Records a request made elsewhere (the token request), masked.
    pub fn record(&self, method: &str, url: &str, body: &str) {
        let red = self.http.redactor();
        if let Ok(mut l) = self.log.lock() {
            l.push(LoggedRequest {
                method: method.into(),
                url: red.redact(url),
                body: red.redact(body),
            });
        }
    }

    /// `/subscriptions/{sub}/resourceGroups/{rg}/providers/{provider}/{name}`.
    pub fn resource_id(&self, rg: &str, provider: &str, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{rg}/providers/{provider}/{name}",
            self.subscription
        )
    }

    fn url(&self, id: &str, api: &str) -> String {
        format!("{}{id}?api-version={api}", self.endpoint)
    }

    fn call(&self, method: &'static str, url: &str, body: Option<&Value>) -> Result<Response> {
        let text = body.map(Value::to_string).unwrap_or_default();
        let shown = body.map(|b| mask_body(b).to_string()).unwrap_or_default();
        self.record(method, url, &shown);
        if self.dry_run {
            return Ok(Response {
                status: 200,
                headers: vec![],
                body: b"{}".to_vec(),
            });
        }
        let mut headers = vec![
            (
                "Authorization".to_string(),
                format!("Bearer {}", self.token.expose()),
            ),
            ("Accept".to_string(), "application/json".to_string()),
        ];
        if body.is_some() {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        self.http.send(&|| {
            Ok(Request {
                method,
                url: url.to_string(),
                headers: headers.clone(),
                body: text.as_bytes(),
            })
        })
    }

    /// The error of a failed ARM response: Azure's `error.code` and `error.message`.
    fn arm_error(&self, r: &Response, what: &str) -> Error {
        let v = crate::limits::parse_json(&r.body, "ARM's error").unwrap_or_default();
        let code = v
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        let msg = v
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let msg = self.http.redactor().redact(msg);
        match r.status {
            401 => err!(
                AuthFailed,
                "{what}: ARM refused the token (HTTP 401, {code}): {msg}"
            ),
            403 => err!(
                PermissionDenied,
                "{what}: not allowed (HTTP 403, {code}): {msg}"
            ),
            404 => err!(NotFound, "{what}: not found (HTTP 404, {code}): {msg}"),
            s => err!(Remote, "{what}: HTTP {s} {code}: {msg}"),
        }
    }

    /// PUTs a resource and waits for its operation; returns the final resource.
    pub fn put_and_wait(&self, id: &str, api: &str, body: &Value, what: &str) -> Result<Value> {
        let url = self.url(id, api);
        let r = self.call("PUT", &url, Some(body))?;
        if !r.ok() {
            return Err(self.arm_error(&r, what));
        }
        let op = r
            .header("azure-asyncoperation")
            .map(|u| (u.to_string(), true))
            .or_else(|| {
                (r.status == 202)
                    .then(|| r.header("location").map(|u| (u.to_string(), false)))
                    .flatten()
            });
        if let Some((op_url, async_op)) = op {
            self.wait(&op_url, async_op, r.retry_after(), what)?;
        }
        let r = self.call("GET", &url, None)?;
        if !r.ok() {
            return Err(self.arm_error(&r, what));
        }
        crate::limits::parse_json(&r.body, &format!("{what}: ARM's response"))
    }

    /// Polls an operation until it ends.
    fn wait(
        &self,
        op_url: &str,
        async_op: bool,
        mut delay: Option<Duration>,
        what: &str,
    ) -> Result<()> {
        let t0 = Instant::now();
        loop {
            if t0.elapsed() > self.timeout {
                return Err(err!(
                    OperationFailed,
                    "{what}: still running after {:?}",
                    self.timeout
                ));
            }
            std::thread::sleep(delay.unwrap_or(self.poll_interval));
            let r = self.call("GET", op_url, None)?;
            if !r.ok() && r.status != 202 {
                return Err(self.arm_error(&r, what));
            }
            delay = r.retry_after();
            if !async_op {
                if r.status == 202 {
                    continue;
                }
                return Ok(());
            }
            let v = crate::limits::parse_json(&r.body, &format!("{what}: ARM's operation"))?;
            match v["status"]
                .as_str()
                .unwrap_or(if self.dry_run { "Succeeded" } else { "" })
            {
                "Succeeded" => return Ok(()),
                "Failed" | "Canceled" => {
                    let code = v
                        .pointer("/error/code")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown");
                    let msg = v
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    return Err(err!(
                        OperationFailed,
                        "{what}: the operation ended {} ({code}): {}",
                        v["status"].as_str().unwrap_or_default(),
                        self.http.redactor().redact(msg)
                    ));
                }
                _ => {}
            }
        }
    }
}

/// Hyper-V generation of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Generation {
    /// BIOS.
    V1,
    /// UEFI.
    V2,
}

/// What `image create` makes.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Resource group.
    pub resource_group: String,
    /// Image name.
    pub name: String,
    /// Region.
    pub location: String,
    /// The VHD blob's URL (no SAS).
    pub blob_url: String,
    /// Generation.
    pub generation: Generation,
    /// `Linux` or `Windows`.
    pub os_type: String,
}

/// The body of `Images - Create Or Update`.
pub fn image_body(s: &ImageSpec) -> Value {
    json!({
        "location": s.location,
        "properties": {
            "hyperVGeneration": match s.generation { Generation::V1 => "V1", Generation::V2 => "V2" },
            "storageProfile": {
                "osDisk": {
                    "osType": s.os_type,
                    "osState": "Generalized",
                    "blobUri": s.blob_url,
                    "caching": "ReadWrite",
                    "storageAccountType": "Standard_LRS"
                }
            }
        }
    })
}

/// Creates (or updates) an image and waits; returns the image's resource id.
pub fn create_image(arm: &ArmClient, s: &ImageSpec) -> Result<String> {
    let id = arm.resource_id(&s.resource_group, "Microsoft.Compute/images", &s.name);
    let what = format!("creating image '{}'", s.name);
    let v = arm.put_and_wait(&id, COMPUTE_API, &image_body(s), &what)?;
    Ok(v["id"].as_str().map_or(id, str::to_string))
}

/// What `launch azure` makes.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Resource group.
    pub resource_group: String,
    /// VM name (also the computer name and the prefix of the network resources).
    pub name: String,
    /// Region.
    pub location: String,
    /// Image resource id.
    pub image_id: String,
    /// VM size.
    pub size: String,
    /// Admin user.
    pub admin_username: String,
    /// SSH public key (OpenSSH one-line form).
    pub ssh_public_key: String,
    /// Custom data (the `#cloud-config` document), sent base64.
    pub custom_data: String,
    /// Source address prefix allowed to reach SSH (port 22) through the public IP (`*`: any, as
    /// `az vm create` opens it).
    pub ssh_source: String,
}

/// A resource to create: id, API version, body.
pub type Resource = (String, &'static str, Value);

/// The network resources of a VM: virtual network, public IP (Standard SKU, static), network
/// security group (SSH in; a Standard public IP is closed to inbound traffic without one) and
/// NIC wired to the three.
pub fn network_bodies(arm: &ArmClient, s: &VmSpec) -> [Resource; 4] {
    let rg = &s.resource_group;
    let id = |provider: &str, suffix: &str| {
        arm.resource_id(rg, provider, &format!("{}-{suffix}", s.name))
    };
    let vnet_id = id("Microsoft.Network/virtualNetworks", "vnet");
    let ip_id = id("Microsoft.Network/publicIPAddresses", "ip");
    let nsg_id = id("Microsoft.Network/networkSecurityGroups", "nsg");
    let nic_id = id("Microsoft.Network/networkInterfaces", "nic");
    let vnet = json!({
        "location": s.location,
        "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": "default", "properties": {"addressPrefix": "10.0.0.0/24"}}]
        }
    });
    let ip = json!({
        "location": s.location,
        "sku": {"name": "Standard"},
        "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"}
    });
    let nsg = json!({
        "location": s.location,
        "properties": {"securityRules": [{
            "name": "ssh",
            "properties": {
                "priority": 1000,
                "direction": "Inbound",
                "access": "Allow",
                "protocol": "Tcp",
                "sourceAddressPrefix": s.ssh_source,
                "sourcePortRange": "*",
                "destinationAddressPrefix": "*",
                "destinationPortRange": "22"
            }
        }]}
    });
    let nic = json!({
        "location": s.location,
        "properties": {
            "networkSecurityGroup": {"id": nsg_id},
            "ipConfigurations": [{
                "name": "ipconfig1",
                "properties": {
                    "subnet": {"id": format!("{vnet_id}/subnets/default")},
                    "privateIPAllocationMethod": "Dynamic",
                    "publicIPAddress": {"id": ip_id}
                }
            }]
        }
    });
    [
        (vnet_id, NETWORK_API, vnet),
        (ip_id, NETWORK_API, ip),
        (nsg_id, NETWORK_API, nsg),
        (nic_id, NETWORK_API, nic),
    ]
}

/// The body of the VM on the NIC `nic_id`, with its resource id.
pub fn vm_body(arm: &ArmClient, s: &VmSpec, nic_id: &str) -> Resource {
    use base64::Engine;
    let vm_id = arm.resource_id(
        &s.resource_group,
        "Microsoft.Compute/virtualMachines",
        &s.name,
    );
    let vm = json!({
        "location": s.location,
        "properties": {
            "hardwareProfile": {"vmSize": s.size},
            "storageProfile": {
                "imageReference": {"id": s.image_id},
                "osDisk": {"createOption": "FromImage", "managedDisk": {"storageAccountType": "Standard_LRS"}}
            },
            "osProfile": {
                "computerName": s.name,
                "adminUsername": s.admin_username,
                "customData": base64::engine::general_purpose::STANDARD.encode(&s.custom_data),
                "linuxConfiguration": {
                    "disablePasswordAuthentication": true,
                    "ssh": {"publicKeys": [{
                        "path": format!("/home/{}/.ssh/authorized_keys", s.admin_username),
                        "keyData": s.ssh_public_key.trim()
                    }]}
                }
            },
            "networkProfile": {"networkInterfaces": [{"id": nic_id}]},
            "diagnosticsProfile": {"bootDiagnostics": {"enabled": true}}
        }
    });
    (vm_id, COMPUTE_API, vm)
}

/// A VM that runs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Launched {
    /// The VM's resource id.
    pub vm_id: String,
    /// Its public IP address, as ARM reported it.
    pub public_ip: Option<String>,
}

/// Creates the network, the public IP, the NSG, the NIC and the VM, then waits until the VM
/// runs.
pub fn launch_vm(arm: &ArmClient, s: &VmSpec) -> Result<Launched> {
    let net = network_bodies(arm, s);
    let vm = vm_body(arm, s, &net[3].0);
    let mut public_ip = None;
    for (i, (id, api, body)) in net.iter().chain([&vm]).enumerate() {
        let kind = id.rsplit('/').nth(1).unwrap_or("resource");
        let what = format!(
            "creating {kind} '{}'",
            id.rsplit('/').next().unwrap_or_default()
        );
        let v = arm.put_and_wait(id, api, body, &what)?;
        if i == 1 {
            public_ip = v
                .pointer("/properties/ipAddress")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
    }
    wait_running(arm, &vm.0)?;
    Ok(Launched {
        vm_id: vm.0,
        public_ip,
    })
}

/// Polls the VM's instance view until `PowerState/running`.
fn wait_running(arm: &ArmClient, vm_id: &str) -> Result<()> {
    let url = arm.url(&format!("{vm_id}/instanceView"), COMPUTE_API);
    let t0 = Instant::now();
    loop {
        let r = arm.call("GET", &url, None)?;
        if !r.ok() {
            return Err(arm.arm_error(&r, "reading the VM's instance view"));
        }
        let v = crate::limits::parse_json(&r.body, "the VM's instance view")?;
        let codes: Vec<&str> = v["statuses"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["code"].as_str()).collect())
            .unwrap_or_default();
        if arm.dry_run || codes.contains(&"PowerState/running") {
            return Ok(());
        }
        if let Some(c) = codes
            .iter()
            .find(|c| c.starts_with("ProvisioningState/failed"))
        {
            return Err(err!(OperationFailed, "the VM did not start: {c}"));
        }
        if t0.elapsed() > arm.timeout {
            return Err(err!(
                OperationFailed,
                "the VM is not running after {:?}: {codes:?}",
                arm.timeout
            ));
        }
        std::thread::sleep(r.retry_after().unwrap_or(arm.poll_interval));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_data_and_passwords_masked() {
        let v = json!({"properties": {"osProfile": {"customData": "c2VjcmV0", "adminPassword": "pw", "adminUsername": "u"}}});
        let m = mask_body(&v);
        assert_eq!(
            m.pointer("/properties/osProfile/customData").unwrap(),
            "*** (8 characters)"
        );
        assert_eq!(
            m.pointer("/properties/osProfile/adminPassword").unwrap(),
            "*** (2 characters)"
        );
        assert_eq!(
            m.pointer("/properties/osProfile/adminUsername").unwrap(),
            "u"
        );
    }
}
