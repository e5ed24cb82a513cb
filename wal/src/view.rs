//! The log as callers see it: one slot per index, either the payload of an append the
//! writer has not yet made durable, or where its record lies in a segment. Appends,
//! truncations and purges change the view at once, when they are submitted (openraft
//! reads entries as soon as `append` returns, before they are flushed); the writer
//! turns pending slots into stored ones after the fsync that made them durable.
//!
//! The writer only rewrites or deletes the bytes of indexes that the view has already
//! dropped, and readers hold the view's read lock while they read a segment, so a read
//! never sees a record that is being replaced.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::entry::Entry;
use crate::error::WalError;
use crate::format::{self, MAX_PAYLOAD, decode_record, frame_len};

/// Reads of consecutive stored records are merged into one pread up to this size.
const MAX_READ_SPAN: u64 = 8 << 20;

pub(crate) struct SegmentHandle {
    pub file: Arc<File>,
    pub path: PathBuf,
}

enum Slot {
    /// `seq` names the append that put it there, so that the writer does not mark a
    /// slot stored when a truncation has since replaced it with another append's entry.
    Pending {
        seq: u64,
        payload: Bytes,
    },
    Stored {
        segment: u64,
        offset: u64,
        len: u32,
    },
}

/// Where the writer put one record of an append.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Located {
    pub index: u64,
    pub seq: u64,
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

#[derive(Default)]
pub(crate) struct View {
    /// Index of `slots[0]`; None for a WAL that has never held an entry, which
    /// accepts any index as its first.
    first: Option<u64>,
    slots: VecDeque<Slot>,
    segments: BTreeMap<u64, SegmentHandle>,
    meta: Option<Bytes>,
    failed: Option<WalError>,
    next_seq: u64,
}

impl View {
    pub fn new(meta: Option<Bytes>) -> Self {
        View {
            meta,
            ..View::default()
        }
    }

    /// Adds a segment found at open, with its records, in index order.
    pub fn add_recovered(
        &mut self,
        first_index: u64,
        handle: SegmentHandle,
        records: &[(u64, u32)],
    ) {
        self.first.get_or_insert(first_index);
        for &(offset, len) in records {
            self.slots.push_back(Slot::Stored {
                segment: first_index,
                offset,
                len,
            });
        }
        self.segments.insert(first_index, handle);
    }

    pub fn add_segment(&mut self, first_index: u64, handle: SegmentHandle) {
        self.segments.insert(first_index, handle);
    }

    pub fn remove_segment(&mut self, first_index: u64) {
        self.segments.remove(&first_index);
    }

    pub fn first_index(&self) -> Option<u64> {
        self.first
    }

    pub fn next_index(&self) -> Option<u64> {
        self.first.map(|first| first + self.slots.len() as u64)
    }

    pub fn last_index(&self) -> Option<u64> {
        self.next_index()
            .filter(|_| !self.slots.is_empty())
            .map(|next| next - 1)
    }

    pub fn ensure_usable(&self) -> Result<(), WalError> {
        match &self.failed {
            Some(err) => Err(WalError::Failed(Box::new(err.clone()))),
            None => Ok(()),
        }
    }

    pub fn fail(&mut self, err: WalError) {
        self.failed.get_or_insert(err);
    }

    pub fn meta(&self) -> Option<Bytes> {
        self.meta.clone()
    }

    pub fn set_meta(&mut self, payload: Bytes) {
        self.meta = Some(payload);
    }

    /// Checks that `entries` continue the log and makes them readable; returns the
    /// sequence number that names this append.
    pub fn push_pending(&mut self, entries: &[Entry]) -> Result<u64, WalError> {
        let first_entry = entries.first().ok_or(WalError::EmptyBatch)?;
        let start = self.next_index().unwrap_or(first_entry.index);
        for (k, entry) in entries.iter().enumerate() {
            let expected = start + k as u64;
            if entry.index != expected {
                return Err(WalError::NotContiguous {
                    expected,
                    got: entry.index,
                });
            }
            if entry.payload.len() > MAX_PAYLOAD {
                return Err(WalError::TooLarge {
                    index: entry.index,
                    len: entry.payload.len(),
                    max: MAX_PAYLOAD,
                });
            }
        }
        self.first.get_or_insert(start);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.slots.extend(entries.iter().map(|entry| Slot::Pending {
            seq,
            payload: entry.payload.clone(),
        }));
        Ok(seq)
    }

