//! Listener rules (issue 18): ALB's conditions — host lists and wildcards, `path_pattern` on
//! the normalised path, `methods`, `headers`, `query`, `source_ips` — first match wins; the
//! `redirect` and `fixed_response` actions, behind authentication like any route;
//! `cors_preflight = "allow"`; and `portcullis check` on rules. The real binary, raw requests
//! (so that every host and path spelling reaches the proxy as written) and the echo upstream.

use serde_json::{Value, json};

use crate::harness::*;

fn setup() {
    portcullis::install_crypto();
}

/// A proxy with `routes` (TOML `[[routes]]` entries) and no IdP; `server_extra`: more
/// `[server]` keys.
async fn proxy(server_extra: &str, routes: &str) -> Proxy {
    let (port, admin) = Proxy::ports();
    let cfg = format!(
        r#"
public_url = "http://127.0.0.1:{port}"

[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
workers = 1
{server_extra}

[session]
secrets = ["{SECRET}"]

[log]
level = "debug"

{routes}
"#
    );
    Proxy::start(port, admin, &cfg).await
}

/// Sends `METHOD target` with `Host: host` and `headers` (each line ending in CRLF); returns
/// the status and the whole response text.
async fn send(p: &Proxy, method: &str, target: &str, host: &str, headers: &str) -> (u16, String) {
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\n{headers}Connection: close\r\n\r\n"
    );
    raw_exchange(p.port, &req).await
}

