//! Helpers shared by the WAL's integration tests: payloads derived from the index, so
//! that any entry read back can be checked, and small segments to exercise rolling.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use fleet_wal::{Entry, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, WalConfig};

/// 0 to 511 bytes, a pseudo-random function of `index` (never all zeros when non-empty).
pub fn payload(index: u64) -> Vec<u8> {
    let len = (index.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 55) as usize;
    let mut x = index ^ 0xA076_1D64_78BD_642F;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as u8) | 1
        })
        .collect()
}

pub fn entries(indexes: std::ops::Range<u64>) -> Vec<Entry> {
    indexes.map(|i| Entry::new(i, payload(i))).collect()
}

pub fn small_segments(segment_size: u64) -> WalConfig {
    WalConfig {
        segment_size,
        ..WalConfig::default()
    }
}

/// Segment files in the directory, in index order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

/// Byte offset of the record of `index` in a segment starting at `first` whose
/// payloads are `payload(i)`.
pub fn record_offset(first: u64, index: u64) -> u64 {
    SEGMENT_HEADER_LEN
        + (first..index)
            .map(|i| RECORD_HEADER_LEN + payload(i).len() as u64)
            .sum::<u64>()
}

/// Checks that the log holds exactly `range`, each entry with its derived payload.
pub fn assert_holds(wal: &fleet_wal::Wal, range: std::ops::RangeInclusive<u64>) {
    let read = wal.read(range.clone()).unwrap();
    assert_eq!(
        read.len() as u64,
        range.end() + 1 - range.start(),
        "entries {range:?}"
    );
    for (entry, index) in read.iter().zip(range) {
        assert_eq!(entry.index, index);
        assert_eq!(entry.payload, payload(index), "payload of {index}");
    }
}
