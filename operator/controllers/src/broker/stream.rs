//! The JetStream stream a Broker wants, built purely from its spec, and the
//! comparisons reconcile needs against the stream that exists.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::stream::{self, Config};
use herald_api::broker::{DiscardPolicy, RetentionPolicy, StorageType};
use herald_api::{Broker, naming};
use kube::ResourceExt;

use crate::error::Error;

/// Stream metadata key that marks a stream as Herald's, with the owning Broker as value.
pub const OWNER_KEY: &str = "eventing.herald.dev/broker";
/// Stream metadata key holding the owning Broker's UID (informational).
pub const OWNER_UID_KEY: &str = "eventing.herald.dev/broker-uid";
/// JetStream's default duplicate window, used when the Broker sets none.
const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The value of [`OWNER_KEY`] for a Broker.
#[must_use]
pub fn owner_value(namespace: &str, name: &str) -> String {
    format!("Broker/{namespace}/{name}")
}

/// The most a Broker's stream may keep, set by the platform team: what one namespace
/// may take of the JetStream store every Broker shares. `None`: no ceiling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamCeilings {
    /// Most bytes (`--max-stream-bytes`).
    pub max_bytes: Option<u64>,
    /// Oldest event (`--max-stream-age`).
    pub max_age: Option<Duration>,
}

/// The full stream configuration for `broker` within `ceilings` (an unset limit gets
/// the ceiling; one above it is refused), or why its spec cannot be used.
pub fn desired_config(broker: &Broker, ceilings: StreamCeilings) -> Result<Config, Error> {
    let namespace = broker.namespace().unwrap_or_default();
    let name = broker.name_any();
    let spec = &broker.spec.stream;
    let invalid = |field: &str, e: &dyn std::fmt::Display| {
        Error::InvalidSpec(format!("spec.stream.{field}: {e}"))
    };

    let over = |field: &str, asked: &str, ceiling: String, flag: &str| {
        Error::InvalidSpec(format!(
            "spec.stream.{field}: {asked} is more than this Herald allows a Broker ({ceiling}, set by the platform team with herald operator {flag}); ask for less or leave it unset"
        ))
    };
    let max_age = match (&spec.max_age, ceilings.max_age) {
        (Some(s), ceiling) => {
            let age = herald_api::duration::parse(s).map_err(|e| invalid("maxAge", &e))?;
            match ceiling {
                // Zero is unlimited to JetStream.
                Some(most) if age.is_zero() || age > most => {
                    return Err(over("maxAge", s, format!("{most:?}"), "--max-stream-age"));
                }
                _ => age,
            }
        }
        (None, Some(most)) => most,
        (None, None) => Duration::ZERO,
    };
    let max_bytes = match (&spec.max_bytes, ceilings.max_bytes) {
        (Some(q), ceiling) => {
            let bytes =
                herald_api::quantity::parse_bytes(q).map_err(|e| invalid("maxBytes", &e))?;
            // Zero is unlimited to JetStream, as for maxAge.
            if let Some(most) = ceiling
                && (bytes == 0 || bytes > most)
            {
                return Err(over(
                    "maxBytes",
                    &q.0,
                    format!("{most} bytes"),
                    "--max-stream-bytes",
                ));
            }
            i64::try_from(bytes).map_err(|_| invalid("maxBytes", &"too large"))?
        }
        (None, Some(most)) => i64::try_from(most).unwrap_or(i64::MAX),
        (None, None) => -1,
    };
    let duplicate_window = match &spec.duplicate_window {
        Some(s) => herald_api::duration::parse(s).map_err(|e| invalid("duplicateWindow", &e))?,
        // JetStream refuses a duplicate window longer than maxAge.
        None if !max_age.is_zero() => DEFAULT_DUPLICATE_WINDOW.min(max_age),
        None => DEFAULT_DUPLICATE_WINDOW,
    };
    if !max_age.is_zero() && duplicate_window > max_age {
        return Err(invalid(
            "duplicateWindow",
            &"must not be longer than maxAge",
        ));
    }
    let replicas = usize::try_from(spec.replicas)
        .ok()
        .filter(|r| (1..=5).contains(r))
        .ok_or_else(|| invalid("replicas", &"must be between 1 and 5"))?;

    let metadata = HashMap::from([
        (OWNER_KEY.to_owned(), owner_value(&namespace, &name)),
        (OWNER_UID_KEY.to_owned(), broker.uid().unwrap_or_default()),
    ]);
    Ok(Config {
        name: naming::stream_name(&namespace, &name),
        description: Some(format!("Events of Herald Broker {namespace}/{name}")),
        subjects: naming::stream_subjects(&namespace, &name),
        storage: match spec.storage {
            StorageType::File => stream::StorageType::File,
            StorageType::Memory => stream::StorageType::Memory,
        },
        retention: match spec.retention {
            RetentionPolicy::Limits => stream::RetentionPolicy::Limits,
            RetentionPolicy::Interest => stream::RetentionPolicy::Interest,
        },
        discard: match spec.discard {
            DiscardPolicy::Old => stream::DiscardPolicy::Old,
            DiscardPolicy::New => stream::DiscardPolicy::New,
        },
        num_replicas: replicas,
        max_age,
        max_bytes,
        max_messages: spec.max_messages.unwrap_or(-1),
        duplicate_window,
        metadata,
        ..Config::default()
    })
}

