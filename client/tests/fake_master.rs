//! The scheduler SDK and `run` against a scripted master on loopback QUIC: the wire
//! contract (preambles, SUBSCRIBE first, the event stream, refusals) without the real one.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fleet_client::run::{RunOptions, run};
use fleet_client::{ClientError, MasterEndpoint, SchedulerClient};
use fleet_proto::frame::{ALPN_SCHEDULER, MAX_FRAME_LEN, StreamKind};
use fleet_proto::ids::{AgentId, FrameworkId, OfferId, UpdateUuid};
use fleet_proto::messages::scheduler::{Call, Event, FrameworkInfo, Offer, Operation};
use fleet_proto::resources::{Attributes, Resources};
use fleet_proto::stream;
use fleet_proto::task::{Source, TaskState, TaskStatus};
use fleet_proto::tls;

struct Master {
    endpoint: quinn::Endpoint,
    ca_pem: String,
}

fn master() -> Master {
    let ca = tls::new_ca("test").unwrap();
    let cert = tls::issue(&ca, tls::Role::Master, "m1", &[]).unwrap();
    let config = tls::server_config(&ca.cert_pem, &cert, &[ALPN_SCHEDULER]).unwrap();
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(config).unwrap();
    let server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    let endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
    Master {
        endpoint,
        ca_pem: ca.cert_pem,
    }
}

impl Master {
    fn addr(&self) -> SocketAddr {
        self.endpoint.local_addr().unwrap()
    }

    /// Accepts one framework, checks its SUBSCRIBE, returns the connection and streams.
    async fn accept(&self) -> (quinn::Connection, quinn::RecvStream, FrameworkInfo) {
        let conn = self.endpoint.accept().await.unwrap().await.unwrap();
        let (_send, mut recv) = conn.accept_bi().await.unwrap();
        stream::read_preamble(&mut recv, StreamKind::SchedulerControl)
            .await
            .unwrap();
        let call: Call = stream::read_message(&mut recv, MAX_FRAME_LEN)
            .await
            .unwrap()
            .unwrap();
        let Call::Subscribe { framework, .. } = call else {
            panic!("first call was {}", call.name());
        };
        std::mem::forget(_send);
        (conn, recv, framework)
    }
}

async fn next_call(recv: &mut quinn::RecvStream) -> Call {
    stream::read_message(recv, MAX_FRAME_LEN)
        .await
        .unwrap()
        .unwrap()
}

async fn send(events: &mut quinn::SendStream, event: Event) {
    stream::write_message(events, &event).await.unwrap();
}

async fn open_events(conn: &quinn::Connection) -> quinn::SendStream {
    let mut events = conn.open_uni().await.unwrap();
    stream::write_preamble(&mut events, StreamKind::SchedulerEvents)
        .await
        .unwrap();
    send(
        &mut events,
        Event::Subscribed {
            framework_id: FrameworkId::from("F-1"),
            heartbeat_interval_ms: 15_000,
        },
    )
    .await;
    events
}

fn framework() -> FrameworkInfo {
    FrameworkInfo {
        name: "test".into(),
        ..FrameworkInfo::default()
    }
}

#[tokio::test]
async fn a_refusal_reaches_the_framework_verbatim() {
    let m = master();
    let endpoint = MasterEndpoint {
        addr: m.addr(),
        ca_pem: m.ca_pem.clone(),
    };
    let server = async {
        let (conn, _recv, _) = m.accept().await;
        conn.close(
            3u32.into(),
            b"role 'eng' is not allowed for principal 'bob'",
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (result, ()) = tokio::join!(SchedulerClient::connect(endpoint, framework()), server);
    let err = result.unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "master at {} refused the framework: role 'eng' is not allowed for principal 'bob'",
            m.addr()
        )
    );
}

#[tokio::test]
async fn events_flow_and_calls_arrive_in_order() {
    let m = master();
    let endpoint = MasterEndpoint {
        addr: m.addr(),
        ca_pem: m.ca_pem.clone(),
    };
    let server = async {
        let (conn, mut recv, info) = m.accept().await;
        assert_eq!(info.name, "test");
        let mut events = open_events(&conn).await;
        send(&mut events, Event::Heartbeat).await;
        assert_eq!(next_call(&mut recv).await, Call::Revive { roles: vec![] });
        assert_eq!(next_call(&mut recv).await, Call::Teardown);
        conn.close(0u32.into(), b"bye");
    };
    let client = async {
        let (client, mut events) = SchedulerClient::connect(endpoint, framework())
            .await
            .unwrap();
        assert_eq!(client.framework_id().as_str(), "F-1");
        assert_eq!(client.heartbeat_interval(), Some(Duration::from_secs(15)));
        assert!(matches!(events.next().await, Some(Ok(Event::Heartbeat))));
        client.revive(vec![]).await.unwrap();
        client.teardown().await.unwrap();
        assert!(events.next().await.is_none());
    };
    tokio::join!(server, client);
}

