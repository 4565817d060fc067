//! Unit tests of [`super`]: the delivery contract, reply hops, attempts.
use super::*;

fn delivery(retry: u32) -> EffectiveDelivery {
    let mut d = herald_api::delivery::resolve(None, None).unwrap();
    d.retry = retry;
    d
}

fn answered(status: u16) -> Attempt {
    Attempt::Answered {
        status,
        headers: HeaderMap::new(),
        body: Bytes::new(),
        cut: None,
    }
}

#[test]
fn the_delivery_contract() {
    let d = delivery(2);
    assert_eq!(verdict(&answered(202), 1, &d), Verdict::Ack);
    for cut in [Cut::TooLarge, Cut::TooSlow, Cut::Broken] {
        let cut_short = |status| Attempt::Answered {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            cut: Some(cut),
        };
        assert_eq!(
            verdict(&cut_short(200), 1, &d),
            Verdict::Ack,
            "a 2xx whose body was {cut:?} is delivered; sending again would not help"
        );
        assert_eq!(verdict(&cut_short(400), 1, &d), Verdict::GiveUp);
    }
    for retryable in [
        answered(500),
        answered(503),
        answered(429),
        answered(404),
        answered(408),
        answered(409),
        Attempt::TimedOut,
        Attempt::Failed("connection refused".into()),
    ] {
        assert_eq!(
            verdict(&retryable, 1, &d),
            Verdict::Retry(d.backoff(1)),
            "{retryable:?}"
        );
        assert_eq!(verdict(&retryable, 2, &d), Verdict::Retry(d.backoff(2)));
        assert_eq!(
            verdict(&retryable, 3, &d),
            Verdict::GiveUp,
            "retries used up"
        );
    }
    for final_answer in [400, 401, 403, 410, 422, 301] {
        assert_eq!(
            verdict(&answered(final_answer), 1, &d),
            Verdict::GiveUp,
            "{final_answer}"
        );
    }
    assert_eq!(verdict(&answered(500), 1, &delivery(0)), Verdict::GiveUp);
    let refused = Attempt::Refused("the egress policy refuses 127.0.0.1:80".into());
    assert_eq!(verdict(&refused, 1, &d), Verdict::GiveUp, "not retried");
}

#[test]
fn a_reply_lives_one_hop_less_than_the_event_it_answers() {
    let mut event = CloudEvent::new("1", "/s", "t");
    assert_eq!(
        reply_ttl(&event),
        Some(DEFAULT_REPLY_TTL - 1),
        "no TTL: the default"
    );
    event.set(REPLY_TTL_ATTRIBUTE, "7");
    assert_eq!(reply_ttl(&event), Some(6));
    event.set(REPLY_TTL_ATTRIBUTE, "1");
    assert_eq!(reply_ttl(&event), None, "the last hop");
    event.set(REPLY_TTL_ATTRIBUTE, "0");
    assert_eq!(reply_ttl(&event), None);
    event.set(REPLY_TTL_ATTRIBUTE, "100000");
    assert_eq!(reply_ttl(&event), Some(DEFAULT_REPLY_TTL - 1), "capped");
    event.set(REPLY_TTL_ATTRIBUTE, "-3");
    assert_eq!(
        reply_ttl(&event),
        Some(DEFAULT_REPLY_TTL - 1),
        "unreadable: the default"
    );
}

#[test]
fn retry_after_is_heeded_up_to_its_cap_and_never_sooner_than_the_backoff() {
    let mut d = delivery(3);
    d.retry_after_max = std::time::Duration::from_secs(60);
    let asking = |status: u16, seconds: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(hyper::header::RETRY_AFTER, seconds.parse().unwrap());
        Attempt::Answered {
            status,
            headers,
            body: Bytes::new(),
            cut: None,
        }
    };
    let secs = std::time::Duration::from_secs;
    assert_eq!(verdict(&asking(429, "30"), 1, &d), Verdict::Retry(secs(30)));
    assert_eq!(
        verdict(&asking(503, "3600"), 1, &d),
        Verdict::Retry(secs(60)),
        "capped"
    );
    assert_eq!(
        verdict(&asking(503, "0"), 1, &d),
        Verdict::Retry(d.backoff(1)),
        "never sooner"
    );
    assert_eq!(
        verdict(&asking(500, "30"), 1, &d),
        Verdict::Retry(d.backoff(1)),
        "500 does not ask"
    );
    assert_eq!(
        verdict(&asking(429, "30"), 4, &d),
        Verdict::GiveUp,
        "retries still count"
    );
}
