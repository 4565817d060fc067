//! [`MatcherSet`]: the compiled filters of a Broker's Triggers, indexed on their guards.

use std::collections::HashMap;
use std::hash::Hash;

use crate::event::Event;
use crate::filter::CompiledFilter;
use crate::guard::Field;
use crate::index::{Candidates, Entry, FieldIndex, Slot};

/// The filters of many Triggers, keyed by the caller's Trigger key.
///
/// Each filter is indexed on its *guard*, a cheap necessary condition derived when it
/// was compiled: an exact `type`, any attribute equal to, starting with or ending with
/// a literal (from `exact`, `prefix`, `suffix`, CESQL `=`, `LIKE` and `IN`, pattern
/// fields), or a string at a path in `data`; `any` and `OR` give several. An event is
/// then tested only against the filters whose guard holds for it, plus the filters
/// that have no guard (`not` alone, `EXISTS`, numeric ranges, ...). Matching borrows
/// the event and allocates nothing. The order of [`MatcherSet::matching`] is
/// unspecified.
#[derive(Clone, Debug)]
pub struct MatcherSet<K> {
    slots: Vec<Option<Slot<K>>>,
    free: Vec<u32>,
    location: HashMap<K, u32>,
    fields: Vec<FieldIndex>,
    unindexed: Vec<u32>,
    needing_data: usize,
}

impl<K> Default for MatcherSet<K> {
    fn default() -> Self {
        MatcherSet {
            slots: Vec::new(),
            free: Vec::new(),
            location: HashMap::new(),
            fields: Vec::new(),
            unindexed: Vec::new(),
            needing_data: 0,
        }
    }
}

