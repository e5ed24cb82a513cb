//! The agent's checkpoint: what a restarted agent needs to take its containers back and
//! lose no status update. It lives under `<work_dir>/meta`:
//!
//! ```text
//! meta/agent.json                        agent id, boot id, format
//! meta/containers/<container>/task.json  the task, its framework, its process (pid and
//!                                        start time), its state and every status update
//!                                        not yet acknowledged, in order
//! meta/containers/<container>/exit       written by the container's C process when the
//!                                        command ends: `exit CODE` or `signal NUMBER`
//! ```
//!
//! Every JSON file is replaced atomically: written to `<name>.tmp`, fdatasync'd, renamed
//! over the old one, and the directory fsync'd, all through the io_uring of the glommio
//! executor that runs the write ([`replace`]). A crash at any point leaves either the old
//! file or the new one, never a mix; leftover `.tmp` files are ignored and removed when
//! the checkpoint is read. A file that is there but does not parse was damaged outside
//! the agent: reading fails and names it, and the agent refuses to start on it rather
//! than guess (`--recover cleanup` starts afresh).

use std::io;
use std::path::{Path, PathBuf};

use fleet_proto::ids::AgentId;
use serde::{Deserialize, Serialize};

use crate::tasks::TaskRecord;

/// The checkpoint directory under the work directory.
pub const META_DIR: &str = "meta";
/// Bumped when the layout or a record changes incompatibly.
pub const FORMAT: u32 = 1;

const AGENT_FILE: &str = "agent.json";
const CONTAINERS_DIR: &str = "containers";
const TASK_FILE: &str = "task.json";
const TMP_SUFFIX: &str = ".tmp";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot {op} checkpoint {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "checkpoint {} is damaged ({reason}); start with --recover cleanup to discard it",
        path.display()
    )]
    Damaged { path: PathBuf, reason: String },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CheckpointError + use<> {
    let path = path.to_owned();
    move |source| CheckpointError::Io { op, path, source }
}

/// The agent's own record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub format: u32,
    pub agent_id: AgentId,
    /// The kernel's boot id when it was written: a different one now means the machine
    /// rebooted and no container survived.
    pub boot_id: String,
}

/// What a previous run of the agent left.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    pub agent: AgentRecord,
    pub tasks: Vec<TaskRecord>,
    /// Whether the machine rebooted since (boot ids differ).
    pub rebooted: bool,
}

/// One change to the checkpoint: a container's record replaced, or removed (`None`).
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub container_id: String,
    pub record: Option<Vec<u8>>,
}

/// Paths of one agent's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    root: PathBuf,
}

