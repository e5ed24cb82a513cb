//! Finding the leading master among several (`--master A,B,C`): only the leader of the
//! replicated masters takes frameworks; the others close at once with `NOT_LEADER`,
//! naming the leader when they know it. [`connect_leader`] tries every master at once
//! (a crashed one only times out, it never holds the others up), follows such a pointer,
//! and asks a master that knows no leader again shortly, until [`FIND_LEADER`] has passed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use fleet_proto::messages::scheduler::FrameworkInfo;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::credential::Credential;
use crate::error::ClientError;
use crate::scheduler::{EventStream, MasterEndpoint, SchedulerClient};

/// How long to keep looking for a leader while masters say none is elected yet.
pub const FIND_LEADER: Duration = Duration::from_secs(15);
/// How long a master that said no leader is elected yet is left before it is asked again.
const ELECTION_RETRY: Duration = Duration::from_millis(200);

type Attempt = (
    SocketAddr,
    Result<(SchedulerClient, EventStream), ClientError>,
);

/// Subscribes `framework` with the leading master of `masters` (all with the same CA).
pub async fn connect_leader(
    masters: &[MasterEndpoint],
    framework: FrameworkInfo,
    suppressed_roles: Vec<String>,
    credential: Option<&Credential>,
) -> Result<(SchedulerClient, EventStream), ClientError> {
    let Some(first) = masters.first() else {
        return Err(ClientError::InvalidOption {
            option: "masters",
            reason: "no master address given".into(),
        });
    };
    let ca_pem = first.ca_pem.clone();
    let deadline = Instant::now() + FIND_LEADER;
    let spawn = |attempts: &mut JoinSet<Attempt>, addr: SocketAddr, after: Duration| {
        let master = MasterEndpoint {
            addr,
            ca_pem: ca_pem.clone(),
        };
        let (framework, suppressed, credential) = (
            framework.clone(),
            suppressed_roles.clone(),
            credential.cloned(),
        );
        attempts.spawn(async move {
            tokio::time::sleep(after).await;
            let result =
                SchedulerClient::connect_as(master, framework, suppressed, credential.as_ref())
                    .await;
            (addr, result)
        });
    };
    let mut attempts = JoinSet::new();
    let mut in_flight = BTreeSet::new();
    for master in masters {
        if in_flight.insert(master.addr) {
            spawn(&mut attempts, master.addr, Duration::ZERO);
        }
    }
    // The last failure of each master, for the error when none leads in time.
    let mut failures = BTreeMap::new();
    while let Some(joined) = attempts.join_next().await {
        let Ok((addr, result)) = joined else {
            continue;
        };
        in_flight.remove(&addr);
        match result {
            Ok(session) => return Ok(session),
            Err(ClientError::NotLeader { leader, .. }) => {
                if Instant::now() < deadline {
                    if let Some(leader) = leader
                        && in_flight.insert(leader)
                    {
                        spawn(&mut attempts, leader, Duration::ZERO);
                    }
                    // It may lead after the election: ask it again in a moment.
                    if in_flight.insert(addr) {
                        spawn(&mut attempts, addr, ELECTION_RETRY);
                    }
                }
                let e = ClientError::NotLeader { addr, leader };
                failures.insert(addr, e.to_string());
            }
            Err(e @ (ClientError::Refused { .. } | ClientError::Tls(_))) => return Err(e),
            Err(e) => {
                tracing::debug!(%addr, error = %e, "master failed");
                failures.insert(addr, e.to_string());
            }
        }
    }
    Err(ClientError::NoMaster {
        failures: failures.into_values().collect(),
    })
}

/// How long `/raft` of one master may take: a master that does not answer in a second
/// is shown as unreachable rather than holding up `fleet status`.
const RAFT_TIMEOUT: Duration = Duration::from_secs(1);

/// One master's answer to `GET /raft` (its view of the Raft group), or why there is none.
#[derive(Debug)]
pub struct MasterView {
    pub addr: SocketAddr,
    pub raft: Result<serde_json::Value, String>,
}

