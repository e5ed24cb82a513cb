//! The vocabulary every Fleet process shares: ids, the resource model, task states, wire
//! messages, framing and the protocol version, and the cluster's TLS set-up. No I/O.

pub mod frame;
pub mod ids;
pub mod leader;
pub mod messages;
pub mod resources;
pub mod stream;
pub mod task;
pub mod tls;
