//! Bad input and hostile requests: path tricks, open redirects, oversized headers, hop-by-hop
//! smuggling, upstream failures, static-file traversal, config errors.

use serde_json::json;

use crate::harness::*;

fn setup() {
    portcullis::install_crypto();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_tricks_cannot_reach_a_protected_route_through_a_public_one() {
    setup();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    let c = client();
    // Each of these resolves to /admin/... and must hit the authenticate route (302), never
    // the allow route /public/.
    // Sent raw: an ordinary client would normalise some of these itself.
    for p in [
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/public/.%2E/admin/x",
        "/public//../admin/x",
        "/%61dmin/x",
        "//admin/x",
        "/public/./../admin/x",
    ] {
        let (status, text) = raw_get(s.proxy.port, p, "").await;
        assert_eq!(status, 302, "{p}: {text}");
    }
    let (status, _) = raw_get(s.proxy.port, "/public/..;x/admin/", "").await;
    assert_eq!(status, 400);
    let (status, _) = raw_get(s.proxy.port, "/public/%2e%2e;jsessionid=1/admin/", "").await;
    assert_eq!(status, 400);
    // The upstream receives the normalised path.
    let v = echoed(
        c.get(format!("{base}/public/a/./b/../c"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["path"], "/public/a/c");
    // Encoded slashes are refused by default (issue 9, item 1: a decoding upstream would
    // resolve `..%2F` again); `..;` is refused.
    let r = c
        .get(format!("{base}/public/a%2F..%2Fb"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .get(format!("{base}/public/..;x/admin/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Case-sensitive prefixes: /PUBLIC/ is not /public/.
    let r = c
        .get(format!("{base}/PUBLIC/x"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_redirects_are_replaced_by_slash() {
    setup();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    let c = client();
    let cases = [
        ("//evil.com/x", "/"),
        ("/\\evil.com", "/"),
        ("https://evil.com/", "/"),
        ("https:evil.com", "/"),
        ("/%09/evil.com", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok/path?x=1", "/ok/path?x=1"),
        (
            "http://allowed.example.com/back",
            "http://allowed.example.com/back",
        ),
    ];
    for (rd, want) in cases {
        let enc: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let r = c
            .get(format!("{base}/oauth2/sign_out?rd={enc}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        let got = location(&r);
        let want = if rd == "/%09/evil.com" {
            "/%09/evil.com"
        } else {
            want
        };
        assert_eq!(got, want, "rd={rd}");
    }
    // rd on /oauth2/start is kept through the login and validated at the end.
    let start = c
        .get(format!("{base}/oauth2/start?rd=%2F%2Fevil.com"))
        .send()
        .await
        .unwrap();
    let cb = complete_login(&c, start, "alice").await;
    assert_eq!(location(&cb), "/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431() {
    setup();
    let s = Stack::start().await;
    let big = "a".repeat(40_000);
    let r = client()
        .get(format!("{}/public/x", s.proxy.base))
        .header("x-big", big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_and_timeout_is_504() {
    setup();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    let r = client()
        .get(format!("{base}/down/x"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Request id") && !page.contains("os error"),
        "{page}"
    );
    let r = client()
        .get(format!("{base}/down/x"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["error"], "upstream_unreachable");
    let r = client()
        .get(format!("{base}/slow/slow"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_and_forwarded_headers() {
    setup();
    let s = Stack::start().await;
    let r = client()
        .get(format!("{}/public/x", s.proxy.base))
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .header("keep-alive", "timeout=5")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers().get("x-upstream-private").is_none(),
        "response hop-by-hop headers named by Connection are removed"
    );
    let v = echoed(r).await;
    assert!(v["headers"].get("x-drop-me").is_none());
    assert!(v["headers"].get("keep-alive").is_none());
    assert_eq!(
        header(&v, "x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(
        header(&v, "x-forwarded-proto"),
        Some("http"),
        "untrusted peer cannot set the proto"
    );
    assert_eq!(
        header(&v, "x-forwarded-host"),
        Some(format!("127.0.0.1:{}", s.proxy.port).as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_file_upstream_serves_inside_its_directory_only() {
    setup();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    let c = client();
    // The upstream receives the full path: /static/... maps to DIR/static/...
    let r = c.get(format!("{base}/static/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(r.text().await.unwrap(), "<h1>static home</h1>");
    let r = c
        .get(format!("{base}/static/css/site.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    std::fs::write(s.static_dir.join("secret.txt"), "top secret").unwrap();
    std::fs::write(
        s.static_dir.parent().unwrap().join("secret.txt"),
        "top secret",
    )
    .unwrap();
    for p in [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/css/..%2F..%2Fsecret.txt",
        "/static/%2e%2e%2f%2e%2e%2fsecret.txt",
    ] {
        let (status, text) = raw_get(s.proxy.port, p, "").await;
        assert!(!text.contains("top secret"), "{p} escaped the directory");
        assert!(
            status == 404 || status == 302 || status == 400,
            "{p}: {status}"
        );
    }
    assert_eq!(
        c.post(format!("{base}/static/"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_endpoint_for_nginx_and_traefik() {
    setup();
    let (port, admin) = Proxy::ports();
    let base = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(json!([Idp::client_for(&base, json!({}))]), 3600);
    let echo = Echo::start().await;
    let dir = temp_dir("fa");
    let cfg = config(port, admin, &idp.issuer, &echo.url(), "", &dir).replace(
        "max_header_bytes = 16384",
        "max_header_bytes = 16384\ntrusted_proxies = [\"127.0.0.1/32\"]",
    );
    let proxy = Proxy::start(port, admin, &cfg).await;
    let anon = client()
        .get(format!("{base}/oauth2/auth"))
        .header("x-forwarded-uri", "/admin/x")
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
    let anon = client()
        .get(format!("{base}/oauth2/auth"))
        .header("x-forwarded-uri", "/public/x")
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 200);
    let bob = client();
    login(&bob, &proxy, "/", "bob").await;
    let r = bob
        .get(format!("{base}/oauth2/auth"))
        .header("x-forwarded-uri", "/admin/x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = bob
        .get(format!("{base}/oauth2/auth"))
        .header("x-forwarded-uri", "/x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-amzn-oidc-identity"], "bob");
    assert!(r.headers().get("x-amzn-oidc-data").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_every_problem_and_exits_64() {
    setup();
    let dir = temp_dir("check");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        r#"
public_url = "https://app.example.com"
[session]
secrets = ["too-short-secret-value"]
[providers.corp]
issuer = "https://idp.example.com"
client_id = "x"
client_secret = "${PORTCULLIS_TEST_SURELY_UNSET}"
[[routes]]
upstream = "http://127.0.0.1:3000"
on_unauthenticated = "redirect"
[[routes]]
upstream = "http://127.0.0.1:3000"
on_unauthenticatd = "deny"
"#,
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "routes[0].on_unauthenticated: \"redirect\" is not one of authenticate, deny, allow",
        "routes[1]: unknown field `on_unauthenticatd`",
        "session.secrets[0]",
        "providers.corp.client_secret: environment variable PORTCULLIS_TEST_SURELY_UNSET is not set",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(
        !err.contains("too-short-secret-value"),
        "secrets are never printed"
    );
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        std::fs::read_to_string(repo().join("config.example.toml")).unwrap(),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(repo().join("config.example.toml"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(bin())
        .arg("keygen")
        .output()
        .unwrap();
    let key = String::from_utf8(out.stdout).unwrap();
    assert!(key.trim().len() >= 43, "{key}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_idp_gives_502_and_not_ready() {
    setup();
    let (port, admin) = Proxy::ports();
    let echo = Echo::start().await;
    let dir = temp_dir("noidp");
    let cfg = config(
        port,
        admin,
        &format!("http://127.0.0.1:{}", free_port()),
        &echo.url(),
        "",
        &dir,
    );
    let proxy = Proxy::start(port, admin, &cfg).await;
    let r = client()
        .get(format!("{}/x", proxy.base))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let r = client()
        .get(format!("{}/readyz", proxy.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    // Public routes still work while the IdP is down.
    assert_eq!(
        client()
            .get(format!("{}/public/x", proxy.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let m = client()
        .get(format!("{}/metrics", proxy.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(
            "portcullis_requests_total{route=\"/public/\",decision=\"public\",status=\"200\"} 1"
        ),
        "{m}"
    );
}
