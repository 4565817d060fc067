//! Delivery rate limits and `Retry-After`: a subscriber that can take only so much is
//! sent no more, and one that says when to come back is retried then.

use std::time::Duration;

use herald_api::common::RateLimit;
use herald_api::{DeliverySpec, TriggerSpec};
use herald_e2e::manifests::{attributes, retries, to_uri};
use herald_e2e::stack::Stack;
use herald_e2e::subscriber::{Answer, Subscriber};
use herald_e2e::{nats_url, ready_trigger, with_temp_ns};

const WAIT: Duration = Duration::from_secs(30);

/// 20 events to a Trigger limited to 5 per second with bursts of 1: they arrive over
/// at least 19 intervals of 200 ms (less some slack for the clock of the limiter),
/// while a Trigger without a limit gets all 20 at once.
#[tokio::test]
async fn a_rate_limited_trigger_is_sent_no_faster_than_its_limit() {
    with_temp_ns("rate-limit", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let (limited, free) = (Subscriber::accepting().await, Subscriber::accepting().await);
        let limit = DeliverySpec {
            rate_limit: Some(RateLimit {
                events: 5,
                per: Some("1s".to_owned()),
                burst: Some(1),
            }),
            ..DeliverySpec::default()
        };
        for (name, url, delivery) in [
            ("limited", &limited.url, Some(limit)),
            ("free", &free.url, None),
        ] {
            let spec = TriggerSpec {
                filter: attributes([("type", "rate.test")]),
                delivery,
                ..to_uri(url)
            };
            ready_trigger(&client, &ns, name, spec, WAIT).await;
        }
        for n in 0..20 {
            stack
                .send(&format!("r-{n}"), "rate.test", "/e2e", "{}")
                .await;
        }
        free.wait_for("every event, unlimited", WAIT, |d| d.len() >= 20)
            .await;
        limited
            .wait_for("every event, at the limit", WAIT, |d| d.len() >= 20)
            .await;
        let spread = |s: &Subscriber| {
            let at = s.arrivals();
            at[at.len() - 1].duration_since(at[0])
        };
        let (elapsed, unlimited) = (spread(&limited), spread(&free));
        assert!(
            elapsed >= Duration::from_millis(3_500),
            "20 events at 5/s (burst 1) arrived within {elapsed:?} (unlimited: {unlimited:?})"
        );
        assert_eq!(
            limited.accepted_ids().len(),
            20,
            "nothing lost while waiting"
        );
    })
    .await;
}

/// A subscriber answering 429 with `Retry-After: 3` is retried after 3 s, not after
/// the Trigger's 100 ms backoff.
#[tokio::test]
async fn retry_after_is_heeded() {
    with_temp_ns("retry-after", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let busy = Subscriber::scripted(|_, nth| {
            if nth == 1 {
                Answer::retry_after(429, 3)
            } else {
                Answer::status(200)
            }
        })
        .await;
        let spec = TriggerSpec {
            delivery: Some(retries(3, "PT0.1S")),
            ..to_uri(&busy.url)
        };
        ready_trigger(&client, &ns, "busy", spec, WAIT).await;
        stack.send("busy-1", "retry.after", "/e2e", "{}").await;
        busy.wait_for("the retry", WAIT, |d| d.len() >= 2).await;
        let arrivals = busy.arrivals();
        let retried_after = arrivals[1].duration_since(arrivals[0]);
        assert!(
            retried_after >= Duration::from_millis(2_800),
            "retried {retried_after:?} after a Retry-After of 3 s"
        );
        assert_eq!(busy.accepted_ids(), ["busy-1"]);
    })
    .await;
}