    /// Drops `index` and everything after it; the next append must carry `index`.
    pub fn truncate_from(&mut self, index: u64) {
        let Some(first) = self.first else { return };
        if index <= first {
            self.slots.clear();
            self.first = Some(index);
        } else {
            self.slots
                .truncate((index - first).min(self.slots.len() as u64) as usize);
        }
    }

    /// Drops everything up to and including `index`; the log's next index is at least
    /// `index + 1` afterwards.
    pub fn purge_upto(&mut self, index: u64) {
        let new_first = index.saturating_add(1);
        let first = self.first.unwrap_or(new_first);
        if new_first <= first {
            self.first = Some(first);
            return;
        }
        let drop = (new_first - first).min(self.slots.len() as u64) as usize;
        self.slots.drain(..drop);
        self.first = Some(new_first);
    }

    /// Marks appended entries stored, once the writer's fsync covered them.
    pub fn publish(&mut self, located: &[Located]) {
        let Some(first) = self.first else { return };
        for loc in located {
            let Some(k) = loc.index.checked_sub(first) else {
                continue;
            };
            if let Some(slot) = self.slots.get_mut(k as usize)
                && matches!(slot, Slot::Pending { seq, .. } if *seq == loc.seq)
            {
                *slot = Slot::Stored {
                    segment: loc.segment,
                    offset: loc.offset,
                    len: loc.len,
                };
            }
        }
    }

    /// The entries of `[from, to)` that the log holds, in index order.
    pub fn read(&self, from: u64, to: u64) -> Result<Vec<Entry>, WalError> {
        let Some(first) = self.first else {
            return Ok(Vec::new());
        };
        let (lo, hi) = (from.max(first), to.min(first + self.slots.len() as u64));
        let mut out = Vec::with_capacity(hi.saturating_sub(lo) as usize);
        let mut index = lo;
        while index < hi {
            match &self.slots[(index - first) as usize] {
                Slot::Pending { payload, .. } => {
                    out.push(Entry::new(index, payload.clone()));
                    index += 1;
                }
                &Slot::Stored {
                    segment,
                    offset,
                    len,
                } => {
                    // Consecutive records of one segment lie back to back: one pread.
                    let mut end = offset + frame_len(len as usize);
                    let mut next = index + 1;
                    while next < hi && end - offset < MAX_READ_SPAN {
                        match self.slots[(next - first) as usize] {
                            Slot::Stored {
                                segment: s,
                                offset: o,
                                len: l,
                            } if s == segment && o == end => end += frame_len(l as usize),
                            _ => break,
                        }
                        next += 1;
                    }
                    self.read_span(segment, offset, end, index, &mut out)?;
                    index = next;
                }
            }
        }
        Ok(out)
    }

    /// Reads the records of `[offset, end)` in `segment`, the first of which holds
    /// `index`, checking each one's checksum and index again.
    fn read_span(
        &self,
        segment: u64,
        offset: u64,
        end: u64,
        mut index: u64,
        out: &mut Vec<Entry>,
    ) -> Result<(), WalError> {
        let Some(handle) = self.segments.get(&segment) else {
            let name = PathBuf::from(format::segment_file_name(segment));
            return Err(WalError::corrupt(name, offset, "segment is no longer open"));
        };
        let mut buf = vec![0u8; (end - offset) as usize];
        handle
            .file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| WalError::io("read", &handle.path, e))?;
        let buf = Bytes::from(buf);
        let mut pos = 0usize;
        while pos < buf.len() {
            let at = offset + pos as u64;
            let record = decode_record(&buf, pos)
                .map_err(|bad| WalError::corrupt(&handle.path, at, bad.to_string()))?;
            if record.index != index {
                return Err(WalError::corrupt(
                    &handle.path,
                    at,
                    format!("record holds index {}, expected {index}", record.index),
                ));
            }
            out.push(Entry::new(index, buf.slice(record.payload)));
            pos += record.frame_len as usize;
            index += 1;
        }
        Ok(())
    }
}

/// Locks for callers and the writer. A panic while the lock was held leaves the view
/// as consistent as any single method leaves it, so a poisoned lock is taken anyway.
pub(crate) fn read_view(view: &std::sync::RwLock<View>) -> std::sync::RwLockReadGuard<'_, View> {
    view.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn write_view(view: &std::sync::RwLock<View>) -> std::sync::RwLockWriteGuard<'_, View> {
    view.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
