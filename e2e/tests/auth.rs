//! Broker `spec.auth`: ServiceAccount tokens (`TokenReview` with the Broker's URL as
//! audience, allowed senders) and a static bearer token from a Secret. Real apiserver
//! (it signs and reviews the tokens), nats-server, operator and ingress.

use std::time::Duration;

use futures::StreamExt;

use herald_api::auth::BrokerAuth;
use herald_api::broker::condition;
use herald_api::conditions::ConditionStatus;
use herald_api::{Broker, BrokerSpec, Destination, TriggerSpec};
use herald_e2e::http::{Answer, post};
use herald_e2e::kubectl::{self, example, kubectl};
use herald_e2e::manifests::{
    apply, attributes, broker_with, secret, secret_key, service_account, service_account_auth, to,
    to_uri, trigger, uri_destination,
};
use herald_e2e::stack::Stack;
use herald_e2e::{
    await_condition, await_not_ready, await_ready, eventually, has_condition, nats_url,
    with_temp_ns,
};
use kube::Client;

const WAIT: Duration = Duration::from_secs(30);
/// A static token long enough for the operator (64 hex characters).
const STATIC_TOKEN: &str = "5f0c2a9e7d3b41e8a6c2f9d0b7e4a1c35f0c2a9e7d3b41e8a6c2f9d0b7e4a1c3";

/// `kubectl create token`, as a user would get one.
fn token(ns: &str, service_account: &str, audience: &str) -> String {
    let out = kubectl(
        &[
            "create",
            "token",
            service_account,
            "-n",
            ns,
            "--audience",
            audience,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "kubectl create token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Two service accounts, a token Secret and Broker `secure` that lets in
/// `<ns>/producer` and the static token (and publishes replies with `accept_replies`).
async fn apply_secure_broker(client: &Client, ns: &str, accept_replies: bool) {
    for account in ["producer", "stranger"] {
        apply(client, ns, &service_account(account)).await;
    }
    apply(client, ns, &secret("broker-token", "token", STATIC_TOKEN)).await;
    let auth = BrokerAuth {
        bearer_token_secret_ref: Some(secret_key("broker-token", "token")),
        accept_replies,
        ..service_account_auth(&[(ns, "producer")])
    };
    let spec = BrokerSpec {
        auth: Some(auth),
        ..BrokerSpec::default()
    };
    apply(client, ns, &broker_with("secure", spec)).await;
}

/// Applies [`apply_secure_broker`] and returns its address once the ingress enforces
/// its policy (an unauthenticated probe gets 401).
async fn guarded_broker_url(herald: &Stack, ns: &str) -> String {
    apply_secure_broker(&herald.brokers.clone().into_client(), ns, false).await;
    let secure = await_ready(&herald.brokers, "secure", WAIT).await;
    let url = secure.status.unwrap().address.unwrap().url;
    eventually("the ingress enforces the policy", WAIT, || async {
        (send(&url, "probe", None).await.status == 401).then_some(())
    })
    .await;
    url
}

async fn send(url: &str, id: &str, bearer: Option<&str>) -> Answer {
    let authorization = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-type", "auth.test"),
        ("ce-source", "/e2e"),
        ("content-type", "application/json"),
    ];
    if let Some(value) = &authorization {
        headers.push(("authorization", value));
    }
    post(url, &headers, "{}").await
}

/// `herald send` to `url`, with `--token` when given.
fn cli_send(url: &str, token: Option<&str>) -> std::process::Output {
    let mut command = herald_e2e::process::herald_command();
    command.args(["send", "--url", url, "--type", "auth.cli", "--data", "{}"]);
    if let Some(t) = token {
        command.args(["--token", t]);
    }
    command.output().expect("herald send runs")
}

fn assert_refused(answer: &Answer, status: u16, reason: &str, mentions: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.json()["error"], reason, "{}", answer.body);
    let message = answer.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains(mentions),
        "{message:?} should mention {mentions:?}"
    );
}

