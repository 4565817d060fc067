//! Content pattern semantics and compile errors.

use serde_json::{Value, json};

use super::*;

fn event_with(data: &Value) -> Event<'_> {
    Event::new("id-1", "/shop/eu", "1.0", "com.example.order")
        .with_subject("orders/42")
        .with_extension("sequence", "17")
        .with_extension("clientip", "10.1.2.3")
        .with_data(data)
}

/// Whether `pattern` matches an event whose data is `data`.
fn hit(pattern: &Value, data: &Value) -> bool {
    let p = Pattern::compile(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
    p.matches(&event_with(data))
}

fn compile_error(pattern: &Value) -> String {
    Pattern::compile(pattern)
        .expect_err("the pattern should be rejected")
        .to_string()
}

#[test]
fn exact_values_by_json_type() {
    let data = json!({"s": "5", "n": 5, "f": 2.5, "b": true, "z": null, "e": ""});
    assert!(hit(&json!({"data": {"s": ["5"]}}), &data));
    assert!(
        !hit(&json!({"data": {"s": [5]}}), &data),
        "string is not number"
    );
    assert!(hit(&json!({"data": {"n": [5]}}), &data));
    assert!(
        hit(&json!({"data": {"n": [5.0]}}), &data),
        "numbers compare numerically"
    );
    assert!(!hit(&json!({"data": {"n": ["5"]}}), &data));
    assert!(hit(&json!({"data": {"f": [2.5]}}), &data));
    assert!(hit(&json!({"data": {"b": [true]}}), &data));
    assert!(!hit(&json!({"data": {"b": [false]}}), &data));
    assert!(hit(&json!({"data": {"z": [null]}}), &data));
    assert!(
        !hit(&json!({"data": {"e": [null]}}), &data),
        "\"\" is not null"
    );
    assert!(hit(&json!({"data": {"e": [""]}}), &data));
    assert!(
        !hit(&json!({"data": {"missing": [null]}}), &data),
        "absent is not null"
    );
}

#[test]
fn attributes_are_matched_by_name() {
    let data = json!({});
    assert!(hit(&json!({"type": ["com.example.order"]}), &data));
    assert!(hit(&json!({"type": ["x", "com.example.order"]}), &data));
    assert!(!hit(&json!({"type": ["com.example"]}), &data));
    assert!(hit(&json!({"source": [{"prefix": "/shop/"}]}), &data));
    assert!(hit(&json!({"subject": [{"suffix": "/42"}]}), &data));
    // String attributes read as numbers for numeric matchers.
    assert!(hit(&json!({"sequence": [{"numeric": [">", 10]}]}), &data));
    assert!(hit(&json!({"sequence": [17]}), &data));
    assert!(hit(&json!({"clientip": [{"cidr": "10.0.0.0/8"}]}), &data));
    assert!(
        !hit(&json!({"time": [{"prefix": ""}]}), &data),
        "time is absent"
    );
    assert!(hit(&json!({"time": [{"exists": false}]}), &data));
    assert!(hit(&json!({"subject": [{"exists": true}]}), &data));
}

#[test]
fn typed_extensions_match_their_string_form() {
    let ev = Event::new("1", "/s", "1.0", "t")
        .with_extension("count", 12)
        .with_extension("flag", true);
    let p = |v: Value| Pattern::compile(&v).unwrap().matches(&ev);
    assert!(p(json!({"count": [12]})));
    assert!(p(json!({"count": ["12"]})));
    assert!(p(json!({"count": [{"numeric": [">=", 12]}]})));
    assert!(p(json!({"flag": [true]})));
    assert!(p(json!({"flag": ["true"]})));
}

#[test]
fn prefix_suffix_and_ignore_case() {
    let data = json!({"file": "Report.PNG", "service": "EventBridge"});
    assert!(hit(&json!({"data": {"file": [{"prefix": "Rep"}]}}), &data));
    assert!(!hit(&json!({"data": {"file": [{"prefix": "rep"}]}}), &data));
    assert!(hit(
        &json!({"data": {"file": [{"prefix": {"equals-ignore-case": "REPORT"}}]}}),
        &data
    ));
    assert!(!hit(
        &json!({"data": {"file": [{"suffix": ".png"}]}}),
        &data
    ));
    assert!(hit(
        &json!({"data": {"file": [{"suffix": {"equals-ignore-case": ".png"}}]}}),
        &data
    ));
    assert!(hit(
        &json!({"data": {"service": [{"equals-ignore-case": "eventbridge"}]}}),
        &data
    ));
    assert!(!hit(
        &json!({"data": {"service": [{"equals-ignore-case": "eventbridg"}]}}),
        &data
    ));
}

#[test]
fn prefix_never_matches_non_strings() {
    let data = json!({"n": 123});
    assert!(!hit(&json!({"data": {"n": [{"prefix": "1"}]}}), &data));
}

#[test]
fn wildcard_with_escapes() {
    let data = json!({"path": "/var/lib/app/x.log", "star": "a*b", "slash": "a\\b"});
    assert!(hit(
        &json!({"data": {"path": [{"wildcard": "*/lib/*"}]}}),
        &data
    ));
    assert!(hit(
        &json!({"data": {"path": [{"wildcard": "/var/*.log"}]}}),
        &data
    ));
    assert!(!hit(
        &json!({"data": {"path": [{"wildcard": "*/bin/*"}]}}),
        &data
    ));
    assert!(hit(
        &json!({"data": {"star": [{"wildcard": "a\\*b"}]}}),
        &data
    ));
    assert!(!hit(
        &json!({"data": {"path": [{"wildcard": "a\\*b"}]}}),
        &data
    ));
    assert!(hit(
        &json!({"data": {"slash": [{"wildcard": "a\\\\b"}]}}),
        &data
    ));
}

#[test]
fn anything_but_forms() {
    let data = json!({"state": "running", "limit": 7, "region": "us-east-1", "z": null});
    let p = |m: Value, field: &str| hit(&json!({"data": {field: [{"anything-but": m}]}}), &data);
    assert!(p(json!("stopped"), "state"));
    assert!(!p(json!("running"), "state"));
    assert!(p(json!(["stopped", "pending"]), "state"));
    assert!(!p(json!(["stopped", "running"]), "state"));
    assert!(p(json!(5), "limit"));
    assert!(!p(json!([5, 7]), "limit"));
    assert!(
        p(json!(["7"]), "limit"),
        "a number is not excluded by strings"
    );
    assert!(!p(json!({"prefix": "us-"}), "region"));
    assert!(p(json!({"prefix": "eu-"}), "region"));
    assert!(!p(json!({"suffix": "-1"}), "region"));
    assert!(p(json!({"suffix": "-2"}), "region"));
    assert!(!p(json!({"equals-ignore-case": "RUNNING"}), "state"));
    assert!(p(
        json!({"equals-ignore-case": ["STOPPED", "Pending"]}),
        "state"
    ));
    assert!(!p(json!({"wildcard": "us-*"}), "region"));
    assert!(p(json!({"wildcard": ["eu-*", "ap-*"]}), "region"));
    assert!(!p(json!("x"), "missing"), "anything-but needs the field");
    assert!(p(json!("x"), "z"), "anything-but does not exclude null");
}

#[test]
fn numeric_ranges() {
    let data = json!({"a": 0, "b": 5, "c": 5.5, "d": -3, "s": "5"});
    let p = |range: Value, field: &str| hit(&json!({"data": {field: [{"numeric": range}]}}), &data);
    assert!(!p(json!([">", 0, "<=", 5]), "a"));
    assert!(p(json!([">", 0, "<=", 5]), "b"));
    assert!(!p(json!([">", 0, "<=", 5]), "c"));
    assert!(p(json!(["=", 5]), "b"));
    assert!(!p(json!(["=", 5]), "c"));
    assert!(p(json!([">=", -3]), "d"));
    assert!(p(json!(["<", 0]), "d"));
    assert!(!p(json!([">", -3]), "d"));
    assert!(!p(json!(["=", 5]), "s"), "a JSON string is not numeric");
}

#[test]
fn cidr_v4_and_v6() {
    let data = json!({"v4": "192.168.10.20", "v6": "2001:db8:1::5", "bad": "nope"});
    let p = |block: &str, field: &str| hit(&json!({"data": {field: [{"cidr": block}]}}), &data);
    assert!(p("192.168.0.0/16", "v4"));
    assert!(!p("192.168.11.0/24", "v4"));
    assert!(p("2001:db8::/32", "v6"));
    assert!(!p("2001:db9::/32", "v6"));
    assert!(!p("192.168.0.0/16", "v6"));
    assert!(!p("0.0.0.0/0", "bad"));
}

#[test]
fn exists_true_and_false() {
    let data = json!({"present": null, "obj": {"x": 1}, "list": []});
    assert!(hit(
        &json!({"data": {"present": [{"exists": true}]}}),
        &data
    ));
    assert!(!hit(
        &json!({"data": {"present": [{"exists": false}]}}),
        &data
    ));
    assert!(hit(&json!({"data": {"gone": [{"exists": false}]}}), &data));
    assert!(!hit(&json!({"data": {"gone": [{"exists": true}]}}), &data));
    assert!(hit(
        &json!({"data": {"obj": {"y": [{"exists": false}]}}}),
        &data
    ));
    // A whole missing branch: every leaf under it is absent.
    assert!(hit(
        &json!({"data": {"nothere": {"y": [{"exists": false}]}}}),
        &data
    ));
    assert!(!hit(
        &json!({"data": {"nothere": {"y": [{"exists": true}]}}}),
        &data
    ));
    // An empty list has no value, an object is not one.
    assert!(!hit(&json!({"data": {"list": [{"exists": true}]}}), &data));
    assert!(hit(&json!({"data": {"list": [{"exists": false}]}}), &data));
    assert!(!hit(&json!({"data": {"obj": [{"exists": true}]}}), &data));
    assert!(hit(&json!({"data": {"obj": [{"exists": false}]}}), &data));
    // exists:false or a value.
    assert!(hit(
        &json!({"data": {"gone": [{"exists": false}, "x"]}}),
        &data
    ));
}

#[test]
fn exists_false_matches_events_without_data() {
    let ev = Event::new("1", "/s", "1.0", "t");
    let p = |v: Value| Pattern::compile(&v).unwrap().matches(&ev);
    assert!(p(json!({"data": {"x": [{"exists": false}]}})));
    assert!(!p(json!({"data": {"x": ["a"]}})));
    assert!(p(json!({"data": [{"exists": false}]})));
}

#[test]
fn arrays_match_when_any_element_matches() {
    let data = json!({
        "tags": ["red", "green"],
        "amounts": [1, 50, 200],
        "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 9}]
    });
    assert!(hit(&json!({"data": {"tags": ["green"]}}), &data));
    assert!(!hit(&json!({"data": {"tags": ["blue"]}}), &data));
    assert!(hit(
        &json!({"data": {"amounts": [{"numeric": [">", 100]}]}}),
        &data
    ));
    assert!(hit(&json!({"data": {"items": {"sku": ["b"]}}}), &data));
    // Both fields must hold in the same element.
    assert!(hit(
        &json!({"data": {"items": {"sku": ["b"], "qty": [{"numeric": [">", 5]}]}}}),
        &data
    ));
    assert!(!hit(
        &json!({"data": {"items": {"sku": ["a"], "qty": [{"numeric": [">", 5]}]}}}),
        &data
    ));
}

#[test]
fn nested_objects() {
    let data = json!({"customer": {"address": {"country": "DE"}, "tier": "gold"}});
    assert!(hit(
        &json!({"data": {"customer": {"address": {"country": ["DE"]}, "tier": ["gold"]}}}),
        &data
    ));
    assert!(!hit(
        &json!({"data": {"customer": {"address": {"country": ["FR"]}}}}),
        &data
    ));
    // An object where the pattern expects a scalar does not match a value.
    assert!(!hit(&json!({"data": {"customer": ["gold"]}}), &data));
}

#[test]
fn or_alternatives_at_any_level() {
    let data = json!({"country": "DE", "express": false, "amount": 20});
    assert!(hit(
        &json!({"data": {"$or": [{"country": ["FR"]}, {"amount": [{"numeric": ["<", 50]}]}]}}),
        &data
    ));
    assert!(!hit(
        &json!({"data": {"$or": [{"country": ["FR"]}, {"express": [true]}]}}),
        &data
    ));
    // `$or` combines with the other fields by AND.
    assert!(!hit(
        &json!({"data": {"country": ["FR"], "$or": [{"express": [false]}, {"amount": [20]}]}}),
        &data
    ));
    // Top level: alternatives over attributes and data.
    assert!(hit(
        &json!({"$or": [{"type": ["nope"]}, {"data": {"country": ["DE"]}}]}),
        &data
    ));
    assert!(!hit(
        &json!({"$or": [{"type": ["nope"]}, {"source": ["nope"]}]}),
        &data
    ));
}

#[test]
fn data_as_a_leaf() {
    assert!(hit(&json!({"data": ["plain"]}), &json!("plain")));
    assert!(hit(&json!({"data": [{"prefix": "pl"}]}), &json!("plain")));
    assert!(hit(&json!({"data": [3]}), &json!([1, 2, 3])));
}

#[test]
fn needs_data_and_type_equality() {
    let p = |v: Value| Pattern::compile(&v).unwrap();
    assert!(p(json!({"data": {"a": [1]}})).needs_data());
    assert!(p(json!({"$or": [{"type": ["a"]}, {"data": {"a": [1]}}]})).needs_data());
    assert!(!p(json!({"type": ["a"], "source": ["b"]})).needs_data());
    assert_eq!(p(json!({"type": ["a"]})).type_equality(), Some("a"));
    assert_eq!(p(json!({"type": ["a", "b"]})).type_equality(), None);
    assert_eq!(p(json!({"type": [{"prefix": "a"}]})).type_equality(), None);
    assert_eq!(
        p(json!({"type": ["a"], "source": ["b"]})).type_equality(),
        None
    );
}

/// Every pattern must be rejected with a message that starts with the given text.
fn check_errors(cases: &[(Value, &str)]) {
    for (pattern, want) in cases {
        let got = compile_error(pattern);
        assert!(
            got.starts_with(want),
            "{pattern}\n  got:  {got}\n  want: {want}…"
        );
    }
}

#[test]
fn numeric_errors_say_where_and_why() {
    check_errors(&[
        (
            json!({"data": {"amount": [{"numeric": [">", "x"]}]}}),
            "data.amount[0].numeric[1]: expected a number after `>`",
        ),
        (
            json!({"data": {"amount": [{"numeric": [">"]}]}}),
            "data.amount[0].numeric: numeric takes",
        ),
        (
            json!({"data": {"amount": [{"numeric": ["~", 1]}]}}),
            "data.amount[0].numeric[0]: unknown comparison `~`",
        ),
        (
            json!({"data": {"amount": [{"numeric": [">", 5, "<", 1]}]}}),
            "data.amount[0].numeric: the lower bound 5 must be below the upper bound 1",
        ),
        (
            json!({"data": {"amount": [{"numeric": [">", 1, ">=", 2]}]}}),
            "data.amount[0].numeric[2]: the second bound must be an upper bound",
        ),
        (
            json!({"data": {"amount": [{"numeric": ["=", 1, "<", 2]}]}}),
            "data.amount[0].numeric: `=` cannot be combined",
        ),
    ]);
}

#[test]
fn matcher_errors_say_where_and_why() {
    check_errors(&[
        (
            json!({"data": {"a": [{"bogus": 1}]}}),
            "data.a[0].bogus: unknown operator `bogus`",
        ),
        (
            json!({"data": {"a": [{"prefix": "x", "suffix": "y"}]}}),
            "data.a[0]: a matcher object has exactly one operator, found 2",
        ),
        (
            json!({"data": {"a": [{"prefix": 1}]}}),
            "data.a[0].prefix: prefix takes a string, found a number",
        ),
        (
            json!({"data": {"a": [{"prefix": {"x": "y"}}]}}),
            "data.a[0].prefix: prefix takes a string or",
        ),
        (
            json!({"data": {"a": [{"cidr": "10.0.0.0/40"}]}}),
            "data.a[0].cidr: prefix length 40 is over 31",
        ),
        (
            json!({"data": {"a": [{"exists": "yes"}]}}),
            "data.a[0].exists: exists takes true or false",
        ),
        (
            json!({"data": {"a": [{"wildcard": "a**b"}]}}),
            "data.a[0].wildcard: `a**b`: consecutive `*`",
        ),
        (
            json!({"data": {"a": [{"wildcard": "a\\b"}]}}),
            "data.a[0].wildcard: `a\\b`: only",
        ),
        (
            json!({"data": {"a": [{"anything-but": [1, "x"]}]}}),
            "data.a[0].anything-but: anything-but takes a non-empty list",
        ),
        (
            json!({"data": {"a": [{"anything-but": {"numeric": [">", 1]}}]}}),
            "data.a[0].anything-but.numeric: anything-but does not take `numeric`",
        ),
        (
            json!({"data": {"a": [{"anything-but": {"wildcard": ["ok*", "x**"]}}]}}),
            "data.a[0].anything-but.wildcard[1]: `x**`",
        ),
        (
            json!({"data": {"a": [{"anything-but": true}]}}),
            "data.a[0].anything-but: anything-but takes a string, a number",
        ),
    ]);
}

#[test]
fn structure_errors_say_where_and_why() {
    check_errors(&[
        (
            json!({"data": {"a": 5}}),
            "data.a: expected a list of matchers or a nested object, found a number",
        ),
        (
            json!({"data": {"a": []}}),
            "data.a: an empty list of matchers",
        ),
        (
            json!({"data": {"a": [[1]]}}),
            "data.a[0]: lists cannot nest",
        ),
        (
            json!({"data": {"$or": []}}),
            "data.$or: `$or` needs at least two alternatives",
        ),
        (
            json!({"data": {"$or": [{"a": [1]}, {"b": 2}]}}),
            "data.$or[1].b: expected a list",
        ),
        (
            json!({"Type": ["x"]}),
            "Type: `Type` is not a context attribute name",
        ),
        (
            json!({"type": "x"}),
            "type: a context attribute takes a list of matchers",
        ),
        (
            json!({"data": 1}),
            "data: expected a list of matchers or a nested object",
        ),
        (
            json!({"data": {}}),
            "data: an empty pattern object matches nothing",
        ),
        (json!({}), "an empty pattern object"),
        (json!([1]), "expected an object, found a list"),
    ]);
}

#[test]
fn error_paths_can_start_inside_a_larger_document() {
    let err = Pattern::compile_at(
        &json!({"data": {"a": [{"numeric": 1}]}}),
        "filters[2].pattern",
    )
    .unwrap_err();
    assert_eq!(err.path, "filters[2].pattern.data.a[0].numeric");
}