/// Whether an existing stream belongs to the Broker (by [`OWNER_KEY`]); `Err` says
/// what marks it instead.
pub fn check_owned(existing: &Config, desired: &Config) -> Result<(), Error> {
    let want = desired.metadata.get(OWNER_KEY);
    match existing.metadata.get(OWNER_KEY) {
        Some(found) if Some(found) == want => Ok(()),
        found => Err(Error::StreamNotOwned {
            stream: existing.name.clone(),
            found: found.map_or_else(
                || "no Herald owner mark".to_owned(),
                |f| format!("owned by {f}"),
            ),
        }),
    }
}

/// Changes JetStream cannot apply to a stream in place, as `field old -> new`.
#[must_use]
pub fn immutable_changes(existing: &Config, desired: &Config) -> Vec<String> {
    let mut changes = Vec::new();
    if existing.storage != desired.storage {
        changes.push(
            format!("storage {:?} -> {:?}", existing.storage, desired.storage).to_lowercase(),
        );
    }
    changes
}

/// Whether the fields Herald manages differ between the existing and the desired stream.
#[must_use]
pub fn needs_update(existing: &Config, desired: &Config) -> bool {
    let ours = |c: &Config| {
        (
            c.subjects.clone(),
            c.retention,
            c.discard,
            c.num_replicas,
            c.max_age,
            c.max_bytes,
            c.max_messages,
            c.duplicate_window,
            c.description.clone(),
        )
    };
    let metadata_differs = desired
        .metadata
        .iter()
        .any(|(k, v)| existing.metadata.get(k) != Some(v));
    ours(existing) != ours(desired) || metadata_differs
}

