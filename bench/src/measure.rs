//! Timing without criterion: per-operation times collected in an HDR histogram, so a quick
//! run can print p50 and p99 rather than a single mean.
//!
//! Operations of a few nanoseconds cannot be timed one by one (reading the clock costs more
//! than they do), so [`time_op`] times batches sized to last at least a given time and
//! records each batch's time per operation. Values are kept in picoseconds.

use std::hint::black_box;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::BenchError;

/// Largest value a histogram keeps: 1,000 s in picoseconds.
const MAX_PS: u64 = 1_000_000_000_000_000;

/// Percentiles of one measured operation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stat {
    pub p50_ns: f64,
    pub p99_ns: f64,
    pub mean_ns: f64,
    /// Number of recorded values (batches, or single operations).
    pub samples: u64,
    /// Operations per recorded value.
    pub batch: u64,
}

/// Collects per-operation times.
#[derive(Debug)]
pub struct Recorder {
    histogram: Histogram<u64>,
    batch: u64,
}

impl Recorder {
    pub fn new() -> Result<Self, BenchError> {
        let histogram = Histogram::new_with_bounds(1, MAX_PS, 3)
            .map_err(|e| BenchError::Histogram(e.to_string()))?;
        Ok(Self {
            histogram,
            batch: 1,
        })
    }

    /// Records `elapsed` for a batch of `ops` operations, as the time of one of them.
    pub fn record(&mut self, elapsed: Duration, ops: u64) {
        let ops = ops.max(1);
        self.batch = ops;
        let ps = elapsed.as_nanos().saturating_mul(1_000) / u128::from(ops);
        self.histogram
            .saturating_record(u64::try_from(ps).unwrap_or(u64::MAX).max(1));
    }

    pub fn stat(&self) -> Stat {
        let ns = |ps: u64| ps as f64 / 1_000.0;
        Stat {
            p50_ns: ns(self.histogram.value_at_quantile(0.50)),
            p99_ns: ns(self.histogram.value_at_quantile(0.99)),
            mean_ns: self.histogram.mean() / 1_000.0,
            samples: self.histogram.len(),
            batch: self.batch,
        }
    }
}

/// The number of calls of `op` that takes at least `min_batch`, doubling from 1 (which also
/// warms caches and branch predictors).
pub fn calibrate<R>(min_batch: Duration, op: &mut impl FnMut() -> R) -> u64 {
    let mut batch: u64 = 1;
    loop {
        let start = Instant::now();
        for _ in 0..batch {
            black_box(op());
        }
        if start.elapsed() >= min_batch || batch >= 1 << 30 {
            return batch;
        }
        batch *= 2;
    }
}

/// Times `samples` batches of `op`, each lasting at least `min_batch`.
pub fn time_op<R>(
    samples: usize,
    min_batch: Duration,
    mut op: impl FnMut() -> R,
) -> Result<Stat, BenchError> {
    let batch = calibrate(min_batch, &mut op);
    let mut recorder = Recorder::new()?;
    for _ in 0..samples {
        let start = Instant::now();
        for _ in 0..batch {
            black_box(op());
        }
        recorder.record(start.elapsed(), batch);
    }
    Ok(recorder.stat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_recorded_values() {
        let mut recorder = Recorder::new().unwrap();
        for us in 1..=100u64 {
            recorder.record(Duration::from_micros(us), 1);
        }
        let stat = recorder.stat();
        assert!((stat.p50_ns - 50_000.0).abs() < 100.0, "{stat:?}");
        assert!((stat.p99_ns - 99_000.0).abs() < 100.0, "{stat:?}");
        assert_eq!(stat.samples, 100);
    }

    #[test]
    fn batches_report_time_per_operation() {
        let mut recorder = Recorder::new().unwrap();
        recorder.record(Duration::from_micros(10), 1_000);
        assert!((recorder.stat().p50_ns - 10.0).abs() < 0.1);
    }
}
