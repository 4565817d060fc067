//! JSON Schema inference from event `data`, like EventBridge schema discovery: each
//! sampled value gives a schema, and schemas merge — field types united, `required`
//! kept for the fields every sample had.
//!
//! Schemas are plain JSON Schema values (a draft 2020-12 subset: `type`,
//! `properties`, `required`, `items`), so what a dispatcher infers merges directly with
//! what the `EventType` already holds, written by another replica or an earlier round.
//! A schema is bounded: [`MAX_DEPTH`] levels, [`MAX_PROPERTIES`] properties per
//! object and [`MAX_NODES`] sub-schemas in all; what lies beyond is left unconstrained
//! (`{}`), so a deep or wide payload costs a bounded amount of memory and apiserver space.

use serde_json::{Map, Value};

/// Nesting levels described; deeper values are left unconstrained.
pub const MAX_DEPTH: usize = 6;
/// Properties described per object; further ones are left out (JSON Schema allows
/// properties it does not list).
pub const MAX_PROPERTIES: usize = 64;
/// Sub-schemas in one schema, at most.
pub const MAX_NODES: usize = 512;
/// Array elements looked at per array.
const MAX_ITEMS_LOOKED_AT: usize = 16;

/// JSON types in the order a schema lists them.
const TYPES: [&str; 7] = [
    "null", "boolean", "integer", "number", "string", "array", "object",
];

/// The schema of one value.
#[must_use]
pub fn infer(value: &Value) -> Value {
    let mut budget = MAX_NODES;
    infer_at(value, 0, &mut budget)
}

fn infer_at(value: &Value, depth: usize, budget: &mut usize) -> Value {
    if depth >= MAX_DEPTH || *budget == 0 {
        return Value::Object(Map::new());
    }
    *budget -= 1;
    let mut schema = Map::new();
    schema.insert("type".into(), Value::from(json_type(value)));
    match value {
        Value::Object(fields) => {
            let mut properties = Map::new();
            let mut required = Vec::new();
            for (name, field) in fields.iter().take(MAX_PROPERTIES) {
                if *budget == 0 {
                    break;
                }
                properties.insert(name.clone(), infer_at(field, depth + 1, budget));
                required.push(Value::from(name.as_str()));
            }
            required.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            schema.insert("properties".into(), Value::Object(properties));
            if !required.is_empty() {
                schema.insert("required".into(), Value::Array(required));
            }
        }
        Value::Array(elements) => {
            let mut items: Option<Value> = None;
            for element in elements.iter().take(MAX_ITEMS_LOOKED_AT) {
                let one = infer_at(element, depth + 1, budget);
                items = Some(match items {
                    None => one,
                    Some(so_far) => merge_at(&so_far, &one, depth + 1, budget),
                });
            }
            if let Some(items) = items {
                schema.insert("items".into(), items);
            }
        }
        _ => {}
    }
    Value::Object(schema)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The schema both `a` and `b` describe: types united, properties of either,
/// `required` only what both require, items merged. `{}` (anything) absorbs the other.
#[must_use]
pub fn merge(a: &Value, b: &Value) -> Value {
    let mut budget = MAX_NODES;
    merge_at(a, b, 0, &mut budget)
}

/// The types a schema names (none for `{}` or a schema Herald did not write).
fn types_of(schema: &Map<String, Value>) -> Vec<&'static str> {
    let named: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    TYPES
        .iter()
        .copied()
        .filter(|t| named.contains(t))
        .collect()
}

fn merge_at(a: &Value, b: &Value, depth: usize, budget: &mut usize) -> Value {
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return Value::Object(Map::new());
    };
    let (types_a, types_b) = (types_of(a), types_of(b));
    if types_a.is_empty() || types_b.is_empty() || depth >= MAX_DEPTH || *budget == 0 {
        return Value::Object(Map::new());
    }
    *budget -= 1;
    let mut types: Vec<&str> = TYPES
        .iter()
        .copied()
        .filter(|t| types_a.contains(t) || types_b.contains(t))
        .collect();
    // An integer is a number: a field seen as both is a number.
    if types.contains(&"number") {
        types.retain(|t| *t != "integer");
    }
    let mut schema = Map::new();
    schema.insert(
        "type".into(),
        if types.len() == 1 {
            Value::from(types[0])
        } else {
            Value::from(types.clone())
        },
    );
    if types.contains(&"object") {
        merge_objects(&mut schema, (a, &types_a), (b, &types_b), depth, budget);
    }
    if types.contains(&"array") {
        let items = match (a.get("items"), b.get("items")) {
            (Some(x), Some(y)) => Some(merge_at(x, y, depth + 1, budget)),
            (Some(x), None) | (None, Some(x)) => Some(bounded_copy(x, depth + 1, budget)),
            (None, None) => None,
        };
        if let Some(items) = items {
            schema.insert("items".into(), items);
        }
    }
    Value::Object(schema)
}

