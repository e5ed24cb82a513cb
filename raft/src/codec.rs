//! How this crate turns openraft's values into bytes: postcard, a compact serde format
//! with a stable specification. Log entries, the log's meta record, snapshot headers
//! and (later) the masters' Raft RPCs all go through here.

use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: postcard::Error,
    },
    #[error("cannot decode {what} from {len} bytes: {source}")]
    Decode {
        what: &'static str,
        len: usize,
        #[source]
        source: postcard::Error,
    },
    #[error("{what} is followed by {extra} unexpected bytes")]
    Trailing { what: &'static str, extra: usize },
    #[error("{what} has format version {version}, which this build does not know")]
    Version { what: &'static str, version: u8 },
}

pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    postcard::to_stdvec(value).map_err(|source| CodecError::Encode { what, source })
}

/// Decodes a value that must fill `bytes` exactly: anything left over means the bytes
/// are not what we wrote.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|source| CodecError::Decode {
        what,
        len: bytes.len(),
        source,
    })?;
    if !rest.is_empty() {
        return Err(CodecError::Trailing {
            what,
            extra: rest.len(),
        });
    }
    Ok(value)
}
