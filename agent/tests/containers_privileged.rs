//! Privileged tests: real containers in real cgroups on this host (root needed). Each test
//! uses its own cgroup root, so tests never collide. A missing kernel feature fails the
//! test with a message naming it.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fleet_agent::cgroups::Layout;
use fleet_agent::containerizer::{
    CommandSpec, ContainerEvent, ContainerSpec, Isolation, Limits, Outcome, Termination, outcome,
};
use fleet_agent::executors::{Executors, ExecutorsConfig};
use tokio::sync::mpsc::UnboundedReceiver;

const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

struct Pool {
    executors: Executors,
    events: UnboundedReceiver<ContainerEvent>,
    root: String,
    sandboxes: tempfile::TempDir,
}

fn unique_root(name: &str) -> String {
    format!("fleet-test-{}-{name}", std::process::id())
}

fn start(name: &str, config: ExecutorsConfig) -> Pool {
    assert!(
        nix::unistd::geteuid().is_root(),
        "privileged test: run as root"
    );
    let root = unique_root(name);
    let (executors, events) = Executors::start(ExecutorsConfig {
        cores: Some(1),
        cgroup_root: root.clone(),
        ..config
    })
    .unwrap_or_else(|e| panic!("cannot start executors (cgroups, io_uring): {e}"));
    Pool {
        executors,
        events,
        root,
        sandboxes: tempfile::tempdir().unwrap(),
    }
}

impl Pool {
    fn spec(&self, id: &str, shell: &str, limits: Limits) -> ContainerSpec {
        ContainerSpec {
            container_id: id.to_string(),
            sandbox: self.sandboxes.path().join(id),
            command: CommandSpec {
                shell: true,
                value: shell.to_string(),
                arguments: vec![],
            },
            env: vec![("GREETING".to_string(), "hello".to_string())],
            limits,
            isolation: Isolation::default(),
            runtime_dir: None,
        }
    }

    async fn next(&mut self) -> ContainerEvent {
        tokio::time::timeout(EVENT_TIMEOUT, self.events.recv())
            .await
            .expect("no container event within 5 s")
            .expect("event channel closed")
    }

    async fn started(&mut self, id: &str) -> (i32, Option<u64>) {
        match self.next().await {
            ContainerEvent::Started {
                container_id,
                pid,
                cgroup2_id,
                ..
            } if container_id == id => (pid, cgroup2_id),
            other => panic!("expected Started for {id}, got {other:?}"),
        }
    }

    async fn exited(&mut self, id: &str) -> (Termination, bool) {
        match self.next().await {
            ContainerEvent::Exited {
                container_id,
                termination,
                killed,
            } if container_id == id => (termination, killed),
            other => panic!("expected Exited for {id}, got {other:?}"),
        }
    }

    /// Every directory the container's cgroups live in, on this host's layout.
    fn cgroup_dirs(&self, id: &str) -> Vec<PathBuf> {
        match self.executors.layout() {
            Layout::V1 { mount, unified } => {
                let mut dirs: Vec<PathBuf> = ["cpu", "cpuacct", "memory", "pids"]
                    .iter()
                    .map(|c| mount.join(c).join(&self.root).join(id))
                    .collect();
                dirs.extend(unified.as_ref().map(|u| u.join(&self.root).join(id)));
                dirs
            }
            Layout::V2 { mount } => vec![mount.join(&self.root).join(id)],
        }
    }

    fn assert_cgroups_gone(&self, id: &str) {
        for dir in self.cgroup_dirs(id) {
            assert!(!dir.exists(), "cgroup {} left behind", dir.display());
        }
    }

