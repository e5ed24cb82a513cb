//! A replicated cluster of separate processes: `fleet certs` makes the CA, a certificate
//! per master and one for the agent; N `fleet master --peers ...` run on free loopback
//! ports, each with its own data dir, and one `fleet agent --master A,B,C`. Masters can
//! be killed (SIGKILL) and started again on the same data dir. On drop everything is
//! stopped and the agent's cgroups removed.
//!
//! [`Masters::start_in_namespaces`] puts each master in a network namespace of its own
//! instead (`netns.rs`), on the namespace's address, so a test can cut a master off the
//! network for real; the test then talks to each master from the hub namespace, or from
//! the master's own while it is cut off.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cgroups::CgroupGuard;
use crate::netns::Netns;
use crate::{HttpAnswer, Process, fleet_bin, free_port, http_with, output_within, text, unique};

/// The port every master listens on in its own network namespace.
const NAMESPACE_PORT: u16 = 5050;

pub struct Masters {
    // Dropped in this order: processes first, then the cgroups, then the files.
    pub agent: Option<Process>,
    /// By node id - 1 (the sorted order of the addresses); None while killed.
    pub masters: Vec<Option<Process>>,
    /// The namespaces the masters run in (None: on loopback), removed after the masters
    /// stopped.
    net: Option<Netns>,
    _cgroups: CgroupGuard,
    pub dir: tempfile::TempDir,
    /// Every master's address (QUIC and HTTP), sorted: index i is node i + 1.
    pub addrs: Vec<SocketAddr>,
    pub cgroup_root: String,
    extra_flags: Vec<String>,
    /// What masters printed before they were killed or restarted.
    past: String,
}

fn fleet(args: &[&str], dir: &Path) -> Result<()> {
    let out = output_within(
        Command::new(fleet_bin()).args(args).current_dir(dir),
        Duration::from_secs(30),
    )?;
    if !out.status.success() {
        bail!("fleet {args:?} failed:\n{}", text(&out));
    }
    Ok(())
}

impl Masters {
    /// Makes the certificates and starts `n` masters with `flags` on loopback; waits until
    /// one leads.
    pub fn start(n: usize, flags: &[&str]) -> Result<Masters> {
        let addrs = (0..n)
            .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
            .collect();
        Masters::start_on(addrs, None, flags)
    }

    /// Like [`start`](Self::start), each master in a network namespace of its own
    /// (member i of a new [`Netns`]), listening on that namespace's address.
    pub fn start_in_namespaces(n: usize, flags: &[&str]) -> Result<Masters> {
        let net = Netns::create(n)?;
        let addrs = (0..n)
            .map(|i| SocketAddr::from((net.addr(i), NAMESPACE_PORT)))
            .collect();
        Masters::start_on(addrs, Some(net), flags)
    }

    fn start_on(mut addrs: Vec<SocketAddr>, net: Option<Netns>, flags: &[&str]) -> Result<Masters> {
        let n = addrs.len();
        let dir = tempfile::tempdir()?;
        let certs = dir.path().join("certs");
        let certs_arg = certs.to_string_lossy().into_owned();
        fleet(&["certs", "init", "--dir", &certs_arg], dir.path())?;
        for i in 1..=n {
            let name = format!("m{i}");
            fleet(
                &["certs", "issue", "master", &name, "--dir", &certs_arg],
                dir.path(),
            )?;
        }
        fleet(
            &["certs", "issue", "agent", "a", "--dir", &certs_arg],
            dir.path(),
        )?;
        // Node ids follow the sorted addresses; namespace addresses are sorted already.
        if net.is_none() {
            addrs.sort();
        }
        let cgroup_root = unique("fleet-test");
        let mut masters = Masters {
            agent: None,
            masters: (0..n).map(|_| None).collect(),
            net,
            _cgroups: CgroupGuard(cgroup_root.clone()),
            dir,
            addrs,
            cgroup_root,
            extra_flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            past: String::new(),
        };
        for i in 0..n {
            masters.spawn_master(i)?;
        }
        masters.wait_leader(Duration::from_secs(30), None)?;
        Ok(masters)
    }

    /// The namespaces of [`start_in_namespaces`](Self::start_in_namespaces), to cut and
    /// heal masters' links.
    pub fn net(&self) -> Option<&Netns> {
        self.net.as_ref()
    }

