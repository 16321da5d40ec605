//! Protocol v1: decode_client and decode_server on arbitrary bytes; whatever decodes round-trips.
//! The properties live in `piswarm::wire::fuzzing`, shared with the proptest suite.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    piswarm::wire::fuzzing::check_protocol_decode(data);
});
