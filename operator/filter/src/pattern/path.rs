//! Paths into JSON `data` as EventBridge reads them, and the values found there.
//!
//! EventBridge names a field by joining the keys that lead to it with `.`, in the
//! pattern and in the event alike. So a pattern key `"state.status"` is the path
//! `state` → `status`, and an event key `"state.status"` is reached by the pattern
//! `{"state": {"status": [...]}}`. A [`Path`] is the pattern side split at every `.`;
//! at each object, the next key may be one segment or several joined.
//!
//! The values at a path are its scalars (strings, numbers, booleans, `null`): an array
//! yields each element (arrays in arrays too), an object is not a value. A value reached
//! through an element of an array of objects (or of arrays) records that element as a
//! [`Member`], so that two fields of one rule can be required to sit in the same
//! element (see `walk.rs`).

use std::ops::ControlFlow;

use serde_json::Value;

/// A path in `data`, split at every `.`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Path {
    pub(crate) segments: Vec<String>,
    /// `joined[i]` holds `segments[i..j].join(".")` for `j` in `i + 2..=len`.
    joined: Vec<Vec<String>>,
}

impl Path {
    pub(crate) fn new(segments: Vec<String>) -> Self {
        let joined = joined_keys(&segments);
        Path { segments, joined }
    }

    /// Whether an event could spell part of the path as one key with dots.
    pub(crate) fn can_be_joined(&self) -> bool {
        self.segments.len() > 1
    }

    /// The path as EventBridge names it (`state.status`).
    pub(crate) fn name(&self) -> String {
        self.segments.join(".")
    }

    /// Calls `f` with every value at the path in `root` (`root` itself for the empty
    /// path) and the array elements it sits in; elements of arrays listed in
    /// `constraints` other than the one required are skipped. Stops when `f` breaks.
    /// Keys that join several segments are looked for only when `dotted` (the event
    /// has keys with dots).
    pub(crate) fn for_each_value<'v, F>(
        &self,
        root: Option<&'v Value>,
        dotted: bool,
        constraints: &[Member],
        f: &mut F,
    ) -> ControlFlow<()>
    where
        F: FnMut(&'v Value, &[Member]) -> ControlFlow<()>,
    {
        let Some(root) = root else {
            return ControlFlow::Continue(());
        };
        let mut members = Vec::new();
        self.visit(root, 0, dotted, constraints, &mut members, f)
    }

    fn visit<'v, F>(
        &self,
        value: &'v Value,
        at: usize,
        dotted: bool,
        constraints: &[Member],
        members: &mut Vec<Member>,
        f: &mut F,
    ) -> ControlFlow<()>
    where
        F: FnMut(&'v Value, &[Member]) -> ControlFlow<()>,
    {
        match value {
            Value::Array(items) => {
                let array = std::ptr::from_ref(items).addr();
                let required = constraints.iter().find(|m| m.array == array);
                for (index, item) in (0u32..).zip(items) {
                    match item {
                        Value::Array(_) | Value::Object(_) => {
                            if required.is_some_and(|m| m.index != index) {
                                continue;
                            }
                            members.push(Member {
                                array,
                                index,
                                depth: at,
                            });
                            let flow = self.visit(item, at, dotted, constraints, members, f);
                            members.pop();
                            flow?;
                        }
                        // Scalars in an array belong to no element (as in EventBridge).
                        scalar if at == self.segments.len() => f(scalar, members)?,
                        _ => {}
                    }
                }
                ControlFlow::Continue(())
            }
            Value::Object(map) => {
                let Some(segment) = self.segments.get(at) else {
                    return ControlFlow::Continue(());
                };
                if let Some(child) = map.get(segment) {
                    self.visit(child, at + 1, dotted, constraints, members, f)?;
                }
                if dotted {
                    for (skip, key) in self.joined[at].iter().enumerate() {
                        if let Some(child) = map.get(key) {
                            self.visit(child, at + 2 + skip, dotted, constraints, members, f)?;
                        }
                    }
                }
                ControlFlow::Continue(())
            }
            scalar if at == self.segments.len() => f(scalar, members),
            _ => ControlFlow::Continue(()),
        }
    }
}

/// What [`Path::single_value`] finds.
pub(crate) enum Single<'v> {
    /// The one value at the path.
    Value(&'v Value),
    /// No value.
    Absent,
    /// An array or a key with dots on the way: enumerate with [`Path::for_each_value`].
    Several,
}

