//! How patterns read the structure of `data` as EventBridge does: keys with dots,
//! arrays of objects, `exists` inside arrays, `$or` expansion and the limits.

use serde_json::{Value, json};

use super::*;

fn hit(pattern: &Value, data: &Value) -> bool {
    let p = Pattern::compile(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
    p.matches(&Event::new("1", "/s", "1.0", "t").with_data(data))
}

fn error(pattern: &Value) -> String {
    Pattern::compile(pattern)
        .expect_err("the pattern should be rejected")
        .to_string()
}

#[test]
fn keys_with_dots_are_paths() {
    let nested = json!({"state": {"status": "running"}});
    let dotted = json!({"state.status": "running"});
    for data in [&nested, &dotted] {
        assert!(hit(&json!({"data": {"state.status": ["running"]}}), data));
        assert!(hit(
            &json!({"data": {"state": {"status": ["running"]}}}),
            data
        ));
        assert!(hit(&json!({"data.state.status": ["running"]}), data));
        assert!(hit(&json!({"data.state": {"status": ["running"]}}), data));
    }
    // Both spellings in one event: two values of one field.
    let both = json!({"state": {"status": "a"}, "state.status": "b"});
    assert!(hit(&json!({"data": {"state.status": ["b"]}}), &both));
    assert!(hit(&json!({"data": {"state": {"status": ["a"]}}}), &both));
    // Fields sharing a parent, in an event whose other keys have dots.
    let mixed = json!({"order": {"id": 1, "amount": 5}, "order.currency": "EUR", "x.y": 1});
    assert!(hit(
        &json!({"data": {"order": {"amount": [5], "currency": ["EUR"]}}}),
        &mixed
    ));
    assert!(!hit(
        &json!({"data": {"order": {"amount": [5], "currency": ["USD"]}}}),
        &mixed
    ));
}

#[test]
fn fields_of_one_element() {
    let data = json!({"items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 9}]});
    let both = |sku: &str, qty: i64| {
        hit(
            &json!({"data": {"items": {"sku": [sku], "qty": [{"numeric": [">=", qty]}]}}}),
            &data,
        )
    };
    assert!(both("a", 1));
    assert!(both("b", 5));
    assert!(!both("a", 5), "sku a and qty >= 5 are in different items");
    // An element chosen for one field binds the fields after it, even through `$or`.
    assert!(hit(
        &json!({"data": {"items": {"sku": ["b"], "$or": [{"qty": [1]}, {"qty": [9]}]}}}),
        &data
    ));
    // Scalars in an array belong to no element: they go with any element.
    let mixed = json!({"mix": ["s", {"k": 1}, {"k": 2}]});
    assert!(hit(&json!({"data": {"mix": ["s"], "mix.k": [2]}}), &mixed));
}

#[test]
fn exists_false_in_arrays_follows_the_order_of_field_names() {
    // EventBridge takes the fields by name. When the absent field comes first, any
    // element having it counts; when it comes after, only the element chosen so far.
    let data = json!({"items": [{"a": 1, "z": 1}, {"b": 1}]});
    assert!(!hit(
        &json!({"data": {"items": {"a": [{"exists": false}], "b": [1]}}}),
        &data
    ));
    assert!(hit(
        &json!({"data": {"items": {"z": [{"exists": false}], "b": [1]}}}),
        &data
    ));
    assert!(hit(
        &json!({"data": {"items": {"b": [1], "c": [{"exists": false}]}}}),
        &data
    ));
}

#[test]
fn many_array_elements_stay_cheap() {
    // Every pair of elements of two arrays fails; the walk remembers failed states.
    let a: Vec<Value> = (0..400).map(|i| json!({"x": i, "y": "k"})).collect();
    let b: Vec<Value> = (0..400).map(|i| json!({"p": i, "q": "k"})).collect();
    let data = json!({"a": a, "b": b});
    let pattern = json!({"data": {
        "a": {"x": [{"numeric": [">=", 0]}], "y": ["k"]},
        "b": {"p": [{"numeric": [">=", 0]}], "q": ["nope"]}
    }});
    let started = std::time::Instant::now();
    assert!(!hit(&pattern, &data));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn or_expands_into_alternatives() {
    let data = json!({"a": 1, "b": 2});
    let pattern = json!({"data": {"$or": [{"a": [1]}, {"a": [3]}], "b": [2]}});
    assert!(hit(&pattern, &data));
    assert_eq!(Pattern::compile(&pattern).unwrap().alternatives.len(), 2);
    // Alternatives of alternatives multiply.
    let nested = json!({"$or": [
        {"data": {"$or": [{"a": [1]}, {"a": [2]}]}},
        {"type": ["t"], "$or": [{"source": ["x"]}, {"source": ["y"]}]}
    ]});
    assert_eq!(Pattern::compile(&nested).unwrap().alternatives.len(), 4);
}

#[test]
fn limits() {
    let four: Vec<Value> = (0..4).map(|i| json!({ format!("k{i}"): [i] })).collect();
    let mut level = json!({"x": [0]});
    for _ in 0..6 {
        level = json!({"$or": four.clone(), "next": level});
    }
    assert!(error(&json!({ "data": level })).contains("combine into more than 1024 alternatives"));
    let wide: serde_json::Map<String, Value> =
        (0..300).map(|i| (format!("f{i:03}"), json!([i]))).collect();
    assert!(error(&json!({"data": wide})).contains("at most 256 fields"));
}

#[test]
fn eventbridge_names_point_to_cloudevents_ones() {
    assert_eq!(
        error(&json!({"detail": {"state": ["running"]}})),
        "detail: EventBridge's `detail` is `data` in a CloudEvent; write `data`"
    );
    assert!(error(&json!({"detail-type": ["x"]})).contains("write `type`"));
    // An extension called `detail` is still an attribute.
    assert!(Pattern::compile(&json!({"detail": ["x"]})).is_ok());
}

#[test]
fn reserved_names_inside_or() {
    assert!(
        error(&json!({"$or": [{"prefix": ["a"]}, {"type": ["b"]}]}))
            .starts_with("$or[0].prefix: `prefix` is a matcher")
    );
    assert!(
        error(&json!({"data": {"$or": [{"x": {"exists": [true]}}, {"y": [1]}]}}))
            .starts_with("data.$or[0].x.exists: `exists` is a matcher")
    );
    // Outside `$or` they are ordinary field names.
    assert!(hit(
        &json!({"data": {"prefix": ["a"]}}),
        &json!({"prefix": "a"})
    ));
}

#[test]
fn guards_skip_what_equals_other_spellings() {
    let guard = |v: Value| Pattern::compile(&v).unwrap().guard();
    assert!(guard(json!({"data": {"ip": ["2001:db8::1"]}})).is_none());
    assert!(guard(json!({"data": {"ip": ["not an ip"]}})).is_some());
    assert!(guard(json!({"data": {"x": [{"anything-but": "a"}]}})).is_none());
    assert!(guard(json!({"data": {"x": ["a", {"exists": false}]}})).is_none());
    assert_eq!(
        Pattern::compile(&json!({"type": ["10.0.0.1"]}))
            .unwrap()
            .type_equality(),
        None
    );
}
