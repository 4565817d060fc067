//! Names Herald derives from a Broker's namespace and name.
//!
//! Every component computes the same names from the same inputs, so nothing has to
//! be looked up on the hot path:
//!
//! - the JetStream **stream** of Broker `ns/name` is `HERALD_<ns>_<name>`;
//! - its **subjects** live under `herald.<ns>.<name>.>`, so two Brokers never share
//!   a subject (and therefore never see each other's events);
//! - an event of type `com.example.order` is stored under
//!   `herald.<ns>.<name>.com.example.order`: each `.`-separated part of the type is one
//!   subject token ([`type_tokens`]), so an exact `type` filter is an exact subject
//!   filter and a type prefix ending at a dot is a `>` wildcard.
//!
//! Kubernetes names contain only `[a-z0-9-.]`; namespaces never contain `.`. A `.` in a
//! Broker name would split a NATS subject token and is not allowed in stream names, so
//! it becomes `_`, which no Kubernetes name contains: the mapping stays injective.
//! Names that would be longer than [`MAX_STREAM_NAME`] are cut and end in a hash of the
//! full `namespace/name`, which keeps them unique and stable.

use sha2::{Digest, Sha256};

/// Longest stream name Herald creates. JetStream stores a stream in a directory named
/// after it; keeping names short keeps paths well under file-system limits.
pub const MAX_STREAM_NAME: usize = 64;
/// Prefix of every stream the operator creates.
pub const STREAM_PREFIX: &str = "HERALD_";
/// First token of every subject Herald publishes to.
pub const SUBJECT_ROOT: &str = "herald";

fn token(name: &str) -> String {
    name.replace('.', "_")
}

