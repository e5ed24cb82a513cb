//! Simulated agents: many QUIC connections from one process, each speaking the agent
//! protocol to a real master (control stream, registration, report stream), with a
//! certificate of the master's CA like a real agent. They run no tasks unless a bench
//! drives them to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fleet_proto::frame::{ALPN_AGENT, MAX_FRAME_LEN, StreamKind};
use fleet_proto::ids::AgentId;
use fleet_proto::messages::agent::{AgentInfo, AgentMessage, MasterMessage, Report, Usage};
use fleet_proto::resources::Resources;
use fleet_proto::stream;
use fleet_proto::tls::{self, CertifiedKey, MASTER_SERVER_NAME};

use crate::BenchError;
use crate::master_process::MasterProcess;
use crate::reports::usage;

/// Simulated agents per client endpoint (one UDP socket, one driver task each): a real
/// agent has a socket of its own, and one driver for tens of thousands of connections
/// falls behind.
pub const AGENTS_PER_ENDPOINT: usize = 1_000;
/// Client endpoints at least (fewer only for fewer agents). The master's network shards
/// share one UDP port and the kernel picks a shard by the sender's address and port: all
/// connections from one socket reach one shard, where real agents, each with a socket of
/// its own, spread over all of them.
pub const MIN_ENDPOINTS: usize = 16;
/// Registrations in flight at once.
const CONNECTING: usize = 256;
/// Tries per agent before a registration failure ends the bench.
const REGISTER_ATTEMPTS: usize = 3;

/// What [`register_many`] leaves: the client endpoints (close them last) and how many
/// registrations had to be tried again.
pub struct Registered {
    pub endpoints: Vec<quinn::Endpoint>,
    pub retries: u64,
}

fn sim_err(what: &str) -> impl FnOnce(String) -> BenchError + '_ {
    move |reason| BenchError::Sim {
        what: what.to_owned(),
        reason,
    }
}

/// The load generator's runtime: two workers, as many as this machine class has cores.
pub fn load_runtime() -> Result<tokio::runtime::Runtime, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-load")
        .enable_all()
        .build()
        .map_err(|source| BenchError::Io {
            what: "the load generator's runtime".into(),
            source,
        })
}

/// A client endpoint (one UDP socket) that many simulated peers share. With `identity` it
/// presents that certificate, as agents must. Call inside a tokio runtime.
pub fn endpoint(
    ca_pem: &str,
    identity: Option<&CertifiedKey>,
    alpn: &[u8],
) -> Result<quinn::Endpoint, BenchError> {
    let tls = tls::client_config(ca_pem, identity, alpn)
        .map_err(|e| sim_err("TLS set-up")(e.to_string()))?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| sim_err("TLS set-up")(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // Reports flow at least once a second; no keep-alive traffic of our own on top.
    transport.keep_alive_interval(None);
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(30))
            .map_err(|e| sim_err("transport")(e.to_string()))?,
    ));
    client.transport_config(Arc::new(transport));
    let bind: SocketAddr = ([127, 0, 0, 1], 0).into();
    let io = |source| BenchError::Io {
        what: format!("a UDP socket on {bind}"),
        source,
    };
    // Thousands of peers on one socket: give it the master's buffers, or handshakes are
    // lost in bursts and retried only after doubling timeouts.
    let socket = std::net::UdpSocket::bind(bind).map_err(io)?;
    fleet_master::shell::grow_buffers(&socket, fleet_master::shell::QUIC_SOCKET_BUFFER);
    let runtime = quinn::default_runtime()
        .ok_or_else(|| sim_err("transport")("no tokio runtime for quinn".into()))?;
    let mut endpoint =
        quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
            .map_err(io)?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

/// An endpoint for simulated agents, with the agents' certificate.
pub fn agent_endpoint(
    ca_pem: &str,
    identity: &CertifiedKey,
) -> Result<quinn::Endpoint, BenchError> {
    endpoint(ca_pem, Some(identity), ALPN_AGENT)
}

/// The report simulated agent `index`, registered as `id`, sends: `tasks` busy tasks.
pub fn agent_report(index: usize, id: &AgentId, seq: u64, tasks: usize) -> Report {
    let mut report = crate::reports::sample_report(tasks);
    report.agent_id = id.clone();
    report.seq = seq;
    report.total = Usage {
        cpu_time_ns: usage(index as u64).cpu_time_ns,
        ..report.total
    };
    report
}

/// One registered simulated agent.
pub struct SimAgent {
    pub index: usize,
    pub id: AgentId,
    pub conn: quinn::Connection,
    /// The control stream, after registration.
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    /// How often the master asked for reports.
    pub report_interval: Duration,
}

/// The info simulated agent `index` registers with.
pub fn agent_info(index: usize, resources: Resources) -> AgentInfo {
    AgentInfo {
        hostname: format!("sim-agent-{index:06}"),
        http_address: String::new(),
        resources,
        attributes: Default::default(),
    }
}

