//! Turning a `Destination` (a Service or Broker reference, or a URI) into the URL
//! events are sent to.

use herald_api::{Broker, Destination};
use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client};

/// Resolves `dest` as seen from `namespace`; `Err` is the message for the condition.
/// A destination whose `caCerts` cannot be used, or whose `audience` is not bound to
/// the host it resolves to ([`herald_api::audience`]), does not resolve: every
/// delivery to it would fail.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    dest: &Destination,
) -> Result<String, String> {
    let url = resolve_url(client, namespace, dest).await?;
    if let Some(audience) = &dest.audience {
        herald_api::audience::check(audience, &url).map_err(|e| e.to_string())?;
    }
    Ok(url)
}

async fn resolve_url(
    client: &Client,
    namespace: &str,
    dest: &Destination,
) -> Result<String, String> {
    if let Some(pem) = &dest.ca_certs {
        herald_runtime::tls::check_ca_certs(pem)
            .map_err(|e| herald_runtime::tls::error_chain(&e))?;
    }
    let Some(reference) = &dest.reference else {
        return match dest.uri.as_deref() {
            Some(uri) if is_absolute_http(uri) => Ok(uri.to_owned()),
            Some(uri) => Err(format!(
                "uri {uri:?} must be an absolute http:// or https:// URL (or be a path with a ref)"
            )),
            None => Err("set ref or uri".into()),
        };
    };
    let ns = reference.namespace.as_deref().unwrap_or(namespace);
    let base = match (reference.kind.as_str(), reference.api_version.as_deref()) {
        ("Service", None | Some("v1")) => {
            let service = Api::<Service>::namespaced(client.clone(), ns)
                .get_opt(&reference.name)
                .await
                .map_err(|e| format!("cannot read Service {ns}/{}: {e}", reference.name))?
                .ok_or_else(|| format!("Service {ns}/{} does not exist", reference.name))?;
            service_url(&service, ns, reference.port)?
        }
        ("Broker", None | Some("eventing.herald.dev/v1alpha1")) => {
            Api::<Broker>::namespaced(client.clone(), ns)
                .get_opt(&reference.name)
                .await
                .map_err(|e| format!("cannot read Broker {ns}/{}: {e}", reference.name))?
                .ok_or_else(|| format!("Broker {ns}/{} does not exist", reference.name))?
                .status
                .and_then(|s| s.address)
                .map(|a| a.url)
                .ok_or_else(|| format!("Broker {ns}/{} has no address yet", reference.name))?
        }
        (kind, api_version) => {
            return Err(format!(
                "cannot send to a {kind} ({}): use a Service, a Broker or a uri",
                api_version.unwrap_or("no apiVersion")
            ));
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
) -> Result<String, String> {
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let chosen = match port {
        Some(p) if ports.iter().any(|sp| sp.port == p) => p,
        Some(p) => return Err(format!("Service {namespace}/{name} has no port {p}")),
        None => match ports {
            [only] => only.port,
            _ => ports
                .iter()
                .find(|sp| sp.name.as_deref() == Some("http"))
                .map(|sp| sp.port)
                .ok_or_else(|| format!("Service {namespace}/{name} has several ports and none named http: set ref.port"))?,
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
                .contains("no port 1")
        );
        let unnamed = service(&[(None, 1), (None, 2)]);
        assert!(
            service_url(&unnamed, "shop", None)
                .unwrap_err()
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
