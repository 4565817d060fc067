//! Trigger filters as users write them (YAML), compiled and evaluated through the
//! public API: Knative attribute filters, the subscriptions-API dialects, CESQL and
//! content patterns, plus compile errors and the exact-type push-down.

use herald_filter::{CompiledFilter, Event, FilterError, FilterErrorReason, FilterSpec};
use serde_json::{Value, json};

/// Compiles the `filter`/`filters` of a Trigger spec written in YAML.
fn compile(yaml: &str) -> Result<CompiledFilter, FilterError> {
    let spec: FilterSpec = serde_yaml::from_str(yaml).expect("valid YAML");
    CompiledFilter::compile(&spec)
}

fn compiled(yaml: &str) -> CompiledFilter {
    compile(yaml).unwrap_or_else(|e| panic!("{yaml}\n{e}"))
}

fn error(yaml: &str) -> String {
    compile(yaml)
        .expect_err("the filters should be rejected")
        .to_string()
}

fn order(ty: &str) -> Event<'_> {
    Event::new("id-1", "/shop/eu/orders", "1.0", ty)
        .with_subject("orders/42")
        .with_extension("tenant", "acme")
        .with_extension("priority", 3)
}

#[test]
fn a_trigger_without_filters_matches_everything() {
    let f = compiled("broker: default\nsubscriber: {uri: http://x}\n");
    assert!(f.is_match_all());
    assert!(f.matches(&order("anything")));
    assert_eq!(f.exact_type(), None);
}

#[test]
fn knative_attribute_filter() {
    let f =
        compiled("filter:\n  attributes:\n    type: com.example.order.created\n    tenant: acme\n");
    assert!(f.matches(&order("com.example.order.created")));
    assert!(!f.matches(&order("com.example.order.deleted")));
    let other_tenant =
        Event::new("1", "/s", "1.0", "com.example.order.created").with_extension("tenant", "x");
    assert!(!f.matches(&other_tenant));

    // The empty value only requires the attribute.
    let f = compiled("filter:\n  attributes:\n    tenant: ''\n");
    assert!(f.matches(&order("t")));
    assert!(!f.matches(&Event::new("1", "/s", "1.0", "t")));

    // Typed extensions compare by their string form.
    let f = compiled("filter:\n  attributes:\n    priority: '3'\n");
    assert!(f.matches(&order("t")));
}

#[test]
fn exact_prefix_suffix_dialects() {
    let f = compiled(
        r"
filters:
  - exact: {type: com.example.order.created, tenant: acme}
  - prefix: {source: /shop/}
  - suffix: {subject: /42}
",
    );
    assert!(f.matches(&order("com.example.order.created")));
    assert!(!f.matches(&order("com.example.order.created.v2")));
    let no_subject = Event::new("1", "/shop/x", "1.0", "com.example.order.created")
        .with_extension("tenant", "acme");
    assert!(!f.matches(&no_subject), "an absent attribute never matches");
}

#[test]
fn all_any_not_nest() {
    let f = compiled(
        r#"
filters:
  - any:
      - exact: {type: a}
      - all:
          - prefix: {type: "b."}
          - not: {suffix: {type: ".debug"}}
"#,
    );
    assert!(f.matches(&order("a")));
    assert!(f.matches(&order("b.created")));
    assert!(!f.matches(&order("b.created.debug")));
    assert!(!f.matches(&order("c")));

    let everything = compiled("filters:\n  - all: []\n");
    assert!(everything.is_match_all());
    assert!(everything.matches(&order("x")));

    let not_not = compiled("filters:\n  - not: {not: {exact: {type: a}}}\n");
    assert!(not_not.matches(&order("a")));
    assert_eq!(not_not.exact_type(), Some("a"), "double negation cancels");
}

#[test]
fn cesql_dialect() {
    let f = compiled(
        r#"
filters:
  - cesql: "type LIKE 'com.example.%' AND priority > 2 AND LOWER(tenant) = 'acme'"
"#,
    );
    assert!(f.matches(&order("com.example.order")));
    assert!(!f.matches(&order("org.example.order")));
    // An evaluation error (missing attribute) is a non-match, even under NOT.
    let f = compiled("filters:\n  - cesql: \"NOT (missing = 'x')\"\n");
    assert!(!f.matches(&order("t")));
    // A bare attribute may be a typed boolean extension.
    let f = compiled("filters:\n  - cesql: flag\n");
    assert!(f.matches(&Event::new("1", "/s", "1.0", "t").with_extension("flag", true)));
    assert!(!f.matches(&Event::new("1", "/s", "1.0", "t").with_extension("flag", "no")));
}