fn body(text: &str) -> &str {
    text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

fn header_of(text: &str, name: &str) -> Option<String> {
    let head = text.split_once("\r\n\r\n").map(|(h, _)| h).unwrap_or(text);
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Which fixed response answered (each route's body names it).
async fn which(p: &Proxy, method: &str, target: &str, host: &str, headers: &str) -> String {
    let (status, text) = send(p, method, target, host, headers).await;
    if status == 400 {
        return "400".into();
    }
    body(&text).to_string()
}

fn fixed(name: &str) -> String {
    format!(
        "fixed_response = {{ status = 200, content_type = \"text/plain\", body = \"{name}\" }}\n"
    )
}

const CONDITION_ROUTES: &str = r#"
[[routes]]
host = ["*.wild.test", "exact.test", "app-?.test"]
path = "/h/"
on_unauthenticated = "allow"
@host

[[routes]]
path_pattern = "/pp/*/edit"
on_unauthenticated = "allow"
@pattern

[[routes]]
path = "/m/"
methods = ["POST", "PUT"]
on_unauthenticated = "allow"
@method

[[routes]]
path = "/hd/"
headers = { "X-Env" = ["beta", "canary-*"] }
on_unauthenticated = "allow"
@header

[[routes]]
path = "/q/"
query = { version = "2" }
on_unauthenticated = "allow"
@query

[[routes]]
path = "/ip/"
source_ips = ["10.0.0.0/8", "2001:db8::/32"]
on_unauthenticated = "allow"
@ip

[[routes]]
path = "/"
on_unauthenticated = "allow"
@fallback
"#;

fn condition_routes() -> String {
    let mut s = CONDITION_ROUTES.to_string();
    for name in [
        "host", "pattern", "method", "header", "query", "ip", "fallback",
    ] {
        s = s.replace(&format!("@{name}\n"), &fixed(name));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_condition_matches_and_misses() {
    setup();
    let p = proxy("trusted_proxies = [\"127.0.0.1/32\"]", &condition_routes()).await;
    let t = "t.test";
    // host: wildcards and a list, in every canonical spelling; never a suffix trick.
    for (host, want) in [
        ("a.wild.test", "host"),
        ("A.WILD.Test.", "host"),
        ("b.c.wild.test:8080", "host"),
        ("exact.test", "host"),
        ("EXACT.TEST.:80", "host"),
        ("app-7.test", "host"),
        ("wild.test", "fallback"),
        ("exact.test.evil", "fallback"),
        ("evil-exact.test", "fallback"),
        ("app-77.test", "fallback"),
        ("a.wild.test.evil", "fallback"),
    ] {
        assert_eq!(
            which(&p, "GET", "/h/x", host, "").await,
            want,
            "Host: {host}"
        );
    }
    // path_pattern: against the normalised path, case-sensitive.
    for (path, want) in [
        ("/pp/a/edit", "pattern"),
        ("/pp/a/b/edit", "pattern"),
        ("/pp/a/./edit", "pattern"),
        ("/x/../pp/a/edit", "pattern"),
        ("/pp/a/%2e%2e/b/edit", "pattern"),
        ("/pp/a/edit/..", "fallback"),
        ("/pp/a/edit/../../../etc", "fallback"),
        ("/PP/a/edit", "fallback"),
        ("/pp/a/edit/x", "fallback"),
        ("/pp/a%2Fb/edit", "400"),
        ("/pp/..;x/edit", "400"),
    ] {
        assert_eq!(which(&p, "GET", path, t, "").await, want, "{path}");
    }
    // methods: exact, case-sensitive (ALB).
    assert_eq!(
        which(&p, "POST", "/m/x", t, "Content-Length: 0\r\n").await,
        "method"
    );
    assert_eq!(
        which(&p, "PUT", "/m/x", t, "Content-Length: 0\r\n").await,
        "method"
    );
    assert_eq!(which(&p, "GET", "/m/x", t, "").await, "fallback");
    assert_eq!(
        which(&p, "post", "/m/x", t, "Content-Length: 0\r\n").await,
        "fallback"
    );
    // headers: name and value case-insensitive, value wildcards, any copy of the header.
    for (headers, want) in [
        ("X-Env: beta\r\n", "header"),
        ("x-env: BETA\r\n", "header"),
        ("X-Env: canary-42\r\n", "header"),
        ("X-Env: prod\r\nX-Env: beta\r\n", "header"),
        ("X-Env: prod\r\n", "fallback"),
        ("X-Env: beta-not\r\n", "fallback"),
        ("X-Envx: beta\r\n", "fallback"),
        ("", "fallback"),
    ] {
        assert_eq!(
            which(&p, "GET", "/hd/x", t, headers).await,
            want,
            "{headers:?}"
        );
    }
    // query: key and value case-insensitive, percent-decoded; any position.
    for (target, want) in [
        ("/q/x?version=2", "query"),
        ("/q/x?a=1&VERSION=2", "query"),
        ("/q/x?version=%32", "query"),
        ("/q/x?version=3", "fallback"),
        ("/q/x?version=22", "fallback"),
        ("/q/x?v=2", "fallback"),
        ("/q/x", "fallback"),
    ] {
        assert_eq!(which(&p, "GET", target, t, "").await, want, "{target}");
    }
    // source_ips: the peer (127.0.0.1, a trusted proxy here) names the client through the
    // right-most X-Forwarded-For address that is not itself a trusted proxy.
    for (xff, want) in [
        ("", "fallback"),
        ("X-Forwarded-For: 10.1.2.3\r\n", "ip"),
        ("X-Forwarded-For: 203.0.113.9, 10.1.2.3\r\n", "ip"),
        ("X-Forwarded-For: 10.1.2.3, 203.0.113.9\r\n", "fallback"),
        ("X-Forwarded-For: 10.1.2.3, 127.0.0.1\r\n", "ip"),
        ("X-Forwarded-For: 2001:db8::7\r\n", "ip"),
        ("X-Forwarded-For: 10.1.2.3, junk\r\n", "fallback"),
    ] {
        assert_eq!(which(&p, "GET", "/ip/x", t, xff).await, want, "{xff:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_from_an_untrusted_peer_is_not_believed() {
    setup();
    // No trusted proxies: the peer (127.0.0.1) is the client, whatever it claims.
    let p = proxy("", &condition_routes()).await;
    assert_eq!(
        which(
            &p,
            "GET",
            "/ip/x",
            "t.test",
            "X-Forwarded-For: 10.1.2.3\r\n"
        )
        .await,
        "fallback"
    );
    let local = format!(
        "[[routes]]\npath = \"/\"\nsource_ips = [\"127.0.0.0/8\"]\non_unauthenticated = \"allow\"\n{}",
        fixed("local")
    );
    let p = proxy("", &local).await;
    assert_eq!(
        which(&p, "GET", "/x", "t.test", "X-Forwarded-For: 10.1.2.3\r\n").await,
        "local"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_rule_in_the_file_wins_and_forwards_the_normalised_path() {
    setup();
    let echo = Echo::start().await;
    let routes = format!(
        r#"
[[routes]]
path = "/a/"
on_unauthenticated = "allow"
upstream = "{up}"

[[routes]]
host = "x.test"
path = "/a/b/"
on_unauthenticated = "allow"
{second}
[[routes]]
host = "*.test"
path = "/"
on_unauthenticated = "allow"
{third}
[[routes]]
path = "/"
on_unauthenticated = "allow"
{last}"#,
        up = echo.url(),
        second = fixed("second"),
        third = fixed("third"),
        last = fixed("last"),
    );
    let p = proxy("", &routes).await;
    // The more specific later rules lose to the earlier prefix.
    let (status, text) = send(&p, "GET", "/a/b/../b/c", "X.test", "").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(body(&text)).unwrap();
    assert_eq!(
        v["path"], "/a/b/c",
        "the upstream gets the path the rule matched"
    );
    assert!(
        which(&p, "GET", "/a/b/c", "x.test", "")
            .await
            .contains("\"path\"")
    );
    assert_eq!(which(&p, "GET", "/z", "x.test", "").await, "third");
    assert_eq!(which(&p, "GET", "/z", "Y.Test.", "").await, "third");
    assert_eq!(which(&p, "GET", "/z", "test", "").await, "last");
    assert_eq!(which(&p, "GET", "/z", "127.0.0.1", "").await, "last");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_follow_alb_placeholders_and_stay_safe() {
    setup();
    let routes = r##"
[[routes]]
path = "/old/"
on_unauthenticated = "allow"
redirect = { status = 301, host = "new.test", path = "/v2/#{path}", query = "#{query}&moved=1" }

[[routes]]
path = "/tls/"
on_unauthenticated = "allow"
redirect = { status = 302, protocol = "HTTPS", port = 443 }

[[routes]]
path = "/keep/"
on_unauthenticated = "allow"
redirect = { status = 302, host = "www.#{host}" }

[[routes]]
path = "/"
on_unauthenticated = "allow"
fixed_response = { status = 404, body = "none" }
"##;
    let p = proxy("", routes).await;
    let (status, text) = send(&p, "GET", "/old/a/../b?x=1", "App.Test:8080", "").await;
    assert_eq!(status, 301, "{text}");
    assert_eq!(
        header_of(&text, "location").as_deref(),
        Some("http://new.test:8080/v2/old/b?x=1&moved=1")
    );
    let (status, text) = send(&p, "GET", "/tls/x", "App.Test.", "").await;
    assert_eq!(status, 302);
    assert_eq!(
        header_of(&text, "location").as_deref(),
        Some("https://app.test/tls/x")
    );
    assert_eq!(
        header_of(&text, "cache-control").as_deref(),
        Some("no-store")
    );
    // #{host} is the canonical host; a spelling trick cannot change where it points.
    let (_, text) = send(&p, "GET", "/keep/y?q", "APP.test.:80", "").await;
    assert_eq!(
        header_of(&text, "location").as_deref(),
        Some("http://www.app.test/keep/y?q")
    );
    // Request data never breaks out of the Location header.
    let (status, text) = send(&p, "GET", "/old/%0d%0aSet-Cookie:%20x=1", "app.test", "").await;
    assert_eq!(status, 301);
    assert!(header_of(&text, "set-cookie").is_none(), "{text}");
    let loc = header_of(&text, "location").unwrap();
    assert!(
        loc.to_ascii_lowercase()
            .starts_with("http://new.test/v2/old/%0d%0aset-cookie:%20x=1?"),
        "{loc}"
    );
    // A path that would read as an authority stays a path on the configured host.
    let (_, text) = send(&p, "GET", "/keep//evil.example/x", "app.test", "").await;
    let loc = header_of(&text, "location").unwrap();
    assert!(loc.starts_with("http://www.app.test/"), "{loc}");
    // The fixed response: status, content type, body.
    let (status, text) = send(&p, "GET", "/nothing", "app.test", "").await;
    assert_eq!(status, 404);
    assert_eq!(body(&text), "none");
    assert_eq!(
        header_of(&text, "content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_passes_only_when_allowed_and_only_as_a_preflight() {
    setup();
    let echo = Echo::start().await;
    let routes = format!(
        r#"
[[routes]]
path = "/spa/"
upstream = "{up}"
on_unauthenticated = "deny"
cors_preflight = "allow"

[[routes]]
path = "/"
upstream = "{up}"
on_unauthenticated = "deny"
"#,
        up = echo.url()
    );
    let p = proxy("", &routes).await;
    let t = "app.test";
    let both = "Origin: https://spa.example\r\nAccess-Control-Request-Method: PUT\r\n";
    let (status, text) = send(
        &p,
        "OPTIONS",
        "/spa/items",
        t,
        &format!("{both}X-Amzn-Oidc-Identity: forged\r\n"),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(body(&text)).unwrap();
    assert_eq!(v["method"], "OPTIONS");
    assert!(
        header(&v, "x-amzn-oidc-identity").is_none(),
        "identity is stripped: {v}"
    );
    assert_eq!(header(&v, "access-control-request-method"), Some("PUT"));
    // Everything that is not a full preflight is authenticated as usual.
    for (method, headers) in [
        ("OPTIONS", "Origin: https://spa.example\r\n"),
        ("OPTIONS", "Access-Control-Request-Method: PUT\r\n"),
        ("OPTIONS", ""),
        ("GET", both),
        ("POST", both),
        ("DELETE", both),
    ] {
        let (status, _) = send(
            &p,
            method,
            "/spa/items",
            t,
            &format!("{headers}Content-Length: 0\r\n"),
        )
        .await;
        assert_eq!(status, 401, "{method} {headers:?} must need a session");
    }
    // Without the option, a preflight gets the route's on_unauthenticated answer.
    let (status, _) = send(&p, "OPTIONS", "/other", t, both).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_and_preflights_sit_behind_authentication() {
    setup();
    let (port, admin) = Proxy::ports();
    let base = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(json!([Idp::client_for(&base, json!({}))]), 3600);
    let echo = Echo::start().await;
    let cfg = format!(
        r#"
public_url = "{base}"
[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
[session]
secrets = ["{SECRET}"]
[providers.idp]
issuer = "{issuer}"
client_id = "portcullis"
client_secret = "{CLIENT_SECRET}"

[[routes]]
path = "/moved/"
redirect = {{ status = 301, host = "new.test" }}

[[routes]]
path = "/maintenance/"
fixed_response = {{ status = 503, content_type = "text/html", body = "<h1>Back soon</h1>" }}

[[routes]]
path = "/"
upstream = "{up}"
cors_preflight = "allow"
"#,
        issuer = idp.issuer,
        up = echo.url()
    );
    let p = Proxy::start(port, admin, &cfg).await;
    let c = client();
    // No session: sign in first, never the action's answer.
    for path in ["/moved/x", "/maintenance/"] {
        let r = c
            .get(format!("{base}{path}"))
            .header("accept", HTML)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "{path}");
        assert!(
            location(&r).starts_with(&idp.issuer),
            "{path}: {}",
            location(&r)
        );
    }
    let r = c
        .get(format!("{base}/maintenance/"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A preflight on the default route needs no session; the browser's real request does.
    let r = c
        .request(reqwest::Method::OPTIONS, format!("{base}/app"))
        .header("origin", "https://spa.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Signed in: the actions answer.
    let cb = login(&c, &p, "/moved/x?y=1", "alice").await;
    assert_eq!(cb.status(), 302);
    let r = c
        .get(format!("{base}/moved/x?y=1"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(location(&r), format!("http://new.test:{port}/moved/x?y=1"));
    let r = c
        .get(format!("{base}/maintenance/"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "<h1>Back soon</h1>");
}

fn check(config: &str) -> (i32, String) {
    let dir = temp_dir("rules-check");
    let file = dir.join("portcullis.toml");
    std::fs::write(&file, config).unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

const HEAD: &str = r#"
public_url = "http://127.0.0.1:9"
[session]
secrets = ["test-secret-test-secret-test-secret-0123456789"]
"#;

#[test]
fn check_warns_of_rules_an_earlier_rule_always_takes() {
    let (code, out) = check(&format!(
        r#"{HEAD}
[[routes]]
path = "/api/"
on_unauthenticated = "allow"
upstream = "http://127.0.0.1:3000"

[[routes]]
path = "/api/v1/"
host = "app.test"
on_unauthenticated = "allow"
upstream = "http://127.0.0.1:3000"

[[routes]]
path = "/"
methods = ["GET"]
on_unauthenticated = "allow"
upstream = "http://127.0.0.1:3000"

[[routes]]
path = "/x/"
on_unauthenticated = "allow"
upstream = "http://127.0.0.1:3000"

[[routes]]
path = "/"
on_unauthenticated = "allow"
upstream = "http://127.0.0.1:3000"
"#
    ));
    assert_eq!(code, 0, "a dead rule is a warning, not an error: {out}");
    assert!(
        out.contains("warning: routes[1]: can never match: routes[0]"),
        "{out}"
    );
    // A rule with a method condition shadows nothing; a catch-all at the end is fine.
    assert!(!out.contains("routes[3]"), "{out}");
    assert!(!out.contains("routes[4]"), "{out}");
}

#[test]
fn check_refuses_rules_that_cannot_work() {
    let (code, out) = check(&format!(
        r##"{HEAD}
[[routes]]
path = "/a/"
path_pattern = "/a/*"
methods = ["get"]
headers = {{ "Bad Header" = "x" }}
source_ips = ["10.0.0.0/33"]
host = "*.example.com:8443"
on_unauthenticated = "allow"
upstream = "http://127.0.0.1:3000"

[[routes]]
path = "/loop/"
on_unauthenticated = "allow"
redirect = {{ status = 301, path = "/#{{path}}" }}

[[routes]]
path = "/big/"
on_unauthenticated = "allow"
fixed_response = {{ status = 302, content_type = "image/png", body = "{big}" }}

[[routes]]
path = "/both/"
on_unauthenticated = "allow"
upstream = "http://127.0.0.1:3000"
fixed_response = {{ status = 200 }}

[[routes]]
path = "/none/"
on_unauthenticated = "allow"

[[routes]]
path = "/inj/"
on_unauthenticated = "allow"
redirect = {{ status = 301, host = "evil.test\r\nX: y" }}
"##,
        big = "x".repeat(1025)
    ));
    assert_eq!(code, 64, "{out}");
    for needle in [
        "routes[0].path_pattern: set path (a prefix) or path_pattern",
        "routes[0].methods[0]: \"get\" is not a method name",
        "routes[0].headers.Bad Header",
        "routes[0].source_ips[0]",
        "routes[0].host",
        "routes[1].redirect: redirects to the URL it was asked for",
        "routes[2].fixed_response.status: 302 is not a 2XX, 4XX or 5XX status",
        "routes[2].fixed_response.content_type",
        "routes[2].fixed_response.body: is 1025 bytes; at most 1024",
        "routes[3]: set one of upstream, redirect, fixed_response",
        "routes[4].upstream: is required",
        "routes[5].redirect.host",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}
