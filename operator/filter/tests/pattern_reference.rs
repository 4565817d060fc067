//! Content patterns agree with a plain reading of EventBridge's matching model, written
//! here as directly as possible: flatten the event into (dotted name, value, array
//! elements) triples, expand every `$or`, sort each alternative's fields by name and
//! search for values field by field, refusing two values from different elements of one
//! array; `{"exists": false}` holds when no value left is consistent with the elements
//! chosen so far. The engine does the same without flattening, with a fast path for
//! fields that cannot interact; generated patterns and events (keys with dots, arrays
//! of objects, arrays of arrays, `$or`, `exists`) must get the same answer.
//! Raise `PROPTEST_CASES` for a longer search.

use herald_filter::{CompiledFilter, Event};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// One value of the flattened event: its dotted name, the value, and the
/// (array, element) pairs of the arrays of objects or arrays it sits in.
struct Flat<'v> {
    name: String,
    value: &'v Value,
    elements: Vec<(usize, usize)>,
}

fn flatten<'v>(
    value: &'v Value,
    name: &str,
    elements: &mut Vec<(usize, usize)>,
    arrays: &mut usize,
    out: &mut Vec<Flat<'v>>,
) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let child_name = if name.is_empty() {
                    key.clone()
                } else {
                    format!("{name}.{key}")
                };
                flatten(child, &child_name, elements, arrays, out);
            }
        }
        Value::Array(items) => {
            let id = *arrays;
            *arrays += 1;
            for (i, item) in items.iter().enumerate() {
                if item.is_object() || item.is_array() {
                    elements.push((id, i));
                    flatten(item, name, elements, arrays, out);
                    elements.pop();
                } else {
                    flatten(item, name, elements, arrays, out);
                }
            }
        }
        scalar => out.push(Flat {
            name: name.to_owned(),
            value: scalar,
            elements: elements.clone(),
        }),
    }
}

/// The alternatives of a pattern over `data`: lists of (dotted name, matchers).
fn expand(pattern: &Map<String, Value>, prefix: &str, alts: &mut Vec<Vec<(String, Value)>>) {
    for (key, value) in pattern {
        if key == "$or" {
            let before = std::mem::take(alts);
            for alt in value.as_array().unwrap() {
                let mut branch = before.clone();
                expand(alt.as_object().unwrap(), prefix, &mut branch);
                alts.extend(branch);
            }
            continue;
        }
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) => expand(inner, &name, alts),
            list => alts
                .iter_mut()
                .for_each(|a| a.push((name.clone(), list.clone()))),
        }
    }
}

/// The few matchers the generator uses, read literally.
fn matches(matcher: &Value, value: &Value) -> bool {
    match matcher {
        Value::Object(op) => match op.iter().next().unwrap() {
            (k, arg) if k == "prefix" => value
                .as_str()
                .is_some_and(|s| s.starts_with(arg.as_str().unwrap())),
            (k, arg) if k == "anything-but" => value != arg,
            (k, arg) if k == "exists" => arg == &json!(true),
            other => panic!("not generated: {other:?}"),
        },
        literal => literal == value,
    }
}

fn search(fields: &[(String, Value)], flat: &[Flat<'_>], chosen: &[(usize, usize)]) -> bool {
    let Some(((name, list), rest)) = fields.split_first() else {
        return true;
    };
    let consistent = |f: &&Flat<'_>| {
        f.name == *name
            && f.elements
                .iter()
                .all(|(a, i)| chosen.iter().all(|(b, j)| a != b || i == j))
    };
    let candidates: Vec<&Flat<'_>> = flat.iter().filter(consistent).collect();
    let list = list.as_array().unwrap();
    for f in &candidates {
        if list.iter().any(|m| matches(m, f.value)) {
            let mut more = chosen.to_vec();
            more.extend(f.elements.iter().copied());
            if search(rest, flat, &more) {
                return true;
            }
        }
    }
    candidates.is_empty() && list.contains(&json!({"exists": false})) && search(rest, flat, chosen)
}

fn reference(pattern: &Value, data: &Value) -> bool {
    let mut flat = Vec::new();
    flatten(data, "", &mut Vec::new(), &mut 0, &mut flat);
    let mut alts = vec![Vec::new()];
    expand(pattern.as_object().unwrap(), "", &mut alts);
    alts.into_iter().any(|mut fields| {
        fields.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
        search(&fields, &flat, &[])
    })
}

const KEYS: [&str; 3] = ["a", "b", "a.b"];

fn key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&KEYS[..])
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop::sample::select(vec!["x", "xy"]).prop_map(|s| json!(s)),
        1 => Just(json!(0)),
        1 => Just(Value::Null),
    ]
}

fn matcher() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => scalar(),
        1 => Just(json!({"prefix": "x"})),
        1 => Just(json!({"anything-but": "x"})),
        2 => Just(json!({"exists": true})),
        2 => Just(json!({"exists": false})),
    ]
}

fn pattern() -> impl Strategy<Value = Value> {
    let leaf = prop::collection::vec(matcher(), 1..2)
        .prop_map(Value::Array)
        .boxed();
    let level1 = object(leaf.clone()).boxed();
    let level2 = object(prop_oneof![leaf, level1.clone()].boxed()).boxed();
    prop_oneof![
        3 => level2.clone(),
        1 => (level1.clone(), level1, level2).prop_map(|(a, b, mut rest)| {
            rest.as_object_mut().unwrap().insert("$or".into(), json!([a, b]));
            rest
        }),
    ]
}

fn object(inner: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    prop::collection::btree_map(key(), inner, 1..3)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

/// Objects and arrays of objects, often: that is where fields meet.
fn data() -> impl Strategy<Value = Value> {
    let nested = scalar().prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            2 => prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            3 => object(inner),
        ]
    });
    object(nested)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn patterns_agree_with_the_reference(pattern in pattern(), data in data()) {
        let filter = CompiledFilter::from_filter(&json!({"pattern": {"data": pattern.clone()}}))
            .expect("generated patterns compile");
        let event = Event::new("1", "/s", "1.0", "t").with_data(&data);
        prop_assert_eq!(
            filter.matches(&event),
            reference(&pattern, &data),
            "pattern {} on data {}", pattern, data
        );
    }
}

#[test]
fn the_reference_reads_arrays_like_eventbridge() {
    let data = json!({"e": [{"f": "Anna", "l": "Smith"}, {"f": "Peter", "l": "Jones"}]});
    assert!(!reference(
        &json!({"e": {"f": ["Anna"], "l": ["Jones"]}}),
        &data
    ));
    assert!(reference(
        &json!({"e": {"f": ["Peter"], "l": ["Jones"]}}),
        &data
    ));
}
