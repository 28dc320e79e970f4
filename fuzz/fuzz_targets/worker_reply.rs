//! See `assessments_resolver::fuzzing::worker_reply`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| assessments_resolver::fuzzing::worker_reply(data));