/// A one-line summary of the stream for status messages and Events.
#[must_use]
pub fn describe(config: &Config) -> String {
    let limit = |v: i64| {
        if v < 0 {
            "unlimited".to_owned()
        } else {
            v.to_string()
        }
    };
    format!(
        "stream {} ({:?} storage, {} replica(s), maxAge {}, maxBytes {}, maxMessages {})",
        config.name,
        config.storage,
        config.num_replicas,
        if config.max_age.is_zero() {
            "unlimited".to_owned()
        } else {
            format!("{:?}", config.max_age)
        },
        limit(config.max_bytes),
        limit(config.max_messages),
    )
    .replace("File storage", "file storage")
    .replace("Memory storage", "memory storage")
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_api::BrokerSpec;
    use herald_api::broker::StreamSpec;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn broker(stream: StreamSpec) -> Broker {
        let mut b = Broker::new(
            "orders",
            BrokerSpec {
                stream,
                ..BrokerSpec::default()
            },
        );
        b.metadata.namespace = Some("shop".into());
        b.metadata.uid = Some("uid-1".into());
        b
    }

    #[test]
    fn builds_limits_from_the_spec() {
        let cfg = desired_config(
            &broker(StreamSpec {
                replicas: 1,
                max_age: Some("1h".into()),
                max_bytes: Some(Quantity("1Mi".into())),
                max_messages: Some(500),
                storage: StorageType::Memory,
                discard: DiscardPolicy::New,
                ..StreamSpec::default()
            }),
            StreamCeilings::default(),
        )
        .unwrap();
        assert_eq!(cfg.name, "HERALD_shop_orders");
        assert_eq!(cfg.subjects, ["herald.shop.orders.>"]);
        assert_eq!(cfg.max_age, Duration::from_secs(3600));
        assert_eq!(cfg.max_bytes, 1 << 20);
        assert_eq!(cfg.max_messages, 500);
        assert_eq!(cfg.storage, stream::StorageType::Memory);
        assert_eq!(cfg.discard, stream::DiscardPolicy::New);
        assert_eq!(cfg.duplicate_window, Duration::from_secs(120));
        assert_eq!(cfg.metadata[OWNER_KEY], "Broker/shop/orders");
    }

    #[test]
    fn the_platform_s_ceilings_fill_unset_limits_and_refuse_larger_ones() {
        let ceilings = StreamCeilings {
            max_bytes: Some(64 << 20),
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
        };
        let unset = desired_config(&broker(StreamSpec::default()), ceilings).unwrap();
        assert_eq!(unset.max_bytes, 64 << 20);
        assert_eq!(unset.max_age, Duration::from_secs(7 * 24 * 3600));
        let within = StreamSpec {
            max_bytes: Some(Quantity("1Mi".into())),
            max_age: Some("1h".into()),
            ..StreamSpec::default()
        };
        let within = desired_config(&broker(within), ceilings).unwrap();
        assert_eq!(
            (within.max_bytes, within.max_age),
            (1 << 20, Duration::from_secs(3600))
        );
        for (spec, field) in [
            (
                StreamSpec {
                    max_bytes: Some(Quantity("1Gi".into())),
                    ..StreamSpec::default()
                },
                "maxBytes",
            ),
            (
                StreamSpec {
                    max_age: Some("720h".into()),
                    ..StreamSpec::default()
                },
                "maxAge",
            ),
            // 0 is unlimited to JetStream: not a way around the ceiling.
            (
                StreamSpec {
                    max_bytes: Some(Quantity("0".into())),
                    ..StreamSpec::default()
                },
                "maxBytes",
            ),
            (
                StreamSpec {
                    max_age: Some("0".into()),
                    ..StreamSpec::default()
                },
                "maxAge",
            ),
        ] {
            let Err(Error::InvalidSpec(message)) = desired_config(&broker(spec), ceilings) else {
                panic!("{field} over the ceiling was accepted");
            };
            assert!(
                message.contains(field) && message.contains("--max-stream"),
                "{message}"
            );
        }
    }

    #[test]
    fn unset_limits_are_unlimited_and_short_max_age_shrinks_the_window() {
        let cfg = desired_config(
            &broker(StreamSpec {
                replicas: 1,
                ..StreamSpec::default()
            }),
            StreamCeilings::default(),
        )
        .unwrap();
        assert_eq!(
            (cfg.max_bytes, cfg.max_messages, cfg.max_age),
            (-1, -1, Duration::ZERO)
        );
        let short = desired_config(
            &broker(StreamSpec {
                replicas: 1,
                max_age: Some("30s".into()),
                ..StreamSpec::default()
            }),
            StreamCeilings::default(),
        )
        .unwrap();
        assert_eq!(short.duplicate_window, Duration::from_secs(30));
    }

    #[test]
    fn invalid_values_name_the_field() {
        let err = desired_config(
            &broker(StreamSpec {
                replicas: 1,
                max_age: Some("10 years".into()),
                ..StreamSpec::default()
            }),
            StreamCeilings::default(),
        )
        .unwrap_err();
        assert_eq!(err.reason(), "InvalidSpec");
        assert!(err.to_string().starts_with("spec.stream.maxAge:"), "{err}");
        let err = desired_config(
            &broker(StreamSpec {
                replicas: 1,
                max_age: Some("1m".into()),
                duplicate_window: Some("5m".into()),
                ..StreamSpec::default()
            }),
            StreamCeilings::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("duplicateWindow"), "{err}");
    }

    #[test]
    fn ownership_and_changes_are_detected() {
        let desired = desired_config(
            &broker(StreamSpec {
                replicas: 1,
                ..StreamSpec::default()
            }),
            StreamCeilings::default(),
        )
        .unwrap();
        let mut foreign = desired.clone();
        foreign.metadata.clear();
        assert!(matches!(
            check_owned(&foreign, &desired),
            Err(Error::StreamNotOwned { .. })
        ));
        assert!(check_owned(&desired, &desired).is_ok());

        let mut existing = desired.clone();
        // The server adds metadata of its own; that is not a difference.
        existing
            .metadata
            .insert("_nats.ver".into(), "2.15.1".into());
        assert!(!needs_update(&existing, &desired));
        existing.max_age = Duration::from_secs(60);
        assert!(needs_update(&existing, &desired));

        existing.storage = stream::StorageType::Memory;
        assert_eq!(
            immutable_changes(&existing, &desired),
            ["storage memory -> file"]
        );
    }
}
