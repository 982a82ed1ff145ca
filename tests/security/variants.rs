//! Variants of the 2026-12-07 review's findings, held against the security invariants as
//! written (not against the one input the review tried): other spellings of a host, HTTP/2,
//! other providers' claim shapes, larger floods, other control characters. Each case asserts
//! the invariant; every load loop is bounded in count and in time.
//!
//! - One authority per request: Host spellings, absolute- and authority-form targets, HTTP/2
//!   `:authority`, a trusted proxy's `X-Forwarded-Host` (inline and forward auth).
//! - A token is used only for what it is; revocation covers every credential (bearer tokens
//!   with an `iat` from the future, a fractional or a textual `iat`).
//! - An email is identity only when verified: `email_verified` in other spellings.
//! - Unauthenticated work is bounded: 1,000 concurrent bad sign-ins from one address, a burst
//!   of wrong passwords for one user, a sign-up flood aimed at one inbox.
//! - What is printed is escaped: C1 controls (U+0085, U+009B CSI) and bidi overrides.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{self, Echo, Idp, Proxy};
use crate::pool_support::{self, Backend, Server};

fn setup() {
    portcullis::install_crypto();
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ------------------------------------------------------------------------ one authority

/// Writes one request head as given (request line and headers; `Connection: close` added) and
/// returns the status and the body.
async fn raw(port: u16, request_line: &str, headers: &str) -> (u16, String) {
    let req = format!("{request_line}\r\n{headers}Connection: close\r\n\r\n");
    let (status, text) = harness::raw_exchange(port, &req).await;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// One header the echo upstream received (first value), when the answer came from it.
fn upstream_header(body: &str, name: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    v["headers"][name][0].as_str().map(str::to_string)
}

/// The canonical name of a host as the invariant defines it: lower case, one trailing dot
/// and the default port (80 here) removed.
fn canonical(host: &str) -> String {
    let h = host.trim().to_ascii_lowercase();
    let h = h.strip_suffix(":80").unwrap_or(&h);
    h.strip_suffix('.').unwrap_or(h).to_string()
}

/// Routes (tests/proxy/harness.rs `host_routes_proxy`): `www.test` allow, `admin.test` deny
/// (401), anything else allow. An answer for an `admin.test` spelling is 400 (refused) or 401
/// (matched to its route); an answer that reached the upstream must carry the matched host.
fn assert_admin_refused(case: &str, status: u16, body: &str) {
    assert!(
        status == 400 || status == 401,
        "{case}: {status}, never the catch-all or www.test; the upstream saw Host {:?}",
        upstream_header(body, "host")
    );
}

/// Host header spellings of `admin.test` (case, trailing dot, default port, both) stay on
/// its route; spellings that are no host (percent-encoded, IDN look-alikes, a comma list,
/// user information, empty labels) are 400, never a hostless route served with that Host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_spellings_never_leave_their_route() {
    setup();
    let echo = Echo::start().await;
    let p = harness::host_routes_proxy(&echo.url(), "").await;
    for host in [
        "ADMIN.TEST:80",
        "admin.test.:80",
        "Admin.Test.",
        "admin.test:080",
        "admin.test:",
        "admin.test:443",
        "ADMIN.test.:8080",
    ] {
        let (status, body) =
            raw(p.port, "GET /secret HTTP/1.1", &format!("Host: {host}\r\n")).await;
        assert_eq!(
            status,
            401,
            "Host {host:?} must match the admin.test route; the upstream saw {:?}",
            upstream_header(&body, "host")
        );
    }
    for host in [
        "admin%2etest",
        "admin.test%00",
        "admin.test..",
        ".admin.test",
        "admin\u{3002}test",
        "\u{430}dmin.test",
        "ADM\u{130}N.TEST",
        "admin.test, www.test",
        "x@admin.test",
        "admin.test:80:80",
        "admin.test:65536",
        "[admin.test]",
    ] {
        let (status, body) =
            raw(p.port, "GET /secret HTTP/1.1", &format!("Host: {host}\r\n")).await;
        assert_eq!(
            status,
            400,
            "Host {host:?} is not a host: 400, not routed; the upstream saw {:?}",
            upstream_header(&body, "host")
        );
    }
    // What the upstream receives is the host the route matched, canonical.
    let (status, body) = raw(p.port, "GET /x HTTP/1.1", "Host: WWW.Test.:80\r\n").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream_header(&body, "host").as_deref(), Some("www.test"));
    assert_eq!(
        upstream_header(&body, "x-forwarded-host").as_deref(),
        Some("www.test"),
        "X-Forwarded-Host names the routed host"
    );
}

