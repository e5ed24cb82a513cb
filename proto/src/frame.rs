//! Framing: every stream starts with a preamble (magic, stream kind, protocol version),
//! then carries frames of a u32 little-endian length followed by an rkyv archive.
//!
//! The decoder is sans-I/O: bytes are pushed in, whole frames come out in buffers aligned
//! for `rkyv::access`, so a receiver can read a message in place without deserializing it.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;

/// Protocol version of this build. Peers with another major version are refused.
pub const PROTOCOL_MAJOR: u16 = 1;
pub const PROTOCOL_MINOR: u16 = 0;

/// Largest frame accepted by default (16 MiB); a larger length prefix is an error.
pub const MAX_FRAME_LEN: usize = 16 << 20;

/// Length of the preamble that opens every stream.
pub const PREAMBLE_LEN: usize = 8;
const MAGIC: [u8; 3] = *b"FLT";

/// ALPN of agent connections.
pub const ALPN_AGENT: &[u8] = b"fleet-agent/1";
/// ALPN of native framework (scheduler) connections.
pub const ALPN_SCHEDULER: &[u8] = b"fleet-sched/1";
/// ALPN of Raft connections between masters (mutual TLS, master certificates only).
pub const ALPN_RAFT: &[u8] = b"fleet-raft/1";

/// QUIC application close codes. The reason phrase that goes with them says what happened.
pub mod close {
    /// Orderly shutdown.
    pub const NORMAL: u32 = 0;
    /// The peer sent something this side could not accept (bad frame, version, message).
    pub const PROTOCOL_ERROR: u32 = 1;
    /// The peer is not allowed (no certificate, refused registration, torn down).
    pub const REFUSED: u32 = 2;
    /// This side is shutting down.
    pub const SHUTDOWN: u32 = 3;
    /// This master is not the leader; the reason names the leader when it is known
    /// (`crate::leader`).
    pub const NOT_LEADER: u32 = 4;
}

/// What a stream carries; named in its preamble so a misrouted stream is caught at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum StreamKind {
    AgentControl = 1,
    AgentReport = 2,
    SchedulerControl = 3,
    SchedulerEvents = 4,
    /// One Raft RPC between masters: a request frame, then the response frame back.
    RaftRpc = 5,
}

impl StreamKind {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => StreamKind::AgentControl,
            2 => StreamKind::AgentReport,
            3 => StreamKind::SchedulerControl,
            4 => StreamKind::SchedulerEvents,
            5 => StreamKind::RaftRpc,
            _ => return None,
        })
    }
}

