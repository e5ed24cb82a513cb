//! Opening a WAL directory: every segment is read and checked in index order before
//! the writer starts. A damaged record at the tail of the last segment is a write that
//! a crash cut short, and is cut off; damage anywhere else is corruption, and open fails
//! naming the file and the record's offset.
//!
//! Why that split is safe: a batch is acknowledged only after the fdatasync that covers
//! it, the writer syncs a segment completely before it creates the next one, and a
//! truncation is synced before anything is written over the truncated region. So
//! unacknowledged bytes only ever sit at the end of the last segment, after every
//! acknowledged record.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::WalError;
use crate::format::{
    self, MAX_PAYLOAD, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, decode_record, decode_segment_header,
    encode_segment_header,
};

/// What open found and repaired, for the caller to log or assert on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    pub segments: usize,
    pub entries: u64,
    /// None when the directory holds no segment (a new WAL).
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    pub torn_tail: Option<TornTail>,
    /// The last segment's header was never completely written (a crash while the
    /// segment was being created); it was written again.
    pub rewrote_header: Option<PathBuf>,
}

/// Bytes cut from the end of the last segment: a crash interrupted their write, so
/// none of them was ever acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    /// Where the first damaged record began; the file now ends here.
    pub offset: u64,
    pub bytes_cut: u64,
    pub reason: String,
}

/// One segment as recovery left it, handed to the writer and the reader view.
#[derive(Debug)]
pub(crate) struct RecoveredSegment {
    pub first_index: u64,
    pub path: PathBuf,
    /// Open for reading and writing.
    pub file: File,
    /// (offset, payload length) of each record, in index order from `first_index`.
    pub records: Vec<(u64, u32)>,
    pub end: u64,
}

/// Writeback happens a page at a time, so a page that was never written reads as
/// zeros after a power loss even when later pages of the same unsynced write landed.
const PAGE: usize = 4096;

pub(crate) fn recover(dir: &Path) -> Result<(Vec<RecoveredSegment>, Recovery), WalError> {
    fs::create_dir_all(dir).map_err(|e| WalError::io("create directory", dir, e))?;
    let mut names = Vec::new();
    let listing = fs::read_dir(dir).map_err(|e| WalError::io("list directory", dir, e))?;
    for entry in listing {
        let entry = entry.map_err(|e| WalError::io("list directory", dir, e))?;
        if let Some(first) = entry
            .file_name()
            .to_str()
            .and_then(format::parse_segment_file_name)
        {
            names.push((first, entry.path()));
        }
    }
    names.sort();

    let mut report = Recovery::default();
    let mut segments: Vec<RecoveredSegment> = Vec::with_capacity(names.len());
    let count = names.len();
    for (k, (name_first, path)) in names.into_iter().enumerate() {
        let is_last = k + 1 == count;
        let expected_first = segments
            .last()
            .map(|s| s.first_index + s.records.len() as u64);
        let segment = recover_segment(&path, name_first, expected_first, is_last, &mut report)?;
        report.entries += segment.records.len() as u64;
        segments.push(segment);
    }
    // Whatever the crash left in the page cache is part of the log from now on (the
    // caller may act on these entries), so make it durable before anything reads it.
    if let Some(last) = segments.last() {
        last.file
            .sync_data()
            .map_err(|e| WalError::io("fdatasync", &last.path, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| WalError::io("fsync directory", dir, e))?;
    }
    report.segments = segments.len();
    if let (Some(first), Some(last)) = (segments.first(), segments.last()) {
        report.first_index = Some(first.first_index);
        let next = last.first_index + last.records.len() as u64;
        report.last_index = (report.entries > 0).then(|| next - 1);
    }
    Ok((segments, report))
}

fn recover_segment(
    path: &Path,
    name_first: u64,
    expected_first: Option<u64>,
    is_last: bool,
    report: &mut Recovery,
) -> Result<RecoveredSegment, WalError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| WalError::io("open segment", path, e))?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .map_err(|e| WalError::io("read segment", path, e))?;

    match decode_segment_header(&data) {
        Ok(first) if first == name_first => {}
        Ok(first) => {
            return Err(WalError::corrupt(
                path,
                0,
                format!("header says first index {first}, the file name says {name_first}"),
            ));
        }
        Err(reason) => {
            // The writer syncs a new segment's header before any record goes in, so
            // a last segment with a damaged header and nothing after it was being
            // created when the crash came.
            let header_len = SEGMENT_HEADER_LEN as usize;
            let unwritten = data.len() <= header_len || data.iter().all(|&b| b == 0);
            if !(is_last && unwritten) {
                return Err(WalError::corrupt(path, 0, reason));
            }
            tracing::warn!(path = %path.display(), %reason, "rewriting a segment header torn by a crash");
            rewrite_header(&file, path, name_first)?;
            report.rewrote_header = Some(path.to_path_buf());
            data.truncate(0);
            data.extend_from_slice(&encode_segment_header(name_first));
        }
    }
    if let Some(expected) = expected_first
        && expected != name_first
    {
        return Err(WalError::corrupt(
            path,
            0,
            format!(
                "segment starts at index {name_first} but the one before it ends at {}",
                expected.wrapping_sub(1)
            ),
        ));
    }

    let mut records = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN as usize;
    let mut expected = name_first;
    while pos < data.len() {
        match decode_record(&data, pos) {
            Ok(record) if record.index == expected => {
                records.push((pos as u64, record.payload.len() as u32));
                pos += record.frame_len as usize;
                expected += 1;
            }
            Ok(record) => {
                return Err(WalError::corrupt(
                    path,
                    pos as u64,
                    format!("record holds index {}, expected {expected}", record.index),
                ));
            }
            Err(bad) if !is_last => {
                return Err(WalError::corrupt(path, pos as u64, bad.to_string()));
            }
            Err(bad) => {
                let reason = classify_tail(&data, pos, expected).map_err(|reason| {
                    WalError::corrupt(path, pos as u64, format!("{bad}; {reason}"))
                })?;
                let torn = TornTail {
                    file: path.to_path_buf(),
                    offset: pos as u64,
                    bytes_cut: (data.len() - pos) as u64,
                    reason: format!("{bad}; {reason}"),
                };
                tracing::warn!(
                    path = %path.display(),
                    offset = torn.offset,
                    bytes_cut = torn.bytes_cut,
                    reason = %torn.reason,
                    "cutting a torn tail from the last WAL segment"
                );
                file.set_len(pos as u64)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| WalError::io("truncate torn tail of", path, e))?;
                report.torn_tail = Some(torn);
                data.truncate(pos);
            }
        }
    }
    Ok(RecoveredSegment {
        first_index: name_first,
        path: path.to_path_buf(),
        file,
        records,
        end: data.len() as u64,
    })
}

