//! Every body and every wait is bounded: answers that never end or trickle, attribute
//! bombs, and more bytes in flight than the ingress may hold. Each test tries to cross
//! a bound with a real component and checks that the others keep working.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use herald_api::{DeliverySpec, TriggerSpec};
use herald_e2e::http::{post, post_beside_stalled};
use herald_e2e::manifests::{attributes, retries, to_uri};
use herald_e2e::process::http_get;
use herald_e2e::stack::Stack;
use herald_e2e::subscriber::Subscriber;
use herald_e2e::{eventually, nats_url, with_temp_ns};
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

const WAIT: Duration = Duration::from_secs(30);
static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

type Body = StreamBody<BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

/// A subscriber that answers every event 200 with the headers of a reply event (type
/// `bounds.reply`) and a body that never ends: 64 KiB chunks as fast as they are
/// taken for type `huge`, one byte every half second otherwise.
async fn endless_subscriber() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let received = Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    count.fetch_add(1, Ordering::SeqCst);
                    let huge = req
                        .headers()
                        .get("ce-type")
                        .is_some_and(|t| t.as_bytes() == b"huge");
                    let stream: BoxStream<'static, _> = if huge {
                        futures::stream::repeat_with(|| Ok(Frame::data(Bytes::from_static(&CHUNK))))
                            .boxed()
                    } else {
                        futures::stream::unfold((), |()| async {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            Some((Ok(Frame::data(Bytes::from_static(b"x"))), ()))
                        })
                        .boxed()
                    };
                    let response = hyper::Response::builder()
                        .status(200)
                        .header("ce-specversion", "1.0")
                        .header("ce-id", "reply")
                        .header("ce-source", "/replier")
                        .header("ce-type", "bounds.reply")
                        .body(Body::new(stream))
                        .unwrap();
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    (url, received)
}

async fn trigger(client: &kube::Client, ns: &str, name: &str, spec: TriggerSpec) {
    herald_e2e::ready_trigger(client, ns, name, spec, WAIT).await;
}

/// The dispatcher's count of outcome `outcome` for Trigger `trigger`.
async fn outcomes(metrics_port: u16, trigger: &str, outcome: &str) -> f64 {
    let body = http_get(metrics_port, "/metrics").await.unwrap_or_default();
    body.lines()
        .filter(|l| {
            l.starts_with("herald_dispatcher_events_total{")
                && l.contains(&format!("trigger=\"{trigger}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn endless_and_trickling_answers_are_cut_and_count_as_delivered() {
    with_temp_ns("endless", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let dispatcher = stack.dispatcher.as_ref().unwrap();
        let (endless_url, endless_received) = endless_subscriber().await;
        let (steady, replies) = (Subscriber::accepting().await, Subscriber::accepting().await);
        trigger(
            &client,
            &ns,
            "endless",
            TriggerSpec {
                filter: attributes([("source", "/endless")]),
                delivery: Some(DeliverySpec {
                    timeout: Some("PT2S".to_owned()),
                    ..retries(3, "PT0.1S")
                }),
                ..to_uri(&endless_url)
            },
        )
        .await;
        trigger(
            &client,
            &ns,
            "steady",
            TriggerSpec {
                filter: attributes([("type", "normal")]),
                ..to_uri(&steady.url)
            },
        )
        .await;
        trigger(
            &client,
            &ns,
            "replies",
            TriggerSpec {
                filter: attributes([("type", "bounds.reply")]),
                ..to_uri(&replies.url)
            },
        )
        .await;

        for i in 0..3 {
            stack
                .send(&format!("huge-{i}"), "huge", "/endless", "{}")
                .await;
        }
        stack.send("trickle-0", "trickle", "/endless", "{}").await;
        for i in 0..5 {
            stack
                .send(&format!("normal-{i}"), "normal", "/s", "{}")
                .await;
        }
        steady
            .wait_for("the other Trigger is delivered", WAIT, |d| d.len() >= 5)
            .await;
        eventually("the cut replies are counted as dropped", WAIT, || async {
            (outcomes(dispatcher.metrics_port, "endless", "reply_dropped").await >= 4.0)
                .then_some(())
        })
        .await;
        // A dropped reply is counted before the event's ack and its delivery.
        eventually("the cut replies are counted as delivered", WAIT, || async {
            (outcomes(dispatcher.metrics_port, "endless", "delivered").await >= 4.0).then_some(())
        })
        .await;
        // Time for retries, had any been made (backoff 0.1 s, timeout 2 s).
        tokio::time::sleep(Duration::from_secs(3)).await;
        let delivered = outcomes(dispatcher.metrics_port, "endless", "delivered").await;
        assert!(
            (delivered - 4.0).abs() < 0.5,
            "a 2xx whose body was cut is a delivery, once: {delivered}"
        );
        assert_eq!(
            endless_received.load(Ordering::SeqCst),
            4,
            "each event was sent once: a cut body is not a failed attempt"
        );
        assert_eq!(replies.count(), 0, "no part of a reply was published");
        let rss = dispatcher.rss_bytes();
        assert!(
            rss < 200 << 20,
            "the dispatcher read at most 1 MiB per answer, yet holds {rss} bytes"
        );
        assert!(dispatcher.delivered().await >= 9.0);
    })
    .await;
}

#[tokio::test]
async fn the_ingress_holds_a_bounded_number_of_bytes_and_refuses_attribute_bombs() {
    with_temp_ns("inflight", |client, ns| async move {
        let flags = ["--max-in-flight-bytes", "4096", "--read-timeout", "2s"];
        let stack = Stack::without_dispatcher(client.clone(), &ns, &nats_url(), &flags).await;
        let url = stack.broker_url();
        let event = |id: &'static str| {
            [
                ("ce-specversion", "1.0"),
                ("ce-id", id),
                ("ce-type", "t"),
                ("ce-source", "/s"),
                ("content-type", "application/json"),
            ]
        };

        // Two requests stalled in their bodies hold the whole budget: the next one
        // gets 503 with Retry-After, before its body is read and without storing it.
        let path = format!("/{ns}/default");
        let (refused, _held) = post_beside_stalled(
            (stack.ingress.port, &path, 2048),
            &url,
            &event("refused"),
            503,
        )
        .await;
        assert_eq!(refused.json()["error"], "Overloaded");
        assert!(refused.headers.contains_key("retry-after"));
        // Once the stalled requests time out their bytes come back; the refused
        // event, sent again as Retry-After asks, is stored.
        eventually("the budget comes back", Duration::from_secs(10), || async {
            (post(&url, &event("refused"), "{}").await.status == 202).then_some(())
        })
        .await;

        // An attribute bomb in structured mode: 400 at once, not seconds of parsing.
        let extensions: String = (0..300).fold(String::new(), |mut members, i| {
            let _ = write!(members, r#","x{i}":1"#);
            members
        });
        let bomb = format!(
            "{}{extensions}}}",
            r#"{"specversion":"1.0","id":"bomb","source":"/s","type":"t""#
        );
        let started = Instant::now();
        let structured = [("content-type", "application/cloudevents+json")];
        let answer = post(&url, &structured, bomb).await;
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert!(
            answer.body.contains("at most 100 attributes"),
            "{}",
            answer.body
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    })
    .await;
}
