//! The egress policy, end to end: Triggers and an EventSource that point the shared
//! dispatcher and sources adapter at loopback and the Kubernetes API server are
//! refused at once, without retries, and say so where their owner looks; a healthy
//! Trigger beside them is delivered.
//!
//! The harness allows 127.0.0.1 (every test's subscribers live there), so what stops
//! these deliveries is the policy itself: 127.0.0.2 has a real listener, and the API
//! server is on 127.0.0.1 too, refused by its address and port.

use std::time::Duration;

use herald_api::eventsource::WebhookSource;
use herald_api::{EventSourceSpec, TriggerSpec};
use herald_e2e::http::post;
use herald_e2e::manifests::{
    apply, attributes, event_source, retries_then_dead_letter, secret, secret_key, source_to,
    to_uri, uri_destination,
};
use herald_e2e::process::{Sources, http_get};
use herald_e2e::stack::Stack;
use herald_e2e::subscriber::Subscriber;
use herald_e2e::{eventually, nats_url, ready_trigger, with_temp_ns};
use herald_sources::signature::sign;
use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client};

const WAIT: Duration = Duration::from_secs(30);

/// The API server's URL and port, as the dispatcher's kubeconfig has it.
async fn api_server() -> (String, u16) {
    let config = kube::Config::infer().await.expect("a kubeconfig");
    let url = config.cluster_url.to_string();
    let port = config
        .cluster_url
        .port_u16()
        .expect("the API server's port");
    (url.trim_end_matches('/').to_owned(), port)
}

/// Notes of the namespace's Kubernetes Events with `reason`.
async fn notes(client: &Client, ns: &str, reason: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .map(|list| list.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.message)
        .collect()
}

