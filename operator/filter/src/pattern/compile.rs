//! Compiles the JSON of a content pattern into its alternatives, rejecting what is
//! invalid with the path of the offending value (`data.amount[0].numeric`) and why.
//!
//! Like EventBridge, every `$or` is expanded: the pattern becomes a list of
//! alternatives, each a plain list of fields (an attribute or a path in `data`, and its
//! matchers), and it matches when one alternative does.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::PatternError;
use super::complexity::{self, MAX_COMPLEXITY};
use super::matcher::{AnythingBut, Leaf, Matcher};
use super::operators::{Entry, entry, err, index_path, key_path};
use super::path::Path;
use super::walk::Alternative;
use crate::error::json_kind as kind;
use crate::event::Name;

type Result<T> = std::result::Result<T, PatternError>;

/// How many alternatives the `$or`s of one pattern may expand to.
pub(crate) const MAX_ALTERNATIVES: usize = 1024;

/// How many fields one alternative may test (EventBridge's engine allows 256).
pub(crate) const MAX_FIELDS: usize = 256;

/// Names EventBridge reserves inside `$or`: its operators and a few it keeps for later.
const RESERVED_IN_OR: [&str; 24] = [
    "exactly",
    "equals-ignore-case",
    "prefix",
    "suffix",
    "anything-but",
    "exists",
    "wildcard",
    "numeric",
    "cidr",
    "=",
    "<",
    "<=",
    ">",
    ">=",
    "regex",
    "not-wildcard",
    "not-equals-ignore-case",
    "date-after",
    "date-on-or-after",
    "date-before",
    "date-on-or-before",
    "in-date-range",
    "ip-address-in-range",
    "ip-address-not-in-range",
];

/// What a field tests.
#[derive(Clone)]
enum Target {
    Attribute(Name),
    Data(Vec<String>),
}

#[derive(Clone)]
struct Field {
    target: Target,
    leaf: Leaf,
    /// Where the field's list is, for errors.
    at: String,
}

/// The fields of one alternative, while compiling.
type Fields = Vec<Field>;

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

/// Compiles a whole pattern; its keys are context attributes, `data` (or `data.` and a
/// path) and `$or`.
pub(crate) fn pattern(v: &Value, path: &str) -> Result<Vec<Alternative>> {
    let map = non_empty_object(v, path)?;
    let mut alternatives: Vec<Fields> = vec![Vec::new()];
    top(map, path, false, &mut alternatives)?;
    check_complexity(&alternatives)?;
    Ok(alternatives
        .into_iter()
        .map(|fields| {
            let mut attributes = Vec::new();
            let mut data = Vec::new();
            for field in fields {
                match field.target {
                    Target::Attribute(name) => attributes.push((name, field.leaf)),
                    Target::Data(segments) => data.push((Path::new(segments), field.leaf)),
                }
            }
            Alternative::new(attributes, data)
        })
        .collect())
}

fn top(map: &Map<String, Value>, path: &str, in_or: bool, alts: &mut Vec<Fields>) -> Result<()> {
    for (key, value) in map {
        let here = key_path(path, key);
        if key == "$or" {
            or(value, &here, alts, |alt, at, branch| {
                top(alt, at, true, branch)
            })?;
            continue;
        }
        reserved(key, &here, in_or)?;
        if let Some(rest) = key
            .strip_prefix("data")
            .filter(|r| r.is_empty() || r.starts_with('.'))
        {
            let segments = rest.split('.').skip(1).map(str::to_owned).collect();
            data_value(value, &here, segments, in_or, alts)?;
            continue;
        }
        // EventBridge's names, as users coming from it write them (an extension may be
        // called `detail`, but its value would be a list).
        let eventbridge_name = match (key.as_str(), value) {
            ("detail", Value::Object(_)) => Some("data"),
            ("detail-type", _) => Some("type"),
            _ => None,
        };
        if let Some(herald) = eventbridge_name {
            return Err(err(
                &here,
                format!("EventBridge's `{key}` is `{herald}` in a CloudEvent; write `{herald}`"),
            ));
        }
        let is_attribute = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !is_attribute {
            return Err(err(
                &here,
                format!(
                    "`{key}` is not a context attribute name (lower-case letters and digits); \
                     patterns over the payload go under `data`"
                ),
            ));
        }
        let Value::Array(items) = value else {
            return Err(err(
                &here,
                format!(
                    "a context attribute takes a list of matchers such as [\"value\"], found {}",
                    kind(value)
                ),
            ));
        };
        let field = Field {
            target: Target::Attribute(key.as_str().into()),
            leaf: leaf(items, &here)?,
            at: here,
        };
        add(alts, &field)?;
    }
    Ok(())
}

/// The value under a key in `data`: an object to descend into or a list of matchers.
fn data_value(
    value: &Value,
    here: &str,
    segments: Vec<String>,
    in_or: bool,
    alts: &mut Vec<Fields>,
) -> Result<()> {
    match value {
        Value::Object(_) => {
            data_object(non_empty_object(value, here)?, here, &segments, in_or, alts)
        }
        Value::Array(items) => {
            let field = Field {
                target: Target::Data(segments),
                leaf: leaf(items, here)?,
                at: here.to_owned(),
            };
            add(alts, &field)
        }
        other => Err(err(
            here,
            format!(
                "expected a list of matchers or a nested object, found {}; \
                 write [{other}] to match the value",
                kind(other)
            ),
        )),
    }
}

