//! The ingress: CloudEvents over HTTP into a Broker's stream, and every way a request
//! can be refused. Real apiserver, nats-server, operator and ingress.

use std::time::Duration;

use async_nats::jetstream;
use herald_api::broker::condition;
use herald_api::{Broker, naming};
use herald_cloudevents::CloudEvent;
use herald_e2e::http::post;
use herald_e2e::kubectl::{apply, example};
use herald_e2e::process::{NatsServer, herald_command, herald_stdout};
use herald_e2e::stack::Stack;
use herald_e2e::{await_condition, eventually, has_condition, nats_url, with_temp_ns};
use kube::Api;
use kube::api::DeleteParams;

const WAIT: Duration = Duration::from_secs(30);

/// Every event stored in a stream, decoded, with its subject.
async fn stored_events(nats: &str, stream: &str) -> Vec<(String, CloudEvent)> {
    let js = jetstream::new(async_nats::connect(nats).await.unwrap());
    let stream = js.get_stream(stream).await.expect("stream exists");
    let last = stream.get_info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(msg) = stream.get_raw_message(seq).await {
            let event = herald_cloudevents::nats::decode(Some(&msg.headers), msg.payload.clone())
                .expect("a CloudEvent");
            out.push((msg.subject.to_string(), event));
        }
    }
    out
}

