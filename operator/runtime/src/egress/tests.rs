use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http_body_util::Empty;

use super::*;
use crate::tls::{ClientTls, HttpClient, error_chain};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn cidrs(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|c| c.parse().unwrap()).collect()
}

#[test]
fn the_default_refuses_loopback_unspecified_link_local_and_metadata() {
    let policy = EgressPolicy::new(&[], &[], &[]);
    for denied in [
        "127.0.0.1:80",
        "127.0.0.2:8080",
        "127.255.255.254:1",
        "0.0.0.0:80",
        "0.1.2.3:80",
        "169.254.169.254:80",
        "169.254.0.1:443",
        "[::1]:80",
        "[::]:80",
        "[fe80::1]:80",
        "[febf:ffff::1]:80",
        "[fd00:ec2::254]:80",
    ] {
        assert!(policy.check(addr(denied)).is_err(), "{denied} is allowed");
    }
    for allowed in [
        "10.96.0.10:80",
        "192.168.1.1:443",
        "8.8.8.8:443",
        "126.255.255.255:80",
        "128.0.0.1:80",
        "169.253.255.255:80",
        "[fd00::1]:80",
        "[fec0::1]:80",
        "[2001:db8::1]:443",
    ] {
        assert_eq!(policy.check(addr(allowed)), Ok(()), "{allowed}");
    }
    assert_eq!(
        policy
            .check(addr("169.254.169.254:80"))
            .unwrap_err()
            .to_string(),
        "link-local, cloud metadata (169.254.0.0/16)"
    );
}

#[test]
fn ipv4_mapped_ipv6_is_judged_as_the_ipv4_address_it_reaches() {
    let policy = EgressPolicy::new(&[], &[], &[addr("10.0.0.1:6443")]);
    for denied in [
        "[::ffff:127.0.0.1]:80",
        "[::ffff:169.254.169.254]:80",
        "[::ffff:0.0.0.0]:80",
    ] {
        assert!(
            matches!(policy.check(addr(denied)), Err(Denial::Default(..))),
            "{denied}"
        );
    }
    assert_eq!(
        policy.check(addr("[::ffff:10.0.0.1]:6443")),
        Err(Denial::ApiServer)
    );
    assert_eq!(policy.check(addr("[::ffff:10.0.0.2]:80")), Ok(()));
}

#[test]
fn allow_makes_exceptions_and_the_most_specific_range_decides() {
    let policy = EgressPolicy::new(
        &cidrs(&["127.0.0.1/32", "10.1.0.0/16", "10.2.3.0/24"]),
        &cidrs(&["10.0.0.0/8", "10.2.3.4/32"]),
        &[],
    );
    assert_eq!(policy.check(addr("127.0.0.1:9000")), Ok(()));
    assert!(policy.check(addr("127.0.0.2:9000")).is_err());
    assert!(
        policy.check(addr("[::1]:9000")).is_err(),
        "allow is per family"
    );
    assert_eq!(
        policy.check(addr("10.1.2.3:80")),
        Ok(()),
        "allow /16 in deny /8"
    );
    assert_eq!(
        policy.check(addr("10.3.0.1:80")),
        Err(Denial::Configured("10.0.0.0/8".parse().unwrap()))
    );
    assert_eq!(policy.check(addr("10.2.3.5:80")), Ok(()));
    assert!(
        policy.check(addr("10.2.3.4:80")).is_err(),
        "deny /32 in allow /24"
    );
    let tie = EgressPolicy::new(&cidrs(&["10.0.0.0/8"]), &cidrs(&["10.0.0.0/8"]), &[]);
    assert!(
        tie.check(addr("10.0.0.1:80")).is_err(),
        "a tie with --egress-deny is a deny"
    );
    let whole = EgressPolicy::new(&cidrs(&["127.0.0.0/8", "::1/128"]), &[], &[]);
    assert_eq!(
        whole.check(addr("127.0.0.9:80")),
        Ok(()),
        "a tie with a default range is the exception asked for"
    );
    assert_eq!(whole.check(addr("[::1]:80")), Ok(()));
    let everything = EgressPolicy::new(&cidrs(&["0.0.0.0/0", "::/0"]), &[], &[]);
    assert!(
        everything.check(addr("127.0.0.1:80")).is_err(),
        "/0 is less specific than every default range"
    );
}

