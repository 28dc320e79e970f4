//! See `assessments_resolver::fuzzing::appsync_event`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| assessments_resolver::fuzzing::appsync_event(data));
