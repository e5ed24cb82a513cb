//! Network accounting: the cgroup_skb ingress/egress programs of ebpf/src/net.rs, attached
//! at the agent's cgroup2 root. They add each packet's length to the net_rx_bytes /
//! net_tx_bytes of the socket's cgroup in the counters map that
//! [`UsageProbes`](super::UsageProbes) tracks, so a container is counted from the moment
//! it is tracked, and this module keeps no map of its own.

use std::path::Path;

use aya::{
    Ebpf,
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType},
};

use super::{
    error::EbpfError,
    ports::{attach_at_cgroup, open_cgroup},
};
use crate::containerizer::ContainerSpec;

/// Each program and the direction it counts.
const PROGRAMS: [(&str, CgroupSkbAttachType); 2] = [
    ("net_ingress", CgroupSkbAttachType::Ingress),
    ("net_egress", CgroupSkbAttachType::Egress),
];

/// The network counting programs, attached while the object that owns them lives.
#[derive(Debug)]
pub(super) struct Net {}

impl Net {
    /// Loads the programs from `object` and attaches them at `cgroup2_root` (the agent's
    /// cgroup2 directory, parent of every container's), alongside any others there.
    pub(super) fn load(object: &mut Ebpf, cgroup2_root: &Path) -> Result<Self, EbpfError> {
        let dir = open_cgroup(PROGRAMS[0].0, cgroup2_root)?;
        for (name, direction) in PROGRAMS {
            attach_at_cgroup(
                object,
                name,
                cgroup2_root,
                &dir,
                |program: &mut CgroupSkb, dir| {
                    program.load()?;
                    program.attach(dir, direction, CgroupAttachMode::Single)?;
                    Ok(())
                },
            )?;
        }
        Ok(Self {})
    }

    /// Nothing to set up: the container's counters entry (made when it is tracked) is
    /// what the programs add to.
    pub(super) fn admit(&self, _cgroup_id: u64, _spec: &ContainerSpec) -> Result<(), EbpfError> {
        Ok(())
    }

    /// Nothing to forget: the counters entry goes when the container is untracked.
    pub(super) fn forget(&self, _cgroup_id: u64) -> Result<(), EbpfError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        net::TcpListener,
        thread,
    };

    use crate::ebpf::ports::tests::{Attached, python_in};

    /// Connects to 127.0.0.1:argv[1], sends argv[2] bytes, shuts its side down, then
    /// reads until the peer closes and prints how much it read.
    const EXCHANGE: &str = r"
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
s.sendall(b'x' * int(sys.argv[2]))
s.shutdown(socket.SHUT_WR)
got = 0
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += len(chunk)
print(got)
";

    /// Listens on loopback, reads everything a client sends, answers `reply` bytes and
    /// closes; returns the port and the thread, which yields the bytes it read.
    fn peer(reply: usize) -> (u16, thread::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut received = Vec::new();
            stream.read_to_end(&mut received).unwrap();
            stream.write_all(&vec![b'y'; reply]).unwrap();
            received.len()
        });
        (port, handle)
    }

    #[test]
    fn counts_bytes_a_container_sends_and_receives() {
        const SENT: usize = 1 << 20;
        const RECEIVED: usize = 300_000;
        let attached = Attached::new();
        let container = attached.child("net");
        let untracked = attached.child("net-untracked");
        attached.admit(&container, &[]);

        let (port, server) = peer(RECEIVED);
        let printed = python_in(&container, EXCHANGE, &[port.to_string(), SENT.to_string()]);
        assert_eq!(server.join().unwrap(), SENT);
        assert_eq!(printed.trim(), RECEIVED.to_string());

        let counters = attached.probes.counters(container.id()).unwrap().unwrap();
        assert!(
            counters.net_tx_bytes >= SENT as u64,
            "net_tx_bytes {} < {SENT} sent",
            counters.net_tx_bytes
        );
        assert!(
            counters.net_rx_bytes >= RECEIVED as u64,
            "net_rx_bytes {} < {RECEIVED} received",
            counters.net_rx_bytes
        );
        // Headers and acknowledgements add to both, but not several times the payload.
        assert!(
            counters.net_tx_bytes < 2 * SENT as u64 && counters.net_rx_bytes < 2 * SENT as u64,
            "{counters:?}"
        );

        // The same exchange from a cgroup that is not tracked counts nowhere.
        let before = counters;
        let (port, server) = peer(RECEIVED);
        python_in(&untracked, EXCHANGE, &[port.to_string(), SENT.to_string()]);
        server.join().unwrap();
        assert_eq!(attached.probes.counters(untracked.id()).unwrap(), None);
        let after = attached.probes.counters(container.id()).unwrap().unwrap();
        assert_eq!(
            (after.net_rx_bytes, after.net_tx_bytes),
            (before.net_rx_bytes, before.net_tx_bytes)
        );
    }
}
