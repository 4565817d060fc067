//! CloudEvents v1.0.2 for Herald, without IO.
//!
//! ```text
//!  HTTP request ──http::decode──▶ Vec<CloudEvent> ──nats::encode──▶ subject + headers + payload
//!  (binary, structured, batch)     (validated)                        (one NATS message per event)
//!  NATS message ──nats::decode──▶ CloudEvent ──http::encode_binary──▶ HTTP request to a subscriber
//! ```
//!
//! [`CloudEvent`] keeps every context attribute as its canonical string form (the
//! form the HTTP and NATS bindings carry) and the data as bytes, so events pass
//! through Herald unchanged. [`CloudEvent::validate`] enforces the spec's required
//! attributes and naming rules. [`webhook::consent`] answers the `OPTIONS` handshake
//! of the CloudEvents webhook spec.

pub mod event;
pub mod http;
pub mod json;
pub mod nats;
pub mod percent;
pub mod webhook;

pub use event::{CloudEvent, EventError};
