//! Kernel buffers of the QUIC socket. Thousands of agents handshaking at once (a master
//! starting, or taking over after a failover) overflow the default receive buffer (about
//! 208 KiB), and every lost handshake packet is retransmitted only after a timeout that
//! doubles each time, so registrations stall for tens of seconds. A bigger buffer absorbs
//! the burst.

use std::os::fd::AsRawFd;

/// What the master asks for, per direction.
pub const QUIC_SOCKET_BUFFER: usize = 16 << 20;

fn set(socket: &std::net::UdpSocket, force: libc::c_int, plain: libc::c_int, bytes: usize) {
    let value = bytes.min(libc::c_int::MAX as usize) as libc::c_int;
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let fd = socket.as_raw_fd();
    // SAFETY: setsockopt reads `len` bytes from a live c_int for an open socket.
    let forced =
        unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, force, (&raw const value).cast(), len) };
    if forced != 0 {
        // Without CAP_NET_ADMIN the kernel caps the plain option at net.core.[rw]mem_max.
        // SAFETY: as above.
        unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, plain, (&raw const value).cast(), len) };
    }
}

fn get(socket: &std::net::UdpSocket, option: libc::c_int) -> usize {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into a live c_int.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if rc == 0 { value.max(0) as usize } else { 0 }
}

/// Grows `socket`'s receive and send buffers towards `bytes` (past net.core.rmem_max when
/// the process may) and returns the sizes the kernel granted, as it reports them (twice
/// the payload, for its bookkeeping). Never fails: a smaller buffer still works.
pub fn grow_buffers(socket: &std::net::UdpSocket, bytes: usize) -> (usize, usize) {
    set(socket, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, bytes);
    set(socket, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, bytes);
    (get(socket, libc::SO_RCVBUF), get(socket, libc::SO_SNDBUF))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_grow_beyond_the_default() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (recv0, send0) = (get(&socket, libc::SO_RCVBUF), get(&socket, libc::SO_SNDBUF));
        let (recv, send) = grow_buffers(&socket, 4 << 20);
        assert!(recv > recv0, "receive buffer {recv0} -> {recv}");
        assert!(send > send0, "send buffer {send0} -> {send}");
    }
}
