//! Dates: one civil-date conversion (proleptic Gregorian, UTC) and the encodings the formats
//! store, each clamped the same way (to the ends of its range, never wrapped).

/// (year, month, day, hour, minute, second) in UTC of a Unix time.
pub fn civil(t: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (secs / 3600) as u32,
        (secs / 60 % 60) as u32,
        (secs % 60) as u32,
    )
}

/// ISO 9660 directory record date (ECMA-119 9.1.5: 7 bytes, years since 1900, UTC offset 0)
/// of a Unix time; before 1900 or after 2155 it is the first or last date the field can hold.
pub fn iso_dir_date(t: i64) -> [u8; 7] {
    let (y, mo, d, h, mi, s) = civil(t);
    if y < 1900 {
        return [0, 1, 1, 0, 0, 0, 0];
    }
    if y > 2155 {
        return [255, 12, 31, 23, 59, 59, 0];
    }
    [
        (y - 1900) as u8,
        mo as u8,
        d as u8,
        h as u8,
        mi as u8,
        s as u8,
        0,
    ]
}

/// [`iso_dir_date`] of an unsigned Unix time (seconds past `i64::MAX` are the last date).
pub fn iso_dir_date_u(t: u64) -> [u8; 7] {
    iso_dir_date(i64::try_from(t).unwrap_or(i64::MAX))
}

/// ISO 9660 volume descriptor date (ECMA-119 8.4.26.1: 16 ASCII digits `YYYYMMDDHHMMSScc` and
/// a UTC offset byte 0); before 1970 it is the epoch, after 9999 the year is 9999.
pub fn iso_volume_date(t: i64) -> [u8; 17] {
    let (y, mo, d, h, mi, s) = civil(t.max(0));
    let y = y.min(9999);
    let txt = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}00");
    let mut out = [0u8; 17];
    out[..16].copy_from_slice(txt.as_bytes());
    out
}

/// First and last Unix times a FAT date can hold (1980-01-01 to 2107-12-31 23:59:59).
pub const FAT_RANGE: (i64, i64) = (315_532_800, 4_354_819_199);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(1_700_000_000), (2023, 11, 14, 22, 13, 20));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(FAT_RANGE.1), (2107, 12, 31, 23, 59, 59));
        assert_eq!(&iso_volume_date(1_700_000_000)[..16], b"2023111422132000");
        assert_eq!(iso_dir_date(1_700_000_000), [123, 11, 14, 22, 13, 20, 0]);
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(iso_dir_date_u(0), [70, 1, 1, 0, 0, 0, 0]);
        assert_eq!(iso_dir_date_u(1565000000), [119, 8, 5, 10, 13, 20, 0]);
    }

    #[test]
    fn out_of_range_dates_clamp_to_the_field_ends() {
        assert_eq!(iso_dir_date(-2_300_000_000), [0, 1, 1, 0, 0, 0, 0]);
        assert_eq!(iso_dir_date_u(u64::MAX), [255, 12, 31, 23, 59, 59, 0]);
        assert_eq!(&iso_volume_date(-5)[..16], b"1970010100000000");
    }
}
