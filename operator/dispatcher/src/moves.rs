//! Leader moves of JetStream streams and consumers, from JetStream's advisories.
//!
//! A pull request lives on the consumer's leader. When a NATS node dies, the
//! consumers it led get new leaders on the surviving nodes, which know nothing of the
//! pulls the dispatcher had open: those pulls go silent. Heartbeats notice that, but
//! only after a few heartbeat periods, and short heartbeats are a steady cost for
//! every idle Trigger (1,100 open pulls with 1 s heartbeats were ~3 % of a core of
//! nats-server). So the dispatcher follows the leader-election advisories (one
//! subscription) and reopens the pulls of a stream whose stream or consumer leader was
//! elected at once; heartbeats stay as the slow safety net.

use futures::StreamExt;
use tokio::sync::broadcast;

/// Advisories of a new stream leader (`…STREAM.LEADER_ELECTED.<stream>`) and of a new
/// consumer leader (`…CONSUMER.LEADER_ELECTED.<stream>.<consumer>`).
const ADVISORIES: [&str; 2] = [
    "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.>",
    "$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.>",
];

/// A leader elected: of a stream (`consumer` is `None`) or of one of its consumers;
/// or, after the dispatcher's own connection came back, possibly of anything (the
/// advisories sent meanwhile were missed).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Moved {
    Leader {
        stream: String,
        consumer: Option<String>,
    },
    Anything,
}

/// Leader moves, to every pull loop that watches.
#[derive(Clone)]
pub struct LeaderMoves {
    sender: broadcast::Sender<Moved>,
}

impl Default for LeaderMoves {
    fn default() -> Self {
        LeaderMoves {
            sender: broadcast::channel(256).0,
        }
    }
}

impl LeaderMoves {
    /// Follows the advisories on `client` for as long as it lives. Without permission
    /// to subscribe (a locked-down NATS account), only heartbeats and reconnections
    /// ([`LeaderMoves::follow_reconnections`]) remain.
    pub async fn follow(&self, client: async_nats::Client) {
        let mut subscriptions = Vec::new();
        for subject in ADVISORIES {
            match client.subscribe(subject).await {
                Ok(s) => subscriptions.push(s),
                Err(e) => {
                    tracing::warn!(%subject, error = %e, "cannot follow JetStream leader elections; silent pulls are found by heartbeats only");
                }
            }
        }
        let mut advisories = futures::stream::select_all(subscriptions);
        while let Some(advisory) = advisories.next().await {
            if let Some(moved) = moved(advisory.subject.as_str()) {
                tracing::debug!(
                    ?moved,
                    "a JetStream leader was elected; reopening the pulls concerned"
                );
                // No receiver (no loop running) is not an error.
                let _ = self.sender.send(moved);
            }
        }
    }

    /// Reopens every pull when a connection (`state_changes` of it) reconnects, for as
    /// long as that connection lives: the advisories sent meanwhile were missed.
    pub fn follow_reconnections(&self, mut state_changes: tokio::sync::watch::Receiver<u64>) {
        let sender = self.sender.clone();
        tokio::spawn(async move {
            while state_changes.changed().await.is_ok() {
                let _ = sender.send(Moved::Anything);
            }
        });
    }

    /// Waits for moves of `consumer` on `stream` (or of the stream itself).
    #[must_use]
    pub fn watch(&self, stream: &str, consumer: &str) -> MovesOf {
        MovesOf {
            stream: stream.to_owned(),
            consumer: consumer.to_owned(),
            receiver: self.sender.subscribe(),
        }
    }
}

/// Moves of one consumer.
pub struct MovesOf {
    stream: String,
    consumer: String,
    receiver: broadcast::Receiver<Moved>,
}

impl MovesOf {
    /// Resolves when the consumer's or its stream's leader moved, or when advisories
    /// were missed (the move may have been among them).
    pub async fn moved(&mut self) {
        loop {
            match self.receiver.recv().await {
                Ok(Moved::Leader { stream, consumer })
                    if stream == self.stream
                        && consumer.as_ref().is_none_or(|c| *c == self.consumer) =>
                {
                    return;
                }
                Ok(Moved::Leader { .. }) => {}
                Ok(Moved::Anything) | Err(broadcast::error::RecvError::Lagged(_)) => return,
                // The sender lives as long as the dispatcher: never while we run.
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }
}

/// What a leader-election advisory's subject names.
fn moved(subject: &str) -> Option<Moved> {
    let name = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
    if let Some(stream) = subject.strip_prefix("$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.") {
        return Some(Moved::Leader {
            stream: name(stream)?,
            consumer: None,
        });
    }
    let (stream, consumer) = subject
        .strip_prefix("$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.")?
        .split_once('.')?;
    Some(Moved::Leader {
        stream: name(stream)?,
        consumer: Some(name(consumer)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(stream: &str, consumer: Option<&str>) -> Moved {
        Moved::Leader {
            stream: stream.into(),
            consumer: consumer.map(Into::into),
        }
    }

    #[test]
    fn both_advisories_are_read() {
        assert_eq!(
            moved("$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.HERALDQ_team_default"),
            Some(at("HERALDQ_team_default", None))
        );
        assert_eq!(
            moved("$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.HERALD_team_default.router"),
            Some(at("HERALD_team_default", Some("router")))
        );
        assert_eq!(moved("$JS.EVENT.ADVISORY.CONSUMER.CREATED.S.c"), None);
        assert_eq!(moved("$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED."), None);
        assert_eq!(moved("$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.S"), None);
    }

    async fn woken(watched: &mut MovesOf) -> bool {
        tokio::time::timeout(std::time::Duration::from_millis(50), watched.moved())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_loop_wakes_for_its_consumer_and_its_stream_only() {
        let moves = LeaderMoves::default();
        let mut watched = moves.watch("Q", "trigger_a");
        moves
            .sender
            .send(at("Q", Some("trigger_b")))
            .expect("a receiver");
        moves.sender.send(at("P", None)).expect("a receiver");
        assert!(
            !woken(&mut watched).await,
            "woken by another consumer or stream"
        );
        moves
            .sender
            .send(at("Q", Some("trigger_a")))
            .expect("a receiver");
        assert!(woken(&mut watched).await, "its consumer moved");
        moves.sender.send(at("Q", None)).expect("a receiver");
        assert!(woken(&mut watched).await, "its stream moved");
        moves.sender.send(Moved::Anything).expect("a receiver");
        assert!(woken(&mut watched).await, "NATS reconnected");
    }
}
