//! One authority per request (HDR-12, host-header confusion; the 2026-12-07 review's F3): the
//! host a route is matched on is the host the upstream receives, on the lean HTTP/1.1 path,
//! hyper's path (absolute-form targets), HTTP/2 and forward auth (`/oauth2/auth`).
//!
//! RFC 9112 §3.2.2: with an absolute-form target the target's authority is the request's, not
//! `Host`; RFC 9113 §8.3.1: an `:authority` and a `host` naming different hosts make a
//! malformed request. Portcullis answers 400 whenever two authorities disagree (or `Host` is
//! sent twice), and compares hosts canonically: lower case, one trailing dot removed, the
//! scheme's default port removed. The upstream receives that canonical host.
//!
//! Routes ([`host_routes_proxy`]): `www.test` allows anonymous users, `admin.test` denies them,
//! `/` allows them — the review's set-up, with `deny` in place of a group rule (the route
//! choice is what is tested).

use serde_json::Value;

use crate::harness::*;

fn setup() {
    portcullis::install_crypto();
}

async fn start(echo: &Echo, server_extra: &str) -> Proxy {
    host_routes_proxy(&echo.url(), server_extra).await
}

/// Writes one request head exactly as given (the test supplies the request line and every
/// header but `Connection: close`) and returns the status and the body.
async fn raw(port: u16, request_line: &str, headers: &str) -> (u16, String) {
    let req = format!("{request_line}\r\n{headers}Connection: close\r\n\r\n");
    let (status, text) = raw_exchange(port, &req).await;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The `host` the echo upstream received, when the answer came from it.
fn upstream_host(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let hosts = v["headers"]["host"].as_array()?;
    assert_eq!(hosts.len(), 1, "the upstream got one Host: {body}");
    hosts[0].as_str().map(str::to_string)
}

/// Absolute-form target naming one host, `Host` naming another (the review's reproduction):
/// never routed by one and served as the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_target_and_a_different_host_are_refused() {
    setup();
    let echo = Echo::start().await;
    let p = start(&echo, "").await;
    // The review: routed as www.test (allow), served as admin.test — anonymously.
    let (status, body) = raw(
        p.port,
        "GET http://www.test/secret HTTP/1.1",
        "Host: admin.test\r\n",
    )
    .await;
    assert_eq!(
        status,
        400,
        "absolute-form www.test with Host admin.test must be 400; the upstream saw Host {:?}",
        upstream_host(&body)
    );
    // The reverse: routed as admin.test must not be served as anything else either.
    let (status, _) = raw(
        p.port,
        "GET http://admin.test/secret HTTP/1.1",
        "Host: www.test\r\n",
    )
    .await;
    assert_eq!(status, 400);
    // Both naming the same host (in another spelling): one authority, served.
    let (status, body) = raw(
        p.port,
        "GET http://WWW.test.:80/x HTTP/1.1",
        "Host: www.test\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream_host(&body).as_deref(), Some("www.test"));
    // Absolute-form naming the denied host: the denied route, whatever Host says.
    let (status, _) = raw(
        p.port,
        "GET http://admin.test/secret HTTP/1.1",
        "Host: admin.test\r\n",
    )
    .await;
    assert_eq!(status, 401);
    // User information in the target's authority is not a host: refused.
    let (status, _) = raw(
        p.port,
        "GET http://www.test@admin.test/secret HTTP/1.1",
        "Host: admin.test\r\n",
    )
    .await;
    assert_eq!(status, 400);
}

/// Two `Host` headers: 400 on the lean path (no body) and on hyper's path (a body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_headers_are_refused() {
    setup();
    let echo = Echo::start().await;
    let p = start(&echo, "").await;
    for (line, extra) in [
        ("GET /secret HTTP/1.1", ""),
        ("POST /secret HTTP/1.1", "Content-Length: 0\r\n"),
    ] {
        let (status, body) = raw(
            p.port,
            line,
            &format!("Host: www.test\r\nHost: admin.test\r\n{extra}"),
        )
        .await;
        assert_eq!(
            status,
            400,
            "{line} with two Host headers; the upstream saw {:?}",
            upstream_host(&body)
        );
    }
}

/// Other spellings of a host: a trailing dot, upper case, the default port. Each is the same
/// host as `admin.test` — matched by its route, and sent upstream in the canonical spelling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_a_host_matches_its_route() {
    setup();
    let echo = Echo::start().await;
    let p = start(&echo, "").await;
    for host in [
        "admin.test.",
        "ADMIN.Test",
        "admin.test:80",
        "Admin.Test.:80",
        "admin.test.:80",
    ] {
        for line in [
            "GET /secret HTTP/1.1",
            "GET http://admin.test/secret HTTP/1.1",
        ] {
            let (status, body) = raw(p.port, line, &format!("Host: {host}\r\n")).await;
            assert_eq!(
                status,
                401,
                "{line} / Host {host:?} is admin.test (denied); the upstream saw {:?}",
                upstream_host(&body)
            );
        }
    }
    for host in ["www.test.", "WWW.TEST", "www.test:80", "Www.Test.:80"] {
        let (status, body) = raw(p.port, "GET /x HTTP/1.1", &format!("Host: {host}\r\n")).await;
        assert_eq!(status, 200, "{host}: {body}");
        assert_eq!(
            upstream_host(&body).as_deref(),
            Some("www.test"),
            "Host {host:?}: the upstream gets the host the route matched"
        );
    }
    // A non-default port is kept (the route matches the host whatever the port).
    let (status, body) = raw(p.port, "GET /x HTTP/1.1", "Host: www.test:8080\r\n").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream_host(&body).as_deref(), Some("www.test:8080"));
    // Not a host at all: refused, not matched against the catch-all route.
    for bad in [
        "admin.test..",
        ".admin.test",
        "admin test",
        "admin.test/x",
        "user@admin.test",
        "admin.test:8o",
        "admin.test:99999",
        "admin%2etest",
    ] {
        let (status, body) = raw(p.port, "GET /x HTTP/1.1", &format!("Host: {bad}\r\n")).await;
        assert_eq!(
            status,
            400,
            "Host {bad:?}; the upstream saw {:?}",
            upstream_host(&body)
        );
    }
}

