//! The stores on their own, across reopens and against damaged files: what the log
//! store keeps (vote, purge point, committed id, entries), that a damaged or
//! inconsistent log fails to open instead of being served, and that the snapshot file is
//! replaced atomically and checked when read.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use fleet_raft::testing::{KeyValue, KvOp};
use fleet_raft::{Entry, LogStore, NodeError, SNAPSHOT_FILE, StateMachineStore, TypeConfig};
use fleet_wal::{RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, Wal, WalConfig, WalError};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::log_id;
use openraft::{EntryPayload, Membership, RaftLogReader, RaftSnapshotBuilder, Vote};

type Config = TypeConfig<KeyValue>;

fn set(index: u64) -> Entry<KeyValue> {
    Entry::<KeyValue> {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(KvOp::Set {
            key: format!("k{index}"),
            value: format!("v{index}"),
        }),
    }
}

fn open_log(dir: &Path) -> Result<LogStore<Config>, NodeError> {
    LogStore::open(dir, WalConfig::default())
}

fn flip_byte(path: &Path, offset: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open the file to damage");
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).expect("read");
    file.write_all_at(&[byte[0] ^ 0x40], offset).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_keeps_vote_purge_point_committed_and_entries_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open_log(dir.path()).unwrap();
        log.blocking_append((0..50).map(set)).await.unwrap();
        log.save_vote(&Vote::new_committed(3, 2)).await.unwrap();
        log.purge(log_id(1, 1, 9)).await.unwrap();
        log.save_committed(Some(log_id(1, 1, 40))).await.unwrap();
    }
    let mut log = open_log(dir.path()).unwrap();
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(Vote::new_committed(3, 2))
    );
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 1, 40)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 9)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 49)));
    // Purge is segment-granular in the WAL: entries 0..=9 are still on disk, hidden.
    let entries = log.try_get_log_entries(0..100).await.unwrap();
    assert_eq!(entries.len(), 40);
    assert_eq!(entries[0].log_id, log_id(1, 1, 10));
    // The log continues where it ended.
    log.blocking_append([set(50)]).await.unwrap();
    assert_eq!(log.try_get_log_entries(50..51).await.unwrap()[0], set(50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_record_fails_open_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open_log(dir.path()).unwrap();
        log.blocking_append((0..20).map(set)).await.unwrap();
    }
    let segment = dir.path().join(fleet_wal::segment_file_name(0));
    // Inside the first record's payload: not a torn tail, since valid records follow.
    flip_byte(&segment, SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 2);
    match open_log(dir.path()) {
        Err(NodeError::Wal(WalError::Corrupt { file, offset, .. })) => {
            assert_eq!(file, segment);
            assert_eq!(offset, SEGMENT_HEADER_LEN);
        }
        other => panic!("expected a corrupt WAL, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn entry_that_does_not_decode_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    let entries = vec![
        fleet_wal::Entry::new(0, vec![0xff; 16]),
        fleet_wal::Entry::new(1, vec![0xff; 16]),
    ];
    wal.append(entries).unwrap().wait().unwrap();
    wal.close().unwrap();
    match open_log(dir.path()) {
        Err(NodeError::Entry { index: 0, .. }) => {}
        other => panic!("expected an undecodable entry, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn log_that_starts_after_its_purge_point_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    wal.append(vec![fleet_wal::Entry::new(5, vec![1])])
        .unwrap()
        .wait()
        .unwrap();
    wal.close().unwrap();
    match open_log(dir.path()) {
        Err(NodeError::MissingEntries {
            first: 5,
            purged_next: 0,
            ..
        }) => {}
        other => panic!("expected missing entries, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_is_restored_and_a_damaged_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let meta = {
        let mut sm = StateMachineStore::<KeyValue>::open(dir.path()).unwrap();
        let members = Membership::new(vec![BTreeSet::from([1, 2, 3])], None);
        let mut entries = vec![Entry::<KeyValue> {
            log_id: log_id(1, 1, 0),
            payload: EntryPayload::Membership(members),
        }];
        entries.extend((1..=10).map(set));
        sm.apply(entries).await.unwrap();
        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 1, 10)));
        snapshot.meta
    };
    // A crash while writing the next snapshot leaves a temp file: ignored and removed.
    std::fs::write(dir.path().join("snapshot.tmp"), b"half a snapshot").unwrap();

    let mut sm = StateMachineStore::<KeyValue>::open(dir.path()).unwrap();
    assert!(!dir.path().join("snapshot.tmp").exists());
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 1, 10)));
    assert_eq!(membership, meta.last_membership);
    assert_eq!(sm.view().read(|kv| kv.ops_applied), 10);
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, meta);
    drop(sm);

    let file = dir.path().join(SNAPSHOT_FILE);
    let len = std::fs::metadata(&file).unwrap().len();
    flip_byte(&file, len - 3);
    match StateMachineStore::<KeyValue>::open(dir.path()) {
        Err(NodeError::CorruptSnapshot { file: f, .. }) => assert_eq!(f, file),
        other => panic!("expected a corrupt snapshot, got {:?}", other.map(|_| ())),
    }
}
