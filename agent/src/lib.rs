//! The Fleet agent: resource detection, containers (cgroups, sandboxes, processes), eBPF
//! usage accounting, the task lifecycle, and the link to the master.

mod agent;
pub mod cgroups;
pub mod checkpoint;
pub mod containerizer;
pub mod detect;
pub mod ebpf;
pub mod error;
pub mod executors;
pub mod files;
pub mod http;
pub mod link;
pub mod tasks;

pub use agent::{AgentConfig, AgentHandle, Recover, offered_resources, start};
pub use error::AgentError;
