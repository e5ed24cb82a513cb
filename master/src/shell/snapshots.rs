//! The published state, copied out of the core on demand. A copy costs time in proportion
//! to the cluster (every agent, framework and task), on the thread that allocates; copying
//! on a timer whether or not anyone reads took a third of the master's CPU under load. So
//! the driver copies only when a reader asked since the last copy, and at most every
//! [`PUBLISH_EVERY`]; a reader that finds the latest copy older than that waits for the
//! next one (at most a driver tick away). Reads still never block allocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::driver::Published;

/// The least time between two copies of the state.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(200);
/// How long a reader waits for a fresh copy before it takes the one there is.
const WAIT_AT_MOST: Duration = Duration::from_secs(1);

/// The driver's side: publishes when asked.
pub(super) struct Publisher {
    tx: watch::Sender<Arc<Published>>,
    wanted: Arc<AtomicBool>,
    last: Instant,
}

impl Publisher {
    /// Whether a copy is due: a reader asked and the last copy is old enough.
    pub(super) fn due(&self, now: Instant) -> bool {
        now.duration_since(self.last) >= PUBLISH_EVERY && self.wanted.load(Ordering::Acquire)
    }

    pub(super) fn publish(&mut self, now: Instant, published: Published) {
        self.wanted.store(false, Ordering::Release);
        self.last = now;
        let _ = self.tx.send(Arc::new(published));
    }
}

/// The readers' side, cloned into every thread that serves reads.
#[derive(Clone)]
pub struct Snapshots {
    rx: watch::Receiver<Arc<Published>>,
    wanted: Arc<AtomicBool>,
}

pub(super) fn channel(first: Published) -> (Publisher, Snapshots) {
    let (tx, rx) = watch::channel(Arc::new(first));
    let wanted = Arc::new(AtomicBool::new(false));
    (
        Publisher {
            tx,
            wanted: wanted.clone(),
            last: Instant::now() - PUBLISH_EVERY,
        },
        Snapshots { rx, wanted },
    )
}

impl Snapshots {
    fn ask(&self) -> Option<Arc<Published>> {
        self.wanted.store(true, Ordering::Release);
        let current = self.rx.borrow().clone();
        (current.made.elapsed() <= PUBLISH_EVERY).then_some(current)
    }

    /// A copy no older than [`PUBLISH_EVERY`], unless the driver makes none within a second
    /// (it is stopping, or swamped): then the latest there is.
    pub async fn fresh(&self) -> Arc<Published> {
        if let Some(current) = self.ask() {
            return current;
        }
        let mut rx = self.rx.clone();
        rx.mark_unchanged();
        let _ = tokio::time::timeout(WAIT_AT_MOST, rx.changed()).await;
        rx.borrow().clone()
    }

    /// [`fresh`](Self::fresh) for threads without a runtime.
    pub fn fresh_blocking(&self) -> Arc<Published> {
        if let Some(current) = self.ask() {
            return current;
        }
        let before = self.rx.borrow().made;
        let deadline = Instant::now() + WAIT_AT_MOST;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            let latest = self.rx.borrow().clone();
            if latest.made != before {
                return latest;
            }
        }
        self.rx.borrow().clone()
    }
}
