//! Compiles Knative's `filter.attributes` and the dialects of the `filters` list.
//!
//! * `filter.attributes`: every listed attribute equals its value; the value `""`
//!   requires only that the attribute is present.
//! * `exact`, `prefix`, `suffix`: a map of attribute → non-empty value, all must hold;
//!   an absent attribute never matches.
//! * `all` (every nested filter; `[]` matches everything), `any` (at least one; must
//!   not be empty), `not` (one nested filter).
//! * `cesql`: a CESQL v1 expression; it must parse, call known functions and be able
//!   to evaluate to a Boolean.
//! * `pattern`: a content pattern (see [`crate::pattern`]).

use serde_json::{Map, Value};

use crate::cesql::{Conjunct, Expression, Type};
use crate::error::{FilterError, FilterErrorReason as Reason, json_kind};
use crate::event::Name;
use crate::filter::Node;
use crate::guard::Test;
use crate::pattern::Pattern;

const KNOWN: [&str; 8] = [
    "exact", "prefix", "suffix", "all", "any", "not", "cesql", "pattern",
];

/// Whether `name` is a CloudEvents attribute name: lower-case letters and digits.
pub(crate) fn is_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn wrong_type(path: &str, expected: &'static str, found: &Value) -> FilterError {
    FilterError::new(
        path,
        Reason::WrongType {
            expected,
            found: json_kind(found),
        },
    )
}

/// One entry of Knative's `filter.attributes`.
pub(crate) fn attribute(name: &str, value: &str) -> Result<Node, FilterError> {
    let path = format!("filter.attributes.{name}");
    if !is_attribute_name(name) {
        return Err(FilterError::new(
            path,
            Reason::AttributeName(name.to_owned()),
        ));
    }
    Ok(if value.is_empty() {
        Node::Present {
            name: Name::from(name),
        }
    } else {
        Node::Equals {
            name: Name::from(name),
            value: value.to_owned(),
        }
    })
}

/// One filter object with exactly one dialect, at `path`.
pub(crate) fn filter(v: &Value, path: &str) -> Result<Node, FilterError> {
    let Value::Object(map) = v else {
        return Err(wrong_type(path, "a filter object", v));
    };
    // A key with a `null` value is unset (how optional fields serialize).
    let mut set = map.iter().filter(|(_, value)| !value.is_null());
    let Some((dialect, arg)) = set.next() else {
        return Err(FilterError::new(path, Reason::NoDialect));
    };
    let rest: Vec<&String> = set.map(|(k, _)| k).collect();
    if let Some(unknown) = std::iter::once(dialect)
        .chain(rest.iter().copied())
        .find(|k| !KNOWN.contains(&k.as_str()))
    {
        return Err(FilterError::new(
            format!("{path}.{unknown}"),
            Reason::UnknownDialect(unknown.clone()),
        ));
    }
    if !rest.is_empty() {
        let mut all = vec![dialect.clone()];
        all.extend(rest.into_iter().cloned());
        return Err(FilterError::new(path, Reason::SeveralDialects(all)));
    }
    let here = format!("{path}.{dialect}");
    match dialect.as_str() {
        "exact" => attribute_map(arg, &here, "exact", |name, value| Node::Equals {
            name,
            value,
        }),
        "prefix" => attribute_map(arg, &here, "prefix", |name, value| Node::Prefix {
            name,
            value,
        }),
        "suffix" => attribute_map(arg, &here, "suffix", |name, value| Node::Suffix {
            name,
            value,
        }),
        "all" => Ok(Node::all(list(arg, &here)?)),
        "any" => {
            let nodes = list(arg, &here)?;
            if nodes.is_empty() {
                return Err(FilterError::new(here, Reason::EmptyAny));
            }
            Ok(Node::any(nodes))
        }
        "not" => Ok(Node::not(filter(arg, &here)?)),
        "cesql" => cesql(arg, &here),
        _ => Pattern::compile_at(arg, &here)
            .map(|p| Node::Pattern(Box::new(p)))
            .map_err(|e| FilterError::new(e.path, Reason::Pattern(e.message))),
    }
}

fn attribute_map(
    arg: &Value,
    path: &str,
    dialect: &'static str,
    node: impl Fn(Name, String) -> Node,
) -> Result<Node, FilterError> {
    let map: &Map<String, Value> = arg
        .as_object()
        .ok_or_else(|| wrong_type(path, "a map of attribute to value", arg))?;
    if map.is_empty() {
        return Err(FilterError::new(path, Reason::EmptyDialect(dialect)));
    }
    let mut nodes = Vec::with_capacity(map.len());
    for (name, value) in map {
        let here = format!("{path}.{name}");
        if !is_attribute_name(name) {
            return Err(FilterError::new(here, Reason::AttributeName(name.clone())));
        }
        let value = value
            .as_str()
            .ok_or_else(|| wrong_type(&here, "a string", value))?;
        if value.is_empty() {
            return Err(FilterError::new(here, Reason::EmptyValue));
        }
        nodes.push(node(Name::from(name.as_str()), value.to_owned()));
    }
    Ok(Node::all(nodes))
}

fn list(arg: &Value, path: &str) -> Result<Vec<Node>, FilterError> {
    let items = arg
        .as_array()
        .ok_or_else(|| wrong_type(path, "a list of filters", arg))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| filter(item, &format!("{path}[{i}]")))
        .collect()
}

fn cesql(arg: &Value, path: &str) -> Result<Node, FilterError> {
    let source = arg
        .as_str()
        .ok_or_else(|| wrong_type(path, "a CESQL expression string", arg))?;
    let expr =
        Expression::parse(source).map_err(|e| FilterError::new(path, Reason::CesqlParse(e)))?;
    let missing = expr.missing_functions();
    if !missing.is_empty() {
        return Err(FilterError::new(
            path,
            Reason::CesqlMissingFunction(missing),
        ));
    }
    match expr.result_type() {
        Some(ty @ (Type::Integer | Type::String)) => {
            Err(FilterError::new(path, Reason::CesqlNotBoolean(ty)))
        }
        _ => Ok(Node::all(
            expr.into_conjuncts()
                .into_iter()
                .map(|part| match part {
                    Conjunct::Test(name, Test::Equals, value) => Node::Equals { name, value },
                    Conjunct::Test(name, Test::Prefix, value) => Node::Prefix { name, value },
                    Conjunct::Test(name, Test::Suffix, value) => Node::Suffix { name, value },
                    Conjunct::Compare(name, op, value) => Node::Compare { name, op, value },
                    Conjunct::Exists(name) => Node::Present { name },
                    Conjunct::Absent(name) => Node::Not(Box::new(Node::Present { name })),
                    Conjunct::Expression(e) => Node::Cesql(Box::new(e)),
                })
                .collect(),
        )),
    }
}
