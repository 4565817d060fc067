//! What one client may cost the shared ingress: too many or too large headers (431),
//! headers or a body sent too slowly (connection closed, 408), and too many requests
//! in flight for one Broker (429), while other Brokers stay served. Raw TCP where a
//! well-behaved HTTP client could not misbehave enough.

use std::time::{Duration, Instant};

use herald_e2e::http::{post, post_beside_stalled, stalled_request};
use herald_e2e::manifests::{apply, broker};
use herald_e2e::stack::Stack;
use herald_e2e::{await_ready, nats_url, with_temp_ns};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMITS: &[&str] = &[
    "--max-headers",
    "20",
    "--max-header-bytes",
    "4096",
    "--read-timeout",
    "1s",
    "--max-concurrent-per-broker",
    "2",
];

/// The status line's code of what the server answers on `stream`, or `None` if it
/// closes the connection without answering.
async fn status_of(stream: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test]
async fn headers_bodies_and_concurrency_are_bounded() {
    with_temp_ns("limits", |client, ns| async move {
        let stack = Stack::without_dispatcher(client.clone(), &ns, &nats_url(), LIMITS).await;
        let url = stack.broker_url();
        let port = stack.ingress.port;
        let event = [
            ("ce-specversion", "1.0"),
            ("ce-type", "t"),
            ("ce-source", "/s"),
            ("content-type", "application/json"),
        ];

        // Too many headers, and one too large: 431 before the router sees them.
        let mut many: Vec<(String, String)> = (0..25)
            .map(|i| (format!("x-extra-{i}"), "v".to_owned()))
            .collect();
        many.push(("ce-id".into(), "many".into()));
        let many_refs: Vec<(&str, &str)> = event
            .iter()
            .copied()
            .chain(many.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .collect();
        assert_eq!(post(&url, &many_refs, "{}").await.status, 431);
        let large = "x".repeat(5000);
        let mut with_large = event.to_vec();
        with_large.extend([("ce-id", "large"), ("x-large", large.as_str())]);
        assert_eq!(post(&url, &with_large, "{}").await.status, 431);

        // Headers sent too slowly: the connection is closed after the read timeout.
        let mut slow_head = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        slow_head
            .write_all(b"POST /x/y HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let answer = status_of(&mut slow_head).await;
        assert!(
            matches!(answer, None | Some(408)) && started.elapsed() < Duration::from_secs(5),
            "slow headers: {answer:?} after {:?}",
            started.elapsed()
        );

        // A body sent too slowly: 408 with the reason.
        let mut slow_body = stalled_request(port, &format!("/{ns}/default"), 100).await;
        assert_eq!(status_of(&mut slow_body).await, Some(408));

        // Two stalled requests fill the Broker's two places: the third gets 429 with
        // Retry-After, another Broker is still served, and after the stalled ones
        // time out the Broker takes events again.
        apply(&client, &ns, &broker("other")).await;
        await_ready(&stack.brokers, "other", Duration::from_secs(30)).await;
        let other_url = url.replace("/default", "/other");
        herald_e2e::eventually(
            "the ingress serves the other Broker",
            Duration::from_secs(30),
            || async {
                (post(&other_url, &[("ce-specversion", "1.0")], "")
                    .await
                    .status
                    == 400)
                    .then_some(())
            },
        )
        .await;
        let mut one = event.to_vec();
        one.push(("ce-id", "third"));
        let path = format!("/{ns}/default");
        let (busy, _held) = post_beside_stalled((port, &path, 100), &url, &one, 429).await;
        assert_eq!(busy.json()["error"], "TooManyRequests");
        assert!(busy.headers.contains_key("retry-after"));
        let elsewhere = post(&other_url, &one, "{}").await;
        assert_eq!(elsewhere.status, 202, "{}", elsewhere.body);
        herald_e2e::eventually(
            "places come back after the timeout",
            Duration::from_secs(10),
            || async { (post(&url, &one, "{}").await.status == 202).then_some(()) },
        )
        .await;
    })
    .await;
}
