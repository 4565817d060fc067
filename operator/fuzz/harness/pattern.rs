//! Fuzz harness for content patterns, shared by the `pattern` fuzz target and the
//! corpus replay test of `herald-filter`.
//!
//! The input must be JSON (anything else is skipped). It is compiled as the filter
//! `{"pattern": <input>}` and, when that compiles, matched against a fixed event with
//! JSON data, alone and through a [`MatcherSet`] (which indexes on the pattern's guard).
//!
//! Checks: no panic in the pattern compiler, the matcher or the index.

use herald_filter::{CompiledFilter, Event, MatcherSet};
use serde_json::{Value, json};

fn data() -> Value {
    json!({
        "amount": 150,
        "price": 19.99,
        "big": 18_446_744_073_709_551_615_u64,
        "negative": -3,
        "name": "Widget",
        "empty": "",
        "ip": "10.0.0.1",
        "ip6": "2001:db8::1",
        "tags": ["a", "b", 7, null, true],
        "flag": false,
        "nothing": null,
        "customer": {"tier": "gold", "country": "DE", "address": {"city": "Köln"}},
        "items": [{"sku": "x-1", "qty": 2}, {"sku": "y-2", "qty": 0}]
    })
}

fn event(data: &Value) -> Event<'_> {
    Event::new("42", "/shop/eu", "1.0", "com.example.order.created")
        .with_subject("orders/42")
        .with_time("2024-01-02T03:04:05Z")
        .with_datacontenttype("application/json")
        .with_extension("myext", "value")
        .with_extension("count", 42)
        .with_extension("flag", true)
        .with_data(data)
}

/// Compiles and matches the pattern `data` holds, if it is JSON.
pub fn run(data: &[u8]) {
    let Ok(pattern) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let payload = self::data();
    let event = event(&payload);
    if let Ok(filter) = CompiledFilter::from_filter(&json!({ "pattern": pattern })) {
        let _ = filter.matches(&event);
        let _ = filter.needs_data();
        let mut set = MatcherSet::new();
        set.insert("trigger", filter);
        let _ = set.matching_keys(&event);
    }
}
