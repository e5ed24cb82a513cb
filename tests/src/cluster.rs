//! A cluster of separate processes: `fleet certs` makes the CA and certificates, then one
//! `fleet master` and one `fleet agent` run on a free loopback port with their own work
//! dir and cgroup root. On drop the processes are stopped and the cgroups removed, also
//! when the agent was killed and left its tasks behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

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

impl Cluster {
    /// Starts a master with `master_flags` and one agent, and waits until it registered.
    pub fn start(master_flags: &[&str]) -> Result<Cluster> {
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
        let agent = Process::spawn(
            "fleet agent",
            Command::new(fleet_bin())
                .args(["agent", "--master", &addr, "--work-dir"])
                .arg(dir.path().join("agent"))
                .arg("--ca")
                .arg(&ca)
                .arg("--cert")
                .arg(certs.join("agent-a.pem"))
                .arg("--key")
                .arg(certs.join("agent-a-key.pem"))
                .args(["--cgroup-root", &cgroup_root])
                .args(["--http-listen", "127.0.0.1:0"]),
        )?;
        let mut cluster = Cluster {
            agent,
            master,
            _cgroups: guard,
            dir,
            port,
            cgroup_root,
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

    /// What the master and the agent printed.
    pub fn logs(&mut self) -> String {
        format!("{}\n{}", self.master.output(), self.agent.output())
    }
}
