use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_cloudevents::CloudEvent;

use crate::{Budget, RunError, Transform, TransformError};

fn order() -> CloudEvent {
    let mut e = CloudEvent::new("1", "/shop", "order.created");
    e.set("datacontenttype", "application/json");
    e.data = Some(Bytes::from_static(
        br#"{"order": {"id": "A-1", "amount": 250, "items": [{"sku": "x"}, {"sku": "y"}]}, "customer": "Ann \"the\" buyer"}"#,
    ));
    e
}

fn jq(program: &str) -> Result<CloudEvent, RunError> {
    Transform::jq(program).unwrap().apply(&order())
}

fn data(e: &CloudEvent) -> serde_json::Value {
    serde_json::from_slice(e.data.as_deref().unwrap()).unwrap()
}

#[test]
fn jq_changes_the_type_and_adds_an_extension() {
    let e = jq(r#".type = "order.big" | .tenant = "acme""#).unwrap();
    assert_eq!(e.type_(), "order.big");
    assert_eq!(e.get("tenant"), Some("acme"));
    assert_eq!(e.id(), "1");
    assert_eq!(data(&e), data(&order()), "data untouched");
}

#[test]
fn jq_reshapes_data() {
    let e = jq(r".data = {id: .data.order.id, skus: [.data.order.items[].sku]}").unwrap();
    assert_eq!(
        data(&e),
        serde_json::json!({"id": "A-1", "skus": ["x", "y"]})
    );
}

#[test]
fn jq_sees_non_json_data_as_a_string() {
    let mut e = CloudEvent::new("1", "/s", "t");
    e.set("datacontenttype", "text/plain");
    e.data = Some(Bytes::from_static(b"hello"));
    let out = Transform::jq(r#".data |= ascii_upcase | .datacontenttype = "text/plain""#)
        .unwrap()
        .apply(&e)
        .unwrap();
    assert_eq!(out.data.as_deref(), Some(&b"HELLO"[..]));
}

#[test]
fn jq_results_must_be_one_valid_event() {
    assert!(matches!(jq("empty"), Err(RunError::NoOutput)));
    assert!(matches!(jq(".,."), Err(RunError::SeveralOutputs)));
    assert!(matches!(jq(".data"), Ok(_) | Err(RunError::Invalid(_))));
    assert!(matches!(jq("1"), Err(RunError::NotAnObject("a number"))));
    assert!(matches!(jq("del(.source)"), Err(RunError::Invalid(_))));
    assert!(matches!(
        jq(r#".["Bad-Name"] = 1"#),
        Err(RunError::Invalid(_))
    ));
    assert!(matches!(
        jq(r#".time = "yesterday""#),
        Err(RunError::Invalid(_))
    ));
    assert!(matches!(jq(r#"error("no")"#), Err(RunError::Jq(m)) if m.contains("no")));
}

#[test]
fn invalid_programs_are_refused_with_their_position() {
    let e = Transform::jq(".type = \n  (.data | ").unwrap_err();
    assert!(matches!(e, TransformError::JqSyntax { line: 2, .. }), "{e}");
    assert!(e.to_string().starts_with("transform.jq: 2:"), "{e}");
    let e = Transform::jq(".data | nosuchfilter").unwrap_err();
    assert_eq!(
        e.to_string(),
        "transform.jq: undefined filter nosuchfilter/0 at 1:9"
    );
    assert!(Transform::jq("$ENV").is_err(), "no environment");
    assert!(Transform::jq("input").is_err(), "no other inputs");
    for denied in ["env", "halt", "debug", "stderr", "{} | halt_error"] {
        let result = Transform::jq(denied).unwrap().apply(&order());
        assert!(
            matches!(&result, Err(RunError::Jq(m)) if m.contains("not available")),
            "{denied}: {result:?}"
        );
    }
    assert!(Transform::from_parts(Some("."), Some((&BTreeMap::new(), "x"))).is_err());
    assert!(Transform::from_parts(None, None).unwrap().is_none());
}

#[test]
fn runaway_programs_are_stopped_within_the_budget() {
    let budget = Budget {
        time: Duration::from_millis(200),
        max_runaways: 64,
        ..Budget::default()
    };
    for program in [
        "def f: f; f",
        "last(range(1e12))",
        "[limit(1e7; repeat(1))] | length",
    ] {
        let t = Transform::jq(program).unwrap().with_budget(budget);
        let start = Instant::now();
        let result = t.apply(&order());
        assert!(
            matches!(result, Err(RunError::TimedOut(_))),
            "{program}: {result:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(1), "{program}");
    }
    let refuse = Budget {
        max_runaways: 0,
        ..budget
    };
    assert!(matches!(
        Transform::jq(".")
            .unwrap()
            .with_budget(refuse)
            .apply(&order()),
        Err(RunError::Overloaded(_))
    ));
}

#[test]
fn oversized_output_is_refused() {
    let small = Budget {
        max_output_bytes: 1000,
        ..Budget::default()
    };
    let t = Transform::jq(r#".data = ([range(2000)] | map(tostring) | join(","))"#)
        .unwrap()
        .with_budget(small);
    assert!(matches!(t.apply(&order()), Err(RunError::TooLarge(1000))));
}

fn paths(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn templates_follow_eventbridge() {
    let p = paths(&[
        ("id", "$.data.order.id"),
        ("amount", "$.data.order.amount"),
        ("sku", "$.data.order.items[1].sku"),
        ("customer", "$.data.customer"),
        ("type", "$.type"),
        ("missing", "$.data.nope"),
    ]);
    // The EventBridge example: values in quotes and out.
    let t = Transform::template(
        &p,
        r#"{"order": <id>, "amount": <amount>, "text": "<customer> bought <sku> (<type>)", "gone": <missing>, "alsoGone": "<missing>", "tag": "<notapath>"}"#,
    )
    .unwrap();
    let e = t.apply(&order()).unwrap();
    assert_eq!(e.type_(), "order.created", "attributes stay");
    assert_eq!(e.get("datacontenttype"), Some("application/json"));
    assert_eq!(
        data(&e),
        serde_json::json!({
            "order": "A-1", "amount": 250,
            "text": "Ann \"the\" buyer bought y (order.created)",
            "gone": null, "alsoGone": "", "tag": "<notapath>"
        })
    );
    // A text template.
    let t = Transform::template(&p, "order <id> of <amount> is in state \"<type>\"").unwrap();
    let e = t.apply(&order()).unwrap();
    assert_eq!(e.get("datacontenttype"), Some("text/plain"));
    assert_eq!(
        e.data.as_deref(),
        Some(&b"order A-1 of 250 is in state \"order.created\""[..])
    );
}

#[test]
fn invalid_templates_are_refused() {
    let e = Transform::template(&paths(&[("x", "data.x")]), "<x>").unwrap_err();
    assert!(
        e.to_string().starts_with("transform.template.paths.x: "),
        "{e}"
    );
    let e = Transform::template(&paths(&[("x", "$.data.x")]), "{\"a\": <x>,}").unwrap_err();
    assert!(
        e.to_string().starts_with("transform.template.data: "),
        "{e}"
    );
    assert!(Transform::template(&paths(&[]), "").is_err());
    assert!(Transform::template(&paths(&[("bad name", "$")]), "x").is_err());
}
