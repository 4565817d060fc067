//! Compiles the JSON of a content pattern, rejecting what is invalid with the path of
//! the offending value (`data.amount[0].numeric`) and the reason.

use serde_json::{Map, Value};

use super::PatternError;
use super::cidr::Cidr;
use super::matcher::{
    AnythingBut, DataPattern, Exact, Field, Leaf, Matcher, ObjectPattern, Range, TopPattern,
};
use crate::error::json_kind as kind;
use crate::glob::{Elem, Glob};

type Result<T> = std::result::Result<T, PatternError>;

const OPERATORS: &str =
    "prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric, cidr, exists";

fn err(path: &str, message: impl Into<String>) -> PatternError {
    PatternError {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn key_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn index_path(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

fn non_empty_object<'v>(v: &'v Value, path: &str) -> Result<&'v Map<String, Value>> {
    match v {
        Value::Object(map) if !map.is_empty() => Ok(map),
        Value::Object(_) => Err(err(
            path,
            "an empty pattern object matches nothing; remove it",
        )),
        other => Err(err(
            path,
            format!("expected an object, found {}", kind(other)),
        )),
    }
}

fn alternatives<'v>(v: &'v Value, path: &str) -> Result<&'v [Value]> {
    match v {
        Value::Array(items) if !items.is_empty() => Ok(items),
        Value::Array(_) => Err(err(path, "`$or` needs at least one alternative")),
        other => Err(err(
            path,
            format!("`$or` takes a list of patterns, found {}", kind(other)),
        )),
    }
}

