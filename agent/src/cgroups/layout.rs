//! Which cgroup hierarchy this host has, detected once at start: v2 (unified, production
//! distributions) or v1/hybrid (v1 controllers under `<mount>/<controller>`, and maybe a
//! controller-less cgroup2 tree at `<mount>/unified` for BPF).

use std::path::{Path, PathBuf};

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};

use crate::cgroups::container::ContainerCgroup;
use crate::cgroups::fs;
use crate::cgroups::v1::{self, V1Cgroup};
use crate::cgroups::v2::{self, V2Cgroup};
use crate::error::AgentError;

/// Where cgroup hierarchies are mounted on Linux.
pub const DEFAULT_MOUNT: &str = "/sys/fs/cgroup";

/// The cgroup hierarchy of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// v1 controllers, each at `mount/<controller>`; `unified` is the cgroup2 tree where one
    /// is mounted (hybrid hosts).
    V1 {
        mount: PathBuf,
        unified: Option<PathBuf>,
    },
    /// One cgroup2 hierarchy at `mount` holding the controllers.
    V2 { mount: PathBuf },
}

fn is_cgroup2(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC)
}

impl Layout {
    /// Detects the layout under [`DEFAULT_MOUNT`].
    pub fn detect() -> Result<Layout, AgentError> {
        Layout::detect_at(Path::new(DEFAULT_MOUNT))
    }

    /// Detects the layout of the hierarchies mounted under `mount`.
    pub fn detect_at(mount: &Path) -> Result<Layout, AgentError> {
        if is_cgroup2(mount) {
            return Ok(Layout::V2 {
                mount: mount.to_path_buf(),
            });
        }
        let missing: Vec<&str> = v1::CONTROLLERS
            .into_iter()
            .filter(|c| !mount.join(c).join("cgroup.procs").exists())
            .collect();
        if !missing.is_empty() {
            return Err(AgentError::CgroupLayout {
                path: mount.to_path_buf(),
                reason: format!(
                    "neither a cgroup2 mount nor v1 hierarchies: missing v1 controller(s) {}",
                    missing.join(", ")
                ),
            });
        }
        let unified = mount.join("unified");
        Ok(Layout::V1 {
            mount: mount.to_path_buf(),
            unified: is_cgroup2(&unified).then_some(unified),
        })
    }

    /// Creates the root cgroup `root` that holds this agent's containers in every hierarchy.
    pub fn prepare_root(&self, root: &str) -> Result<(), AgentError> {
        match self {
            Layout::V1 { mount, unified } => {
                for controller in v1::CONTROLLERS {
                    fs::create_dir(&mount.join(controller).join(root))?;
                }
                match unified {
                    Some(unified) => fs::create_dir(&unified.join(root)),
                    None => Ok(()),
                }
            }
            Layout::V2 { mount } => v2::prepare_root(mount, root),
        }
    }

    /// Removes the root cgroup `root` from every hierarchy; fails while a container is left.
    pub fn remove_root(&self, root: &str) -> Result<(), AgentError> {
        match self {
            Layout::V1 { mount, unified } => {
                for controller in v1::CONTROLLERS {
                    fs::remove_dir(&mount.join(controller).join(root))?;
                }
                match unified {
                    Some(unified) => fs::remove_dir(&unified.join(root)),
                    None => Ok(()),
                }
            }
            Layout::V2 { mount } => fs::remove_dir(&mount.join(root)),
        }
    }

    /// The directory of the root cgroup `root` in the cgroup2 tree, where BPF programs
    /// attach; `None` on a v1 host without a cgroup2 tree.
    pub fn cgroup2_root(&self, root: &str) -> Option<PathBuf> {
        match self {
            Layout::V1 { unified, .. } => unified.as_ref().map(|u| u.join(root)),
            Layout::V2 { mount } => Some(mount.join(root)),
        }
    }

    /// The (not yet created) cgroup of container `id` under `root`.
    pub fn container(&self, root: &str, id: &str) -> ContainerCgroup {
        match self {
            Layout::V1 { mount, unified } => {
                ContainerCgroup::V1(V1Cgroup::at(mount, unified.as_deref(), root, id))
            }
            Layout::V2 { mount } => ContainerCgroup::V2(V2Cgroup::at(mount, root, id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_without_unified_tree() {
        let mount = tempfile::tempdir().unwrap();
        for c in v1::CONTROLLERS {
            std::fs::create_dir(mount.path().join(c)).unwrap();
            std::fs::write(mount.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        let layout = Layout::detect_at(mount.path()).unwrap();
        assert_eq!(
            layout,
            Layout::V1 {
                mount: mount.path().to_path_buf(),
                unified: None
            }
        );
    }

    #[test]
    fn a_plain_dir_is_no_layout() {
        let mount = tempfile::tempdir().unwrap();
        let err = Layout::detect_at(mount.path()).unwrap_err().to_string();
        assert!(
            err.contains("missing v1 controller(s) cpu, cpuacct, memory, pids"),
            "{err}"
        );
    }
}
