//! The WAL's API against real files in a temp dir: round trip, reopen, rolling,
//! truncate, purge, reads, the meta record, group commit and the PerEntry baseline.
#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions: a failed unwrap is a failed test

mod common;

use std::sync::mpsc;

use bytes::Bytes;
use common::{assert_holds, entries, payload, segment_files, small_segments};
use fleet_wal::{Entry, SyncMode, Wal, WalConfig, WalError, segment_file_name};

fn append_all(wal: &Wal, range: std::ops::Range<u64>, batch: u64) {
    let mut pending = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let end = (start + batch).min(range.end);
        pending.push(wal.append(entries(start..end)).unwrap());
        start = end;
    }
    for durable in pending {
        durable.wait().unwrap();
    }
}

#[test]
fn round_trip_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, recovery) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    assert_eq!(recovery.segments, 0);
    assert_eq!((wal.first_index(), wal.next_index()), (None, None));

    let durable = wal.append(entries(1..11)).unwrap();
    // Readable at once, before it is durable (openraft reads right after append).
    assert_holds(&wal, 1..=10);
    assert_eq!(durable.wait().unwrap(), 10);
    append_all(&wal, 11..101, 7);

    assert_holds(&wal, 1..=100);
    assert_eq!(
        (wal.first_index(), wal.last_index(), wal.next_index()),
        (Some(1), Some(100), Some(101))
    );
    let middle = wal.read(40..45).unwrap();
    assert_eq!(
        middle.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![40, 41, 42, 43, 44]
    );
    assert_eq!(wal.read(95..).unwrap().len(), 6);
    assert_eq!(wal.read(..3).unwrap().len(), 2);
    assert!(wal.read(200..300).unwrap().is_empty());
    assert_eq!(wal.stats().entries, 100);
    wal.close().unwrap();
}

#[test]
fn appends_must_be_contiguous() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    // A new WAL takes any first index.
    wal.append(entries(5..8)).unwrap().wait().unwrap();
    let gap = wal.append(entries(9..10)).unwrap_err();
    assert!(
        matches!(
            gap,
            WalError::NotContiguous {
                expected: 8,
                got: 9
            }
        ),
        "{gap}"
    );
    let hole = vec![Entry::new(8, "a"), Entry::new(10, "b")];
    assert!(matches!(
        wal.append(hole),
        Err(WalError::NotContiguous {
            expected: 9,
            got: 10
        })
    ));
    assert!(matches!(wal.append(Vec::new()), Err(WalError::EmptyBatch)));
    // A rejected batch left nothing behind.
    assert_eq!(wal.next_index(), Some(8));
    wal.append(entries(8..9)).unwrap().wait().unwrap();
    assert_holds(&wal, 5..=8);
}

#[test]
fn reopen_recovers_everything() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
        append_all(&wal, 1..501, 13);
    }
    let (wal, recovery) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    assert_eq!(recovery.entries, 500);
    assert_eq!(
        (recovery.first_index, recovery.last_index),
        (Some(1), Some(500))
    );
    assert_eq!(recovery.torn_tail, None);
    assert_holds(&wal, 1..=500);
    wal.append(entries(501..502)).unwrap().wait().unwrap();
    drop(wal);
    let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    assert_holds(&wal, 1..=501);
}

#[test]
fn segments_roll_over_at_the_configured_size() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(8 << 10);
    {
        let (wal, _) = Wal::open(dir.path(), config.clone()).unwrap();
        append_all(&wal, 1..1001, 9);
        assert_holds(&wal, 1..=1000);
    }
    let files = segment_files(dir.path());
    assert!(files.len() > 10, "{} segments", files.len());
    assert_eq!(
        files[0].file_name().unwrap().to_str().unwrap(),
        segment_file_name(1)
    );
    for file in &files[..files.len() - 1] {
        let len = std::fs::metadata(file).unwrap().len();
        assert!(len <= 8 << 10, "{} is {len} bytes", file.display());
    }
    let (wal, recovery) = Wal::open(dir.path(), config).unwrap();
    assert_eq!(recovery.segments, files.len());
    assert_holds(&wal, 1..=1000);
}

