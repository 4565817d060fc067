//! The Broker's status, built purely from what a reconcile did to its stream and
//! found out about its sender policy.

use async_nats::jetstream::stream::Config;
use herald_api::auth::BrokerAuthStatus;
use herald_api::common::Addressable;
use herald_api::conditions::{self, Condition, ConditionStatus, ConditionType, Reason};
use herald_api::{Broker, BrokerStatus, naming};

use super::stream;
use crate::error::Error;
use crate::reconcile::ObjectKey;

/// Where producers send events for Broker `namespace/name`.
pub(super) fn address_url(ingress_url: &str, namespace: &str, name: &str) -> String {
    format!("{}/{namespace}/{name}", ingress_url.trim_end_matches('/'))
}

/// What `ensure_stream` did.
pub(super) enum StreamChange {
    Created(Config),
    Updated(Config),
    Unchanged(Config),
}

impl StreamChange {
    pub(super) fn config(&self) -> &Config {
        match self {
            Self::Created(c) | Self::Updated(c) | Self::Unchanged(c) => c,
        }
    }

    pub(super) fn event(&self) -> Option<(&'static str, String)> {
        match self {
            Self::Created(c) => Some(("StreamCreated", format!("created {}", stream::describe(c)))),
            Self::Updated(c) => Some(("StreamUpdated", format!("updated {}", stream::describe(c)))),
            Self::Unchanged(_) => None,
        }
    }
}

/// The Broker's status after a reconcile with these outcomes (pure).
pub(super) fn build_status(
    broker: &Broker,
    key: &ObjectKey,
    previous: &BrokerStatus,
    stream: &Result<StreamChange, Error>,
    auth: &Result<BrokerAuthStatus, Error>,
    url: &str,
    now: &str,
) -> BrokerStatus {
    let stream_ready = match stream {
        Ok(change) => Condition::new(
            ConditionType::StreamReady,
            ConditionStatus::True,
            Reason::StreamReady,
            stream::describe(change.config()),
        ),
        Err(e) => Condition::new(
            ConditionType::StreamReady,
            ConditionStatus::False,
            e.reason(),
            e.to_string(),
        ),
    };
    let ready = match (stream, auth) {
        (Err(e), _) | (Ok(_), Err(e)) => Condition::new(
            ConditionType::Ready,
            ConditionStatus::False,
            e.reason(),
            e.to_string(),
        ),
        (Ok(_), Ok(_)) => Condition::new(
            ConditionType::Ready,
            ConditionStatus::True,
            Reason::Ready,
            "accepting events",
        ),
    };
    BrokerStatus {
        observed_generation: broker.metadata.generation,
        conditions: conditions::merge(
            &previous.conditions,
            vec![stream_ready, ready],
            now,
            broker.metadata.generation,
        ),
        address: Some(Addressable {
            url: url.to_owned(),
        }),
        stream_name: Some(naming::stream_name(&key.namespace, &key.name)),
        subjects: naming::stream_subjects(&key.namespace, &key.name),
        auth: match auth {
            Ok(resolved) => Some(resolved.clone()),
            // The operator's own API trouble: the ingress goes on serving the Broker
            // (see `conditions::served`), with the policy it had.
            Err(Error::Kube(_)) => previous.auth.clone(),
            Err(_) => None,
        },
    }
}

pub(super) fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_api::BrokerSpec;
    use herald_api::broker::condition;

    fn broker() -> Broker {
        let mut b = Broker::new("default", BrokerSpec::default());
        b.metadata.namespace = Some("team".into());
        b.metadata.generation = Some(3);
        b
    }

    fn key() -> ObjectKey {
        ObjectKey::of(&broker())
    }

    fn created() -> StreamChange {
        StreamChange::Created(
            stream::desired_config(&broker(), stream::StreamCeilings::default()).unwrap(),
        )
    }

    fn open() -> BrokerAuthStatus {
        BrokerAuthStatus {
            policy: herald_api::auth::OPEN_POLICY.into(),
            ..BrokerAuthStatus::default()
        }
    }

    #[test]
    fn ready_status_has_address_stream_and_policy() {
        let url = address_url("http://ingress/", "team", "default");
        let status = build_status(
            &broker(),
            &key(),
            &BrokerStatus::default(),
            &Ok(created()),
            &Ok(open()),
            &url,
            "t0",
        );
        assert_eq!(status.address.unwrap().url, "http://ingress/team/default");
        assert_eq!(status.stream_name.as_deref(), Some("HERALD_team_default"));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.auth.unwrap().policy, "Open");
        let ready = conditions::find(&status.conditions, condition::READY).unwrap();
        assert!(ready.is_true());
    }

    #[test]
    fn failure_status_names_the_reason() {
        let status = build_status(
            &broker(),
            &key(),
            &BrokerStatus::default(),
            &Err(Error::nats_down("connection refused")),
            &Ok(open()),
            "http://ingress/team/default",
            "t0",
        );
        for c in &status.conditions {
            assert_eq!(c.status, ConditionStatus::False);
            assert_eq!(c.reason, "NatsUnavailable");
            assert!(c.message.contains("connection refused"));
        }
    }

    #[test]
    fn auth_failure_keeps_the_stream_ready_but_not_the_broker() {
        let status = build_status(
            &broker(),
            &key(),
            &BrokerStatus::default(),
            &Ok(created()),
            &Err(Error::BearerTokenUnavailable(
                "Secret team/t does not exist".into(),
            )),
            "http://ingress/team/default",
            "t0",
        );
        let stream_ready = conditions::find(&status.conditions, condition::STREAM_READY).unwrap();
        assert!(stream_ready.is_true());
        let ready = conditions::find(&status.conditions, condition::READY).unwrap();
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason, "BearerTokenUnavailable");
        assert!(
            ready.message.contains("does not exist"),
            "{}",
            ready.message
        );
        assert_eq!(status.auth, None);
    }

    #[test]
    fn the_operator_s_own_api_trouble_keeps_the_policy_and_the_broker_served() {
        let mut previous = build_status(
            &broker(),
            &key(),
            &BrokerStatus::default(),
            &Ok(created()),
            &Ok(open()),
            "http://ingress/team/default",
            "t0",
        );
        previous.auth.as_mut().unwrap().bearer_token_sha256 = Some("abc".into());
        let timeout = kube::core::Status::failure("etcdserver: request timed out", "InternalError")
            .with_code(500);
        let status = build_status(
            &broker(),
            &key(),
            &previous,
            &Ok(created()),
            &Err(Error::Kube(kube::Error::Api(Box::new(timeout)))),
            "http://ingress/team/default",
            "t1",
        );
        assert_eq!(status.auth, previous.auth, "the last policy stays in force");
        let ready = conditions::find(&status.conditions, condition::READY).unwrap();
        assert_eq!(ready.reason, "KubernetesError");
        assert_eq!(conditions::served(&status.conditions), Ok(()));
    }
}