/// The first 8 hex digits of the SHA-256 of `input`: a short, stable disambiguator.
#[must_use]
pub fn short_hash(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    digest[..4]
        .iter()
        .fold(String::with_capacity(8), |mut hex, b| {
            use std::fmt::Write;
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// `full` if it fits [`MAX_STREAM_NAME`], else its start and a hash of `key`.
fn bounded(full: String, key: &str) -> String {
    if full.len() <= MAX_STREAM_NAME {
        return full;
    }
    let hash = short_hash(key);
    // Kubernetes names are ASCII, so byte-slicing is on a char boundary.
    let keep = MAX_STREAM_NAME - hash.len() - 1;
    format!("{}_{hash}", &full[..keep])
}

/// The JetStream stream name for Broker `namespace/name`.
#[must_use]
pub fn stream_name(namespace: &str, name: &str) -> String {
    bounded(
        format!("{STREAM_PREFIX}{namespace}_{}", token(name)),
        &format!("{namespace}/{name}"),
    )
}

/// The durable consumer name of Trigger `name`, inside its Broker's stream (which
/// already belongs to one namespace): same rules as stream names.
#[must_use]
pub fn consumer_name(trigger: &str) -> String {
    bounded(format!("trigger_{}", token(trigger)), trigger)
}

/// Prefix of every Trigger-queue stream. `HERALDQ_` can never begin a Broker's stream
/// name (those continue `HERALD_` with a lowercase namespace), so the two never collide.
pub const QUEUE_STREAM_PREFIX: &str = "HERALDQ_";
/// First token of the subjects of Trigger queues; apart from [`SUBJECT_ROOT`], so a
/// Broker's stream never captures a routed copy.
pub const QUEUE_SUBJECT_ROOT: &str = "heraldq";
/// The durable consumer of a Broker's stream that routes its events to Trigger queues.
pub const ROUTER_CONSUMER: &str = "router";

/// The first stream holding the queues of Broker `namespace/name`'s Triggers: each
/// Trigger's matching events, one subject per Trigger (later ones:
/// [`queue_shard_stream_name`]).
#[must_use]
pub fn queue_stream_name(namespace: &str, name: &str) -> String {
    bounded(
        format!("{QUEUE_STREAM_PREFIX}{namespace}_{}", token(name)),
        &format!("queue/{namespace}/{name}"),
    )
}

/// The subjects of the first queue stream of Broker `namespace/name`.
#[must_use]
pub fn queue_stream_subjects(namespace: &str, name: &str) -> Vec<String> {
    vec![format!(
        "{QUEUE_SUBJECT_ROOT}.{namespace}.{}.*",
        token(name)
    )]
}

/// The subject of Trigger `trigger`'s queue in the first queue stream of Broker
/// `namespace/broker`.
#[must_use]
pub fn queue_subject(namespace: &str, broker: &str, trigger: &str) -> String {
    format!(
        "{QUEUE_SUBJECT_ROOT}.{namespace}.{}.{}",
        token(broker),
        token(trigger)
    )
}

/// Triggers whose queues share one queue stream, unless the operator is told otherwise.
///
/// nats-server checks, on every acknowledgement on a work queue, every other consumer
/// of the stream for interest in the message (`stream.ackMsg` → `checkForInterest`),
/// and each consumer looks for its next message among the stream's interleaved
/// subjects: both grow with the consumers per stream. A Broker's queues are therefore
/// spread over as many queue streams ("shards") as it takes to keep each at about this
/// many Triggers (docs/architecture.md).
pub const DEFAULT_TRIGGERS_PER_QUEUE_STREAM: u32 = 64;

/// Queue stream number `shard` of Broker `namespace/name`. Shard 0 is
/// [`queue_stream_name`]; later shards end in `_S<shard>` — an upper-case letter, which
/// no Kubernetes name contains, so no other Broker's stream can be called that.
#[must_use]
pub fn queue_shard_stream_name(namespace: &str, name: &str, shard: u32) -> String {
    if shard == 0 {
        return queue_stream_name(namespace, name);
    }
    bounded(
        format!("{QUEUE_STREAM_PREFIX}{namespace}_{}_S{shard}", token(name)),
        &format!("queue/{namespace}/{name}/{shard}"),
    )
}

/// The subjects of queue stream number `shard` of Broker `namespace/name`. Shard 0's
/// subjects have four tokens (`heraldq.<ns>.<broker>.<trigger>`), later shards' five
/// (`heraldq.<ns>.<broker>.<shard>.<trigger>`): a `*` matches exactly one token, so no
/// two shards' subjects overlap, as JetStream requires of streams.
#[must_use]
pub fn queue_shard_subjects(namespace: &str, name: &str, shard: u32) -> Vec<String> {
    if shard == 0 {
        return queue_stream_subjects(namespace, name);
    }
    vec![format!(
        "{QUEUE_SUBJECT_ROOT}.{namespace}.{}.{shard}.*",
        token(name)
    )]
}

/// The subject of Trigger `trigger`'s queue in queue stream `shard` of Broker
/// `namespace/broker`.
#[must_use]
pub fn queue_shard_subject(namespace: &str, broker: &str, shard: u32, trigger: &str) -> String {
    if shard == 0 {
        return queue_subject(namespace, broker, trigger);
    }
    format!(
        "{QUEUE_SUBJECT_ROOT}.{namespace}.{}.{shard}.{}",
        token(broker),
        token(trigger)
    )
}

/// The queue stream number a queue subject belongs to (`None`: not a queue subject).
#[must_use]
pub fn queue_shard_of_subject(subject: &str) -> Option<u32> {
    let tokens: Vec<&str> = subject.split('.').collect();
    match tokens[..] {
        [QUEUE_SUBJECT_ROOT, _, _, _] => Some(0),
        [QUEUE_SUBJECT_ROOT, _, _, shard, _] => shard.parse().ok().filter(|s| *s > 0),
        _ => None,
    }
}

/// The durable consumer that backfills Trigger `trigger`'s queue from its Broker's
/// history (`startPosition` other than `new`); same rules as [`consumer_name`].
#[must_use]
pub fn backfill_consumer_name(trigger: &str) -> String {
    bounded(format!("backfill_{}", token(trigger)), trigger)
}

/// Header on each queued copy: the event's sequence in its Broker's stream.
pub const HEADER_BROKER_SEQUENCE: &str = "Herald-Broker-Sequence";
/// Header on each queued copy: the [`crate::trigger::filter_version`] it was routed under.
pub const HEADER_FILTER_VERSION: &str = "Herald-Filter-Version";

/// The `Nats-Msg-Id` of the copy of Broker event `sequence` in Trigger `trigger`'s
/// queue: every router and the backfill derive the same one, so a copy queued twice
/// (a retried route, a backfill overlapping live routing) is a duplicate JetStream drops.
#[must_use]
pub fn queue_message_id(sequence: u64, trigger: &str) -> String {
    format!("{sequence}:{trigger}")
}

/// The subject prefix (without a trailing wildcard) for Broker `namespace/name`.
#[must_use]
pub fn subject_prefix(namespace: &str, name: &str) -> String {
    format!("{SUBJECT_ROOT}.{namespace}.{}", token(name))
}

/// The subject filter that covers every event of Broker `namespace/name`.
#[must_use]
pub fn stream_subjects(namespace: &str, name: &str) -> Vec<String> {
    vec![format!("{}.>", subject_prefix(namespace, name))]
}

/// `name` shortened to `max` bytes with a hash of the whole name when it is longer,
/// cut where the result still ends with an alphanumeric (Kubernetes names are ASCII).
fn shortened(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let hash = short_hash(name);
    let head = name[..max - hash.len() - 1].trim_end_matches(['-', '.']);
    format!("{head}-{hash}")
}

/// Name of the Deployment Herald runs for consumer Trigger `trigger`.
#[must_use]
pub fn consumer_deployment_name(trigger: &str) -> String {
    // Pod names add ~17 characters; keep the Deployment within a DNS label's reach.
    format!("{}-consumer", shortened(trigger, 47))
}

/// Name of the adapter Deployment Herald runs for `kubernetes` EventSource `source`.
#[must_use]
pub fn source_deployment_name(source: &str) -> String {
    format!("{}-source", shortened(source, 47))
}

/// A Trigger name as a label value (at most 63 characters).
#[must_use]
pub fn label_value(name: &str) -> String {
    shortened(name, 63)
}

/// Whether a byte may appear as itself in a subject token.
fn is_plain_subject_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !matches!(b, b'.' | b'*' | b'>' | b'%')
}

/// The subject tokens of an event type: the type split at `.`, each part with
/// `%`, `*`, `>`, spaces and non-ASCII bytes written as `%XX`, and an empty part
/// written as a lone `%` (which no escaped part can be). The mapping is injective,
/// and readable for ordinary types.
#[must_use]
pub fn type_tokens(event_type: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(event_type.len() + 8);
    for (i, part) in event_type.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        if part.is_empty() {
            out.push('%');
            continue;
        }
        for b in part.bytes() {
            if is_plain_subject_byte(b) {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// The subject of an event of type `event_type` on Broker `namespace/name`.
#[must_use]
pub fn event_subject(namespace: &str, name: &str, event_type: &str) -> String {
    format!(
        "{}.{}",
        subject_prefix(namespace, name),
        type_tokens(event_type)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_readable() {
        assert_eq!(stream_name("team-a", "default"), "HERALD_team-a_default");
        assert_eq!(
            stream_subjects("team-a", "default"),
            ["herald.team-a.default.>"]
        );
    }

    #[test]
    fn dots_cannot_collide_with_namespace_boundaries() {
        assert_eq!(stream_name("a", "b.c"), "HERALD_a_b_c");
        assert_ne!(stream_name("a", "b.c"), stream_name("a-b", "c"));
        assert_eq!(subject_prefix("a", "b.c"), "herald.a.b_c");
    }

    #[test]
    fn long_names_are_bounded_unique_and_stable() {
        let ns = "n".repeat(63);
        let a = stream_name(&ns, &"x".repeat(200));
        let b = stream_name(&ns, &format!("{}y", "x".repeat(199)));
        assert_eq!(a.len(), MAX_STREAM_NAME);
        assert_eq!(b.len(), MAX_STREAM_NAME);
        assert_ne!(a, b);
        assert_eq!(a, stream_name(&ns, &"x".repeat(200)));
    }

    #[test]
    fn event_types_become_readable_injective_subjects() {
        assert_eq!(
            event_subject("ns", "b", "com.example.order.created"),
            "herald.ns.b.com.example.order.created"
        );
        assert_eq!(type_tokens("a b*c>d%e"), "a%20b%2Ac%3Ed%25e");
        assert_eq!(type_tokens("a..b"), "a.%.b");
        assert_eq!(type_tokens(".x."), "%.x.%");
        assert_eq!(type_tokens("Größe"), "Gr%C3%B6%C3%9Fe");
        let types = ["a.b", "a_b", "a%2Eb", "a..b", "a.%.b", "a", "a.", ".a", "%"];
        let mut seen = std::collections::HashSet::new();
        for t in types {
            let tokens = type_tokens(t);
            assert!(seen.insert(tokens.clone()), "{t} collides as {tokens}");
            assert!(
                tokens
                    .split('.')
                    .all(|tok| !tok.is_empty() && !tok.contains(['*', '>', ' '])),
                "{tokens}"
            );
        }
    }

    #[test]
    fn queue_shards_never_share_a_name_or_a_subject() {
        assert_eq!(
            queue_shard_stream_name("shop", "orders", 0),
            "HERALDQ_shop_orders"
        );
        assert_eq!(
            queue_shard_stream_name("shop", "orders", 3),
            "HERALDQ_shop_orders_S3"
        );
        // A Broker whose name ends like a shard's cannot take a shard's stream name.
        assert_ne!(
            queue_shard_stream_name("shop", "orders", 1),
            queue_stream_name("shop", "orders.s1")
        );
        let long = "x".repeat(200);
        assert_ne!(
            queue_shard_stream_name("shop", &long, 1),
            queue_shard_stream_name("shop", &long, 2)
        );
        assert!(queue_shard_stream_name("shop", &long, 7).len() <= MAX_STREAM_NAME);
        assert_eq!(
            queue_shard_subjects("shop", "orders", 0),
            ["heraldq.shop.orders.*"]
        );
        assert_eq!(
            queue_shard_subjects("shop", "orders", 2),
            ["heraldq.shop.orders.2.*"]
        );
        let subject = queue_shard_subject("shop", "orders", 2, "billing.v1");
        assert_eq!(subject, "heraldq.shop.orders.2.billing_v1");
        assert_eq!(queue_shard_of_subject(&subject), Some(2));
        assert_eq!(
            queue_shard_of_subject(&queue_shard_subject("shop", "orders", 0, "billing")),
            Some(0)
        );
        assert_eq!(queue_shard_of_subject("herald.shop.orders.x"), None);
        assert_eq!(queue_shard_of_subject("heraldq.shop.orders.0.x"), None);
    }

    #[test]
    fn consumer_names_are_bounded_and_safe() {
        assert_eq!(
            consumer_name("orders-to-billing"),
            "trigger_orders-to-billing"
        );
        assert_eq!(consumer_name("a.b"), "trigger_a_b");
        assert_eq!(consumer_name(&"x".repeat(250)).len(), MAX_STREAM_NAME);
        assert_ne!(
            consumer_name(&"x".repeat(250)),
            consumer_name(&"x".repeat(251))
        );
    }

    #[test]
    fn queues_are_apart_from_broker_streams_and_subjects() {
        assert_eq!(queue_stream_name("shop", "default"), "HERALDQ_shop_default");
        assert_eq!(
            queue_subject("shop", "default", "to.billing"),
            "heraldq.shop.default.to_billing"
        );
        assert_eq!(
            queue_stream_subjects("shop", "default"),
            ["heraldq.shop.default.*"]
        );
        assert!(!queue_stream_name("q", "x").starts_with(STREAM_PREFIX));
        assert_ne!(backfill_consumer_name("t"), consumer_name("t"));
        assert_eq!(
            queue_stream_name(&"n".repeat(63), &"x".repeat(200)).len(),
            MAX_STREAM_NAME
        );
    }

    #[test]
    fn names_are_nats_safe() {
        let name = stream_name("ns", "my.broker.v2");
        assert!(!name.contains(['.', '*', '>', ' ', '/', '\\']), "{name}");
    }

    #[test]
    fn deployment_names_and_label_values_are_bounded() {
        assert_eq!(consumer_deployment_name("orders"), "orders-consumer");
        let long = "a".repeat(100);
        let name = consumer_deployment_name(&long);
        assert_eq!(name.len(), 47 + "-consumer".len());
        assert_ne!(name, consumer_deployment_name(&"a".repeat(101)));
        assert_eq!(label_value("t"), "t");
        assert_eq!(label_value(&long).len(), 63);
        assert!(label_value(&format!("{}-{}", "b".repeat(53), "c".repeat(20))).len() <= 63);
    }
}