fn get_raft(
    addr: SocketAddr,
    credential: Option<&Credential>,
) -> Result<serde_json::Value, String> {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(RAFT_TIMEOUT))
        .http_status_as_error(false)
        .build();
    let mut request = ureq::Agent::new_with_config(config).get(format!("http://{addr}/raft"));
    if let Some(c) = credential {
        request = request.header("Authorization", &c.authorization());
    }
    let mut response = request.call().map_err(|e| match e {
        ureq::Error::Timeout(_) => format!("no answer within {RAFT_TIMEOUT:?}"),
        ureq::Error::Io(io) => format!("unreachable: {io}"),
        other => other.to_string(),
    })?;
    let status = response.status().as_u16();
    let body: serde_json::Value = response
        .body_mut()
        .read_json()
        .map_err(|e| format!("HTTP {status}, and the body is not JSON: {e}"))?;
    if status >= 400 {
        let reason = body
            .get("error")
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| body.to_string(), str::to_owned);
        return Err(format!("HTTP {status}: {reason}"));
    }
    Ok(body)
}

/// Asks every master in `masters`, and every member their answers name, for its view of
/// the Raft group (`GET /raft`, one second each). Blocking: for the CLI.
pub fn views(masters: &[SocketAddr], credential: Option<&Credential>) -> Vec<MasterView> {
    let mut asked: BTreeSet<SocketAddr> = BTreeSet::new();
    let mut queue: Vec<SocketAddr> = masters.to_vec();
    let mut views = Vec::new();
    while let Some(addr) = queue.pop() {
        if !asked.insert(addr) {
            continue;
        }
        let raft = get_raft(addr, credential);
        if let Ok(body) = &raft {
            let members = body.get("members").and_then(serde_json::Value::as_array);
            for member in members.into_iter().flatten() {
                if let Some(member) = member
                    .get("address")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|a| a.parse().ok())
                {
                    queue.push(member);
                }
            }
        }
        views.push(MasterView { addr, raft });
    }
    views.sort_by_key(|v| v.addr);
    views
}

/// The master that serves among `views` (leads with a quorum's confirmation), if any.
pub fn serving(views: &[MasterView]) -> Option<SocketAddr> {
    views.iter().find_map(|v| {
        let body = v.raft.as_ref().ok()?;
        body.get("serving")
            .and_then(serde_json::Value::as_bool)
            .filter(|s| *s)
            .map(|_| v.addr)
    })
}

/// Prints the MASTERS table: each master's role, term, commit and applied index, and
/// which one leads. Nothing when no master is replicated (a lone in-memory master).
pub fn print_masters(
    views: &[MasterView],
    out: &mut impl std::io::Write,
) -> Result<(), ClientError> {
    if views.iter().all(|v| v.raft.is_err()) {
        return Ok(());
    }
    let field = |body: &serde_json::Value, key: &str| match body.get(key) {
        Some(serde_json::Value::Null) | None => "-".to_owned(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    writeln!(out, "\nMASTERS")?;
    writeln!(
        out,
        "{:<24} {:>3} {:<10} {:>6} {:>8} {:>8}  LEADER",
        "ADDRESS", "ID", "ROLE", "TERM", "COMMIT", "APPLIED"
    )?;
    for view in views {
        match &view.raft {
            Ok(body) => {
                let serving = body.get("serving").and_then(serde_json::Value::as_bool);
                let role = match (field(body, "role").as_str(), serving) {
                    ("leader", Some(true)) => "leader".to_owned(),
                    ("leader", _) => "leader?".to_owned(),
                    (other, _) => other.to_owned(),
                };
                writeln!(
                    out,
                    "{:<24} {:>3} {:<10} {:>6} {:>8} {:>8}  {}",
                    view.addr.to_string(),
                    field(body, "id"),
                    role,
                    field(body, "term"),
                    field(body, "commit_index"),
                    field(body, "last_applied"),
                    field(body, "leader_address"),
                )?;
            }
            Err(e) => writeln!(out, "{:<24}   - unreachable ({e})", view.addr.to_string())?,
        }
    }
    Ok(())
}