impl Checkpoint {
    pub fn new(work_dir: &Path) -> Self {
        Checkpoint {
            root: work_dir.join(META_DIR),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn agent_path(&self) -> PathBuf {
        self.root.join(AGENT_FILE)
    }

    /// Where a container's record and exit record live; also its `runtime_dir`.
    pub fn container_dir(&self, container_id: &str) -> PathBuf {
        self.root.join(CONTAINERS_DIR).join(container_id)
    }

    pub fn task_path(&self, container_id: &str) -> PathBuf {
        self.container_dir(container_id).join(TASK_FILE)
    }

    /// Reads what a previous run left; `None` when there is no checkpoint.
    pub fn read(&self) -> Result<Option<Recovered>, CheckpointError> {
        let agent_path = self.agent_path();
        let agent: AgentRecord = match read_json(&agent_path)? {
            Some(agent) => agent,
            None => return Ok(None),
        };
        if agent.format != FORMAT {
            return Err(CheckpointError::Damaged {
                path: agent_path,
                reason: format!("format {}, this agent reads {FORMAT}", agent.format),
            });
        }
        let mut tasks = Vec::new();
        let dir = self.root.join(CONTAINERS_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.collect::<Result<Vec<_>, _>>(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
        .map_err(io_err("list", &dir))?;
        for entry in entries {
            let container_dir = entry.path();
            remove_leftover_tmp(&container_dir)?;
            let path = container_dir.join(TASK_FILE);
            match read_json::<TaskRecord>(&path)? {
                Some(record) => tasks.push(record),
                // Made for a launch whose record never landed: nothing ran from it.
                None => {
                    std::fs::remove_dir_all(&container_dir)
                        .map_err(io_err("remove", &container_dir))?;
                }
            }
        }
        tasks.sort_by(|a, b| a.container_id.cmp(&b.container_id));
        let rebooted = boot_id().is_ok_and(|now| now != agent.boot_id);
        Ok(Some(Recovered {
            agent,
            tasks,
            rebooted,
        }))
    }

    /// Removes the whole checkpoint (a clean start).
    pub fn clear(&self) -> Result<(), CheckpointError> {
        match std::fs::remove_dir_all(&self.root) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &self.root)(e)),
            _ => Ok(()),
        }
    }

    /// The agent record for `agent_id` on this boot, serialized.
    pub fn agent_record(agent_id: &AgentId) -> Result<Vec<u8>, CheckpointError> {
        let record = AgentRecord {
            format: FORMAT,
            agent_id: agent_id.clone(),
            boot_id: boot_id().unwrap_or_default(),
        };
        serde_json::to_vec_pretty(&record).map_err(|e| CheckpointError::Damaged {
            path: PathBuf::from(AGENT_FILE),
            reason: e.to_string(),
        })
    }

    /// Applies `writes` (on a glommio executor): every record replaced atomically, every
    /// removed container's directory gone, all durable before it returns.
    pub async fn apply(&self, writes: Vec<Write>) -> Result<(), CheckpointError> {
        let mut pending = Vec::with_capacity(writes.len());
        for write in writes {
            let dir = self.container_dir(&write.container_id);
            match write.record {
                Some(bytes) => {
                    std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
                    let path = dir.join(TASK_FILE);
                    pending.push(async move { replace(&path, bytes).await });
                }
                None => match std::fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(io_err("remove", &dir)(e));
                    }
                    _ => {}
                },
            }
        }
        for result in futures::future::join_all(pending).await {
            result?;
        }
        let containers = self.root.join(CONTAINERS_DIR);
        if containers.exists() {
            sync_dir(&containers).await?;
        }
        Ok(())
    }

    /// Writes the agent record (on a glommio executor).
    pub async fn write_agent(&self, agent_id: &AgentId) -> Result<(), CheckpointError> {
        std::fs::create_dir_all(&self.root).map_err(io_err("create", &self.root))?;
        replace(&self.agent_path(), Self::agent_record(agent_id)?).await
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_owned())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, CheckpointError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| CheckpointError::Damaged {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

fn remove_leftover_tmp(dir: &Path) -> Result<(), CheckpointError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.to_string_lossy().ends_with(TMP_SUFFIX) {
            std::fs::remove_file(&path).map_err(io_err("remove", &path))?;
        }
    }
    Ok(())
}

/// Replaces `path` with `bytes` atomically and durably, through the io_uring of the
/// current glommio executor: write `<path>.tmp`, fdatasync, rename over `path`, fsync the
/// directory.
pub async fn replace(path: &Path, bytes: Vec<u8>) -> Result<(), CheckpointError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp);
    let mut file = glommio::io::BufferedFile::create(&tmp)
        .await
        .map_err(|e| io_err("create", &tmp)(e.into()))?;
    let len = bytes.len();
    let mut written = 0;
    while written < len {
        let n = file
            .write_at(bytes[written..].to_vec(), written as u64)
            .await
            .map_err(|e| io_err("write", &tmp)(e.into()))?;
        if n == 0 {
            return Err(io_err("write", &tmp)(io::ErrorKind::WriteZero.into()));
        }
        written += n;
    }
    file.fdatasync()
        .await
        .map_err(|e| io_err("sync", &tmp)(e.into()))?;
    file.rename(path)
        .await
        .map_err(|e| io_err("rename", path)(e.into()))?;
    file.close()
        .await
        .map_err(|e| io_err("close", path)(e.into()))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir).await?;
    }
    Ok(())
}

async fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    let handle = glommio::io::Directory::open(dir)
        .await
        .map_err(|e| io_err("open", dir)(e.into()))?;
    handle
        .sync()
        .await
        .map_err(|e| io_err("sync", dir)(e.into()))?;
    handle
        .close()
        .await
        .map_err(|e| io_err("close", dir)(e.into()))
}
