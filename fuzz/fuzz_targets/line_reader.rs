//! Reading newline-delimited lines with a length limit, in pieces of every size.
//! The properties live in `piswarm::wire::fuzzing`, shared with the proptest suite.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    piswarm::wire::fuzzing::check_line_reader(data);
});
