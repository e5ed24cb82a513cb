//! The quick measurement behind `fleet bench` and the `ratios` example: the wire format
//! against a JSON encoding of the same report, and allocation cycles of larger clusters
//! against the 1,000-agent one, all timed in the same run and printed as ratios with
//! p50/p99 from an HDR histogram.

use std::fmt;
use std::hint::black_box;
use std::time::{Duration, Instant};

use fleet_proto::frame::{self, FrameDecoder, MAX_FRAME_LEN};
use fleet_proto::messages::agent::{ArchivedReport, Report};
use rkyv::util::AlignedVec;

use crate::BenchError;
use crate::measure::{Recorder, Stat, time_op};
use crate::reports::{report_stream, sample_report};
use crate::sim::{ClusterSpec, SimCluster, Workload};

/// What to measure and for how long.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tasks in the sample report.
    pub report_tasks: usize,
    /// Batches timed per wire operation.
    pub frame_samples: usize,
    /// Shortest batch of a wire operation.
    pub min_batch: Duration,
    /// Frames in the stream fed to the decoder, and the chunk size it arrives in.
    pub stream_frames: usize,
    pub stream_chunk: usize,
    /// Cluster sizes; the first is the baseline of the others.
    pub scales: Vec<ClusterSpec>,
    pub workloads: Vec<Workload>,
    /// Cycles timed per scale and workload, at most; fewer (but at least 5) once
    /// `cycle_budget` is spent.
    pub cycles: usize,
    pub cycle_budget: Duration,
}

impl Options {
    /// About half a minute on a 2-core machine.
    pub fn quick() -> Self {
        Self {
            report_tasks: 50,
            frame_samples: 200,
            min_batch: Duration::from_micros(200),
            stream_frames: 64,
            stream_chunk: 1200,
            scales: vec![
                ClusterSpec::new(1_000, 10, 2),
                ClusterSpec::new(1_000, 100, 10),
                ClusterSpec::new(10_000, 100, 10),
            ],
            workloads: vec![Workload::DeclineAll, Workload::AcceptPart],
            cycles: 50,
            cycle_budget: Duration::from_secs(4),
        }
    }
}

/// One measured figure and how it compares with its baseline.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub name: String,
    pub stat: Stat,
    /// The figure the ratio is taken against (a row of the same table).
    pub baseline: String,
    /// This row's p50 over the baseline's p50 (per item where `per_item` is set).
    pub ratio: f64,
    /// Items per operation (agents per cycle, frames per stream) and their p50 time.
    pub per_item: Option<(u64, f64)>,
    pub note: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Table {
    pub title: String,
    pub rows: Vec<Row>,
}

/// Everything one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Results {
    pub tables: Vec<Table>,
    pub elapsed_s: f64,
}

/// Runs the wire and allocator measurements.
pub fn run(options: &Options) -> Result<Results, BenchError> {
    let start = Instant::now();
    let tables = vec![wire(options)?, allocator(options)?];
    Ok(Results {
        tables,
        elapsed_s: start.elapsed().as_secs_f64(),
    })
}

fn row(name: &str, stat: Stat, baseline: &Stat, baseline_name: &str, note: String) -> Row {
    Row {
        name: name.to_owned(),
        ratio: stat.p50_ns / baseline.p50_ns,
        stat,
        baseline: baseline_name.to_owned(),
        per_item: None,
        note,
    }
}

