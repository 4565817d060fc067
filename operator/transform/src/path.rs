//! The JSON paths of `transform.template.paths`: EventBridge's subset, dot notation
//! with array indices (`$.data.items[0].id`), over the event in the JSON format.

use serde_json::Value;

/// One step of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// Parses `$`, `$.a.b`, `$.a[0].b`, `$.a-b/c`. Keys are any text but `.`, `[` and `]`.
pub(crate) fn parse(path: &str) -> Result<Vec<Step>, String> {
    let Some(mut rest) = path.strip_prefix('$') else {
        return Err(format!("`{path}` must start with `$`, such as `$.data.id`"));
    };
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[', ']']).unwrap_or(after.len());
            if end == 0 {
                return Err(format!("`{path}` has an empty name after a `.`"));
            }
            steps.push(Step::Key(after[..end].to_owned()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else {
                return Err(format!("`{path}` has a `[` without `]`"));
            };
            let index = after[..end].trim().parse::<usize>().map_err(|_| {
                format!(
                    "`{path}`: only array indices go in brackets (dot notation for names, as in EventBridge)"
                )
            })?;
            steps.push(Step::Index(index));
            rest = &after[end + 1..];
        } else {
            return Err(format!("`{path}`: expected `.` or `[` at `{rest}`"));
        }
    }
    Ok(steps)
}

/// The value at `steps` in `value`, if there is one.
pub(crate) fn get<'v>(value: &'v Value, steps: &[Step]) -> Option<&'v Value> {
    steps.iter().try_fold(value, |v, step| match (step, v) {
        (Step::Key(k), Value::Object(o)) => o.get(k),
        (Step::Index(i), Value::Array(a)) => a.get(*i),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_notation_and_indices() {
        assert_eq!(parse("$"), Ok(vec![]));
        assert_eq!(
            parse("$.data.items[1].id").unwrap(),
            vec![
                Step::Key("data".into()),
                Step::Key("items".into()),
                Step::Index(1),
                Step::Key("id".into())
            ]
        );
        assert_eq!(parse("$.data.a-b/c").unwrap()[1], Step::Key("a-b/c".into()));
        for bad in ["data.x", "$..x", "$.a['b']", "$.a[", "$x"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let v = serde_json::json!({"data": {"items": [{"id": 1}, {"id": 2}]}});
        assert_eq!(
            get(&v, &parse("$.data.items[1].id").unwrap()),
            Some(&serde_json::json!(2))
        );
        assert_eq!(get(&v, &parse("$.data.items[5]").unwrap()), None);
        assert_eq!(get(&v, &parse("$.data.nope").unwrap()), None);
    }
}