    async fn shutdown(self) {
        self.executors
            .shutdown(Duration::from_millis(100))
            .await
            .unwrap();
        for dir in self.cgroup_dirs("") {
            assert!(!dir.exists(), "root cgroup {} left behind", dir.display());
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn echo_hello_finishes_with_its_output_in_the_sandbox() {
    let mut pool = start("echo", ExecutorsConfig::default());
    let spec = pool.spec("echo", "echo $GREETING; echo oops >&2", Limits::default());
    let sandbox = spec.sandbox.clone();
    pool.executors.launch(spec).unwrap();
    pool.started("echo").await;
    let (termination, killed) = pool.exited("echo").await;
    assert_eq!(
        termination,
        Termination {
            exit_code: Some(0),
            ..Termination::default()
        }
    );
    assert_eq!(outcome(&termination, killed), Outcome::Finished);
    assert_eq!(read(&sandbox.join("stdout")), "hello\n");
    assert_eq!(read(&sandbox.join("stderr")), "oops\n");
    pool.assert_cgroups_gone("echo");
    pool.shutdown().await;
}

#[tokio::test]
async fn a_task_inherits_only_stdin_stdout_and_stderr() {
    // A descriptor the agent holds without close-on-exec must not reach the task.
    let leaked = std::fs::File::open("/dev/null").unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&leaked);
    // SAFETY: clears FD_CLOEXEC on a descriptor this test owns.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
    let mut pool = start("fds", ExecutorsConfig::default());
    // `ls` itself holds one more descriptor open: the directory it lists (fd 3).
    let spec = pool.spec("fds", "ls /proc/self/fd", Limits::default());
    let sandbox = spec.sandbox.clone();
    pool.executors.launch(spec).unwrap();
    pool.started("fds").await;
    pool.exited("fds").await;
    assert_eq!(
        read(&sandbox.join("stdout")),
        "0\n1\n2\n3\n",
        "fd {fd} leaked?"
    );
    drop(leaked);
    pool.shutdown().await;
}

#[tokio::test]
async fn exit_code_is_reported() {
    let mut pool = start("exit3", ExecutorsConfig::default());
    pool.executors
        .launch(pool.spec("exit3", "exit 3", Limits::default()))
        .unwrap();
    pool.started("exit3").await;
    let (termination, killed) = pool.exited("exit3").await;
    assert_eq!(termination.exit_code, Some(3));
    assert_eq!(
        outcome(&termination, killed),
        Outcome::Failed {
            exit_code: Some(3),
            signal: None
        }
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn the_process_runs_inside_its_cgroups_from_the_start() {
    let mut pool = start("inside", ExecutorsConfig::default());
    let spec = pool.spec("inside", "cat /proc/self/cgroup", Limits::default());
    let sandbox = spec.sandbox.clone();
    pool.executors.launch(spec).unwrap();
    pool.started("inside").await;
    pool.exited("inside").await;
    let cgroups = read(&sandbox.join("stdout"));
    let path = format!("/{}/inside", pool.root);
    let lines: Vec<&str> = cgroups.lines().filter(|l| l.ends_with(&path)).collect();
    match pool.executors.layout() {
        Layout::V1 { unified, .. } => {
            for controller in ["cpu", "cpuacct", "memory", "pids"] {
                assert!(
                    lines
                        .iter()
                        .any(|l| l.split(':').nth(1) == Some(controller)),
                    "not in its {controller} cgroup: {cgroups}"
                );
            }
            if unified.is_some() {
                assert!(
                    lines.iter().any(|l| l.starts_with("0::")),
                    "not in its cgroup2 dir: {cgroups}"
                );
            }
        }
        Layout::V2 { .. } => assert!(lines.iter().any(|l| l.starts_with("0::")), "{cgroups}"),
    }
    pool.shutdown().await;
}

#[tokio::test]
async fn memory_limit_oom_kill_is_reported() {
    let mut pool = start("oom", ExecutorsConfig::default());
    let limits = Limits {
        mem_bytes: 64 << 20,
        ..Limits::default()
    };
    let spec = pool.spec(
        "oom",
        "exec python3 -c 'b = bytearray(512 * 2**20)'",
        limits,
    );
    pool.executors.launch(spec).unwrap();
    pool.started("oom").await;
    let (termination, killed) = pool.exited("oom").await;
    assert!(termination.oom_killed, "no OOM kill seen: {termination:?}");
    assert_eq!(termination.signal, Some(libc::SIGKILL));
    assert_eq!(outcome(&termination, killed), Outcome::MemoryLimit);
    pool.assert_cgroups_gone("oom");
    pool.shutdown().await;
}

#[tokio::test]
async fn limits_are_written_and_usage_is_read() {
    let mut pool = start("limits", ExecutorsConfig::default());
    let limits = Limits {
        cpus_milli: 500,
        mem_bytes: 128 << 20,
        pids_max: Some(32),
        ..Limits::default()
    };
    pool.executors
        .launch(pool.spec("limits", "sleep 100", limits))
        .unwrap();
    pool.started("limits").await;
    match pool.executors.layout().clone() {
        Layout::V1 { mount, .. } => {
            let dir = |c: &str| mount.join(c).join(&pool.root).join("limits");
            assert_eq!(read(&dir("cpu").join("cpu.cfs_quota_us")).trim(), "50000");
            assert_eq!(read(&dir("cpu").join("cpu.cfs_period_us")).trim(), "100000");
            assert_eq!(read(&dir("cpu").join("cpu.shares")).trim(), "512");
            assert_eq!(
                read(&dir("memory").join("memory.limit_in_bytes")).trim(),
                "134217728"
            );
            assert_eq!(read(&dir("pids").join("pids.max")).trim(), "32");
        }
        Layout::V2 { mount } => {
            let dir = mount.join(&pool.root).join("limits");
            assert_eq!(read(&dir.join("cpu.max")).trim(), "50000 100000");
            assert_eq!(read(&dir.join("memory.max")).trim(), "134217728");
            assert_eq!(read(&dir.join("pids.max")).trim(), "32");
        }
    }
    let usage = pool.executors.usage("limits").await.unwrap();
    assert!(usage.mem_bytes > 0, "{usage:?}");
    let all = pool.executors.usage_all().await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, "limits");
    pool.executors
        .kill("limits", Duration::from_secs(1))
        .unwrap();
    let (_, killed) = pool.exited("limits").await;
    assert!(killed);
    pool.assert_cgroups_gone("limits");
    pool.shutdown().await;
}

#[tokio::test]
async fn kill_stops_a_sleep_within_the_grace_period() {
    let mut pool = start("kill", ExecutorsConfig::default());
    pool.executors
        .launch(pool.spec("kill", "exec sleep 100", Limits::default()))
        .unwrap();
    pool.started("kill").await;
    let asked = Instant::now();
    pool.executors.kill("kill", Duration::from_secs(3)).unwrap();
    let (termination, killed) = pool.exited("kill").await;
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "took {:?}",
        asked.elapsed()
    );
    assert!(killed);
    assert_eq!(termination.signal, Some(libc::SIGTERM));
    assert_eq!(outcome(&termination, killed), Outcome::Killed);
    pool.assert_cgroups_gone("kill");
    pool.shutdown().await;
}

#[tokio::test]
async fn kill_escalates_to_sigkill_and_clears_the_cgroup() {
    let mut pool = start("stubborn", ExecutorsConfig::default());
    // The shell and its background child both ignore SIGTERM.
    let spec = pool.spec(
        "stubborn",
        "trap '' TERM; sleep 100 & sleep 100",
        Limits::default(),
    );
    pool.executors.launch(spec).unwrap();
    pool.started("stubborn").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    pool.executors
        .kill("stubborn", Duration::from_millis(200))
        .unwrap();
    let (termination, killed) = pool.exited("stubborn").await;
    assert!(asked.elapsed() >= Duration::from_millis(200));
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "took {:?}",
        asked.elapsed()
    );
    assert!(killed);
    assert_eq!(termination.signal, Some(libc::SIGKILL));
    pool.assert_cgroups_gone("stubborn");
    pool.shutdown().await;
}

#[tokio::test]
async fn a_cgroup_failure_fails_the_launch_and_runs_nothing() {
    let mut pool = start("badlimit", ExecutorsConfig::default());
    // pids.max takes at most PID_MAX_LIMIT: the kernel refuses this value.
    let limits = Limits {
        pids_max: Some(u64::MAX),
        ..Limits::default()
    };
    let spec = pool.spec("badlimit", "touch ran", limits);
    let sandbox = spec.sandbox.clone();
    pool.executors.launch(spec).unwrap();
    match pool.next().await {
        ContainerEvent::LaunchFailed {
            container_id,
            message,
        } => {
            assert_eq!(container_id, "badlimit");
            assert!(message.contains("pids.max"), "{message}");
        }
        other => panic!("expected LaunchFailed, got {other:?}"),
    }
    assert!(!sandbox.join("ran").exists());
    assert!(
        !sandbox.join("stdout").exists(),
        "the process must not have been started"
    );
    pool.assert_cgroups_gone("badlimit");
    pool.shutdown().await;
}

#[tokio::test]
async fn an_invalid_cgroup_root_fails_at_start() {
    let err = Executors::start(ExecutorsConfig {
        cores: Some(1),
        cgroup_root: "../../../proc/nope".to_string(),
        ..ExecutorsConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("proc/nope"), "{err}");
}

#[tokio::test]
async fn the_hook_sees_the_cgroup2_id_and_can_refuse() {
    let seen = Arc::new(AtomicU64::new(0));
    let seen_by_hook = seen.clone();
    let config = ExecutorsConfig::default().with_hook(Box::new(move |_spec, id| {
        let first = seen_by_hook.swap(id, Ordering::SeqCst) == 0;
        if first {
            Ok(())
        } else {
            Err("no more containers".to_string())
        }
    }));
    let mut pool = start("hook", config);
    pool.executors
        .launch(pool.spec("hook1", "true", Limits::default()))
        .unwrap();
    let (_, cgroup2_id) = pool.started("hook1").await;
    let cgroup2_id = cgroup2_id.expect("this host has a cgroup2 tree");
    assert_eq!(seen.load(Ordering::SeqCst), cgroup2_id);
    pool.exited("hook1").await;
    let spec = pool.spec("hook2", "touch ran", Limits::default());
    let sandbox = spec.sandbox.clone();
    pool.executors.launch(spec).unwrap();
    match pool.next().await {
        ContainerEvent::LaunchFailed { message, .. } => {
            assert!(message.contains("no more containers"), "{message}")
        }
        other => panic!("expected LaunchFailed, got {other:?}"),
    }
    assert!(!sandbox.join("ran").exists());
    pool.assert_cgroups_gone("hook2");
    pool.shutdown().await;
}

#[tokio::test]
async fn shutdown_kills_every_container() {
    let mut pool = start("shutdown", ExecutorsConfig::default());
    pool.executors
        .launch(pool.spec("a", "sleep 100", Limits::default()))
        .unwrap();
    pool.executors
        .launch(pool.spec("b", "sleep 100", Limits::default()))
        .unwrap();
    pool.next().await;
    pool.next().await;
    assert!(
        pool.executors
            .launch(pool.spec("a", "true", Limits::default()))
            .is_err()
    );
    pool.executors
        .shutdown(Duration::from_millis(100))
        .await
        .unwrap();
    let mut exits = 0;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(100), pool.events.recv()).await
    {
        assert!(
            matches!(event, ContainerEvent::Exited { killed: true, .. }),
            "{event:?}"
        );
        exits += 1;
    }
    assert_eq!(exits, 2);
    pool.assert_cgroups_gone("a");
    pool.assert_cgroups_gone("b");
    for dir in pool.cgroup_dirs("") {
        assert!(!dir.exists(), "root cgroup {} left behind", dir.display());
    }
}

#[tokio::test]
async fn a_fork_bomb_stays_inside_its_pids_limit() {
    let mut pool = start("forkbomb", ExecutorsConfig::default());
    let limits = Limits {
        pids_max: Some(40),
        ..Limits::default()
    };
    // Each copy forks two more and stays; forks past the limit fail (EAGAIN). The task's
    // own process execs into a sleep, which needs no fork: at the limit a copy's `sleep`
    // may fail to start, and the task must not end (and lose its cgroup) while measured.
    let spec = pool.spec(
        "forkbomb",
        "b() { b & b & sleep 3; }; b 2>/dev/null & exec sleep 5",
        limits,
    );
    pool.executors.launch(spec).unwrap();
    pool.started("forkbomb").await;
    let current = format!("/sys/fs/cgroup/pids/{}/forkbomb/pids.current", pool.root);
    let mut highest = 0u64;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now: u64 = std::fs::read_to_string(&current)
            .unwrap_or_else(|e| panic!("{current}: {e}"))
            .trim()
            .parse()
            .unwrap();
        highest = highest.max(now);
    }
    assert!(highest > 10, "the bomb never grew ({highest} tasks)");
    assert!(highest <= 40, "{highest} tasks in a cgroup limited to 40");
    pool.executors
        .kill("forkbomb", Duration::from_millis(100))
        .unwrap();
    let (_, killed) = pool.exited("forkbomb").await;
    assert!(killed);
    pool.assert_cgroups_gone("forkbomb");
    pool.shutdown().await;
}

