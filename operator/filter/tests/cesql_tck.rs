//! Runs every case of the CESQL v1 TCK (`tests/cesql-tck/*.yaml`, copied verbatim from
//! the CloudEvents spec repository) and requires all of them to pass.
//!
//! A case passes when the value matches `result` (if given) and the kinds of the errors
//! raised are exactly the `error` kind (or none when `error` is absent). A parse
//! failure counts as the value `false` with a `parse` error.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use herald_filter::Event;
use herald_filter::cesql::{ErrorKind, Expression, Value};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

fn tck_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cesql-tck")
}

fn tck_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(tck_dir())
        .expect("tests/cesql-tck exists")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Counts the cases in a file from its text alone, independently of the YAML loader.
fn cases_in_text(text: &str) -> usize {
    text.lines().filter(|l| l.starts_with("  - name:")).count()
}

/// Any valid event, for cases without `event`.
fn base_event() -> Map<String, Json> {
    let Json::Object(map) = json!({
        "specversion": "1.0",
        "id": "tck-id",
        "source": "/tck/source",
        "type": "tck.type",
    }) else {
        unreachable!()
    };
    map
}

/// One TCK file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Suite {
    name: String,
    tests: Vec<Case>,
}

/// One TCK case. `expression` and `name` are read as the text written (a bare `TRUE`
/// or `0` stays that text); `result` keeps its YAML type.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Case {
    name: String,
    expression: String,
    result: Option<serde_yaml::Value>,
    error: Option<String>,
    event: Option<Map<String, Json>>,
    event_overrides: Option<Map<String, Json>>,
}

fn expected_value(result: &serde_yaml::Value) -> Result<Value<'static>, String> {
    match result {
        serde_yaml::Value::Bool(b) => Ok(Value::Boolean(*b)),
        serde_yaml::Value::Number(n) => n
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .map(Value::Integer)
            .ok_or_else(|| format!("result {n} is not a 32-bit integer")),
        serde_yaml::Value::String(s) => Ok(Value::String(Cow::Owned(s.clone()))),
        other => Err(format!("unsupported result {other:?}")),
    }
}

/// Runs one case; `Err` explains the failure.
fn run_case(case: &Case) -> Result<(), String> {
    let mut document = case.event.clone().unwrap_or_else(base_event);
    for (k, v) in case.event_overrides.iter().flatten() {
        document.insert(k.clone(), v.clone());
    }
    let document = Json::Object(document);
    let event = Event::from_json(&document).map_err(|e| format!("invalid event: {e}"))?;

    let parsed = Expression::parse(&case.expression);
    let (value, kinds, messages): (Value<'_>, BTreeSet<&str>, Vec<String>) = match &parsed {
        Ok(expr) => {
            let out = expr.evaluate(&event);
            let kinds = out.errors.iter().map(|e| e.kind.tck_name()).collect();
            let messages = out.errors.iter().map(ToString::to_string).collect();
            (out.value, kinds, messages)
        }
        Err(e) => (
            Value::Boolean(false),
            BTreeSet::from([ErrorKind::Parse.tck_name()]),
            vec![e.to_string()],
        ),
    };

    let mut problems = Vec::new();
    if let Some(result) = &case.result {
        let want = expected_value(result)?;
        if value != want {
            problems.push(format!("value {value}, expected {want}"));
        }
    }
    let want_kinds: BTreeSet<&str> = case.error.as_deref().into_iter().collect();
    if kinds != want_kinds {
        problems.push(format!(
            "errors {kinds:?} ({messages:?}), expected {want_kinds:?}"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[test]
fn cesql_v1_tck_passes_completely() {
    let files = tck_files();
    assert!(!files.is_empty(), "no TCK files in {}", tck_dir().display());

    let mut run = 0usize;
    let mut in_text = 0usize;
    let mut failures = Vec::new();
    for path in &files {
        let file = path.file_name().unwrap_or_default().to_string_lossy();
        let text = fs::read_to_string(path).expect("readable TCK file");
        in_text += cases_in_text(&text);
        let suite: Suite =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file}: not a TCK suite: {e}"));
        for case in &suite.tests {
            run += 1;
            if let Err(why) = run_case(case) {
                failures.push(format!(
                    "{file} / {} / {}: `{}`: {why}",
                    suite.name, case.name, case.expression
                ));
            }
        }
    }

    for f in &failures {
        eprintln!("TCK FAILURE: {f}");
    }
    eprintln!(
        "CESQL TCK: {} of {run} cases passed in {} files",
        run - failures.len(),
        files.len()
    );
    assert!(run > 0, "the TCK ran no case");
    assert_eq!(
        run, in_text,
        "cases run differ from the cases written in the files"
    );
    assert!(failures.is_empty(), "{} TCK case(s) failed", failures.len());
}
