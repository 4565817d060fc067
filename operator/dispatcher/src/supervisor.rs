//! Keeps exactly the wanted loops running: a router per Ready Broker, a backfill per
//! Trigger whose history is still being copied, and a delivery loop per Trigger with a
//! subscriber. Called after every change the watches see (debounced).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream;
use herald_api::{Broker, Trigger, conditions, naming};
use herald_runtime::loops::Loops;
use herald_runtime::scope::Stores;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::catalog::Catalog;
use crate::deliver::Deliverer;
use crate::desired::{self, FilterCache, TriggerDelivery, TriggerLoops};
use crate::pull::{self, Stop};
use crate::router;
use crate::routes::{Route, RouteTable};

/// The table of one Broker's router, and how to wake it for a catch-up.
struct Router {
    table: Arc<RwLock<RouteTable>>,
    wake: Arc<tokio::sync::Notify>,
}

/// Everything the dispatcher runs.
pub struct Supervisor {
    deliverer: Arc<Deliverer>,
    /// Routers and backfills use a NATS connection of their own.
    routing: jetstream::Context,
    /// Where each Broker's router notes the event types it sees.
    catalog: Arc<Catalog>,
    /// Routing leases (one router per Broker at a time); `None`: every replica routes.
    leases: Option<crate::lease::Leases>,
    filters: FilterCache,
    routers: Loops<String, Router, Stop>,
    backfills: Loops<String, (String, Route), Stop>,
    deliveries: Loops<String, TriggerDelivery, Stop>,
}

impl Supervisor {
    /// A supervisor that runs nothing yet.
    #[must_use]
    pub fn new(
        deliverer: Arc<Deliverer>,
        routing: jetstream::Context,
        catalog: Arc<Catalog>,
        leases: Option<crate::lease::Leases>,
    ) -> Self {
        Supervisor {
            deliverer,
            routing,
            catalog,
            leases,
            filters: FilterCache::default(),
            routers: Loops::new(Stop::Running),
            backfills: Loops::new(Stop::Running),
            deliveries: Loops::new(Stop::Running),
        }
    }

    /// Triggers being delivered.
    #[must_use]
    pub fn deliveries(&self) -> usize {
        self.deliveries.len()
    }

    /// Starts, updates and stops loops to match the Triggers and Brokers in the stores.
    pub fn reconcile(&mut self, triggers: &Stores<Trigger>, brokers: &Stores<Broker>) {
        let planned: Vec<TriggerLoops> = triggers
            .state()
            .iter()
            .filter_map(|t| {
                let broker = brokers.get(&ObjectRef::new(&t.spec.broker).within(&t.namespace()?));
                desired::desired(t, broker.as_deref(), &mut self.filters)
            })
            .collect();
        let keys: HashSet<&str> = planned.iter().map(|p| p.key.as_str()).collect();
        self.filters.retain(&keys);
        let mut routed: HashSet<String> = brokers
            .state()
            .iter()
            .filter(|b| broker_routable(b))
            .filter_map(|b| Some(naming::stream_name(&b.namespace()?, &b.name_any())))
            .collect();
        routed.extend(planned.iter().map(|p| p.events_stream.clone()));
        self.reconcile_routers(&routed, &planned);
        self.reconcile_backfills(&planned);
        self.reconcile_deliveries(planned);
    }

