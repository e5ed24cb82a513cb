//! The meta record: a small opaque payload (the Raft vote, last purged and committed
//! log ids) kept beside the segments in `meta`, replaced atomically: the writer
//! writes `meta.tmp`, fsyncs it, renames it over `meta` and fsyncs the directory.
//!
//! ```text
//! meta = magic "FLEETMTA" (8) | version u32 | length u32 | crc32c u32 | reserved u32 | payload
//!        the crc covers version, length and payload
//! ```

use std::fs;
use std::io;
use std::path::Path;

use bytes::Bytes;

use crate::error::WalError;
use crate::format::FORMAT_VERSION;

pub const META_FILE: &str = "meta";
pub const META_TMP_FILE: &str = "meta.tmp";
const META_MAGIC: [u8; 8] = *b"FLEETMTA";
const META_HEADER_LEN: usize = 24;

pub fn encode_meta(payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(META_HEADER_LEN + payload.len());
    buf.extend_from_slice(&META_MAGIC);
    buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&meta_crc(&buf[8..16], payload).to_le_bytes());
    buf.extend_from_slice(&[0u8; 4]);
    buf.extend_from_slice(payload);
    buf
}

fn meta_crc(version_and_len: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(version_and_len), payload)
}

/// The payload of a meta file, or Corrupt: the file is only ever replaced by rename,
/// so unlike a segment tail it can never be legitimately torn.
pub fn decode_meta(bytes: &[u8], path: &Path) -> Result<Bytes, WalError> {
    let corrupt = |reason: String| WalError::corrupt(path, 0, reason);
    if bytes.len() < META_HEADER_LEN {
        return Err(corrupt(format!(
            "meta file is {} bytes, shorter than its {META_HEADER_LEN}-byte header",
            bytes.len()
        )));
    }
    if bytes[0..8] != META_MAGIC {
        return Err(corrupt(format!("bad meta magic {:02x?}", &bytes[0..8])));
    }
    let field =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let (version, len, stored) = (field(8), field(12) as usize, field(16));
    if bytes.len() != META_HEADER_LEN + len {
        return Err(corrupt(format!(
            "meta file is {} bytes but its header says {}",
            bytes.len(),
            META_HEADER_LEN + len
        )));
    }
    let payload = &bytes[META_HEADER_LEN..];
    let computed = meta_crc(&bytes[8..16], payload);
    if stored != computed {
        return Err(corrupt(format!(
            "meta checksum {stored:#010x} does not match {computed:#010x}"
        )));
    }
    if version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "meta format version {version}; this build reads {FORMAT_VERSION}"
        )));
    }
    Ok(Bytes::copy_from_slice(payload))
}

/// Reads the meta record at open, and removes a `meta.tmp` that a crash left behind
/// before its rename (the old `meta` is still the valid one).
pub fn read_meta(dir: &Path) -> Result<Option<Bytes>, WalError> {
    let tmp = dir.join(META_TMP_FILE);
    match fs::remove_file(&tmp) {
        Ok(()) => tracing::info!(path = %tmp.display(), "removed a meta.tmp left by a crash"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(WalError::io("remove", tmp, e)),
    }
    let path = dir.join(META_FILE);
    match fs::read(&path) {
        Ok(bytes) => decode_meta(&bytes, &path).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WalError::io("read", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_rejects_any_flip() {
        let path = Path::new("meta");
        let encoded = encode_meta(b"vote=3");
        assert_eq!(
            decode_meta(&encoded, path).unwrap(),
            Bytes::from_static(b"vote=3")
        );
        for byte in 0..encoded.len() {
            if (20..24).contains(&byte) {
                continue; // reserved
            }
            let mut damaged = encoded.clone();
            damaged[byte] ^= 0x10;
            assert!(decode_meta(&damaged, path).is_err(), "byte {byte}");
        }
        assert!(decode_meta(&encoded[..encoded.len() - 1], path).is_err());
    }
}