#[tokio::test]
async fn only_allowed_senders_get_in() {
    with_temp_ns("auth", |client, ns| async move {
        let herald = Stack::without_dispatcher(client.clone(), &ns, &nats_url(), &[]).await;
        apply_secure_broker(&client, &ns, false).await;
        let brokers = herald.brokers.clone();
        let secure = await_ready(&brokers, "secure", WAIT).await;
        let url = secure
            .status
            .as_ref()
            .unwrap()
            .address
            .as_ref()
            .unwrap()
            .url
            .clone();
        let auth = secure
            .status
            .as_ref()
            .unwrap()
            .auth
            .clone()
            .expect("status.auth");
        assert_eq!(
            auth.policy,
            format!(
                "ServiceAccountToken({ns}/producer) or BearerToken(secret broker-token, key token)"
            )
        );
        assert_eq!(auth.audience.as_deref(), Some(url.as_str()));
        assert_eq!(
            auth.bearer_token_sha256.as_deref(),
            Some(herald_api::auth::token_sha256(STATIC_TOKEN).as_str())
        );
        let open = herald.brokers.get_status("default").await.unwrap();
        assert_eq!(open.status.unwrap().auth.unwrap().policy, "Open");

        // The ingress sees spec.auth through its own watch; wait until it asks for a token.
        eventually("the ingress enforces the policy", WAIT, || async {
            (send(&url, "probe", None).await.status == 401).then_some(())
        })
        .await;

        let answer = send(&url, "none", None).await;
        assert_refused(&answer, 401, "Unauthenticated", "Authorization: Bearer");
        assert!(answer.headers.contains_key("www-authenticate"));
        assert_refused(
            &send(&url, "garbage", Some("not-a-token")).await,
            401,
            "Unauthenticated",
            "not accepted",
        );
        let elsewhere = token(&ns, "producer", "https://elsewhere.example");
        assert_refused(
            &send(&url, "audience", Some(&elsewhere)).await,
            401,
            "Unauthenticated",
            "not valid for",
        );
        let stranger = token(&ns, "stranger", &url);
        assert_refused(
            &send(&url, "stranger", Some(&stranger)).await,
            403,
            "Forbidden",
            &format!("{ns}/stranger"),
        );
        let producer = token(&ns, "producer", &url);
        for id in ["sa-1", "sa-2"] {
            // The second one is answered from the review cache.
            let answer = send(&url, id, Some(&producer)).await;
            assert_eq!(answer.status, 202, "{}", answer.body);
        }
        let answer = send(&url, "static", Some(STATIC_TOKEN)).await;
        assert_eq!(answer.status, 202, "{}", answer.body);
        assert_refused(
            &send(&url, "wrong-static", Some(&STATIC_TOKEN.replace('5', "6"))).await,
            401,
            "Unauthenticated",
            "not accepted",
        );
        // The CLI carries a token too: exit 0 with it, 1 (refused) without.
        let with = cli_send(&url, Some(&producer));
        assert_eq!(
            with.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&with.stdout)
        );
        let without = cli_send(&url, None);
        assert_eq!(without.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&without.stdout).contains("401"));

        // A Broker without spec.auth stays open.
        let answer = send(&herald.broker_url(), "open", None).await;
        assert_eq!(answer.status, 202, "{}", answer.body);
    })
    .await;
}

