//! A log entry as callers see it: a u64 index and an opaque payload.

use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub payload: Bytes,
}

impl Entry {
    pub fn new(index: u64, payload: impl Into<Bytes>) -> Self {
        Entry {
            index,
            payload: payload.into(),
        }
    }
}
