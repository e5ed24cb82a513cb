//! An agent that cannot load its eBPF programs refuses to start, names what failed and
//! the kernel's reason, and leaves no cgroup or pin behind.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use fleet_tests::{fleet_bin, output_within, text, unique};

#[test]
fn without_bpf_capabilities_the_agent_refuses_to_start_and_says_why() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = dir.path().join("certs");
    for args in [
        vec!["certs", "init", "--dir"],
        vec!["certs", "issue", "agent", "a", "--dir"],
    ] {
        let out = output_within(
            Command::new(fleet_bin()).args(&args).arg(&certs),
            Duration::from_secs(30),
        )?;
        assert!(out.status.success(), "fleet {args:?}: {}", text(&out));
    }
    let root = unique("fleet-refuse");
    // setpriv (util-linux) removes CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN from the
    // bounding set: the agent runs as root but the kernel refuses bpf(2).
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set", "-bpf,-perfmon,-sys_admin", "--"])
        .arg(fleet_bin())
        .args(["agent", "--master", "127.0.0.1:9", "--work-dir"])
        .arg(dir.path().join("work"))
        .arg("--ca")
        .arg(certs.join("ca.pem"))
        .arg("--cert")
        .arg(certs.join("agent-a.pem"))
        .arg("--key")
        .arg(certs.join("agent-a-key.pem"))
        .args(["--cgroup-root", &root])
        .args(["--http-listen", "127.0.0.1:0"]);
    let out = output_within(&mut cmd, Duration::from_secs(30)).context("setpriv (util-linux)")?;
    let printed = text(&out);
    assert!(!out.status.success(), "the agent started:\n{printed}");
    assert!(printed.contains("eBPF"), "no mention of eBPF:\n{printed}");
    assert!(
        printed.contains("Operation not permitted"),
        "the kernel's reason is missing:\n{printed}"
    );
    assert_eq!(
        printed.matches("Operation not permitted").count(),
        1,
        "the reason is repeated:\n{printed}"
    );
    for left in [
        format!("/sys/fs/cgroup/memory/{root}"),
        format!("/sys/fs/cgroup/cpu/{root}"),
        format!("/sys/fs/cgroup/unified/{root}"),
        format!("/sys/fs/bpf/fleet/{root}"),
    ] {
        assert!(!Path::new(&left).exists(), "{left} left behind");
    }
    Ok(())
}