#[test]
fn pattern_dialect_on_data() {
    let f = compiled(
        r#"
filters:
  - exact: {type: com.example.order.created}
  - pattern:
      source: [{prefix: /shop/}]
      data:
        amount: [{numeric: [">", 100]}]
        customer: {tier: [gold, platinum]}
"#,
    );
    assert!(f.needs_data());
    assert_eq!(f.indexed_type(), Some("com.example.order.created"));
    assert_eq!(f.exact_type(), None);
    let big = json!({"amount": 250, "customer": {"tier": "gold"}});
    let small = json!({"amount": 50, "customer": {"tier": "gold"}});
    assert!(f.matches(&order("com.example.order.created").with_data(&big)));
    assert!(!f.matches(&order("com.example.order.created").with_data(&small)));
    assert!(!f.matches(&order("com.example.order.created")), "no data");
}

#[test]
fn exact_type_push_down() {
    let exact = |yaml: &str| compiled(yaml).exact_type().map(str::to_owned);
    let some = |t: &str| Some(t.to_owned());
    assert_eq!(exact("filter: {attributes: {type: a}}"), some("a"));
    assert_eq!(exact("filters: [{exact: {type: a}}]"), some("a"));
    assert_eq!(exact("filters: [{pattern: {type: [a]}}]"), some("a"));
    assert_eq!(exact("filters: [{cesql: \"type = 'a'\"}]"), some("a"));
    assert_eq!(exact("filters: [{all: [{exact: {type: a}}]}]"), some("a"));
    assert_eq!(exact("filters: [{any: [{exact: {type: a}}]}]"), some("a"));
    assert_eq!(
        exact("filter: {attributes: {type: a}}\nfilters: [{exact: {type: a}}]"),
        some("a")
    );
    assert_eq!(exact("filters: [{exact: {type: a, source: s}}]"), None);
    assert_eq!(
        exact("filters: [{exact: {type: a}}, {exact: {type: b}}]"),
        None
    );
    assert_eq!(exact("filters: [{prefix: {type: a}}]"), None);
    assert_eq!(exact("filters: [{not: {exact: {type: a}}}]"), None);
    assert_eq!(exact("filters: [{pattern: {type: [a, b]}}]"), None);
    assert_eq!(
        exact("filters: [{cesql: \"type = 'a' OR type = 'b'\"}]"),
        None
    );
    assert_eq!(exact("filter: {attributes: {type: ''}}"), None);
    assert_eq!(exact("{}"), None);
}

#[test]
fn a_whole_trigger_spec_deserializes() {
    let spec: Value = serde_yaml::from_str(
        r"
broker: default
filter:
  attributes: {type: com.example.a}
filters:
  - cesql: source LIKE '/shop/%'
subscriber: {uri: 'http://sink.default.svc'}
delivery: {retry: 3}
",
    )
    .expect("yaml");
    let spec: FilterSpec = serde_json::from_value(spec).expect("filter fields");
    let f = CompiledFilter::compile(&spec).expect("valid");
    assert!(f.matches(&order("com.example.a")));
    assert!(!f.matches(&order("com.example.b")));
}

#[test]
fn null_dialects_are_unset() {
    // How an API struct with optional dialect fields may serialize.
    let f =
        CompiledFilter::from_filter(&json!({"exact": null, "cesql": "type = 'a'", "any": null}))
            .expect("one dialect");
    assert!(f.matches(&order("a")));
}

