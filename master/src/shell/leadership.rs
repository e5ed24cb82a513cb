//! Whether this master serves agents, frameworks and operators now, and where the leader
//! is when it does not. A master without replication always serves; a replicated one
//! serves while it leads the Raft group with a fresh quorum's confirmation (`replica/`).
//! The QUIC endpoint, the driver and the HTTP API all read it from one `watch`.

use std::net::SocketAddr;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    /// This master leads and runs the core.
    pub serving: bool,
    /// The leader's address (QUIC, and HTTP on the same port) when another master leads.
    pub leader: Option<SocketAddr>,
    /// When the quorum's last confirmation runs out (None: no lease, a lone master).
    pub until: Option<Instant>,
}

impl Leadership {
    /// A master on its own: it always serves.
    pub fn alone() -> Self {
        Leadership {
            serving: true,
            leader: None,
            until: None,
        }
    }

    /// Whether this master serves at this instant: also false once the lease ran out,
    /// before the replica had the time to say so (a process that was paused).
    pub fn serves(&self) -> bool {
        self.serving && self.until.is_none_or(|until| Instant::now() < until)
    }

    /// What a follower answers clients: not the leader, and where the leader is.
    pub fn refusal(&self) -> String {
        fleet_proto::leader::reason(self.leader)
    }
}