#[tokio::test]
async fn the_example_lets_every_service_account_of_its_namespace_in() {
    with_temp_ns("auth-example", |client, ns| async move {
        let herald = Stack::without_dispatcher(client.clone(), &ns, &nats_url(), &[]).await;
        let token_value = STATIC_TOKEN.repeat(2);
        let out = kubectl(
            &[
                "create",
                "secret",
                "generic",
                "secure-broker-token",
                "-n",
                &ns,
                &format!("--from-literal=token={token_value}"),
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        kubectl::apply(
            &ns,
            &std::fs::read_to_string(example("secure-broker.yaml")).expect("example"),
        );
        apply(&client, &ns, &service_account("anyone")).await;
        let secure = await_ready(&herald.brokers, "secure", WAIT).await;
        let status = secure.status.unwrap();
        assert_eq!(
            status.auth.unwrap().policy,
            format!(
                "ServiceAccountToken({ns}/*) or BearerToken(secret secure-broker-token, key token)"
            )
        );
        let url = status.address.unwrap().url;
        let anyone = token(&ns, "anyone", &url);
        eventually("the ingress lets the namespace in", WAIT, || async {
            (send(&url, "anyone", Some(&anyone)).await.status == 202).then_some(())
        })
        .await;
        let answer = send(&url, "static", Some(&token_value)).await;
        assert_eq!(answer.status, 202, "{}", answer.body);
        assert_eq!(send(&url, "none", None).await.status, 401);
    })
    .await;
}

#[tokio::test]
async fn a_bad_token_secret_keeps_the_broker_from_ready_until_fixed() {
    with_temp_ns("auth-secret", |client, ns| async move {
        let herald = Stack::without_dispatcher(client.clone(), &ns, &nats_url(), &[]).await;
        let guarded = BrokerAuth {
            bearer_token_secret_ref: Some(secret_key("guard-token", "token")),
            ..BrokerAuth::default()
        };
        let spec = BrokerSpec {
            auth: Some(guarded),
            ..BrokerSpec::default()
        };
        apply(&client, &ns, &broker_with("guarded", spec)).await;
        let brokers = herald.brokers.clone();
        let missing = await_not_ready(&brokers, "guarded", "BearerTokenUnavailable", WAIT).await;
        let message = ready_message(&missing);
        assert!(message.contains("does not exist"), "{message}");

        apply(&client, &ns, &secret("guard-token", "token", "short")).await;
        let short = await_not_ready(&brokers, "guarded", "BearerTokenTooShort", WAIT).await;
        assert!(
            ready_message(&short).contains("at least 32"),
            "{}",
            ready_message(&short)
        );

        apply(&client, &ns, &secret("guard-token", "token", STATIC_TOKEN)).await;
        let ready = await_ready(&brokers, "guarded", Duration::from_secs(60)).await;
        let url = ready.status.unwrap().address.unwrap().url;
        eventually("the token is accepted", WAIT, || async {
            (send(&url, "fixed", Some(STATIC_TOKEN)).await.status == 202).then_some(())
        })
        .await;

        // A Broker whose spec.auth names no method is a spec error.
        let no_method = BrokerSpec {
            auth: Some(BrokerAuth::default()),
            ..BrokerSpec::default()
        };
        apply(&client, &ns, &broker_with("empty", no_method)).await;
        await_not_ready(&brokers, "empty", "InvalidSpec", WAIT).await;
    })
    .await;
}

fn ready_message(broker: &Broker) -> String {
    herald_api::conditions::find(
        &broker.status.as_ref().unwrap().conditions,
        condition::READY,
    )
    .map(|c| c.message.clone())
    .unwrap_or_default()
}

#[tokio::test]
async fn deliveries_carry_a_token_the_subscriber_can_review() {
    with_temp_ns("auth-subscriber", |client, ns| async move {
        let mut herald = Stack::without_dispatcher(client.clone(), &ns, &nats_url(), &[]).await;
        apply(&client, &ns, &service_account("herald-dispatcher")).await;
        let account = format!("{ns}/herald-dispatcher");
        herald.dispatcher = Some(
            herald_e2e::process::Dispatcher::start_with(
                &ns,
                &nats_url(),
                &["--token-service-account", &account],
            )
            .await,
        );
        let (with_audience, without) = (
            herald_e2e::subscriber::Subscriber::accepting().await,
            herald_e2e::subscriber::Subscriber::accepting().await,
        );
        // A subscriber's audience is its own URL (the host tokens are sent to).
        let audience = with_audience.url.trim_end_matches('/').to_owned();
        let audience = audience.as_str();
        let signed = to(Destination {
            audience: Some(audience.to_owned()),
            ..uri_destination(&with_audience.url)
        });
        apply(&client, &ns, &trigger("signed", signed)).await;
        apply(&client, &ns, &trigger("plain", to_uri(&without.url))).await;
        let triggers: kube::Api<herald_api::Trigger> = kube::Api::namespaced(client.clone(), &ns);
        for name in ["signed", "plain"] {
            await_ready(&triggers, name, WAIT).await;
        }
        for id in ["t-1", "t-2"] {
            herald.send(id, "auth.delivery", "/e2e", "{}").await;
        }
        with_audience
            .wait_for("both events", WAIT, |d| d.len() >= 2)
            .await;
        without
            .wait_for("both events", WAIT, |d| d.len() >= 2)
            .await;
        assert!(without.authorizations().is_empty(), "no audience, no token");
        let seen = with_audience.authorizations();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0], seen[1], "the token is minted once and reused");

        // What a subscriber does: review the token with its own audience.
        let token = seen[0]
            .strip_prefix("Bearer ")
            .expect("a bearer token")
            .to_owned();
        let review = |audience: &str| k8s_openapi::api::authentication::v1::TokenReview {
            spec: k8s_openapi::api::authentication::v1::TokenReviewSpec {
                token: token.clone(),
                audiences: Some(vec![audience.to_owned()]),
            },
            ..Default::default()
        };
        let reviews: kube::Api<k8s_openapi::api::authentication::v1::TokenReview> =
            kube::Api::all(client.clone());
        let ok = reviews
            .create(&kube::api::PostParams::default(), &review(audience))
            .await
            .unwrap()
            .status
            .unwrap();
        assert_eq!(ok.authenticated, Some(true), "{:?}", ok.error);
        assert_eq!(
            ok.user.and_then(|u| u.username).as_deref(),
            Some(format!("system:serviceaccount:{ns}:herald-dispatcher").as_str())
        );
        let elsewhere = reviews
            .create(
                &kube::api::PostParams::default(),
                &review("https://other.example"),
            )
            .await
            .unwrap()
            .status
            .unwrap();
        assert_ne!(
            elsewhere.authenticated,
            Some(true),
            "a token for one audience only"
        );
    })
    .await;
}