#[tokio::test]
async fn run_launches_one_task_and_exits_with_its_code() {
    let m = master();
    let mut opts = RunOptions::new(m.addr(), m.ca_pem.clone(), vec!["exit 3".into()]);
    opts.ports = 2;
    let server = async {
        let (conn, mut recv, _) = m.accept().await;
        let mut events = open_events(&conn).await;
        let offer = Offer {
            id: OfferId { shard: 1, seq: 7 },
            framework_id: FrameworkId::from("F-1"),
            agent_id: AgentId::from("A-1"),
            hostname: "node1".into(),
            role: "*".into(),
            resources: Resources::parse("cpus:2;mem:1024;ports:[31000-32000]").unwrap(),
            attributes: Attributes::new(),
        };
        send(
            &mut events,
            Event::Offers {
                offers: vec![offer],
            },
        )
        .await;
        let Call::Accept { operations, .. } = next_call(&mut recv).await else {
            panic!("expected ACCEPT");
        };
        let Operation::Launch { tasks } = &operations[0] else {
            panic!("expected LAUNCH: {operations:?}");
        };
        let task = tasks[0].clone();
        assert_eq!(
            task.resources,
            Resources::parse("cpus:0.1;mem:128;ports:[31000-31001]").unwrap()
        );
        assert!(task.command.shell);
        assert_eq!(next_call(&mut recv).await.name(), "SUPPRESS");
        let mut status = TaskStatus {
            task_id: task.task_id.clone(),
            agent_id: Some(task.agent_id.clone()),
            state: TaskState::Running,
            reason: None,
            message: String::new(),
            source: Source::Agent,
            uuid: Some(UpdateUuid::random()),
            exit_code: None,
            sandbox: Some("/tmp/sandbox/1".into()),
            timestamp_ms: 0,
        };
        send(
            &mut events,
            Event::Update {
                status: status.clone(),
            },
        )
        .await;
        assert_eq!(next_call(&mut recv).await.name(), "ACKNOWLEDGE");
        status.state = TaskState::Failed;
        status.exit_code = Some(3);
        status.message = "Command exited with status 3".into();
        status.uuid = Some(UpdateUuid::random());
        send(&mut events, Event::Update { status }).await;
        assert_eq!(next_call(&mut recv).await.name(), "ACKNOWLEDGE");
        assert_eq!(next_call(&mut recv).await, Call::Teardown);
        conn.close(0u32.into(), b"torn down");
        task.task_id
    };
    let mut out = Vec::new();
    let (task_id, code) = tokio::join!(server, run(opts, &mut out));
    let text = String::from_utf8(out).unwrap();
    assert_eq!(code.unwrap(), 3, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("subscribed to master {} as framework F-1", m.addr()).as_str(),
            format!(
                "task {task_id} launching on agent A-1 (node1) with \
                 cpus:0.1;mem:128;ports:[31000-31001]"
            )
            .as_str(),
            format!("task {task_id} TASK_RUNNING").as_str(),
            format!("task {task_id} TASK_FAILED (Command exited with status 3)").as_str(),
            "sandbox: /tmp/sandbox/1",
        ]
    );
}

#[tokio::test]
async fn run_gives_up_when_no_offer_fits() {
    let m = master();
    let mut opts = RunOptions::new(m.addr(), m.ca_pem.clone(), vec!["true".into()]);
    opts.offer_timeout = Duration::from_millis(300);
    let server = async {
        let (conn, mut recv, _) = m.accept().await;
        let _events = open_events(&conn).await;
        assert_eq!(next_call(&mut recv).await, Call::Teardown);
        conn.close(0u32.into(), b"torn down");
    };
    let mut out = Vec::new();
    let ((), result) = tokio::join!(server, run(opts, &mut out));
    let err = result.unwrap_err();
    assert!(matches!(err, ClientError::NoFittingOffer { .. }), "{err}");
    assert!(err.to_string().contains("no offers received"), "{err}");
}

#[tokio::test]
async fn a_silent_address_times_out_with_its_name() {
    // Bound but never answering: the handshake cannot complete.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let m = master();
    let started = std::time::Instant::now();
    let err = SchedulerClient::connect_any(
        &[MasterEndpoint {
            addr,
            ca_pem: m.ca_pem.clone(),
        }],
        framework(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(
        err,
        format!("cannot reach any master: cannot reach master at {addr}: timed out after 4 s")
    );
}