#[test]
fn a_record_larger_than_a_segment_gets_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(4096);
    let big = Bytes::from(vec![7u8; 10_000]);
    {
        let (wal, _) = Wal::open(dir.path(), config.clone()).unwrap();
        wal.append(entries(1..3)).unwrap().wait().unwrap();
        wal.append(vec![Entry::new(3, big.clone())])
            .unwrap()
            .wait()
            .unwrap();
        wal.append(entries(4..6)).unwrap().wait().unwrap();
    }
    let (wal, _) = Wal::open(dir.path(), config).unwrap();
    assert_eq!(wal.read(3..4).unwrap()[0].payload, big);
    assert_holds(&wal, 4..=5);
}

#[test]
fn truncate_deletes_the_suffix_durably() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(8 << 10);
    {
        let (wal, _) = Wal::open(dir.path(), config.clone()).unwrap();
        append_all(&wal, 1..401, 10);
        wal.truncate_from(150).unwrap().wait().unwrap();
        assert_eq!(wal.last_index(), Some(149));
        assert_holds(&wal, 140..=149);
        assert!(wal.read(150..).unwrap().is_empty());
        // Conflicting entries replace the truncated ones.
        let replaced = vec![Entry::new(150, "new 150"), Entry::new(151, "new 151")];
        wal.append(replaced).unwrap().wait().unwrap();
        for file in segment_files(dir.path()) {
            let name = file.file_name().unwrap().to_str().unwrap().to_string();
            assert!(name <= segment_file_name(150), "{name} should be gone");
        }
    }
    let (wal, recovery) = Wal::open(dir.path(), config).unwrap();
    assert_eq!(recovery.last_index, Some(151));
    assert_holds(&wal, 1..=149);
    assert_eq!(
        wal.read(150..).unwrap()[1].payload,
        Bytes::from_static(b"new 151")
    );
}

#[test]
fn truncate_queued_behind_appends_and_followed_by_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_segments(4096)).unwrap();
    // None of these waits in between: the writer sees append, truncate, append.
    let first = wal.append(entries(1..101)).unwrap();
    let truncated = wal.truncate_from(60).unwrap();
    let second = wal.append(vec![Entry::new(60, "sixty")]).unwrap();
    assert_eq!(wal.read(60..).unwrap(), vec![Entry::new(60, "sixty")]);
    first.wait().unwrap();
    truncated.wait().unwrap();
    assert_eq!(second.wait().unwrap(), 60);
    drop(wal);
    let (wal, _) = Wal::open(dir.path(), small_segments(4096)).unwrap();
    assert_holds(&wal, 1..=59);
    assert_eq!(wal.read(60..).unwrap(), vec![Entry::new(60, "sixty")]);
}

#[test]
fn truncate_everything() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), small_segments(4096)).unwrap();
        append_all(&wal, 10..200, 10);
        wal.truncate_from(10).unwrap().wait().unwrap();
        assert_eq!((wal.last_index(), wal.next_index()), (None, Some(10)));
    }
    let (wal, _) = Wal::open(dir.path(), small_segments(4096)).unwrap();
    assert_eq!((wal.last_index(), wal.next_index()), (None, Some(10)));
    assert_eq!(segment_files(dir.path()).len(), 1);
    wal.append(entries(10..12)).unwrap().wait().unwrap();
    assert_holds(&wal, 10..=11);
}

#[test]
fn purge_drops_whole_segments_below_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(8 << 10);
    let before;
    {
        let (wal, _) = Wal::open(dir.path(), config.clone()).unwrap();
        append_all(&wal, 1..1001, 25);
        before = segment_files(dir.path()).len();
        wal.purge_upto(500).unwrap().wait().unwrap();
        assert_eq!(wal.first_index(), Some(501));
        assert!(wal.read(..501).unwrap().is_empty());
        assert_holds(&wal, 501..=1000);
    }
    let files = segment_files(dir.path());
    assert!(
        files.len() < before / 2 + 2,
        "{} of {before} segments left",
        files.len()
    );
    let (wal, recovery) = Wal::open(dir.path(), config).unwrap();
    // The segment holding 501 may also hold a few entries before it.
    let first = recovery.first_index.unwrap();
    assert!(first <= 501 && first > 400, "first index {first}");
    assert_eq!(
        files[0].file_name().unwrap().to_str().unwrap(),
        segment_file_name(first)
    );
    assert_holds(&wal, first..=1000);
}

