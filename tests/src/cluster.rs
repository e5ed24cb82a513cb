//! A cluster of separate processes: `fleet certs` makes the CA and certificates, then one
//! `fleet master` and one `fleet agent` run on a free loopback port with their own work
//! dir and cgroup root. On drop the processes are stopped and the cgroups removed, also
//! when the agent was killed and left its tasks behind.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cgroups::CgroupGuard;
use crate::{Process, fleet_bin, free_port, output_within, text, unique};

pub struct Cluster {
    // Dropped in this order: processes first, then the cgroups, then the files.
    pub agent: Process,
    pub master: Process,
    _cgroups: CgroupGuard,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub cgroup_root: String,
    /// The master address the agent is given.
    pub agent_master: String,
    /// What agents started before the current one printed.
    past_agents: String,
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

/// `fleet agent` for the cluster in `dir` with master `addr`.
fn agent_command(dir: &Path, addr: &str, cgroup_root: &str) -> Command {
    let certs = dir.join("certs");
    let mut cmd = Command::new(fleet_bin());
    cmd.args(["agent", "--master", addr, "--work-dir"])
        .arg(dir.join("agent"))
        .arg("--ca")
        .arg(certs.join("ca.pem"))
        .arg("--cert")
        .arg(certs.join("agent-a.pem"))
        .arg("--key")
        .arg(certs.join("agent-a-key.pem"))
        .args(["--cgroup-root", cgroup_root])
        .args(["--http-listen", "127.0.0.1:0"]);
    cmd
}

impl Cluster {
    /// Starts a master with `master_flags` and one agent, and waits until it registered.
    pub fn start(master_flags: &[&str]) -> Result<Cluster> {
        Self::start_with(master_flags, |addr| addr.to_owned())
    }

    /// Like [`start`](Self::start), with the agent given the master address that
    /// `agent_master` makes of the real one (a proxy's, say).
    pub fn start_with(
        master_flags: &[&str],
        agent_master: impl FnOnce(&str) -> String,
    ) -> Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let certs = dir.path().join("certs");
        let certs_arg = certs.to_string_lossy().into_owned();
        fleet(&["certs", "init", "--dir", &certs_arg], dir.path())?;
        fleet(
            &["certs", "issue", "master", "m", "--dir", &certs_arg],
            dir.path(),
        )?;
        fleet(
            &["certs", "issue", "agent", "a", "--dir", &certs_arg],
            dir.path(),
        )?;
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let ca = certs.join("ca.pem");
        let mut master = Process::spawn(
            "fleet master",
            Command::new(fleet_bin())
                .args(["master", "--listen", &addr, "--ca"])
                .arg(&ca)
                .arg("--cert")
                .arg(certs.join("master-m.pem"))
                .arg("--key")
                .arg(certs.join("master-m-key.pem"))
                .args(master_flags),
        )?;
        master.wait_for("fleet master: QUIC", Duration::from_secs(30))?;
        let cgroup_root = unique("fleet-test");
        let guard = CgroupGuard(cgroup_root.clone());
        let agent_addr = agent_master(&addr);
        let agent = Process::spawn(
            "fleet agent",
            &mut agent_command(dir.path(), &agent_addr, &cgroup_root),
        )?;
        let mut cluster = Cluster {
            agent,
            master,
            _cgroups: guard,
            dir,
            port,
            cgroup_root,
            agent_master: agent_addr,
            past_agents: String::new(),
        };
        if let Err(e) = cluster
            .master
            .wait_for("agent registered", Duration::from_secs(30))
        {
            bail!("{e:#}\n{}", cluster.agent.output());
        }
        Ok(cluster)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the agent again (after it was killed or stopped) with the same work dir,
    /// certificates and cgroup root, plus `extra` flags; waits for its registration.
    pub fn restart_agent(&mut self, extra: &[&str]) -> Result<()> {
        let mut cmd = agent_command(self.dir.path(), &self.agent_master, &self.cgroup_root);
        cmd.args(extra);
        let previous = std::mem::replace(&mut self.agent, Process::spawn("fleet agent", &mut cmd)?);
        let mut previous = previous;
        self.past_agents.push_str(&previous.output());
        self.past_agents.push('\n');
        if let Err(e) = self
            .agent
            .wait_for("fleet agent: running", Duration::from_secs(30))
        {
            bail!("{e:#}\n{}", self.master.output());
        }
        Ok(())
    }

    /// The master's HTTP address, from what it printed at start.
    pub fn http_addr(&mut self) -> Result<SocketAddr> {
        let line = self
            .master
            .wait_for("/ HTTP http://", Duration::from_secs(1))?;
        let addr = line
            .rsplit("http://")
            .next()
            .context("no HTTP address")?
            .trim();
        addr.parse()
            .with_context(|| format!("bad HTTP address in '{line}'"))
    }

    /// The agent's HTTP address, from what it printed at start.
    pub fn agent_http_addr(&mut self) -> Result<SocketAddr> {
        let line = self
            .agent
            .wait_for("fleet agent: running", Duration::from_secs(1))?;
        let addr = line
            .rsplit("http://")
            .next()
            .context("no HTTP address")?
            .trim_end_matches(')')
            .trim();
        addr.parse()
            .with_context(|| format!("bad HTTP address in '{line}'"))
    }

    /// Where a framework reaches the master.
    pub fn endpoint(&self) -> Result<fleet_client::MasterEndpoint> {
        Ok(fleet_client::MasterEndpoint {
            addr: self.addr().parse()?,
            ca_pem: std::fs::read_to_string(self.ca_path())?,
        })
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("certs").join("ca.pem")
    }

    /// `fleet run --master ADDR --ca CA ARGS`, started, not awaited; FLEET_HOME points at
    /// an empty directory so no dev profile is picked up.
    pub fn spawn_run(&self, args: &[&str]) -> Result<Process> {
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home)?;
        Process::spawn(
            "fleet run",
            Command::new(fleet_bin())
                .env("FLEET_HOME", &home)
                .args(["run", "--master", &self.addr(), "--ca"])
                .arg(self.ca_path())
                .args(args),
        )
    }

    /// Another `fleet agent` for this cluster's master, presenting `cert` and `key` and
    /// trusting the master through `ca`; its work dir is `work_dir`, its cgroup root
    /// `cgroup_root` (the caller cleans it up). Started, not awaited.
    pub fn spawn_agent_as(
        &self,
        ca: &Path,
        cert: &Path,
        key: &Path,
        work_dir: &Path,
        cgroup_root: &str,
    ) -> Result<Process> {
        let mut cmd = Command::new(fleet_bin());
        cmd.args(["agent", "--master", &self.addr(), "--work-dir"])
            .arg(work_dir)
            .arg("--ca")
            .arg(ca)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .args(["--cgroup-root", cgroup_root])
            .args(["--http-listen", "127.0.0.1:0"]);
        Process::spawn("second fleet agent", &mut cmd)
    }

    /// What the master and the agent printed.
    pub fn logs(&mut self) -> String {
        format!(
            "{}\n{}{}",
            self.master.output(),
            self.past_agents,
            self.agent.output()
        )
    }
}
