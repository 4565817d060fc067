//! Content patterns against the cases of EventBridge's documentation on event patterns
//! and content filtering (`tests/eventbridge/cases.json`): each case is a pattern and
//! an event as EventBridge writes them, and whether EventBridge matches, or the error
//! Herald must refuse the pattern with.
//!
//! An EventBridge event becomes a CloudEvent the way a Herald user would write it:
//! `detail` is `data`, `detail-type` is `type`, `source`, `id` and `time` are themselves
//! and other top-level strings (`region`, `account`) are extensions. Patterns are
//! renamed the same way (`detail` → `data`, `detail-type` → `type`).

use herald_filter::{CompiledFilter, Event};
use serde_json::{Map, Value, json};

const CASES: &str = include_str!("eventbridge/cases.json");

/// An EventBridge top-level key as a Herald pattern key.
fn herald_key(key: &str) -> String {
    match key {
        "detail" => "data".to_owned(),
        "detail-type" => "type".to_owned(),
        other => match other.strip_prefix("detail.") {
            Some(rest) => format!("data.{rest}"),
            None => other.to_owned(),
        },
    }
}

/// Renames the top-level keys of a pattern (and of its top-level `$or` alternatives).
fn herald_pattern(pattern: &Value) -> Value {
    let Value::Object(map) = pattern else {
        return pattern.clone();
    };
    let renamed: Map<String, Value> = map
        .iter()
        .map(|(k, v)| {
            let v = match (k.as_str(), v) {
                ("$or", Value::Array(alts)) => {
                    Value::Array(alts.iter().map(herald_pattern).collect())
                }
                _ => v.clone(),
            };
            (herald_key(k), v)
        })
        .collect();
    Value::Object(renamed)
}

fn text<'e>(event: &'e Value, key: &str, default: &'e str) -> &'e str {
    event.get(key).and_then(Value::as_str).unwrap_or(default)
}

/// The CloudEvent a Herald user would write for an EventBridge event.
fn herald_event(event: &Value) -> Event<'_> {
    let mut view = Event::new(
        text(event, "id", "1"),
        text(event, "source", "test.source"),
        "1.0",
        text(event, "detail-type", "Test Event"),
    );
    for (key, value) in event.as_object().into_iter().flatten() {
        match (key.as_str(), value) {
            ("id" | "source" | "detail-type" | "detail", _) => {}
            ("time", Value::String(t)) => view = view.with_time(t),
            (name, Value::String(s)) => view = view.with_extension(name, s.as_str()),
            (name, other) => panic!("no CloudEvent attribute for `{name}`: {other}"),
        }
    }
    if let Some(detail) = event.get("detail") {
        view = view.with_data(detail);
    }
    view
}

#[test]
fn eventbridge_documentation_cases() {
    let cases: Vec<Value> = serde_json::from_str(CASES).expect("cases.json is JSON");
    let mut failures = Vec::new();
    for case in &cases {
        let label = format!("{} / {}", case["section"], case["name"]);
        let pattern = herald_pattern(&case["pattern"]);
        let compiled = CompiledFilter::from_filter(&json!({ "pattern": pattern }));
        match (case.get("refused").and_then(Value::as_str), compiled) {
            (Some(fragment), Ok(_)) => {
                failures.push(format!(
                    "{label}: compiled, but EventBridge refuses ({fragment})"
                ));
            }
            (Some(fragment), Err(e)) if !e.to_string().contains(fragment) => {
                failures.push(format!(
                    "{label}: refused with `{e}`, expected `{fragment}`"
                ));
            }
            (Some(_), Err(_)) => {}
            (None, Err(e)) => failures.push(format!("{label}: refused: {e}")),
            (None, Ok(filter)) => {
                let want = case["matches"].as_bool().expect("`matches` or `refused`");
                let got = filter.matches(&herald_event(&case["event"]));
                if got != want {
                    failures.push(format!("{label}: matched {got}, EventBridge {want}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