impl Path {
    /// The value at the path from `start` (the value at segment `from`), when the way
    /// there is plain: objects only, no key that spells several segments (looked for
    /// only when `dotted`). Also returns
    /// the object holding the last segment, when reached plainly, so that a field with
    /// the same parent can start there.
    pub(crate) fn single_value<'v>(
        &self,
        start: Option<&'v Value>,
        from: usize,
        dotted: bool,
    ) -> (Single<'v>, Option<&'v Value>) {
        let Some(mut value) = start else {
            return (Single::Absent, None);
        };
        let last = self.segments.len().checked_sub(1);
        let mut parent = None;
        for at in from..self.segments.len() {
            match value {
                Value::Object(map) => {
                    if Some(at) == last {
                        parent = Some(value);
                    }
                    if dotted && self.joined[at].iter().any(|k| map.contains_key(k)) {
                        return (Single::Several, None);
                    }
                    match map.get(&self.segments[at]) {
                        Some(child) => value = child,
                        None => return (Single::Absent, parent),
                    }
                }
                Value::Array(_) => return (Single::Several, None),
                _ => return (Single::Absent, None),
            }
        }
        match value {
            Value::Array(_) => (Single::Several, None),
            Value::Object(_) => (Single::Absent, parent),
            scalar => (Single::Value(scalar), parent),
        }
    }
}

/// For each segment `i`, the keys `segments[i..j].join(".")` for `j` in `i + 2..=len`:
/// the ways an event may spell several segments as one key.
pub(crate) fn joined_keys(segments: &[String]) -> Vec<Vec<String>> {
    (0..segments.len())
        .map(|i| {
            (i + 2..=segments.len())
                .map(|j| segments[i..j].join("."))
                .collect()
        })
        .collect()
}

/// A value's place in an array of objects or of arrays: which element, and how many
/// path segments lead to the array (two fields can share the array only if their paths
/// agree that far).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Member {
    /// The array's address: unique while the event is borrowed.
    pub(crate) array: usize,
    pub(crate) index: u32,
    pub(crate) depth: usize,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn path(name: &str) -> Path {
        Path::new(name.split('.').map(str::to_owned).collect())
    }

    /// The values at `name` in `data`, with how many array elements each sits in.
    fn values(name: &str, data: &Value) -> Vec<(Value, usize)> {
        let mut out = Vec::new();
        let _ = path(name).for_each_value(Some(data), true, &[], &mut |v, members| {
            out.push((v.clone(), members.len()));
            ControlFlow::Continue(())
        });
        out
    }

    #[test]
    fn dotted_keys_are_paths_both_ways() {
        let nested = json!({"state": {"status": "running"}});
        let dotted = json!({"state.status": "stopped"});
        let both = json!({"state": {"status": "a"}, "state.status": "b"});
        assert_eq!(values("state.status", &nested), [(json!("running"), 0)]);
        assert_eq!(values("state.status", &dotted), [(json!("stopped"), 0)]);
        assert_eq!(values("state.status", &both).len(), 2);
        let deep = json!({"a": {"b.c": {"d": 1}}, "a.b": {"c.d": 2}});
        assert_eq!(values("a.b.c.d", &deep).len(), 2);
        assert!(
            values("state", &nested).is_empty(),
            "an object is not a value"
        );
    }

    #[test]
    fn arrays_yield_their_elements() {
        let data = json!({
            "tags": ["a", ["b", "c"], {"x": 1}],
            "items": [{"sku": "a"}, {"sku": ["b", "c"]}, {"qty": 1}],
            "empty": []
        });
        let tags: Vec<Value> = values("tags", &data).into_iter().map(|(v, _)| v).collect();
        assert_eq!(tags, [json!("a"), json!("b"), json!("c")]);
        assert_eq!(
            values("items.sku", &data),
            [(json!("a"), 1), (json!("b"), 1), (json!("c"), 1)]
        );
        assert!(values("empty", &data).is_empty());
        assert!(values("missing", &data).is_empty());
        assert_eq!(
            values("", &json!("plain")).len(),
            0,
            "`` is a key, not the root"
        );
        let root = Path::new(Vec::new());
        let mut seen = 0;
        let _ = root.for_each_value(Some(&json!([1, 2])), false, &[], &mut |_, _| {
            seen += 1;
            ControlFlow::Continue(())
        });
        assert_eq!(seen, 2);
    }

    #[test]
    fn constraints_pick_one_element() {
        let data = json!({"items": [{"sku": "a"}, {"sku": "b"}]});
        let items = &data["items"];
        let array = std::ptr::from_ref(items.as_array().unwrap()).addr();
        let only_second = [Member {
            array,
            index: 1,
            depth: 1,
        }];
        let mut seen = Vec::new();
        let _ = path("items.sku").for_each_value(Some(&data), false, &only_second, &mut |v, _| {
            seen.push(v.clone());
            ControlFlow::Continue(())
        });
        assert_eq!(seen, [json!("b")]);
    }
}
