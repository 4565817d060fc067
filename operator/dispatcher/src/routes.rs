//! A Broker's routing table: every routed Trigger's filters in one index, and where
//! each match goes.
//!
//! Routing an event costs one index lookup ([`MatcherSet`]) plus the evaluation of the
//! few filters whose guard holds for it, so a Trigger that does not match costs close
//! to nothing, whatever its dialect.

use std::collections::HashMap;
use std::sync::Arc;

use herald_cloudevents::CloudEvent;
use herald_filter::{CompiledFilter, MatcherSet};

/// Where a Trigger's matches go, and from which Broker sequence on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Trigger name (the message id of a copy includes it).
    pub trigger: String,
    /// The Trigger's queue subject.
    pub subject: String,
    /// Events at or below this Broker sequence are not routed live (backfill's part).
    pub routed_after: u64,
    /// Digest of the filters, stamped on each copy.
    pub filter_version: String,
}

/// One copy to queue: which route, for the event at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCopy {
    pub subject: String,
    /// `Nats-Msg-Id` of the copy.
    pub message_id: String,
    /// Filter digest to stamp.
    pub filter_version: String,
}

/// The routed Triggers of one Broker.
#[derive(Default)]
pub struct RouteTable {
    filters: MatcherSet<String>,
    routes: HashMap<String, Route>,
    /// Highest Broker sequence evaluated against this table, kept under its lock so
    /// a Trigger added later knows exactly which events it may have missed.
    pub max_routed: u64,
    /// Events evaluated before a Trigger was added, past its seam, still to be routed to
    /// it: the router does this before it routes anything else, so the Trigger's queue
    /// keeps Broker order.
    pub catch_up: Vec<CatchUp>,
    /// Triggers removed from the table: their seam and the last Broker sequence routed
    /// while they were in it, so one that comes back (a status that flickered) is owed
    /// only what was routed without it, not its whole history again.
    departed: HashMap<String, (u64, u64)>,
    /// The event types this Broker's router saw (the supervisor shares it with the
    /// catalog writer).
    pub catalog: Arc<std::sync::Mutex<crate::catalog::BrokerTally>>,
}

/// Departed Triggers remembered at most (beyond, they are forgotten: a Trigger that
/// comes back is then owed everything since its seam, duplicates included).
const MAX_DEPARTED: usize = 10_000;

/// Broker events `first..=last` owed to one route.
#[derive(Debug, Clone)]
pub struct CatchUp {
    pub route: Route,
    pub filter: Arc<CompiledFilter>,
    /// First Broker sequence owed.
    pub first: u64,
    /// Last Broker sequence owed.
    pub last: u64,
}

impl RouteTable {
    /// Adds or replaces the Trigger `key`. Returns `true` when it was not there before
    /// (or its queue was recreated with another seam).
    pub fn upsert(&mut self, key: &str, route: Route, filter: &Arc<CompiledFilter>) -> bool {
        let fresh = self
            .routes
            .get(key)
            .is_none_or(|r| r.routed_after != route.routed_after);
        let changed = self
            .routes
            .get(key)
            .is_none_or(|r| r.filter_version != route.filter_version);
        if changed {
            self.filters.insert(key.to_owned(), (**filter).clone());
        }
        self.routes.insert(key.to_owned(), route);
        fresh
    }

    /// Removes the Trigger `key`.
    pub fn remove(&mut self, key: &str) {
        self.filters.remove(&key.to_owned());
        if let Some(route) = self.routes.remove(key) {
            if self.departed.len() >= MAX_DEPARTED {
                self.departed.clear();
            }
            self.departed
                .insert(key.to_owned(), (route.routed_after, self.max_routed));
        }
    }

    /// The Broker sequence after which events are owed to `key`, just (re-)added with
    /// `route`: its seam, or, when it was here before with the same seam, the last
    /// event routed while it was.
    pub fn owed_after(&mut self, key: &str, route: &Route) -> u64 {
        match self.departed.remove(key) {
            Some((seam, through)) if seam == route.routed_after => through.max(seam),
            _ => route.routed_after,
        }
    }

