//! The index behind [`crate::MatcherSet`].
//!
//! For every field that some filter's guard tests (an attribute such as `type` or
//! `tenant`, or a path in `data`), a [`FieldIndex`] maps literals to the filters whose
//! atom tests that literal: one hash map for equality, one per literal length for
//! prefixes and for suffixes. For an event, each indexed field is read once and looked
//! up in its maps (one probe per distinct prefix or suffix length), or, for a number
//! in `data`, checked against the ranges of that path, which yields the candidate
//! filters; filters without a guard are candidates for every event.
//!
//! A filter with several atoms sits in several buckets. When it is reached through
//! atom `k`, it is a candidate only if none of its atoms `0..k` holds, so it is
//! evaluated once per event without any per-event bookkeeping.
//!
//! A `data` path whose value is an array (or that crosses one) matches "any
//! element"; the index does not resolve that and makes every filter guarded on that
//! path a candidate instead. So does an event that spells part of the path as one key
//! with dots (`{"a.b": ...}` for the path `a` → `b`, which patterns read as the same
//! field).

use std::collections::HashMap;
use std::slice;

use serde_json::Value;

use crate::event::{AttributeValue, Event, format_i32};
use crate::filter::CompiledFilter;
use crate::guard::{Atom, Check, Field, Test};
use crate::pattern::Range;

/// A Trigger's filter in the set's slab.
#[derive(Clone, Debug)]
pub(crate) struct Slot<K> {
    pub(crate) key: K,
    pub(crate) filter: CompiledFilter,
}

/// A filter in a bucket, and which of its atoms put it there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) slot: u32,
    pub(crate) atom: u32,
}

type Buckets = HashMap<String, Vec<Entry>>;

/// The buckets of one field.
#[derive(Clone, Debug)]
pub(crate) struct FieldIndex {
    pub(crate) field: Field,
    equals: Buckets,
    /// By the literal's length in bytes, shortest first.
    prefixes: Vec<(usize, Buckets)>,
    suffixes: Vec<(usize, Buckets)>,
    /// Number ranges (`data` fields only), checked one by one.
    ranges: Vec<(Range, Entry)>,
    /// For a `data` field: each filter once, for events with an array on the path.
    members: Vec<Entry>,
    /// For a `data` field: the keys that spell several of its segments at once.
    joined: Vec<Vec<String>>,
}

fn by_length(groups: &mut Vec<(usize, Buckets)>, len: usize) -> &mut Buckets {
    let at = match groups.binary_search_by_key(&len, |(l, _)| *l) {
        Ok(at) => at,
        Err(at) => {
            groups.insert(at, (len, HashMap::new()));
            at
        }
    };
    &mut groups[at].1
}

