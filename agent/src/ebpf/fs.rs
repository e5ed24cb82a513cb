//! The kernel filesystems the programs need (bpffs for pins, tracefs for tracepoint ids),
//! mounted when absent, and cgroup2 ids read from the cgroup tree.

use std::{
    io,
    os::unix::fs::MetadataExt as _,
    path::Path,
    sync::{Mutex, PoisonError},
};

use nix::{
    mount::{MsFlags, mount},
    sys::statfs::{BPF_FS_MAGIC, CGROUP2_SUPER_MAGIC, FsType, TRACEFS_MAGIC, statfs},
};

use super::error::EbpfError;

/// Where bpffs is mounted (and mounted by the agent when it is not).
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
/// Where tracefs is mounted (and mounted by the agent when it is not).
pub const TRACEFS_ROOT: &str = "/sys/kernel/tracing";

/// Serializes check-then-mount, so two loads in one process never stack two mounts.
static MOUNTING: Mutex<()> = Mutex::new(());

fn is_fs(path: &Path, magic: FsType) -> bool {
    statfs(path).is_ok_and(|fs| fs.filesystem_type() == magic)
}

/// Mounts `fs` at `path` unless a filesystem of that type is already there.
fn ensure_mounted(fs: &'static str, path: &Path, magic: FsType) -> Result<(), EbpfError> {
    let _guard = MOUNTING.lock().unwrap_or_else(PoisonError::into_inner);
    if is_fs(path, magic) {
        return Ok(());
    }
    let failed = |reason: String| EbpfError::Mount {
        fs,
        path: path.to_owned(),
        reason,
    };
    std::fs::create_dir_all(path).map_err(|e| failed(e.to_string()))?;
    mount(Some(fs), path, Some(fs), MsFlags::empty(), None::<&str>)
        .map_err(|e| failed(io::Error::from(e).to_string()))
}

/// bpffs at [`BPFFS_ROOT`].
pub(super) fn ensure_bpffs() -> Result<(), EbpfError> {
    ensure_mounted("bpf", Path::new(BPFFS_ROOT), BPF_FS_MAGIC)
}

/// tracefs at [`TRACEFS_ROOT`], where the loader reads tracepoint ids.
pub(super) fn ensure_tracefs() -> Result<(), EbpfError> {
    ensure_mounted("tracefs", Path::new(TRACEFS_ROOT), TRACEFS_MAGIC)
}

/// Creates `dir` and checks that it lies on bpffs.
pub(super) fn ensure_pin_dir(dir: &Path) -> Result<(), EbpfError> {
    let failed = |reason: String| EbpfError::PinDir {
        path: dir.to_owned(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
    if !is_fs(dir, BPF_FS_MAGIC) {
        return Err(failed(
            "not on a bpf filesystem (mount -t bpf bpf <dir>)".into(),
        ));
    }
    Ok(())
}

/// The cgroup2 id of the cgroup directory `path`: what `bpf_get_current_cgroup_id()`
/// returns for its processes, i.e. the directory's inode number on the cgroup2 tree
/// (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host).
///
/// Fails with `InvalidInput` for a path outside a cgroup2 filesystem (a v1 hierarchy has
/// other inode numbers).
pub fn cgroup_id_of(path: &Path) -> io::Result<u64> {
    let fs = statfs(path).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("{}: {}", path.display(), io::Error::from(e)),
        )
    })?;
    if fs.filesystem_type() != CGROUP2_SUPER_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not on a cgroup2 filesystem", path.display()),
        ));
    }
    let meta = std::fs::metadata(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a cgroup directory", path.display()),
        ));
    }
    Ok(meta.ino())
}
