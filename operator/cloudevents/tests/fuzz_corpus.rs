//! Replays the `cloudevents_http` fuzz corpus (`operator/fuzz/corpus/`) through the fuzz
//! target's own harness, so every test run re-checks the inputs the fuzzer kept.
//! Fuzzing itself needs nightly: see `operator/fuzz/README.md`.

#[path = "../../fuzz/harness/cloudevents_http.rs"]
mod harness;
#[path = "../../fuzz/harness/replay.rs"]
mod replay;

#[test]
fn cloudevents_http_corpus_never_panics() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "cloudevents_http", harness::run);
}
