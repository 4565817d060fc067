//! The event-type catalog, end to end: events of a few types, routed by two
//! dispatchers, become `EventTypes` whose counts add up exactly and whose schema is the
//! one `docs/eventtype-example.yaml` shows; `kubectl get eventtypes` and `herald types`
//! list them; deleting the Broker deletes them. A flood of 1,000 distinct types yields
//! no more `EventTypes` than the bound, and the overflow is reported.

use std::time::Duration;

use herald_api::eventtype::{BROKER_LABEL, EventType, MAX_TYPES_PER_BROKER};
use herald_e2e::kubectl::kubectl;
use herald_e2e::stack::Stack;
use herald_e2e::{eventually, nats_url, with_temp_ns};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};

/// Two write rounds and some slack.
const WAIT: Duration = Duration::from_secs(60);

/// The events the example's comment sends: (source, data).
fn example_events(example_yaml: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = example_yaml.lines().collect();
    lines
        .windows(2)
        .filter_map(|pair| {
            let source = pair[0].split("--source ").nth(1)?.trim_end_matches(" \\");
            let data = pair[1].split("--data '").nth(1)?.strip_suffix('\'')?;
            Some((source.trim().to_owned(), data.to_owned()))
        })
        .collect()
}

async fn event_types(client: &Client, ns: &str) -> Vec<EventType> {
    Api::<EventType>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{BROKER_LABEL}=default")))
        .await
        .expect("list EventTypes")
        .items
}

/// Waits until the `EventType` of `type_` has counted `count` events; returns it.
async fn counted(client: &Client, ns: &str, type_: &str, count: i64) -> EventType {
    let api: Api<EventType> = Api::namespaced(client.clone(), ns);
    let name = herald_api::eventtype::object_name("default", type_);
    eventually(&format!("EventType {name} counts {count}"), WAIT, || {
        let api = api.clone();
        let name = name.clone();
        async move {
            let t = api.get_opt(&name).await.ok()??;
            (t.status.as_ref()?.count >= count).then_some(t)
        }
    })
    .await
}

/// `kubectl get eventtypes` shows the printer columns; `herald types` the table and
/// schema, and exits 1 when nothing matches.
fn kubectl_and_herald_list_them(ns: &str) {
    let out = kubectl(&["get", "eventtypes", "-n", ns], None);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "BROKER", "TYPE", "SOURCE", "COUNT", "LAST", "SEEN", "AGE"
        ],
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.contains("com.example.order.paid")
            && l.contains(" billing ")
            && l.contains(" 150 ")),
        "{table}"
    );

    let text = herald_e2e::process::herald_stdout([
        "types",
        "-n",
        ns,
        "--broker",
        "default",
        "--type",
        "com.example.order.created",
        "--schema",
    ]);
    assert!(
        text.contains("com.example.order.created") && text.contains("\"customer\""),
        "{text}"
    );
    let none = herald_e2e::process::herald_command()
        .args(["types", "-n", ns, "--broker", "absent"])
        .output()
        .expect("herald types");
    assert_eq!(none.status.code(), Some(1), "no types: exit 1");
}

