//! Which audiences the dispatcher may mint its tokens for.
//!
//! A delivery with `subscriber.audience` carries a token of the dispatcher's
//! ServiceAccount for that audience. Whoever receives the token can present it anywhere
//! that audience is accepted, as the dispatcher. So an audience is bound to the
//! subscriber: it must be the URL of the host the token is sent to (a subscriber checks
//! tokens for its own URL), and a token for one host is never sent to another. A Trigger
//! cannot ask for a token another namespace's service accepts and have it delivered to
//! itself. (Audiences the Kubernetes apiserver accepts are refused by the dispatcher as
//! well, with a `TokenReview`, whatever host they name.)

/// Why a token for an audience may not be sent to a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudienceError {
    #[error(
        "audience {audience:?} must be the subscriber's own URL (an absolute http:// or https:// URL): a token is only sent to the host its audience names"
    )]
    NotAUrl { audience: String },
    #[error("cannot tell the host of {url:?}")]
    UnknownHost { url: String },
    #[error(
        "audience {audience:?} names host {wanted}, but deliveries go to {target}: a token is only sent to the host its audience names"
    )]
    OtherHost {
        audience: String,
        wanted: String,
        target: String,
    },
}

/// Checks that a token for `audience` may be sent to `url`.
///
/// # Errors
/// Why not: the audience is not an absolute `http(s)://` URL, or names another host
/// than the one the token would go to.
pub fn check(audience: &str, url: &str) -> Result<(), AudienceError> {
    let Some(wanted) = host(audience) else {
        return Err(AudienceError::NotAUrl {
            audience: audience.to_owned(),
        });
    };
    let Some(target) = host(url) else {
        return Err(AudienceError::UnknownHost {
            url: url.to_owned(),
        });
    };
    if same_host(&wanted, &target) {
        Ok(())
    } else {
        Err(AudienceError::OtherHost {
            audience: audience.to_owned(),
            wanted,
            target,
        })
    }
}

/// The lower-cased host of an absolute `http(s)://` URL, without port or user info.
fn host(url: &str) -> Option<String> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        host_port.split(':').next()?
    };
    let host = host.trim_end_matches('.');
    (!host.is_empty()).then(|| host.to_owned())
}

/// Hosts are the same, counting a Service's short and full names as one
/// (`billing.shop.svc` and `billing.shop.svc.cluster.local`, the name Herald resolves
/// Service references to).
fn same_host(a: &str, b: &str) -> bool {
    fn service(host: &str) -> &str {
        host.strip_suffix(".cluster.local")
            .filter(|short| short.rsplit('.').next() == Some("svc"))
            .unwrap_or(host)
    }
    service(a) == service(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audience_naming_the_subscriber_s_host_binds() {
        for (audience, url) in [
            (
                "https://billing.shop.svc/events",
                "http://billing.shop.svc.cluster.local:8080/",
            ),
            (
                "https://billing.shop.svc.cluster.local",
                "http://billing.shop.svc.cluster.local/x",
            ),
            (
                "https://Sub.Example.com",
                "https://sub.example.com:8443/hook?a=1",
            ),
            ("http://[::1]:9", "http://[::1]:8080/"),
            ("https://sub.example.com.", "https://sub.example.com/"),
        ] {
            assert_eq!(check(audience, url), Ok(()), "{audience} -> {url}");
        }
    }

    #[test]
    fn an_audience_of_another_host_is_refused() {
        for (audience, url) in [
            // Another namespace's service, asked for by a Trigger that delivers to itself.
            (
                "https://billing.bank.svc/events",
                "http://loot.attacker.svc.cluster.local/",
            ),
            (
                "https://kubernetes.default.svc",
                "https://collector.example.com/",
            ),
            (
                "https://sub.example.com@evil.example.com",
                "https://sub.example.com/",
            ),
            (
                "https://a.example.com",
                "https://a.example.com.evil.example/",
            ),
            (
                "https://billing.shop.svc",
                "https://billing.shop.svc.evil.example/",
            ),
        ] {
            let refused = check(audience, url).unwrap_err().to_string();
            assert!(
                refused.contains("only sent to the host"),
                "{audience} -> {url}: {refused}"
            );
        }
    }

    #[test]
    fn an_audience_that_is_not_a_url_is_refused() {
        for audience in ["kubernetes", "api", "", "https://", "ftp://sub.example.com"] {
            assert!(
                check(audience, "https://sub.example.com/").is_err(),
                "{audience}"
            );
        }
    }
}
