//! Keeping exactly the wanted loops running, each under a key: started once, told to
//! stop (through a `watch` channel, so it can finish what it holds) when it is no
//! longer wanted or what it runs for has changed. The dispatcher's routers,
//! backfills and deliveries and the source adapter's sources are all kept this way.

use std::collections::HashMap;
use std::hash::Hash;

use tokio::sync::watch;
use tokio::task::JoinHandle;

struct Running<T, S> {
    what: T,
    stop: watch::Sender<S>,
    /// `None` for a loop that needs no task (it is served from elsewhere).
    task: Option<JoinHandle<()>>,
}

/// Loops by key, each running for a `T`, stopped with a message `S`.
pub struct Loops<K, T, S> {
    running: HashMap<K, Running<T, S>>,
    /// What a new loop's stop channel starts with (keep going).
    going: S,
}

impl<K: Eq + Hash, T, S: Clone> Loops<K, T, S> {
    /// No loops; each loop started later sees `going` until it is told otherwise.
    #[must_use]
    pub fn new(going: S) -> Self {
        Self {
            running: HashMap::new(),
            going,
        }
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.running.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    #[must_use]
    pub fn get(&self, key: &K) -> Option<&T> {
        self.running.get(key).map(|r| &r.what)
    }

    /// Keeps the loops `keep` says yes to and sends the others `stop` (they end on
    /// their own; their tasks are not awaited).
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &T) -> bool, stop: &S) {
        self.running.retain(|key, running| {
            let kept = keep(key, &running.what);
            if !kept {
                let _ = running.stop.send(stop.clone());
            }
            kept
        });
    }

    /// The loop under `key`, started first if there is none: `make` gives what it
    /// runs for, `run` starts it with its stop channel.
    pub fn get_or_start<H>(
        &mut self,
        key: K,
        make: impl FnOnce() -> T,
        run: impl FnOnce(&T, watch::Receiver<S>) -> H,
    ) -> &T
    where
        H: Into<Option<JoinHandle<()>>>,
    {
        let going = &self.going;
        &self
            .running
            .entry(key)
            .or_insert_with(|| {
                let what = make();
                let (stop, stopped) = watch::channel(going.clone());
                let task = run(&what, stopped).into();
                Running { what, stop, task }
            })
            .what
    }

    /// Sends every loop the stop `stop_for` picks, and hands back their tasks to await.
    #[must_use]
    pub fn stop_all(self, stop_for: impl Fn(&T) -> S) -> Vec<JoinHandle<()>> {
        self.running
            .into_values()
            .filter_map(|running| {
                let _ = running.stop.send(stop_for(&running.what));
                running.task
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counting(loops: &mut Loops<&'static str, u32, bool>, key: &'static str, what: u32) {
        loops.get_or_start(
            key,
            || what,
            |_, mut stop| {
                tokio::spawn(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
            },
        );
    }

    #[tokio::test]
    async fn loops_start_once_and_stop_when_unwanted() {
        let mut loops = Loops::new(false);
        counting(&mut loops, "a", 1);
        counting(&mut loops, "a", 2);
        counting(&mut loops, "b", 3);
        assert_eq!(
            (loops.len(), loops.get(&"a")),
            (2, Some(&1)),
            "started once"
        );
        loops.retain(|key, _| *key == "b", &true);
        assert_eq!((loops.len(), loops.get(&"a")), (1, None));
        let tasks = loops.stop_all(|_| true);
        assert_eq!(tasks.len(), 1);
        for task in tasks {
            tokio::time::timeout(std::time::Duration::from_secs(5), task)
                .await
                .expect("a stopped loop ends")
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_loop_without_a_task_is_kept_too() {
        let mut loops: Loops<u8, (), bool> = Loops::new(false);
        loops.get_or_start(1, || (), |(), _| None);
        assert_eq!(loops.len(), 1);
        assert!(loops.stop_all(|()| true).is_empty());
    }
}
