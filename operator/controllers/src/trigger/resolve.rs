//! Turning a `Destination` (a Service or Broker reference, or a URI) into the URL
//! events are sent to.

use herald_api::{Broker, Destination};
use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client};

/// Why a destination does not resolve to a URL; its text is the condition's message.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// `caCerts` cannot be used; the text walks the whole chain, as users need the
    /// PEM parser's reason.
    #[error("{}", herald_runtime::tls::error_chain(.0))]
    CaCerts(#[source] herald_runtime::tls::TlsError),
    #[error("uri {0:?} must be an absolute http:// or https:// URL (or be a path with a ref)")]
    NotHttp(String),
    #[error("set ref or uri")]
    Nothing,
    #[error("cannot read {kind} {namespace}/{name}: {source}")]
    Read {
        kind: &'static str,
        namespace: String,
        name: String,
        /// Boxed: a kube error would make every `ResolveError` large.
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{kind} {namespace}/{name} does not exist")]
    Missing {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("Broker {namespace}/{name} has no address yet")]
    NoAddress { namespace: String, name: String },
    #[error(
        "cannot send to a {kind} ({}): use a Service, a Broker or a uri",
        api_version.as_deref().unwrap_or("no apiVersion")
    )]
    Kind {
        kind: String,
        api_version: Option<String>,
    },
    #[error("Service {namespace}/{name} has no port {port}")]
    NoPort {
        namespace: String,
        name: String,
        port: i32,
    },
    #[error("Service {namespace}/{name} has several ports and none named http: set ref.port")]
    NoHttpPort { namespace: String, name: String },
    #[error(transparent)]
    Audience(#[from] herald_api::audience::AudienceError),
}

/// Resolves `dest` as seen from `namespace`; `Err` is the message for the condition.
/// A destination whose `caCerts` cannot be used, or whose `audience` is not bound to
/// the host it resolves to ([`herald_api::audience`]), does not resolve: every
/// delivery to it would fail.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    dest: &Destination,
) -> Result<String, ResolveError> {
    let url = resolve_url(client, namespace, dest).await?;
    if let Some(audience) = &dest.audience {
        herald_api::audience::check(audience, &url)?;
    }
    Ok(url)
}

async fn resolve_url(
    client: &Client,
    namespace: &str,
    dest: &Destination,
) -> Result<String, ResolveError> {
    if let Some(pem) = &dest.ca_certs {
        herald_runtime::tls::check_ca_certs(pem).map_err(ResolveError::CaCerts)?;
    }
    let Some(reference) = &dest.reference else {
        return match dest.uri.as_deref() {
            Some(uri) if is_absolute_http(uri) => Ok(uri.to_owned()),
            Some(uri) => Err(ResolveError::NotHttp(uri.to_owned())),
            None => Err(ResolveError::Nothing),
        };
    };
    let ns = reference.namespace.as_deref().unwrap_or(namespace);
    let name = &reference.name;
    let read = |kind| {
        move |source| ResolveError::Read {
            kind,
            namespace: ns.to_owned(),
            name: name.clone(),
            source: Box::new(source),
        }
    };
    let missing = |kind| ResolveError::Missing {
        kind,
        namespace: ns.to_owned(),
        name: name.clone(),
    };
    let base = match (reference.kind.as_str(), reference.api_version.as_deref()) {
        ("Service", None | Some("v1")) => {
            let service = Api::<Service>::namespaced(client.clone(), ns)
                .get_opt(name)
                .await
                .map_err(read("Service"))?
                .ok_or_else(|| missing("Service"))?;
            service_url(&service, ns, reference.port)?
        }
        ("Broker", None | Some("eventing.herald.dev/v1alpha1")) => {
            Api::<Broker>::namespaced(client.clone(), ns)
                .get_opt(name)
                .await
                .map_err(read("Broker"))?
                .ok_or_else(|| missing("Broker"))?
                .status
                .and_then(|s| s.address)
                .map(|a| a.url)
                .ok_or_else(|| ResolveError::NoAddress {
                    namespace: ns.to_owned(),
                    name: name.clone(),
                })?
        }
        (kind, api_version) => {
            return Err(ResolveError::Kind {
                kind: kind.to_owned(),
                api_version: api_version.map(str::to_owned),
            });
        }
    };
    Ok(join(&base, dest.uri.as_deref()))
}

fn is_absolute_http(uri: &str) -> bool {
    let host = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"));
    host.is_some_and(|h| !h.is_empty() && !h.starts_with('/'))
}

/// The in-cluster URL of a Service: the given port, else its only port, else its port
/// named `http`. Port 80 is left out of the URL.
pub fn service_url(
    service: &Service,
    namespace: &str,
    port: Option<i32>,
) -> Result<String, ResolveError> {
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let chosen = match port {
        Some(p) if ports.iter().any(|sp| sp.port == p) => p,
        Some(port) => {
            return Err(ResolveError::NoPort {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                port,
            });
        }
        None => match ports {
            [only] => only.port,
            _ => ports
                .iter()
                .find(|sp| sp.name.as_deref() == Some("http"))
                .map(|sp| sp.port)
                .ok_or_else(|| ResolveError::NoHttpPort {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })?,
        },
    };
    let host = format!("{name}.{namespace}.svc.cluster.local");
    Ok(if chosen == 80 {
        format!("http://{host}")
    } else {
        format!("http://{host}:{chosen}")
    })
}

/// `base` with a relative `path` appended (`/` between them exactly once).
fn join(base: &str, path: Option<&str>) -> String {
    match path {
        None | Some("") => base.to_owned(),
        Some(p) => format!(
            "{}/{}",
            base.trim_end_matches('/'),
            p.trim_start_matches('/')
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    fn service(ports: &[(Option<&str>, i32)]) -> Service {
        Service {
            metadata: kube::api::ObjectMeta {
                name: Some("billing".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p)| ServicePort {
                            name: n.map(str::to_owned),
                            port: *p,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn service_ports_are_chosen_as_documented() {
        assert_eq!(
            service_url(&service(&[(None, 80)]), "shop", None).unwrap(),
            "http://billing.shop.svc.cluster.local"
        );
        assert_eq!(
            service_url(&service(&[(None, 8080)]), "shop", None).unwrap(),
            "http://billing.shop.svc.cluster.local:8080"
        );
        let two = service(&[(Some("grpc"), 9000), (Some("http"), 8080)]);
        assert!(service_url(&two, "shop", None).unwrap().ends_with(":8080"));
        assert!(
            service_url(&two, "shop", Some(9000))
                .unwrap()
                .ends_with(":9000")
        );
        assert!(
            service_url(&two, "shop", Some(1))
                .unwrap_err()
                .to_string()
                .contains("no port 1")
        );
        let unnamed = service(&[(None, 1), (None, 2)]);
        assert!(
            service_url(&unnamed, "shop", None)
                .unwrap_err()
                .to_string()
                .contains("set ref.port")
        );
    }

    #[test]
    fn paths_join_once() {
        assert_eq!(join("http://a", Some("/events")), "http://a/events");
        assert_eq!(join("http://a/", Some("events")), "http://a/events");
        assert_eq!(join("http://a", None), "http://a");
        assert!(is_absolute_http("http://x"));
        assert!(!is_absolute_http("/relative"));
        assert!(!is_absolute_http("http://"));
        assert!(!is_absolute_http("ftp://x"));
    }
}
