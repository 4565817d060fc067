//! Webhook signatures, GitHub style: `sha256=<hex of HMAC-SHA256(key, body)>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a request's signature was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// No signature header.
    Missing,
    /// Not `sha256=<64 hex digits>`.
    Malformed,
    /// The HMAC does not match.
    Mismatch,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignatureError::Missing => "the request is not signed",
            SignatureError::Malformed => "the signature is not of the form sha256=<hex>",
            SignatureError::Mismatch => "the signature does not match the body",
        })
    }
}

/// The signature header value for `body` signed with `key`.
#[must_use]
pub fn sign(key: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this never yields the empty string.
    Hmac::<Sha256>::new_from_slice(key).map_or_else(
        |_| String::new(),
        |mut mac| {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        },
    )
}

/// Checks `header` (the signature header's value, if any) against `body`, in constant
/// time.
pub fn verify(key: &[u8], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| SignatureError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_example_verifies() {
        // The example from GitHub's webhook documentation.
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            verify(
                b"It's a Secret to Everybody",
                b"Hello, World!",
                Some(header)
            ),
            Ok(())
        );
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!"),
            header
        );
    }

    #[test]
    fn every_wrong_signature_is_refused() {
        let good = sign(b"k", b"body");
        assert_eq!(verify(b"k", b"body", None), Err(SignatureError::Missing));
        assert_eq!(
            verify(b"k", b"body", Some("md5=00")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"k", b"body", Some("sha256=zz")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"other", b"body", Some(&good)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"k", b"body!", Some(&good)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"k", b"body", Some(&good[..good.len() - 2])),
            Err(SignatureError::Mismatch)
        );
    }
}