    fn reconcile_routers(&mut self, wanted_streams: &HashSet<String>, planned: &[TriggerLoops]) {
        let catalog = &self.catalog;
        self.routers.retain(
            |stream, _| {
                let keep = wanted_streams.contains(stream);
                if !keep {
                    tracing::info!(%stream, "stopping routing");
                    catalog.forget(stream);
                }
                keep
            },
            &Stop::Now,
        );
        let mut by_stream: HashMap<&str, Vec<&TriggerLoops>> = HashMap::new();
        for p in planned {
            by_stream.entry(&p.events_stream).or_default().push(p);
        }
        for stream in wanted_streams {
            let router = self.routers.get_or_start(
                stream.clone(),
                || {
                    tracing::info!(%stream, "starting routing");
                    let mut table = RouteTable::default();
                    table.catalog = self.catalog.tally_for(stream);
                    Router {
                        table: Arc::new(RwLock::new(table)),
                        wake: Arc::new(tokio::sync::Notify::new()),
                    }
                },
                |started, stop| {
                    let moves = self.deliverer.moves.watch(stream, naming::ROUTER_CONSUMER);
                    let lease = crate::lease::Keeper::new(self.leases.clone(), stream);
                    tokio::spawn(router::route_loop(
                        self.routing.clone(),
                        stream.clone(),
                        started.table.clone(),
                        started.wake.clone(),
                        (moves, lease),
                        stop,
                    ))
                },
            );
            let wanted = by_stream.remove(stream.as_str()).unwrap_or_default();
            {
                let mut table = router
                    .table
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let keep: HashSet<&str> = wanted.iter().map(|p| p.key.as_str()).collect();
                let gone: Vec<String> = table
                    .keys()
                    .filter(|k| !keep.contains(k.as_str()))
                    .cloned()
                    .collect();
                for key in gone {
                    table.remove(&key);
                }
                // Events this router evaluated before it knew a Trigger, past the
                // Trigger's seam, are owed to it; the router routes them first.
                for p in wanted {
                    if !table.upsert(&p.key, p.route.clone(), &p.filter) {
                        continue;
                    }
                    let after = table.owed_after(&p.key, &p.route);
                    if table.max_routed > after {
                        let last = table.max_routed;
                        table.catch_up.push(crate::routes::CatchUp {
                            route: p.route.clone(),
                            filter: p.filter.clone(),
                            first: after + 1,
                            last,
                        });
                    }
                }
            }
            router.wake.notify_one();
        }
    }

    fn reconcile_backfills(&mut self, planned: &[TriggerLoops]) {
        let wanted: HashMap<&str, &TriggerLoops> = planned
            .iter()
            .filter(|p| p.backfill.is_some())
            .map(|p| (p.key.as_str(), p))
            .collect();
        self.backfills.retain(
            |key, (consumer, route)| {
                wanted
                    .get(key.as_str())
                    .is_some_and(|p| p.backfill.as_ref() == Some(consumer) && p.route == *route)
            },
            &Stop::Now,
        );
        for (key, p) in wanted {
            self.backfills.get_or_start(
                key.to_owned(),
                || {
                    tracing::info!(trigger = %key, after = p.route.routed_after, "backfilling");
                    (p.backfill.clone().unwrap_or_default(), p.route.clone())
                },
                |(consumer, route), stop| {
                    tokio::spawn(router::backfill_loop(
                        self.routing.clone(),
                        p.events_stream.clone(),
                        consumer.clone(),
                        route.clone(),
                        p.filter.clone(),
                        stop,
                    ))
                },
            );
        }
    }

    fn reconcile_deliveries(&mut self, planned: Vec<TriggerLoops>) {
        let desired: HashMap<String, TriggerDelivery> = planned
            .into_iter()
            .filter_map(|p| Some((p.key, p.delivery?)))
            .collect();
        let metrics = &self.deliverer.metrics;
        self.deliveries.retain(
            |key, running| {
                let keep = desired.get(key) == Some(running);
                if !keep {
                    tracing::info!(trigger = %key, "stopping delivery");
                    if !desired.contains_key(key) {
                        metrics.forget(&running.namespace, &running.trigger);
                    }
                }
                keep
            },
            &Stop::Now,
        );
        for (key, plan) in desired {
            if self.deliveries.get(&key).is_some() {
                continue;
            }
            tracing::info!(trigger = %key, subscriber = %plan.subscriber, "starting delivery");
            let deliverer = self.deliverer.clone();
            self.deliveries.get_or_start(
                key,
                || plan,
                |plan, stop| tokio::spawn(pull::pull_loop(Arc::new(plan.clone()), deliverer, stop)),
            );
        }
    }

    /// Stops everything: routing and backfills at once, deliveries after draining for
    /// at most `drain` (what is left goes back to JetStream for redelivery).
    pub async fn shutdown(self, drain: Duration) {
        let deadline = tokio::time::Instant::now() + drain;
        let mut tasks = self.routers.stop_all(|_| Stop::Now);
        tasks.extend(self.backfills.stop_all(|_| Stop::Now));
        tasks.extend(self.deliveries.stop_all(|_| Stop::Drain(deadline)));
        let all = futures::future::join_all(tasks);
        // Handing back takes a moment after the deadline; past that, exit regardless.
        if tokio::time::timeout_at(deadline + Duration::from_secs(2), all)
            .await
            .is_err()
        {
            tracing::warn!(
                "drain time is up; events still held go back to JetStream after the ack wait"
            );
        }
    }
}

/// Whether a Broker's events should be routed: it is Ready, or only the operator's view
/// of NATS is troubled.
fn broker_routable(broker: &Broker) -> bool {
    broker
        .status
        .as_ref()
        .is_some_and(|s| conditions::served(&s.conditions).is_ok())
}
