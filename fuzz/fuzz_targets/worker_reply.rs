//! See `fuzz/entries.rs`, `worker_reply`.
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::worker_reply(data));
