//! Authentication and authorization end to end, with a real `fleet master` and `fleet
//! agent`: frameworks prove a principal before SUBSCRIBE and register only in the roles the
//! ACLs allow; HTTP callers need a token (401) and an ACL for changes (403); an agent whose
//! certificate comes from another CA is refused at the handshake. Every refusal is in the
//! master's log with the principal (or the peer).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use fleet_client::{ClientError, Credential, SchedulerClient};
use fleet_tests::cgroups::CgroupGuard;
use fleet_tests::cluster::Cluster;
use fleet_tests::{HttpAnswer, Process, fleet_bin, http_with, output_within, sdk, text, unique};

const CREDENTIALS: &str = r#"{"credentials": [
    {"principal": "web", "secret": "web-secret"},
    {"principal": "batch", "secret": "batch-secret"},
    {"principal": "ops", "secret": "ops-secret"}
]}"#;

/// web may register in role web only; batch in batch only; nobody may set quotas or
/// weights but ops. Everything else (reads) is allowed.
const ACLS: &str = r#"{
  "permissive": true,
  "register_frameworks": [
    {"principals": {"values": ["web"]}, "roles": {"values": ["web"]}},
    {"principals": {"values": ["batch"]}, "roles": {"values": ["batch"]}},
    {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}
  ],
  "update_quotas": [
    {"principals": {"values": ["ops"]}, "roles": {"type": "ANY"}},
    {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}
  ],
  "update_weights": [
    {"principals": {"values": ["ops"]}, "roles": {"type": "ANY"}},
    {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}
  ]
}"#;

/// base64("ops:ops-secret"), for the Basic scheme browsers and Mesos clients use.
const OPS_BASIC: &str = "Basic b3BzOm9wcy1zZWNyZXQ=";

/// The credentials, ACL and secret files, and a cluster whose master reads the first two.
struct Secured {
    cluster: Cluster,
    files: tempfile::TempDir,
}

impl Secured {
    fn start() -> Result<Secured> {
        let files = tempfile::tempdir()?;
        std::fs::write(files.path().join("credentials.json"), CREDENTIALS)?;
        std::fs::write(files.path().join("acls.json"), ACLS)?;
        for (principal, secret) in [("web", "web-secret\n"), ("ops", "ops-secret\n")] {
            std::fs::write(files.path().join(principal), secret)?;
        }
        let credentials = files.path().join("credentials.json");
        let acls = files.path().join("acls.json");
        let cluster = Cluster::start(&[
            "--credentials",
            &credentials.to_string_lossy(),
            "--acls",
            &acls.to_string_lossy(),
        ])?;
        Ok(Secured { cluster, files })
    }

    fn secret_file(&self, principal: &str) -> PathBuf {
        self.files.path().join(principal)
    }

    /// The master's log line containing `needle`, without colours.
    fn master_line(&mut self, needle: &str) -> Result<String> {
        let line = self
            .cluster
            .master
            .wait_for(needle, Duration::from_secs(10))?;
        Ok(plain(&line))
    }
}

/// A log line without its ANSI colour codes.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn subscribe(
    cluster: &Cluster,
    role: &str,
    credential: Option<Credential>,
) -> Result<Result<(), ClientError>> {
    let mut info = sdk::framework("auth-test");
    info.roles = vec![role.to_owned()];
    let result =
        SchedulerClient::connect_as(cluster.endpoint()?, info, Vec::new(), credential.as_ref())
            .await;
    Ok(match result {
        Ok((client, _events)) => {
            client.teardown().await?;
            Ok(())
        }
        Err(e) => Err(e),
    })
}

#[test]
fn frameworks_prove_their_principal_and_register_only_where_the_acls_allow() -> Result<()> {
    let mut secured = Secured::start()?;
    let result = frameworks(&mut secured);
    result.with_context(|| secured.cluster.logs())
}

