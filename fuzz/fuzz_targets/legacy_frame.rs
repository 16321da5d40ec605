//! The original's framing: header decoding as bytes arrive, result bodies, frames read in pieces.
//! The properties live in `piswarm::wire::fuzzing`, shared with the proptest suite.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    piswarm::wire::fuzzing::check_legacy_frame(data);
});