impl FieldIndex {
    pub(crate) fn new(field: Field) -> Self {
        let joined = match &field {
            Field::Data(path) => crate::pattern::joined_keys(path),
            Field::Attribute(_) => Vec::new(),
        };
        FieldIndex {
            joined,
            field,
            equals: HashMap::new(),
            prefixes: Vec::new(),
            suffixes: Vec::new(),
            ranges: Vec::new(),
            members: Vec::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.equals.is_empty()
            && self.prefixes.is_empty()
            && self.suffixes.is_empty()
            && self.ranges.is_empty()
            && self.members.is_empty()
    }

    pub(crate) fn add(&mut self, atom: &Atom, entry: Entry) {
        match &atom.check {
            Check::Text(test, value) => {
                let buckets = match test {
                    Test::Equals => &mut self.equals,
                    Test::Prefix => by_length(&mut self.prefixes, value.len()),
                    Test::Suffix => by_length(&mut self.suffixes, value.len()),
                };
                buckets.entry(value.clone()).or_default().push(entry);
            }
            Check::Number(range) => self.ranges.push((range.clone(), entry)),
        }
        if matches!(self.field, Field::Data(_))
            && !self.members.iter().any(|e| e.slot == entry.slot)
        {
            self.members.push(Entry {
                slot: entry.slot,
                atom: 0,
            });
        }
    }

    pub(crate) fn remove(&mut self, atom: &Atom, slot: u32) {
        let forget = |buckets: &mut Buckets, value: &String| {
            if let Some(list) = buckets.get_mut(value) {
                list.retain(|e| e.slot != slot);
                if list.is_empty() {
                    buckets.remove(value);
                }
            }
        };
        match &atom.check {
            Check::Text(Test::Equals, v) => forget(&mut self.equals, v),
            Check::Text(Test::Prefix, v) => {
                self.prefixes.iter_mut().for_each(|(_, b)| forget(b, v));
            }
            Check::Text(Test::Suffix, v) => {
                self.suffixes.iter_mut().for_each(|(_, b)| forget(b, v));
            }
            Check::Number(_) => self.ranges.retain(|(_, e)| e.slot != slot),
        }
        self.prefixes.retain(|(_, b)| !b.is_empty());
        self.suffixes.retain(|(_, b)| !b.is_empty());
        self.members.retain(|e| e.slot != slot);
    }
}

/// A field's value in one event.
enum Text<'e> {
    /// Absent, or not a string: no atom holds.
    Nothing,
    Str(&'e str),
    /// An integer attribute's canonical text, `buf[start..]`.
    Int([u8; 11], usize),
    /// A number in `data`.
    Number(f64),
    /// An array on the `data` path, or a key that spells several of its segments:
    /// not resolved, every filter guarded on the path is a candidate.
    Array,
}

impl Text<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Text::Str(s) => Some(s),
            Text::Int(buf, start) => std::str::from_utf8(&buf[*start..]).ok(),
            Text::Nothing | Text::Number(_) | Text::Array => None,
        }
    }

    fn satisfies(&self, atom: &Atom) -> bool {
        match self {
            Text::Number(n) => atom.accepts_number(*n),
            text => text.as_str().is_some_and(|t| atom.accepts_text(t)),
        }
    }
}

