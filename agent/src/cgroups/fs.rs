//! Reading and writing cgroup interface files, with errors that name the file and the OS
//! reason. The only module of `cgroups` that touches the filesystem directly.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::AgentError;

pub(crate) fn cgroup_err(op: &'static str, path: &Path, source: io::Error) -> AgentError {
    AgentError::Cgroup {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `value` to the interface file `dir/file` (no create, no truncate: cgroupfs files
/// take one value per write).
pub fn write(dir: &Path, file: &str, value: &str) -> Result<(), AgentError> {
    let path = dir.join(file);
    fs::write(&path, value).map_err(|e| cgroup_err("write", &path, e))
}

/// Reads the whole interface file `dir/file`.
pub fn read(dir: &Path, file: &str) -> Result<String, AgentError> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(|e| cgroup_err("read", &path, e))
}

/// Reads a file holding a single unsigned number.
pub fn read_u64(dir: &Path, file: &str) -> Result<u64, AgentError> {
    let content = read(dir, file)?;
    content
        .trim()
        .parse()
        .map_err(|_| AgentError::CgroupContent {
            path: dir.join(file),
            content: content.trim().to_string(),
        })
}

/// Reads `key N` from a flat-keyed file such as memory.events, cpu.stat or
/// memory.oom_control; a missing key reads as `None`.
pub fn read_keyed(dir: &Path, file: &str, key: &str) -> Result<Option<u64>, AgentError> {
    let content = read(dir, file)?;
    Ok(parse_keyed(&content, key))
}

/// Finds `key N` in flat-keyed content.
pub fn parse_keyed(content: &str, key: &str) -> Option<u64> {
    content.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next() == Some(key))
            .then(|| parts.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

/// Creates `path` and its missing parents.
pub fn create_dir(path: &Path) -> Result<(), AgentError> {
    fs::create_dir_all(path).map_err(|e| cgroup_err("create", path, e))
}

/// Removes an empty cgroup directory; one already gone counts as removed.
pub fn remove_dir(path: &Path) -> Result<(), AgentError> {
    match fs::remove_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(cgroup_err("remove", path, e)),
        _ => Ok(()),
    }
}

/// The pids listed in `dir/cgroup.procs`; a directory already gone has none.
pub fn procs(dir: &Path) -> Result<Vec<i32>, AgentError> {
    let path: PathBuf = dir.join("cgroup.procs");
    match fs::read_to_string(&path) {
        Ok(content) => Ok(content
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(cgroup_err("read", &path, e)),
    }
}

/// Makes `cmd`'s process join the cgroup whose `cgroup.procs` file is open as `procs`
/// before it execs (writing "0" moves the writing process itself). `procs` must stay open
/// until `cmd` is spawned. For tools and tests that start processes in a cgroup they made;
/// containers join theirs in `containerizer::spawn`.
pub fn join_before_exec(cmd: &mut std::process::Command, procs: &std::fs::File) {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::process::CommandExt as _;
    let fd = procs.as_raw_fd();
    // SAFETY: between fork and exec the closure only calls write(2), which is
    // async-signal-safe, on a descriptor opened before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keyed_files() {
        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(parse_keyed(oom_control, "oom_kill"), Some(2));
        assert_eq!(parse_keyed(oom_control, "oom"), None);
        let events = "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_keyed(events, "oom_kill"), Some(1));
        assert_eq!(parse_keyed(events, "max"), Some(5));
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_u64(dir.path(), "memory.max").unwrap_err().to_string();
        assert!(err.contains("memory.max"), "{err}");
        std::fs::write(dir.path().join("pids.max"), "lots\n").unwrap();
        let err = read_u64(dir.path(), "pids.max").unwrap_err().to_string();
        assert!(err.contains("pids.max") && err.contains("lots"), "{err}");
    }

    #[test]
    fn procs_of_a_missing_dir_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(procs(&dir.path().join("gone")).unwrap().is_empty());
        std::fs::write(dir.path().join("cgroup.procs"), "12\n34\n").unwrap();
        assert_eq!(procs(dir.path()).unwrap(), vec![12, 34]);
    }
}
