//! What the core thread does while this master does not lead: no core runs; a
//! connection that reached the driver anyway (accepted just before leadership moved) is
//! closed naming the leader, operator changes are refused the same way, reports are
//! dropped, and readers get an empty state (HTTP sends them to the leader first).

use std::net::SocketAddr;
use std::time::Instant;

use fleet_proto::frame::close;
use tokio::sync::{mpsc, watch};

use super::driver::{Published, ReportFrame, ShellEvent};
use super::leadership::Leadership;
use super::snapshots::Publisher;
use crate::core::MasterState;

/// Waits, doing the above, until this master serves or stops.
#[allow(clippy::too_many_arguments)]
pub(super) async fn wait(
    events: &mut mpsc::UnboundedReceiver<ShellEvent>,
    reports: &mut mpsc::Receiver<ReportFrame>,
    published: &mut Publisher,
    stop: &mut watch::Receiver<bool>,
    leadership: &mut watch::Receiver<Leadership>,
    idle: &MasterState,
    quic: SocketAddr,
    http: SocketAddr,
) {
    let mut tick = tokio::time::interval(super::PUBLISH_EVERY);
    loop {
        if leadership.borrow().serving || *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = stop.changed() => return,
            changed = leadership.changed() => if changed.is_err() { return },
            ev = events.recv() => match ev {
                None => return,
                Some(ShellEvent::Open { connection, .. }) => {
                    let reason = leadership.borrow().refusal();
                    connection.close(quinn::VarInt::from_u32(close::NOT_LEADER), reason.as_bytes());
                }
                Some(ShellEvent::Operator { reply, .. }) => {
                    let _ = reply.send(Err(leadership.borrow().refusal()));
                }
                Some(_) => {}
            },
            frame = reports.recv() => if frame.is_none() { return },
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        if published.due(now) {
            published.publish(now, Published::new(idle.clone(), quic, http));
        }
    }
}
