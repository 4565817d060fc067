//! [`MatcherSet`]: the compiled filters of a Broker's Triggers, indexed by event type.

use std::collections::HashMap;
use std::hash::Hash;

use crate::event::Event;
use crate::filter::CompiledFilter;

/// The filters of many Triggers, keyed by the caller's Trigger key.
///
/// Filters that require an exact `type` ([`CompiledFilter::indexed_type`]) sit in a
/// hash index on that type; an event is tested only against the filters indexed under
/// its own type plus the filters that have no such requirement. Lookups borrow the
/// event's type, so matching allocates nothing. The order of
/// [`MatcherSet::matching`] is unspecified.
#[derive(Clone, Debug)]
pub struct MatcherSet<K> {
    by_type: HashMap<String, Vec<(K, CompiledFilter)>>,
    unindexed: Vec<(K, CompiledFilter)>,
    /// Each key's bucket: `Some(type)` or `None` for `unindexed`.
    location: HashMap<K, Option<String>>,
    needing_data: usize,
}

impl<K> Default for MatcherSet<K> {
    fn default() -> Self {
        MatcherSet {
            by_type: HashMap::new(),
            unindexed: Vec::new(),
            location: HashMap::new(),
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

    /// Adds or replaces the filter of `key`; returns the filter it replaced.
    pub fn insert(&mut self, key: K, filter: CompiledFilter) -> Option<CompiledFilter> {
        let previous = self.remove(&key);
        if filter.needs_data() {
            self.needing_data += 1;
        }
        let bucket = filter.indexed_type().map(str::to_owned);
        match &bucket {
            Some(ty) => self
                .by_type
                .entry(ty.clone())
                .or_default()
                .push((key.clone(), filter)),
            None => self.unindexed.push((key.clone(), filter)),
        }
        self.location.insert(key, bucket);
        previous
    }

    /// Removes the filter of `key` and returns it.
    pub fn remove(&mut self, key: &K) -> Option<CompiledFilter> {
        let bucket = self.location.remove(key)?;
        let list = match &bucket {
            Some(ty) => self.by_type.get_mut(ty)?,
            None => &mut self.unindexed,
        };
        let at = list.iter().position(|(k, _)| k == key)?;
        let (_, filter) = list.remove(at);
        if let Some(ty) = &bucket {
            if list.is_empty() {
                self.by_type.remove(ty);
            }
        }
        if filter.needs_data() {
            self.needing_data -= 1;
        }
        Some(filter)
    }

    /// The filter of `key`.
    #[must_use]
    pub fn get(&self, key: &K) -> Option<&CompiledFilter> {
        let list = match self.location.get(key)? {
            Some(ty) => self.by_type.get(ty)?,
            None => &self.unindexed,
        };
        list.iter().find(|(k, _)| k == key).map(|(_, f)| f)
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
            .filter(move |(_, filter)| filter.matches(event))
            .map(|(key, _)| key)
    }

    /// The keys whose filters match `event`, collected.
    #[must_use]
    pub fn matching_keys(&self, event: &Event<'_>) -> Vec<K> {
        self.matching(event).cloned().collect()
    }

    /// How many filters [`MatcherSet::matching`] evaluates for `event`.
    #[must_use]
    pub fn candidate_count(&self, event: &Event<'_>) -> usize {
        self.candidates(event).count()
    }

    fn candidates<'s>(
        &'s self,
        event: &Event<'_>,
    ) -> impl Iterator<Item = &'s (K, CompiledFilter)> + use<'s, K> {
        let typed = self
            .by_type
            .get(event.event_type())
            .map_or(&[][..], Vec::as_slice);
        typed.iter().chain(self.unindexed.iter())
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
        assert!(set.by_type.is_empty(), "empty buckets are dropped");
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
