//! The master's network shards: one thread per shard, each a tokio-uring runtime pinned to
//! a core (from cpu 1 on; the core's own thread is not pinned, see `shell::start`), with its own
//! quinn endpoint on the shared UDP port (`udp::bind_shards`). A
//! shard does all of QUIC for the connections the kernel hashed to its socket: handshakes,
//! TLS, packet I/O, stream framing, preamble checks, report validation and the framework
//! gate. What a shard reads goes to the core's thread on lock-free queues (tokio's mpsc: a
//! linked list of blocks written with atomics); what the core decides comes back on each
//! session's own queue, and the session's writer task on its shard writes it.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::driver::{ReportBuffers, ReportFrame, ShellEvent};
use super::quic;
use crate::auth::Security;

/// Connections per shard, for /metrics: how the kernel spread the peers.
#[derive(Debug)]
pub struct ShardStats {
    accepted: Vec<AtomicU64>,
    open: Vec<AtomicU64>,
}

impl ShardStats {
    pub fn new(shards: usize) -> Self {
        ShardStats {
            accepted: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            open: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// A connection finished its handshake on `shard`; the guard counts it open until
    /// dropped.
    pub(super) fn opened(self: &Arc<Self>, shard: usize) -> OpenGuard {
        self.accepted[shard].fetch_add(1, Ordering::Relaxed);
        self.open[shard].fetch_add(1, Ordering::Relaxed);
        OpenGuard {
            stats: self.clone(),
            shard,
        }
    }

    /// Prometheus text for /metrics.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, help: &str, kind: &str, counters: &[AtomicU64]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (shard, value) in counters.iter().enumerate() {
                let value = value.load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {value}");
            }
        };
        family(
            "fleet_master_shard_connections",
            "Agent and framework QUIC sessions open on each network shard.",
            "gauge",
            &self.open,
        );
        family(
            "fleet_master_shard_connections_accepted_total",
            "QUIC connections each network shard has accepted.",
            "counter",
            &self.accepted,
        );
        out
    }
}

pub(super) struct OpenGuard {
    stats: Arc<ShardStats>,
    shard: usize,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.stats.open[self.shard].fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a shard thread needs besides its socket.
pub(super) struct Shard {
    pub index: usize,
    pub socket: std::net::UdpSocket,
    pub config: quinn::ServerConfig,
    pub events: mpsc::UnboundedSender<ShellEvent>,
    pub reports: mpsc::Sender<ReportFrame>,
    pub security: Arc<Security>,
    pub routing: quic::Routing,
    pub stats: Arc<ShardStats>,
    pub buffers: ReportBuffers,
    pub stop: watch::Receiver<bool>,
}

/// A shard thread's body, pinned to the `cpu`-th allowed cpu when given: serves its
/// endpoint until `until` ends (the master stops; on a one-thread master, the core's
/// driver runs as `until`, unpinned), then closes it.
pub(super) fn run(shard: Shard, cpu: Option<usize>, addr: SocketAddr, until: impl AsyncFnOnce()) {
    if let Some(cpu) = cpu {
        pin_to_core(cpu);
    }
    tokio_uring::start(async move {
        let Shard {
            index,
            socket,
            config,
            events,
            reports,
            security,
            routing,
            stats,
            buffers,
            stop,
        } = shard;
        let endpoint = match quic::endpoint(config, socket) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("shard {index}: cannot start the QUIC endpoint on {addr}: {e}");
                return;
            }
        };
        let acceptor = tokio::spawn(quic::accept_loop(
            endpoint.clone(),
            events,
            reports,
            security,
            routing,
            quic::ShardRef {
                index,
                stats,
                buffers,
            },
            stop,
        ));
        until().await;
        endpoint.close(
            quinn::VarInt::from_u32(fleet_proto::frame::close::SHUTDOWN),
            b"master shutting down",
        );
        acceptor.abort();
        // Long enough for the CLOSE frames to go out; a peer that is gone (another master
        // stopped first) would keep a draining connection for 3 PTOs, which back off to
        // tens of seconds, so it is not waited for.
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    });
}

/// Pins the calling thread to the `index`-th CPU this process may run on (wrapping
/// around), so each shard keeps its core's caches. A failure only costs that.
fn pin_to_core(index: usize) {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity and sched_setaffinity read and
    // write at most its size for the calling thread (pid 0).
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(0, size, &mut allowed) != 0 {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &allowed))
            .collect();
        if cpus.is_empty() {
            return;
        }
        let cpu = cpus[index % cpus.len()];
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        if libc::sched_setaffinity(0, size, &one) != 0 {
            tracing::debug!(
                "cannot pin thread {index} to cpu {cpu}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}
