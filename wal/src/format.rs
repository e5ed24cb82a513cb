//! The bytes on disk: segment file names, the segment header and the record frame.
//! Pure encoding and decoding; no I/O. All integers are little-endian.
//!
//! ```text
//! segment  = header record*
//! header   = magic "FLEETWAL" (8) | version u32 | reserved u32 | first index u64
//!            | crc32c of the 24 bytes before u32 | reserved u32            (32 bytes)
//! record   = payload length u32 | crc32c u32 | index u64 | payload        (16 + n bytes)
//!            the crc covers length, index and payload, in that order
//! ```

use std::ops::Range;

pub const SEGMENT_MAGIC: [u8; 8] = *b"FLEETWAL";
pub const FORMAT_VERSION: u32 = 1;
pub const SEGMENT_HEADER_LEN: u64 = 32;
pub const RECORD_HEADER_LEN: u64 = 16;
/// Largest payload one record holds. Bounds what a garbage length field can make
/// recovery believe, and keeps a record's frame length inside a u32.
pub const MAX_PAYLOAD: usize = 128 << 20;

const NAME_PREFIX: &str = "wal-";
const NAME_SUFFIX: &str = ".log";

/// `wal-<first index, 20 digits>.log`: names sort in index order.
pub fn segment_file_name(first_index: u64) -> String {
    format!("{NAME_PREFIX}{first_index:020}{NAME_SUFFIX}")
}

/// The first index a segment file name carries, or None for any other file.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(NAME_PREFIX)?.strip_suffix(NAME_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub fn encode_segment_header(first_index: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&first_index.to_le_bytes());
    let crc = crc32c::crc32c(&header[0..24]);
    header[24..28].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The first index a segment header records, or why the header is not valid.
pub fn decode_segment_header(bytes: &[u8]) -> Result<u64, String> {
    let Some(header) = bytes.get(..SEGMENT_HEADER_LEN as usize) else {
        return Err(format!(
            "segment header is {} bytes, expected {SEGMENT_HEADER_LEN}",
            bytes.len()
        ));
    };
    if header[0..8] != SEGMENT_MAGIC {
        return Err(format!("bad segment magic {:02x?}", &header[0..8]));
    }
    let stored = read_u32(header, 24);
    let computed = crc32c::crc32c(&header[0..24]);
    if stored != computed {
        return Err(format!(
            "segment header checksum {stored:#010x} does not match {computed:#010x}"
        ));
    }
    let version = read_u32(header, 8);
    if version != FORMAT_VERSION {
        return Err(format!(
            "segment format version {version}; this build reads {FORMAT_VERSION}"
        ));
    }
    Ok(read_u64(header, 16))
}

pub fn frame_len(payload_len: usize) -> u64 {
    RECORD_HEADER_LEN + payload_len as u64
}

/// Appends one record frame to `buf`. The caller has checked `payload.len() <= MAX_PAYLOAD`.
pub fn encode_record(buf: &mut Vec<u8>, index: u64, payload: &[u8]) {
    let len = (payload.len() as u32).to_le_bytes();
    let index = index.to_le_bytes();
    let crc = record_crc(len, index, payload);
    buf.extend_from_slice(&len);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(&index);
    buf.extend_from_slice(payload);
}

fn record_crc(len: [u8; 4], index: [u8; 8], payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&len);
    let crc = crc32c::crc32c_append(crc, &index);
    crc32c::crc32c_append(crc, payload)
}

/// A record that decoded and whose checksum matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub index: u64,
    /// Where the payload lies in the slice that was decoded.
    pub payload: Range<usize>,
    pub frame_len: u64,
}

/// Why the bytes at an offset are not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRecord {
    /// The frame runs past the end of the data: `need` bytes from the offset.
    Short {
        need: u64,
        have: u64,
    },
    TooLong {
        len: u32,
    },
    Checksum {
        stored: u32,
        computed: u32,
    },
}

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadRecord::Short { need, have } => {
                write!(f, "record needs {need} bytes but only {have} remain")
            }
            BadRecord::TooLong { len } => {
                write!(f, "record length {len} exceeds the maximum {MAX_PAYLOAD}")
            }
            BadRecord::Checksum { stored, computed } => write!(
                f,
                "record checksum {stored:#010x} does not match {computed:#010x}"
            ),
        }
    }
}

/// Decodes the record frame starting at `pos` in `data`.
pub fn decode_record(data: &[u8], pos: usize) -> Result<Record, BadRecord> {
    let have = data.len().saturating_sub(pos) as u64;
    if have < RECORD_HEADER_LEN {
        return Err(BadRecord::Short {
            need: RECORD_HEADER_LEN,
            have,
        });
    }
    let len = read_u32(data, pos);
    if len as usize > MAX_PAYLOAD {
        return Err(BadRecord::TooLong { len });
    }
    let need = frame_len(len as usize);
    if have < need {
        return Err(BadRecord::Short { need, have });
    }
    let stored = read_u32(data, pos + 4);
    let index = read_u64(data, pos + 8);
    let start = pos + RECORD_HEADER_LEN as usize;
    let payload = start..start + len as usize;
    let computed = record_crc(
        len.to_le_bytes(),
        index.to_le_bytes(),
        &data[payload.clone()],
    );
    if stored != computed {
        return Err(BadRecord::Checksum { stored, computed });
    }
    Ok(Record {
        index,
        payload,
        frame_len: need,
    })
}

fn read_u32(data: &[u8], at: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&data[at..at + 4]);
    u32::from_le_bytes(bytes)
}

fn read_u64(data: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&data[at..at + 8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_sort() {
        assert_eq!(segment_file_name(42), "wal-00000000000000000042.log");
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert!(segment_file_name(9) < segment_file_name(10));
        assert_eq!(parse_segment_file_name("wal-42.log"), None);
        assert_eq!(parse_segment_file_name("meta"), None);
        assert_eq!(
            parse_segment_file_name("wal-0000000000000000004x.log"),
            None
        );
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let header = encode_segment_header(7);
        assert_eq!(decode_segment_header(&header), Ok(7));
        let mut bad = header;
        bad[17] ^= 1;
        assert!(
            decode_segment_header(&bad)
                .unwrap_err()
                .contains("checksum")
        );
        assert!(decode_segment_header(&header[..10]).is_err());
        assert!(
            decode_segment_header(&[0u8; 32])
                .unwrap_err()
                .contains("magic")
        );
    }

    #[test]
    fn record_round_trips() {
        let mut buf = vec![0xAA; 3];
        encode_record(&mut buf, 99, b"hello");
        let record = decode_record(&buf, 3).unwrap();
        assert_eq!(record.index, 99);
        assert_eq!(&buf[record.payload.clone()], b"hello");
        assert_eq!(record.frame_len, 21);
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 5, b"payload bytes");
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut damaged = buf.clone();
                damaged[byte] ^= 1 << bit;
                assert!(decode_record(&damaged, 0).is_err(), "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn short_and_zeroed_frames_are_not_records() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, b"abc");
        assert!(matches!(
            decode_record(&buf[..buf.len() - 1], 0),
            Err(BadRecord::Short { need: 19, have: 18 })
        ));
        assert!(matches!(
            decode_record(&[0u8; 64], 0),
            Err(BadRecord::Checksum { .. })
        ));
    }
}