/// Everything that can be wrong with bytes received from a peer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("not a Fleet stream: preamble starts with {0:02x?}, expected \"FLT\"")]
    BadMagic([u8; 3]),
    #[error("unknown stream kind {0} in preamble")]
    UnknownStreamKind(u8),
    #[error("expected a {expected:?} stream, got {got:?}")]
    WrongStreamKind {
        expected: StreamKind,
        got: StreamKind,
    },
    #[error(
        "incompatible protocol version {major}.{minor}: this side speaks {}.{}",
        PROTOCOL_MAJOR,
        PROTOCOL_MINOR
    )]
    IncompatibleVersion { major: u16, minor: u16 },
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("invalid {what} message: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("cannot encode {what} message: {reason}")]
    Encode { what: &'static str, reason: String },
    #[error("stream ended inside a frame ({have} of {need} bytes)")]
    Truncated { have: usize, need: usize },
}

/// The 8 bytes that open a stream of `kind`.
pub fn preamble(kind: StreamKind) -> [u8; PREAMBLE_LEN] {
    let mut out = [0u8; PREAMBLE_LEN];
    out[..3].copy_from_slice(&MAGIC);
    out[3] = kind as u8;
    out[4..6].copy_from_slice(&PROTOCOL_MAJOR.to_le_bytes());
    out[6..8].copy_from_slice(&PROTOCOL_MINOR.to_le_bytes());
    out
}

/// Checks a received preamble: magic, the expected stream kind and a compatible version.
/// Returns the peer's minor version.
pub fn check_preamble(bytes: &[u8; PREAMBLE_LEN], expected: StreamKind) -> Result<u16, FrameError> {
    let magic = [bytes[0], bytes[1], bytes[2]];
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    let kind = StreamKind::from_byte(bytes[3]).ok_or(FrameError::UnknownStreamKind(bytes[3]))?;
    let major = u16::from_le_bytes([bytes[4], bytes[5]]);
    let minor = u16::from_le_bytes([bytes[6], bytes[7]]);
    if major != PROTOCOL_MAJOR {
        return Err(FrameError::IncompatibleVersion { major, minor });
    }
    if kind != expected {
        return Err(FrameError::WrongStreamKind {
            expected,
            got: kind,
        });
    }
    Ok(minor)
}

/// A message type that can travel in a frame.
pub trait Message:
    rkyv::Archive
    + for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
    + Sized
where
    Self::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<Self, HighDeserializer<rancor::Error>>,
{
    /// Name used in errors.
    const NAME: &'static str;
}

macro_rules! message {
    ($($ty:path => $name:literal),* $(,)?) => {
        $(impl Message for $ty { const NAME: &'static str = $name; })*
    };
}

message! {
    crate::messages::agent::AgentMessage => "agent",
    crate::messages::agent::MasterMessage => "master",
    crate::messages::agent::Report => "report",
    crate::messages::scheduler::Call => "call",
    crate::messages::scheduler::Event => "event",
}

/// Encodes `msg` as one frame: length prefix then archive.
pub fn encode<T: Message>(msg: &T) -> Result<Vec<u8>, FrameError>
where
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
{
    let body = rkyv::to_bytes::<rancor::Error>(msg).map_err(|e| FrameError::Encode {
        what: T::NAME,
        reason: e.to_string(),
    })?;
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
        len: body.len(),
        max: u32::MAX as usize,
    })?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Validates a frame body and returns a reference to the archived message inside it.
pub fn access<T: Message>(body: &AlignedVec) -> Result<&T::Archived, FrameError>
where
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
{
    rkyv::access::<T::Archived, rancor::Error>(body).map_err(|e| FrameError::Invalid {
        what: T::NAME,
        reason: e.to_string(),
    })
}

/// Validates a frame body and deserializes it into an owned message (control messages,
/// which are small and rare; reports are read in place with [`access`]).
pub fn decode<T: Message>(body: &AlignedVec) -> Result<T, FrameError>
where
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
{
    let archived = access::<T>(body)?;
    rkyv::deserialize::<T, rancor::Error>(archived).map_err(|e| FrameError::Invalid {
        what: T::NAME,
        reason: e.to_string(),
    })
}

/// Reads the length prefix of a frame and checks it against `max`.
pub fn frame_len(prefix: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// Incremental decoder: push received bytes, pop whole frame bodies.
#[derive(Debug)]
pub struct FrameDecoder {
    pending: Vec<u8>,
    max: usize,
}

impl FrameDecoder {
    pub fn new(max: usize) -> Self {
        FrameDecoder {
            pending: Vec::new(),
            max,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next whole frame's body, aligned for `access`, or None if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<AlignedVec>, FrameError> {
        if self.pending.len() < 4 {
            return Ok(None);
        }
        let prefix = [
            self.pending[0],
            self.pending[1],
            self.pending[2],
            self.pending[3],
        ];
        let len = frame_len(prefix, self.max)?;
        if self.pending.len() < 4 + len {
            return Ok(None);
        }
        let mut body = AlignedVec::with_capacity(len);
        body.extend_from_slice(&self.pending[4..4 + len]);
        self.pending.drain(..4 + len);
        Ok(Some(body))
    }

    /// Call at end of stream: an error if a partial frame is left.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.pending.is_empty() {
            Ok(())
        } else {
            let need = if self.pending.len() >= 4 {
                4 + u32::from_le_bytes([
                    self.pending[0],
                    self.pending[1],
                    self.pending[2],
                    self.pending[3],
                ]) as usize
            } else {
                4
            };
            Err(FrameError::Truncated {
                have: self.pending.len(),
                need,
            })
        }
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