/// Connects to `master` and registers as a new agent with `resources`.
pub async fn register(
    endpoint: &quinn::Endpoint,
    master: SocketAddr,
    index: usize,
    resources: Resources,
) -> Result<SimAgent, BenchError> {
    let what = format!("agent {index}");
    let connecting = endpoint
        .connect(master, MASTER_SERVER_NAME)
        .map_err(|e| sim_err(&what)(format!("cannot connect to {master}: {e}")))?;
    let conn = tokio::time::timeout(Duration::from_secs(30), connecting)
        .await
        .map_err(|_| sim_err(&what)(format!("no QUIC handshake with {master} in 30 s")))?
        .map_err(|e| sim_err(&what)(format!("QUIC handshake with {master}: {e}")))?;
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| sim_err(&what)(format!("control stream: {e}")))?;
    let register = AgentMessage::Register {
        agent_id: None,
        info: agent_info(index, resources),
        tasks: Vec::new(),
    };
    let stream_err = |e: fleet_proto::stream::StreamError| {
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            reason.push_str(&format!(": {s}"));
            source = s.source();
        }
        sim_err(&what)(reason)
    };
    stream::write_preamble(&mut send, StreamKind::AgentControl)
        .await
        .map_err(stream_err)?;
    stream::write_message(&mut send, &register)
        .await
        .map_err(stream_err)?;
    stream::read_preamble(&mut recv, StreamKind::AgentControl)
        .await
        .map_err(stream_err)?;
    let reply = tokio::time::timeout(
        Duration::from_secs(30),
        stream::read_message::<_, MasterMessage>(&mut recv, MAX_FRAME_LEN),
    )
    .await
    .map_err(|_| sim_err(&what)("no answer to Register in 30 s".into()))?
    .map_err(stream_err)?;
    match reply {
        Some(MasterMessage::Registered {
            agent_id,
            report_interval_ms,
        }) => Ok(SimAgent {
            index,
            id: agent_id,
            conn,
            send,
            recv,
            report_interval: Duration::from_millis(report_interval_ms.max(1)),
        }),
        other => Err(sim_err(&what)(format!(
            "expected Registered, got {other:?}"
        ))),
    }
}

impl SimAgent {
    /// Opens the report stream (preamble written).
    pub async fn report_stream(&self) -> Result<quinn::SendStream, BenchError> {
        let what = format!("agent {}", self.index);
        let mut s = self
            .conn
            .open_uni()
            .await
            .map_err(|e| sim_err(&what)(format!("report stream: {e}")))?;
        stream::write_preamble(&mut s, StreamKind::AgentReport)
            .await
            .map_err(|e| sim_err(&what)(e.to_string()))?;
        Ok(s)
    }

    /// A report of `tasks` busy tasks for this agent, as a real agent would send.
    pub fn report(&self, seq: u64, tasks: usize) -> Report {
        agent_report(self.index, &self.id, seq, tasks)
    }

    pub fn close(&self) {
        self.conn.close(quinn::VarInt::from_u32(0), b"bench done");
    }
}

/// Registers `n` agents with `master`, each offering `resources`, `CONNECTING` at a time,
/// `AGENTS_PER_ENDPOINT` to a client endpoint (at least `MIN_ENDPOINTS` of them). `each` gets every agent as it registers,
/// before the rest do, so that registering many agents slowly does not leave the first
/// ones silent past the master's agent timeout. A failed registration is tried again
/// (`REGISTER_ATTEMPTS` in all).
pub async fn register_many(
    master: &MasterProcess,
    n: usize,
    resources: Resources,
    mut each: impl FnMut(SimAgent) -> Result<(), BenchError>,
) -> Result<Registered, BenchError> {
    use futures::StreamExt;
    let count = n
        .div_ceil(AGENTS_PER_ENDPOINT)
        .max(MIN_ENDPOINTS.min(n))
        .max(1);
    let endpoints = (0..count)
        .map(|_| agent_endpoint(master.ca_pem(), master.agent_identity()))
        .collect::<Result<Vec<_>, _>>()?;
    let addr = master.quic_addr();
    let retries = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut pending = futures::stream::iter((0..n).map(|i| {
        let endpoint = endpoints[i % endpoints.len()].clone();
        let resources = resources.clone();
        let retries = retries.clone();
        async move {
            // A real agent whose registration fails tries again; so does this one, twice.
            let mut attempt = 0;
            loop {
                match register(&endpoint, addr, i, resources.clone()).await {
                    Ok(agent) => return Ok(agent),
                    Err(e) if attempt == REGISTER_ATTEMPTS - 1 => return Err(e),
                    Err(_) => {
                        attempt += 1;
                        retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    }))
    .buffer_unordered(CONNECTING);
    while let Some(agent) = pending.next().await {
        each(agent?)?;
    }
    drop(pending);
    Ok(Registered {
        endpoints,
        retries: retries.load(std::sync::atomic::Ordering::Relaxed),
    })
}