#[tokio::test]
async fn events_in_every_mode_land_in_the_stream_with_their_attributes() {
    with_temp_ns("modes", |client, ns| async move {
        let herald = Stack::without_dispatcher(client, &ns, &nats_url(), &[]).await;
        let url = herald.broker_url();

        let binary = post(
            &url,
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "b-1"),
                ("ce-source", "/shop"),
                ("ce-type", "com.example.order.created"),
                ("ce-subject", "Gr%C3%B6%C3%9Fe 42"),
                ("ce-time", "2026-11-23T07:00:00Z"),
                ("ce-dataschema", "https://example.com/order.json"),
                ("ce-tenant", "acme"),
                ("ce-quoted", r#""say \"hi\"""#),
                ("content-type", "application/json; charset=utf-8"),
            ],
            r#"{"order":42}"#,
        )
        .await;
        assert_eq!(binary.status, 202, "{}", binary.body);

        let structured = post(
            &url,
            &[("content-type", "application/cloudevents+json")],
            r#"{"specversion":"1.0","id":"s-1","source":"/shop","type":"com.example.order.paid","priority":3,"data_base64":"AAEC"}"#,
        )
        .await;
        assert_eq!(structured.status, 202, "{}", structured.body);

        let batch = post(
            &url,
            &[("content-type", "application/cloudevents-batch+json")],
            r#"[{"specversion":"1.0","id":"k-1","source":"/b","type":"batch.item","data":{"i":1}},
                {"specversion":"1.0","id":"k-2","source":"/b","type":"batch.item","datacontenttype":"text/plain","data":"two"}]"#,
        )
        .await;
        assert_eq!(batch.status, 202, "{}", batch.body);

        let stored = stored_events(&nats_url(), &naming::stream_name(&ns, "default")).await;
        assert_eq!(stored.len(), 4, "{stored:#?}");
        let find = |id: &str| stored.iter().find(|(_, e)| e.id() == id).unwrap_or_else(|| panic!("event {id} not stored"));

        let (subject, e) = find("b-1");
        assert_eq!(subject, &naming::event_subject(&ns, "default", "com.example.order.created"));
        assert_eq!(e.get("subject"), Some("Größe 42"));
        assert_eq!(e.get("time"), Some("2026-11-23T07:00:00Z"));
        assert_eq!(e.get("dataschema"), Some("https://example.com/order.json"));
        assert_eq!(e.get("tenant"), Some("acme"));
        assert_eq!(e.get("quoted"), Some(r#"say "hi""#));
        assert_eq!(e.get("datacontenttype"), Some("application/json; charset=utf-8"));
        assert_eq!(e.data.as_deref(), Some(&br#"{"order":42}"#[..]));

        let (_, e) = find("s-1");
        assert_eq!(e.get("priority"), Some("3"));
        assert_eq!(e.data.as_deref(), Some(&[0u8, 1, 2][..]));

        let (_, e) = find("k-2");
        assert_eq!(e.data.as_deref(), Some(&b"two"[..]));
        assert_eq!(e.get("datacontenttype"), Some("text/plain"));
        let (_, e) = find("k-1");
        assert_eq!(e.data.as_deref(), Some(&br#"{"i":1}"#[..]));
    })
    .await;
}

#[tokio::test]
async fn every_refusal_has_its_status_and_a_useful_body() {
    with_temp_ns("refusals", |client, ns| async move {
        let herald = Stack::without_dispatcher(client.clone(), &ns, &nats_url(), &["--max-body-bytes", "2000"]).await;
        let url = herald.broker_url();
        let ce = |id: &'static str| -> Vec<(&'static str, &'static str)> {
            vec![("ce-specversion", "1.0"), ("ce-id", id), ("ce-source", "/t"), ("ce-type", "t")]
        };

        let missing_id = post(&url, &[("ce-specversion", "1.0"), ("ce-source", "/t"), ("ce-type", "t")], "").await;
        assert_eq!(missing_id.status, 400);
        assert_eq!(missing_id.json()["error"], "InvalidEvent");
        assert!(missing_id.json()["message"].as_str().unwrap().contains("\"id\""), "{}", missing_id.body);

        let old = post(&url, &[("ce-specversion", "0.3"), ("ce-id", "1"), ("ce-source", "/t"), ("ce-type", "t")], "").await;
        assert_eq!(old.status, 400);
        assert!(old.body.contains("specversion"), "{}", old.body);

        let not_json = post(&url, &[("content-type", "application/cloudevents+json")], "{nope").await;
        assert_eq!(not_json.status, 400, "{}", not_json.body);

        let bad_batch = post(
            &url,
            &[("content-type", "application/cloudevents-batch+json")],
            r#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","id":"2","source":"/s"}]"#,
        )
        .await;
        assert_eq!(bad_batch.status, 400);
        assert_eq!(bad_batch.json()["index"], 1);

        let unknown = post(&format!("{}/{ns}/nope", herald.ingress.url()), &ce("1"), "").await;
        assert_eq!(unknown.status, 404);
        assert_eq!(unknown.json()["error"], "UnknownBroker");
        assert_eq!(post(&format!("{}/just-one-segment", herald.ingress.url()), &ce("1"), "").await.status, 404);

        let get = herald_e2e::http::request("GET", &url, &[], "").await;
        assert_eq!(get.status, 405);
        assert_eq!(get.headers.get("allow").unwrap(), "POST, OPTIONS");

        let origin = [("WebHook-Request-Origin", "sender.example.com")];
        let options = herald_e2e::http::request("OPTIONS", &format!("{url}/"), &origin, "").await;
        assert_eq!(options.status, 200);
        assert_eq!(options.headers.get("webhook-allowed-origin").unwrap(), "sender.example.com");

        let avro = post(&url, &[("content-type", "application/cloudevents+avro")], "x").await;
        assert_eq!(avro.status, 415);
        assert_eq!(avro.json()["error"], "UnsupportedMediaType");

        // Accepted, but nothing to store (checked below with the refusals).
        let empty = post(&format!("{url}/"), &[("content-type", "application/cloudevents-batch+json")], "[]").await;
        assert_eq!(empty.status, 202, "{}", empty.body);

        let big = post(&url, &ce("big"), vec![b'x'; 5000]).await;
        assert_eq!(big.status, 413);
        assert_eq!(big.json()["error"], "PayloadTooLarge");

        // A Broker that is not Ready (JetStream cannot place 3 replicas on one server): 503 + Retry-After.
        apply(&ns, &std::fs::read_to_string(example("broker.yaml")).unwrap().replace("name: default", "name: unplaceable").replace("replicas: 1", "replicas: 3"));
        let brokers: Api<Broker> = Api::namespaced(client, &ns);
        await_condition(&brokers, "unplaceable", WAIT, has_condition(condition::READY, herald_api::ConditionStatus::False, None)).await;
        let not_ready = eventually("ingress sees the Broker as not Ready", WAIT, || async {
            let a = post(&format!("{}/{ns}/unplaceable", herald.ingress.url()), &ce("1"), "").await;
            (a.status == 503).then_some(a)
        })
        .await;
        assert_eq!(not_ready.json()["error"], "BrokerNotReady");
        assert!(not_ready.headers.contains_key("retry-after"));

        // Nothing refused was stored, nor anything of the empty batch.
        assert!(stored_events(&nats_url(), &naming::stream_name(&ns, "default")).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_resent_event_is_stored_once_and_a_deleted_broker_answers_404() {
    with_temp_ns("dedup", |client, ns| async move {
        let herald = Stack::without_dispatcher(client, &ns, &nats_url(), &[]).await;
        let url = herald.broker_url();
        let headers = [
            ("ce-specversion", "1.0"),
            ("ce-id", "same"),
            ("ce-source", "/retry"),
            ("ce-type", "t"),
        ];
        for _ in 0..3 {
            assert_eq!(post(&url, &headers, "x").await.status, 202);
        }
        let other = [
            ("ce-specversion", "1.0"),
            ("ce-id", "same"),
            ("ce-source", "/other"),
            ("ce-type", "t"),
        ];
        assert_eq!(post(&url, &other, "y").await.status, 202);
        let stored = stored_events(&nats_url(), &naming::stream_name(&ns, "default")).await;
        assert_eq!(
            stored.len(),
            2,
            "same (source, id) is stored once; another source is another event"
        );

        herald
            .brokers
            .delete("default", &DeleteParams::default())
            .await
            .unwrap();
        eventually("the deleted Broker's URL answers 404", WAIT, || async {
            (post(&url, &headers, "x").await.status == 404).then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn without_nats_the_ingress_answers_503_and_recovers() {
    with_temp_ns("ingress-outage", |client, ns| async move {
        let mut nats = NatsServer::start("ingress-outage").await;
        let herald = Stack::without_dispatcher(client, &ns, &nats.url(), &[]).await;
        let url = herald.broker_url();
        let event = |id: &'static str| {
            [
                ("ce-specversion", "1.0"),
                ("ce-id", id),
                ("ce-source", "/o"),
                ("ce-type", "t"),
            ]
        };
        assert_eq!(post(&url, &event("before"), "").await.status, 202);

        nats.stop().await;
        let refused = eventually("503 while NATS is down", WAIT, || async {
            let a = post(&url, &event("during"), "").await;
            (a.status == 503).then_some(a)
        })
        .await;
        assert!(
            refused.headers.contains_key("retry-after"),
            "{:?}",
            refused.headers
        );

        nats.restart().await;
        eventually("202 again after NATS is back", WAIT, || async {
            (post(&url, &event("after"), "").await.status == 202).then_some(())
        })
        .await;
        let ids: Vec<String> = stored_events(&nats.url(), &naming::stream_name(&ns, "default"))
            .await
            .into_iter()
            .map(|(_, e)| e.id().to_owned())
            .collect();
        assert!(
            ids.contains(&"before".to_owned()) && ids.contains(&"after".to_owned()),
            "{ids:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn herald_send_reaches_a_broker_by_name() {
    with_temp_ns("send", |client, ns| async move {
        let _herald = Stack::without_dispatcher(client, &ns, &nats_url(), &[]).await;
        let printed = herald_stdout([
            "send",
            "--to",
            &format!("{ns}/default"),
            "--type",
            "com.example.cli",
            "--id",
            "cli-1",
            "--data",
            r#"{"hello":"world"}"#,
        ]);
        assert!(printed.starts_with("202"), "{printed}");
        let stored = stored_events(&nats_url(), &naming::stream_name(&ns, "default")).await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].1.get("source"), Some("herald-cli"));
        assert_eq!(
            stored[0].1.data.as_deref(),
            Some(&br#"{"hello":"world"}"#[..])
        );

        let missing = herald_command()
            .args(["send", "--to", &format!("{ns}/nope"), "--type", "t"])
            .output()
            .unwrap();
        assert_eq!(missing.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));
    })
    .await;
}