/// Compiles a whole pattern; its keys are context attributes, `data` and `$or`.
pub(crate) fn top(v: &Value, path: &str) -> Result<TopPattern> {
    let map = non_empty_object(v, path)?;
    let mut pattern = TopPattern {
        attributes: Vec::new(),
        data: None,
        any_of: Vec::new(),
    };
    for (key, value) in map {
        let here = key_path(path, key);
        match key.as_str() {
            "$or" => {
                for (i, alt) in alternatives(value, &here)?.iter().enumerate() {
                    pattern.any_of.push(top(alt, &index_path(&here, i))?);
                }
            }
            "data" => {
                pattern.data = Some(match value {
                    Value::Object(_) => DataPattern::Object(object(value, &here)?),
                    Value::Array(items) => DataPattern::Leaf(leaf(items, &here)?),
                    other => {
                        return Err(err(
                            &here,
                            format!(
                                "expected a list of matchers or an object pattern, found {}",
                                kind(other)
                            ),
                        ));
                    }
                });
            }
            name => {
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                {
                    return Err(err(
                        &here,
                        format!(
                            "`{name}` is not a context attribute name (lower-case letters and digits); \
                             patterns over the payload go under `data`"
                        ),
                    ));
                }
                match value {
                    Value::Array(items) => {
                        pattern.attributes.push((name.into(), leaf(items, &here)?));
                    }
                    other => {
                        return Err(err(
                            &here,
                            format!(
                                "a context attribute takes a list of matchers such as [\"value\"], found {}",
                                kind(other)
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(pattern)
}

/// Compiles a pattern over a JSON object.
fn object(v: &Value, path: &str) -> Result<ObjectPattern> {
    let map = non_empty_object(v, path)?;
    let mut pattern = ObjectPattern {
        fields: Vec::new(),
        any_of: Vec::new(),
    };
    for (key, value) in map {
        let here = key_path(path, key);
        if key == "$or" {
            for (i, alt) in alternatives(value, &here)?.iter().enumerate() {
                pattern.any_of.push(object(alt, &index_path(&here, i))?);
            }
            continue;
        }
        let field = match value {
            Value::Object(_) => Field::Object(object(value, &here)?),
            Value::Array(items) => Field::Leaf(leaf(items, &here)?),
            other => {
                return Err(err(
                    &here,
                    format!(
                        "expected a list of matchers or a nested object, found {}; \
                         write [{other}] to match the value",
                        kind(other)
                    ),
                ));
            }
        };
        pattern.fields.push((key.clone(), field));
    }
    Ok(pattern)
}

fn leaf(items: &[Value], path: &str) -> Result<Leaf> {
    if items.is_empty() {
        return Err(err(path, "an empty list of matchers matches nothing"));
    }
    let matchers = items
        .iter()
        .enumerate()
        .map(|(i, item)| matcher(item, &index_path(path, i)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Leaf { matchers })
}

fn string<'v>(v: &'v Value, path: &str, what: &str) -> Result<&'v str> {
    v.as_str()
        .ok_or_else(|| err(path, format!("{what} takes a string, found {}", kind(v))))
}

fn matcher(v: &Value, path: &str) -> Result<Matcher> {
    let map = match v {
        Value::String(s) => return Ok(Matcher::Exact(Exact::Str(s.clone()))),
        Value::Number(n) => {
            return n
                .as_f64()
                .map(|f| Matcher::Exact(Exact::Num(f)))
                .ok_or_else(|| err(path, format!("{n} is not a usable number")));
        }
        Value::Bool(b) => return Ok(Matcher::Exact(Exact::Bool(*b))),
        Value::Null => return Ok(Matcher::Exact(Exact::Null)),
        Value::Array(_) => {
            return Err(err(
                path,
                "lists cannot nest; put every matcher in the one list",
            ));
        }
        Value::Object(map) => map,
    };
    let mut entries = map.iter();
    let (Some((op, arg)), None) = (entries.next(), entries.next()) else {
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        return Err(err(
            path,
            format!(
                "a matcher object has exactly one operator, found {} ({})",
                keys.len(),
                keys.join(", ")
            ),
        ));
    };
    let here = key_path(path, op);
    Ok(match op.as_str() {
        "prefix" | "suffix" => {
            let (value, ignore_case) = match arg {
                Value::Object(inner) => match (inner.len(), inner.get("equals-ignore-case")) {
                    (1, Some(v)) => (
                        string(
                            v,
                            &key_path(&here, "equals-ignore-case"),
                            "equals-ignore-case",
                        )?
                        .to_lowercase(),
                        true,
                    ),
                    _ => {
                        return Err(err(
                            &here,
                            format!("{op} takes a string or {{\"equals-ignore-case\": string}}"),
                        ));
                    }
                },
                other => (string(other, &here, op)?.to_owned(), false),
            };
            if op == "prefix" {
                Matcher::Prefix { value, ignore_case }
            } else {
                Matcher::Suffix { value, ignore_case }
            }
        }
        "equals-ignore-case" => {
            Matcher::EqualsIgnoreCase(string(arg, &here, "equals-ignore-case")?.to_lowercase())
        }
        "wildcard" => Matcher::Wildcard(wildcard(string(arg, &here, "wildcard")?, &here)?),
        "anything-but" => Matcher::AnythingBut(anything_but(arg, &here)?),
        "numeric" => Matcher::Numeric(numeric(arg, &here)?),
        "cidr" => {
            Matcher::Cidr(Cidr::parse(string(arg, &here, "cidr")?).map_err(|m| err(&here, m))?)
        }
        "exists" => Matcher::Exists(arg.as_bool().ok_or_else(|| {
            err(
                &here,
                format!("exists takes true or false, found {}", kind(arg)),
            )
        })?),
        other => {
            return Err(err(
                &here,
                format!("unknown operator `{other}` (expected one of {OPERATORS})"),
            ));
        }
    })
}

/// `*` is any run of characters; `\*` and `\\` are a literal `*` and `\`.
fn wildcard(text: &str, path: &str) -> Result<Glob> {
    let mut elems = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    let mut previous_star = false;
    while let Some(c) = chars.next() {
        let star = c == '*';
        match c {
            '*' if previous_star => {
                return Err(err(
                    path,
                    format!("`{text}`: consecutive `*` are not allowed"),
                ));
            }
            '*' => elems.push(Elem::Many),
            '\\' => match chars.next() {
                Some(e @ ('*' | '\\')) => elems.push(Elem::Char(e)),
                _ => {
                    return Err(err(
                        path,
                        format!("`{text}`: only `\\*` and `\\\\` are escapes"),
                    ));
                }
            },
            c => elems.push(Elem::Char(c)),
        }
        previous_star = star;
    }
    Ok(Glob::new(elems))
}

fn strings(v: &Value, path: &str, what: &str) -> Result<Vec<String>> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| string(item, &index_path(path, i), what).map(str::to_owned))
            .collect(),
        other => Err(err(
            path,
            format!(
                "{what} takes a string or a non-empty list of strings, found {}",
                kind(other)
            ),
        )),
    }
}

fn anything_but(v: &Value, path: &str) -> Result<AnythingBut> {
    match v {
        Value::String(s) => Ok(AnythingBut::Strings(vec![s.clone()])),
        Value::Number(n) => Ok(AnythingBut::Numbers(vec![n.as_f64().unwrap_or(f64::NAN)])),
        Value::Array(items) if items.iter().all(Value::is_string) && !items.is_empty() => {
            Ok(AnythingBut::Strings(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            ))
        }
        Value::Array(items) if items.iter().all(Value::is_number) && !items.is_empty() => Ok(
            AnythingBut::Numbers(items.iter().filter_map(Value::as_f64).collect()),
        ),
        Value::Array(_) => Err(err(
            path,
            "anything-but takes a non-empty list of only strings or only numbers",
        )),
        Value::Object(map) if map.len() == 1 => {
            let (op, arg) = map.iter().next().unwrap_or_else(|| unreachable!());
            let here = key_path(path, op);
            match op.as_str() {
                "prefix" => Ok(AnythingBut::Prefix(
                    string(arg, &here, "prefix")?.to_owned(),
                )),
                "suffix" => Ok(AnythingBut::Suffix(
                    string(arg, &here, "suffix")?.to_owned(),
                )),
                "equals-ignore-case" => Ok(AnythingBut::IgnoreCase(
                    strings(arg, &here, "equals-ignore-case")?
                        .iter()
                        .map(|s| s.to_lowercase())
                        .collect(),
                )),
                "wildcard" => Ok(AnythingBut::Wildcard(
                    strings(arg, &here, "wildcard")?
                        .iter()
                        .enumerate()
                        .map(|(i, s)| {
                            let p = if arg.is_array() {
                                index_path(&here, i)
                            } else {
                                here.clone()
                            };
                            wildcard(s, &p)
                        })
                        .collect::<Result<_>>()?,
                )),
                other => Err(err(
                    &here,
                    format!(
                        "anything-but does not take `{other}` (expected prefix, suffix, \
                         equals-ignore-case or wildcard)"
                    ),
                )),
            }
        }
        Value::Object(_) => Err(err(
            path,
            "anything-but takes an object with exactly one of prefix, suffix, equals-ignore-case, wildcard",
        )),
        other => Err(err(
            path,
            format!(
                "anything-but takes a string, a number, a list or an object, found {}",
                kind(other)
            ),
        )),
    }
}

/// `[">", 0, "<=", 5]`: one or two (operator, number) pairs forming a range.
fn numeric(v: &Value, path: &str) -> Result<Range> {
    const USAGE: &str =
        "numeric takes [OP, NUMBER] or [OP, NUMBER, OP, NUMBER] with OP one of =, <, <=, >, >=";
    let items = match v {
        Value::Array(items) if items.len() == 2 || items.len() == 4 => items,
        _ => return Err(err(path, USAGE)),
    };
    let mut range = Range {
        lower: None,
        upper: None,
    };
    for pair in 0..items.len() / 2 {
        let (op_at, num_at) = (2 * pair, 2 * pair + 1);
        let op = items[op_at].as_str().ok_or_else(|| {
            err(
                &index_path(path, op_at),
                format!("expected an operator; {USAGE}"),
            )
        })?;
        let n = items[num_at]
            .as_f64()
            .filter(|_| items[num_at].is_number())
            .ok_or_else(|| {
                err(
                    &index_path(path, num_at),
                    format!(
                        "expected a number after `{op}`, found {}",
                        kind(&items[num_at])
                    ),
                )
            })?;
        let here = index_path(path, op_at);
        let (slot, bound) = match op {
            "=" if items.len() == 2 => {
                range.lower = Some((n, true));
                range.upper = Some((n, true));
                continue;
            }
            "=" => return Err(err(&here, "`=` cannot be combined with another bound")),
            ">" => (&mut range.lower, (n, false)),
            ">=" => (&mut range.lower, (n, true)),
            "<" => (&mut range.upper, (n, false)),
            "<=" => (&mut range.upper, (n, true)),
            other => return Err(err(&here, format!("unknown comparison `{other}`; {USAGE}"))),
        };
        if slot.is_some() {
            return Err(err(
                &here,
                format!(
                    "a second {} bound",
                    if op.starts_with('>') {
                        "lower"
                    } else {
                        "upper"
                    }
                ),
            ));
        }
        *slot = Some(bound);
    }
    if let (Some((lo, lo_inc)), Some((hi, hi_inc))) = (range.lower, range.upper) {
        let empty = if lo_inc && hi_inc { lo > hi } else { lo >= hi };
        if empty {
            return Err(err(
                path,
                format!("the range between {lo} and {hi} is empty"),
            ));
        }
    }
    Ok(range)
}