fn read<'e>(index: &FieldIndex, event: &Event<'e>) -> Text<'e> {
    match &index.field {
        Field::Attribute(name) => match event.get(name) {
            None => Text::Nothing,
            Some(AttributeValue::String(s)) => Text::Str(s),
            Some(AttributeValue::Boolean(b)) => Text::Str(if b { "true" } else { "false" }),
            Some(AttributeValue::Integer(i)) => {
                let mut buf = [0u8; 11];
                let start = buf.len() - format_i32(i, &mut buf).len();
                Text::Int(buf, start)
            }
        },
        Field::Data(path) => {
            let mut value = event.data();
            for (at, key) in path.iter().enumerate() {
                value = match value {
                    Some(Value::Object(map)) => {
                        if !index.joined[at].is_empty()
                            && event.data_has_dotted_keys()
                            && index.joined[at].iter().any(|k| map.contains_key(k))
                        {
                            // Another spelling of the path: not resolved here.
                            return Text::Array;
                        }
                        map.get(key)
                    }
                    Some(Value::Array(_)) => return Text::Array,
                    _ => return Text::Nothing,
                };
            }
            match value {
                Some(Value::String(s)) => Text::Str(s),
                Some(Value::Number(n)) => n.as_f64().map_or(Text::Nothing, Text::Number),
                Some(Value::Array(_)) => Text::Array,
                _ => Text::Nothing,
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Stage {
    Open,
    Equals,
    Prefix(usize),
    Suffix(usize),
    Ranges(usize),
    Next,
}

/// The filters to evaluate for one event, each once: those without a guard, then
/// those in the buckets the event's fields select. Yields whether the filter was reached
/// through one of its atoms (rather than as a member of an array path or unindexed).
pub(crate) struct Candidates<'s, 'e, K> {
    slots: &'s [Option<Slot<K>>],
    fields: &'s [FieldIndex],
    event: &'s Event<'e>,
    at: usize,
    stage: Stage,
    text: Text<'e>,
    bucket: slice::Iter<'s, Entry>,
    via_atom: bool,
    unindexed: slice::Iter<'s, u32>,
}

impl<'s, 'e, K> Candidates<'s, 'e, K> {
    pub(crate) fn new(
        slots: &'s [Option<Slot<K>>],
        fields: &'s [FieldIndex],
        unindexed: &'s [u32],
        event: &'s Event<'e>,
    ) -> Self {
        Candidates {
            slots,
            fields,
            event,
            at: 0,
            stage: Stage::Open,
            text: Text::Nothing,
            bucket: [].iter(),
            via_atom: false,
            unindexed: unindexed.iter(),
        }
    }

    /// Moves to the next non-empty bucket of the event's fields; `false` when done.
    fn advance(&mut self) -> bool {
        while let Some(index) = self.fields.get(self.at) {
            let found = match self.stage {
                Stage::Open => {
                    self.text = read(index, self.event);
                    match self.text {
                        Text::Nothing => self.stage = Stage::Next,
                        Text::Array => {
                            self.stage = Stage::Next;
                            self.bucket = index.members.iter();
                            self.via_atom = false;
                            return true;
                        }
                        Text::Str(_) | Text::Int(..) => self.stage = Stage::Equals,
                        Text::Number(_) => self.stage = Stage::Ranges(0),
                    }
                    None
                }
                Stage::Ranges(from) => {
                    let hit = match self.text {
                        Text::Number(n) => index.ranges[from..]
                            .iter()
                            .position(|(range, _)| range.contains(n)),
                        _ => None,
                    };
                    match hit {
                        Some(i) => {
                            self.stage = Stage::Ranges(from + i + 1);
                            self.bucket = slice::from_ref(&index.ranges[from + i].1).iter();
                            self.via_atom = true;
                            return true;
                        }
                        None => self.stage = Stage::Next,
                    }
                    None
                }
                Stage::Equals => {
                    self.stage = Stage::Prefix(0);
                    self.text.as_str().and_then(|t| index.equals.get(t))
                }
                Stage::Prefix(i) => {
                    let text = self.text.as_str().unwrap_or_default();
                    match index.prefixes.get(i) {
                        Some((len, buckets)) if *len <= text.len() => {
                            self.stage = Stage::Prefix(i + 1);
                            text.get(..*len).and_then(|p| buckets.get(p))
                        }
                        _ => {
                            self.stage = Stage::Suffix(0);
                            None
                        }
                    }
                }
                Stage::Suffix(i) => {
                    let text = self.text.as_str().unwrap_or_default();
                    match index.suffixes.get(i) {
                        Some((len, buckets)) if *len <= text.len() => {
                            self.stage = Stage::Suffix(i + 1);
                            text.get(text.len() - len..).and_then(|s| buckets.get(s))
                        }
                        _ => {
                            self.stage = Stage::Next;
                            None
                        }
                    }
                }
                Stage::Next => {
                    self.at += 1;
                    self.stage = Stage::Open;
                    None
                }
            };
            if let Some(list) = found {
                self.bucket = list.iter();
                self.via_atom = true;
                return true;
            }
        }
        false
    }

    /// Whether none of the atoms before `atom` holds, so this is the filter's first
    /// bucket for the event.
    fn first_hit(&self, filter: &CompiledFilter, atom: u32) -> bool {
        if atom == 0 || !self.via_atom {
            return true;
        }
        let Some(guard) = filter.guard() else {
            return true;
        };
        let field = &self.fields[self.at].field;
        let before = guard.atoms().get(..atom as usize).unwrap_or_default();
        !before.iter().any(|a| {
            if a.field == *field {
                self.text.satisfies(a)
            } else {
                a.holds_for_attribute(self.event)
            }
        })
    }
}

impl<'s, K> Iterator for Candidates<'s, '_, K> {
    type Item = (&'s Slot<K>, bool);

    fn next(&mut self) -> Option<Self::Item> {
        let slots = self.slots;
        for id in self.unindexed.by_ref() {
            if let Some(slot) = slots.get(*id as usize).and_then(Option::as_ref) {
                return Some((slot, false));
            }
        }
        loop {
            if let Some(entry) = self.bucket.next() {
                if let Some(slot) = slots.get(entry.slot as usize).and_then(Option::as_ref) {
                    if self.first_hit(&slot.filter, entry.atom) {
                        return Some((slot, self.via_atom));
                    }
                }
            } else if !self.advance() {
                return None;
            }
        }
    }
}
