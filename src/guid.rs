//! GUIDs (RFC 4122 UUIDs) as one type with one text form.
//!
//! A [`Guid`] holds its 16 bytes in RFC 4122 order (the order of the text form). On disk the
//! formats disagree: VHD stores that order as is, while VHDX and GPT store Microsoft's
//! mixed-endian order (the first three fields little-endian, the last two as bytes). Readers
//! and writers convert at the edge with [`Guid::from_mixed_endian`] / [`Guid::to_mixed_endian`]
//! or [`Guid::from_bytes`] / [`Guid::to_bytes`]; everything else (comparison, display, JSON)
//! sees one value.

use std::fmt;

/// A GUID, held in RFC 4122 byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid([u8; 16]);

impl Guid {
    /// The all-zero GUID.
    pub const NIL: Guid = Guid([0; 16]);

    /// The GUID written `a-b-c-d[0..2]-d[2..8]` (as specifications print them).
    pub const fn from_fields(a: u32, b: u16, c: u16, d: [u8; 8]) -> Guid {
        let a = a.to_be_bytes();
        let b = b.to_be_bytes();
        let c = c.to_be_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5],
            d[6], d[7],
        ])
    }

    /// From 16 bytes in RFC 4122 order (VHD, qcow2/VMDK UUIDs, [`crate::context`]).
    pub const fn from_bytes(b: [u8; 16]) -> Guid {
        Guid(b)
    }

    /// The 16 bytes in RFC 4122 order.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// From 16 bytes in Microsoft's mixed-endian order (VHDX, GPT).
    pub const fn from_mixed_endian(b: [u8; 16]) -> Guid {
        Guid(swap_fields(b))
    }

    /// The 16 bytes in Microsoft's mixed-endian order (VHDX, GPT).
    pub const fn to_mixed_endian(self) -> [u8; 16] {
        swap_fields(self.0)
    }

    /// True for the all-zero GUID.
    pub fn is_nil(self) -> bool {
        self.0 == [0; 16]
    }

    /// `{xxxxxxxx-...}`, the braced form VHDX parent locators store.
    pub fn braced(self) -> String {
        format!("{{{self}}}")
    }

    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, optionally in braces, any case.
    pub fn parse(s: &str) -> Option<Guid> {
        let s = s.trim();
        let s = s
            .strip_prefix('{')
            .and_then(|x| x.strip_suffix('}'))
            .unwrap_or(s);
        let groups: Vec<&str> = s.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lens != [8, 4, 4, 4, 12] {
            return None;
        }
        let hex: String = groups.concat();
        let mut b = [0u8; 16];
        for (i, out) in b.iter_mut().enumerate() {
            *out = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Guid(b))
    }
}

/// Reverses the first three fields: RFC 4122 order <-> mixed-endian order.
const fn swap_fields(g: [u8; 16]) -> [u8; 16] {
    [
        g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13],
        g[14], g[15],
    ]
}

impl fmt::Display for Guid {
    /// Lower-case `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: [u8; 16] = [
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
        0x10,
    ];

    #[test]
    fn one_text_form_two_disk_orders() {
        let g = Guid::from_bytes(SAMPLE);
        assert_eq!(g.to_string(), "01020304-0506-0708-090a-0b0c0d0e0f10");
        let m = Guid::from_mixed_endian(SAMPLE);
        assert_eq!(m.to_string(), "04030201-0605-0807-090a-0b0c0d0e0f10");
        assert_eq!(m.to_mixed_endian(), SAMPLE);
        assert_eq!(g.braced(), "{01020304-0506-0708-090a-0b0c0d0e0f10}");
    }

    #[test]
    fn fields_as_specifications_print_them() {
        // MS-VHDX: the BAT region is 2DC27766-F623-4200-9D64-115E9BFD4A08, stored 66 77 C2 2D ...
        let bat = Guid::from_fields(
            0x2DC2_7766,
            0xF623,
            0x4200,
            [0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08],
        );
        assert_eq!(bat.to_string(), "2dc27766-f623-4200-9d64-115e9bfd4a08");
        assert_eq!(bat.to_mixed_endian()[..4], [0x66, 0x77, 0xC2, 0x2D]);
        assert_eq!(
            Guid::parse("{2DC27766-F623-4200-9D64-115E9BFD4A08}"),
            Some(bat)
        );
        assert_eq!(Guid::parse("2dc27766-f623-4200-9d64-115e9bfd4a0"), None);
        assert_eq!(Guid::parse("2dc27766f-623-4200-9d64-115e9bfd4a08"), None);
        assert!(Guid::NIL.is_nil() && !bat.is_nil());
    }
}
