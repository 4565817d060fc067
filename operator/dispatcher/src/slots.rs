//! The dispatcher's global bound on deliveries in flight, shared fairly between
//! Triggers.
//!
//! A plain FIFO semaphore bounds the total but not who gets it: a Trigger whose
//! subscriber is slow queues thousands of deliveries, and a Trigger that needs one slot
//! waits behind all of them (measured: a steady Trigger waited 15–45 s while other
//! namespaces churned). Here a freed slot goes to the waiting Trigger that has the
//! fewest deliveries in flight (max-min fairness), ties in the order they started to
//! wait; so a Trigger with little in flight is served at the next release, whatever
//! the others queued.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// Deliveries in flight across all Triggers, at most `capacity` at once.
pub struct Slots {
    state: Mutex<State>,
    next_share: AtomicU64,
}

struct State {
    free: usize,
    shares: HashMap<u64, ShareState>,
    /// Shares with waiters, by (in flight, turn, share): the first is served next.
    /// Invariant: `free == 0 || waiting.is_empty()`.
    waiting: BTreeSet<(usize, u64, u64)>,
    turn: u64,
}

#[derive(Default)]
struct ShareState {
    in_flight: usize,
    /// Its key in `waiting` while it has waiters.
    key: Option<(usize, u64, u64)>,
    /// Senders of its waiting acquires, oldest first; an acquire that was given up
    /// leaves a closed sender, skipped when its turn comes.
    waiters: VecDeque<oneshot::Sender<Slot>>,
}

/// One Trigger's claim on [`Slots`]: its acquires are counted together.
pub struct Share {
    slots: Arc<Slots>,
    id: u64,
}

/// A slot held; released on drop.
pub struct Slot {
    slots: Arc<Slots>,
    share: u64,
    armed: bool,
}

impl Slots {
    /// A bound of `capacity` deliveries (at least one).
    #[must_use]
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Slots {
            state: Mutex::new(State {
                free: capacity.max(1),
                shares: HashMap::new(),
                waiting: BTreeSet::new(),
                turn: 0,
            }),
            next_share: AtomicU64::new(0),
        })
    }

    /// A new share, for one Trigger's loop.
    #[must_use]
    pub fn share(self: &Arc<Self>) -> Share {
        Share {
            slots: self.clone(),
            id: self.next_share.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update keeps the state consistent before it can panic, so a poisoned
        // lock still holds a valid state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(self: &Arc<Self>, share: u64) {
        let mut state = self.lock();
        state.free += 1;
        if let Some(entry) = state.shares.get_mut(&share) {
            entry.in_flight -= 1;
        }
        state.rekey(share);
        self.hand_out(&mut state);
    }

    /// Gives free slots to waiters, fewest in flight first.
    fn hand_out(self: &Arc<Self>, state: &mut State) {
        while state.free > 0
            && let Some(&(_, _, share)) = state.waiting.first()
        {
            let Some(waiter) = state
                .shares
                .get_mut(&share)
                .and_then(|entry| entry.waiters.pop_front())
            else {
                state.rekey(share);
                continue;
            };
            let slot = Slot {
                slots: self.clone(),
                share,
                armed: true,
            };
            match waiter.send(slot) {
                Ok(()) => {
                    state.free -= 1;
                    if let Some(entry) = state.shares.get_mut(&share) {
                        entry.in_flight += 1;
                    }
                }
                // That acquire was given up: its slot was never counted.
                Err(mut slot) => slot.armed = false,
            }
            state.rekey(share);
        }
    }
}

impl State {
    /// Puts `share` where its in-flight count and waiters say, and forgets it when it
    /// holds nothing and waits for nothing.
    fn rekey(&mut self, share: u64) {
        let Some(entry) = self.shares.get_mut(&share) else {
            return;
        };
        if let Some(key) = entry.key.take() {
            self.waiting.remove(&key);
        }
        if !entry.waiters.is_empty() {
            // Every change queues the share behind those with the same count, so
            // equal shares take turns.
            self.turn += 1;
            let key = (entry.in_flight, self.turn, share);
            entry.key = Some(key);
            self.waiting.insert(key);
        } else if entry.in_flight == 0 {
            self.shares.remove(&share);
        }
    }
}