#[tokio::test]
async fn a_flood_of_forged_tokens_is_capped_and_the_real_sender_keeps_getting_in() {
    with_temp_ns("auth-flood", |client, ns| async move {
        let herald = Stack::without_dispatcher(client.clone(), &ns, &nats_url(), &[]).await;
        let url = guarded_broker_url(&herald, &ns).await;
        let real = token(&ns, "producer", &url);
        assert_eq!(send(&url, "real-0", Some(&real)).await.status, 202);

        // Forged: the real token's header and claims (right audience, not expired)
        // with a signature of its own, so only the apiserver can tell; each one new.
        let (signed, _) = real.rsplit_once('.').expect("a JWT");
        // 1,200: more than the budget allows unless the flood takes over 20 s.
        let forged: Vec<String> = (0..1200).map(|n| format!("{signed}.forged{n:x}")).collect();
        let started = std::time::Instant::now();
        let answers: Vec<u16> = futures::stream::iter(forged.clone().into_iter().enumerate())
            .map(|(n, forged_token)| {
                let url = url.clone();
                async move {
                    send(&url, &format!("forged-{n}"), Some(&forged_token))
                        .await
                        .status
                }
            })
            .buffer_unordered(50)
            .collect()
            .await;
        let elapsed = started.elapsed();
        let refused = answers.iter().filter(|s| **s == 401).count();
        let held_back = answers.iter().filter(|s| **s == 503).count();
        assert_eq!(
            refused + held_back,
            forged.len(),
            "only 401 or 503: {answers:?}"
        );
        // Reviews asked of the apiserver: the burst (200) and 50 per second after it.
        let budget = 200 + 50 * elapsed.as_millis() / 1000 + 60;
        assert!(
            refused as u128 <= budget,
            "{refused} forged tokens reviewed in {elapsed:?}; the budget allows {budget}"
        );
        assert!(
            held_back > 0,
            "{} new tokens at once spent no budget: {elapsed:?}",
            forged.len()
        );
        // The real sender's answer stayed cached through the flood.
        assert_eq!(send(&url, "real-1", Some(&real)).await.status, 202);
    })
    .await;
}

/// A reply comes from whatever a Trigger delivers to, not from a sender `spec.auth`
/// checked: a guarded Broker takes replies only once it says `acceptReplies`.
#[tokio::test]
async fn a_guarded_broker_takes_replies_only_when_it_says_so() {
    with_temp_ns("auth-replies", |client, ns| async move {
        use herald_cloudevents::CloudEvent;
        use herald_e2e::subscriber::{Answer as Reply, Subscriber};
        let herald = Stack::start(client.clone(), &ns, &nats_url()).await;
        let url = guarded_broker_url(&herald, &ns).await;
        let replier = Subscriber::scripted(|event, _| Reply {
            reply: Some(CloudEvent::new(
                &format!("reply-to-{}", event.id()),
                "/replier",
                "auth.reply",
            )),
            ..Reply::status(200)
        })
        .await;
        let downstream = Subscriber::accepting().await;
        for (name, type_, to) in [
            ("answer", "auth.test", &replier.url),
            ("after", "auth.reply", &downstream.url),
        ] {
            let spec = TriggerSpec {
                broker: "secure".to_owned(),
                filter: attributes([("type", type_)]),
                ..to_uri(to)
            };
            apply(&client, &ns, &trigger(name, spec)).await;
        }
        let triggers: kube::Api<herald_api::Trigger> = kube::Api::namespaced(client.clone(), &ns);
        for name in ["answer", "after"] {
            let ready = has_condition(
                herald_api::trigger::condition::READY,
                ConditionStatus::True,
                None,
            );
            await_condition(&triggers, name, WAIT, ready).await;
        }
        assert_eq!(send(&url, "r-1", Some(STATIC_TOKEN)).await.status, 202);
        replier
            .wait_for("the first event", WAIT, |d| !d.is_empty())
            .await;
        // Knative's signal that a reply would be published: not while it would not be.
        assert_eq!(replier.requests_with("prefer", "reply"), 0);

        apply_secure_broker(&client, &ns, true).await;
        // The dispatcher takes the change from its own watch: send until a reply passes.
        let mut n = 2;
        eventually("a reply once the Broker accepts them", WAIT, || {
            let (url, id) = (url.clone(), format!("r-{n}"));
            n += 1;
            let downstream = &downstream;
            async move {
                assert_eq!(send(&url, &id, Some(STATIC_TOKEN)).await.status, 202);
                tokio::time::sleep(Duration::from_millis(300)).await;
                (!downstream.deliveries().is_empty()).then_some(())
            }
        })
        .await;
        assert!(
            replier.requests_with("prefer", "reply") >= 1,
            "once replies are accepted, deliveries say Prefer: reply"
        );
        let delivered_ids = downstream.delivered_ids();
        assert!(
            !delivered_ids.contains(&"reply-to-r-1".to_owned()),
            "a reply entered the guarded Broker: {delivered_ids:?}"
        );
    })
    .await;
}