/// Report encoding and reading: the rkyv frame against serde_json of the same report.
pub fn wire(options: &Options) -> Result<Table, BenchError> {
    let report = sample_report(options.report_tasks);
    let encoded = frame::encode(&report)?;
    let mut body = AlignedVec::<16>::new();
    body.extend_from_slice(encoded.get(4..).unwrap_or_default());
    let json = serde_json::to_vec(&report)?;
    // Check once, outside the timed loops, that every path reads the same report.
    let back: Report = frame::decode(&body)?;
    let from_json: Report = serde_json::from_slice(&json)?;
    if back != report || from_json != report {
        return Err(BenchError::Option(
            "a wire round trip changed the report".into(),
        ));
    }
    let (n, min) = (options.frame_samples, options.min_batch);
    let sizes = format!("frame {} B, JSON {} B", encoded.len(), json.len());

    let json_encode = time_op(n, min, || {
        serde_json::to_vec(black_box(&report)).map(|v| v.len())
    })?;
    let frame_encode = time_op(n, min, || {
        frame::encode(black_box(&report)).map(|v| v.len())
    })?;
    let json_decode = time_op(n, min, || {
        serde_json::from_slice::<Report>(black_box(&json)).map(|r| r.tasks.len())
    })?;
    let access = time_op(n, min, || {
        frame::access::<Report>(black_box(&body)).map(|r| r.seq)
    })?;
    let access_sum = time_op(n, min, || {
        frame::access::<Report>(black_box(&body)).map(sum_cpu)
    })?;
    let unchecked = time_op(n, min, || {
        // SAFETY: `body` holds an archive written by `rkyv::to_bytes` for `Report` in this
        // process and validated by `frame::decode` above; it is not modified afterwards.
        let r = unsafe { rkyv::access_unchecked::<ArchivedReport>(black_box(&body)) };
        r.seq.to_native()
    })?;
    let decode = time_op(n, min, || {
        frame::decode::<Report>(black_box(&body)).map(|r| r.tasks.len())
    })?;

    let stream = report_stream(options.stream_frames, options.report_tasks)?;
    let chunk = options.stream_chunk.max(1);
    let copy = time_op(n / 4 + 1, min, || {
        let mut sink: Vec<u8> = Vec::new();
        for part in stream.chunks(chunk) {
            sink.extend_from_slice(black_box(part));
        }
        sink.len()
    })?;
    let decoder = time_op(n / 4 + 1, min, || decode_stream(&stream, chunk))?;

    let frames = options.stream_frames as u64;
    let per_frame = |stat: &Stat| stat.p50_ns / frames as f64;
    let mut copy_row = row(
        "stream: copy the bytes (baseline)",
        copy.clone(),
        &copy,
        "itself",
        String::new(),
    );
    copy_row.per_item = Some((frames, per_frame(&copy)));
    let mut decoder_row = row(
        "stream: FrameDecoder + access",
        decoder.clone(),
        &copy,
        "stream copy",
        format!("{frames} frames in {chunk} B chunks"),
    );
    decoder_row.per_item = Some((frames, per_frame(&decoder)));

    Ok(Table {
        title: format!("Wire: one agent report with {} tasks", options.report_tasks),
        rows: vec![
            row(
                "JSON encode (baseline)",
                json_encode.clone(),
                &json_encode,
                "itself",
                sizes,
            ),
            row(
                "frame::encode",
                frame_encode,
                &json_encode,
                "JSON encode",
                String::new(),
            ),
            row(
                "JSON decode (baseline)",
                json_decode.clone(),
                &json_decode,
                "itself",
                String::new(),
            ),
            row(
                "frame::access (validated)",
                access,
                &json_decode,
                "JSON decode",
                String::new(),
            ),
            row(
                "frame::access + sum cpu of all tasks",
                access_sum,
                &json_decode,
                "JSON decode",
                String::new(),
            ),
            row(
                "rkyv::access_unchecked",
                unchecked,
                &json_decode,
                "JSON decode",
                String::new(),
            ),
            row(
                "frame::decode (validate + deserialize)",
                decode,
                &json_decode,
                "JSON decode",
                String::new(),
            ),
            copy_row,
            decoder_row,
        ],
    })
}

/// Reads a report in place, as the master does with each report it receives.
pub fn sum_cpu(report: &ArchivedReport) -> u64 {
    report
        .tasks
        .iter()
        .map(|t| t.usage.cpu_time_ns.to_native())
        .fold(0u64, u64::wrapping_add)
}

/// Pushes `stream` into a decoder `chunk` bytes at a time and reads every frame in place.
pub fn decode_stream(stream: &[u8], chunk: usize) -> Result<u64, BenchError> {
    let mut decoder = FrameDecoder::new(MAX_FRAME_LEN);
    let mut sum = 0u64;
    for part in stream.chunks(chunk) {
        decoder.push(black_box(part));
        while let Some(body) = decoder.next_frame()? {
            sum = sum.wrapping_add(frame::access::<Report>(&body)?.seq.to_native());
        }
    }
    decoder.finish()?;
    Ok(sum)
}