impl<K: Eq + Hash + Clone> MatcherSet<K> {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        MatcherSet::default()
    }

    fn field_index(&mut self, field: &Field) -> &mut FieldIndex {
        let at = if let Some(at) = self.fields.iter().position(|f| f.field == *field) {
            at
        } else {
            self.fields.push(FieldIndex::new(field.clone()));
            self.fields.len() - 1
        };
        &mut self.fields[at]
    }

    /// Adds or replaces the filter of `key`; returns the filter it replaced.
    ///
    /// # Panics
    ///
    /// If the set would hold more than `u32::MAX` filters.
    pub fn insert(&mut self, key: K, filter: CompiledFilter) -> Option<CompiledFilter> {
        let previous = self.remove(&key);
        if filter.needs_data() {
            self.needing_data += 1;
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 filters")
        });
        match filter.guard() {
            Some(guard) => {
                for (atom, i) in guard.atoms().iter().zip(0u32..) {
                    self.field_index(&atom.field)
                        .add(atom, Entry { slot, atom: i });
                }
            }
            None => self.unindexed.push(slot),
        }
        self.slots[slot as usize] = Some(Slot {
            key: key.clone(),
            filter,
        });
        self.location.insert(key, slot);
        previous
    }

    /// Removes the filter of `key` and returns it.
    pub fn remove(&mut self, key: &K) -> Option<CompiledFilter> {
        let id = self.location.remove(key)?;
        let slot = self.slots.get_mut(id as usize)?.take()?;
        match slot.filter.guard() {
            Some(guard) => {
                for atom in guard.atoms() {
                    if let Some(at) = self.fields.iter().position(|f| f.field == atom.field) {
                        self.fields[at].remove(atom, id);
                        if self.fields[at].is_empty() {
                            self.fields.swap_remove(at);
                        }
                    }
                }
            }
            None => self.unindexed.retain(|s| *s != id),
        }
        self.free.push(id);
        if slot.filter.needs_data() {
            self.needing_data -= 1;
        }
        Some(slot.filter)
    }

    /// The filter of `key`.
    #[must_use]
    pub fn get(&self, key: &K) -> Option<&CompiledFilter> {
        let id = self.location.get(key)?;
        self.slots
            .get(*id as usize)?
            .as_ref()
            .map(|slot| &slot.filter)
    }

    /// Whether `key` has a filter in the set.
    #[must_use]
    pub fn contains_key(&self, key: &K) -> bool {
        self.location.contains_key(key)
    }

    /// How many filters the set holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.location.len()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.location.is_empty()
    }

    /// Whether any filter looks at `data`; if none does, payloads need no parsing.
    #[must_use]
    pub fn needs_data(&self) -> bool {
        self.needing_data > 0
    }

    /// The keys whose filters match `event`.
    pub fn matching<'s>(&'s self, event: &'s Event<'_>) -> impl Iterator<Item = &'s K> {
        self.candidates(event)
            .filter(move |(slot, via_atom)| {
                (*via_atom && slot.filter.guard_decides()) || slot.filter.matches(event)
            })
            .map(|(slot, _)| &slot.key)
    }

    /// The keys whose filters match `event`, collected.
    #[must_use]
    pub fn matching_keys(&self, event: &Event<'_>) -> Vec<K> {
        self.matching(event).cloned().collect()
    }

    /// How many filters [`MatcherSet::matching`] considers for `event` (those its index
    /// selects plus those without a guard).
    #[must_use]
    pub fn candidate_count(&self, event: &Event<'_>) -> usize {
        self.candidates(event).count()
    }

    /// How many filters are candidates for every event because they have no guard.
    #[must_use]
    pub fn unindexed_count(&self) -> usize {
        self.unindexed.len()
    }

    fn candidates<'s, 'e>(&'s self, event: &'s Event<'e>) -> Candidates<'s, 'e, K> {
        Candidates::new(&self.slots, &self.fields, &self.unindexed, event)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn filter(filters: &Value) -> CompiledFilter {
        let list = filters.as_array().expect("a list of filters");
        CompiledFilter::from_parts([], list).expect("valid filters")
    }

    fn typed(ty: &str) -> CompiledFilter {
        filter(&json!([{"exact": {"type": ty}}]))
    }

    #[test]
    fn the_type_index_narrows_candidates() {
        let mut set = MatcherSet::new();
        let types: Vec<String> = (0..1000).map(|i| format!("com.example.t{i}")).collect();
        for (i, ty) in types.iter().enumerate() {
            set.insert(i, typed(ty));
        }
        assert_eq!(set.len(), 1000);

        let event = Event::new("1", "/s", "1.0", &types[417]);
        assert_eq!(set.candidate_count(&event), 1);
        assert_eq!(set.matching_keys(&event), vec![417]);

        let unknown = Event::new("1", "/s", "1.0", "com.example.none");
        assert_eq!(set.candidate_count(&unknown), 0);
        assert!(set.matching_keys(&unknown).is_empty());

        // Filters without an exact type are candidates for every event.
        for i in 0..5 {
            set.insert(
                2000 + i,
                filter(&json!([{"prefix": {"type": "com.example.t41"}}])),
            );
        }
        assert_eq!(set.candidate_count(&event), 6);
        let mut hits = set.matching_keys(&event);
        hits.sort_unstable();
        assert_eq!(hits, vec![417, 2000, 2001, 2002, 2003, 2004]);
    }

    #[test]
    fn type_plus_more_conditions_is_indexed_and_still_evaluated() {
        let mut set = MatcherSet::new();
        set.insert(
            "a",
            filter(&json!([{"exact": {"type": "t", "source": "/one"}}])),
        );
        set.insert("b", filter(&json!([{"cesql": "type = 't'"}])));
        let one = Event::new("1", "/one", "1.0", "t");
        let two = Event::new("1", "/two", "1.0", "t");
        assert_eq!(set.candidate_count(&one), 2);
        let mut hits = set.matching_keys(&one);
        hits.sort_unstable();
        assert_eq!(hits, vec!["a", "b"]);
        assert_eq!(set.matching_keys(&two), vec!["b"]);
    }

    #[test]
    fn insert_replaces_and_remove_forgets() {
        let mut set = MatcherSet::new();
        assert!(set.insert("k", typed("a")).is_none());
        let previous = set.insert("k", typed("b")).expect("replaced");
        assert_eq!(previous.exact_type(), Some("a"));
        assert_eq!(set.len(), 1);
        assert!(
            set.matching_keys(&Event::new("1", "/", "1.0", "a"))
                .is_empty()
        );
        assert_eq!(
            set.matching_keys(&Event::new("1", "/", "1.0", "b")),
            vec!["k"]
        );
        assert_eq!(
            set.get(&"k").and_then(CompiledFilter::exact_type),
            Some("b")
        );

        set.insert("all", CompiledFilter::match_all());
        assert_eq!(
            set.matching_keys(&Event::new("1", "/", "1.0", "zzz")),
            vec!["all"]
        );

        assert!(set.remove(&"k").is_some());
        assert!(set.remove(&"k").is_none());
        assert!(!set.contains_key(&"k"));
        assert!(set.remove(&"all").is_some());
        assert!(set.is_empty());
        assert!(set.fields.is_empty(), "empty indexes are dropped");
        assert!(set.unindexed.is_empty());
    }

    #[test]
    fn needs_data_follows_the_filters() {
        let mut set = MatcherSet::new();
        set.insert(1, typed("a"));
        assert!(!set.needs_data());
        set.insert(2, filter(&json!([{"pattern": {"data": {"x": [1]}}}])));
        assert!(set.needs_data());
        set.insert(2, typed("b"));
        assert!(!set.needs_data());
        set.insert(
            3,
            filter(&json!([{"not": {"pattern": {"data": {"x": [1]}}}}])),
        );
        assert!(set.needs_data());
        set.remove(&3);
        assert!(!set.needs_data());
    }
}
