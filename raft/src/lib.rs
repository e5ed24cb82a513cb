//! The masters' replicated registry: openraft 0.9 with its log on Fleet's own WAL
//! (`fleet-wal`, io_uring, group commit) and its state machine generic over the
//! application state.
//!
//! # How the master plugs its registry in
//!
//! This crate does not depend on `fleet-master`. The replicated state is whatever
//! implements [`Apply`]: an `Op` type (serde; it is what the log stores and the Raft RPCs
//! carry), an `Outcome` answered to the proposer, `apply(op)`, and `snapshot()` /
//! `restore(bytes)` in a format of the application's choosing. The master implements
//! `Apply` for its `RegistryState` (ops = `RegistryOp` with serde derives, snapshots as
//! rkyv) and its replicated `Registry::apply` becomes `raft.client_write(op)`: it returns
//! once a quorum has the op in its fsynced log and the leader has applied it. Reads go
//! through [`StateView`]. We chose a generic over a `Command` enum defined here so that
//! the registry's vocabulary stays in one place (the master, and proto for what crosses
//! the wire) and this crate stays a storage and consensus layer.
//!
//! # Pieces
//!
//! - [`LogStore`]: openraft's `RaftLogStorage` + `RaftLogReader` on a `fleet_wal::Wal`.
//! - [`StateMachineStore`]: `RaftStateMachine` + `RaftSnapshotBuilder`; snapshots in one
//!   file replaced atomically.
//! - [`network`]: the [`Transport`] seam (in-process here; the masters' QUIC transport is
//!   in fleet-master) and openraft's network traits over it.
//! - [`RaftNode`]: one master's node, opened from its directory.
//! - [`testing`]: an in-process cluster, a small key-value state, write load for benches.
//!
//! `docs/ARCHITECTURE.md`, section "Raft", has the storage mapping and what is not done.

// openraft's traits fix the error types (StorageError, RPCError: 200+ bytes); helpers
// that build them return them as they are.
#![allow(clippy::result_large_err)]

mod apply;
pub mod batch;
pub mod codec;
mod error;
mod log_store;
pub mod network;
mod node;
mod snapshot_file;
mod state_machine;
pub mod testing;
mod types;

pub use apply::Apply;
pub use batch::{Batched, PendingOp, ProposeError, Proposer, ProposerConfig, ProposerStats};
pub use error::NodeError;
pub use log_store::{COMMITTED_SAVE_INTERVAL, LogReader, LogStore};
pub use network::{InProcessNetwork, RaftRequest, RaftResponse, Transport, TransportError};
pub use node::{NodeConfig, RaftNode};
pub use snapshot_file::SNAPSHOT_FILE;
pub use state_machine::{SnapshotBuilder, StateMachineStore, StateView};
pub use types::{
    ClientWriteError, ClientWriteResponse, Entry, LogId, Node, NodeId, Raft, RaftMetrics, Snapshot,
    SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote,
};
