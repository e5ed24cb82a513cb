//! Harness for end-to-end tests: builds the real `fleet` binary once, starts `fleet dev` or
//! separate `fleet master` / `fleet agent` processes on free loopback ports, each with its
//! own FLEET_HOME, work dir and cgroup root, and stops them (SIGINT, then SIGKILL) on drop.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The `fleet` binary, built (once per test process) from this workspace.
pub fn fleet_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("FLEET_BIN") {
            return PathBuf::from(bin);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "fleet", "--bin", "fleet"])
            .current_dir(workspace())
            .status()
            .expect("cannot run cargo build for the fleet binary");
        assert!(status.success(), "cargo build -p fleet failed");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace().join("target"));
        target.join("debug").join("fleet")
    })
    .clone()
}

/// A port free on 127.0.0.1 for both UDP (QUIC) and TCP (HTTP).
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("udp addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 for both UDP and TCP");
}

/// A short random suffix for cgroup roots and names.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// A child process whose stdout and stderr lines are collected, stopped on drop.
pub struct Process {
    pub name: String,
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Process {
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Process> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let (tx, rx) = mpsc::channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        Ok(Process {
            name: name.to_owned(),
            child: Some(child),
            lines: rx,
            seen: Vec::new(),
        })
    }

    /// Waits for an output line containing `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return Ok(l.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return Ok(line);
                    }
                }
                Err(_) => {
                    self.drain();
                    bail!(
                        "{} did not print '{needle}' within {timeout:?}; output:\n{}",
                        self.name,
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Collects what has been printed so far.
    pub fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash would.
    pub fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGINT, then SIGKILL if it has not exited within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of a child this harness started and has not reaped.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// `fleet dev` on a free port with its own FLEET_HOME and cgroup root.
pub struct Dev {
    pub process: Process,
    pub port: u16,
    pub home: tempfile::TempDir,
    pub cgroup_root: String,
}

impl Dev {
    pub fn start(extra: &[&str]) -> Result<Dev> {
        let home = tempfile::tempdir()?;
        let port = free_port();
        let cgroup_root = unique("fleet-test");
        let mut cmd = Command::new(fleet_bin());
        cmd.arg("dev")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cgroup-root")
            .arg(&cgroup_root)
            .args(extra)
            .env("FLEET_HOME", home.path());
        let mut process = Process::spawn("fleet dev", &mut cmd)?;
        process.wait_for("Fleet dev cluster ready", Duration::from_secs(60))?;
        Ok(Dev {
            process,
            port,
            home,
            cgroup_root,
        })
    }

    /// A `fleet` command pointed at this cluster through its dev profile (no flags).
    pub fn fleet(&self) -> Command {
        let mut cmd = Command::new(fleet_bin());
        cmd.env("FLEET_HOME", self.home.path());
        cmd
    }

    /// `fleet run ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        Ok(self.fleet().arg("run").args(args).output()?)
    }

    /// The master's /state as JSON, through `fleet status --json`.
    pub fn state(&self) -> Result<serde_json::Value> {
        let out = self.fleet().args(["status", "--json"]).output()?;
        if !out.status.success() {
            bail!(
                "fleet status failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

/// Output of a command as text (stdout then stderr), for assertions and messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
