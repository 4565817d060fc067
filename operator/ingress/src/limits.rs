//! What one client may cost the shared ingress: header count and size and the time to
//! send them (enforced by hyper, answered 431 or the connection closed), the time to
//! send the body (408), and requests in flight per Broker (429), so one noisy tenant
//! cannot take the ingress from the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

pub use herald_runtime::http_server::{
    ConnectionLimits, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADERS, DEFAULT_READ_TIMEOUT, serve,
    serve_tls,
};

/// Requests in flight per Broker, capped.
///
/// One atomic counter per Broker UID, created after the Broker lookup succeeded (so
/// unknown addresses cannot grow the map) and kept while the process runs. The hot
/// path takes a shared read lock to find the counter and allocates nothing.
pub struct BrokerConcurrency {
    max: usize,
    counters: RwLock<HashMap<String, Arc<AtomicUsize>>>,
}

/// Held while a request for a Broker runs; frees its place when dropped.
pub struct Slot(Option<Arc<AtomicUsize>>);

impl BrokerConcurrency {
    /// At most `max` requests per Broker at once (0: no limit).
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            max,
            counters: RwLock::default(),
        }
    }

    /// The cap.
    #[must_use]
    pub fn max(&self) -> usize {
        self.max
    }

    /// A place for one more request to the Broker with `uid`, or `None` when it has
    /// `max` already.
    #[must_use]
    pub fn acquire(&self, uid: &str) -> Option<Slot> {
        if self.max == 0 {
            return Some(Slot(None));
        }
        let existing = self
            .counters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(uid)
            .cloned();
        let counter = existing.unwrap_or_else(|| {
            let mut counters = self
                .counters
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(counters.entry(uid.to_owned()).or_default())
        });
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        Some(Slot(Some(counter)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(counter) = &self.0 {
            counter.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_broker_has_its_own_cap_and_slots_come_back() {
        let limit = BrokerConcurrency::new(2);
        let a1 = limit.acquire("uid-a").expect("first");
        let a2 = limit.acquire("uid-a").expect("second");
        assert!(limit.acquire("uid-a").is_none(), "third is over the cap");
        assert!(
            limit.acquire("uid-b").is_some(),
            "another Broker is not affected"
        );
        drop(a1);
        let a3 = limit.acquire("uid-a").expect("a place came back");
        drop((a2, a3));
        let counters = limit.counters.read().unwrap();
        assert_eq!(
            counters["uid-a"].load(Ordering::Acquire),
            0,
            "every place given back"
        );
    }

    #[test]
    fn zero_means_unlimited() {
        let limit = BrokerConcurrency::new(0);
        let slots: Vec<_> = (0..1000).map(|_| limit.acquire("uid-a").unwrap()).collect();
        assert_eq!(slots.len(), 1000);
    }
}
