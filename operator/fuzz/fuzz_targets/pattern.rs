//! Fuzz target `pattern`: see `../harness/pattern.rs` and `../README.md`.
#![no_main]

#[path = "../harness/pattern.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
