//! A small application state for tests and benchmarks: string keys to string values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::apply::Apply;
use crate::codec::{self, CodecError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KvOp {
    Set { key: String, value: String },
    Delete { key: String },
}

/// Keys and values, and how many ops made them (so that tests see every op counted once).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    pub entries: BTreeMap<String, String>,
    pub ops_applied: u64,
}

impl Apply for KeyValue {
    type Op = KvOp;
    /// The value the key held before.
    type Outcome = Option<String>;
    type Error = CodecError;

    fn apply(&mut self, op: KvOp) -> Option<String> {
        self.ops_applied += 1;
        match op {
            KvOp::Set { key, value } => self.entries.insert(key, value),
            KvOp::Delete { key } => self.entries.remove(&key),
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode("key-value snapshot", self)
    }

    fn restore(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode("key-value snapshot", bytes)
    }
}
