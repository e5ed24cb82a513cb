//! Any bytes from a peer: preamble check, frame decoding and validation of every message
//! type must return errors, never panic or read out of bounds.
#![no_main]

use fleet_proto::frame::{self, FrameDecoder, PREAMBLE_LEN, StreamKind};
use fleet_proto::messages::agent::{AgentMessage, MasterMessage, Report};
use fleet_proto::messages::scheduler::{Call, Event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= PREAMBLE_LEN {
        let mut p = [0u8; PREAMBLE_LEN];
        p.copy_from_slice(&data[..PREAMBLE_LEN]);
        let _ = frame::check_preamble(&p, StreamKind::AgentControl);
    }
    let mut decoder = FrameDecoder::new(1 << 20);
    for chunk in data.chunks(7) {
        decoder.push(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(body)) => {
                    let _ = frame::decode::<AgentMessage>(&body);
                    let _ = frame::decode::<MasterMessage>(&body);
                    let _ = frame::decode::<Call>(&body);
                    let _ = frame::decode::<Event>(&body);
                    if let Ok(report) = frame::access::<Report>(&body) {
                        let _ = report.tasks.len();
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = decoder.finish();
});
