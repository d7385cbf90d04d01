//! ISO 9660 (with Rock Ridge, Joliet and El Torito): reading, building, remastering.

// reading, inspection and remaster patching
pub mod boot;
pub mod info;
pub mod layout;
pub mod patch;
pub mod read;
pub mod zisofs;

// building from a tree
pub mod build;

/// `s` in ISO 9660 d-characters (upper-case A-Z, 0-9, `_`; anything else becomes `_`), cut to
/// `max` characters.
pub(crate) fn d_chars(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            let u = c.to_ascii_uppercase();
            if u.is_ascii_uppercase() || u.is_ascii_digit() || u == '_' {
                u
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(max);
    out
}
