//! See `fuzz/entries.rs`, `appsync_event`.
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::appsync_event(data));
