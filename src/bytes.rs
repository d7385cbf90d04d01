//! Fixed-width integers and UTF-16 names read from on-disk bytes, in one place for every format
//! (VHD and APM are big-endian, VHDX and GPT little-endian, ISO 9660 both).
//!
//! The readers never panic: a field that lies past the end of `b` reads as 0. Callers check
//! structure lengths first; this is the last line of defence, not the check.

fn array<const N: usize>(b: &[u8], o: usize) -> [u8; N] {
    let mut x = [0u8; N];
    if let Some(s) = o.checked_add(N).and_then(|end| b.get(o..end)) {
        x.copy_from_slice(s);
    }
    x
}

/// Little-endian u16 at `o`.
pub fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(array(b, o))
}
/// Little-endian u32 at `o`.
pub fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(array(b, o))
}
/// Little-endian u64 at `o`.
pub fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(array(b, o))
}
/// Big-endian u16 at `o`.
pub fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes(array(b, o))
}
/// Big-endian u32 at `o`.
pub fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes(array(b, o))
}
/// Big-endian u64 at `o`.
pub fn be64(b: &[u8], o: usize) -> u64 {
    u64::from_be_bytes(array(b, o))
}

/// UTF-16LE bytes decoded up to the first NUL (lossy).
pub fn utf16le(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endianness_and_out_of_range() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(le16(&b, 0), 0x0201);
        assert_eq!(be16(&b, 0), 0x0102);
        assert_eq!(le32(&b, 4), 0x0807_0605);
        assert_eq!(be32(&b, 4), 0x0506_0708);
        assert_eq!(le64(&b, 0), 0x0807_0605_0403_0201);
        assert_eq!(be64(&b, 0), 0x0102_0304_0506_0708);
        assert_eq!(le32(&b, 6), 0);
        assert_eq!(be64(&b, usize::MAX), 0);
        assert_eq!(utf16le(&[b'h', 0, b'i', 0, 0, 0, b'x', 0]), "hi");
    }
}