fn rewrite_header(file: &File, path: &Path, first: u64) -> Result<(), WalError> {
    use std::os::unix::fs::FileExt;
    file.set_len(0)
        .and_then(|()| file.write_all_at(&encode_segment_header(first), 0))
        .and_then(|()| file.sync_all())
        .map_err(|e| WalError::io("rewrite header of", path, e))
}

/// Whether the damaged record at `pos`, at the end of the last segment, is a torn
/// write (Ok, with why) or corruption (Err, with why).
///
/// Torn: no valid record follows it (the write stopped there), or one does but an
/// all-zero page lies between (writeback of an unsynced group reached disk out of
/// order; nothing from that group was acknowledged). Corruption: a valid record with
/// a later index follows and the bytes between were written: acknowledged entries
/// may follow the damage, and silently dropping them would lose them.
fn classify_tail(data: &[u8], pos: usize, expected: u64) -> Result<String, String> {
    let Some((next_pos, next_index)) = next_valid_record(data, pos + 1, expected) else {
        return Ok("no valid record follows".to_string());
    };
    if has_zero_page(data, pos, next_pos) {
        return Ok(format!(
            "an unwritten (zero) page lies before the record of index {next_index} at offset {next_pos}"
        ));
    }
    Err(format!(
        "a valid record of index {next_index} follows at offset {next_pos}"
    ))
}

fn next_valid_record(data: &[u8], from: usize, expected: u64) -> Option<(usize, u64)> {
    let header = RECORD_HEADER_LEN as usize;
    // Each record takes at least a header, which bounds the indexes that can follow.
    let max_index = expected.saturating_add((data.len().saturating_sub(from) / header) as u64 + 1);
    let field = |at: usize, n: usize| {
        data[at..at + n]
            .iter()
            .rev()
            .fold(0u64, |v, &b| v << 8 | u64::from(b))
    };
    let mut q = from;
    while q + header <= data.len() {
        let len = field(q, 4) as usize;
        let index = field(q + 8, 8);
        if len <= MAX_PAYLOAD
            && q + header + len <= data.len()
            && (expected..=max_index).contains(&index)
            && decode_record(data, q).is_ok()
        {
            return Some((q, index));
        }
        q += 1;
    }
    None
}

fn has_zero_page(data: &[u8], from: usize, to: usize) -> bool {
    let mut page = from.next_multiple_of(PAGE);
    while page + PAGE <= to {
        if data[page..page + PAGE].iter().all(|&b| b == 0) {
            return true;
        }
        page += PAGE;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::encode_record;

    fn records(first: u64, n: u64) -> (Vec<u8>, Vec<usize>) {
        let mut data = encode_segment_header(first).to_vec();
        let mut offsets = Vec::new();
        for i in first..first + n {
            offsets.push(data.len());
            encode_record(&mut data, i, &[i as u8 | 1; 100]);
        }
        (data, offsets)
    }

    #[test]
    fn a_damaged_last_record_is_torn() {
        let (mut data, offsets) = records(1, 5);
        data[offsets[4] + 20] ^= 1;
        assert!(classify_tail(&data, offsets[4], 5).is_ok());
    }

    #[test]
    fn damage_followed_by_a_valid_record_is_corruption() {
        let (mut data, offsets) = records(1, 5);
        data[offsets[2] + 20] ^= 1;
        let why = classify_tail(&data, offsets[2], 3).unwrap_err();
        assert!(why.contains("index 4"), "{why}");
    }

    #[test]
    fn a_zero_page_before_later_records_is_torn() {
        let (mut data, _) = records(1, 3);
        let bad = data.len();
        data.resize(3 * PAGE, 0);
        encode_record(&mut data, 5, b"landed out of order");
        assert!(classify_tail(&data, bad, 4).is_ok());
    }
}
