//! A minimal HTTP client for talking to the ingress as a producer would.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// What the server answered.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body as text.
    pub body: String,
}

impl Answer {
    /// The body parsed as JSON (`Null` when it is not JSON).
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends `method url` with `headers` and `body`.
///
/// # Panics
/// When the server cannot be reached or its answer cannot be read.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    try_request(method, url, headers, body)
        .await
        .expect("the ingress answers")
}

/// Sends `method url` with `headers` and `body`; `Err` when the connection failed or
/// broke before a whole answer came (a producer would retry).
pub async fn try_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Answer, String> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(body.into()))
        .expect("valid request");
    for (name, value) in headers {
        req.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// POSTs with headers and body.
pub async fn post(url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Answer {
    request("POST", url, headers, body).await
}

/// POSTs with headers and body; `Err` when no whole answer came.
pub async fn try_post(
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Answer, String> {
    try_request("POST", url, headers, body).await
}

/// A request to the ingress at `port` whose headers announce `length` bytes of body
/// and whose body never comes (one byte of it is sent): it holds its place in the
/// ingress's limits (in-flight count, byte budget) until the read timeout.
pub async fn stalled_request(port: u16, path: &str, length: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nce-specversion: 1.0\r\nce-id: slow\r\nce-type: t\r\nce-source: /s\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// POSTs to `url` while two [`stalled_request`]s of `length` bytes to `path` hold
/// their places, until the answer is `refusal`. The ingress counts a stalled request
/// a moment after it connects, and on a busy machine the stalled pair may reach its
/// read timeout before the POST arrives: either way that try is answered 202 and the
/// pair is tried again. Returns the refusal with the pair, still held.
pub async fn post_beside_stalled(
    (port, path, length): (u16, &str, usize),
    url: &str,
    headers: &[(&str, &str)],
    refusal: u16,
) -> (Answer, [tokio::net::TcpStream; 2]) {
    let mut tries = 0;
    loop {
        let held = [
            stalled_request(port, path, length).await,
            stalled_request(port, path, length).await,
        ];
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let answer = post(url, headers, "{}").await;
        if answer.status == refusal {
            return (answer, held);
        }
        tries += 1;
        assert!(
            tries < 20,
            "never {refusal} beside two stalled requests; last: {} {}",
            answer.status,
            answer.body
        );
    }
}
