//! A private network of Linux network namespaces for tests that cut a process off for
//! real: a hub namespace holding a bridge (`br0`, 10.231.0.254/24) and one namespace per
//! member with `eth0` at 10.231.0.(i + 1)/24, joined to the bridge by a veth (`v<i>` on
//! the hub's side). Setting a member's hub-side veth down cuts it off from every other
//! namespace, while inside it the member still reaches its own address. Needs root and
//! iproute2's `ip`; every namespace made is deleted on drop (its veths go with it).
//!
//! Interface names are fixed and short (each namespace has its own set); only the
//! namespace names, which are files in /run/netns, carry the unique suffix.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};

use crate::unique;

const BRIDGE: &str = "br0";
const HUB_ADDR: Ipv4Addr = Ipv4Addr::new(10, 231, 0, 254);

/// The hub, the members and which members are cut off. Created with [`Netns::create`].
pub struct Netns {
    hub: String,
    members: Vec<String>,
    cut: Vec<AtomicBool>,
    /// Every namespace made so far, deleted on drop (also when `create` fails midway).
    made: Vec<String>,
}

/// Runs `ip ARGS`; the error names the command and what it printed.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().with_context(|| {
        format!(
            "cannot run `ip {}`: iproute2's `ip` is needed for network namespaces",
            args.join(" ")
        )
    })?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The file `ip netns add NAME` bind-mounts the namespace on.
fn path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

fn open(name: &str) -> Result<File> {
    File::open(path(name))
        .with_context(|| format!("cannot open network namespace {}", path(name).display()))
}

impl Netns {
    /// The hub with its bridge and `n` members attached to it, every link up.
    pub fn create(n: usize) -> Result<Netns> {
        std::fs::create_dir_all("/run/netns")
            .context("cannot create /run/netns (network namespace tests need root)")?;
        let base = unique("fleet");
        let mut net = Netns {
            hub: format!("{base}-hub"),
            members: (1..=n).map(|i| format!("{base}-m{i}")).collect(),
            cut: (0..n).map(|_| AtomicBool::new(false)).collect(),
            made: Vec::new(),
        };
        let hub = net.hub.clone();
        net.add(&hub)?;
        let hub_addr = format!("{HUB_ADDR}/24");
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", &hub, "addr", "add", &hub_addr, "dev", BRIDGE])?;
        ip(&["-n", &hub, "link", "set", BRIDGE, "up"])?;
        for i in 0..n {
            let member = net.members[i].clone();
            net.add(&member)?;
            let link = format!("v{i}");
            let addr = format!("{}/24", net.addr(i));
            ip(&[
                "-n", &hub, "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns",
                &member,
            ])?;
            ip(&["-n", &hub, "link", "set", &link, "master", BRIDGE, "up"])?;
            ip(&["-n", &member, "link", "set", "lo", "up"])?;
            ip(&["-n", &member, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &member, "link", "set", "eth0", "up"])?;
        }
        Ok(net)
    }

    fn add(&mut self, name: &str) -> Result<()> {
        ip(&["netns", "add", name])?;
        self.made.push(name.to_owned());
        Ok(())
    }

    /// The hub's namespace, from which every member is reachable unless cut off.
    pub fn hub(&self) -> &str {
        &self.hub
    }

    /// Member `i`'s namespace.
    pub fn member(&self, i: usize) -> &str {
        &self.members[i]
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `i`'s address on the bridge.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, 0, i as u8 + 1)
    }

    /// Takes member `i`'s link down on the hub's side: nothing passes either way.
    pub fn cut(&self, i: usize) -> Result<()> {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "down"])?;
        self.cut[i].store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Brings member `i`'s link up again.
    pub fn heal(&self, i: usize) -> Result<()> {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "up"])?;
        self.cut[i].store(false, Ordering::SeqCst);
        Ok(())
    }

    pub fn is_cut(&self, i: usize) -> bool {
        self.cut[i].load(Ordering::SeqCst)
    }

    /// Where member `i` can be reached from now: the hub, or its own namespace while it
    /// is cut off.
    pub fn reach(&self, i: usize) -> &str {
        if self.is_cut(i) {
            &self.members[i]
        } else {
            &self.hub
        }
    }

    /// Runs `f` on a thread of its own that entered namespace `name` (setns(2) moves
    /// only the calling thread), and returns what it returned.
    pub fn within<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
        let ns = open(name)?;
        std::thread::scope(|scope| {
            let thread = scope.spawn(move || {
                // SAFETY: setns(2) on a descriptor we own; it moves only this thread,
                // which is ours and ends with `f`.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    let err = std::io::Error::last_os_error();
                    bail!("cannot enter network namespace {name}: setns: {err}");
                }
                Ok(f())
            });
            match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Makes `cmd` start inside namespace `name` (setns in the child before exec), so its
    /// pid is the process's own.
    pub fn enter_on_exec(cmd: &mut Command, name: &str) -> Result<()> {
        let ns = open(name)?;
        // SAFETY: the closure runs in the forked child before exec and only calls
        // setns(2), which is async-signal-safe, on a descriptor opened before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for name in self.made.iter().rev() {
            if let Err(e) = ip(&["netns", "del", name]) {
                eprintln!("cannot remove network namespace {name}: {e:#}");
            }
        }
    }
}
