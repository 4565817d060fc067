//! Compiles one entry of a field's list: a literal or a `{operator: argument}` object,
//! with EventBridge's rules for what each operator takes.

use serde_json::{Map, Value};

use super::PatternError;
use super::cidr::{Cidr, ip_of};
use super::fold::Folded;
use super::matcher::{AnythingBut, Exact, Matcher, Range};
use super::number::Num;
use crate::error::json_kind as kind;
use crate::glob::{Elem, Glob};

type Result<T> = std::result::Result<T, PatternError>;

const OPERATORS: &str =
    "prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric, cidr, exists";

pub(crate) fn err(path: &str, message: impl Into<String>) -> PatternError {
    PatternError {
        path: path.to_owned(),
        message: message.into(),
    }
}

pub(crate) fn key_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn index_path(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// One entry of a field's list.
pub(crate) enum Entry {
    Matcher(Matcher),
    Exists(bool),
}

fn string<'v>(v: &'v Value, path: &str, what: &str) -> Result<&'v str> {
    v.as_str()
        .ok_or_else(|| err(path, format!("{what} takes a string, found {}", kind(v))))
}

/// A number EventBridge can compare (exactly a double).
fn comparable(v: &Value, path: &str, what: &str) -> Result<f64> {
    let Value::Number(n) = v else {
        return Err(err(path, format!("{what}, found {}", kind(v))));
    };
    Num::of(n).and_then(Num::double).ok_or_else(|| {
        err(
            path,
            format!("{n} cannot be compared: numbers here must fit a double exactly"),
        )
    })
}

pub(crate) fn entry(v: &Value, path: &str) -> Result<Entry> {
    let map = match v {
        Value::String(s) => {
            return Ok(Entry::Matcher(Matcher::Exact(
                ip_of(s).map_or_else(|| Exact::Str(s.clone()), Exact::Ip),
            )));
        }
        Value::Number(n) => {
            return Num::of(n)
                .map(|n| Entry::Matcher(Matcher::Exact(Exact::Num(n))))
                .ok_or_else(|| err(path, format!("{n} is not a usable number")));
        }
        Value::Bool(b) => return Ok(Entry::Matcher(Matcher::Exact(Exact::Bool(*b)))),
        Value::Null => return Ok(Entry::Matcher(Matcher::Exact(Exact::Null))),
        Value::Array(_) => {
            return Err(err(
                path,
                "lists cannot nest; put every matcher in the one list",
            ));
        }
        Value::Object(map) => map,
    };
    let (op, arg) = single(map, path, "a matcher object has exactly one operator")?;
    let here = key_path(path, op);
    Ok(Entry::Matcher(match op {
        "prefix" | "suffix" => affix(op, arg, &here)?,
        "equals-ignore-case" => {
            Matcher::EqualsIgnoreCase(Folded::new(string(arg, &here, "equals-ignore-case")?))
        }
        "wildcard" => Matcher::Wildcard(wildcard(string(arg, &here, "wildcard")?, &here)?),
        "anything-but" => Matcher::AnythingBut(anything_but(arg, &here)?),
        "numeric" => Matcher::Numeric(numeric(arg, &here)?),
        "cidr" => {
            Matcher::Cidr(Cidr::parse(string(arg, &here, "cidr")?).map_err(|m| err(&here, m))?)
        }
        "exists" => {
            return arg.as_bool().map(Entry::Exists).ok_or_else(|| {
                err(
                    &here,
                    format!("exists takes true or false, found {}", kind(arg)),
                )
            });
        }
        other => {
            return Err(err(
                &here,
                format!("unknown operator `{other}` (expected one of {OPERATORS})"),
            ));
        }
    }))
}

/// The only entry of an operator object.
fn single<'v>(map: &'v Map<String, Value>, path: &str, what: &str) -> Result<(&'v str, &'v Value)> {
    let mut entries = map.iter();
    if let (Some((op, arg)), None) = (entries.next(), entries.next()) {
        return Ok((op.as_str(), arg));
    }
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    Err(err(
        path,
        format!("{what}, found {} ({})", keys.len(), keys.join(", ")),
    ))
}

/// `prefix` / `suffix`: a string, or `{"equals-ignore-case": string}`.
fn affix(op: &str, arg: &Value, path: &str) -> Result<Matcher> {
    let prefix = op == "prefix";
    if let Value::Object(inner) = arg {
        return match (inner.len(), inner.get("equals-ignore-case")) {
            (1, Some(v)) => {
                let folded = Folded::new(string(
                    v,
                    &key_path(path, "equals-ignore-case"),
                    "equals-ignore-case",
                )?);
                Ok(if prefix {
                    Matcher::PrefixIgnoreCase(folded)
                } else {
                    Matcher::SuffixIgnoreCase(folded)
                })
            }
            _ => Err(err(
                path,
                format!("{op} takes a string or {{\"equals-ignore-case\": string}}"),
            )),
        };
    }
    let value = string(arg, path, op)?.to_owned();
    Ok(if prefix {
        Matcher::Prefix(value)
    } else {
        Matcher::Suffix(value)
    })
}