    /// Owes again what a failed catch-up left unpaid, ahead of anything owed since
    /// (Broker order), for the Triggers still routed to the same queue and seam.
    pub fn owe_again(&mut self, unpaid: Vec<CatchUp>) {
        let later = std::mem::take(&mut self.catch_up);
        self.catch_up = unpaid
            .into_iter()
            .filter(|debt| {
                self.routes.values().any(|r| {
                    r.subject == debt.route.subject && r.routed_after == debt.route.routed_after
                })
            })
            .chain(later)
            .collect();
    }

    /// Takes on, with the Broker's routing lease, what a predecessor may have left
    /// unpaid: it routed every event through `finished` (the `router` consumer's ack
    /// floor), perhaps some past a Trigger's seam before it knew the Trigger, and its
    /// debts died with it. Every Trigger whose first event after its seam is at or
    /// after `recent` is owed its seam through `finished`; JetStream drops the copies
    /// the predecessor did store (their ids are remembered for the duplicate window,
    /// which `recent` is well inside). Older Triggers were known to the predecessor
    /// for longer than any replica takes to learn one.
    pub fn owe_on_takeover(&mut self, recent: u64, finished: u64) {
        self.max_routed = self.max_routed.max(finished);
        let owed: Vec<CatchUp> = self
            .routes
            .iter()
            .filter(|(_, route)| route.routed_after + 1 >= recent && route.routed_after < finished)
            .filter_map(|(key, route)| {
                Some(CatchUp {
                    route: route.clone(),
                    filter: Arc::new(self.filters.get(key)?.clone()),
                    first: route.routed_after + 1,
                    last: finished,
                })
            })
            .collect();
        self.catch_up.extend(owed);
    }

    /// The routed Trigger keys.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.routes.keys()
    }

    /// Whether no Trigger is routed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The copies to queue for Broker event number `sequence`; records the sequence.
    pub fn route_event(&mut self, sequence: u64, event: &CloudEvent) -> Vec<QueueCopy> {
        self.max_routed = self.max_routed.max(sequence);
        if self.routes.is_empty() {
            return Vec::new();
        }
        let data = self
            .filters
            .needs_data()
            .then(|| crate::filtering::parse_data(event))
            .flatten();
        let view = crate::filtering::view(event, data.as_ref());
        self.filters
            .matching(&view)
            .filter_map(|key| self.routes.get(key))
            .filter(|route| sequence > route.routed_after)
            .map(|route| copy_for(route, sequence))
            .collect()
    }
}

/// The copy of Broker event `sequence` for `route`.
#[must_use]
pub fn copy_for(route: &Route, sequence: u64) -> QueueCopy {
    QueueCopy {
        subject: route.subject.clone(),
        message_id: herald_api::naming::queue_message_id(sequence, &route.trigger),
        filter_version: route.filter_version.clone(),
    }
}