#[test]
fn the_api_server_is_refused_by_address_and_port_whatever_is_allowed() {
    let api = addr("127.0.0.1:6443");
    let policy = EgressPolicy::new(&cidrs(&["127.0.0.0/8", "127.0.0.1/32"]), &[], &[api]);
    assert_eq!(policy.check(api), Err(Denial::ApiServer));
    assert_eq!(
        policy.check(addr("[::ffff:127.0.0.1]:6443")),
        Err(Denial::ApiServer)
    );
    assert_eq!(
        policy.check(addr("127.0.0.1:8080")),
        Ok(()),
        "another port of the same address is a sink the test setup allows"
    );
    assert!(EgressPolicy::unrestricted().check(api).is_ok());
    assert!(EgressPolicy::unrestricted().check(addr("[::1]:1")).is_ok());
}

#[test]
fn a_name_is_refused_only_when_every_address_is() {
    let policy = EgressPolicy::new(&[], &[], &[]);
    let both = [addr("127.0.0.1:80"), addr("10.0.0.1:80")];
    assert_eq!(
        policy.filter("mixed:80", both).unwrap(),
        vec![addr("10.0.0.1:80")]
    );
    let refused = policy
        .filter("localhost:80", [addr("127.0.0.1:80"), addr("[::1]:80")])
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "the egress policy refuses localhost:80: 127.0.0.1:80 is loopback (127.0.0.0/8), [::1]:80 is loopback (::1/128)"
    );
}

#[test]
fn cidr_flags_are_parsed_and_typos_refused() {
    assert_eq!(
        "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
        "10.0.0.0/8"
    );
    assert_eq!(
        "10.1.2.3".parse::<Cidr>().unwrap().to_string(),
        "10.1.2.3/32"
    );
    assert_eq!("fd00::/8".parse::<Cidr>().unwrap().to_string(), "fd00::/8");
    assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
    assert_eq!(
        "0.0.0.0/0".parse::<Cidr>().unwrap().to_string(),
        "0.0.0.0/0"
    );
    let host_bits = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
    assert!(host_bits.to_string().contains("10.0.0.0/8"), "{host_bits}");
    assert!(matches!(
        "10.0.0.0/33".parse::<Cidr>(),
        Err(CidrError::Prefix(_))
    ));
    assert!(matches!(
        "localhost".parse::<Cidr>(),
        Err(CidrError::Address(_))
    ));
    assert!(
        "10.0.0.0/8"
            .parse::<Cidr>()
            .unwrap()
            .contains(IpAddr::from([10, 9, 8, 7]))
    );
}

#[test]
fn the_flags_build_the_policy() {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        egress: EgressArgs,
    }
    let cli = Cli::try_parse_from([
        "x",
        "--egress-allow",
        "127.0.0.1/32,10.1.0.0/16",
        "--egress-allow",
        "::1",
        "--egress-deny",
        "10.0.0.0/8",
    ])
    .unwrap();
    let policy = cli.egress.policy(&[addr("10.0.0.1:443")]);
    assert!(policy.check(addr("127.0.0.1:80")).is_ok());
    assert!(policy.check(addr("[::1]:80")).is_ok());
    assert!(policy.check(addr("10.1.0.1:80")).is_ok());
    assert!(policy.check(addr("10.2.0.1:80")).is_err());
    assert_eq!(policy.check(addr("10.0.0.1:443")), Err(Denial::ApiServer));
    let bad = Cli::try_parse_from(["x", "--egress-deny", "10.0.0.1/8"]);
    assert!(bad.is_err());
}

