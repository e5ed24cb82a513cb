//! Copies a container's stdout or stderr socket into its sandbox file with io_uring: the
//! socket is read through glommio's `UnixStream`, the file written with `BufferedFile`.

use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::path::Path;

use futures::AsyncReadExt;
use glommio::io::BufferedFile;

const CHUNK: usize = 64 * 1024;

/// Creates (truncating) the log file at `path`.
pub async fn create(path: &Path) -> io::Result<BufferedFile> {
    Ok(BufferedFile::create(path).await?)
}

/// Appends everything read from `source` to `file` until end-of-file (every writer gone),
/// each chunk as soon as it arrives, so the file is readable while the task runs. Returns
/// the bytes copied.
pub async fn copy(source: OwnedFd, file: BufferedFile) -> io::Result<u64> {
    // SAFETY: `source` is a socket we own; the stream takes it over and closes it.
    let mut stream = unsafe { glommio::net::UnixStream::from_raw_fd(source.into_raw_fd()) };
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let mut offset = 0;
        while offset < n {
            let written = file.write_at(buf[offset..n].to_vec(), pos).await?;
            if written == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "log file accepts no more",
                ));
            }
            offset += written;
            pos += written as u64;
        }
    }
    file.close().await?;
    Ok(pos)
}
