//! Harness for end-to-end tests: builds the real `fleet` binary once, starts `fleet dev` or
//! separate `fleet master` / `fleet agent` processes on free loopback ports, each with its
//! own FLEET_HOME, work dir and cgroup root, and stops them (SIGINT, then SIGKILL) on drop.
//! `netns` puts processes in network namespaces of their own, for real network cuts.

pub mod cgroups;
pub mod cluster;
pub mod masters;
pub mod netns;
pub mod sdk;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, UdpSocket};
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

    /// Everything printed so far, one line each, for assertion messages.
    pub fn output(&mut self) -> String {
        self.drain();
        format!("--- {} ---\n{}", self.name, self.seen.join("\n"))
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit status, or None
    /// while it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
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

/// `fleet dev` on a free port with its own FLEET_HOME and cgroup root. On drop it is
/// stopped and whatever is left of its cgroup root is removed.
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

    /// The master's QUIC address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The throwaway cluster CA `fleet dev` wrote.
    pub fn ca_path(&self) -> PathBuf {
        self.home.path().join("dev").join("certs").join("ca.pem")
    }

    /// Where a framework reaches this cluster.
    pub fn endpoint(&self) -> Result<fleet_client::MasterEndpoint> {
        let ca_pem = std::fs::read_to_string(self.ca_path())
            .with_context(|| format!("cannot read {}", self.ca_path().display()))?;
        Ok(fleet_client::MasterEndpoint {
            addr: self.addr(),
            ca_pem,
        })
    }

    /// What `fleet dev` printed so far.
    pub fn log(&mut self) -> String {
        self.process.output()
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

impl Drop for Dev {
    fn drop(&mut self) {
        self.process.stop(Duration::from_secs(10));
        cgroups::cleanup(&self.cgroup_root);
    }
}

/// Calls `check` every 100 ms until it returns Some; fails after `timeout`, saying `what`
/// was awaited and the last error `check` returned.
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= deadline {
            match last_err {
                Some(e) => {
                    bail!("timed out after {timeout:?} waiting for {what}; last error: {e:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `cmd` to completion, killing it if it has not exited within `timeout` (then the
/// error says so). Meant for commands with little output.
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start the command")?;
    let mut readers = Vec::new();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ] {
        readers.push(std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut s) = stream {
                let _ = s.read_to_end(&mut buf);
            }
            buf
        }));
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let out: Vec<Vec<u8>> = readers
                .into_iter()
                .map(|r| r.join().unwrap_or_default())
                .collect();
            bail!(
                "{cmd:?} did not exit within {timeout:?}; output:\n{}{}",
                String::from_utf8_lossy(&out[0]),
                String::from_utf8_lossy(&out[1])
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = readers.into_iter().map(|r| r.join().unwrap_or_default());
    Ok(Output {
        status,
        stdout: out.next().unwrap_or_default(),
        stderr: out.next().unwrap_or_default(),
    })
}

/// The sandbox directory `fleet run` printed last (`sandbox: PATH`).
pub fn sandbox_of(run_output: &str) -> Option<PathBuf> {
    run_output
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("sandbox: "))
        .map(|p| PathBuf::from(p.trim()))
}

/// Output of a command as text (stdout then stderr), for assertions and messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One plain HTTP/1.1 request (a JSON body when `body` is not empty) to `addr`, connection
/// closed after it: the status and the body.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut stream =
        std::net::TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP response: {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A UDP relay on loopback between one client and `upstream`, which the test can cut and
/// heal: a network partition between an agent and its master that this process controls.
pub struct UdpRelay {
    pub addr: std::net::SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Datagrams dropped while cut.
    pub dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl UdpRelay {
    pub fn start(upstream: std::net::SocketAddr) -> Result<UdpRelay> {
        use std::net::UdpSocket;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let front = UdpSocket::bind("127.0.0.1:0")?;
        let back = UdpSocket::bind("127.0.0.1:0")?;
        back.connect(upstream)?;
        let timeout = Some(Duration::from_millis(100));
        front.set_read_timeout(timeout)?;
        back.set_read_timeout(timeout)?;
        let addr = front.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let client: Arc<std::sync::Mutex<Option<std::net::SocketAddr>>> = Arc::default();
        let (front2, back2) = (front.try_clone()?, back.try_clone()?);
        {
            let (cut, stop, dropped, client) =
                (cut.clone(), stop.clone(), dropped.clone(), client.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = front.recv_from(&mut buf) else {
                        continue;
                    };
                    *client.lock().unwrap_or_else(|e| e.into_inner()) = Some(from);
                    if cut.load(Ordering::Relaxed) {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let _ = back.send(&buf[..n]);
                    }
                }
            });
        }
        {
            let (cut, stop, dropped) = (cut.clone(), stop.clone(), dropped.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(n) = back2.recv(&mut buf) else {
                        continue;
                    };
                    let to = *client.lock().unwrap_or_else(|e| e.into_inner());
                    match to {
                        Some(_) if cut.load(Ordering::Relaxed) => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(to) => {
                            let _ = front2.send_to(&buf[..n], to);
                        }
                        None => {}
                    }
                }
            });
        }
        Ok(UdpRelay {
            addr,
            cut,
            stop,
            dropped,
        })
    }

    /// Drops everything both ways until `heal`.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An HTTP answer with its header lines, for tests that look at more than the status.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    /// The header lines as sent, `Name: value`, one a line.
    pub headers: String,
    pub body: String,
}

/// Like [`http`], with extra request headers (e.g. `("Authorization", "Bearer p:s")`).
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<HttpAnswer> {
    use std::io::{Read as _, Write as _};
    let mut stream =
        std::net::TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         {extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP response: {response:?}"))?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let headers = head.lines().skip(1).collect::<Vec<_>>().join("\n");
    Ok(HttpAnswer {
        status,
        headers,
        body: body.to_owned(),
    })
}