#[tokio::test]
async fn routed_events_become_eventtypes_with_counts_sources_and_the_example_schema() {
    with_temp_ns("eventtypes", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        // A second router: the two share the Broker's events, and their counts must add up.
        let _second = stack.extra_dispatcher().await;
        let example_yaml =
            // Kept in docs/, not examples/: examples are applied, and Herald writes EventTypes.
            std::fs::read_to_string(format!("{}/../docs/eventtype-example.yaml", env!("CARGO_MANIFEST_DIR")))
                .expect("docs/eventtype-example.yaml");
        let expected: EventType = serde_yaml::from_str(&example_yaml).expect("the example parses");
        let sent = example_events(&example_yaml);
        assert_eq!(sent.len(), 2, "the example sends two events");
        for (n, (source, data)) in sent.iter().enumerate() {
            stack
                .send(
                    &format!("ex-{n}"),
                    "com.example.order.created",
                    source,
                    data,
                )
                .await;
        }
        for n in 0..150 {
            stack
                .send(
                    &format!("paid-{n}"),
                    "com.example.order.paid",
                    "billing",
                    r#"{"order": "A-1"}"#,
                )
                .await;
        }
        stack
            .send(
                "odd",
                "Com.Example.Odd Type!",
                "/legacy",
                "plain text, not JSON",
            )
            .await;

        let created = counted(&client, &ns, "com.example.order.created", 2).await;
        assert_eq!(created.spec, expected.spec, "spec as the example shows");
        let (status, want) = (
            created.status.clone().expect("status"),
            expected.status.clone().expect("example status"),
        );
        assert_eq!(status.count, 2);
        assert_eq!(status.schema, want.schema, "schema as the example shows");
        assert_eq!(status.source, want.source);
        assert_eq!(status.data_content_types, want.data_content_types);
        assert!(status.first_seen.is_some() && status.first_seen <= status.last_seen);
        let owner = &created.metadata.owner_references.as_ref().expect("owned")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("Broker", "default")
        );

        let paid = counted(&client, &ns, "com.example.order.paid", 150).await;
        // Two more rounds: nothing is counted twice by the replicas.
        tokio::time::sleep(Duration::from_secs(21)).await;
        let paid_later = counted(&client, &ns, "com.example.order.paid", 150).await;
        assert_eq!(
            paid_later.status.as_ref().map(|s| s.count),
            Some(150),
            "{paid:#?}"
        );
        let odd = counted(&client, &ns, "Com.Example.Odd Type!", 1).await;
        assert!(
            odd.metadata
                .name
                .as_deref()
                .unwrap()
                .starts_with("default.com.example.odd-type-")
        );
        assert_eq!(
            odd.status.as_ref().and_then(|s| s.schema.clone()),
            None,
            "no JSON: no schema"
        );

        kubectl_and_herald_list_them(&ns);

        stack
            .brokers
            .delete("default", &DeleteParams::default())
            .await
            .expect("delete the Broker");
        eventually("the Broker's EventTypes go with it", WAIT, || {
            let client = client.clone();
            let ns = ns.clone();
            async move { event_types(&client, &ns).await.is_empty().then_some(()) }
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_flood_of_distinct_types_stays_within_the_bound_and_is_reported() {
    with_temp_ns("eventtypes-flood", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        stack.send("k-0", "known", "shop", r#"{"n": 0}"#).await;
        counted(&client, &ns, "known", 1).await;
        for chunk in 0..10 {
            let batch: Vec<_> = (0..100)
                .map(|n| {
                    let n = chunk * 100 + n;
                    serde_json::json!({"specversion": "1.0", "id": format!("f-{n}"), "type": format!("flood.{n}"),
                        "source": "attacker", "datacontenttype": "application/json", "data": {"n": n}})
                })
                .collect();
            stack.send_batch(&batch).await;
        }
        stack.send("k-1", "known", "shop", r#"{"n": 1}"#).await;
        let dispatcher = stack.dispatcher.as_ref().expect("dispatcher");
        eventually("the overflow is counted", WAIT, || async {
            let overflow = dispatcher.metric("herald_dispatcher_eventtypes_overflow_total").await;
            (overflow >= 900.0).then_some(())
        })
        .await;
        // The type known before the flood is still counted.
        counted(&client, &ns, "known", 2).await;
        let events: Api<Event> = Api::namespaced(client.clone(), &ns);
        let reported = eventually("a Warning Event on the Broker", WAIT, || {
            let events = events.clone();
            async move {
                events
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .find(|e| e.reason.as_deref() == Some("EventTypesOverflow"))
            }
        })
        .await;
        assert_eq!(reported.regarding.and_then(|r| r.name).as_deref(), Some("default"));
        assert!(reported.note.unwrap_or_default().contains("event(s) of types beyond"));
        // Another round passes: still no more EventTypes than the bound.
        tokio::time::sleep(Duration::from_secs(12)).await;
        let catalogued = event_types(&client, &ns).await.len();
        assert_eq!(catalogued, MAX_TYPES_PER_BROKER, "EventTypes: the bound, no more");
    })
    .await;
}
