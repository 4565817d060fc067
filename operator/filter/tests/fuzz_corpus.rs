//! Replays the `cesql` and `pattern` fuzz corpora (`operator/fuzz/corpus/`) through the
//! fuzz targets' own harnesses, so every test run re-checks the inputs the fuzzer kept.
//! Fuzzing itself needs nightly: see `operator/fuzz/README.md`.

#[path = "../../fuzz/harness/cesql.rs"]
mod cesql_harness;
#[path = "../../fuzz/harness/pattern.rs"]
mod pattern_harness;
#[path = "../../fuzz/harness/replay.rs"]
mod replay;

#[test]
fn cesql_corpus_never_panics() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "cesql", cesql_harness::run);
}

#[test]
fn pattern_corpus_never_panics() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "pattern", pattern_harness::run);
}
