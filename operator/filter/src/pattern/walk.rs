//! Matching one alternative of a pattern: its attributes, then its fields in `data`.
//!
//! EventBridge matches the fields of a rule one after the other, in the order of their
//! names, and refuses a match that takes two values from different elements of one
//! array of objects: `{"items": {"sku": ["a"], "qty": [1]}}` needs one item with both.
//! `{"exists": false}` then means "no value in the elements chosen so far". That is what
//! [`Alternative::matches`] does, in two steps:
//!
//! 1. Each field on its own. A value outside arrays of objects shared with another
//!    field constrains nothing, so when every field is decided by such values (the
//!    usual case) this is the answer.
//! 2. Otherwise, the fields in name order, each choosing a value consistent with the
//!    elements chosen before (backtracking, with failed states remembered so that
//!    arrays cannot make it exponential).

use std::collections::HashSet;
use std::ops::ControlFlow;

use serde_json::Value;

use super::matcher::Leaf;
use super::path::{Member, Path, Single};
use crate::event::{Event, Name};

/// A field in `data` and its matchers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DataField {
    pub(crate) path: Path,
    pub(crate) leaf: Leaf,
    /// The longest path prefix (in segments) shared with another field: arrays deeper
    /// than that cannot constrain the other fields.
    shared: usize,
    /// The previous field has the same parent path (`a.b` after `a.a`), so step 1
    /// can start from the parent object it found.
    same_parent: bool,
}

/// One alternative of a pattern (a pattern without `$or` has one).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Alternative {
    pub(crate) attributes: Vec<(Name, Leaf)>,
    /// In EventBridge's order: by name, as UTF-16 code units.
    pub(crate) data: Vec<DataField>,
    /// Some path in `data` has several segments, which an event may join.
    joinable: bool,
}

fn common_prefix(a: &Path, b: &Path) -> usize {
    a.segments
        .iter()
        .zip(&b.segments)
        .take_while(|(x, y)| x == y)
        .count()
}

/// One field with several values: `None` when a value that decides depends on
/// elements of an array of objects another field may also use.
fn field_on_its_own(field: &DataField, root: Option<&Value>, dotted: bool) -> Option<bool> {
    let (mut present, mut hit, mut entangled) = (false, false, false);
    let _ = field
        .path
        .for_each_value(root, dotted, &[], &mut |v, members| {
            let bound = members.iter().any(|m| m.depth <= field.shared);
            if field.leaf.matches(v) {
                if bound {
                    entangled = true;
                } else {
                    hit = true;
                }
                return ControlFlow::Break(());
            }
            if bound && field.leaf.if_absent {
                entangled = true;
                return ControlFlow::Break(());
            }
            present = true;
            ControlFlow::Continue(())
        });
    if entangled {
        return None;
    }
    Some(hit || (field.leaf.if_absent && !present))
}

/// Failed (field, constraints that still matter) states of one walk.
type Failures = HashSet<(usize, Vec<Member>)>;

