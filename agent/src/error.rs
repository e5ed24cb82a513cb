//! The agent's error type: every failure that crosses the crate boundary, each naming the
//! value (file, container, command) it is about.

use std::io;
use std::path::PathBuf;

/// An error from the agent's containers, cgroups, executors or resource detection.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A cgroup file or directory could not be created, written, read or removed.
    #[error("cgroup {op} '{}': {source}", path.display())]
    Cgroup {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A cgroup file held something this agent cannot parse.
    #[error("cgroup file '{}' holds unexpected content '{content}'", path.display())]
    CgroupContent { path: PathBuf, content: String },
    /// The cgroup hierarchy is not one this agent supports.
    #[error("unsupported cgroup layout at '{}': {reason}", path.display())]
    CgroupLayout { path: PathBuf, reason: String },
    /// The sandbox directory or a log file in it could not be prepared.
    #[error("sandbox '{}': {source}", path.display())]
    Sandbox {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The container's process could not be started.
    #[error("container '{container_id}': cannot start '{command}': {reason}")]
    Spawn {
        container_id: String,
        command: String,
        reason: String,
    },
    /// The hook run between cgroup creation and process start refused the container.
    #[error("container '{container_id}': cgroup2 id {cgroup2_id} refused: {reason}")]
    Hook {
        container_id: String,
        cgroup2_id: u64,
        reason: String,
    },
    /// A container id is already in use on this agent.
    #[error("container '{0}' already exists")]
    DuplicateContainer(String),
    /// No container with this id runs on this agent.
    #[error("unknown container '{0}'")]
    UnknownContainer(String),
    /// An executor thread could not be started or has stopped.
    #[error("executor {index}: {reason}")]
    Executor { index: usize, reason: String },
    /// A machine resource could not be detected.
    #[error("cannot detect {what} from '{}': {reason}", path.display())]
    Detect {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// A required eBPF program or map could not be loaded or attached.
    #[error(transparent)]
    Ebpf(#[from] crate::ebpf::EbpfError),
    /// The HTTP endpoint's address cannot be listened on.
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The agent's settings are unusable.
    #[error("invalid agent configuration: {0}")]
    Config(String),
    /// An agent thread could not be started.
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}
