//! The openraft type configuration for one application state, and short names for the
//! openraft types the rest of the crate and its users speak.

use std::cmp::Ordering;
use std::fmt;
use std::io::Cursor;
use std::marker::PhantomData;

use crate::apply::Apply;

/// A master's Raft node id.
pub type NodeId = u64;

/// What the cluster knows about a master: the address its Raft transport listens on.
pub type Node = openraft::BasicNode;

/// openraft's type configuration for a log of `A::Op`s. Written by hand rather than with
/// `declare_raft_types!`, which cannot declare a generic type: the derives it emits would
/// demand `A: Clone + Ord + ...` although the config holds no `A`.
pub struct TypeConfig<A>(PhantomData<fn() -> A>);

impl<A: Apply> openraft::RaftTypeConfig for TypeConfig<A> {
    type D = A::Op;
    /// None for the entries openraft writes itself (blank and membership entries).
    type R = Option<A::Outcome>;
    type NodeId = NodeId;
    type Node = Node;
    type Entry = openraft::Entry<Self>;
    type SnapshotData = Cursor<Vec<u8>>;
    type AsyncRuntime = openraft::TokioRuntime;
    type Responder = openraft::impls::OneshotResponder<Self>;
}

pub type Raft<A> = openraft::Raft<TypeConfig<A>>;
pub type Entry<A> = openraft::Entry<TypeConfig<A>>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type Snapshot<A> = openraft::Snapshot<TypeConfig<A>>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, Node>;
pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, Node>;
pub type ClientWriteResponse<A> = openraft::raft::ClientWriteResponse<TypeConfig<A>>;

// The marker traits openraft requires of a type config, for every `A`.

impl<A> Clone for TypeConfig<A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A> Copy for TypeConfig<A> {}

impl<A> Default for TypeConfig<A> {
    fn default() -> Self {
        TypeConfig(PhantomData)
    }
}

impl<A> PartialEq for TypeConfig<A> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<A> Eq for TypeConfig<A> {}

impl<A> PartialOrd for TypeConfig<A> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<A> Ord for TypeConfig<A> {
    fn cmp(&self, _: &Self) -> Ordering {
        Ordering::Equal
    }
}

impl<A> fmt::Debug for TypeConfig<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TypeConfig<{}>", std::any::type_name::<A>())
    }
}