impl Alternative {
    pub(crate) fn new(attributes: Vec<(Name, Leaf)>, data: Vec<(Path, Leaf)>) -> Self {
        let mut named: Vec<(Vec<u16>, Path, Leaf)> = data
            .into_iter()
            .map(|(path, leaf)| (path.name().encode_utf16().collect(), path, leaf))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let paths: Vec<&Path> = named.iter().map(|(_, p, _)| p).collect();
        let shared: Vec<usize> = (0..paths.len())
            .map(|i| {
                (0..paths.len())
                    .filter(|j| *j != i)
                    .map(|j| common_prefix(paths[i], paths[j]))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let same_parent: Vec<bool> = (0..paths.len())
            .map(|i| {
                let parent = |p: &Path| p.segments.split_last().map(|(_, init)| init.to_vec());
                i > 0 && parent(paths[i]).is_some() && parent(paths[i]) == parent(paths[i - 1])
            })
            .collect();
        let data = named
            .into_iter()
            .zip(shared.into_iter().zip(same_parent))
            .map(|((_, path, leaf), (shared, same_parent))| DataField {
                path,
                leaf,
                shared,
                same_parent,
            })
            .collect::<Vec<_>>();
        let joinable = data.iter().any(|f: &DataField| f.path.can_be_joined());
        Alternative {
            attributes,
            data,
            joinable,
        }
    }

    pub(crate) fn matches(&self, event: &Event<'_>) -> bool {
        self.attributes
            .iter()
            .all(|(name, leaf)| leaf.matches_attribute(event.get(name)))
            && self.data_matches(event)
    }

    fn data_matches(&self, event: &Event<'_>) -> bool {
        if self.data.is_empty() {
            return true;
        }
        let root = event.data();
        let dotted = self.joinable && event.data_has_dotted_keys();
        match self.each_on_its_own(root, dotted) {
            Some(answer) => answer,
            None => self.walk(root, dotted, 0, &mut Vec::new(), &mut Failures::new()),
        }
    }

    /// Step 1: `None` when some field's answer depends on array elements another field
    /// may also use.
    fn each_on_its_own(&self, root: Option<&Value>, dotted: bool) -> Option<bool> {
        let mut parent = None;
        for field in &self.data {
            let (start, from) = match parent {
                // With keys that have dots, each path has its own joined keys to look
                // for above the parent: then every field starts at the root.
                Some(p) if field.same_parent && !dotted => (Some(p), field.path.segments.len() - 1),
                _ => (root, 0),
            };
            let (found, reached) = field.path.single_value(start, from, dotted);
            parent = reached;
            let matched = match found {
                Single::Value(v) => field.leaf.matches(v),
                Single::Absent => field.leaf.if_absent,
                Single::Several => field_on_its_own(field, root, dotted)?,
            };
            if !matched {
                return Some(false);
            }
        }
        Some(true)
    }

    /// Step 2: whether fields `i..` match, given the array elements already chosen.
    fn walk(
        &self,
        root: Option<&Value>,
        dotted: bool,
        i: usize,
        chosen: &mut Vec<Member>,
        failures: &mut Failures,
    ) -> bool {
        let Some(field) = self.data.get(i) else {
            return true;
        };
        let state = (i, self.still_relevant(i, chosen));
        if failures.contains(&state) {
            return false;
        }
        let mut values: Vec<(&Value, Vec<Member>)> = Vec::new();
        let _ = field
            .path
            .for_each_value(root, dotted, chosen, &mut |v, members| {
                values.push((v, members.to_vec()));
                ControlFlow::Continue(())
            });
        let mut matched = false;
        let mut tried_unconstrained = false;
        for (value, members) in &values {
            if !field.leaf.matches(*value) {
                continue;
            }
            let new: Vec<Member> = members
                .iter()
                .filter(|m| m.depth <= field.shared && !chosen.iter().any(|c| c.array == m.array))
                .copied()
                .collect();
            if new.is_empty() {
                // Every value that adds no constraint leads to the same outcome.
                if tried_unconstrained {
                    continue;
                }
                tried_unconstrained = true;
            }
            let before = chosen.len();
            chosen.extend(new);
            matched = self.walk(root, dotted, i + 1, chosen, failures);
            chosen.truncate(before);
            if matched {
                break;
            }
        }
        if !matched && field.leaf.if_absent && values.is_empty() {
            matched = self.walk(root, dotted, i + 1, chosen, failures);
        }
        if !matched {
            failures.insert(state);
        }
        matched
    }

    /// The chosen elements that can still matter for fields `i..`: those of arrays on
    /// a path prefix one of them shares. Sorted, to compare states.
    fn still_relevant(&self, i: usize, chosen: &[Member]) -> Vec<Member> {
        let mut relevant: Vec<Member> = chosen
            .iter()
            .filter(|m| {
                self.data[..i].iter().any(|owner| {
                    self.data[i..]
                        .iter()
                        .any(|later| common_prefix(&owner.path, &later.path) >= m.depth)
                })
            })
            .copied()
            .collect();
        relevant.sort_unstable_by_key(|m| (m.array, m.index));
        relevant
    }
}