/// Properties and `required` of the merge of two schemas, at least one an object.
fn merge_objects(
    schema: &mut Map<String, Value>,
    (a, types_a): (&Map<String, Value>, &[&str]),
    (b, types_b): (&Map<String, Value>, &[&str]),
    depth: usize,
    budget: &mut usize,
) {
    let properties = |s: &'_ Map<String, Value>| -> Map<String, Value> {
        s.get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (props_a, props_b) = (properties(a), properties(b));
    let mut merged = Map::new();
    for (name, pa) in props_a.iter().chain(props_b.iter()) {
        if merged.contains_key(name) {
            continue;
        }
        if merged.len() >= MAX_PROPERTIES || *budget == 0 {
            break;
        }
        let property = match (props_a.get(name), props_b.get(name)) {
            (Some(x), Some(y)) => merge_at(x, y, depth + 1, budget),
            _ => bounded_copy(pa, depth + 1, budget),
        };
        merged.insert(name.clone(), property);
    }
    // A field is required when every object either side saw had it; a side that was
    // never an object says nothing about fields.
    let required_of = |s: &Map<String, Value>, is_object: bool| -> Option<Vec<String>> {
        is_object.then(|| {
            s.get("required")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        })
    };
    let required = match (
        required_of(a, types_a.contains(&"object")),
        required_of(b, types_b.contains(&"object")),
    ) {
        (Some(x), Some(y)) => x.into_iter().filter(|n| y.contains(n)).collect(),
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => Vec::new(),
    };
    let mut required: Vec<String> = required
        .into_iter()
        .filter(|n| merged.contains_key(n))
        .collect();
    required.sort();
    required.dedup();
    schema.insert("properties".into(), Value::Object(merged));
    if !required.is_empty() {
        schema.insert("required".into(), Value::from(required));
    }
}

/// `schema` as Herald would have written it, within the bounds left.
fn bounded_copy(schema: &Value, depth: usize, budget: &mut usize) -> Value {
    merge_at(schema, schema, depth, budget)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn infer_all(values: &[Value]) -> Value {
        values
            .iter()
            .map(infer)
            .reduce(|a, b| merge(&a, &b))
            .expect("values")
    }

    #[test]
    fn one_value_gives_its_types_and_requires_its_fields() {
        assert_eq!(
            infer(
                &json!({"id": "A-1", "total": 5, "price": 2.5, "paid": true, "note": null,
                          "items": [{"sku": "x"}], "customer": {"id": 7}})
            ),
            json!({"type": "object", "required": ["customer", "id", "items", "note", "paid", "price", "total"],
                   "properties": {
                       "id": {"type": "string"}, "total": {"type": "integer"},
                       "price": {"type": "number"}, "paid": {"type": "boolean"},
                       "note": {"type": "null"},
                       "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}},
                       "customer": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}}})
        );
    }

    #[test]
    fn merged_samples_unite_types_and_require_what_all_had() {
        let schema = infer_all(&[
            json!({"id": "A-1", "total": 5, "coupon": "X"}),
            json!({"id": "A-2", "total": 5.5}),
            json!({"id": "A-3", "total": 1, "coupon": null}),
        ]);
        assert_eq!(
            schema,
            json!({"type": "object", "required": ["id", "total"], "properties": {
                "id": {"type": "string"}, "total": {"type": "number"},
                "coupon": {"type": ["null", "string"]}}})
        );
    }

    #[test]
    fn arrays_merge_their_elements_and_mixed_values_list_every_type() {
        assert_eq!(
            infer(&json!([1, "a", {"k": 1}, {"k": 2, "l": true}])),
            json!({"type": "array", "items": {"type": ["integer", "string", "object"],
                "properties": {"k": {"type": "integer"}, "l": {"type": "boolean"}}, "required": ["k"]}})
        );
        assert_eq!(
            infer_all(&[json!("text"), json!({"a": 1})]),
            json!({"type": ["string", "object"], "properties": {"a": {"type": "integer"}}, "required": ["a"]})
        );
    }

    #[test]
    fn anything_absorbs_and_foreign_schemas_are_tolerated() {
        let any = json!({});
        assert_eq!(merge(&any, &infer(&json!({"a": 1}))), json!({}));
        assert_eq!(
            merge(&json!("not a schema"), &json!({"type": "string"})),
            json!({})
        );
        assert_eq!(
            merge(
                &json!({"type": "integer"}),
                &json!({"type": ["bogus", "integer"]})
            ),
            json!({"type": "integer"})
        );
    }

    fn nodes(schema: &Value) -> usize {
        match schema {
            Value::Object(map) => {
                1 + map
                    .get("properties")
                    .and_then(Value::as_object)
                    .map_or(0, |p| p.values().map(nodes).sum())
                    + map.get("items").map_or(0, nodes)
            }
            _ => 1,
        }
    }

    #[test]
    fn deep_and_wide_values_are_bounded() {
        let mut deep = json!(1);
        for _ in 0..100 {
            deep = json!({ "d": deep });
        }
        let schema = infer(&deep);
        let mut level = &schema;
        let mut depth = 0;
        while let Some(next) = level.pointer("/properties/d") {
            level = next;
            depth += 1;
        }
        assert_eq!(depth, MAX_DEPTH);
        assert_eq!(level, &json!({}), "beyond the depth: unconstrained");

        let wide: Map<String, Value> = (0..1000).map(|i| (format!("f{i:04}"), json!(i))).collect();
        let schema = infer(&Value::Object(wide));
        assert_eq!(
            schema["properties"].as_object().unwrap().len(),
            MAX_PROPERTIES
        );

        // Wide at every level: the node budget holds, in inference and in merging.
        let mut wide_deep = json!(1);
        for _ in 0..4 {
            let level: Map<String, Value> = (0..12)
                .map(|i| (format!("f{i}"), wide_deep.clone()))
                .collect();
            wide_deep = Value::Object(level);
        }
        let a = infer(&wide_deep);
        assert!(nodes(&a) <= MAX_NODES, "{}", nodes(&a));
        let renamed = serde_json::to_string(&wide_deep)
            .unwrap()
            .replace("\"f", "\"g");
        let b = infer(&serde_json::from_str(&renamed).unwrap());
        assert!(nodes(&merge(&a, &b)) <= MAX_NODES);
    }
}
