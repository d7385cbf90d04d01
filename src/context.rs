//! Build context: the clock and the source of identifiers, injected so outputs are reproducible.
//!
//! With `SOURCE_DATE_EPOCH` set, every timestamp is that epoch and every GUID is derived from it
//! and a label (same inputs, same bytes). Without it, timestamps are the current time and GUIDs
//! are random.

use crate::err;
use crate::error::Result;
use crate::guid::Guid;
use sha2::{Digest, Sha256};

/// Clock and identity source for one build.
#[derive(Debug, Clone)]
pub struct BuildContext {
    epoch: u64,
    seed: [u8; 32],
    deterministic: bool,
}

impl BuildContext {
    /// Reads `SOURCE_DATE_EPOCH`; a malformed value is an error, not ignored.
    pub fn from_env() -> Result<Self> {
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) => {
                let epoch: u64 = v.trim().parse().map_err(|_| {
                    err!(
                        InvalidArgument,
                        "SOURCE_DATE_EPOCH must be a whole number of seconds, got {v:?}"
                    )
                })?;
                Ok(Self::fixed(epoch))
            }
            Err(_) => Ok(Self::random()),
        }
    }

    /// A deterministic context at `epoch` (tests, reproducible builds).
    pub fn fixed(epoch: u64) -> Self {
        let seed: [u8; 32] =
            Sha256::digest(format!("isotool SOURCE_DATE_EPOCH={epoch}").as_bytes()).into();
        BuildContext {
            epoch,
            seed,
            deterministic: true,
        }
    }

    /// A context with the current time and random identifiers.
    pub fn random() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut seed = [0u8; 32];
        let got = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed));
        if got.is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            seed = Sha256::digest(format!("{nanos}-{}", std::process::id()).as_bytes()).into();
        }
        BuildContext {
            epoch: now,
            seed,
            deterministic: false,
        }
    }

    /// Seconds since the Unix epoch to stamp into outputs.
    pub fn now(&self) -> u64 {
        self.epoch
    }

    /// True when built from `SOURCE_DATE_EPOCH` (or [`BuildContext::fixed`]).
    pub fn is_deterministic(&self) -> bool {
        self.deterministic
    }

    /// Bytes derived from the context and a label (stable for a deterministic context).
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.seed);
        h.update(label.as_bytes());
        h.finalize().into()
    }

    /// A version-4-shaped [`Guid`] derived from the context and `label`: different labels give
    /// different GUIDs; the same label in the same context gives the same.
    pub fn new_guid(&self, label: &str) -> Guid {
        Guid::from_bytes(self.guid(label))
    }

    /// [`BuildContext::new_guid`] as 16 bytes in RFC 4122 byte order.
    pub fn guid(&self, label: &str) -> [u8; 16] {
        let d = self.derive(label);
        let mut g = [0u8; 16];
        g.copy_from_slice(&d[..16]);
        g[6] = (g[6] & 0x0f) | 0x40;
        g[8] = (g[8] & 0x3f) | 0x80;
        g
    }
}

/// Formats 16 bytes in RFC 4122 order as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`
/// (the [`Guid`] text form; kept for callers holding bytes).
pub fn guid_string(g: &[u8; 16]) -> String {
    Guid::from_bytes(*g).to_string()
}

/// Formats a GUID stored in Microsoft mixed-endian order (first three fields little-endian),
/// as VHDX and GPT store them (the [`Guid`] text form).
pub fn guid_string_le(g: &[u8; 16]) -> String {
    Guid::from_mixed_endian(*g).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_guids() {
        let a = BuildContext::fixed(1_600_000_000);
        let b = BuildContext::fixed(1_600_000_000);
        assert_eq!(a.guid("x"), b.guid("x"));
        assert_ne!(a.guid("x"), a.guid("y"));
        assert_ne!(a.guid("x"), BuildContext::fixed(1).guid("x"));
        assert_eq!(a.guid("x")[6] >> 4, 4);
        assert_eq!(a.now(), 1_600_000_000);
    }

    #[test]
    fn random_contexts_differ() {
        assert_ne!(
            BuildContext::random().guid("x"),
            BuildContext::random().guid("x")
        );
    }

    #[test]
    fn guid_formats() {
        let g = [
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
            0x0f, 0x10,
        ];
        assert_eq!(guid_string(&g), "01020304-0506-0708-090a-0b0c0d0e0f10");
        assert_eq!(guid_string_le(&g), "04030201-0605-0807-090a-0b0c0d0e0f10");
    }
}
