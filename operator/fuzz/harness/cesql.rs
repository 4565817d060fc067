//! Fuzz harness for CESQL, shared by the `cesql` fuzz target and the corpus replay
//! test of `herald-filter`.
//!
//! The input, read as UTF-8 (invalid sequences replaced), is a CESQL expression. It
//! is parsed with [`Expression::parse`] and evaluated against a fixed event, and
//! compiled as the filter `{"cesql": <input>}` and matched, alone and through a
//! [`MatcherSet`] (which indexes on the expression's guard).
//!
//! Checks: no panic in the lexer, parser, evaluator, filter compiler or index.

use herald_filter::cesql::Expression;
use herald_filter::{CompiledFilter, Event, MatcherSet};
use serde_json::{Value, json};

fn data() -> Value {
    json!({"amount": 150, "tags": ["a", "b"], "nested": {"x": null}})
}

fn event(data: &Value) -> Event<'_> {
    Event::new("42", "/shop/eu", "1.0", "com.example.order.created")
        .with_subject("orders/42")
        .with_time("2024-01-02T03:04:05Z")
        .with_datacontenttype("application/json")
        .with_dataschema("https://example.com/schema")
        .with_extension("myext", "value")
        .with_extension("count", 42)
        .with_extension("minint", i32::MIN)
        .with_extension("flag", true)
        .with_extension("numtext", "-17")
        .with_data(data)
}

/// Parses, evaluates and compiles the expression `data` holds.
pub fn run(data: &[u8]) {
    let source = String::from_utf8_lossy(data);
    let payload = self::data();
    let event = event(&payload);
    if let Ok(expression) = Expression::parse(&source) {
        let _ = expression.evaluate(&event);
        let _ = expression.matches(&event);
        let _ = expression.result_type();
        let _ = expression.missing_functions();
    }
    if let Ok(filter) = CompiledFilter::from_filter(&json!({ "cesql": source })) {
        let _ = filter.matches(&event);
        let mut set = MatcherSet::new();
        set.insert("trigger", filter);
        let _ = set.matching_keys(&event);
    }
}
