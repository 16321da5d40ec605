//! The fuzz targets' properties (`piswarm::wire::fuzzing`, also run by cargo-fuzz from `fuzz/`) under
//! proptest, so the normal test suite checks them on every run. Inputs are arbitrary bytes and
//! mutations of valid messages (which reach deeper than random bytes do).
//!
//! More cases for a one-off soak: `PROPTEST_CASES=200000 cargo test --release --test
//! fuzz_properties` (see docs/fuzzing.md).

use piswarm::wire::fuzzing::{check_legacy_frame, check_line_reader, check_protocol_decode};
use proptest::prelude::*;

/// Valid lines of both directions, to mutate.
const SEEDS: &[&str] = &[
    r#"{"type":"hello","version":1,"worker":"w-1","token":"s3cret"}"#,
    r#"{"type":"hello","version":1,"worker":"by-hand"}"#,
    r#"{"type":"request","count":4}"#,
    r#"{"type":"result","id":"3","a":"3000","b":"3999","even_sum":"1749500","odd_sum":"1750000","pi":8.333332798032551e-05,"duration_s":0.001}"#,
    r#"{"type":"result","id":0,"a":0,"b":999,"even_sum":249500,"odd_sum":250000,"pi":3.140592653839794}"#,
    r#"{"type":"heartbeat"}"#,
    r#"{"type":"bye"}"#,
    r#"{"type":"welcome","version":1,"server":"piswarm 0.1.0","run":1,"terms":null,"chunk":"1000","max_prefetch":64,"heartbeat_s":10.0}"#,
    r#"{"type":"assign","id":"0","a":"0","b":"999","lease_s":30.0}"#,
    r#"{"type":"ack","id":"1","status":"duplicate"}"#,
    r#"{"type":"error","code":"wrong_pi","message":"no","id":"7"}"#,
    r#"{"type":"done","reason":"job_complete"}"#,
];

const LEGACY_SEEDS: &[&str] = &[
    "[R]249500,250000,3.140592653839794",
    "[R]1749500,1750000,8.333332798032551e-05",
    " [R] 0 , 0 , -0.0 ",
    "!DESCONECTADO",
    "!ENCERRAR",
    "34",
];

/// A seed with a few bytes replaced, inserted or removed.
fn mutated(seeds: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    (
        0..seeds.len(),
        proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 0..6),
    )
        .prop_map(move |(i, edits)| {
            let mut bytes = seeds[i].as_bytes().to_vec();
            for (at, byte, kind) in edits {
                let at = usize::from(at) % (bytes.len() + 1);
                match kind {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => {}
                }
            }
            bytes
        })
}

/// Interesting bytes for JSON: digits, signs, quotes, braces, letters of NaN and Infinity.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop::sample::select(&b"{}[]\":,-+.0123456789eEnaNIfity \\u\r\n\ttrue"[..]),
        0..120,
    )
}

proptest! {
    #[test]
    fn protocol_decode_arbitrary(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_protocol_decode(&bytes);
    }

    #[test]
    fn protocol_decode_mutated(bytes in mutated(SEEDS)) {
        check_protocol_decode(&bytes);
    }

    #[test]
    fn protocol_decode_jsonish(bytes in jsonish()) {
        check_protocol_decode(&bytes);
    }

    #[test]
    fn legacy_frame_arbitrary(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_legacy_frame(&bytes);
    }

    #[test]
    fn legacy_frame_mutated(bytes in mutated(LEGACY_SEEDS)) {
        check_legacy_frame(&bytes);
    }

    #[test]
    fn legacy_header_like(digits in "[0-9]{0,8}", spaces in 0usize..300, tail in proptest::collection::vec(any::<u8>(), 0..40)) {
        let mut bytes = digits.into_bytes();
        bytes.resize(bytes.len() + spaces, b' ');
        bytes.extend(tail);
        check_legacy_frame(&bytes);
    }

    #[test]
    fn line_reader_arbitrary(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_line_reader(&bytes);
    }

    #[test]
    fn line_reader_many_lines(step in 1u8..=255, max in 0u16..80, lines in proptest::collection::vec("[a-z{}\":]{0,90}", 0..20), tail in "[a-z]{0,90}") {
        let mut bytes = vec![step, max.to_le_bytes()[0], max.to_le_bytes()[1]];
        for l in lines {
            bytes.extend_from_slice(l.as_bytes());
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(tail.as_bytes());
        check_line_reader(&bytes);
    }
}