#[test]
fn purge_past_the_end_keeps_the_next_index() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), small_segments(4096)).unwrap();
        // On a new WAL too (a follower installing a snapshot first).
        wal.purge_upto(41).unwrap().wait().unwrap();
        assert_eq!(wal.next_index(), Some(42));
        append_all(&wal, 42..300, 10);
        wal.purge_upto(999).unwrap().wait().unwrap();
        assert_eq!((wal.last_index(), wal.next_index()), (None, Some(1000)));
    }
    assert_eq!(segment_files(dir.path()).len(), 1);
    let (wal, recovery) = Wal::open(dir.path(), small_segments(4096)).unwrap();
    assert_eq!(
        (recovery.first_index, recovery.last_index),
        (Some(1000), None)
    );
    assert_eq!(wal.next_index(), Some(1000));
    assert!(matches!(
        wal.append(entries(1..2)),
        Err(WalError::NotContiguous {
            expected: 1000,
            got: 1
        })
    ));
    wal.append(entries(1000..1003)).unwrap().wait().unwrap();
    assert_holds(&wal, 1000..=1002);
}

#[test]
fn meta_is_replaced_atomically() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
        assert_eq!(wal.meta(), None);
        wal.save_meta(&b"vote term 1"[..]).unwrap().wait().unwrap();
        wal.save_meta(&b"vote term 2"[..]).unwrap().wait().unwrap();
        assert_eq!(wal.meta().unwrap(), &b"vote term 2"[..]);
    }
    assert!(!dir.path().join("meta.tmp").exists());
    // A crash between writing meta.tmp and the rename leaves the old record in force.
    std::fs::write(dir.path().join("meta.tmp"), b"half a new record").unwrap();
    let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    assert_eq!(wal.meta().unwrap(), &b"vote term 2"[..]);
    assert!(!dir.path().join("meta.tmp").exists());
}

#[test]
fn group_commit_shares_fsyncs_and_per_entry_does_not() {
    let count = 400;
    let run = |sync: SyncMode| {
        let dir = tempfile::tempdir().unwrap();
        let config = WalConfig {
            sync,
            ..WalConfig::default()
        };
        let (wal, _) = Wal::open(dir.path(), config).unwrap();
        let pending: Vec<_> = (1..=count)
            .map(|i| wal.append(entries(i..i + 1)).unwrap())
            .collect();
        for durable in pending {
            durable.wait().unwrap();
        }
        assert_holds(&wal, 1..=count);
        wal.stats()
    };
    let grouped = run(SyncMode::GroupCommit);
    let baseline = run(SyncMode::PerEntry);
    assert_eq!((grouped.entries, baseline.entries), (count, count));
    assert!(baseline.syncs >= count, "{baseline:?}");
    assert!(
        grouped.syncs * 4 < count,
        "group commit did not group: {grouped:?}"
    );
}

#[test]
fn durable_is_a_future_and_callbacks_run_once_synced() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    let durable = wal.append(entries(1..4)).unwrap();
    assert_eq!(
        futures::executor::block_on(async { durable.await }).unwrap(),
        3
    );
    let (tx, rx) = mpsc::channel();
    wal.append_then(entries(4..6), move |result| tx.send(result).unwrap())
        .unwrap();
    assert_eq!(rx.recv().unwrap().unwrap(), 5);
    assert_eq!(wal.read(5..6).unwrap()[0].payload, payload(5));
}

#[test]
fn a_directory_is_opened_by_one_wal_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    assert!(matches!(
        Wal::open(dir.path(), WalConfig::default()),
        Err(WalError::InUse { .. })
    ));
    drop(wal);
    Wal::open(dir.path(), WalConfig::default()).unwrap();
}

#[test]
fn preallocated_segments_recover_like_any_other() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig {
        preallocate: true,
        ..small_segments(64 << 10)
    };
    {
        let (wal, _) = Wal::open(dir.path(), config.clone()).unwrap();
        append_all(&wal, 1..1001, 20);
    }
    let (wal, recovery) = Wal::open(dir.path(), config).unwrap();
    assert_eq!(
        (recovery.last_index, recovery.torn_tail),
        (Some(1000), None)
    );
    assert_holds(&wal, 1..=1000);
}