/// GETs `url` through a delivery client held to `policy`.
async fn get(policy: EgressPolicy, url: &str) -> Result<u16, String> {
    let builder = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
    let tls = ClientTls::load(None).unwrap();
    let client: HttpClient<Empty<&'static [u8]>> = tls.http_client(&builder, &Arc::new(policy));
    match client.get(url.parse().unwrap()).await {
        Ok(response) => Ok(response.status().as_u16()),
        Err(e) => Err(refusal(&e).map_or_else(|| error_chain(&e), ToString::to_string)),
    }
}

/// A server on `ip` that answers 200 to everything; its port.
async fn server(ip: &str) -> u16 {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test]
async fn the_client_refuses_denied_addresses_literal_or_resolved() {
    let port = server("127.0.0.1").await;
    let refused = get(
        EgressPolicy::new(&[], &[], &[]),
        &format!("http://127.0.0.1:{port}/"),
    )
    .await
    .unwrap_err();
    assert!(
        refused.starts_with(&format!("the egress policy refuses 127.0.0.1:{port}: ")),
        "{refused}"
    );
    let refused = get(
        EgressPolicy::new(&[], &[], &[]),
        &format!("http://localhost:{port}/"),
    )
    .await
    .unwrap_err();
    assert!(
        refused.starts_with(&format!("the egress policy refuses localhost:{port}: ")),
        "a name resolving to loopback only: {refused}"
    );
    let refused = get(
        EgressPolicy::new(&[], &[], &[]),
        &format!("https://[::ffff:127.0.0.1]:{port}/"),
    )
    .await
    .unwrap_err();
    assert!(refused.contains("loopback (127.0.0.0/8)"), "{refused}");

    // Forms the resolver turns into 127.0.0.1 are judged after resolution.
    for odd in ["127.1", "2130706433", "0x7f.1"] {
        let refused = get(
            EgressPolicy::new(&[], &[], &[]),
            &format!("http://{odd}:{port}/"),
        )
        .await
        .unwrap_err();
        assert!(
            refused.contains(&format!("127.0.0.1:{port} is loopback")),
            "{odd}: {refused}"
        );
    }

    let allowed = EgressPolicy::new(&cidrs(&["127.0.0.1/32"]), &[], &[]);
    assert_eq!(
        get(allowed.clone(), &format!("http://127.0.0.1:{port}/")).await,
        Ok(200)
    );
    assert_eq!(
        get(allowed, &format!("http://localhost:{port}/")).await,
        Ok(200)
    );
    assert_eq!(
        get(
            EgressPolicy::unrestricted(),
            &format!("http://localhost:{port}/")
        )
        .await,
        Ok(200)
    );
}

#[tokio::test]
async fn the_client_refuses_the_api_server_even_where_its_address_is_allowed() {
    let api = server("127.0.0.1").await;
    let sink = server("127.0.0.1").await;
    let policy = EgressPolicy::new(
        &cidrs(&["127.0.0.0/8"]),
        &[],
        &[addr(&format!("127.0.0.1:{api}"))],
    );
    for url in [
        format!("http://127.0.0.1:{api}/"),
        format!("https://127.0.0.1:{api}/"),
        format!("http://localhost:{api}/"),
    ] {
        let refused = get(policy.clone(), &url).await.unwrap_err();
        assert!(
            refused.ends_with(&format!("127.0.0.1:{api} is the Kubernetes API server")),
            "{url}: {refused}"
        );
    }
    assert_eq!(
        get(policy, &format!("http://localhost:{sink}/")).await,
        Ok(200)
    );
}

#[tokio::test]
async fn the_api_server_of_a_cluster_url_is_found() {
    let found = api_server_addresses(&"https://127.0.0.1:6443".parse().unwrap()).await;
    assert!(found.contains(&addr("127.0.0.1:6443")), "{found:?}");
    let found = api_server_addresses(&"https://localhost".parse().unwrap()).await;
    assert!(found.contains(&addr("127.0.0.1:443")), "{found:?}");
}
