//! openraft's own storage conformance suite (`openraft::testing::Suite`), run against the
//! WAL-backed log store and the snapshot-file state machine, each test on a fresh
//! directory.

use fleet_raft::testing::KeyValue;
use fleet_raft::{LogStore, StateMachineStore, StorageError, TypeConfig};
use fleet_wal::WalConfig;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

type Config = TypeConfig<KeyValue>;

struct WalStores;

impl StoreBuilder<Config, LogStore<Config>, StateMachineStore<KeyValue>, TempDir> for WalStores {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore<Config>, StateMachineStore<KeyValue>), StorageError> {
        let dir = TempDir::new().expect("temp dir");
        let log = LogStore::open(dir.path().join("log"), WalConfig::default()).expect("open log");
        let state = StateMachineStore::open(dir.path().join("state")).expect("open state");
        Ok((dir, log, state))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(WalStores) {
        panic!("openraft's storage suite failed: {e}");
    }
}
