//! Damage done by hand to segment files: a torn tail is cut and the WAL opens; a flipped
//! byte anywhere before the tail, a missing segment or a damaged meta record fails open
//! with `Corrupt` naming the file and the exact offset.
#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions: a failed unwrap is a failed test

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{assert_holds, entries, payload, record_offset, segment_files, small_segments};
use fleet_wal::{RECORD_HEADER_LEN, Wal, WalConfig, WalError, segment_file_name};

fn write_log(dir: &Path, config: &WalConfig, range: std::ops::Range<u64>) {
    let (wal, _) = Wal::open(dir, config.clone()).unwrap();
    let end = range.end;
    for i in range.step_by(5) {
        wal.append(entries(i..(i + 5).min(end)))
            .unwrap()
            .wait()
            .unwrap();
    }
    wal.close().unwrap();
}

fn flip_byte(path: &Path, offset: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0x20], offset).unwrap();
}

fn expect_corrupt(dir: &Path, config: WalConfig) -> (PathBuf, u64, String) {
    let err = Wal::open(dir, config).expect_err("open must refuse a corrupted WAL");
    let message = err.to_string();
    match err {
        WalError::Corrupt {
            file,
            offset,
            reason,
        } => {
            assert!(
                message.contains(&file.display().to_string())
                    && message.contains(&offset.to_string())
            );
            (file, offset, reason)
        }
        other => panic!("expected Corrupt, got {other}"),
    }
}

fn segment_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn a_torn_tail_is_cut_and_the_wal_opens() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig::default();
    write_log(dir.path(), &config, 1..51);
    let segment = dir.path().join(segment_file_name(1));
    let last_record = record_offset(1, 50);
    assert_eq!(segment_len(&segment), record_offset(1, 51));
    // A write of the last record that stopped 7 bytes short.
    let torn_len = record_offset(1, 51) - 7;
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(torn_len)
        .unwrap();

    let (wal, recovery) = Wal::open(dir.path(), config.clone()).unwrap();
    let torn = recovery.torn_tail.expect("torn tail reported");
    assert_eq!(
        (torn.file, torn.offset, torn.bytes_cut),
        (segment.clone(), last_record, torn_len - last_record)
    );
    assert_eq!(wal.last_index(), Some(49));
    assert_eq!(segment_len(&segment), last_record);
    assert_holds(&wal, 1..=49);
    wal.append(entries(50..52)).unwrap().wait().unwrap();
    drop(wal);
    let (wal, recovery) = Wal::open(dir.path(), config).unwrap();
    assert_eq!(recovery.torn_tail, None);
    assert_holds(&wal, 1..=51);
}

#[test]
fn garbage_or_zeros_after_the_last_record_are_a_torn_tail() {
    for tail in [
        vec![0u8; 9000],
        b"\x05\x00\x00\x00garbage that never became a record".to_vec(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), &WalConfig::default(), 1..21);
        let segment = dir.path().join(segment_file_name(1));
        let end = segment_len(&segment);
        OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .write_all_at(&tail, end)
            .unwrap();
        let (wal, recovery) = Wal::open(dir.path(), WalConfig::default()).unwrap();
        let torn = recovery.torn_tail.expect("torn tail reported");
        assert_eq!((torn.offset, torn.bytes_cut), (end, tail.len() as u64));
        assert_holds(&wal, 1..=20);
    }
}

#[test]
fn a_flipped_byte_in_the_middle_of_a_segment_is_corruption_at_its_record() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), &WalConfig::default(), 1..101);
    let segment = dir.path().join(segment_file_name(1));
    let target = (40..60).find(|&i| payload(i).len() > 10).unwrap();
    let offset = record_offset(1, target);
    flip_byte(&segment, offset + RECORD_HEADER_LEN + 3);

    let (file, at, reason) = expect_corrupt(dir.path(), WalConfig::default());
    assert_eq!((file, at), (segment.clone(), offset), "{reason}");
    assert!(reason.contains("checksum"), "{reason}");
    // Refusing to open changed nothing on disk.
    assert_eq!(segment_len(&segment), record_offset(1, 101));
}

#[test]
fn a_flipped_length_field_is_corruption_at_its_record() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), &WalConfig::default(), 1..101);
    let segment = dir.path().join(segment_file_name(1));
    let offset = record_offset(1, 30);
    flip_byte(&segment, offset + 1);
    let (file, at, reason) = expect_corrupt(dir.path(), WalConfig::default());
    assert_eq!((file, at), (segment, offset), "{reason}");
}

#[test]
fn damage_at_the_end_of_an_earlier_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(4096);
    write_log(dir.path(), &config, 1..301);
    let files = segment_files(dir.path());
    assert!(files.len() >= 3);
    let second = &files[1];
    let first_index: u64 = second.file_name().unwrap().to_str().unwrap()[4..24]
        .parse()
        .unwrap();
    let next_first: u64 = files[2].file_name().unwrap().to_str().unwrap()[4..24]
        .parse()
        .unwrap();
    // The last record of a segment that is not the last one.
    let offset = record_offset(first_index, next_first - 1);
    flip_byte(second, segment_len(second) - 1);
    let (file, at, _) = expect_corrupt(dir.path(), config);
    assert_eq!((&file, at), (second, offset));
}

#[test]
fn a_missing_segment_is_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(4096);
    write_log(dir.path(), &config, 1..301);
    let files = segment_files(dir.path());
    std::fs::remove_file(&files[1]).unwrap();
    let (file, at, reason) = expect_corrupt(dir.path(), config);
    assert_eq!((&file, at), (&files[2], 0));
    assert!(reason.contains("ends at"), "{reason}");
}

#[test]
fn a_damaged_header_of_an_earlier_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(4096);
    write_log(dir.path(), &config, 1..301);
    let files = segment_files(dir.path());
    flip_byte(&files[0], 2);
    let (file, at, reason) = expect_corrupt(dir.path(), config);
    assert_eq!((&file, at), (&files[0], 0));
    assert!(reason.contains("magic"), "{reason}");
}

#[test]
fn a_segment_whose_header_a_crash_interrupted_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(4096);
    write_log(dir.path(), &config, 1..11);
    // The crash came while the next segment was being created.
    let next = dir.path().join(segment_file_name(11));
    std::fs::write(&next, [b'F', b'L', b'E']).unwrap();
    let (wal, recovery) = Wal::open(dir.path(), config.clone()).unwrap();
    assert_eq!(recovery.rewrote_header, Some(next));
    assert_eq!(wal.next_index(), Some(11));
    wal.append(entries(11..13)).unwrap().wait().unwrap();
    drop(wal);
    let (wal, _) = Wal::open(dir.path(), config).unwrap();
    assert_holds(&wal, 1..=12);
}

#[test]
fn a_damaged_meta_record_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
        wal.save_meta(&b"term 3 voted for 2"[..])
            .unwrap()
            .wait()
            .unwrap();
    }
    let meta = dir.path().join(fleet_wal::META_FILE);
    flip_byte(&meta, 30);
    let (file, at, _) = expect_corrupt(dir.path(), WalConfig::default());
    assert_eq!((file, at), (meta, 0));
}
