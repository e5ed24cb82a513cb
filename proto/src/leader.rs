//! How a master that does not lead sends clients to the one that does: it closes their
//! connection with [`close::NOT_LEADER`](crate::frame::close::NOT_LEADER) and a reason
//! naming the leader's address, which agents and the SDK read back with [`hint`].

use std::net::SocketAddr;

use crate::frame::close;

/// What a follower's close says about the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderHint {
    /// The leader's QUIC address (its HTTP API listens on the same address over TCP).
    At(SocketAddr),
    /// No leader is known yet (an election is under way): try again shortly.
    Unknown,
}

const PREFIX: &str = "not the leading master; ";
const AT: &str = "the leader is ";

/// The close reason a follower sends: "not the leading master; the leader is ADDR".
pub fn reason(leader: Option<SocketAddr>) -> String {
    match leader {
        Some(addr) => format!("{PREFIX}{AT}{addr}"),
        None => format!("{PREFIX}no leader is elected yet"),
    }
}

/// Reads a close back: `Some` when `code` is [`close::NOT_LEADER`], with the leader's
/// address when the reason names one.
pub fn hint(code: u64, reason: &[u8]) -> Option<LeaderHint> {
    if code != u64::from(close::NOT_LEADER) {
        return None;
    }
    let text = String::from_utf8_lossy(reason);
    let addr = text
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_prefix(AT))
        .and_then(|addr| addr.trim().parse().ok());
    Some(addr.map_or(LeaderHint::Unknown, LeaderHint::At))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_names_the_leader_and_reads_back() {
        let addr: SocketAddr = "127.0.0.1:5051".parse().unwrap();
        let text = reason(Some(addr));
        assert_eq!(text, "not the leading master; the leader is 127.0.0.1:5051");
        let code = u64::from(close::NOT_LEADER);
        assert_eq!(hint(code, text.as_bytes()), Some(LeaderHint::At(addr)));
        let unknown = reason(None);
        assert_eq!(hint(code, unknown.as_bytes()), Some(LeaderHint::Unknown));
        assert_eq!(hint(u64::from(close::REFUSED), text.as_bytes()), None);
    }
}
