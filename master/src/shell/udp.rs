//! The QUIC sockets: one per network shard on one UDP port, and their kernel buffers.
//!
//! Shards share the port through SO_REUSEPORT: the kernel hashes each datagram's
//! addresses and ports to one socket of the group, so every packet of a connection reaches
//! the shard that accepted it. Thousands of agents handshaking at once (a master
//! starting, or taking over after a failover) overflow the default receive buffer (about
//! 208 KiB), and every lost handshake packet is retransmitted only after a timeout that
//! doubles each time, so registrations stall for tens of seconds. A bigger buffer absorbs
//! the burst.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

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

/// Binds `shards` UDP sockets to `addr` (port 0: one free port for all), as one
/// SO_REUSEPORT group when there are several.
///
/// A group would let another process of the same user join it on the same port and take a
/// share of the agents' packets, where a plain bind fails with "address in use". So the
/// port is first bound without SO_REUSEPORT, which fails if anyone holds it, group or not,
/// and the group binds it right after that socket closes.
pub fn bind_shards(addr: SocketAddr, shards: usize) -> std::io::Result<Vec<std::net::UdpSocket>> {
    let probe = std::net::UdpSocket::bind(addr)?;
    if shards <= 1 {
        return Ok(vec![probe]);
    }
    let addr = probe.local_addr()?;
    drop(probe);
    (0..shards)
        .map(|_| {
            let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
            socket.set_reuse_port(true)?;
            if addr.is_ipv6() {
                socket.set_only_v6(false)?;
            }
            socket.bind(&addr.into())?;
            Ok(socket.into())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_share_one_port_and_no_one_else_can_bind_it() {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let sockets = bind_shards(any, 3).unwrap();
        let port = sockets[0].local_addr().unwrap().port();
        assert!(
            sockets
                .iter()
                .all(|s| s.local_addr().unwrap().port() == port),
            "{sockets:?}"
        );
        let taken = SocketAddr::from(([127, 0, 0, 1], port));
        let err = bind_shards(taken, 2).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
        let err = bind_shards(taken, 1).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    }

    /// Datagrams from many source ports spread over the group, and each source always
    /// reaches the same socket.
    #[test]
    fn the_kernel_spreads_sources_over_the_shards() {
        use std::time::Duration;
        let sockets = bind_shards(SocketAddr::from(([127, 0, 0, 1], 0)), 2).unwrap();
        let to = sockets[0].local_addr().unwrap();
        for s in &sockets {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
        }
        let mut got = [0usize; 2];
        for _ in 0..32 {
            let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let from = client.local_addr().unwrap();
            let mut reached = None;
            for _ in 0..3 {
                client.send_to(b"x", to).unwrap();
            }
            for (i, s) in sockets.iter().enumerate() {
                s.set_nonblocking(true).unwrap();
                let mut buf = [0u8; 8];
                std::thread::sleep(Duration::from_millis(1));
                while let Ok((_, src)) = s.recv_from(&mut buf) {
                    assert_eq!(src, from);
                    assert!(reached.is_none_or(|r| r == i), "{from} reached two shards");
                    reached = Some(i);
                    got[i] += 1;
                }
            }
            assert!(reached.is_some(), "nothing from {from}");
        }
        assert!(got[0] > 0 && got[1] > 0, "all on one shard: {got:?}");
    }

    #[test]
    fn buffers_grow_beyond_the_default() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (recv0, send0) = (get(&socket, libc::SO_RCVBUF), get(&socket, libc::SO_SNDBUF));
        let (recv, send) = grow_buffers(&socket, 4 << 20);
        assert!(recv > recv0, "receive buffer {recv0} -> {recv}");
        assert!(send > send0, "send buffer {send0} -> {send}");
    }
}
