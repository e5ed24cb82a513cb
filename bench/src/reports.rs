//! Realistic agent usage reports, the message the master receives most often (one per agent
//! per interval), with ids shaped like the ones Fleet and Mesos frameworks mint.

use fleet_proto::ids::{AgentId, FrameworkId, TaskId};
use fleet_proto::messages::agent::{Report, TaskUsage, Usage};

/// A cheap deterministic mix (splitmix64), so generated ids and counters look random but
/// every run builds the same bytes.
pub fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A UUID-shaped string (36 characters) derived from `seed`.
pub fn uuid_like(seed: u64) -> String {
    let a = mix(seed);
    let b = mix(a);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// Usage counters of a busy container, varied by `seed`.
pub fn usage(seed: u64) -> Usage {
    let r = mix(seed);
    Usage {
        cpu_time_ns: 3_600_000_000_000 + (r % 1_000_000_000_000),
        mem_bytes: (256 << 20) + (r % (8 << 30)),
        disk_bytes: (1 << 30) + (r % (20 << 30)),
        net_rx_bytes: r % (50 << 30),
        net_tx_bytes: (r >> 7) % (50 << 30),
        bytes_written: (r >> 13) % (10 << 30),
    }
}

/// The report of an agent running `tasks` tasks spread over a few frameworks.
pub fn sample_report(tasks: usize) -> Report {
    let frameworks: Vec<FrameworkId> = (0..4u64)
        .map(|i| FrameworkId::new(format!("{}-{:04}", uuid_like(1_000 + i), i)))
        .collect();
    let mut total = Usage::default();
    let task_usage: Vec<TaskUsage> = (0..tasks as u64)
        .map(|i| {
            let usage = usage(i);
            total.cpu_time_ns += usage.cpu_time_ns;
            total.mem_bytes += usage.mem_bytes;
            total.disk_bytes += usage.disk_bytes;
            total.net_rx_bytes += usage.net_rx_bytes;
            total.net_tx_bytes += usage.net_tx_bytes;
            total.bytes_written += usage.bytes_written;
            TaskUsage {
                framework_id: frameworks[(i % 4) as usize].clone(),
                task_id: TaskId::new(format!("web-server.{}", uuid_like(i))),
                usage,
                pid: 0,
            }
        })
        .collect();
    Report {
        agent_id: AgentId::new(format!("{}-S42", uuid_like(7))),
        seq: 123_456,
        timestamp_ms: 1_795_000_000_000,
        tasks: task_usage,
        total,
    }
}

/// `count` frames of reports of `tasks` tasks each, back to back, as on a report stream.
pub fn report_stream(
    count: usize,
    tasks: usize,
) -> Result<Vec<u8>, fleet_proto::frame::FrameError> {
    let mut report = sample_report(tasks);
    let mut out = Vec::new();
    for seq in 0..count as u64 {
        report.seq = seq;
        out.extend_from_slice(&fleet_proto::frame::encode(&report)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips_through_a_frame() {
        let report = sample_report(50);
        let frame = fleet_proto::frame::encode(&report).unwrap();
        let mut decoder = fleet_proto::frame::FrameDecoder::new(fleet_proto::frame::MAX_FRAME_LEN);
        decoder.push(&frame);
        let body = decoder.next_frame().unwrap().unwrap();
        let back: Report = fleet_proto::frame::decode(&body).unwrap();
        assert_eq!(back, report);
        assert_eq!(uuid_like(3).len(), 36);
    }
}