fn frameworks(secured: &mut Secured) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    // A wrong secret: refused, the error names the principal, the master logs it.
    let wrong = Credential::new("web", "not-the-secret");
    let err = rt
        .block_on(subscribe(&secured.cluster, "web", Some(wrong)))?
        .expect_err("a wrong secret subscribed");
    assert!(matches!(err, ClientError::Refused { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("authentication failed for principal 'web'"),
        "{err}"
    );
    let line = secured.master_line("framework refused")?;
    println!("{line}");
    assert!(
        line.contains("WARN") && line.contains("principal=web") && line.contains("wrong secret"),
        "{line}"
    );

    // No credential at all: refused as unauthenticated.
    let err = rt
        .block_on(subscribe(&secured.cluster, "web", None))?
        .expect_err("an anonymous framework subscribed");
    assert!(err.to_string().contains("authentication required"), "{err}");

    // The right secret, but a role the ACLs do not give this principal.
    let batch = Credential::new("batch", "batch-secret");
    let err = rt
        .block_on(subscribe(&secured.cluster, "web", Some(batch.clone())))?
        .expect_err("batch registered in role web");
    assert!(
        err.to_string()
            .contains("principal 'batch' may not register in role 'web'"),
        "{err}"
    );
    let line = secured.master_line("may not register in role 'web'")?;
    println!("{line}");
    assert!(line.contains("principal=batch"), "{line}");
    // ... and in its own role it subscribes.
    rt.block_on(subscribe(&secured.cluster, "batch", Some(batch)))?
        .context("batch in role batch")?;

    // `fleet run` with the right secret subscribes and runs its task to the end.
    let secret = secured.secret_file("web");
    let mut run = secured.cluster.spawn_run(&[
        "--principal",
        "web",
        "--secret-file",
        &secret.to_string_lossy(),
        "--role",
        "web",
        "--",
        "echo",
        "authenticated",
    ])?;
    let status = run
        .wait_exit(Duration::from_secs(60))
        .context("fleet run did not end")?;
    let printed = run.output();
    assert!(status.success(), "{printed}");
    assert!(printed.contains("TASK_FINISHED"), "{printed}");
    Ok(())
}

fn call(addr: std::net::SocketAddr, authorization: Option<&str>, body: &str) -> Result<HttpAnswer> {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    http_with(addr, "POST", "/api/v1", &headers, body)
}

const SET_QUOTA: &str = r#"{"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
    {"role": "dev", "guarantees": {"cpus": {"value": 1}}}]}}"#;

#[test]
fn http_callers_need_a_token_and_an_acl_to_change_the_cluster() -> Result<()> {
    let mut secured = Secured::start()?;
    let result = http_callers(&mut secured);
    result.with_context(|| secured.cluster.logs())
}

fn http_callers(secured: &mut Secured) -> Result<()> {
    let addr = secured.cluster.http_addr()?;

    // Health stays open for probes.
    let health = http_with(addr, "GET", "/health", &[], "")?;
    assert_eq!(health.status, 200, "{health:?}");

    // No token: 401 with the login schemes, logged as anonymous.
    let state = http_with(addr, "GET", "/state", &[], "")?;
    assert_eq!(state.status, 401, "{state:?}");
    let schemes = state.headers.to_ascii_lowercase();
    assert!(
        schemes.contains("www-authenticate: basic realm=\"fleet\""),
        "{schemes}"
    );
    let line = secured.master_line("HTTP request refused")?;
    println!("{line}");
    assert!(
        line.contains("principal=anonymous") && line.contains("path=/state"),
        "{line}"
    );
    // The web UI asks the browser for a login too.
    let ui = http_with(addr, "GET", "/", &[], "")?;
    assert_eq!(ui.status, 401, "{ui:?}");
    let ui = http_with(addr, "GET", "/", &[("Authorization", OPS_BASIC)], "")?;
    assert_eq!(ui.status, 200, "{}", ui.headers);

    // A wrong token: 401.
    let wrong = call(addr, Some("Bearer ops:guess"), r#"{"type": "GET_STATE"}"#)?;
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert!(
        wrong
            .body
            .contains("authentication failed for principal 'ops'"),
        "{wrong:?}"
    );

    // A known principal the ACLs do not let set quotas: 403 naming it and the action.
    let web = call(addr, Some("Bearer web:web-secret"), SET_QUOTA)?;
    assert_eq!(web.status, 403, "{web:?}");
    assert!(
        web.body
            .contains("principal 'web' may not set the quota of role 'dev'"),
        "{web:?}"
    );
    let line = secured.master_line("may not set the quota")?;
    println!("{line}");
    assert!(
        line.contains("principal=web") && line.contains("path=/api/v1"),
        "{line}"
    );
    // It may still read.
    let read = call(
        addr,
        Some("Bearer web:web-secret"),
        r#"{"type": "GET_QUOTA"}"#,
    )?;
    assert_eq!(read.status, 200, "{read:?}");

    // The allowed principal, with Mesos' Basic scheme: 200.
    let ops = call(addr, Some(OPS_BASIC), SET_QUOTA)?;
    assert_eq!(ops.status, 200, "{ops:?}");

    // The operator CLI sends the principal it is given, from flags or the environment.
    let home = secured.files.path().join("home");
    std::fs::create_dir_all(&home)?;
    let fleet = |args: &[&str], env: &[(&str, &str)]| -> Result<std::process::Output> {
        let mut cmd = Command::new(fleet_bin());
        cmd.env("FLEET_HOME", &home)
            .env_remove("FLEET_PRINCIPAL")
            .env_remove("FLEET_SECRET")
            .env_remove("FLEET_SECRET_FILE")
            .envs(env.iter().copied())
            .args(args)
            .args(["--master", &addr.to_string()]);
        output_within(&mut cmd, Duration::from_secs(30))
    };
    let out = fleet(&["weights", "set", "web=2"], &[])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("401") && text(&out).contains("authentication required"),
        "{}",
        text(&out)
    );
    let ops_secret = secured.secret_file("ops");
    let out = fleet(
        &[
            "weights",
            "set",
            "web=2",
            "--principal",
            "ops",
            "--secret-file",
            &ops_secret.to_string_lossy(),
        ],
        &[],
    )?;
    assert!(out.status.success(), "{}", text(&out));
    let out = fleet(
        &["weights", "set", "web=3"],
        &[("FLEET_PRINCIPAL", "web"), ("FLEET_SECRET", "web-secret")],
    )?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("403")
            && text(&out).contains("principal 'web' may not set the weight of role 'web'"),
        "{}",
        text(&out)
    );
    let out = fleet(
        &["status", "--json"],
        &[("FLEET_PRINCIPAL", "web"), ("FLEET_SECRET", "web-secret")],
    )?;
    assert!(out.status.success(), "{}", text(&out));
    Ok(())
}