/// `/oauth2/auth` (forward auth) decides for the same canonical host: from the request's own
/// authority, or from `X-Forwarded-Host` only when the peer is a trusted proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_uses_one_canonical_host() {
    setup();
    let echo = Echo::start().await;
    // Not trusted: X-Forwarded-Host is ignored, the request's own host decides.
    let p = start(&echo, "").await;
    let (status, _) = raw(
        p.port,
        "GET /oauth2/auth HTTP/1.1",
        "Host: www.test\r\nX-Forwarded-Host: admin.test\r\n",
    )
    .await;
    assert_eq!(status, 200, "X-Forwarded-Host from an untrusted peer");
    let (status, _) = raw(
        p.port,
        "GET /oauth2/auth HTTP/1.1",
        "Host: admin.test.\r\nX-Forwarded-Host: www.test\r\n",
    )
    .await;
    assert_eq!(status, 401, "the own host admin.test. is admin.test");
    let (status, _) = raw(
        p.port,
        "GET http://www.test/oauth2/auth HTTP/1.1",
        "Host: admin.test\r\n",
    )
    .await;
    assert_eq!(status, 400, "two authorities on /oauth2/auth");
    let (status, _) = raw(
        p.port,
        "GET /oauth2/auth HTTP/1.1",
        "Host: www.test\r\nHost: admin.test\r\n",
    )
    .await;
    assert_eq!(status, 400, "two Host headers on /oauth2/auth");
    drop(p);

    // Trusted: X-Forwarded-Host decides, compared canonically.
    let p = start(&echo, "trusted_proxies = [\"127.0.0.1/32\"]").await;
    for (xfh, want) in [
        ("admin.test", 401),
        ("admin.test.", 401),
        ("ADMIN.TEST:443", 401),
        ("www.test", 200),
        ("www.test.", 200),
    ] {
        let (status, _) = raw(
            p.port,
            "GET /oauth2/auth HTTP/1.1",
            &format!("Host: 127.0.0.1\r\nX-Forwarded-Host: {xfh}\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Uri: /secret\r\n"),
        )
        .await;
        assert_eq!(status, want, "trusted X-Forwarded-Host {xfh:?}");
    }
    for bad in ["admin.test..", "www.test, admin.test", "admin test"] {
        let (status, _) = raw(
            p.port,
            "GET /oauth2/auth HTTP/1.1",
            &format!("Host: 127.0.0.1\r\nX-Forwarded-Host: {bad}\r\nX-Forwarded-Uri: /secret\r\n"),
        )
        .await;
        assert_eq!(status, 400, "trusted X-Forwarded-Host {bad:?}");
    }
    let (status, _) = raw(
        p.port,
        "GET /oauth2/auth HTTP/1.1",
        "Host: 127.0.0.1\r\nX-Forwarded-Host: www.test\r\nX-Forwarded-Host: admin.test\r\n",
    )
    .await;
    assert_eq!(status, 400, "two X-Forwarded-Host headers");
}

/// `/oauth2/start` picks the provider of the route `rd` names — its host included, compared
/// canonically: on `admin.test.` a route that offers one provider starts that provider's sign-in
/// (no chooser listing the others).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_start_uses_the_route_of_the_canonical_host() {
    setup();
    let echo = Echo::start().await;
    let (port, admin) = Proxy::ports();
    let base = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(
        serde_json::json!([Idp::client_for(&base, serde_json::json!({}))]),
        3600,
    );
    let provider = |name: &str| {
        format!(
            "[providers.{name}]\nissuer = \"{}\"\nclient_id = \"portcullis\"\nclient_secret = \"{CLIENT_SECRET}\"\n",
            idp.issuer
        )
    };
    let cfg = format!(
        r#"
public_url = "{base}"
[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
[session]
secrets = ["{SECRET}"]
{corp}{other}
[[routes]]
host = "admin.test"
path = "/"
upstream = "{echo}"
provider = "corp"

[[routes]]
path = "/"
upstream = "{echo}"
providers = ["corp", "other"]
"#,
        corp = provider("corp"),
        other = provider("other"),
        echo = echo.url()
    );
    let p = Proxy::start(port, admin, &cfg).await;
    for host in ["admin.test", "ADMIN.test.", "admin.test:80"] {
        let (status, text) = raw(
            p.port,
            "GET /oauth2/start?rd=/x HTTP/1.1",
            &format!("Host: {host}\r\n"),
        )
        .await;
        assert_eq!(
            status, 302,
            "Host {host:?}: the admin route's one provider: {text}"
        );
    }
    let (status, text) = raw(
        p.port,
        "GET /oauth2/start?rd=http://admin.test./x HTTP/1.1",
        "Host: www.test\r\n",
    )
    .await;
    // `rd` on another origin is replaced by `/`, whose route (on www.test) offers a chooser.
    assert_eq!(status, 200, "{text}");
    let (status, text) = raw(
        p.port,
        "GET /oauth2/start?rd=/x HTTP/1.1",
        "Host: www.test\r\n",
    )
    .await;
    assert_eq!(status, 200, "the catch-all route offers a chooser: {text}");
}
