//! Small FAT12/FAT16 images holding a few root-level files (the NoCloud `cidata` seed), written
//! with the `fatfs` crate: deterministic volume serial and dates, FAT type chosen and checked.

use crate::err;
use crate::error::{IoContext, Result};
use crate::output::AtomicOutput;
use fatfs::{Date, DateTime, FatType, FileSystem, FormatVolumeOptions, FsOptions, Time};
use std::io::Write;

/// fatfs asks a `'static` time provider for every date it writes; ours is fixed per image.
#[derive(Debug)]
struct FixedTime(DateTime);

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> DateTime {
        self.0
    }
}

fn fat_datetime(t: i64) -> DateTime {
    // FAT dates run from 1980 to 2107, local time; we store UTC.
    let (y, mo, d, h, mi, s) =
        crate::date::civil(t.clamp(crate::date::FAT_RANGE.0, crate::date::FAT_RANGE.1));
    DateTime {
        date: Date {
            year: y as u16,
            month: mo as u16,
            day: d as u16,
        },
        time: Time {
            hour: h as u16,
            min: mi as u16,
            sec: (s & !1) as u16,
            millis: 0,
        },
    }
}

/// Picks image size, FAT type and cluster size for `data` bytes of files.
fn geometry(files: &[(String, Vec<u8>)]) -> Result<(u64, FatType, u32)> {
    let data: u64 = files
        .iter()
        .map(|(_, d)| (d.len() as u64).div_ceil(2048) * 2048)
        .sum();
    let want = (data + data / 8 + (128 << 10))
        .max(1 << 20)
        .div_ceil(64 << 10)
        * (64 << 10);
    if want <= 2 << 20 {
        return Ok((want, FatType::Fat12, 512));
    }
    let mut cluster: u64 = 512;
    while want / cluster > 65_000 {
        cluster *= 2;
    }
    if cluster > 32 << 10 {
        return Err(err!(
            LimitExceeded,
            "{data} bytes of files do not fit a FAT16 seed (at most about 2 GiB)"
        ));
    }
    let size = want.max(4400 * cluster).div_ceil(64 << 10) * (64 << 10);
    Ok((size, FatType::Fat16, cluster as u32))
}

/// Writes a FAT image labelled `label` (up to 11 bytes, written as given) holding `files` at
/// its root, into `out`. Returns the image size.
pub fn write_fat(
    out: &AtomicOutput,
    label: &str,
    volume_id: u32,
    mtime: i64,
    files: &[(String, Vec<u8>)],
) -> Result<u64> {
    if label.is_empty() || label.len() > 11 || !label.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(err!(
            InvalidArgument,
            "FAT label {label:?} must be 1 to 11 ASCII characters"
        ));
    }
    let mut lab = [b' '; 11];
    lab[..label.len()].copy_from_slice(label.as_bytes());
    let (size, fat_type, cluster) = geometry(files)?;
    let path = out.tmp_path().to_path_buf();
    let f = out.file();
    f.set_len(0).ctx(&path, "truncating the output")?;
    f.set_len(size).ctx(&path, "sizing the FAT image")?;
    let mut disk = f;
    std::io::Seek::seek(&mut disk, std::io::SeekFrom::Start(0)).ctx(&path, "seeking")?;
    fatfs::format_volume(
        disk,
        FormatVolumeOptions::new()
            .fat_type(fat_type)
            .bytes_per_cluster(cluster)
            .bytes_per_sector(512)
            .total_sectors((size / 512) as u32)
            .volume_id(volume_id)
            .volume_label(lab),
    )
    .ctx(&path, "formatting the FAT image")?;
    std::io::Seek::seek(&mut disk, std::io::SeekFrom::Start(0)).ctx(&path, "seeking")?;
    let clock: &'static FixedTime = Box::leak(Box::new(FixedTime(fat_datetime(mtime))));
    let fs = FileSystem::new(&mut disk, FsOptions::new().time_provider(clock))
        .ctx(&path, "opening the new FAT image")?;
    if fs.fat_type() != fat_type {
        return Err(err!(
            Unsupported,
            "asked for {fat_type:?}, the formatter made {:?}",
            fs.fat_type()
        )
        .with_path(&path));
    }
    {
        let root = fs.root_dir();
        for (name, data) in files {
            let mut file = root
                .create_file(name)
                .ctx(&path, "creating a file in the FAT image")?;
            file.truncate()
                .ctx(&path, "creating a file in the FAT image")?;
            file.write_all(data)
                .ctx(&path, "writing a file into the FAT image")?;
            file.flush()
                .ctx(&path, "writing a file into the FAT image")?;
        }
    }
    fs.unmount().ctx(&path, "closing the FAT image")?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_picks_fat12_then_fat16() {
        let small = vec![("a".to_string(), vec![0u8; 1000])];
        assert_eq!(geometry(&small).unwrap(), (1 << 20, FatType::Fat12, 512));
        let big = vec![("a".to_string(), vec![0u8; 3 << 20])];
        let (size, t, c) = geometry(&big).unwrap();
        assert_eq!(t, FatType::Fat16);
        assert!(size / u64::from(c) >= 4400 && size / u64::from(c) <= 65_000);
    }

    #[test]
    fn dates_are_clamped_to_fat_range() {
        let d = fat_datetime(0);
        assert_eq!((d.date.year, d.date.month, d.date.day), (1980, 1, 1));
        let d = fat_datetime(1_700_000_000);
        assert_eq!((d.date.year, d.time.sec), (2023, 20));
    }
}