#[test]
fn an_agent_with_a_certificate_from_another_ca_is_refused_and_the_refusal_logged() -> Result<()> {
    let mut cluster = Cluster::start(&[])?;
    let other = tempfile::tempdir()?;
    let result = foreign_agent(&mut cluster, other.path());
    result.with_context(|| cluster.logs())
}

fn foreign_agent(cluster: &mut Cluster, other: &Path) -> Result<()> {
    let certs = other.join("certs");
    for args in [
        vec!["certs", "init", "--dir"],
        vec!["certs", "issue", "agent", "rogue", "--dir"],
    ] {
        let out = output_within(
            Command::new(fleet_bin()).args(&args).arg(&certs),
            Duration::from_secs(30),
        )?;
        assert!(out.status.success(), "fleet {args:?}: {}", text(&out));
    }
    let cgroup_root = unique("fleet-rogue");
    let _guard = CgroupGuard(cgroup_root.clone());
    // It trusts the real master (the cluster CA's certificate is public) but presents a
    // certificate of its own CA.
    let mut rogue: Process = cluster.spawn_agent_as(
        &cluster.ca_path(),
        &certs.join("agent-rogue.pem"),
        &certs.join("agent-rogue-key.pem"),
        &other.join("work"),
        &cgroup_root,
    )?;
    let line = cluster
        .master
        .wait_for("refused peer", Duration::from_secs(30))
        .with_context(|| rogue.output())?;
    let line = plain(&line);
    println!("{line}");
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    assert!(
        line.contains("invalid peer certificate")
            && line.contains("not issued by this cluster's CA"),
        "{line}"
    );
    // It keeps trying and is refused each time; it never registers.
    std::thread::sleep(Duration::from_secs(2));
    cluster.master.drain();
    let registered = cluster
        .master
        .seen
        .iter()
        .filter(|l| l.contains("agent registered"))
        .count();
    assert_eq!(registered, 1, "only the cluster's own agent registers");
    let printed = rogue.output();
    assert!(!printed.contains("registered with master"), "{printed}");
    rogue.stop(Duration::from_secs(10));
    Ok(())
}

#[test]
fn bad_credentials_or_acl_files_stop_the_master_at_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = dir.path().join("certs");
    for args in [
        vec!["certs", "init", "--dir"],
        vec!["certs", "issue", "master", "m", "--dir"],
    ] {
        let out = output_within(
            Command::new(fleet_bin()).args(&args).arg(&certs),
            Duration::from_secs(30),
        )?;
        assert!(out.status.success(), "fleet {args:?}: {}", text(&out));
    }
    let credentials = dir.path().join("credentials.json");
    std::fs::write(&credentials, r#"{"credentials": [{"principal": "web"}]}"#)?;
    let acls = dir.path().join("acls.json");
    std::fs::write(
        &acls,
        r#"{"update_weights": [{"principals": {"type": "ANY"}}]}"#,
    )?;
    let master = |flag: &str, file: &Path| -> Result<std::process::Output> {
        let addr = format!("127.0.0.1:{}", fleet_tests::free_port());
        output_within(
            Command::new(fleet_bin())
                .args(["master", "--listen", &addr, "--ca"])
                .arg(certs.join("ca.pem"))
                .arg("--cert")
                .arg(certs.join("master-m.pem"))
                .arg("--key")
                .arg(certs.join("master-m-key.pem"))
                .arg(flag)
                .arg(file),
            Duration::from_secs(30),
        )
    };
    let out = master("--credentials", &credentials)?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("invalid credentials file")
            && text(&out).contains("credentials.json")
            && text(&out).contains("'web' needs a string \"secret\""),
        "{}",
        text(&out)
    );
    let out = master("--acls", &acls)?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("invalid ACL file")
            && text(&out).contains("acls.json")
            && text(&out).contains("update_weights[0]: missing \"roles\""),
        "{}",
        text(&out)
    );
    Ok(())
}
