//! `transform.template`: EventBridge's input transformer. `paths` names values of
//! the event (`InputPathsMap`), `data` is the `InputTemplate` whose `<name>`
//! placeholders they fill; the result replaces the event's `data`.
//!
//! As in EventBridge: in a JSON template (one that starts with `{` or `[`), a
//! placeholder outside quotes takes the value as JSON (a string keeps its quotes), a
//! placeholder inside quotes takes a string's text, escaped for JSON. In any other
//! template the values are inserted as text. A path that is not in the event gives
//! `null` outside quotes and nothing inside them or in text. `<word>` where `word`
//! is not a name in `paths` stays as it is.

use std::collections::BTreeMap;

use bytes::Bytes;
use herald_cloudevents::CloudEvent;
use serde_json::Value;

use crate::path::{self, Step};
use crate::{RunError, TransformError};

/// EventBridge's limits: 100 paths, 8192 characters of template.
pub const MAX_PATHS: usize = 100;
/// Longest template.
pub const MAX_TEMPLATE_CHARS: usize = 8192;

#[derive(Debug, PartialEq)]
enum Segment {
    Text(String),
    /// A placeholder: which path, and whether it sits inside a JSON string.
    Value {
        path: usize,
        quoted: bool,
    },
}

#[derive(Debug)]
pub(crate) struct Template {
    paths: Vec<Vec<Step>>,
    segments: Vec<Segment>,
    json: bool,
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

impl Template {
    pub(crate) fn compile(
        paths: &BTreeMap<String, String>,
        data: &str,
    ) -> Result<Template, TransformError> {
        if paths.len() > MAX_PATHS {
            return Err(TransformError::Template {
                field: "paths",
                why: format!("at most {MAX_PATHS} paths, found {}", paths.len()),
            });
        }
        let chars = data.chars().count();
        if chars == 0 || chars > MAX_TEMPLATE_CHARS {
            return Err(TransformError::Template {
                field: "data",
                why: format!("must have 1 to {MAX_TEMPLATE_CHARS} characters, found {chars}"),
            });
        }
        let mut index = BTreeMap::new();
        let mut compiled = Vec::new();
        for (name, p) in paths {
            if !is_name(name) {
                return Err(TransformError::Path {
                    name: name.clone(),
                    why: "a name is letters, digits, `_`, `-` and `.`".into(),
                });
            }
            let steps = path::parse(p).map_err(|why| TransformError::Path {
                name: name.clone(),
                why,
            })?;
            index.insert(name.as_str(), compiled.len());
            compiled.push(steps);
        }
        let json = data.trim_start().starts_with(['{', '[']);
        let segments = split(data, &index, json);
        let template = Template {
            paths: compiled,
            segments,
            json,
        };
        if json {
            // Checked with placeholder values of every kind a path can give.
            let filled = template.fill(|_| None);
            if let Err(e) = serde_json::from_str::<Value>(&filled) {
                return Err(TransformError::Template {
                    field: "data",
                    why: format!(
                        "a template that starts with `{{` or `[` must be JSON with its placeholders filled: {e}"
                    ),
                });
            }
        }
        Ok(template)
    }

    /// The template with each placeholder filled from `value_of(path index)`.
    fn fill<'v>(&self, value_of: impl Fn(usize) -> Option<&'v Value>) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Text(text) => out.push_str(text),
                Segment::Value { path, quoted } => {
                    let value = value_of(*path);
                    match (value, self.json && !*quoted) {
                        (None, true) => out.push_str("null"),
                        (None, false) => {}
                        (Some(v), true) => out.push_str(&v.to_string()),
                        (Some(v), false) => {
                            let text = match v {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            if self.json {
                                // Inside a JSON string: escaped, without the quotes.
                                let escaped = Value::String(text).to_string();
                                out.push_str(&escaped[1..escaped.len() - 1]);
                            } else {
                                out.push_str(&text);
                            }
                        }
                    }
                }
            }
        }
        out
    }

    pub(crate) fn apply(&self, event: &CloudEvent, max: usize) -> Result<CloudEvent, RunError> {
        let input = crate::structured(event);
        let text = self.fill(|i| path::get(&input, &self.paths[i]));
        if text.len() > max {
            return Err(RunError::TooLarge(max));
        }
        let mut out = event.clone();
        if self.json {
            // Quoted values are escaped and bare ones are JSON: the result parses.
            serde_json::from_str::<Value>(&text).map_err(|e| RunError::Output(e.to_string()))?;
            out.set("datacontenttype", "application/json");
        } else {
            out.set("datacontenttype", "text/plain");
        }
        out.data = Some(Bytes::from(text));
        Ok(out)
    }
}

/// Splits `data` into text and placeholders, noting for each placeholder whether it
/// is inside a JSON string (only for a JSON template).
fn split(data: &str, names: &BTreeMap<&str, usize>, json: bool) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut text = String::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = data;
    while let Some(c) = rest.chars().next() {
        if c == '<'
            && let Some(end) = rest.find('>')
            && let Some(&path) = names.get(&rest[1..end])
        {
            if !text.is_empty() {
                segments.push(Segment::Text(std::mem::take(&mut text)));
            }
            segments.push(Segment::Value {
                path,
                quoted: json && in_string,
            });
            rest = &rest[end + 1..];
            escaped = false;
            continue;
        }
        if json {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_string => escaped = true,
                '"' => in_string = !in_string,
                _ => {}
            }
        }
        text.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if !text.is_empty() {
        segments.push(Segment::Text(text));
    }
    segments
}
