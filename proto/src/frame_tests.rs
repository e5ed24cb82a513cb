use super::*;
use crate::ids::{AgentId, FrameworkId, TaskId};
use crate::messages::agent::{Report, TaskUsage, Usage};
use crate::messages::scheduler::Call;

fn report() -> Report {
    Report {
        agent_id: AgentId::new("A-1"),
        seq: 7,
        timestamp_ms: 1,
        tasks: vec![TaskUsage {
            framework_id: FrameworkId::new("F-1"),
            task_id: TaskId::new("t"),
            usage: Usage {
                bytes_written: 42,
                ..Usage::default()
            },
            pid: 0,
        }],
        total: Usage::default(),
    }
}

#[test]
fn frames_round_trip_through_the_decoder_in_pieces() {
    let a = encode(&report()).unwrap();
    let b = encode(&Call::Teardown).unwrap();
    let mut all = a.clone();
    all.extend_from_slice(&b);
    let mut dec = FrameDecoder::new(MAX_FRAME_LEN);
    let mut frames = Vec::new();
    for chunk in all.chunks(3) {
        dec.push(chunk);
        while let Some(f) = dec.next_frame().unwrap() {
            frames.push(f);
        }
    }
    dec.finish().unwrap();
    assert_eq!(frames.len(), 2);
    let r = access::<Report>(&frames[0]).unwrap();
    assert_eq!(r.seq, 7);
    assert_eq!(r.tasks[0].usage.bytes_written, 42);
    assert_eq!(decode::<Call>(&frames[1]).unwrap(), Call::Teardown);
}

#[test]
fn oversized_frames_are_refused_before_buffering() {
    let mut dec = FrameDecoder::new(1024);
    dec.push(&(4096u32).to_le_bytes());
    assert!(matches!(
        dec.next_frame(),
        Err(FrameError::TooLarge {
            len: 4096,
            max: 1024
        })
    ));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let mut body = AlignedVec::new();
    body.extend_from_slice(&[0xff; 64]);
    assert!(matches!(
        decode::<Call>(&body),
        Err(FrameError::Invalid { what: "call", .. })
    ));
    assert!(access::<Report>(&body).is_err());
}

#[test]
fn truncated_stream_is_reported() {
    let a = encode(&Call::Teardown).unwrap();
    let mut dec = FrameDecoder::new(MAX_FRAME_LEN);
    dec.push(&a[..a.len() - 1]);
    assert!(matches!(dec.next_frame(), Ok(None)));
    assert!(matches!(dec.finish(), Err(FrameError::Truncated { .. })));
}

#[test]
fn preamble_checks_magic_kind_and_major_version() {
    let p = preamble(StreamKind::AgentReport);
    assert_eq!(
        check_preamble(&p, StreamKind::AgentReport),
        Ok(PROTOCOL_MINOR)
    );
    assert!(matches!(
        check_preamble(&p, StreamKind::AgentControl),
        Err(FrameError::WrongStreamKind { .. })
    ));
    let mut other = p;
    other[4..6].copy_from_slice(&(PROTOCOL_MAJOR + 1).to_le_bytes());
    let err = check_preamble(&other, StreamKind::AgentReport).unwrap_err();
    assert!(
        err.to_string()
            .contains("incompatible protocol version 2.0")
    );
    assert!(matches!(
        check_preamble(b"GET / HT", StreamKind::AgentReport),
        Err(FrameError::BadMagic(_))
    ));
}
