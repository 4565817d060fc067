//! Fuzz target `duration`: see `../harness/duration.rs` and `../README.md`.
#![no_main]

#[path = "../harness/duration.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
