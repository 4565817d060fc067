//! Fuzz target `cesql`: see `../harness/cesql.rs` and `../README.md`.
#![no_main]

#[path = "../harness/cesql.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
