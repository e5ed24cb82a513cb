//! Bad input gets a clear error naming what was wrong, and nothing runs that should not:
//! bad agent flags, ACCEPTs the master must refuse, broken QUIC streams, and a task whose
//! cgroup cannot be created.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fleet_client::SchedulerClient;
use fleet_proto::frame::{self, ALPN_SCHEDULER, PROTOCOL_MINOR, StreamKind};
use fleet_proto::ids::OfferId;
use fleet_proto::messages::scheduler::Operation;
use fleet_proto::resources::Resources;
use fleet_proto::task::{Reason, TaskState, TaskStatus};
use fleet_proto::tls;
use fleet_tests::{Dev, cgroups, fleet_bin, output_within, sdk, text, unique};

// ---- (a) agent flags ----

fn agent_with_resources(resources: &str) -> Result<std::process::Output> {
    let work = tempfile::tempdir()?;
    output_within(
        Command::new(fleet_bin())
            .args(["agent", "--master", "127.0.0.1:1", "--work-dir"])
            .arg(work.path())
            .args(["--resources", resources]),
        Duration::from_secs(20),
    )
}

#[test]
fn agent_refuses_a_non_numeric_scalar() -> Result<()> {
    let out = agent_with_resources("cpus:abc")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        stderr.contains("'abc'") && stderr.contains("--resources"),
        "stderr does not name 'abc': {stderr}"
    );
    Ok(())
}

#[test]
fn agent_refuses_a_reversed_range() -> Result<()> {
    let out = agent_with_resources("ports:[5-1]")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        stderr.contains("[5-1]") && stderr.contains("--resources"),
        "stderr does not name the range [5-1]: {stderr}"
    );
    Ok(())
}

// ---- (b) ACCEPTs the master refuses ----

const AGENT: &str = "cpus:2;mem:1024";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_accepts_launch_nothing_and_return_the_offer() -> Result<()> {
    let mut dev = Dev::start(&["--resources", AGENT])?;
    let marker = std::env::temp_dir().join(unique("fleet-refused-marker"));
    let result = refused_accepts(&dev, &marker).await;
    let ran = marker.exists();
    let _ = std::fs::remove_file(&marker);
    result.with_context(|| dev.log())?;
    assert!(!ran, "a refused task ran: {} exists", marker.display());
    Ok(())
}

fn assert_error(status: &TaskStatus, reason: Reason, words: &str) {
    assert_eq!(status.state, TaskState::Error, "{status:?}");
    assert_eq!(status.reason, Some(reason), "{status:?}");
    assert!(status.message.contains(words), "{status:?}");
    // Made by the master, stamped with the time it was sent.
    let now = fleet_proto::task::unix_millis();
    assert!(
        status.timestamp_ms > 0 && status.timestamp_ms <= now,
        "{status:?}"
    );
}

async fn refused_accepts(dev: &Dev, marker: &std::path::Path) -> Result<()> {
    let full = Resources::parse(AGENT)?;
    let (client, mut events) =
        SchedulerClient::connect(dev.endpoint()?, sdk::framework("bad-accepts")).await?;
    let (offers, _) = sdk::next_offers(&client, &mut events, Duration::from_secs(10)).await?;
    let offer = offers.first().context("empty OFFERS")?;
    assert!(offer.resources.contains(&full), "{offer:?}");
    let touch = ["touch", marker.to_str().context("marker path")?];

    // More than the offer holds.
    let greedy = sdk::task(&offer.agent_id, "greedy", "cpus:4;mem:64", &touch)?;
    client.launch(offer.id, vec![greedy.clone()]).await?;
    let (status, _) = sdk::wait_state(
        &client,
        &mut events,
        &greedy.task_id,
        TaskState::Error,
        Duration::from_secs(10),
    )
    .await?;
    assert_error(&status, Reason::TaskInvalid, "more than the offers hold");

    // The offer's resources come back whole.
    let again = loop {
        let (offers, _) = sdk::next_offers(&client, &mut events, Duration::from_secs(15)).await?;
        if let Some(o) = offers.into_iter().find(|o| o.resources.contains(&full)) {
            break o;
        }
    };

    // An offer id that never existed.
    let stray = sdk::task(&again.agent_id, "stray", "cpus:0.1;mem:32", &touch)?;
    let unknown = OfferId {
        shard: 0,
        seq: 999_999,
    };
    client
        .accept(
            vec![unknown],
            vec![Operation::Launch {
                tasks: vec![stray.clone()],
            }],
            None,
        )
        .await?;
    let (status, _) = sdk::wait_state(
        &client,
        &mut events,
        &stray.task_id,
        TaskState::Error,
        Duration::from_secs(10),
    )
    .await?;
    assert_error(&status, Reason::InvalidOffers, "unknown");

    // Nothing was launched: no container, nothing used, no live task.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        cgroups::containers(&dev.cgroup_root).is_empty(),
        "a container cgroup exists under {}",
        dev.cgroup_root
    );
    let state = dev.state()?;
    let tasks = state["tasks"].as_array().context("no tasks list")?;
    assert!(
        tasks.iter().all(|t| t["state"] == "TASK_ERROR"),
        "{state:#}"
    );
    assert_eq!(state["agents"][0]["tasks"], 0, "{state:#}");
    client.teardown().await?;
    Ok(())
}

// ---- (c) broken streams on a raw QUIC connection ----

fn quic_client(ca_pem: &str) -> Result<quinn::Endpoint> {
    let tls = tls::client_config(ca_pem, None, ALPN_SCHEDULER)?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into())?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    Ok(endpoint)
}