#[test]
fn dialect_errors_say_where_and_why() {
    let cases = [
        ("filters: [{}]", "filters[0]: a filter needs one dialect"),
        (
            "filters: [{exact: {type: a}, prefix: {type: b}}]",
            "filters[0]: a filter has exactly one dialect, found exact, prefix",
        ),
        (
            "filters: [{exakt: {type: a}}]",
            "filters[0].exakt: unknown dialect `exakt`",
        ),
        (
            "filters: [{exact: {}}]",
            "filters[0].exact: `exact` needs at least one attribute",
        ),
        (
            "filters: [{exact: {type: ''}}]",
            "filters[0].exact.type: the value must not be empty",
        ),
        (
            "filters: [{prefix: {Type: a}}]",
            "filters[0].prefix.Type: `Type` is not a CloudEvents attribute name",
        ),
        (
            "filters: [{suffix: {type: 1}}]",
            "filters[0].suffix.type: expected a string, found a number",
        ),
        (
            "filters: [{exact: [type]}]",
            "filters[0].exact: expected a map of attribute to value, found a list",
        ),
        (
            "filters: [{any: []}]",
            "filters[0].any: `any` needs at least one filter",
        ),
        (
            "filters: [{all: {exact: {type: a}}}]",
            "filters[0].all: expected a list of filters, found an object",
        ),
        (
            "filters: [{not: [{exact: {type: a}}]}]",
            "filters[0].not: expected a filter object, found a list",
        ),
        (
            "filters: [{any: [{exact: {type: a}}, {cesql: 'a ='}]}]",
            "filters[0].any[1].cesql: CESQL expression does not parse at offset 3",
        ),
        (
            "filters: [{cesql: 'NOPE(type)'}]",
            "filters[0].cesql: CESQL expression calls unknown function(s) NOPE/1",
        ),
        (
            "filters: [{cesql: 'LENGTH(type)'}]",
            "filters[0].cesql: CESQL expression evaluates to Integer; a filter needs a Boolean",
        ),
        (
            "filters: [{cesql: true}]",
            "filters[0].cesql: expected a CESQL expression string, found a boolean",
        ),
        (
            "filters: [{exact: {type: a}}, {pattern: {data: {amount: [{numeric: ['>', x]}]}}}]",
            "filters[1].pattern.data.amount[0].numeric[1]: expected a number after `>`",
        ),
        (
            "filters: [{pattern: {data: {amount: [{numeric: 5}]}}}]",
            "filters[0].pattern.data.amount[0].numeric: numeric takes",
        ),
        (
            "filters: ['type = a']",
            "filters[0]: expected a filter object, found a string",
        ),
        (
            "filter: {attributes: {'my-ext': a}}",
            "filter.attributes.my-ext: `my-ext` is not a CloudEvents attribute name",
        ),
    ];
    for (yaml, want) in cases {
        let got = error(yaml);
        assert!(
            got.starts_with(want),
            "{yaml}\n  got:  {got}\n  want: {want}…"
        );
    }
}

#[test]
fn errors_are_typed() {
    let err = compile("filters: [{cesql: '1 +'}]").unwrap_err();
    assert_eq!(err.path, "filters[0].cesql");
    assert!(matches!(err.reason, FilterErrorReason::CesqlParse(ref p) if p.position == 3));
    let err = compile("filters: [{pattern: {type: x}}]").unwrap_err();
    assert_eq!(err.path, "filters[0].pattern.type");
    assert!(matches!(err.reason, FilterErrorReason::Pattern(_)));
}

/// Every YAML example of `docs/filters.md` that has filters compiles.
#[test]
fn documentation_examples_compile() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/filters.md");
    let text = std::fs::read_to_string(&path).expect("docs/filters.md");
    let mut checked = 0;
    for block in text.split("```yaml\n").skip(1) {
        let yaml = block.split("```").next().unwrap_or_default();
        let mut doc: Value = serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}\n{e}"));
        if let Some(spec) = doc.get("spec") {
            doc = spec.clone();
        }
        let spec: FilterSpec = serde_json::from_value(doc).expect("filter fields");
        if let Err(e) = CompiledFilter::compile(&spec) {
            panic!("docs example does not compile:\n{yaml}\n{e}");
        }
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} YAML examples found");
}

/// Builds `{key: {key: ... leaf}}` nested `depth` levels deep without recursion (the
/// `json!` macro would re-serialize the inner value recursively; `serde_json`'s parser
/// stops at 128 levels, programmatic values have no such limit).
fn nested(depth: usize, key: &str, leaf: serde_json::Value) -> serde_json::Value {
    (0..depth).fold(leaf, |inner, _| {
        let mut map = serde_json::Map::new();
        map.insert(key.to_owned(), inner);
        serde_json::Value::Object(map)
    })
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    use herald_filter::CompiledFilter;
    use serde_json::json;
    let deep_not = nested(100_000, "not", json!({"exact": {"type": "x"}}));
    let err = CompiledFilter::from_filter(&deep_not).unwrap_err();
    assert!(err.to_string().contains("nests deeper than 64"), "{err}");
    let deep_pattern = nested(
        1,
        "pattern",
        nested(1, "data", nested(100_000, "a", json!([1]))),
    );
    assert!(
        CompiledFilter::from_filter(&deep_pattern)
            .unwrap_err()
            .to_string()
            .contains("nests deeper")
    );
    let fine = nested(20, "not", json!({"exact": {"type": "x"}}));
    assert!(CompiledFilter::from_filter(&fine).is_ok());
    // Dropping a 100,000-level `serde_json::Value` recurses too; leak them on purpose.
    std::mem::forget(deep_not);
    std::mem::forget(deep_pattern);
}
