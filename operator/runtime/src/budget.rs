//! A process-wide budget of bytes held for requests in flight (bodies being read, or
//! held until their events are stored), so that many concurrent requests, each within
//! its own size limit, cannot add up to more memory than the process has.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes that may be held at once; shared by clones.
#[derive(Clone, Debug)]
pub struct ByteBudget {
    capacity: usize,
    held: Arc<AtomicUsize>,
}

/// Bytes held from a [`ByteBudget`]; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    bytes: usize,
    held: Arc<AtomicUsize>,
}

impl ByteBudget {
    /// A budget of `capacity` bytes (0: no limit).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            held: Arc::default(),
        }
    }

    /// The budget's size (0: no limit).
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held now.
    #[must_use]
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Holds `bytes`, or `None` when they do not fit beside what is held. A request
    /// larger than the whole budget is held as the whole budget, so it can still run,
    /// alone.
    #[must_use]
    pub fn try_reserve(&self, bytes: usize) -> Option<Reservation> {
        let bytes = if self.capacity == 0 {
            0
        } else {
            bytes.min(self.capacity)
        };
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                let after = held.checked_add(bytes)?;
                (self.capacity == 0 || after <= self.capacity).then_some(after)
            })
            .ok()?;
        Some(Reservation {
            bytes,
            held: Arc::clone(&self.held),
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_or_are_refused_and_come_back() {
        let budget = ByteBudget::new(100);
        let a = budget.try_reserve(60).expect("fits");
        assert!(budget.try_reserve(41).is_none(), "over the budget");
        let b = budget.try_reserve(40).expect("exactly fills it");
        assert_eq!(budget.held(), 100);
        drop(a);
        assert!(budget.try_reserve(61).is_none());
        let c = budget.try_reserve(60).expect("room came back");
        drop((b, c));
        assert_eq!(budget.held(), 0, "everything given back");
    }

    #[test]
    fn a_request_larger_than_the_budget_runs_alone() {
        let budget = ByteBudget::new(100);
        let huge = budget
            .try_reserve(1 << 30)
            .expect("held as the whole budget");
        assert_eq!(budget.held(), 100);
        assert!(budget.try_reserve(1).is_none());
        drop(huge);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn zero_means_no_limit() {
        let budget = ByteBudget::new(0);
        let all: Vec<_> = (0..1000)
            .map(|_| budget.try_reserve(usize::MAX).unwrap())
            .collect();
        assert_eq!(all.len(), 1000);
    }
}
