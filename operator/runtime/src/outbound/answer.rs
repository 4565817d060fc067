//! Reading a recipient's answer body, bounded in size and in time: a subscriber that
//! answers with an endless or a trickling body holds a delivery slot for at most the
//! delivery timeout and costs at most the limit in memory. What was read is kept, and
//! the answer still counts as its status says (a 2xx is delivered: sending the event
//! again would not make the body shorter).

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::time::Instant;

/// Why an answer's body was not read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Longer than the limit: only the first bytes are kept.
    TooLarge,
    /// Not finished within the delivery timeout: what arrived is kept.
    TooSlow,
    /// The connection broke off in the middle of the body.
    Broken,
}

impl Cut {
    /// Why, for logs and dead-letter attributes.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::TooLarge => "the answer body is longer than is read",
            Self::TooSlow => "the answer body did not arrive within the delivery timeout",
            Self::Broken => "the connection broke off in the answer body",
        }
    }
}

/// Reads `body` until its end, `limit` bytes or `deadline`, whichever comes first.
/// Dropping the rest of a body closes its connection rather than returning it to the
/// pool, so an endless answer is not read on by anyone.
pub async fn read<B>(mut body: B, limit: usize, deadline: Instant) -> (Bytes, Option<Cut>)
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut read = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return (read.freeze(), Some(Cut::TooSlow)),
            Ok(None) => return (read.freeze(), None),
            Ok(Some(Err(_))) => return (read.freeze(), Some(Cut::Broken)),
            Ok(Some(Ok(frame))) => frame,
        };
        // Trailers carry nothing the dispatcher reads.
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        let room = limit - read.len();
        if data.len() > room {
            read.extend_from_slice(&data.split_to(room));
            return (read.freeze(), Some(Cut::TooLarge));
        }
        read.extend_from_slice(&data);
    }
}

/// How long a 429 or 503 answer asks the sender to wait (`Retry-After`: seconds, or
/// an HTTP date); `None` for other statuses and for a value that is neither.
#[must_use]
pub fn retry_after(status: u16, headers: &hyper::HeaderMap) -> Option<std::time::Duration> {
    if !matches!(status, 429 | 503) {
        return None;
    }
    let value = headers
        .get(hyper::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(std::time::Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    // A date in the past asks for no wait at all.
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use futures::StreamExt as _;
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    use super::*;

    #[expect(clippy::unnecessary_wraps, reason = "an item of a body's stream")]
    fn chunk(n: usize) -> Result<Frame<Bytes>, Infallible> {
        Ok(Frame::data(Bytes::from(vec![b'x'; n])))
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let body = StreamBody::new(futures::stream::iter([chunk(600), chunk(400)]));
        let (got, cut) = read(body, 1000, soon()).await;
        assert_eq!((got.len(), cut), (1000, None), "exactly the limit is fine");
    }

    #[tokio::test]
    async fn an_endless_body_is_cut_at_the_limit() {
        let endless = StreamBody::new(futures::stream::repeat_with(|| chunk(64 * 1024)));
        let (got, cut) = read(endless, 1 << 20, soon()).await;
        assert_eq!((got.len(), cut), (1 << 20, Some(Cut::TooLarge)));
        let one_huge_frame = StreamBody::new(futures::stream::iter([chunk(3 << 20)]));
        let (got, cut) = read(one_huge_frame, 1024, soon()).await;
        assert_eq!((got.len(), cut), (1024, Some(Cut::TooLarge)));
    }

    #[tokio::test]
    async fn a_trickling_body_is_cut_at_the_deadline() {
        let trickle =
            StreamBody::new(futures::stream::iter([chunk(10)]).chain(futures::stream::pending()));
        let started = Instant::now();
        let deadline = started + Duration::from_millis(200);
        let (got, cut) = read(trickle, 1 << 20, deadline).await;
        assert_eq!((got.len(), cut), (10, Some(Cut::TooSlow)));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_broken_body_keeps_what_arrived() {
        let broken = StreamBody::new(futures::stream::iter([
            Ok(Frame::data(Bytes::from_static(b"half"))),
            Err("reset"),
        ]));
        let (got, cut) = read(broken, 1024, soon()).await;
        assert_eq!((&got[..], cut), (&b"half"[..], Some(Cut::Broken)));
    }

    #[test]
    fn retry_after_is_read_from_429_and_503_in_seconds_or_as_a_date() {
        use std::time::{Duration, SystemTime};
        let headers = |value: &str| {
            let mut h = hyper::HeaderMap::new();
            h.insert(hyper::header::RETRY_AFTER, value.parse().unwrap());
            h
        };
        assert_eq!(
            retry_after(429, &headers("7")),
            Some(Duration::from_secs(7))
        );
        assert_eq!(retry_after(503, &headers(" 0 ")), Some(Duration::ZERO));
        assert_eq!(
            retry_after(500, &headers("7")),
            None,
            "only 429 and 503 ask"
        );
        assert_eq!(retry_after(429, &headers("soon")), None);
        assert_eq!(retry_after(429, &hyper::HeaderMap::new()), None);
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let asked = retry_after(503, &headers(&later)).unwrap();
        assert!(
            asked > Duration::from_secs(110) && asked <= Duration::from_secs(120),
            "{asked:?}"
        );
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
        assert_eq!(retry_after(503, &headers(&past)), Some(Duration::ZERO));
    }
}
