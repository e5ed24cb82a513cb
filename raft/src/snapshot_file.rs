//! The snapshot on disk: one file, `snapshot`, replaced atomically (write `snapshot.tmp`,
//! fsync, rename, fsync the directory), so a crash leaves the old snapshot or the new one,
//! never a mix. Layout: magic `FLEETSNP`, format version u32, meta length u32, data length
//! u64, crc32c u32 of meta and data (all little-endian), then the postcard-encoded
//! openraft `SnapshotMeta`, then the application's snapshot bytes.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::codec;
use crate::error::NodeError;
use crate::types::SnapshotMeta;

pub const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_TMP_FILE: &str = "snapshot.tmp";
const MAGIC: &[u8; 8] = b"FLEETSNP";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 4;

/// Writes the snapshot and makes it the current one; returns once it is durable.
pub fn write(dir: &Path, meta: &SnapshotMeta, data: &[u8]) -> Result<(), NodeError> {
    let meta_bytes = codec::encode("snapshot meta", meta)?;
    let mut crc = crc32c::crc32c(&meta_bytes);
    crc = crc32c::crc32c_append(crc, data);
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&(meta_bytes.len() as u32).to_le_bytes());
    header.extend_from_slice(&(data.len() as u64).to_le_bytes());
    header.extend_from_slice(&crc.to_le_bytes());

    let tmp = dir.join(SNAPSHOT_TMP_FILE);
    let path = dir.join(SNAPSHOT_FILE);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| NodeError::snapshot_io("create", &tmp, e))?;
    for part in [&header[..], &meta_bytes, data] {
        file.write_all(part)
            .map_err(|e| NodeError::snapshot_io("write", &tmp, e))?;
    }
    file.sync_all()
        .map_err(|e| NodeError::snapshot_io("fsync", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| NodeError::snapshot_io("rename over", &path, e))?;
    sync_dir(dir)
}

/// Reads the current snapshot, if there is one, checking it whole. A leftover
/// `snapshot.tmp` (a crash while writing) is removed: it was never the current snapshot.
pub fn read(dir: &Path) -> Result<Option<(SnapshotMeta, Vec<u8>)>, NodeError> {
    let tmp = dir.join(SNAPSHOT_TMP_FILE);
    match fs::remove_file(&tmp) {
        Ok(()) => sync_dir(dir)?,
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(NodeError::snapshot_io("remove", &tmp, e)),
    }
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(NodeError::snapshot_io("read", &path, e)),
    };
    decode(&path, &bytes).map(Some)
}

fn decode(path: &Path, bytes: &[u8]) -> Result<(SnapshotMeta, Vec<u8>), NodeError> {
    let corrupt = |offset: usize, reason: String| NodeError::CorruptSnapshot {
        file: PathBuf::from(path),
        offset: offset as u64,
        reason,
    };
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(
            0,
            format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            ),
        ));
    }
    if &bytes[..8] != MAGIC {
        return Err(corrupt(0, "no FLEETSNP magic".to_string()));
    }
    let u32_at =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = u32_at(8);
    if version != VERSION {
        return Err(corrupt(
            8,
            format!("format version {version}, expected {VERSION}"),
        ));
    }
    let meta_len = u32_at(12) as usize;
    let mut data_len = [0u8; 8];
    data_len.copy_from_slice(&bytes[16..24]);
    let data_len = u64::from_le_bytes(data_len);
    let crc = u32_at(24);
    let expected = (HEADER_LEN + meta_len) as u64 + data_len;
    if bytes.len() as u64 != expected {
        return Err(corrupt(
            12,
            format!(
                "header announces {expected} bytes, the file has {}",
                bytes.len()
            ),
        ));
    }
    let body = &bytes[HEADER_LEN..];
    let actual = crc32c::crc32c(body);
    if actual != crc {
        return Err(corrupt(
            HEADER_LEN,
            format!("checksum mismatch (stored {crc:#010x}, computed {actual:#010x})"),
        ));
    }
    let meta: SnapshotMeta = codec::decode("snapshot meta", &body[..meta_len])
        .map_err(|e| corrupt(HEADER_LEN, e.to_string()))?;
    Ok((meta, body[meta_len..].to_vec()))
}

fn sync_dir(dir: &Path) -> Result<(), NodeError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| NodeError::snapshot_io("fsync directory", dir, e))
}
