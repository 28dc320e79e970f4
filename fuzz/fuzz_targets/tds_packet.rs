//! See `testkit::tds::fuzzing::packet_stream`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testkit::tds::fuzzing::packet_stream(data));
