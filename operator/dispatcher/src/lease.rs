//! One router per Broker at a time, so that `ordering: ordered` holds across dispatcher
//! replicas.
//!
//! Two routers pulling the same Broker's `router` consumer route neighbouring events at
//! the same moment, and their copies can reach a queue in either order. So each Broker
//! is routed by the replica holding its lease: a key in the JetStream key-value bucket
//! [`BUCKET`] (the Broker's stream name, the holder's name as value) that the holder
//! rewrites every [`RENEW_EVERY`] and that ages out [`TTL`] after the last rewrite.
//! Replicas take the leases of different Brokers, so routing still spreads over them
//! Broker by Broker. The holder stops routing as soon as it has not renewed within
//! [`TTL`] minus a margin, before anyone else can take the key; a new holder waits
//! until the `router` consumer has nothing unacknowledged (what a dead holder held comes
//! back first), so the queues keep Broker order across a hand-over too.
//!
//! When the bucket cannot be read or written at all (NATS without quorum for it), every
//! replica routes, as before leases: events keep flowing, and order holds per router.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use tokio::time::Instant;

/// The key-value bucket of routing leases.
pub const BUCKET: &str = "HERALD_ROUTING";
/// How long a lease lasts after its last renewal.
pub const TTL: Duration = Duration::from_secs(6);
/// How often the holder renews.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);
/// A holder stops routing this long before its lease could age out.
const MARGIN: Duration = Duration::from_secs(1);

/// The bucket, opened (made if missing) by each dispatcher.
#[derive(Clone)]
pub struct Leases {
    store: kv::Store,
    holder: Bytes,
}

impl Leases {
    /// Opens the bucket, making it with three replicas where NATS is clustered and one
    /// where it is not; `holder` names this dispatcher.
    pub async fn open(jetstream: &jetstream::Context, holder: &str) -> anyhow::Result<Self> {
        let config = |replicas| kv::Config {
            bucket: BUCKET.to_owned(),
            description: "Herald: which dispatcher routes each Broker".to_owned(),
            history: 1,
            max_age: TTL,
            storage: jetstream::stream::StorageType::Memory,
            num_replicas: replicas,
            ..kv::Config::default()
        };
        let store = if let Ok(store) = jetstream.get_key_value(BUCKET).await {
            store
        } else if let Ok(store) = jetstream.create_key_value(config(3)).await {
            store
        } else {
            // A single nats-server cannot hold three replicas.
            jetstream.create_key_value(config(1)).await?
        };
        Ok(Leases {
            store,
            holder: Bytes::from(holder.to_owned()),
        })
    }
}

/// What an attempt to take or keep a lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// This dispatcher holds it, at this revision, until this instant.
    Held { revision: u64, until: Instant },
    /// Another dispatcher holds it.
    Taken,
    /// The bucket did not answer: route anyway (see the module's last paragraph).
    Unknown,
}

impl Leases {
    /// Takes the lease on `key` if nobody holds it.
    pub async fn take(&self, key: &str) -> Standing {
        let asked = Instant::now();
        match self.store.create(key, self.holder.clone()).await {
            Ok(revision) => Standing::Held {
                revision,
                until: asked + TTL - MARGIN,
            },
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Standing::Taken,
            Err(e) => {
                tracing::debug!(%key, error = %e, "routing lease bucket unavailable");
                Standing::Unknown
            }
        }
    }

    /// Renews a lease held at `revision`.
    pub async fn renew(&self, key: &str, revision: u64) -> Standing {
        let asked = Instant::now();
        match self.store.update(key, self.holder.clone(), revision).await {
            Ok(revision) => Standing::Held {
                revision,
                until: asked + TTL - MARGIN,
            },
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Standing::Taken,
            Err(e) => {
                tracing::debug!(%key, error = %e, "cannot renew a routing lease");
                Standing::Unknown
            }
        }
    }

    /// Gives a held lease up at once (shutdown), so another replica need not wait
    /// for it to age out.
    pub async fn release(&self, key: &str, revision: u64) {
        let _ = self.store.delete_expect_revision(key, Some(revision)).await;
    }
}

/// One Broker's lease as its router keeps it.
pub struct Keeper {
    leases: Option<Leases>,
    key: String,
    standing: Standing,
    next_renewal: Instant,
}

impl Keeper {
    /// The keeper of Broker stream `stream`'s lease; without `leases` a router routes
    /// unguarded (benchmarks, tests of one router).
    #[must_use]
    pub fn new(leases: Option<Leases>, stream: &str) -> Self {
        Keeper {
            leases,
            key: stream.to_owned(),
            standing: Standing::Taken,
            next_renewal: Instant::now(),
        }
    }

    /// Whether this router may route now without asking again.
    #[must_use]
    pub fn may_route(&self) -> bool {
        self.leases.is_none() || self.standing != Standing::Taken
    }

    /// When [`Keeper::keep`] is due; `None` without leases.
    #[must_use]
    pub fn due(&self) -> Option<Instant> {
        self.leases.as_ref().map(|_| self.next_renewal)
    }

    /// Takes the lease if nobody holds it (or finds the bucket unavailable); whether
    /// this router may route now.
    pub async fn try_take(&mut self) -> bool {
        self.next_renewal = Instant::now() + RENEW_EVERY;
        let Some(leases) = &self.leases else {
            return true;
        };
        self.standing = leases.take(&self.key).await;
        if self.standing == Standing::Unknown {
            tracing::warn!(stream = %self.key, "routing lease bucket unavailable: routing without a lease (order holds per router only)");
        }
        self.may_route()
    }

    /// Whether this router just took the lease (rather than routing unguarded).
    #[must_use]
    pub fn holds(&self) -> bool {
        matches!(self.standing, Standing::Held { .. })
    }

    /// Renews the lease (or tries again to take it while the bucket was unavailable);
    /// `false` when another replica holds it and this router must stop.
    pub async fn keep(&mut self) -> bool {
        self.next_renewal = Instant::now() + RENEW_EVERY;
        let Some(leases) = &self.leases else {
            return true;
        };
        self.standing = match self.standing {
            Standing::Held { revision, until } => match leases.renew(&self.key, revision).await {
                Standing::Unknown if Instant::now() < until => Standing::Held { revision, until },
                Standing::Unknown => {
                    tracing::warn!(stream = %self.key, "cannot renew the routing lease: routing without one (order holds per router only)");
                    Standing::Unknown
                }
                other => other,
            },
            Standing::Unknown => leases.take(&self.key).await,
            Standing::Taken => Standing::Taken,
        };
        if self.standing == Standing::Taken {
            tracing::info!(stream = %self.key, "another dispatcher routes this Broker now");
        }
        self.may_route()
    }

    /// Gives the lease up if held (this router stops).
    pub async fn release(&mut self) {
        if let (Some(leases), Standing::Held { revision, .. }) = (&self.leases, self.standing) {
            leases.release(&self.key, revision).await;
        }
        self.standing = Standing::Taken;
    }
}