impl Share {
    /// Waits for a slot. Cancel-safe: a slot handed to an acquire that was given up
    /// is released at once.
    ///
    /// # Panics
    /// Never: a waiting acquire's sender stays in the state until it is served, and
    /// the share (which would drop it) is borrowed for as long as this waits.
    pub async fn acquire(&self) -> Slot {
        let receiver = {
            let mut state = self.slots.lock();
            if state.free > 0 {
                state.free -= 1;
                state.shares.entry(self.id).or_default().in_flight += 1;
                return Slot {
                    slots: self.slots.clone(),
                    share: self.id,
                    armed: true,
                };
            }
            let (sender, receiver) = oneshot::channel();
            state
                .shares
                .entry(self.id)
                .or_default()
                .waiters
                .push_back(sender);
            let entry = &state.shares[&self.id];
            if entry.key.is_none() {
                state.rekey(self.id);
            }
            receiver
        };
        // The sender lives in the state until it is served; `Slots` outlives us.
        receiver
            .await
            .expect("a waiting acquire is served before its sender is dropped")
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut state = self.slots.lock();
        if let Some(entry) = state.shares.get_mut(&self.id) {
            entry.waiters.clear();
        }
        state.rekey(self.id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.armed {
            self.slots.release(self.share);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn pending(share: &Arc<Share>) -> tokio::task::JoinHandle<Slot> {
        let share = share.clone();
        let task = tokio::spawn(async move { share.acquire().await });
        tokio::task::yield_now().await;
        task
    }

    #[tokio::test]
    async fn a_trigger_with_little_in_flight_is_served_before_a_busy_one() {
        let slots = Slots::new(2);
        let (busy, quiet) = (Arc::new(slots.share()), Arc::new(slots.share()));
        let first = busy.acquire().await;
        let _second = busy.acquire().await;
        // The busy Trigger queues many before the quiet one asks for one.
        let mut queued = Vec::new();
        for _ in 0..100 {
            queued.push(pending(&busy).await);
        }
        let quiet_one = pending(&quiet).await;
        drop(first);
        let slot = tokio::time::timeout(Duration::from_secs(1), quiet_one)
            .await
            .expect("the quiet Trigger was served at the first release")
            .expect("task");
        assert_eq!(slot.share, quiet.id);
        assert!(queued.iter().all(|t| !t.is_finished()));
        assert_eq!(slots.lock().free, 0);
    }

    #[tokio::test]
    async fn never_more_than_the_capacity_in_flight_and_all_come_back() {
        let slots = Slots::new(3);
        let in_flight = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let share = Arc::new(slots.share());
            for _ in 0..20 {
                let (share, in_flight, peak) = (share.clone(), in_flight.clone(), peak.clone());
                tasks.push(tokio::spawn(async move {
                    let _slot = share.acquire().await;
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                }));
            }
        }
        for task in tasks {
            task.await.expect("task");
        }
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert_eq!(slots.lock().free, 3);
        assert!(slots.lock().shares.is_empty());
        assert!(slots.lock().waiting.is_empty());
    }

    #[tokio::test]
    async fn given_up_acquires_and_dropped_shares_lose_no_slot() {
        let slots = Slots::new(1);
        let held = slots.share().acquire().await;
        let gone = Arc::new(slots.share());
        let abandoned = pending(&gone).await;
        abandoned.abort();
        let _ = abandoned.await;
        let waiting = Arc::new(slots.share());
        let served = pending(&waiting).await;
        drop(gone);
        drop(held);
        let slot = served.await.expect("served after the abandoned acquire");
        drop(slot);
        assert_eq!(slots.lock().free, 1);
        assert!(slots.lock().shares.is_empty());
    }

    #[tokio::test]
    async fn equal_shares_take_turns() {
        let slots = Slots::new(1);
        let (a, b) = (Arc::new(slots.share()), Arc::new(slots.share()));
        let held = a.acquire().await;
        let a_next = pending(&a).await;
        let b_next = pending(&b).await;
        // `a` just had its turn: `b` goes first, then `a`.
        drop(held);
        let slot = b_next.await.expect("b");
        assert!(!a_next.is_finished());
        drop(slot);
        a_next.await.expect("a");
    }
}