/// Opens a control stream, sends `bytes`, and returns the master's close reason.
async fn close_reason_for(endpoint: &quinn::Endpoint, dev: &Dev, bytes: &[u8]) -> Result<String> {
    let conn = endpoint
        .connect(dev.addr(), tls::MASTER_SERVER_NAME)?
        .await
        .context("QUIC handshake")?;
    let (mut send, _recv) = conn.open_bi().await?;
    send.write_all(bytes).await?;
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .context("the master did not close the connection within 5 s")?;
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            let code = close.error_code.into_inner();
            let reason = String::from_utf8_lossy(&close.reason).into_owned();
            if code != u64::from(frame::close::PROTOCOL_ERROR) {
                bail!("closed with code {code} (not PROTOCOL_ERROR): {reason}");
            }
            Ok(reason)
        }
        other => bail!("connection ended without an application close: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_streams_are_closed_with_a_reason() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let result = broken_streams(&dev).await;
    result.with_context(|| dev.log())?;
    // The master still serves everyone else.
    let out = dev.run(&["--", "true"])?;
    assert!(out.status.success(), "{}\n{}", text(&out), dev.log());
    Ok(())
}

async fn broken_streams(dev: &Dev) -> Result<()> {
    let endpoint = quic_client(&dev.endpoint()?.ca_pem)?;
    let preamble = frame::preamble(StreamKind::SchedulerControl);

    let reason = close_reason_for(&endpoint, dev, b"GARBAGE!garbage").await?;
    assert!(
        reason.contains("not a Fleet stream"),
        "garbage preamble: {reason}"
    );

    let mut oversized = preamble.to_vec();
    oversized.extend_from_slice(&u32::MAX.to_le_bytes());
    let reason = close_reason_for(&endpoint, dev, &oversized).await?;
    assert!(
        reason.contains("4294967295") && reason.contains("exceeds the limit"),
        "oversized frame: {reason}"
    );

    let mut newer = preamble;
    newer[4..6].copy_from_slice(&(frame::PROTOCOL_MAJOR + 1).to_le_bytes());
    let reason = close_reason_for(&endpoint, dev, &newer).await?;
    let version = format!(
        "incompatible protocol version {}.{PROTOCOL_MINOR}",
        frame::PROTOCOL_MAJOR + 1
    );
    assert!(reason.contains(&version), "other major version: {reason}");

    let mut junk_frame = preamble.to_vec();
    junk_frame.extend_from_slice(&16u32.to_le_bytes());
    junk_frame.extend_from_slice(&[0xff; 16]);
    let reason = close_reason_for(&endpoint, dev, &junk_frame).await?;
    assert!(reason.contains("invalid"), "undecodable frame: {reason}");

    endpoint.close(0u32.into(), b"done");
    Ok(())
}

// ---- (d) a container that cannot be isolated never runs ----

#[test]
fn task_without_a_cgroup_fails_and_never_runs() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let marker = std::env::temp_dir().join(unique("fleet-unisolated-marker"));
    let marker_arg = marker.to_str().context("marker path")?.to_owned();
    // No new cgroup can be made under the agent's root in the cgroup2 tree (EAGAIN).
    let limit = cgroups::cgroup2_root(&dev.cgroup_root).join("cgroup.max.descendants");
    std::fs::write(&limit, "0").with_context(|| format!("cannot write {}", limit.display()))?;
    let out = dev.run(&["--", "touch", &marker_arg]);
    let ran = marker.exists();
    let _ = std::fs::remove_file(&marker);
    std::fs::write(&limit, "max")?;
    let out = out?;
    let printed = text(&out);
    assert!(!out.status.success(), "{printed}");
    assert!(!ran, "the task ran without its cgroup:\n{printed}");
    let last = printed
        .lines()
        .rfind(|l| l.starts_with("task ") && l.contains("TASK_"))
        .unwrap_or_default();
    assert!(
        last.contains("TASK_FAILED")
            && last.contains("REASON_CONTAINER_LAUNCH_FAILED")
            && last.contains("cgroup"),
        "expected TASK_FAILED (REASON_CONTAINER_LAUNCH_FAILED: ...cgroup...):\n{printed}\n{}",
        dev.log()
    );
    assert!(!printed.contains("TASK_RUNNING"), "{printed}");

    // With the limit lifted the same command runs: the limit was the only obstacle.
    let out = dev.run(&["--", "touch", &marker_arg])?;
    let ran = marker.exists();
    let _ = std::fs::remove_file(&marker);
    assert!(out.status.success() && ran, "{}", text(&out));
    Ok(())
}

#[test]
fn removed_root_cgroup_is_recreated_and_limits_still_hold() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    if cgroups::is_v2_only() {
        bail!("this test removes a v1 hierarchy's root cgroup; /sys/fs/cgroup is cgroup2 only");
    }
    let memory_root = std::path::Path::new(cgroups::MOUNT)
        .join("memory")
        .join(&dev.cgroup_root);
    std::fs::remove_dir(&memory_root)
        .with_context(|| format!("cannot rmdir {}", memory_root.display()))?;
    let out = dev.run(&[
        "--mem",
        "64",
        "--",
        "python3",
        "-c",
        "b = bytearray(512 * 2**20)",
    ])?;
    let printed = text(&out);
    assert!(!out.status.success(), "{printed}\n{}", dev.log());
    assert!(
        printed.contains("REASON_CONTAINER_LIMITATION_MEMORY"),
        "the task was not held to its memory limit after its root cgroup was removed:\n{printed}\n{}",
        dev.log()
    );
    Ok(())
}