#[tokio::test]
async fn a_task_sees_only_its_own_processes_and_read_only_cgroups() {
    let mut pool = start("pidns", ExecutorsConfig::default());
    let agent = std::process::id();
    let script = format!(
        "echo self=$$; ls /proc | grep -c '^[0-9]'; kill -0 {agent} 2>/dev/null; \
         echo signal=$?; mkdir /sys/fs/cgroup/pids/escape 2>/dev/null; echo mkdir=$?"
    );
    let spec = pool.spec("pidns", &script, Limits::default());
    let sandbox = spec.sandbox.clone();
    pool.executors.launch(spec).unwrap();
    pool.started("pidns").await;
    let (termination, _) = pool.exited("pidns").await;
    assert_eq!(termination.exit_code, Some(0));
    let out = std::fs::read_to_string(sandbox.join("stdout")).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    // PID 1 is the namespace's init; the shell is PID 2.
    assert_eq!(lines.first(), Some(&"self=2"), "{out}");
    let visible: u32 = lines.get(1).and_then(|l| l.parse().ok()).unwrap_or(99);
    assert!(visible < 10, "{visible} processes visible: {out}");
    assert_eq!(
        lines.get(2),
        Some(&"signal=1"),
        "the agent could be signalled: {out}"
    );
    assert_eq!(
        lines.get(3),
        Some(&"mkdir=1"),
        "a cgroup could be made: {out}"
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn the_v1_devices_controller_denies_other_gpus() {
    use fleet_agent::cgroups::GpuAccess;
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};

    let mut pool = start("devices", ExecutorsConfig::default());
    let limits = Limits {
        gpus: Some(GpuAccess {
            minors: vec![1],
            control: vec![],
        }),
        ..Limits::default()
    };
    let spec = pool.spec(
        "devices",
        "for d in nvidia0 nvidia1; do cat $d 2>&1 | head -1; done",
        limits,
    );
    std::fs::create_dir_all(&spec.sandbox).unwrap();
    for (name, minor) in [("nvidia0", 0), ("nvidia1", 1)] {
        mknod(
            &spec.sandbox.join(name),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(195, minor),
        )
        .unwrap_or_else(|e| panic!("mknod {name} (needs root): {e}"));
    }
    let sandbox = spec.sandbox.clone();
    pool.executors.launch(spec).unwrap();
    pool.started("devices").await;
    pool.exited("devices").await;
    let out = std::fs::read_to_string(sandbox.join("stdout")).unwrap();
    assert!(
        out.contains("nvidia0: Operation not permitted"),
        "another GPU was not denied: {out}"
    );
    assert!(
        !out.contains("nvidia1: Operation not permitted"),
        "the container's own GPU was denied: {out}"
    );
    pool.shutdown().await;
}
