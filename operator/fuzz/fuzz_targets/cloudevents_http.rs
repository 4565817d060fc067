//! Fuzz target `cloudevents_http`: see `../harness/cloudevents_http.rs` and `../README.md`.
#![no_main]

#[path = "../harness/cloudevents_http.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