/// Absolute-form and authority-form targets: user information, an explicit port, an upper
/// case scheme, an empty `Host`, CONNECT. One authority or 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_and_authority_form_targets_have_one_authority() {
    setup();
    let echo = Echo::start().await;
    let p = harness::host_routes_proxy(&echo.url(), "").await;
    for (line, headers) in [
        (
            "GET http://x@www.test/secret HTTP/1.1",
            "Host: admin.test\r\n",
        ),
        (
            "GET http://www.test@admin.test/secret HTTP/1.1",
            "Host: www.test\r\n",
        ),
        (
            "GET http://www.test:80@admin.test/secret HTTP/1.1",
            "Host: www.test\r\n",
        ),
        ("GET http://admin.test/secret HTTP/1.1", "Host: \r\n"),
        (
            "GET http://admin.test:443/secret HTTP/1.1",
            "Host: admin.test:443\r\n",
        ),
        (
            "GET HTTP://ADMIN.TEST./secret HTTP/1.1",
            "Host: www.test\r\n",
        ),
        ("GET http://admin.test/secret HTTP/1.1", ""),
        ("CONNECT admin.test:80 HTTP/1.1", "Host: www.test\r\n"),
        ("CONNECT www.test:80 HTTP/1.1", "Host: admin.test\r\n"),
    ] {
        let (status, body) = raw(p.port, line, headers).await;
        // 0: closed without an answer (refused too).
        assert!(
            [0, 400, 401, 405, 501].contains(&status),
            "{line} + {headers:?}: {status}, an admin.test authority must never be served \
             (the upstream saw Host {:?})",
            upstream_header(&body, "host")
        );
    }
    // A target naming www.test in another spelling than Host: one host, served as www.test.
    let (status, body) = raw(
        p.port,
        "GET http://WWW.TEST.:80/x HTTP/1.1",
        "Host: www.test\r\n",
    )
    .await;
    if status == 200 {
        assert_eq!(upstream_header(&body, "host").as_deref(), Some("www.test"));
    } else {
        assert_eq!(status, 400, "{body}");
    }
}

/// Two `Host` headers are 400 even when they are equal or differ only in case or spelling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_host_headers_even_identical_are_refused() {
    setup();
    let echo = Echo::start().await;
    let p = harness::host_routes_proxy(&echo.url(), "").await;
    for headers in [
        "Host: www.test\r\nHost: www.test\r\n",
        "Host: www.test\r\nhost: WWW.TEST.\r\n",
        "Host: www.test\r\nHOST: admin.test\r\n",
        "Host: admin.test\r\nHost: www.test\r\n",
    ] {
        let (status, body) = raw(p.port, "GET /x HTTP/1.1", headers).await;
        assert_eq!(
            status,
            400,
            "{headers:?}: two Host headers must be 400; the upstream saw {:?}",
            upstream_header(&body, "host")
        );
    }
}

/// Forward auth from a trusted proxy: `X-Forwarded-Host` in other spellings of admin.test
/// is decided by the admin.test route; a comma list (proxies that append) or two fields is
/// 400, never the allowed www.test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_forwarded_host_variants_keep_one_authority() {
    setup();
    let echo = Echo::start().await;
    let p = harness::host_routes_proxy(&echo.url(), "trusted_proxies = [\"127.0.0.1/32\"]").await;
    let cases: [(&str, &[u16]); 9] = [
        ("X-Forwarded-Host: ADMIN.TEST.:80\r\n", &[401]),
        (
            "X-Forwarded-Host: admin.test:443\r\nX-Forwarded-Proto: https\r\n",
            &[401],
        ),
        ("X-Forwarded-Host: admin.test:8443\r\n", &[401]),
        ("X-Forwarded-Host:  admin.test \r\n", &[401]),
        ("X-Forwarded-Host: admin.test, www.test\r\n", &[400, 401]),
        ("X-Forwarded-Host: www.test, admin.test\r\n", &[400, 401]),
        (
            "X-Forwarded-Host: www.test\r\nX-Forwarded-Host: admin.test\r\n",
            &[400, 401],
        ),
        ("X-Forwarded-Host: admin%2etest\r\n", &[400]),
        ("X-Forwarded-Host: x@admin.test\r\n", &[400]),
    ];
    for (xfh, want) in cases {
        let headers = format!(
            "Host: www.test\r\n{xfh}X-Forwarded-Uri: /secret\r\nAccept: application/json\r\n"
        );
        let (status, body) = raw(p.port, "GET /oauth2/auth HTTP/1.1", &headers).await;
        assert!(
            want.contains(&status),
            "forward auth with {xfh:?}: {status} (want one of {want:?}): {body}"
        );
    }
}

