//! The error of everything in `ebpf`: each variant names the program, map, file or mount
//! involved and carries the kernel's reason.

use std::{error::Error, path::PathBuf};

/// A failure to load, attach or use the agent's eBPF programs and maps.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// An agent instance name that cannot be one directory under the pin root.
    #[error("invalid agent instance name {name:?}: {why}")]
    InvalidInstance { name: String, why: &'static str },

    /// A filesystem the programs need (bpffs, tracefs) is absent and cannot be mounted.
    #[error("cannot mount {fs} at {}: {reason}", path.display())]
    Mount {
        fs: &'static str,
        path: PathBuf,
        reason: String,
    },

    /// The pin directory cannot be created or is not on bpffs.
    #[error("bpffs pin directory {}: {reason}", path.display())]
    PinDir { path: PathBuf, reason: String },

    /// The embedded object (or a map pinned by an earlier run) was refused.
    #[error("cannot load the eBPF object with maps pinned in {}: {reason}", pin_dir.display())]
    Load { pin_dir: PathBuf, reason: String },

    /// A program is absent from the object or the kernel refused it.
    #[error("cannot load eBPF program {program}: {reason}")]
    Program {
        program: &'static str,
        reason: String,
    },

    /// The kernel refused to attach a program to a tracepoint.
    #[error("cannot attach eBPF program to tracepoint {tracepoint}: {reason}")]
    Attach { tracepoint: String, reason: String },

    /// A container's disk usage cannot be measured (its sandbox cannot be read, or is on
    /// a filesystem the disk programs do not follow).
    #[error("disk accounting for {}: {reason}", path.display())]
    Disk { path: PathBuf, reason: String },

    /// A map is absent, has the wrong shape, or a map operation failed.
    #[error("map {map}: {action}: {reason}")]
    Map {
        map: &'static str,
        action: String,
        reason: String,
    },
}

/// The error and its sources, outermost first, joined by ": ", so that the kernel's reason
/// (usually an io::Error at the bottom) always reaches the message.
pub(super) fn reason(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