/// The sum of `herald_dispatcher_events_total` series of Trigger `trigger` with `outcome`.
async fn outcomes(metrics_port: u16, trigger: &str, outcome: &str) -> u64 {
    let body = http_get(metrics_port, "/metrics").await.unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with("herald_dispatcher_events_total{"))
        .filter(|l| l.contains(&format!("trigger=\"{trigger}\"")))
        .filter(|l| l.contains(&format!("outcome=\"{outcome}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Each refused attempt is counted, and none was retried.
async fn assert_refused_attempts_counted(metrics_port: u16) {
    for (trigger, refused) in [
        ("loopback", 1),
        ("by-name", 1),
        ("apiserver", 1),
        ("nowhere", 2),
    ] {
        let counted = outcomes(metrics_port, trigger, "refused").await;
        assert_eq!(counted, refused, "{trigger}");
        let retried = outcomes(metrics_port, trigger, "retried").await;
        assert_eq!(retried, 0, "{trigger}");
    }
    assert_eq!(outcomes(metrics_port, "nowhere", "dropped").await, 1);
    assert_eq!(
        outcomes(metrics_port, "apiserver", "dead_lettered").await,
        1
    );
}

/// The event of Trigger `nowhere`, whose dead-letter sink `sink` is refused too, is
/// reported dropped, with both reasons.
async fn assert_drop_reported(client: &Client, ns: &str, sink: &str) {
    let sink = sink
        .trim_start_matches("http://")
        .trim_end_matches("/events");
    let notes = eventually("the dropped event is reported", WAIT, || async {
        let notes = notes(client, ns, "EventDropped").await;
        (!notes.is_empty()).then_some(notes)
    })
    .await;
    assert!(
        notes.iter().any(|n| {
            n.contains("the egress policy refuses 169.254.169.254:80")
                && n.contains(&format!("dead-letter sink: cannot send to http://{sink}/events: the egress policy refuses {sink}"))
        }),
        "{notes:?}"
    );
}

#[tokio::test]
async fn subscribers_on_loopback_or_the_api_server_are_refused_and_dead_lettered() {
    with_temp_ns("egress", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let (api_url, api_port) = api_server().await;
        // Real listeners, so that only the policy stands between them and the dispatcher.
        let loopback = Subscriber::accepting_at("127.0.0.2").await;
        let loopback_sink = Subscriber::accepting_at("127.0.0.2").await;
        let healthy = Subscriber::accepting().await;
        let dead_letters = Subscriber::accepting().await;
        let by_name = format!("http://localhost:{api_port}/apis");
        let api = format!("{api_url}/api/v1/namespaces/{ns}/secrets");
        let cases = [
            ("loopback", loopback.url.as_str(), "egress.loopback"),
            ("by-name", by_name.as_str(), "egress.name"),
            ("apiserver", api.as_str(), "egress.api"),
        ];
        let delivery = retries_then_dead_letter(3, "PT0.1S", &dead_letters.url);
        for (name, url, type_) in cases {
            let spec = TriggerSpec {
                filter: attributes([("type", type_)]),
                delivery: Some(delivery.clone()),
                ..to_uri(url)
            };
            ready_trigger(&client, &ns, name, spec, WAIT).await;
        }
        let spec = TriggerSpec {
            filter: attributes([("type", "egress.ok")]),
            ..to_uri(&healthy.url)
        };
        ready_trigger(&client, &ns, "healthy", spec, WAIT).await;
        // Cloud metadata, with a refused dead-letter sink: dropped, and reported.
        let spec = TriggerSpec {
            filter: attributes([("type", "egress.nowhere")]),
            delivery: Some(retries_then_dead_letter(3, "PT0.1S", &loopback_sink.url)),
            ..to_uri("http://169.254.169.254/latest/meta-data/")
        };
        ready_trigger(&client, &ns, "nowhere", spec, WAIT).await;

        for (name, _, type_) in cases {
            stack.send(name, type_, "/egress", "{}").await;
        }
        stack.send("ok", "egress.ok", "/egress", "{}").await;
        stack.send("nowhere", "egress.nowhere", "/egress", "{}").await;

        healthy
            .wait_for("the healthy Trigger's event", WAIT, |d| !d.is_empty())
            .await;
        dead_letters
            .wait_for("the three refused events are dead-lettered", WAIT, |d| {
                d.len() >= 3
            })
            .await;
        let dead = dead_letters.deliveries();
        let of = |id: &str| {
            dead.iter()
                .map(|(event, _)| event)
                .find(|event| event.id() == id)
                .unwrap_or_else(|| panic!("no dead letter for {id}: {dead:?}"))
        };
        let api_server = format!("127.0.0.1:{api_port} is the Kubernetes API server");
        let loopback_addr = loopback.url.trim_start_matches("http://");
        let loopback_addr = loopback_addr.split('/').next().unwrap_or_default();
        let expected = [
            (
                "loopback",
                loopback.url.as_str(),
                format!("the egress policy refuses {loopback_addr}: {loopback_addr} is loopback (127.0.0.0/8)"),
            ),
            (
                "by-name",
                by_name.as_str(),
                format!("the egress policy refuses localhost:{api_port}: {api_server}"),
            ),
            (
                "apiserver",
                api.as_str(),
                format!("the egress policy refuses 127.0.0.1:{api_port}: {api_server}"),
            ),
        ];
        for (id, url, reason) in &expected {
            let event = of(id);
            let error = event.get("heralderror").unwrap_or_default();
            assert!(error.contains(reason.as_str()), "{id}: {error:?} lacks {reason:?}");
            assert_eq!(event.get("heraldattempts"), Some("1"), "{id}: not retried");
            assert_eq!(event.get("knativeerrordest"), Some(*url), "{id}");
            assert_eq!(event.get("knativeerrorcode"), Some("0"), "{id}: no answer");
            assert_eq!(event.get("knativeerrordata"), None, "{id}: nothing read");
        }
        assert_eq!(healthy.accepted_ids(), vec!["ok".to_owned()]);

        assert_drop_reported(&client, &ns, &loopback_sink.url).await;
        assert_eq!(loopback.count(), 0, "nothing reached 127.0.0.2");
        assert_eq!(loopback_sink.count(), 0, "nothing reached 127.0.0.2");

        let port = stack.dispatcher.as_ref().expect("dispatcher").metrics_port;
        assert_refused_attempts_counted(port).await;
    })
    .await;
}

#[tokio::test]
async fn an_event_source_with_a_refused_sink_reports_it_and_sends_nothing() {
    with_temp_ns("egress-source", |client, ns| async move {
        let _stack = Stack::without_dispatcher(client.clone(), &ns, &nats_url(), &[]).await;
        let sink = Subscriber::accepting_at("127.0.0.2").await;
        let sources = Sources::start(&ns, &nats_url()).await;
        let key = "a-long-enough-secret-for-the-test";
        apply(&client, &ns, &secret("hook", "key", key)).await;
        let webhook = WebhookSource {
            secret_ref: secret_key("hook", "key"),
            event_type: Some("egress.hook".to_owned()),
            ..WebhookSource::default()
        };
        let spec = EventSourceSpec {
            webhook: Some(webhook),
            ..source_to(uri_destination(&sink.url))
        };
        apply(&client, &ns, &event_source("hook", spec)).await;
        let url = sources.webhook_url(&ns, "hook");
        let body = r#"{"n":1}"#;
        let signature = sign(key.as_bytes(), body.as_bytes());
        // The adapter learns of the source through its own watch: retry until it serves it.
        let (answer, took) = eventually("the adapter serves the source", WAIT, || async {
            let started = std::time::Instant::now();
            let answer = post(&url, &[("x-hub-signature-256", &signature)], body).await;
            (answer.status != 404).then_some((answer, started.elapsed()))
        })
        .await;
        assert_eq!(answer.status, 502, "{}", answer.body);
        assert_eq!(answer.json()["error"], "SinkFailed");
        let message = answer.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            message.contains("the egress policy refuses 127.0.0.2:"),
            "{message}"
        );
        assert!(
            took < Duration::from_secs(10),
            "refused at once, not after the retries ({took:?})"
        );
        let notes = eventually(
            "the failure is reported on the EventSource",
            WAIT,
            || async {
                let notes = notes(&client, &ns, "DeliveryFailed").await;
                (!notes.is_empty()).then_some(notes)
            },
        )
        .await;
        assert!(
            notes.iter().any(|n| n.contains("after 1 attempt(s)")
                && n.contains("the egress policy refuses 127.0.0.2:")),
            "{notes:?}"
        );
        assert_eq!(sink.count(), 0, "nothing reached 127.0.0.2");
    })
    .await;
}