/// What `debts` still owe once every event through `done_through` was copied.
#[must_use]
pub fn still_owed(debts: Vec<CatchUp>, done_through: u64) -> Vec<CatchUp> {
    debts
        .into_iter()
        .filter_map(|mut debt| {
            debt.first = debt.first.max(done_through + 1);
            (debt.first <= debt.last).then_some(debt)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(v: &serde_json::Value) -> Arc<CompiledFilter> {
        Arc::new(CompiledFilter::from_filter(v).unwrap())
    }

    fn route(trigger: &str, after: u64, version: &str) -> Route {
        Route {
            trigger: trigger.into(),
            subject: format!("heraldq.ns.b.{trigger}"),
            routed_after: after,
            filter_version: version.into(),
        }
    }

    fn event(source: &str, amount: i64) -> CloudEvent {
        let mut e = CloudEvent::new("1", source, "order.created");
        e.data = Some(bytes::Bytes::from(json!({"amount": amount}).to_string()));
        e
    }

    #[test]
    fn each_event_goes_to_exactly_the_triggers_that_match_after_their_seam() {
        let mut table = RouteTable::default();
        assert!(table.upsert(
            "ns/eu",
            route("eu", 0, "1"),
            &filter(&json!({"prefix": {"source": "/eu/"}}))
        ));
        table.upsert(
            "ns/big",
            route("big", 5, "1"),
            &filter(&json!({"pattern": {"data": {"amount": [{"numeric": [">", 100]}]}}})),
        );
        table.upsert(
            "ns/sql",
            route("sql", 0, "1"),
            &filter(&json!({"cesql": "source LIKE '/us/%'"})),
        );
        let subjects = |copies: Vec<QueueCopy>| {
            let mut s: Vec<_> = copies.into_iter().map(|c| c.subject).collect();
            s.sort();
            s
        };
        assert_eq!(
            subjects(table.route_event(3, &event("/eu/shop", 500))),
            ["heraldq.ns.b.eu"],
            "big starts after 5"
        );
        assert_eq!(
            subjects(table.route_event(6, &event("/eu/shop", 500))),
            ["heraldq.ns.b.big", "heraldq.ns.b.eu"]
        );
        assert_eq!(
            subjects(table.route_event(7, &event("/us/shop", 1))),
            ["heraldq.ns.b.sql"]
        );
        assert!(table.route_event(8, &event("/asia", 1)).is_empty());
        assert_eq!(table.max_routed, 8);
        let copy = &table.route_event(9, &event("/us/x", 1))[0];
        assert_eq!(copy.message_id, "9:sql");
    }

    #[test]
    fn a_replaced_filter_takes_effect_and_a_removed_trigger_gets_nothing() {
        let mut table = RouteTable::default();
        table.upsert(
            "ns/t",
            route("t", 0, "1"),
            &filter(&json!({"exact": {"source": "a"}})),
        );
        assert!(!table.upsert(
            "ns/t",
            route("t", 0, "2"),
            &filter(&json!({"exact": {"source": "b"}}))
        ));
        assert!(table.route_event(1, &event("a", 0)).is_empty());
        assert_eq!(table.route_event(2, &event("b", 0)).len(), 1);
        table.remove("ns/t");
        assert!(table.is_empty());
        assert!(table.route_event(3, &event("b", 0)).is_empty());
    }

    /// Filters of every dialect over a small vocabulary, so events often match some.
    fn filters() -> Vec<serde_json::Value> {
        let mut all = Vec::new();
        for v in ["a", "b", "c"] {
            all.push(json!({"exact": {"type": format!("t.{v}")}}));
            all.push(json!({"prefix": {"source": format!("/{v}")}}));
            all.push(json!({"suffix": {"subject": v}}));
            all.push(json!({"cesql": format!("tenant = '{v}' OR source LIKE '%{v}'")}));
            all.push(json!({"pattern": {"data": {"k": [v, {"prefix": "x"}]}}}));
            all.push(json!({"pattern": {"data": {"n": [{"numeric": [">", 5]}]}, "type": [format!("t.{v}")]}}));
            all.push(json!({"not": {"exact": {"tenant": v}}}));
            all.push(
                json!({"any": [{"exact": {"subject": v}}, {"prefix": {"type": format!("t.{v}")}}]}),
            );
        }
        all.push(json!({"cesql": "EXISTS tenant"}));
        all
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        #[test]
        fn routing_agrees_with_each_filter_alone(
            ty in "t\\.[abcd]", source in "/[abcx]{1,3}", subject in proptest::option::of("[abc]{1,2}"),
            tenant in proptest::option::of("[abc]"), k in "[abcx]{1,2}", n in 0i64..10,
        ) {
            let mut event = CloudEvent::new("1", &source, &ty);
            if let Some(subject) = &subject { event.set("subject", subject.as_str()); }
            if let Some(tenant) = &tenant { event.set("tenant", tenant.as_str()); }
            event.set("datacontenttype", "application/json");
            event.data = Some(bytes::Bytes::from(json!({"k": k, "n": n}).to_string()));
            let mut table = RouteTable::default();
            let mut alone = Vec::new();
            for (i, f) in filters().iter().enumerate() {
                let compiled = filter(f);
                let trigger = format!("t{i}");
                if crate::filtering::matches(&compiled, &event) {
                    alone.push(format!("heraldq.ns.b.{trigger}"));
                }
                table.upsert(&trigger, route(&trigger, 0, "1"), &compiled);
            }
            let mut routed: Vec<String> = table.route_event(1, &event).into_iter().map(|c| c.subject).collect();
            routed.sort();
            alone.sort();
            proptest::prop_assert_eq!(routed, alone);
        }
    }

    #[test]
    fn a_trigger_that_comes_back_is_owed_only_what_was_routed_without_it() {
        let route = |seam| Route {
            trigger: "t".into(),
            subject: "q.t".into(),
            routed_after: seam,
            filter_version: "v".into(),
        };
        let mut table = RouteTable::default();
        let any = filter(&json!({"prefix": {"source": "/"}}));
        table.upsert("ns/t", route(2), &any);
        table.max_routed = 5;
        table.remove("ns/t");
        table.max_routed = 8;
        assert!(table.upsert("ns/t", route(2), &any));
        assert_eq!(
            table.owed_after("ns/t", &route(2)),
            5,
            "6..=8 routed without it"
        );
        table.remove("ns/t");
        assert!(table.upsert("ns/t", route(8), &any));
        assert_eq!(
            table.owed_after("ns/t", &route(8)),
            8,
            "a new queue: from its seam"
        );
        assert_eq!(table.owed_after("never", &route(3)), 3);
    }

    #[test]
    fn unpaid_debts_come_back_first_and_only_for_triggers_still_routed_to_that_queue() {
        let route = |trigger: &str, seam| Route {
            trigger: trigger.into(),
            subject: format!("q.{trigger}"),
            routed_after: seam,
            filter_version: "v".into(),
        };
        let any = filter(&json!({"prefix": {"source": "/"}}));
        let debt = |trigger: &str, seam, first, last| CatchUp {
            route: route(trigger, seam),
            filter: any.clone(),
            first,
            last,
        };
        let mut table = RouteTable::default();
        table.upsert("ns/a", route("a", 2), &any);
        table.upsert("ns/b", route("b", 9), &any);
        table.catch_up.push(debt("b", 9, 10, 12));
        table.owe_again(vec![
            debt("a", 2, 3, 8),
            debt("gone", 1, 2, 8),
            debt("b", 4, 5, 8),
        ]);
        let owed: Vec<_> = table
            .catch_up
            .iter()
            .map(|d| (d.route.trigger.as_str(), d.first, d.last))
            .collect();
        assert_eq!(
            owed,
            [("a", 3, 8), ("b", 10, 12)],
            "a's debt first; none for a removed Trigger or an old queue of b"
        );
    }

    #[test]
    fn a_new_lease_holder_owes_recent_triggers_what_its_predecessor_finished() {
        let route = |trigger: &str, seam| route(trigger, seam, "v");
        let any = filter(&json!({"prefix": {"source": "/"}}));
        let mut table = RouteTable::default();
        table.upsert("ns/old", route("old", 10), &any);
        table.upsert("ns/recent", route("recent", 60), &any);
        table.upsert("ns/edge", route("edge", 49), &any);
        table.upsert("ns/ahead", route("ahead", 90), &any);
        // Events from 50 on were stored recently; the predecessor finished 80.
        table.owe_on_takeover(50, 80);
        let mut owed: Vec<_> = table
            .catch_up
            .iter()
            .map(|d| (d.route.trigger.as_str(), d.first, d.last))
            .collect();
        owed.sort_unstable();
        assert_eq!(
            owed,
            [("edge", 50, 80), ("recent", 61, 80)],
            "not the old Trigger (known for long), nor one whose seam is past what was finished"
        );
        assert_eq!(
            table.max_routed, 80,
            "a Trigger learned later is owed through 80"
        );
    }

    #[test]
    fn a_failed_pass_still_owes_from_the_first_event_not_copied_for_every_debt() {
        let debt = |first, last| CatchUp {
            route: Route {
                trigger: format!("t{first}"),
                subject: "q".into(),
                routed_after: 0,
                filter_version: "v".into(),
            },
            filter: filter(&json!({"prefix": {"source": "/"}})),
            first,
            last,
        };
        let owed: Vec<_> = still_owed(vec![debt(3, 5), debt(4, 9), debt(8, 12)], 6)
            .iter()
            .map(|d| (d.first, d.last))
            .collect();
        assert_eq!(owed, [(7, 9), (8, 12)], "3..=5 was paid in full");
        assert_eq!(
            still_owed(vec![debt(1, 4)], 0)[0].first,
            1,
            "nothing copied yet"
        );
    }
}
