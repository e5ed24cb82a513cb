//! Containers: a command run in its own sandbox directory and cgroup(s), with its output
//! in `<sandbox>/stdout` and `<sandbox>/stderr`, supervised until it terminates.
//!
//! How a container runs, all on the glommio executor that owns it:
//! - its cgroups are created and limited first, then a hook sees the cgroup2 id (so BPF
//!   programs know the container before any of its code runs), then the process is forked;
//!   the child writes itself into every `cgroup.procs` and calls `setsid` before `exec`
//!   (`spawn.rs`), so the command never runs outside its cgroups and survives the agent;
//! - stdout and stderr are the sandbox files themselves, opened for appending by the agent
//!   and handed to the child: nothing of the agent sits between the task and its output,
//!   so output keeps flowing (and the task never sees a broken pipe) while the agent is
//!   down or restarting;
//! - exit is observed through a pidfd (`supervise.rs`): an io_uring poll on it completes
//!   when the process exits, then `waitid(P_PIDFD)` reaps it. No thread blocks and nothing
//!   polls on a timer. The process also records how it ended in `<runtime_dir>/exit`
//!   (`init.rs`), which is how a restarted agent, no longer its parent, learns it;
//! - a container whose agent restarted is adopted again (`run::adopt_container`): same pid,
//!   same start time, still in its cgroup;
//! - what a termination means for the task is a pure function (`lifecycle.rs`).

mod init;
mod lifecycle;
mod run;
mod spawn;
mod supervise;

use std::path::{Path, PathBuf};

pub use crate::cgroups::Limits;
pub use lifecycle::{Outcome, outcome};
pub use run::{
    Adoption, CgroupHook, ContainerEvent, HookFn, KillRequest, LaunchContext, adopt_container,
    run_container,
};
pub use spawn::{Outputs, Process, pidfd_open, spawn};
pub use supervise::{ExitRecord, process_start_time};

/// What to run and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// `true`: run `value` with `sh -c`; `false`: exec `value` with `arguments` as its
    /// whole argv (argv[0] first, as in Mesos' CommandInfo).
    pub shell: bool,
    pub value: String,
    pub arguments: Vec<String>,
}

/// A container to launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Unique on this agent; names its cgroup directories.
    pub container_id: String,
    /// The working directory, created if missing; holds `stdout` and `stderr`.
    pub sandbox: PathBuf,
    pub command: CommandSpec,
    /// Environment of the command, on top of PATH, FLEET_SANDBOX and MESOS_SANDBOX.
    pub env: Vec<(String, String)>,
    pub limits: Limits,
    /// What the kernel programs enforce for it beyond the cgroup controllers.
    pub isolation: Isolation,
    /// Where the container's exit status is recorded (`<runtime_dir>/exit`), so that an
    /// agent that restarted, and no longer parents the process, learns how it ended.
    /// `None` records nothing.
    pub runtime_dir: Option<PathBuf>,
}

impl ContainerSpec {
    /// A spec that only describes isolation: for admitting a cgroup the caller made and
    /// fills itself (benches, tests of the kernel programs); its command is `true` and it
    /// has no limits.
    pub fn for_isolation(container_id: &str, sandbox: &Path, isolation: Isolation) -> Self {
        ContainerSpec {
            container_id: container_id.to_owned(),
            sandbox: sandbox.to_owned(),
            command: CommandSpec {
                shell: true,
                value: "true".into(),
                arguments: Vec::new(),
            },
            env: Vec::new(),
            limits: Limits::default(),
            isolation,
            runtime_dir: None,
        }
    }
}

/// A container's isolation enforced by the eBPF programs (and, for GPUs, the v1 devices
/// controller), keyed by its cgroup2 id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Isolation {
    /// Port ranges (inclusive) it may bind; it may always bind port 0.
    pub ports: Vec<(u16, u16)>,
    /// Minor numbers of the /dev/nvidia<N> GPUs it may open.
    pub gpus: Vec<u32>,
    /// The agent's other GPU control devices (`major`, `minor`: /dev/nvidia-uvm and the
    /// like): opened only by a container with GPUs, denied to the others. /dev/nvidiactl
    /// (195:255) follows the same rule.
    pub gpu_control: Vec<(u32, u32)>,
    /// Disk space it may hold, in bytes; 0 for no limit.
    pub disk_bytes: u64,
}

/// How a container's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Termination {
    /// The exit status, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it, when one did.
    pub signal: Option<i32>,
    /// Whether the kernel's OOM killer killed a task of the container.
    pub oom_killed: bool,
}
