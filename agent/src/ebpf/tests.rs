//! Privileged tests against the real kernel: they load the programs, make cgroups on the
//! cgroup2 tree, and run writers inside them. A missing kernel feature fails the test
//! with a message naming it.

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};

use super::{EbpfError, UsageProbes, cgroup_id_of, default_pin_dir};

const MIB: u64 = 1 << 20;
/// Bytes a writer may add besides its payload: the 1-byte write that moves it into its
/// cgroup ends (and is counted) inside the cgroup.
const MARGIN: u64 = 64;

static NEXT: AtomicU32 = AtomicU32::new(0);

pub(super) fn unique(label: &str) -> String {
    format!(
        "fleet-test-{}-{label}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The cgroup2 tree: /sys/fs/cgroup/unified on a hybrid host, /sys/fs/cgroup on a v2 one.
pub(super) fn cgroup2_root() -> PathBuf {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| statfs(p.as_path()).is_ok_and(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC))
        .unwrap_or_else(|| {
            panic!("kernel feature missing: no cgroup2 filesystem at /sys/fs/cgroup/unified or /sys/fs/cgroup")
        })
}

/// A cgroup2 directory, removed on drop (its processes have exited by then).
pub(super) struct TestCgroup {
    pub(super) path: PathBuf,
}

impl TestCgroup {
    pub(super) fn new(label: &str) -> Self {
        let path = cgroup2_root().join(unique(label));
        fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("cannot create cgroup2 directory {}: {e}", path.display()));
        Self { path }
    }

    pub(super) fn id(&self) -> u64 {
        cgroup_id_of(&self.path).unwrap()
    }

    /// Runs `dd` in this cgroup writing `bytes` (a multiple of 64 KiB) to a temp file.
    fn write_bytes(&self, bytes: u64) {
        let dir = tempfile::tempdir().unwrap();
        let procs = File::options()
            .write(true)
            .open(self.path.join("cgroup.procs"))
            .unwrap();
        let mut dd = Command::new("dd");
        dd.arg("if=/dev/zero")
            .arg(format!("of={}", dir.path().join("out").display()))
            .arg("bs=64K")
            .arg(format!("count={}", bytes / (64 << 10)))
            .arg("status=none");
        crate::cgroups::join_before_exec(&mut dd, &procs);
        let status = dd.status().unwrap();
        assert!(status.success(), "dd failed: {status}");
        drop(procs);
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.path);
    }
}

/// A unique pin directory under bpffs, removed with its pins on drop.
pub(super) struct PinDir(pub(super) PathBuf);

impl PinDir {
    pub(super) fn new() -> Self {
        Self(Path::new(super::BPFFS_ROOT).join(unique("pins")))
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(super) fn load(pins: &PinDir) -> UsageProbes {
    let root = TestCgroup::new("root");
    UsageProbes::load_pinned_in(&pins.0, &root.path).unwrap_or_else(|e| {
        panic!("cannot load the usage probes (needs root, BPF, tracepoints, bpffs): {e}")
    })
}

fn bytes_written(probes: &UsageProbes, cgroup_id: u64) -> u64 {
    probes
        .counters(cgroup_id)
        .unwrap()
        .unwrap_or_else(|| panic!("cgroup {cgroup_id} is not tracked"))
        .bytes_written
}

#[test]
fn counts_bytes_written_in_tracked_cgroup_only() {
    let pins = PinDir::new();
    let probes = load(&pins);
    let tracked = TestCgroup::new("tracked");
    let other = TestCgroup::new("untracked");
    probes.track(tracked.id()).unwrap();

    assert_eq!(bytes_written(&probes, tracked.id()), 0);
    tracked.write_bytes(MIB);
    other.write_bytes(MIB);

    let counted = bytes_written(&probes, tracked.id());
    assert!(
        (MIB..=MIB + MARGIN).contains(&counted),
        "tracked cgroup counted {counted} bytes, expected {MIB}..={}",
        MIB + MARGIN
    );
    let calls = probes.counters(tracked.id()).unwrap().unwrap().write_calls;
    assert!(
        calls >= 16,
        "counted {calls} write calls, dd made at least 16"
    );
    assert_eq!(probes.counters(other.id()).unwrap(), None);
    assert_eq!(probes.tracked().unwrap(), vec![tracked.id()]);

    probes.untrack(tracked.id()).unwrap();
    assert_eq!(probes.counters(tracked.id()).unwrap(), None);
    probes.untrack(tracked.id()).unwrap();
    probes.unpin().unwrap();
    assert!(!pins.0.exists(), "unpin left {}", pins.0.display());
}

#[test]
fn counts_survive_a_reload_from_the_same_pins() {
    let pins = PinDir::new();
    let cgroup = TestCgroup::new("restart");
    let first = load(&pins);
    first.track(cgroup.id()).unwrap();
    cgroup.write_bytes(MIB);
    let before = bytes_written(&first, cgroup.id());
    drop(first);
    // Other tests in this process fork children concurrently; a child between fork and
    // exec briefly holds copies of every descriptor, the first load's attachments
    // included, which keeps those programs running (and counting into the same pinned
    // map) until it execs. An agent restart is a process exit and has no such window.
    std::thread::sleep(std::time::Duration::from_millis(300));

    let second = load(&pins);
    assert_eq!(second.tracked().unwrap(), vec![cgroup.id()]);
    assert_eq!(bytes_written(&second, cgroup.id()), before);
    // Tracking again (as a recovering agent does) keeps the counts.
    second.track(cgroup.id()).unwrap();
    assert_eq!(bytes_written(&second, cgroup.id()), before);
    cgroup.write_bytes(MIB);
    let after = bytes_written(&second, cgroup.id());
    assert!(
        (before + MIB..=before + MIB + MARGIN).contains(&after),
        "after reload counted {after} bytes, expected {before} + {MIB} (+{MARGIN})"
    );
}

#[test]
fn is_usable_from_several_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<UsageProbes>();

    let pins = PinDir::new();
    let probes = load(&pins);
    let cgroups: Vec<_> = (0..2)
        .map(|i| TestCgroup::new(&format!("thread{i}")))
        .collect();
    std::thread::scope(|scope| {
        for cgroup in &cgroups {
            let probes = &probes;
            scope.spawn(move || {
                probes.track(cgroup.id()).unwrap();
                cgroup.write_bytes(MIB);
                let counted = bytes_written(probes, cgroup.id());
                assert!((MIB..=MIB + MARGIN).contains(&counted), "counted {counted}");
            });
        }
    });
}

#[test]
fn cgroup_id_of_rejects_paths_outside_cgroup2() {
    let dir = tempfile::tempdir().unwrap();
    let err = cgroup_id_of(dir.path()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(
        err.to_string().contains("not on a cgroup2 filesystem"),
        "{err}"
    );
    assert!(cgroup_id_of(Path::new("/nonexistent/fleet")).is_err());
}

#[test]
fn default_pin_dir_is_one_directory_per_instance() {
    assert_eq!(
        default_pin_dir("agent-1").unwrap(),
        Path::new("/sys/fs/bpf/fleet/agent-1")
    );
    for bad in ["", ".", "..", "a/b"] {
        let err = default_pin_dir(bad).unwrap_err();
        assert!(
            matches!(err, EbpfError::InvalidInstance { .. }),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn pin_dir_off_bpffs_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = TestCgroup::new("root");
    let err = UsageProbes::load_pinned_in(dir.path(), &root.path).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(text.contains("not on a bpf filesystem"), "{text}");
}
