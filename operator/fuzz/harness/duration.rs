//! Fuzz harness for durations, shared by the `duration` fuzz target and the corpus
//! replay test of `herald-api`.
//!
//! The input, read as UTF-8 (invalid sequences replaced), goes to
//! [`herald_api::duration::parse`] (Go-style and ISO-8601 notation).
//!
//! Checks: no panic. (There is no formatter to round-trip through.)

/// Parses the duration `data` holds.
pub fn run(data: &[u8]) {
    let _ = herald_api::duration::parse(&String::from_utf8_lossy(data));
}
