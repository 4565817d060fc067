use super::*;
use herald_api::conditions::{Condition, ConditionStatus};
use herald_api::trigger::condition;
use herald_api::{TriggerSpec, conditions, delivery};

fn spec(yaml: &str) -> TriggerSpec {
    serde_yaml::from_str(yaml).unwrap()
}

fn observed(s: &TriggerSpec, broker: BrokerState) -> Observed {
    Observed {
        filters: compile_filters(s),
        transform: compile_transform(s),
        broker,
        delivery: delivery::resolve(s.delivery.as_ref(), None).map_err(Error::InvalidDelivery),
        subscriber: Some(Ok("http://sub".into())),
        dead_letter_sink: None,
        consumer: Some(Ok(())),
        deployment: None,
        job: s
            .job
            .as_ref()
            .map(|job| herald_api::job::resolve(job).map_err(Error::InvalidJob)),
    }
}

fn ready(conds: &[Condition]) -> &Condition {
    conditions::find(conds, condition::READY).unwrap()
}

#[test]
fn invalid_cesql_is_reported_with_the_compiler_message() {
    let s =
        spec("broker: default\nfilters:\n  - cesql: \"type = \"\nsubscriber: {uri: http://x}\n");
    let o = observed(&s, BrokerState::Ready);
    let message = o.filters.as_ref().unwrap_err().to_string();
    assert!(message.starts_with("filters[0].cesql"), "{message}");
    let conds = desired_conditions(&s, &o);
    assert_eq!(
        (conds[0].status, conds[0].reason.as_str()),
        (ConditionStatus::False, "InvalidFilter")
    );
    assert_eq!(
        (
            ready(&conds).reason.as_str(),
            ready(&conds).message.as_str()
        ),
        ("InvalidFilter", message.as_str())
    );
}

#[test]
fn a_valid_trigger_is_ready_once_its_broker_and_consumer_are() {
    let s =
        spec("broker: default\nfilter: {attributes: {type: a.b}}\nsubscriber: {uri: http://x}\n");
    let missing = desired_conditions(
        &s,
        &Observed {
            consumer: None,
            ..observed(&s, BrokerState::Missing)
        },
    );
    assert_eq!(ready(&missing).reason, "BrokerNotFound");
    let ok = desired_conditions(&s, &observed(&s, BrokerState::Ready));
    assert!(ok.iter().all(Condition::is_true), "{ok:#?}");
    assert_eq!(compile_filters(&s).unwrap().exact_type(), Some("a.b"));
}

#[test]
fn the_first_problem_explains_ready() {
    let s = spec(
        "broker: default\nsubscriber: {uri: http://x}\ndelivery: {deadLetterSink: {uri: http://d}}\n",
    );
    let base = observed(&s, BrokerState::Ready);
    let unresolved = Observed {
        subscriber: Some(Err(resolve::ResolveError::Missing {
            kind: "Service",
            namespace: "shop".into(),
            name: "billing".into(),
        })),
        ..observed(&s, BrokerState::Ready)
    };
    assert_eq!(
        ready(&desired_conditions(&s, &unresolved)).reason,
        "SubscriberNotResolved"
    );
    let dls = Observed {
        dead_letter_sink: Some(Err(resolve::ResolveError::Nothing)),
        ..base
    };
    assert_eq!(
        ready(&desired_conditions(&s, &dls)).reason,
        "DeadLetterSinkNotResolved"
    );
    let nats = Observed {
        consumer: Some(Err(Error::nats_down("down"))),
        ..observed(&s, BrokerState::Ready)
    };
    assert_eq!(
        ready(&desired_conditions(&s, &nats)).reason,
        "NatsUnavailable"
    );
    let bad_delivery =
        spec("broker: default\nsubscriber: {uri: http://x}\ndelivery: {timeout: soon}\n");
    assert_eq!(
        ready(&desired_conditions(
            &bad_delivery,
            &observed(&bad_delivery, BrokerState::Ready)
        ))
        .reason,
        "InvalidDelivery"
    );
}

