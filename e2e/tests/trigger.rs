//! Trigger status: filters compile (or the compiler's message is shown), the Broker
//! is checked, and a Trigger on a missing Broker heals when the Broker appears.

use std::time::Duration;

use herald_api::conditions::ConditionStatus::True;
use herald_api::trigger::condition;
use herald_api::{Trigger, TriggerSpec};
use herald_e2e::kubectl::{apply, example};
use herald_e2e::manifests::{self, cesql, to_uri};
use herald_e2e::process::Operator;
use herald_e2e::{await_not_ready, await_ready, field, has_condition, nats_url, with_temp_ns};
use kube::Api;
use kube::runtime::wait::Condition as _;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn triggers_report_filter_and_broker_problems_and_heal() {
    with_temp_ns("trigger", |client, ns| async move {
        let _operator = Operator::start(&ns, &nats_url(), "solo").await;
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);

        // The example Trigger, before its Broker exists.
        apply(
            &ns,
            &std::fs::read_to_string(example("trigger.yaml")).unwrap(),
        );
        await_not_ready(&triggers, "orders-to-billing", "BrokerNotFound", WAIT).await;

        // Its Broker appears: the Trigger heals and becomes Ready, with its consumer.
        apply(
            &ns,
            &std::fs::read_to_string(example("broker.yaml")).unwrap(),
        );
        let trigger = await_ready(&triggers, "orders-to-billing", WAIT).await;
        for c in [
            condition::FILTER_VALID,
            condition::BROKER_READY,
            condition::SUBSCRIBER_RESOLVED,
            condition::DEAD_LETTER_SINK_RESOLVED,
        ] {
            assert!(
                has_condition(c, True, None).matches_object(Some(&trigger)),
                "{c}"
            );
        }
        assert_eq!(
            field(&trigger, "/status/consumerName"),
            "trigger_orders-to-billing"
        );
        assert_eq!(
            field(&trigger, "/status/subscriberUri"),
            "http://billing.default.svc.cluster.local/events"
        );

        // An invalid CESQL expression is reported with the compiler's message.
        let broken = TriggerSpec {
            filters: vec![cesql("type = ")],
            ..to_uri("http://x")
        };
        manifests::apply(&client, &ns, &manifests::trigger("broken", broken)).await;
        let broken = await_not_ready(&triggers, "broken", "InvalidFilter", WAIT).await;
        let message = field(&broken, "/status/conditions/0/message");
        assert!(
            message
                .as_str()
                .unwrap_or_default()
                .starts_with("filters[0].cesql"),
            "{message}"
        );
    })
    .await;
}