/// Times full cycles of one prepared cluster; only `allocate` is on the clock.
pub fn time_cycles(
    cluster: &mut SimCluster,
    workload: Workload,
    cycles: usize,
    budget: Duration,
) -> Result<Stat, BenchError> {
    let mut recorder = Recorder::new()?;
    let start = Instant::now();
    for i in 0..cycles.max(1) {
        if i >= 5 && start.elapsed() > budget {
            break;
        }
        let t = Instant::now();
        let offers = cluster.cycle();
        recorder.record(t.elapsed(), 1);
        cluster.answer(offers, workload)?;
    }
    Ok(recorder.stat())
}

/// Allocation cycles per workload and scale; the first scale is the baseline.
pub fn allocator(options: &Options) -> Result<Table, BenchError> {
    let mut rows = Vec::new();
    for &workload in &options.workloads {
        let mut base: Option<(String, f64)> = None;
        for &spec in &options.scales {
            let setup = Instant::now();
            let mut cluster = SimCluster::prepared(spec, workload)?;
            let setup = setup.elapsed();
            let stat = time_cycles(&mut cluster, workload, options.cycles, options.cycle_budget)?;
            let per_agent = stat.p50_ns / spec.agents.max(1) as f64;
            let name = format!("{} {spec} ({} roles)", workload.name(), spec.roles);
            let (base_name, base_per_agent) = base
                .get_or_insert_with(|| (name.clone(), per_agent))
                .clone();
            let baseline = if base_name == name {
                "itself".to_owned()
            } else {
                base_name
            };
            rows.push(Row {
                name,
                ratio: per_agent / base_per_agent,
                stat,
                baseline,
                per_item: Some((spec.agents as u64, per_agent)),
                note: format!("setup {:.1} s", setup.as_secs_f64()),
            });
        }
    }
    Ok(Table {
        title: "Allocator: one full cycle (ratio = time per agent / baseline's)".to_owned(),
        rows,
    })
}

/// A duration in the unit that suits it.
pub fn human(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else if ns < 1_000_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else {
        format!("{:.2} s", ns / 1_000_000_000.0)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "### {}\n", self.title)?;
        writeln!(
            f,
            "| figure | p50 | p99 | per item (p50) | ratio | against | note |"
        )?;
        writeln!(f, "| --- | ---: | ---: | ---: | ---: | --- | --- |")?;
        for row in &self.rows {
            let per_item = row
                .per_item
                .map(|(items, ns)| format!("{} / {items}", human(ns)))
                .unwrap_or_default();
            writeln!(
                f,
                "| {} | {} | {} | {} | {:.3} | {} | {} |",
                row.name,
                human(row.stat.p50_ns),
                human(row.stat.p99_ns),
                per_item,
                row.ratio,
                row.baseline,
                row.note
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Results {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for table in &self.tables {
            writeln!(f, "{table}")?;
        }
        write!(f, "measured in {:.1} s", self.elapsed_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tiny_run_fills_every_table() {
        let options = Options {
            frame_samples: 4,
            min_batch: Duration::from_micros(10),
            stream_frames: 4,
            scales: vec![ClusterSpec::new(20, 4, 2), ClusterSpec::new(40, 4, 2)],
            cycles: 5,
            ..Options::quick()
        };
        let results = run(&options).unwrap();
        assert_eq!(results.tables[0].rows.len(), 9);
        assert_eq!(results.tables[1].rows.len(), 4);
        assert!((results.tables[1].rows[0].ratio - 1.0).abs() < 1e-9);
        assert!(results.to_string().contains("frame::access"));
    }

    #[test]
    fn the_decoder_reads_every_frame() {
        let stream = report_stream(3, 5).unwrap();
        assert_eq!(decode_stream(&stream, 7).unwrap(), 1 + 2);
    }
}
