//! The published state, copied out of the core on demand. A copy costs time in proportion
//! to the cluster (every agent, framework and task), on the thread that allocates; copying
//! on a timer whether or not anyone reads took a third of the master's CPU under load. So
//! the driver copies only when a reader asked since the last copy, and at most every
//! [`PUBLISH_EVERY`]; a reader that finds the latest copy older than that waits for the
//! next one (at most a driver tick away). Reads still never block allocation. After an
//! operator's change the driver marks the copy stale: the next read waits for a copy
//! that shows the change (read-your-writes for the operator API).

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
    stale: Arc<AtomicBool>,
    last: Instant,
}

impl Publisher {
    /// Whether a copy is due: a reader asked and the last copy is old enough, or stale.
    pub(super) fn due(&self, now: Instant) -> bool {
        self.wanted.load(Ordering::Acquire)
            && (now.duration_since(self.last) >= PUBLISH_EVERY
                || self.stale.load(Ordering::Acquire))
    }

    /// The state changed by an operator's call: readers wait for the next copy.
    pub(super) fn stale(&self) {
        self.stale.store(true, Ordering::Release);
    }

    pub(super) fn publish(&mut self, now: Instant, published: Published) {
        self.wanted.store(false, Ordering::Release);
        self.last = now;
        let _ = self.tx.send(Arc::new(published));
        self.stale.store(false, Ordering::Release);
    }
}

/// The readers' side, cloned into every thread that serves reads.
#[derive(Clone)]
pub struct Snapshots {
    rx: watch::Receiver<Arc<Published>>,
    wanted: Arc<AtomicBool>,
    stale: Arc<AtomicBool>,
}

pub(super) fn channel(first: Published) -> (Publisher, Snapshots) {
    let (tx, rx) = watch::channel(Arc::new(first));
    let wanted = Arc::new(AtomicBool::new(false));
    // The first copy is taken before the master serves anyone: the first reader waits for
    // one that shows what happened since (an agent registering at once, as in `fleet dev`).
    let stale = Arc::new(AtomicBool::new(true));
    (
        Publisher {
            tx,
            wanted: wanted.clone(),
            stale: stale.clone(),
            last: Instant::now() - PUBLISH_EVERY,
        },
        Snapshots { rx, wanted, stale },
    )
}

impl Snapshots {
    fn ask(&self) -> Option<Arc<Published>> {
        self.wanted.store(true, Ordering::Release);
        let current = self.rx.borrow().clone();
        (current.made.elapsed() <= PUBLISH_EVERY && !self.stale.load(Ordering::Acquire))
            .then_some(current)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn published() -> Published {
        let master = crate::core::Master::new(
            crate::core::MasterConfig::default(),
            Box::new(crate::registry::InMemoryRegistry::default()),
        );
        let addr = "127.0.0.1:5050".parse().unwrap();
        Published::new(master.state(), addr, addr)
    }

    #[test]
    fn nothing_is_copied_until_a_reader_asks_and_then_at_most_every_interval() {
        let (mut publisher, snapshots) = channel(published());
        let start = Instant::now();
        assert!(!publisher.due(start), "nobody asked");
        // The first copy predates serving: a reader asks for the next one at once (with
        // no driver here, it gets the first after waiting its second).
        assert!(Arc::ptr_eq(
            &snapshots.fresh_blocking(),
            &snapshots.rx.borrow().clone()
        ));
        assert!(
            publisher.due(start),
            "a copy is due at once after the first"
        );
        publisher.publish(start, published());
        assert!(!publisher.due(start + PUBLISH_EVERY), "nobody asked since");
        snapshots.wanted.store(true, Ordering::Release);
        assert!(!publisher.due(start + PUBLISH_EVERY / 2), "too soon");
        assert!(publisher.due(start + PUBLISH_EVERY));
    }

    #[test]
    fn after_a_change_a_reader_waits_for_a_copy_that_shows_it() {
        let (mut publisher, snapshots) = channel(published());
        let start = Instant::now();
        publisher.publish(start, published());
        let before = snapshots.rx.borrow().made;
        publisher.stale();
        let reader = std::thread::spawn(move || snapshots.fresh_blocking().made);
        // The copy is recent, but stale: the reader asks, and a copy is due at once.
        let asked = Instant::now() + Duration::from_secs(1);
        while !publisher.due(start) && Instant::now() < asked {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            publisher.due(start),
            "a stale copy makes the next one due at once"
        );
        publisher.publish(start, published());
        assert!(!publisher.stale.load(Ordering::Acquire));
        assert_ne!(
            reader.join().unwrap(),
            before,
            "the reader got the stale copy"
        );
    }

    #[test]
    fn a_reader_of_a_stale_copy_waits_for_the_next_one() {
        let (publisher, snapshots) = channel(published());
        std::thread::sleep(PUBLISH_EVERY + Duration::from_millis(20));
        let stale = snapshots.rx.borrow().made;
        let driver = std::thread::spawn(move || {
            let mut publisher = publisher;
            // The driver notices the request on its next pass.
            while !publisher.due(Instant::now()) {
                std::thread::sleep(Duration::from_millis(5));
            }
            publisher.publish(Instant::now(), published());
            publisher
        });
        let read = snapshots.fresh_blocking();
        assert!(read.made > stale, "the reader got the stale copy");
        assert!(read.made.elapsed() < PUBLISH_EVERY);
        drop(driver.join().unwrap());
    }
}
