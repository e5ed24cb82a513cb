//! The crash test: a child process (this test binary, re-run with an environment
//! variable) appends, truncates and purges continuously and prints what the WAL
//! acknowledged; the parent kills it with SIGKILL at a random moment, reopens the WAL,
//! and checks that every acknowledged entry is there with its content, 200 times over
//! the same directory.
#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions: a failed unwrap is a failed test

mod common;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{entries, payload, small_segments};
use fleet_wal::{Durable, Entry, Wal, WalConfig};

const CHILD_DIR: &str = "FLEET_WAL_CRASH_CHILD_DIR";
const CHILD_SEED: &str = "FLEET_WAL_CRASH_CHILD_SEED";
const ITERATIONS: u32 = 200;

fn config() -> WalConfig {
    small_segments(64 << 10)
}

/// xorshift64*: no dependency, and a printed seed reproduces a failing run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The child's body: the crash test started again as the writer it kills.
fn crash_child(dir: String) {
    let seed = std::env::var(CHILD_SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    run_child(Path::new(&dir), seed);
}

fn run_child(dir: &Path, seed: u64) {
    let mut rng = Rng(seed | 1);
    let mut out = std::io::stdout().lock();
    let mut say = |line: String| {
        // The parent is gone when stdout is: stop.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            std::process::exit(0);
        }
    };
    let (wal, _) = Wal::open(dir, config()).expect("child opens the WAL");
    let mut next = wal.next_index().unwrap_or(1);
    let mut acked = next - 1;
    say("READY".to_string());
    let mut in_flight: VecDeque<Durable<u64>> = VecDeque::new();
    // A bound in case the parent never kills: the test must not fill the disk.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut batches = 0u64;
    while Instant::now() < deadline {
        let n = 1 + rng.below(16);
        in_flight.push_back(wal.append(entries(next..next + n)).expect("append"));
        next += n;
        batches += 1;
        if in_flight.len() >= 4
            && let Some(durable) = in_flight.pop_front()
        {
            acked = durable.wait().expect("durable");
            say(format!("ACK {acked}"));
        }
        if batches.is_multiple_of(40) {
            // Rewrite the last few entries, as a follower does on a conflict.
            while let Some(durable) = in_flight.pop_front() {
                acked = durable.wait().expect("durable");
                say(format!("ACK {acked}"));
            }
            let from = next - 1 - rng.below(30).min(next - 2);
            say(format!("TRUNC {from}"));
            wal.truncate_from(from)
                .expect("truncate")
                .wait()
                .expect("truncate durable");
            say(format!("TRUNCATED {from}"));
            next = from;
            acked = from - 1;
        }
        if batches.is_multiple_of(97) && acked > 3000 {
            let upto = acked - 2000;
            say(format!("PURGE {upto}"));
            drop(wal.purge_upto(upto).expect("purge"));
        }
    }
}

/// What the parent learned from the child's output.
#[derive(Debug, Default)]
struct Acknowledged {
    /// Every index up to this one must survive.
    last: u64,
    /// A truncation the child started but did not see finish: entries from it on may
    /// or may not be there.
    pending_truncate: Option<u64>,
    purged: u64,
    acks: u32,
}

impl Acknowledged {
    fn line(&mut self, line: &str) {
        let (word, number) = line.split_once(' ').unwrap_or((line, ""));
        let Ok(n) = number.parse::<u64>() else { return };
        match word {
            "ACK" => {
                self.last = self.last.max(n);
                self.acks += 1;
            }
            "TRUNC" => self.pending_truncate = Some(n),
            "TRUNCATED" => {
                self.last = n - 1;
                self.pending_truncate = None;
            }
            "PURGE" => self.purged = self.purged.max(n),
            _ => {}
        }
    }

    fn must_hold_up_to(&self) -> u64 {
        match self.pending_truncate {
            Some(from) => self.last.min(from - 1),
            None => self.last,
        }
    }
}

#[test]
fn crash_recovery_never_loses_an_acknowledged_entry() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        crash_child(dir);
        return;
    }
    let started = Instant::now();
    let seed = std::env::var("FLEET_WAL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.map_or(1, |d| d.as_nanos() as u64) ^ u64::from(std::process::id())
        });
    println!("crash test seed {seed} (set FLEET_WAL_CRASH_SEED to repeat)");
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut known = Acknowledged::default();
    let (mut torn, mut killed_after_acks) = (0, 0);

    for iteration in 0..ITERATIONS {
        let mut child = Command::new(&exe)
            .args([
                "crash_recovery_never_loses_an_acknowledged_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_SEED, rng.next().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "child exited before READY"
            );
            // libtest's "test crash_recovery_... " shares the line.
            if line.trim_end().ends_with("READY") {
                break;
            }
        }
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut line = String::new();
            while stdout.read_line(&mut line).unwrap_or(0) > 0 {
                // A line the kill cut short says nothing for sure.
                if line.ends_with('\n') {
                    lines.push(line.trim_end().to_string());
                }
                line.clear();
            }
            lines
        });
        std::thread::sleep(Duration::from_micros(1_000 + rng.below(49_000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acks_before = known.acks;
        for line in reader.join().unwrap() {
            known.line(&line);
        }
        killed_after_acks += u32::from(known.acks > acks_before);

        let (wal, recovery) = Wal::open(dir.path(), config())
            .unwrap_or_else(|e| panic!("iteration {iteration}: recovery failed: {e}"));
        torn += u32::from(recovery.torn_tail.is_some());
        let must = known.must_hold_up_to();
        let last = wal.last_index().unwrap_or(0);
        assert!(
            last >= must,
            "iteration {iteration}: acknowledged up to {must}, recovered up to {last}"
        );
        let first = wal.first_index().unwrap_or(1);
        assert!(
            first <= known.purged + 1,
            "iteration {iteration}: first index {first} past purge point {}",
            known.purged
        );
        let held = wal.read(first..=last).unwrap();
        assert_eq!(
            held.len() as u64,
            last + 1 - first,
            "iteration {iteration}: a hole in {first}..={last}"
        );
        for entry in &held {
            assert_eq!(
                entry.payload,
                payload(entry.index),
                "iteration {iteration}: entry {}",
                entry.index
            );
        }
        // Still appendable; what is on disk now is the new floor.
        let next = last + 1;
        wal.append(vec![Entry::new(next, payload(next))])
            .unwrap()
            .wait()
            .unwrap();
        wal.close().unwrap();
        known.last = next;
        known.pending_truncate = None;
    }
    let elapsed = started.elapsed();
    println!(
        "crash test: {ITERATIONS} kills, {killed_after_acks} after at least one ack, {torn} torn tails cut, \
         last index {}, {:.1} s",
        known.last,
        elapsed.as_secs_f64()
    );
    assert!(
        killed_after_acks >= ITERATIONS / 2,
        "only {killed_after_acks} of {ITERATIONS} children were killed after an acknowledgement"
    );
}
