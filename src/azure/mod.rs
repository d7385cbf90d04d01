//! Azure: page-blob uploads of fixed VHDs, images and VMs through ARM, service-principal auth.
//!
//! - [`credentials`]: connection strings, SAS URLs, bearer tokens, the `AZURE_*` environment.
//! - [`sharedkey`]: the Shared Key request signature (canonicalized headers and resource).
//! - [`http`]: one HTTP(S) transport with retries, back-off and `Retry-After`.
//! - [`pageblob`]: the Blob service calls an upload needs (Put Blob, Put Page, Get Page Ranges...).
//! - [`stream`]: the upload pipeline (reader, senders, hashers; memory bounded in bytes).
//! - [`upload`]: streams any [`crate::disk::DiskImage`] as an Azure fixed VHD, sparse, parallel,
//!   resumable, hashed (MD5 + SHA-256) in stream order.
//! - [`auth`]: OAuth2 client credentials (certificate JWT assertion or secret).
//! - [`arm`]: Azure Resource Manager: images, networks, VMs, long-running operations.
//!
//! Secrets ([`secret::Secret`]) never reach an error or a log: they are masked by
//! [`secret::Redactor`] wherever a server message or URL is quoted.

pub mod arm;
pub mod auth;
pub mod credentials;
pub mod http;
pub mod pageblob;
pub mod pfx;
pub mod secret;
pub mod sharedkey;
pub mod stream;
pub mod upload;

pub use credentials::{StorageAuth, StorageTarget};
pub use secret::Secret;