/// Forward auth from a trusted proxy that names the original URL in full (`X-Original-URL:
/// http://admin.test/secret`, as ingress-nginx sends it): its authority is the request's; a
/// decision for another host (`Host`/`X-Forwarded-Host: www.test`, allowed) is never given for
/// it — 400 when they disagree, or the admin.test route's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_original_url_authority_is_the_decided_host() {
    setup();
    let echo = Echo::start().await;
    let p = harness::host_routes_proxy(&echo.url(), "trusted_proxies = [\"127.0.0.1/32\"]").await;
    for headers in [
        "Host: www.test\r\nX-Original-URL: http://admin.test/secret\r\n",
        "Host: www.test\r\nX-Forwarded-Host: www.test\r\nX-Original-URL: http://admin.test/secret\r\n",
        "Host: www.test\r\nX-Original-URL: http://ADMIN.TEST.:80/secret\r\n",
    ] {
        let headers = format!("{headers}Accept: application/json\r\n");
        let (status, body) = raw(p.port, "GET /oauth2/auth HTTP/1.1", &headers).await;
        assert!(
            status == 400 || status == 401,
            "forward auth with {headers:?}: {status} — decided as www.test: {body}"
        );
    }
}

/// Inline proxying behind a trusted proxy: the authority the upstream is told (`Host`, and
/// the trusted proxy's `X-Forwarded-Host`, which the upstream is handed) is the one the route
/// was matched on. A trusted `X-Forwarded-Host: admin.test` with `Host: www.test` is either
/// routed as admin.test, refused, or replaced — never routed as www.test (allow) and handed to
/// the upstream as admin.test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_trusted_forwarded_host_is_the_routed_host() {
    setup();
    let echo = Echo::start().await;
    let p = harness::host_routes_proxy(&echo.url(), "trusted_proxies = [\"127.0.0.1/32\"]").await;
    let (status, body) = raw(
        p.port,
        "GET /secret HTTP/1.1",
        "Host: www.test\r\nX-Forwarded-Host: admin.test\r\n",
    )
    .await;
    if status == 200 {
        let xfh = upstream_header(&body, "x-forwarded-host").unwrap_or_default();
        assert_eq!(
            canonical(&xfh),
            "www.test",
            "routed as www.test (allow) but the upstream was told X-Forwarded-Host {xfh:?} \
             (Host {:?})",
            upstream_header(&body, "host")
        );
    } else {
        assert!(
            status == 400 || status == 401,
            "unexpected {status}: {body}"
        );
    }
}

/// One h2 request on a fresh prior-knowledge connection; `Err` when the request is refused at
/// the protocol level (a stream or connection error: not served either).
async fn h2_get(port: u16, uri: &str, hosts: &[&str]) -> Result<(u16, String), String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let (client, conn) = h2::client::handshake(tcp)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut client = client.ready().await.map_err(|e| e.to_string())?;
    let mut req = http::Request::get(uri);
    for h in hosts {
        req = req.header("host", *h);
    }
    let req = req.body(()).map_err(|e| e.to_string())?;
    let (resp, _) = client.send_request(req, true).map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// HTTP/2: `:authority` with user information, `:scheme https` with its default port, a
/// `host` field naming the same host in another spelling, two `host` fields, and a `host` field
/// that differs only by port. One authority or refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_authority_variants_keep_one_authority() {
    setup();
    let echo = Echo::start().await;
    let p = harness::host_routes_proxy(&echo.url(), "").await;
    let port = p.port;
    let admin_cases: [(&str, &[&str]); 6] = [
        ("http://ADMIN.TEST.:80/x", &["admin.test"]),
        ("https://admin.test:443/x", &[]),
        ("http://admin.test/x", &["admin.test."]),
        ("http://www.test/x", &["www.test", "admin.test"]),
        ("http://admin.test/x", &["admin.test", "www.test"]),
        ("http://www.test/x", &["admin.test:80"]),
    ];
    for (uri, hosts) in admin_cases {
        // An `Err` is a refusal at the protocol level.
        if let Ok((status, body)) = h2_get(port, uri, hosts).await {
            assert_admin_refused(&format!("h2 {uri} host {hosts:?}"), status, &body);
        }
    }
    for (uri, hosts) in [
        ("http://x@www.test/x", &["admin.test"][..]),
        ("http://www.test/x", &["www.test:8080"][..]),
        ("http://www.test/x", &["www.test", "www.test"][..]),
    ] {
        if let Ok((status, body)) = h2_get(port, uri, hosts).await {
            assert_eq!(
                status,
                400,
                "h2 {uri} with host {hosts:?}; the upstream saw {:?}",
                upstream_header(&body, "host")
            );
        }
    }
    let (status, body) = h2_get(port, "http://WWW.test.:80/x", &["www.test"])
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream_header(&body, "host").as_deref(), Some("www.test"));
}

// ------------------------------------------------------------------ tokens and identity