fn data_object(
    map: &Map<String, Value>,
    path: &str,
    prefix: &[String],
    in_or: bool,
    alts: &mut Vec<Fields>,
) -> Result<()> {
    for (key, value) in map {
        let here = key_path(path, key);
        if key == "$or" {
            or(value, &here, alts, |alt, at, branch| {
                data_object(alt, at, prefix, true, branch)
            })?;
            continue;
        }
        reserved(key, &here, in_or)?;
        let mut segments = prefix.to_vec();
        segments.extend(key.split('.').map(str::to_owned));
        data_value(value, &here, segments, in_or, alts)?;
    }
    Ok(())
}

fn reserved(key: &str, here: &str, in_or: bool) -> Result<()> {
    if in_or && RESERVED_IN_OR.contains(&key) {
        return Err(err(
            here,
            format!("`{key}` is a matcher, not a field name; inside `$or` it cannot be a key"),
        ));
    }
    Ok(())
}

/// `$or`: at least two alternatives, each an object; every alternative so far is
/// combined with each of them.
fn or(
    value: &Value,
    here: &str,
    alts: &mut Vec<Fields>,
    mut branch: impl FnMut(&Map<String, Value>, &str, &mut Vec<Fields>) -> Result<()>,
) -> Result<()> {
    let items = match value {
        Value::Array(items) if items.len() >= 2 => items,
        Value::Array(_) => return Err(err(here, "`$or` needs at least two alternatives")),
        other => {
            return Err(err(
                here,
                format!("`$or` takes a list of patterns, found {}", kind(other)),
            ));
        }
    };
    let before = std::mem::take(alts);
    for (i, item) in items.iter().enumerate() {
        let at = index_path(here, i);
        let map = non_empty_object(item, &at)?;
        let mut combined = before.clone();
        branch(map, &at, &mut combined)?;
        alts.extend(combined);
        if alts.len() > MAX_ALTERNATIVES {
            return Err(err(
                here,
                format!("the `$or`s combine into more than {MAX_ALTERNATIVES} alternatives"),
            ));
        }
    }
    Ok(())
}

/// Adds a field to every alternative.
fn add(alts: &mut [Fields], field: &Field) -> Result<()> {
    for fields in alts.iter_mut() {
        if fields.len() >= MAX_FIELDS {
            return Err(err(
                &field.at,
                format!("a pattern may test at most {MAX_FIELDS} fields in one alternative"),
            ));
        }
        fields.push(field.clone());
    }
    Ok(())
}

fn leaf(items: &[Value], path: &str) -> Result<Leaf> {
    if items.is_empty() {
        return Err(err(path, "an empty list of matchers matches nothing"));
    }
    let mut leaf = Leaf::default();
    for (i, item) in items.iter().enumerate() {
        match entry(item, &index_path(path, i))? {
            Entry::Matcher(m) => leaf.matchers.push(m),
            Entry::Exists(true) => leaf.if_present = true,
            Entry::Exists(false) => leaf.if_absent = true,
        }
    }
    Ok(leaf)
}

/// A wildcard pattern as bytes, `None` for `*`.
type Wildcard = Vec<Option<u8>>;

/// Refuses a field whose wildcards are too complex for EventBridge: its wildcard
/// patterns in all alternatives are measured together, as EventBridge's engine
/// shares one matcher per field.
fn check_complexity(alts: &[Fields]) -> Result<()> {
    // Per field: where it is first written, and its distinct wildcard patterns.
    let mut by_field: BTreeMap<String, (String, Vec<Wildcard>)> = BTreeMap::new();
    for field in alts.iter().flatten() {
        let globs = field.leaf.matchers.iter().flat_map(|m| match m {
            Matcher::Wildcard(g) => std::slice::from_ref(g),
            Matcher::AnythingBut(AnythingBut::Wildcards(list)) => list.as_slice(),
            _ => &[],
        });
        let name = match &field.target {
            Target::Attribute(name) => name.to_string(),
            Target::Data(segments) => format!("data.{}", segments.join(".")),
        };
        for glob in globs {
            let (_, patterns) = by_field
                .entry(name.clone())
                .or_insert_with(|| (field.at.clone(), Vec::new()));
            let bytes = glob.bytes();
            if !patterns.contains(&bytes) {
                patterns.push(bytes);
            }
        }
    }
    for (at, patterns) in by_field.values() {
        if complexity::within_limit(patterns).is_none() {
            return Err(err(
                at,
                format!(
                    "the wildcards of this field are too complex (EventBridge: \"Rule is too \
                     complex\"; at most {MAX_COMPLEXITY} pattern prefixes may match one value at \
                     once): use fewer `*`, or fewer repeated characters after a `*`"
                ),
            ));
        }
    }
    Ok(())
}