#[test]
fn consumer_triggers_report_their_deployment() {
    let s = spec("broker: b\nconsumer:\n  template: {spec: {containers: [{name: a, image: a}]}}\n");
    let mut o = observed(&s, BrokerState::Ready);
    o.subscriber = None;
    let pending = desired_conditions(&s, &o);
    assert_eq!(ready(&pending).reason, "DeploymentPending");
    o.deployment = Some(Err(Error::DeploymentRejected(
        "spec.template.spec.containers[0].image: Required value".into(),
    )));
    let rejected = desired_conditions(&s, &o);
    let deployed = conditions::find(&rejected, condition::CONSUMER_DEPLOYED).unwrap();
    assert_eq!(
        (deployed.reason.as_str(), deployed.is_true()),
        ("DeploymentRejected", false)
    );
    assert!(ready(&rejected).message.contains("image: Required value"));
    o.deployment = Some(Ok(0));
    let ok = desired_conditions(&s, &o);
    assert!(ready(&ok).is_true(), "{ok:?}");
    let plain = spec("broker: b\nsubscriber: {uri: http://x}\n");
    let list = desired_conditions(&plain, &observed(&plain, BrokerState::Ready));
    assert!(conditions::find(&list, condition::CONSUMER_DEPLOYED).is_none());
}

#[test]
fn a_broker_the_operator_cannot_reach_nats_for_leaves_its_triggers_served() {
    let s = spec("broker: default\nsubscriber: {uri: http://x}");
    let nats = desired_conditions(
        &s,
        &observed(
            &s,
            BrokerState::NotReady(herald_api::conditions::REASON_NATS_UNAVAILABLE.into()),
        ),
    );
    assert_eq!(
        ready(&nats).reason,
        herald_api::conditions::REASON_NATS_UNAVAILABLE
    );
    assert!(herald_api::conditions::served(&nats).is_ok());
    let other = desired_conditions(
        &s,
        &observed(&s, BrokerState::NotReady("StreamRejected".into())),
    );
    assert_eq!(ready(&other).reason, "BrokerNotReady");
    assert!(herald_api::conditions::served(&other).is_err());
}

#[test]
fn an_invalid_transform_is_reported_and_keeps_the_trigger_not_ready() {
    let s = spec("broker: default\nsubscriber: {uri: http://x}\ntransform: {jq: \".type = \"}\n");
    let o = observed(&s, BrokerState::Ready);
    let message = o.transform.as_ref().unwrap_err().to_string();
    assert!(message.starts_with("transform.jq: 1:"), "{message}");
    let conds = desired_conditions(&s, &o);
    let valid = conditions::find(&conds, condition::TRANSFORM_VALID).unwrap();
    assert_eq!(
        (valid.status, valid.reason.as_str()),
        (ConditionStatus::False, "InvalidTransform")
    );
    assert_eq!(
        (
            ready(&conds).reason.as_str(),
            ready(&conds).message.as_str()
        ),
        ("InvalidTransform", message.as_str())
    );
    let fine = spec(
        "broker: default\nsubscriber: {uri: http://x}\ntransform: {template: {paths: {id: $.data.id}, data: \"{\\\"id\\\": <id>}\"}}\n",
    );
    let conds = desired_conditions(&fine, &observed(&fine, BrokerState::Ready));
    assert!(conds.iter().all(Condition::is_true), "{conds:#?}");
}

#[test]
fn a_job_trigger_reports_its_job_and_a_bad_template_keeps_it_from_ready() {
    let s = spec(
        "broker: b\njob: {template: {spec: {containers: [{name: c, image: busybox}]}}, maxRunning: 2}",
    );
    let o = Observed {
        subscriber: None,
        ..observed(&s, BrokerState::Ready)
    };
    let conds = desired_conditions(&s, &o);
    assert!(conds.iter().all(Condition::is_true), "{conds:#?}");
    let job = conds.iter().find(|c| c.type_ == "JobValid").unwrap();
    assert!(job.message.contains("at most 2"), "{job:?}");
    let sub = conds
        .iter()
        .find(|c| c.type_ == "SubscriberResolved")
        .unwrap();
    assert_eq!(sub.reason, "JobPerEvent");

    let bad = spec(
        "broker: b\njob: {template: {spec: {restartPolicy: Always, containers: [{name: c, image: i}]}}}",
    );
    let o = Observed {
        subscriber: None,
        consumer: None,
        ..observed(&bad, BrokerState::Ready)
    };
    let conds = desired_conditions(&bad, &o);
    let r = ready(&conds);
    assert_eq!(r.reason, "InvalidJob");
    assert!(r.message.contains("restartPolicy"), "{r:?}");
}