const AUDIENCE: &str = "api://variants";
const ADMIN_TOKEN: &str = "admin-token-variants-0123456789";

/// The real binary in front of an echo upstream, signed in through the real oidc-provider
/// with extra accounts (`IDP_ACCOUNTS`).
struct IdpStack {
    idp: Idp,
    _echo: Echo,
    proxy: Proxy,
}

async fn idp_stack(accounts: Value) -> IdpStack {
    setup();
    let (port, admin) = Proxy::ports();
    let base = format!("http://127.0.0.1:{port}");
    let idp = Idp::start_with_env(
        json!([Idp::client_for(&base, json!({}))]),
        3600,
        &[("IDP_ACCOUNTS", &accounts.to_string())],
    );
    let echo = Echo::start().await;
    let cfg = format!(
        r#"
public_url = "{base}"

[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
admin_token = "{ADMIN_TOKEN}"
workers = 1

[session]
secrets = ["{secret}"]

[log]
level = "debug"

[providers.idp]
issuer = "{issuer}"
client_id = "portcullis"
client_secret = "{client_secret}"

[[routes]]
path = "/api/"
upstream = "{echo}"
accept_bearer = true
bearer_audience = ["{AUDIENCE}"]

[[routes]]
path = "/corp/"
upstream = "{echo}"
allow_email_domains = ["corp.example"]

[[routes]]
path = "/"
upstream = "{echo}"
"#,
        secret = harness::SECRET,
        client_secret = harness::CLIENT_SECRET,
        issuer = idp.issuer,
        echo = echo.url(),
    );
    let proxy = Proxy::start(port, admin, &cfg).await;
    IdpStack {
        idp,
        _echo: echo,
        proxy,
    }
}

fn access_claims(idp: &Idp, sub: &str, jti: &str) -> Value {
    let t = now();
    json!({
        "iss": idp.issuer, "sub": sub, "aud": AUDIENCE, "scope": "orders/read",
        "client_id": "some-app", "iat": t, "exp": t + 300, "jti": jti,
    })
}

fn set(mut claims: Value, key: &str, v: Value) -> Value {
    claims[key] = v;
    claims
}

async fn bearer_status(base: &str, token: &str) -> u16 {
    harness::bare_client()
        .get(format!("{base}/api/x"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Other typings and claim shapes of ID and logout tokens (case of `typ`, a `typ` that is not
/// a string, `at+jwt` carrying `events` or `token_use: "id"`, `nonce`/`at_hash`/`events` present
/// but empty or null, `token_use` in upper case): 401, never the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_typing_and_claim_shape_variants_are_refused() {
    let s = idp_stack(json!({})).await;
    let (idp, base) = (&s.idp, s.proxy.base.as_str());
    let ev = json!({"http://schemas.openid.net/event/backchannel-logout": {}});
    let a = |j: &str| access_claims(idp, "alice", j);
    let refused: Vec<(&str, Value, Value)> = vec![
        (
            "typ Logout+JWT",
            json!({"typ": "Logout+JWT"}),
            set(a("t1"), "events", ev.clone()),
        ),
        (
            "typ application/LOGOUT+jwt",
            json!({"typ": "application/LOGOUT+jwt"}),
            a("t2"),
        ),
        ("typ a number", json!({"typ": 1}), a("t3")),
        (
            "typ null",
            json!({"typ": null}),
            set(a("t3b"), "nonce", json!("n")),
        ),
        (
            "at+jwt with events",
            json!({"typ": "at+jwt"}),
            set(a("t4"), "events", ev.clone()),
        ),
        (
            "at+jwt with token_use id",
            json!({"typ": "at+jwt"}),
            set(a("t5"), "token_use", json!("id")),
        ),
        (
            "JWT with token_use ID",
            json!({"typ": "JWT"}),
            set(a("t6"), "token_use", json!("ID")),
        ),
        (
            "token_use access with a nonce",
            json!({"typ": "JWT"}),
            set(
                set(a("t7"), "token_use", json!("access")),
                "nonce",
                json!("n"),
            ),
        ),
        ("empty nonce", json!({}), set(a("t8"), "nonce", json!(""))),
        ("null nonce", json!({}), set(a("t9"), "nonce", Value::Null)),
        (
            "null at_hash",
            json!({}),
            set(a("t10"), "at_hash", Value::Null),
        ),
        (
            "empty events",
            json!({}),
            set(a("t11"), "events", json!({})),
        ),
        (
            "token_use a list",
            json!({}),
            set(a("t12"), "token_use", json!(["access"])),
        ),
        (
            "token_use empty",
            json!({}),
            set(a("t13"), "token_use", json!("")),
        ),
    ];
    for (case, header, claims) in refused {
        let token = idp.sign(header, claims).await;
        assert_eq!(bearer_status(base, &token).await, 401, "{case}");
    }
    // Controls: access tokens in the accepted typings pass.
    for (case, header) in [
        ("typ AT+JWT", json!({"typ": "AT+JWT"})),
        (
            "typ application/at+jwt",
            json!({"typ": "application/at+jwt"}),
        ),
        ("typ jwt", json!({"typ": "jwt"})),
    ] {
        let token = idp.sign(header, a(&format!("ok-{case}"))).await;
        assert_eq!(bearer_status(base, &token).await, 200, "{case}");
    }
}

/// Revocation ends the user's bearer tokens issued before it, whatever their `iat` says: a
/// token minted before the revocation with an `iat` an hour ahead (an IdP clock ahead), or a
/// fractional or textual `iat`, is refused within 5 s of revoking the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_issued_before_a_revocation_whatever_their_iat() {
    let s = idp_stack(json!({})).await;
    let (idp, base) = (&s.idp, s.proxy.base.as_str());
    let t = now();
    let c = |jti: &str| access_claims(idp, "rev-user", jti);
    let tokens = [
        ("plain iat", idp.sign(json!({}), c("r1")).await),
        (
            "iat an hour ahead",
            idp.sign(
                json!({}),
                set(set(c("r2"), "iat", json!(t + 3600)), "exp", json!(t + 7200)),
            )
            .await,
        ),
        (
            "fractional iat",
            idp.sign(json!({}), set(c("r3"), "iat", json!(t as f64 + 0.5)))
                .await,
        ),
        (
            "textual iat ahead",
            idp.sign(
                json!({}),
                set(c("r4"), "iat", json!((t + 3600).to_string())),
            )
            .await,
        ),
    ];
    let mut live: Vec<(&str, &String)> = Vec::new();
    for (case, tok) in &tokens {
        // A token refused before the revocation already holds the invariant.
        if bearer_status(base, tok).await == 200 {
            live.push((*case, tok));
        }
    }
    assert!(
        live.iter().any(|(c, _)| *c == "plain iat"),
        "the plain token must work before the revocation"
    );
    let r = reqwest::Client::new()
        .post(format!("{}/sessions/revoke", s.proxy.admin))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"provider": "idp", "sub": "rev-user"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let start = Instant::now();
    let mut still: Vec<&str> = Vec::new();
    loop {
        still.clear();
        for (case, tok) in &live {
            if bearer_status(base, tok).await != 401 {
                still.push(*case);
            }
        }
        if still.is_empty() || start.elapsed() > Duration::from_secs(6) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        still.is_empty(),
        "tokens issued before the revocation still pass 6 s after it: {still:?}"
    );
}

/// `email_verified: false` in other providers' spellings ("False", "FALSE", 0, "0") is not a
/// verified address: no `X-Forwarded-Email`, no `allow_email_domains` match, and
/// `/oauth2/auth`'s answer carries no email either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_email_in_other_spellings_is_not_identity() {
    let spellings = [
        ("ev-lower", json!("false")),
        ("ev-cap", json!("False")),
        ("ev-upper", json!("FALSE")),
        ("ev-zero", json!(0)),
        ("ev-zero-text", json!("0")),
    ];
    let mut accounts = serde_json::Map::new();
    for (id, flag) in &spellings {
        accounts.insert(
            (*id).into(),
            json!({"sub": id, "email": "victim@corp.example", "email_verified": flag, "groups": []}),
        );
    }
    let s = idp_stack(Value::Object(accounts)).await;
    let mut failures = Vec::new();
    for (id, flag) in &spellings {
        let c = harness::client();
        let cb = harness::login(&c, &s.proxy, "/app", id).await;
        if cb.status() != 302 {
            // Sign-in refused: the address reaches nobody (fail closed).
            let logs = s.proxy.logs();
            eprintln!(
                "email_verified {flag}: sign-in answered {}; log tail: {}",
                cb.status(),
                &logs[logs.len().saturating_sub(1500)..]
            );
            continue;
        }
        let r = c.get(format!("{}/app", s.proxy.base)).send().await.unwrap();
        let v = harness::echoed(r).await;
        if let Some(e) = harness::header(&v, "x-forwarded-email") {
            failures.push(format!(
                "email_verified {flag}: X-Forwarded-Email {e:?} sent"
            ));
        }
        let corp = c
            .get(format!("{}/corp/x", s.proxy.base))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if corp == 200 {
            failures.push(format!(
                "email_verified {flag}: allow_email_domains matched"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// -------------------------------------------------------------------- unauthenticated work

/// The sign-in form of a fresh browser: (action, csrf token, the browser).
async fn login_form(s: &Server) -> (String, String, reqwest::Client) {
    let c = pool_support::browser();
    let page = c
        .get(s.url("/oauth2/pool/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (action, csrf) = pool_support::form(&page, &s.base, "/login");
    (action, csrf, c)
}

/// Posts `n` sign-ins at once (names from `name(i)`), each bounded to 90 s; returns the
/// answers counted by status (0 = the connection failed).
async fn burst(
    s: &Server,
    n: usize,
    name: impl Fn(usize) -> String,
    password: &str,
) -> BTreeMap<u16, usize> {
    burst_with(s, n, name, password, |_| None).await
}

/// [`burst`], request `i` carrying `X-Forwarded-For: xff(i)` when given.
async fn burst_with(
    s: &Server,
    n: usize,
    name: impl Fn(usize) -> String,
    password: &str,
    xff: impl Fn(usize) -> Option<String>,
) -> BTreeMap<u16, usize> {
    let (action, csrf, c) = login_form(s).await;
    let mut tasks = Vec::new();
    for i in 0..n {
        let (c, action, csrf, user, pw, xff) = (
            c.clone(),
            action.clone(),
            csrf.clone(),
            name(i),
            password.to_string(),
            xff(i),
        );
        tasks.push(tokio::spawn(async move {
            let mut req = c.post(&action);
            if let Some(x) = xff {
                req = req.header("x-forwarded-for", x);
            }
            let send = req
                .form(&[
                    ("csrf_token", csrf.as_str()),
                    ("username", user.as_str()),
                    ("password", pw.as_str()),
                ])
                .send();
            match tokio::time::timeout(Duration::from_secs(90), send).await {
                Ok(Ok(r)) => {
                    let status = r.status().as_u16();
                    assert!(
                        status != 503 || r.headers().contains_key("retry-after"),
                        "503 without Retry-After"
                    );
                    status
                }
                Ok(Err(_)) => 0,
                Err(_) => 1,
            }
        }));
    }
    let mut counts = BTreeMap::new();
    for t in tasks {
        *counts.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    counts
}

/// 1,000 concurrent sign-ins with unknown names from one address: all answered within a
/// bounded time, at most `ip_max_attempts` hashes verified (401), the rest 429 or 503 with
/// `Retry-After`; the server still answers afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_bad_sign_ins_are_bounded() {
    let s = Server::start(
        Backend::Sqlite,
        "lockout = { ip_max_attempts = 10, initial = \"10m\" }",
    )
    .await;
    let start = Instant::now();
    let counts = burst(&s, 1000, |i| format!("nobody-{i}"), "Wrong-Password-1").await;
    let took = start.elapsed();
    eprintln!("1000 concurrent bad sign-ins: {counts:?} in {took:?}");
    assert!(
        !counts.contains_key(&1),
        "a sign-in hung for 90 s: {counts:?}"
    );
    assert!(took < Duration::from_secs(90), "took {took:?}");
    let verified = counts.get(&401).copied().unwrap_or(0);
    assert!(
        verified <= 10,
        "{verified} of 1000 concurrent sign-ins were verified (ip_max_attempts = 10): {counts:?}"
    );
    let odd: Vec<_> = counts
        .keys()
        .filter(|k| ![0, 401, 429, 503].contains(*k))
        .collect();
    assert!(odd.is_empty(), "unexpected answers: {counts:?}");
    let r = pool_support::browser()
        .get(s.url("/oauth2/pool/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the pool answers after the flood");
}

/// Behind a trusted proxy that appends the client as `address:port` (as Azure Application
/// Gateway does), the per-address limit still counts the client: entries a client forged in
/// front of it (one new address per request) never become the throttling key. 100 concurrent
/// bad sign-ins from one client: at most `ip_max_attempts` verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_forwarded_for_cannot_rotate_the_address_limit() {
    let mut s = Server::start(
        Backend::Sqlite,
        "lockout = { ip_max_attempts = 10, initial = \"10m\" }",
    )
    .await;
    s.kill9();
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    let cfg = cfg.replacen(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
        1,
    );
    std::fs::write(&s.config, cfg).unwrap();
    s.spawn().await;
    let counts = burst_with(
        &s,
        100,
        |i| format!("nobody-{i}"),
        "Wrong-Password-1",
        |i| {
            Some(format!(
                "10.9.{}.{}, 203.0.113.7:4711",
                i / 200,
                i % 200 + 1
            ))
        },
    )
    .await;
    eprintln!("100 bad sign-ins, forged X-Forwarded-For, client with a port: {counts:?}");
    let verified = counts.get(&401).copied().unwrap_or(0);
    assert!(
        verified <= 10,
        "{verified} of 100 sign-ins from one client were verified (ip_max_attempts = 10): the \
         forged X-Forwarded-For entries became the throttling key: {counts:?}"
    );
}

/// 150 concurrent wrong passwords for one user, in several spellings of its name, with a
/// generous address limit: no more than the user's `max_attempts` (5) are verified, and the
/// right password is then refused (locked) as after a sequence of five failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_passwords_cannot_pass_one_users_lockout() {
    let s = Server::start(
        Backend::Sqlite,
        "lockout = { ip_max_attempts = 10000, max_attempts = 5, initial = \"10m\" }",
    )
    .await;
    pool_support::create_user(&s, "target", "target@example.com");
    let names = ["target", "TARGET", " target ", "Target", "\u{ff54}arget"];
    let counts = burst(
        &s,
        150,
        |i| names[i % names.len()].to_string(),
        "Wrong-Password-1",
    )
    .await;
    eprintln!("150 concurrent wrong passwords for one user: {counts:?}");
    let verified = counts.get(&401).copied().unwrap_or(0);
    assert!(
        verified <= 5,
        "{verified} wrong passwords verified for one user (max_attempts = 5): {counts:?}"
    );
    // Then a sequence: the burst's verified failures and the sequence's together stay within
    // what a sequence alone could make, and the right password is refused once locked.
    let mut more = 0;
    for _ in 0..8 {
        let st = burst(&s, 1, |_| "target".to_string(), "Wrong-Password-2").await;
        if st.contains_key(&429) {
            break;
        }
        more += st.get(&401).copied().unwrap_or(0);
    }
    assert!(
        verified + more <= 5,
        "{verified} verified in the burst, then {more} more in a row (max_attempts = 5)"
    );
    let st = burst(&s, 1, |_| "target".to_string(), pool_support::PASSWORD).await;
    assert_eq!(
        st.get(&429),
        Some(&1),
        "the right password after five failures must be refused (locked): {st:?}"
    );
}

/// Sign-ups under many names with one victim's address: each sends a code to that inbox. An
/// inbox cannot be flooded (codes are bounded per destination as they are per user: at most
/// 10 an hour), whoever signs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_cannot_flood_one_inbox() {
    let s = Server::start(Backend::Sqlite, "").await;
    let n = 16;
    let mut statuses = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    for i in 0..n {
        let c = pool_support::browser();
        let page = c
            .get(s.url("/oauth2/pool/signup"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let (action, csrf) = pool_support::form(&page, &s.base, "/signup");
        let r = c
            .post(&action)
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("username", &format!("inbox-flood-{i}")),
                ("email", "inbox-victim@example.com"),
                ("password", pool_support::PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        *statuses.entry(r.status().as_u16()).or_insert(0) += 1;
        assert!(Instant::now() < deadline, "sign-ups took over 90 s");
    }
    // Codes are sent in the background: give them a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent: usize = (0..n)
        .map(|i| {
            let name = format!("inbox-flood-{i}");
            ["signup", "confirm", "verify_email", "confirm_signup"]
                .iter()
                .map(|p| s.codes(&name, p).len())
                .sum::<usize>()
        })
        .sum();
    let log = s.log_text();
    let to_victim = log
        .lines()
        .filter(|l| l.contains("inbox-flood-") && l.contains("\"code\""))
        .count();
    eprintln!("{n} sign-ups with one address: {statuses:?}; codes {sent} ({to_victim} lines)");
    assert!(
        sent.max(to_victim) <= 10,
        "{} codes sent to one address by {n} sign-ups ({statuses:?})",
        sent.max(to_victim)
    );
}

// ------------------------------------------------------------------------------ escaping

/// C1 controls (U+0085 NEL, U+009B CSI — a terminal escape on its own) and bidi overrides in
/// a target reach neither `pool audit`'s text output nor the server's log raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c1_controls_and_bidi_overrides_are_escaped_in_audit_and_log() {
    let s = Server::start(Backend::Sqlite, "").await;
    let crafted = "ghost%C2%9B8m%C2%85forged%E2%80%AEdesrever%E2%81%A6x";
    let r = reqwest::Client::new()
        .post(format!("{}/pool/users/{crafted}/disable", s.admin))
        .bearer_auth(pool_support::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (ok, out, err) = s.cli(&["audit"]);
    assert!(ok, "{err}");
    assert!(out.contains("ghost"), "the entry is listed: {out:?}");
    let bad = ['\u{9b}', '\u{85}', '\u{202e}', '\u{2066}'];
    let raw_in_out: Vec<_> = bad.iter().filter(|c| out.contains(**c)).collect();
    assert!(
        raw_in_out.is_empty(),
        "pool audit printed raw {raw_in_out:?}: {out:?}"
    );
    assert_eq!(out.lines().count(), 1, "one entry, one line: {out:?}");
    let log = s.log_text();
    let raw_in_log: Vec<_> = bad.iter().filter(|c| log.contains(**c)).collect();
    assert!(
        raw_in_log.is_empty(),
        "the server log carries raw {raw_in_log:?}"
    );
}

// -------------------------------------------------------------------------- federation

const FED_SECRET: &str = "federation-client-secret-variants";

/// The test IdP (client `pool-link`, back to the pool's federation callback) with `accounts`,
/// and a pool whose provider `corp` links by email (flags mapped).
async fn federation(accounts: Value) -> (Idp, Server) {
    setup();
    let port = pool_support::free_port();
    let callback = format!("http://127.0.0.1:{port}/oauth2/pool/federation/callback");
    let idp = Idp::start_with_env(
        json!([{
            "client_id": "pool-link",
            "client_secret": FED_SECRET,
            "redirect_uris": [callback],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }]),
        3600,
        &[("IDP_ACCOUNTS", &accounts.to_string())],
    );
    let pool_extra = format!(
        "[[pool.identity_providers]]\nname = \"corp\"\ndisplay_name = \"Corp SSO\"\nissuer = \"{i}\"\n\
         client_id = \"pool-link\"\nclient_secret = \"{FED_SECRET}\"\nlink_by_email = true\n\
         attribute_mapping = {{ email = \"email\", email_verified = \"email_verified\", name = \"name\" }}\n",
        i = idp.issuer
    );
    let s = Server::start_on(Backend::Sqlite, &pool_extra, false, port).await;
    (idp, s)
}

/// From the app through "Continue with Corp SSO" and the IdP as `user`, then back to the
/// app. `Ok(the claims of x-amzn-oidc-data)` when signed in, `Err(status)` when the pool
/// refused.
async fn federated_sign_in(s: &Server, user: &str) -> Result<Value, u16> {
    use base64::Engine;
    let c = pool_support::browser();
    let (r, _) = pool_support::follow(&c, &s.base, s.url("/app")).await;
    let html = r.text().await.unwrap();
    let i = html
        .find("Continue with Corp SSO")
        .expect("the provider button");
    let start = html[..i].rfind("href=\"").unwrap() + 6;
    let end = start + html[start..].find('"').unwrap();
    let mut url = pool_support::absolute(&s.base, &pool_support::unescape(&html[start..end]));
    let stop = s.url("/oauth2/pool/federation/callback");
    for _ in 0..15 {
        if url.starts_with(&stop) {
            break;
        }
        let r = c.get(&url).send().await.unwrap();
        let here = url::Url::parse(&url).unwrap();
        if r.status() == 200 && here.path().starts_with("/interaction/") {
            let post = here.join(&format!("{}/login", here.path())).unwrap();
            let r2 = c
                .post(post.clone())
                .form(&[("login", user)])
                .send()
                .await
                .unwrap();
            assert!(r2.status().is_redirection(), "IdP login: {}", r2.status());
            url = post.join(&pool_support::location(&r2)).unwrap().to_string();
            continue;
        }
        assert!(r.status().is_redirection(), "{} at {url}", r.status());
        url = here.join(&pool_support::location(&r)).unwrap().to_string();
    }
    let r = c.get(&url).send().await.unwrap();
    if r.status() != 302 {
        return Err(r.status().as_u16());
    }
    let next = pool_support::absolute(&s.base, &pool_support::location(&r));
    let (r, _) = pool_support::follow(&c, &s.base, next).await;
    if r.status() != 200 {
        return Err(r.status().as_u16());
    }
    let echo: Value = r.json().await.unwrap();
    let jwt = echo["headers"]["x-amzn-oidc-data"].as_str().unwrap();
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .unwrap();
    Ok(serde_json::from_slice(&bytes).unwrap())
}

/// `link_by_email` compares addresses as the mailbox they name: a provider's verified address
/// that only folds to a pool user's address under Unicode case mapping (KELVIN SIGN U+212A
/// lower-cases to ASCII `k`; full-width letters) is another mailbox and
/// never links into that user's account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_by_email_never_links_a_unicode_look_alike_address() {
    let (_idp, s) = federation(json!({
        "kelvin": {"sub": "kelvin", "email": "\u{212a}im@corp.example", "email_verified": true},
        "fullwidth": {"sub": "fullwidth", "email": "\u{ff4b}im@corp.example", "email_verified": true},
    }))
    .await;
    pool_support::create_user(&s, "kim", "kim@corp.example");
    let mut joined = Vec::new();
    for user in ["kelvin", "fullwidth"] {
        match federated_sign_in(&s, user).await {
            Ok(claims) => {
                let name = claims["cognito:username"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if name == "kim" {
                    joined.push(format!("{user} signed in as {name}: {claims}"));
                }
            }
            Err(status) => eprintln!("{user}: refused with {status}"),
        }
    }
    assert!(
        joined.is_empty(),
        "look-alike addresses linked: {joined:#?}"
    );
}
