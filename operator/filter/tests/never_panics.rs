//! Property tests: no input makes the CESQL parser, the evaluator or the filter and
//! pattern compilers panic. (A `cargo fuzz` target needs a nightly toolchain, which
//! this project's CI does not have; these run on stable in every test run. Raise
//! `PROPTEST_CASES` for a longer search.)

use herald_filter::cesql::Expression;
use herald_filter::{CompiledFilter, Event};
use proptest::prelude::*;
use serde_json::{Value, json};

fn sample_data() -> Value {
    json!({"amount": 150, "tags": ["a", "b"], "ip": "10.0.0.1", "nested": {"x": null}})
}

/// CESQL-ish text: keywords, operators, literals and noise, so that generated inputs
/// reach deep into the parser rather than failing at the first character.
fn cesql_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("AND".to_owned()),
        Just("OR".to_owned()),
        Just("XOR".to_owned()),
        Just("NOT".to_owned()),
        Just("LIKE".to_owned()),
        Just("IN".to_owned()),
        Just("EXISTS".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just(",".to_owned()),
        Just("=".to_owned()),
        Just("!=".to_owned()),
        Just("<".to_owned()),
        Just("<=".to_owned()),
        Just("+".to_owned()),
        Just("-".to_owned()),
        Just("*".to_owned()),
        Just("/".to_owned()),
        Just("%".to_owned()),
        Just("source".to_owned()),
        Just("type".to_owned()),
        Just("myext".to_owned()),
        Just("TRUE".to_owned()),
        Just("2147483647".to_owned()),
        Just("-2147483648".to_owned()),
        Just("'a%b_c'".to_owned()),
        Just("\"q\\\"\"".to_owned()),
        Just("ABS".to_owned()),
        Just("SUBSTRING".to_owned()),
        Just("CONCAT_WS".to_owned()),
        Just("INT".to_owned()),
        "[a-z0-9'\"()%_ ]{0,6}",
    ];
    prop::collection::vec(token, 0..40).prop_map(|t| t.join(" "))
}

/// Arbitrary JSON, biased towards the keys filters and patterns use.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("exact"),
        Just("prefix"),
        Just("suffix"),
        Just("all"),
        Just("any"),
        Just("not"),
        Just("cesql"),
        Just("pattern"),
        Just("data"),
        Just("type"),
        Just("source"),
        Just("numeric"),
        Just("anything-but"),
        Just("exists"),
        Just("$or"),
        Just("cidr"),
        Just("wildcard"),
        Just("equals-ignore-case"),
        Just("amount"),
    ]
    .prop_map(str::to_owned);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z0-9./*%>< -]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn cesql_never_panics(text in cesql_text(), noise in "\\PC{0,40}") {
        let data = sample_data();
        let event = Event::new("1", "shop/eu", "1.0", "order.created").with_extension("myext", "v").with_data(&data);
        for source in [text.as_str(), noise.as_str()] {
            if let Ok(expr) = Expression::parse(source) {
                let _ = expr.evaluate(&event);
                let _ = expr.matches(&event);
            }
        }
    }

    #[test]
    fn filter_and_pattern_compilers_never_panic(filter in json_value()) {
        let data = sample_data();
        let event = Event::new("1", "shop/eu", "1.0", "order.created").with_subject("s").with_data(&data);
        for candidate in [filter.clone(), json!({"pattern": filter.clone()}), json!({"pattern": {"data": filter}})] {
            if let Ok(compiled) = CompiledFilter::from_filter(&candidate) {
                let _ = compiled.matches(&event);
            }
        }
    }
}