    /// `--master` / `--peers`: every address, comma-separated.
    pub fn list(&self) -> String {
        self.addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("master-{}", i + 1))
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("certs").join("ca.pem")
    }

    /// The `fleet master` command of master `i` (node i + 1), entering its namespace
    /// before exec when it has one.
    pub fn master_command(&self, i: usize) -> Result<Command> {
        let certs = self.dir.path().join("certs");
        let mut cmd = Command::new(fleet_bin());
        cmd.args(["master", "--listen", &self.addrs[i].to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .args(["--peers", &self.list()])
            .arg("--ca")
            .arg(self.ca_path())
            .arg("--cert")
            .arg(certs.join(format!("master-m{}.pem", i + 1)))
            .arg("--key")
            .arg(certs.join(format!("master-m{}-key.pem", i + 1)))
            .args(&self.extra_flags);
        if let Some(net) = &self.net {
            Netns::enter_on_exec(&mut cmd, net.member(i))?;
        }
        Ok(cmd)
    }

    /// Starts master `i` (again) and waits until it listens.
    pub fn spawn_master(&mut self, i: usize) -> Result<()> {
        let name = format!("fleet master {}", i + 1);
        let mut process = Process::spawn(&name, &mut self.master_command(i)?)?;
        process.wait_for("fleet master: QUIC", Duration::from_secs(30))?;
        if let Some(mut old) = self.masters[i].replace(process) {
            self.past.push_str(&old.output());
            self.past.push('\n');
        }
        Ok(())
    }

    /// SIGKILL master `i`, as a crash would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut process) = self.masters[i].take() {
            process.kill_hard();
            self.past.push_str(&process.output());
            self.past.push('\n');
        }
    }

    /// Starts the agent with every master's address; waits until it registered.
    pub fn start_agent(&mut self, extra: &[&str]) -> Result<()> {
        if self.net.is_some() {
            bail!("the agent runs on loopback: it cannot reach masters in namespaces");
        }
        let certs = self.dir.path().join("certs");
        let mut cmd = Command::new(fleet_bin());
        cmd.args(["agent", "--master", &self.list(), "--work-dir"])
            .arg(self.dir.path().join("agent"))
            .arg("--ca")
            .arg(self.ca_path())
            .arg("--cert")
            .arg(certs.join("agent-a.pem"))
            .arg("--key")
            .arg(certs.join("agent-a-key.pem"))
            .args(["--cgroup-root", &self.cgroup_root])
            .args(["--http-listen", "127.0.0.1:0"])
            .args(extra);
        let mut agent = Process::spawn("fleet agent", &mut cmd)?;
        let registered = agent.wait_for("registered with master", Duration::from_secs(30));
        self.agent = Some(agent);
        if let Err(e) = registered {
            bail!("{e:#}\n{}", self.logs());
        }
        Ok(())
    }

    /// One HTTP request to master `i` (see [`http_with`]): on loopback, or from the
    /// namespace it is reachable from (the hub, its own while cut off).
    pub fn http_with(
        &self,
        i: usize,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<HttpAnswer> {
        let addr = self.addrs[i];
        match &self.net {
            None => http_with(addr, method, path, headers, body),
            Some(net) => Netns::within(net.reach(i), || {
                http_with(addr, method, path, headers, body)
            })?,
        }
    }

    /// Master `i`'s view of the Raft group (`GET /raft`).
    pub fn raft(&self, i: usize) -> Result<Value> {
        let answer = self.http_with(i, "GET", "/raft", &[], "")?;
        if answer.status != 200 {
            bail!(
                "GET /raft on {}: HTTP {}: {}",
                self.addrs[i],
                answer.status,
                answer.body
            );
        }
        Ok(serde_json::from_str(&answer.body)?)
    }

    /// The running master that serves (leads with a quorum's confirmation), if any.
    pub fn serving(&self) -> Option<usize> {
        self.serving_but(None)
    }

    /// Like [`serving`](Self::serving), not asking master `not` (which may be stopped:
    /// its kernel accepts the connection, nobody answers).
    pub fn serving_but(&self, not: Option<usize>) -> Option<usize> {
        (0..self.addrs.len()).find(|&i| {
            Some(i) != not
                && self.masters[i].is_some()
                && self
                    .raft(i)
                    .is_ok_and(|r| r["serving"].as_bool() == Some(true))
        })
    }

    /// Waits until a running master other than `not` serves; which one and how long it
    /// took. Polls every 20 ms.
    pub fn wait_leader(&self, timeout: Duration, not: Option<usize>) -> Result<(usize, Duration)> {
        let started = Instant::now();
        loop {
            if let Some(i) = self.serving_but(not) {
                return Ok((i, started.elapsed()));
            }
            if started.elapsed() > timeout {
                bail!("no master served within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The master state (`GET /state`) of master `i`.
    pub fn state(&self, i: usize) -> Result<Value> {
        let answer = self.http_with(i, "GET", "/state", &[], "")?;
        if answer.status != 200 {
            bail!(
                "GET /state on {}: HTTP {}: {}",
                self.addrs[i],
                answer.status,
                answer.body
            );
        }
        serde_json::from_str(&answer.body).context("/state is not JSON")
    }

    /// Where frameworks reach the masters (on loopback; in namespaces, only from the hub).
    pub fn endpoints(&self) -> Result<Vec<fleet_client::MasterEndpoint>> {
        let ca_pem = std::fs::read_to_string(self.ca_path())?;
        Ok(self
            .addrs
            .iter()
            .map(|addr| fleet_client::MasterEndpoint {
                addr: *addr,
                ca_pem: ca_pem.clone(),
            })
            .collect())
    }

    /// What every master and the agent printed.
    pub fn logs(&mut self) -> String {
        let mut all = self.past.clone();
        for process in self.masters.iter_mut().flatten() {
            all.push_str(&process.output());
            all.push('\n');
        }
        if let Some(agent) = &mut self.agent {
            all.push_str(&agent.output());
        }
        all
    }
}
