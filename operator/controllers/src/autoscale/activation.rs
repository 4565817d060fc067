//! Fast activation: while a Trigger's Deployment is at zero replicas, a core NATS
//! subscription on the subjects of its durable consumer sees each new event as the
//! stream stores it, and wakes the autoscaler instead of waiting for the next poll.

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::context::Context;

/// A running subscription; dropping it unsubscribes.
pub(super) struct Watch {
    task: JoinHandle<()>,
}

impl Watch {
    /// Subscribes to `subjects`; every message sends `key` to `wake` (dropped when the
    /// autoscaler is already busy with earlier wake-ups).
    pub(super) async fn start(
        ctx: &Context,
        key: &str,
        subjects: &[String],
        wake: mpsc::Sender<String>,
    ) -> anyhow::Result<Self> {
        let mut subscriptions = Vec::with_capacity(subjects.len());
        for subject in subjects {
            subscriptions.push(ctx.nats.client.subscribe(subject.clone()).await?);
        }
        let key = key.to_owned();
        let task = tokio::spawn(async move {
            let mut messages = futures::stream::select_all(subscriptions);
            while messages.next().await.is_some() {
                let _ = wake.try_send(key.clone());
            }
        });
        Ok(Watch { task })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
