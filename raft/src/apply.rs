//! The application state the Raft log drives: a deterministic state machine that takes
//! committed ops one at a time and can be written to and rebuilt from snapshot bytes.
//! The master's registry plugs in here; this crate never knows what an op means.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A state replicated by the Raft log.
///
/// `apply` must be deterministic: every master applies the same ops in the same order and
/// must end in the same state, so it reads no clock, no randomness and no local files.
/// An op that the state refuses (a quota for an unknown role, say) is not an error here:
/// it is committed like any other and `apply` reports the refusal in its `Outcome`.
pub trait Apply: Default + Send + Sync + 'static {
    /// One change, as proposed with `Raft::client_write` and stored in the log (serde:
    /// log entries and Raft RPCs carry it).
    type Op: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static;
    /// What applying one op answers, handed back to the proposer.
    type Outcome: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static;
    /// Why snapshot bytes could not be written or read back.
    type Error: std::error::Error + Send + Sync + 'static;

    fn apply(&mut self, op: Self::Op) -> Self::Outcome;

    /// The whole state as bytes, in a format of the application's choosing (the registry
    /// uses rkyv). Called with the state locked against `apply`, so it should be quick.
    fn snapshot(&self) -> Result<Vec<u8>, Self::Error>;

    /// Rebuilds a state from what `snapshot` wrote, on this master or another one.
    fn restore(bytes: &[u8]) -> Result<Self, Self::Error>;
}
