//! A real `fleet master` in a child process, for the end-to-end benches: its own CA and
//! certificates in a temporary directory, its addresses read from its first line of output,
//! and its CPU time and resident memory read from /proc, apart from the load generator's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fleet_proto::tls::{self, CertifiedKey, Role};

use crate::BenchError;

/// A master process this bench started; dropping it stops it (SIGTERM, then SIGKILL).
pub struct MasterProcess {
    child: Child,
    quic: SocketAddr,
    http: SocketAddr,
    ca: CertifiedKey,
    agent_identity: CertifiedKey,
    dir: tempfile::TempDir,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

impl MasterProcess {
    /// Starts `fleet master` from the binary at `fleet` on a free loopback port, with
    /// `extra` flags (`--allocation-interval 0.05`, say).
    pub fn spawn(fleet: &Path, extra: &[&str]) -> Result<Self, BenchError> {
        let dir = tempfile::tempdir().map_err(io_err("a temporary directory"))?;
        let tls_err = |e: tls::TlsError| BenchError::Option(format!("certificates: {e}"));
        let ca = tls::new_ca("bench").map_err(tls_err)?;
        let master = tls::issue(&ca, Role::Master, "bench-master", &["127.0.0.1".into()])
            .map_err(tls_err)?;
        let agent_identity = tls::issue(&ca, Role::Agent, "bench-agents", &[]).map_err(tls_err)?;
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).map_err(io_err(format!("{}", path.display())))?;
            Ok::<_, BenchError>(path)
        };
        let ca_path = write("ca.pem", &ca.cert_pem)?;
        let cert = write("master.pem", &master.cert_pem)?;
        let key = write("master.key", &master.key_pem)?;
        let log = std::fs::File::create(dir.path().join("master.log"))
            .map_err(io_err("the master's log file"))?;
        let mut child = Command::new(fleet)
            .arg("master")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--ca")
            .arg(&ca_path)
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(io_err(format!("{} master", fleet.display())))?;
        let stdout = child.stdout.take();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            // The line that names the addresses (a wrapper, a profiler say, may print its
            // own lines first); then keep draining so the master never blocks on the pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("fleet master: QUIC ") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log =
                    std::fs::read_to_string(dir.path().join("master.log")).unwrap_or_default();
                return Err(BenchError::Option(format!(
                    "`{} master` did not report its addresses within 20 s; its log:\n{log}",
                    fleet.display()
                )));
            }
        };
        // "fleet master: QUIC 127.0.0.1:P / HTTP http://127.0.0.1:P"
        let parse = || -> Option<(SocketAddr, SocketAddr)> {
            let rest = line.strip_prefix("fleet master: QUIC ")?;
            let (quic, http) = rest.split_once(" / HTTP http://")?;
            Some((quic.trim().parse().ok()?, http.trim().parse().ok()?))
        };
        let Some((quic, http)) = parse() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BenchError::Option(format!(
                "unexpected first line from `fleet master`: '{line}'"
            )));
        };
        Ok(MasterProcess {
            child,
            quic,
            http,
            ca,
            agent_identity,
            dir,
        })
    }

    pub fn quic_addr(&self) -> SocketAddr {
        self.quic
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The cluster CA certificate (PEM) the master trusts.
    pub fn ca_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// A certificate for simulated agents, issued by the master's CA.
    pub fn agent_identity(&self) -> &CertifiedKey {
        &self.agent_identity
    }

    /// The last `lines` lines of the master's log (which goes when this value does).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("master.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The master's resident memory (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> Result<u64, BenchError> {
        rss_bytes(self.pid())
    }

    /// CPU time (user + system) the master has used so far, in seconds.
    pub fn cpu_seconds(&self) -> Result<f64, BenchError> {
        let path = format!("/proc/{}/stat", self.pid());
        let stat = std::fs::read_to_string(&path).map_err(io_err(path.clone()))?;
        stat_cpu_seconds(&stat).ok_or_else(|| BenchError::Option(format!("cannot parse {path}")))
    }

    /// The value of the counter `fleet_master_<name>_total` on the master's /metrics.
    pub fn counter(&self, name: &str) -> Result<u64, BenchError> {
        let body = http_get(self.http, "/metrics")?;
        let metric = format!("fleet_master_{name}_total ");
        body.lines()
            .find_map(|l| l.strip_prefix(&metric))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .ok_or_else(|| BenchError::Option(format!("the master's /metrics has no {metric}")))
    }
}

impl Drop for MasterProcess {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64, BenchError> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(io_err(path.clone()))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| BenchError::Option(format!("no VmRSS in {path}")))
}

/// utime + stime of a /proc/.../stat line, in seconds.
pub fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some((utime + stime) as f64 / ticks.max(1) as f64)
}

/// A plain HTTP/1.1 GET on loopback; the body of a 200 answer.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String, BenchError> {
    let what = format!("GET http://{addr}{path}");
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(io_err(what.clone()))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io_err(what.clone()))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(io_err(what.clone()))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| BenchError::Option(format!("{what}: no HTTP answer")))?;
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or_default();
        return Err(BenchError::Option(format!("{what}: {status}")));
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_come_from_fields_14_and_15() {
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let stat = "42 (fleet (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(stat_cpu_seconds(stat), Some(300.0 / ticks));
        assert_eq!(stat_cpu_seconds("garbage"), None);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(rss_bytes(std::process::id()).unwrap() > 1024 * 1024);
    }
}
