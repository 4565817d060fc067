//! Corpus replay for the stable test suites (`cargo test`, no nightly needed): runs
//! every file of `operator/fuzz/corpus/<target>/` through the harness the fuzz target
//! runs.

use std::fs;
use std::panic;
use std::path::Path;

/// Runs `run` on every file of the `target` corpus and returns how many there were.
/// `manifest_dir` is the calling crate's `CARGO_MANIFEST_DIR` (a sibling of `fuzz/`).
///
/// # Panics
///
/// When the corpus directory is missing or empty (a replay that checks nothing must
/// not pass), or when an input panics (naming the input's file).
pub fn replay(manifest_dir: &str, target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(manifest_dir).join("../fuzz/corpus").join(target);
    let entries = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {} is missing: {e}", dir.display()));
    let mut files: Vec<_> = entries
        .map(|entry| entry.expect("readable corpus directory").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "fuzz corpus {} is empty", dir.display());
    for file in &files {
        let data = fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            panic::catch_unwind(|| run(&data)).is_ok(),
            "fuzz input {} panicked (see above)",
            file.display()
        );
    }
    files.len()
}
