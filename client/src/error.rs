//! The one error type of the client crate: every failure names the master address or the
//! value that was wrong, and what went wrong with it.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No QUIC connection could be made (unreachable, TLS refused, timed out).
    #[error("cannot reach master at {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    /// None of several master addresses answered; each one's failure is listed.
    #[error("cannot reach any master: {}", .failures.join("; "))]
    NoMaster { failures: Vec<String> },
    /// The master closed the session on purpose; `reason` is its own words.
    #[error("master at {addr} refused the framework: {reason}")]
    Refused { addr: SocketAddr, reason: String },
    /// The master does not lead the replicated masters; `leader` is where it said to go
    /// (None: an election is under way).
    #[error("master at {addr} is not the leader{}", match leader {
        Some(l) => format!("; the leader is {l}"),
        None => "; no leader is elected yet".to_owned(),
    })]
    NotLeader {
        addr: SocketAddr,
        leader: Option<SocketAddr>,
    },
    /// The session broke after it was set up (connection lost, stream reset, bad frame).
    #[error("lost the session with master at {addr}: {reason}")]
    Session { addr: SocketAddr, reason: String },
    /// The master reported an error event that ends the session.
    #[error("master at {addr} reported a fatal error: {message}")]
    Fatal { addr: SocketAddr, message: String },
    /// The CA certificate or TLS set-up is unusable.
    #[error("invalid TLS set-up: {0}")]
    Tls(String),
    /// A caller-supplied option is unusable.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },
    /// Nothing the master offered could hold the task within the waiting time.
    #[error("no offer from master at {addr} fitted {wanted} within {waited_s} s{seen}")]
    NoFittingOffer {
        addr: SocketAddr,
        wanted: String,
        waited_s: u64,
        /// A short account of the offers seen, e.g. " (3 offers seen, largest: cpus:1;mem:64)".
        seen: String,
    },
    /// Something awaited through the operator API did not happen in time.
    #[error("gave up after {waited_s} s waiting for {what} (master {addr})")]
    Waited {
        addr: SocketAddr,
        what: String,
        waited_s: u64,
    },
    /// The operator HTTP API could not be read.
    #[error("cannot read {url}: {reason}")]
    Http { url: String, reason: String },
    /// Writing the output (terminal, pipe) failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}
