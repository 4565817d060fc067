//! How many times this dispatcher tried each queued event: JetStream's delivery count
//! is not that number (see [`Attempts`]).

/// Attempts this dispatcher made per queued event, by (queue stream, sequence).
///
/// JetStream's delivery count also rises when an event comes back after a crash, a
/// stop or an ack-wait expiry, none of which was an attempt; counting here means an
/// event is sent at least once by whoever receives it. Entries go when the event is
/// settled; the few whose retry went to another dispatcher are swept by age.
#[derive(Default)]
pub struct Attempts {
    made: std::sync::Mutex<std::collections::HashMap<(String, u64), (u32, std::time::Instant)>>,
}

/// Entries kept before old ones are swept.
const ATTEMPTS_SWEEP_AT: usize = 50_000;

impl Attempts {
    /// Attempts already made for the event.
    pub(crate) fn made(&self, stream: &str, sequence: u64) -> u32 {
        let made = self
            .made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        made.get(&(stream.to_owned(), sequence))
            .map_or(0, |(n, _)| *n)
    }

    /// Records that `number` attempts were made and another will follow.
    pub(crate) fn record(&self, stream: &str, sequence: u64, number: u32) {
        let mut made = self
            .made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if made.len() >= ATTEMPTS_SWEEP_AT {
            let now = std::time::Instant::now();
            made.retain(|_, (_, at)| {
                now.duration_since(*at) < herald_api::delivery::MAX_BACKOFF * 2
            });
        }
        made.insert(
            (stream.to_owned(), sequence),
            (number, std::time::Instant::now()),
        );
    }

    /// Forgets a settled event.
    pub(crate) fn settle(&self, stream: &str, sequence: u64) {
        let mut made = self
            .made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        made.remove(&(stream.to_owned(), sequence));
    }
}