/// `*` is any run of characters; `\*` and `\\` are a literal `*` and `\`.
pub(crate) fn wildcard(text: &str, path: &str) -> Result<Glob> {
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

/// A string or a non-empty list of strings, each with its own path.
fn strings<'v>(v: &'v Value, path: &str, what: &str) -> Result<Vec<(&'v str, String)>> {
    match v {
        Value::String(s) => Ok(vec![(s.as_str(), path.to_owned())]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let here = index_path(path, i);
                string(item, &here, what).map(|s| (s, here))
            })
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
    const LIST: &str = "anything-but takes a non-empty list of only strings or only numbers";
    match v {
        Value::String(s) => Ok(AnythingBut::Strings(vec![s.clone()])),
        Value::Number(_) => Ok(AnythingBut::Numbers(vec![comparable(
            v,
            path,
            "anything-but takes a number",
        )?])),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
            Ok(AnythingBut::Strings(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            ))
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_number) => items
            .iter()
            .enumerate()
            .map(|(i, n)| comparable(n, &index_path(path, i), "a number"))
            .collect::<Result<_>>()
            .map(AnythingBut::Numbers),
        Value::Array(_) => Err(err(path, LIST)),
        Value::Object(map) => {
            let (op, arg) = single(
                map,
                path,
                "anything-but takes an object with exactly one of prefix, suffix, \
                 equals-ignore-case, wildcard",
            )?;
            let here = key_path(path, op);
            let no_empty = |list: Vec<(&str, String)>| match list.iter().find(|(s, _)| s.is_empty())
            {
                Some((_, at)) => Err(err(
                    at,
                    format!("anything-but {op} needs a non-empty string"),
                )),
                None => Ok(list.into_iter().map(|(s, _)| s.to_owned()).collect()),
            };
            match op {
                "prefix" => no_empty(strings(arg, &here, op)?).map(AnythingBut::Prefixes),
                "suffix" => no_empty(strings(arg, &here, op)?).map(AnythingBut::Suffixes),
                "equals-ignore-case" => Ok(AnythingBut::IgnoreCase(
                    strings(arg, &here, op)?
                        .into_iter()
                        .map(|(s, _)| Folded::new(s))
                        .collect(),
                )),
                "wildcard" => strings(arg, &here, op)?
                    .into_iter()
                    .map(|(s, at)| wildcard(s, &at))
                    .collect::<Result<_>>()
                    .map(AnythingBut::Wildcards),
                other => Err(err(
                    &here,
                    format!(
                        "anything-but does not take `{other}` (expected prefix, suffix, \
                         equals-ignore-case or wildcard)"
                    ),
                )),
            }
        }
        other => Err(err(
            path,
            format!(
                "anything-but takes a string, a number, a list or an object, found {}",
                kind(other)
            ),
        )),
    }
}

/// `["=", n]`, one bound (`[">", n]`) or a lower then an upper bound
/// (`[">", 0, "<=", 5]`), the lower strictly below the upper.
fn numeric(v: &Value, path: &str) -> Result<Range> {
    const USAGE: &str = "numeric takes [\"=\", N], [OP, N] or [LOWER, N, UPPER, N] \
         (OP one of <, <=, >, >=; LOWER > or >=; UPPER < or <=)";
    let items = match v {
        Value::Array(items) if items.len() == 2 || items.len() == 4 => items,
        _ => return Err(err(path, USAGE)),
    };
    let op_at = |i: usize| -> Result<&str> {
        items[i].as_str().ok_or_else(|| {
            err(
                &index_path(path, i),
                format!("expected an operator, found {}; {USAGE}", kind(&items[i])),
            )
        })
    };
    let number_at = |i: usize, op: &str| {
        comparable(
            &items[i],
            &index_path(path, i),
            &format!("expected a number after `{op}`"),
        )
    };
    let first = op_at(0)?;
    let n = number_at(1, first)?;
    let mut range = Range {
        lower: None,
        upper: None,
    };
    match first {
        "=" if items.len() == 2 => {
            range.lower = Some((n, true));
            range.upper = Some((n, true));
        }
        "=" => return Err(err(path, "`=` cannot be combined with another bound")),
        ">" | ">=" => range.lower = Some((n, first == ">=")),
        "<" | "<=" if items.len() == 2 => range.upper = Some((n, first == "<=")),
        "<" | "<=" => {
            return Err(err(
                &index_path(path, 0),
                "write the lower bound (> or >=) first, then the upper bound (< or <=)",
            ));
        }
        other => {
            return Err(err(
                &index_path(path, 0),
                format!("unknown comparison `{other}`; {USAGE}"),
            ));
        }
    }
    if items.len() == 4 {
        let second = op_at(2)?;
        if !matches!(second, "<" | "<=") {
            return Err(err(
                &index_path(path, 2),
                format!("the second bound must be an upper bound (< or <=), found `{second}`"),
            ));
        }
        let hi = number_at(3, second)?;
        let lo = n;
        if lo.total_cmp(&hi).is_ge() {
            return Err(err(
                path,
                format!("the lower bound {lo} must be below the upper bound {hi}"),
            ));
        }
        range.upper = Some((hi, second == "<="));
    }
    Ok(range)
}
