//! Percent-encoding of attribute values in headers, as the CloudEvents HTTP binding
//! (3.1.3.2) requires: space, `"`, `%` and every byte outside printable ASCII are
//! written `%XX`. The NATS format uses the same rule for its headers.

use std::fmt::Write;

/// Whether `b` may appear unencoded in a header value.
fn is_plain(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b'"' && b != b'%'
}

/// Encodes a value for a header.
#[must_use]
pub fn encode(value: &str) -> String {
    if value.bytes().all(is_plain) {
        return value.to_owned();
    }
    value
        .bytes()
        .fold(String::with_capacity(value.len() + 8), |mut out, b| {
            if is_plain(b) {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "%{b:02X}");
            }
            out
        })
}

/// Decodes a header value; `None` when a `%` is not followed by two hex digits or the
/// result is not UTF-8.
#[must_use]
pub fn decode(value: &[u8]) -> Option<String> {
    if !value.contains(&b'%') {
        return String::from_utf8(value.to_vec()).ok();
    }
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            // `from_str_radix` alone would accept a sign (`%+A`).
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let s = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(s, 16).ok()?);
            i += 3;
        } else {
            out.push(value[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percent_needs_two_hex_digits_not_a_sign() {
        assert_eq!(decode(b"%+A"), None);
        assert_eq!(decode(b"%-1"), None);
        assert_eq!(decode(b"%0A").as_deref(), Some("\n"));
    }

    #[test]
    fn round_trips_unicode_spaces_and_percent() {
        for v in [
            "plain",
            "with space",
            "100% \"quoted\"",
            "Euro €",
            "tab\tnew\nline",
            "",
        ] {
            let encoded = encode(v);
            assert!(
                encoded.bytes().all(|b| (0x21..=0x7e).contains(&b)),
                "{encoded}"
            );
            assert_eq!(decode(encoded.as_bytes()).as_deref(), Some(v));
        }
        assert_eq!(encode("Euro €"), "Euro%20%E2%82%AC");
    }

    #[test]
    fn rejects_broken_escapes() {
        assert_eq!(decode(b"50%"), None);
        assert_eq!(decode(b"%zz"), None);
        assert_eq!(decode(b"%FF"), None); // not UTF-8 on its own
        assert_eq!(decode(b"%C0%A0"), None); // an overlong space: the binding says reject
    }

    #[test]
    fn accepts_lower_case_and_needless_escapes() {
        assert_eq!(decode(b"caf%c3%a9").as_deref(), Some("café"));
        assert_eq!(decode(b"%41%42c").as_deref(), Some("ABc"));
    }
}
