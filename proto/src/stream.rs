//! Frames over any byte stream (a QUIC stream in practice). This module performs no I/O of
//! its own: it adapts `AsyncRead`/`AsyncWrite` so that masters, agents and clients frame
//! identically, with one implementation of the limits and errors.

use rkyv::api::high::{HighDeserializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::util::AlignedVec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::frame::{self, FrameError, Message, PREAMBLE_LEN, StreamKind};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("stream I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens a stream of `kind` by writing its preamble.
pub async fn write_preamble<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: StreamKind,
) -> Result<(), StreamError> {
    w.write_all(&frame::preamble(kind)).await?;
    Ok(())
}

/// Reads and checks the preamble of a stream expected to be of `kind`.
pub async fn read_preamble<R: AsyncRead + Unpin>(
    r: &mut R,
    kind: StreamKind,
) -> Result<u16, StreamError> {
    let mut buf = [0u8; PREAMBLE_LEN];
    r.read_exact(&mut buf).await?;
    Ok(frame::check_preamble(&buf, kind)?)
}

/// Writes one message as one frame.
pub async fn write_message<W, T>(w: &mut W, msg: &T) -> Result<(), StreamError>
where
    W: AsyncWrite + Unpin,
    T: Message,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
{
    let bytes = frame::encode(msg)?;
    w.write_all(&bytes).await?;
    Ok(())
}

/// Reads one frame body into an aligned buffer, ready for `frame::access`. Returns None when
/// the stream ends cleanly at a frame boundary.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<AlignedVec>, StreamError> {
    let mut body = AlignedVec::new();
    Ok(read_frame_into(r, max, &mut body).await?.then_some(body))
}

/// Like [`read_frame`], into `body` (cleared first), so a reader can reuse its buffers.
/// Returns false at a clean end of the stream.
pub async fn read_frame_into<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    body: &mut AlignedVec,
) -> Result<bool, StreamError> {
    let mut prefix = [0u8; 4];
    let mut have = 0;
    while have < 4 {
        let n = r.read(&mut prefix[have..]).await?;
        if n == 0 {
            if have == 0 {
                return Ok(false);
            }
            return Err(FrameError::Truncated { have, need: 4 }.into());
        }
        have += n;
    }
    let len = frame::frame_len(prefix, max)?;
    body.clear();
    body.resize(len, 0);
    if let Err(e) = r.read_exact(body).await {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            return Err(FrameError::Truncated {
                have: 4,
                need: 4 + len,
            }
            .into());
        }
        return Err(e.into());
    }
    Ok(true)
}

/// Reads one frame and deserializes it into an owned message.
pub async fn read_message<R, T>(r: &mut R, max: usize) -> Result<Option<T>, StreamError>
where
    R: AsyncRead + Unpin,
    T: Message,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
{
    match read_frame(r, max).await? {
        Some(body) => Ok(Some(frame::decode::<T>(&body)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::scheduler::Call;

    #[tokio::test]
    async fn messages_cross_a_pipe() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            write_preamble(&mut a, StreamKind::SchedulerControl)
                .await
                .unwrap();
            write_message(&mut a, &Call::Teardown).await.unwrap();
        });
        read_preamble(&mut b, StreamKind::SchedulerControl)
            .await
            .unwrap();
        let call: Option<Call> = read_message(&mut b, 1024).await.unwrap();
        assert_eq!(call, Some(Call::Teardown));
        writer.await.unwrap();
        let end: Option<Call> = read_message(&mut b, 1024).await.unwrap();
        assert_eq!(end, None);
    }
}
