//! Criterion view of the wire: encoding an agent report into a frame, reading it in place
//! (validated, and unchecked), and the baseline a JSON protocol would pay for the same
//! report; then the frame decoder on a stream of reports against a plain copy of the bytes.
//! `cargo bench -p fleet-bench --bench frame`.

// Benchmarks run on inputs built in this process; a failure there is a bug to see at once.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fleet_bench::ratios::{decode_stream, sum_cpu};
use fleet_bench::reports::{report_stream, sample_report};
use fleet_proto::frame;
use fleet_proto::messages::agent::{ArchivedReport, Report};
use rkyv::util::AlignedVec;

const TASKS: usize = 50;
const STREAM_FRAMES: usize = 64;
const CHUNK: usize = 1200;

fn report(c: &mut Criterion) {
    let report = sample_report(TASKS);
    let encoded = frame::encode(&report).unwrap();
    let mut body = AlignedVec::<16>::new();
    body.extend_from_slice(&encoded[4..]);
    let json = serde_json::to_vec(&report).unwrap();
    assert_eq!(frame::decode::<Report>(&body).unwrap(), report);
    eprintln!(
        "report with {TASKS} tasks: frame {} B, JSON {} B",
        encoded.len(),
        json.len()
    );

    let mut group = c.benchmark_group(format!("report_{TASKS}_tasks"));
    group.bench_function("json_encode_baseline", |b| {
        b.iter(|| serde_json::to_vec(black_box(&report)).unwrap())
    });
    group.bench_function("frame_encode", |b| {
        b.iter(|| frame::encode(black_box(&report)).unwrap())
    });
    group.bench_function("json_decode_baseline", |b| {
        b.iter(|| serde_json::from_slice::<Report>(black_box(&json)).unwrap())
    });
    group.bench_function("frame_access", |b| {
        b.iter(|| {
            frame::access::<Report>(black_box(&body))
                .unwrap()
                .seq
                .to_native()
        })
    });
    group.bench_function("frame_access_sum_cpu", |b| {
        b.iter(|| sum_cpu(frame::access::<Report>(black_box(&body)).unwrap()))
    });
    group.bench_function("access_unchecked", |b| {
        b.iter(|| {
            // SAFETY: `body` holds an archive of a `Report` written by rkyv in this process
            // and validated by `frame::decode` above; nothing modifies it afterwards.
            let r = unsafe { rkyv::access_unchecked::<ArchivedReport>(black_box(&body)) };
            r.seq.to_native()
        })
    });
    group.bench_function("frame_decode_owned", |b| {
        b.iter(|| frame::decode::<Report>(black_box(&body)).unwrap())
    });
    group.finish();
}

fn stream(c: &mut Criterion) {
    let stream = report_stream(STREAM_FRAMES, TASKS).unwrap();
    let mut group = c.benchmark_group(format!("stream_{STREAM_FRAMES}_reports"));
    group.throughput(Throughput::Elements(STREAM_FRAMES as u64));
    group.bench_function(BenchmarkId::new("copy_baseline", CHUNK), |b| {
        b.iter(|| {
            let mut sink: Vec<u8> = Vec::new();
            for part in stream.chunks(CHUNK) {
                sink.extend_from_slice(black_box(part));
            }
            sink
        })
    });
    group.bench_function(BenchmarkId::new("frame_decoder_access", CHUNK), |b| {
        b.iter(|| decode_stream(&stream, CHUNK).unwrap())
    });
    group.finish();
}

criterion_group!(benches, report, stream);
criterion_main!(benches);
