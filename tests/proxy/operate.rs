//! Operating it (issue 11, docs/src/operating/reload.md): SIGHUP reload — new routes for the next request on an
//! open connection, a bad file rejected with the old configuration kept, restart-only
//! settings logged and kept, zero failed requests while routes change under load — and the
//! access log (one line per request, no query string, no cookie, no token).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

fn setup() {
    portcullis::install_crypto();
}

fn hup(p: &Proxy) {
    let st = std::process::Command::new("kill")
        .args(["-HUP", &p.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn config(port: u16, admin: u16, echo: &str, routes: &str, extra: &str) -> String {
    format!(
        r#"
public_url = "http://127.0.0.1:{port}"
{extra}
[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
workers = 2

[session]
secrets = ["{SECRET}"]

[log]
level = "info"
access = true

[[routes]]
name = "a"
path = "/a/"
upstream = "{echo}"
on_unauthenticated = "allow"
{routes}
"#
    )
}

/// One request on an open keep-alive connection; returns the status.
async fn on(conn: &mut tokio::net::TcpStream, path: &str) -> u16 {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap();
        assert!(n > 0, "the connection was closed");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return head.split(' ').nth(1).unwrap().parse().unwrap();
            }
        }
    }
}

async fn metrics(p: &Proxy) -> String {
    reqwest::get(format!("{}/metrics", p.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub(crate) async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 10 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_new_routes_on_open_connections_and_rejects_a_bad_file() {
    setup();
    let echo = Echo::start().await;
    let (port, admin) = Proxy::ports();
    let p = Proxy::start(port, admin, &config(port, admin, &echo.url(), "", "")).await;
    let cfg_file = p.log_path().parent().unwrap().join("portcullis.toml");
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    assert_eq!(on(&mut conn, "/a/x").await, 200);
    assert_eq!(on(&mut conn, "/b/x").await, 404);
    // A new route; a listener change that needs a restart.
    let routes = format!(
        "[[routes]]\nname = \"b\"\npath = \"/b/\"\nupstream = \"{}\"\non_unauthenticated = \"deny\"\n",
        echo.url()
    );
    let mut next = config(port, admin, &echo.url(), &routes, "");
    next = next.replace(
        &format!("listen = [\"127.0.0.1:{port}\"]"),
        &format!(
            "listen = [\"127.0.0.1:{port}\", \"127.0.0.1:{}\"]",
            free_port()
        ),
    );
    std::fs::write(&cfg_file, &next).unwrap();
    hup(&p);
    wait_for("reload counted", async || {
        metrics(&p)
            .await
            .contains("portcullis_config_reloads_total{result=\"ok\"} 1")
    })
    .await;
    // The same connection, opened before the reload, follows the new rules.
    assert_eq!(on(&mut conn, "/b/x").await, 401);
    assert_eq!(on(&mut conn, "/a/x").await, 200);
    let logs = p.logs();
    assert!(
        logs.contains("server.listen") && logs.contains("needs a restart"),
        "{logs}"
    );
    // A bad file: rejected with its problems logged, the running configuration kept.
    std::fs::write(
        &cfg_file,
        next.replace(
            "on_unauthenticated = \"deny\"",
            "on_unauthenticated = \"redirect\"",
        ),
    )
    .unwrap();
    hup(&p);
    wait_for("rejection counted", async || {
        metrics(&p)
            .await
            .contains("portcullis_config_reloads_total{result=\"rejected\"} 1")
    })
    .await;
    assert_eq!(
        on(&mut conn, "/b/x").await,
        401,
        "the old configuration is kept"
    );
    let logs = p.logs();
    assert!(
        logs.contains("routes[1].on_unauthenticated"),
        "the problem is logged: {logs}"
    );
    // Route names label the metrics.
    assert!(metrics(&p).await.contains("route=\"b\""));
}

/// Routes change while a client keeps loading the proxy: no request fails.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_under_load_drops_no_request() {
    setup();
    let echo = Echo::start().await;
    let (port, admin) = Proxy::ports();
    let p = Proxy::start(port, admin, &config(port, admin, &echo.url(), "", "")).await;
    let cfg_file = p.log_path().parent().unwrap().join("portcullis.toml");
    let load = Load::start(4, &format!("http://127.0.0.1:{port}/a/load"));
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let routes = format!(
            "[[routes]]\nname = \"r{i}\"\npath = \"/r{i}/\"\nupstream = \"{}\"\non_unauthenticated = \"allow\"\n",
            echo.url()
        );
        std::fs::write(&cfg_file, config(port, admin, &echo.url(), &routes, "")).unwrap();
        hup(&p);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (total, failures) = load.stop().await;
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(total > 50, "only {total} requests were made");
    wait_for("six reloads", async || {
        metrics(&p)
            .await
            .contains("portcullis_config_reloads_total{result=\"ok\"} 6")
    })
    .await;
    assert_eq!(
        reqwest::get(format!("http://127.0.0.1:{port}/r5/x"))
            .await
            .unwrap()
            .status(),
        200
    );
}

/// One line per request with the documented fields; never the query string, a cookie or a
/// token — even at `log.level = "warn"`.
#[tokio::test(flavor = "multi_thread")]
async fn access_log_has_one_line_per_request_and_no_secrets() {
    setup();
    let echo = Echo::start().await;
    let (port, admin) = Proxy::ports();
    let cfg = config(port, admin, &echo.url(), "", "")
        .replace("level = \"info\"", "level = \"warn\"\nformat = \"json\"");
    let p = Proxy::start(port, admin, &cfg).await;
    let r = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{port}/a/page?code=SECRETCODE&state=SECRETSTATE"
        ))
        .header("cookie", "AWSELBAuthSessionCookie-0=SECRETCOOKIE; other=1")
        .header("authorization", "Bearer SECRETTOKEN")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        reqwest::get(format!("http://127.0.0.1:{port}/nowhere"))
            .await
            .unwrap()
            .status(),
        404
    );
    let mut lines = Vec::new();
    wait_for("two access lines", async || {
        lines = p
            .logs()
            .lines()
            .filter(|l| l.contains("\"message\":\"access\""))
            .map(str::to_string)
            .collect();
        lines.len() >= 2
    })
    .await;
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let f = &first["fields"];
    assert_eq!(f["path"], "/a/page");
    assert_eq!(f["method"], "GET");
    assert_eq!(f["status"], 200);
    assert_eq!(f["route"], "a");
    assert_eq!(f["auth.decision"], "public");
    assert_eq!(f["client"], "127.0.0.1");
    assert!(f["request_id"].as_str().is_some_and(|s| s.len() == 16));
    assert!(f["duration_ms"].as_f64().is_some());
    assert!(first["timestamp"].is_string());
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["fields"]["status"], 404);
    let all = p.logs();
    for secret in ["SECRETCODE", "SECRETSTATE", "SECRETCOOKIE", "SECRETTOKEN"] {
        assert!(!all.contains(secret), "{secret} reached the log");
    }
}

/// The `kid` of an `x-amzn-oidc-data` JWT, after checking its ES256 signature against `key`.
fn data_kid_verified_by(jwt: &str, key: &portcullis::signing::SigningKey, when: &str) -> String {
    use base64::Engine;
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let b64 = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .unwrap()
    };
    let header: serde_json::Value = serde_json::from_slice(&b64(parts[0])).unwrap();
    let der = portcullis::signing::pem_body(key.public_pem(), "PUBLIC KEY").unwrap();
    let point = &der[der.len() - 65..];
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &b64(parts[2]),
        )
        .unwrap_or_else(|_| {
            panic!(
                "{when}: x-amzn-oidc-data (kid {}) is not signed by key {}",
                header["kid"],
                key.kid()
            )
        });
    header["kid"].as_str().unwrap().to_string()
}

/// SIGHUP, waits for the first reload counted with `result`, then the echo of `GET /x`.
async fn after_reload(p: &Proxy, c: &reqwest::Client, result: &str) -> serde_json::Value {
    hup(p);
    let counted = format!("portcullis_config_reloads_total{{result=\"{result}\"}} 1");
    wait_for("reload counted", async || {
        metrics(p).await.contains(&counted)
    })
    .await;
    echoed(c.get(format!("{}/x", p.base)).send().await.unwrap()).await
}

/// The 2026-12-07 review's F16: rotating the header-signing key is replacing the content of
/// `headers.signing_key_file` (same path) and sending SIGHUP. The next `x-amzn-oidc-data`
/// is signed by the new key, and the JWKS and PEM endpoints publish it.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_a_rotated_signing_key_file() {
    setup();
    let dir = temp_dir("rotate");
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("signing-key.pem");
    let old = portcullis::signing::SigningKey::generate();
    let new = portcullis::signing::SigningKey::generate();
    std::fs::write(&key_file, old.private_pem()).unwrap();

    let echo = Echo::start().await;
    let (port, admin) = Proxy::ports();
    let base = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(
        serde_json::json!([Idp::client_for(&base, serde_json::json!({}))]),
        3600,
    );
    let static_dir = temp_dir("static");
    std::fs::create_dir_all(&static_dir).unwrap();
    let headers = format!(
        "\n[headers]\nsigning_key_file = \"{}\"\n",
        key_file.display()
    );
    let cfg = crate::harness::config(port, admin, &idp.issuer, &echo.url(), &headers, &static_dir);
    let p = Proxy::start(port, admin, &cfg).await;
    let c = client();
    login(&c, &p, "/", "alice").await;
    let data = |v: &serde_json::Value| header(v, "x-amzn-oidc-data").unwrap().to_string();
    let v = echoed(c.get(format!("{base}/x")).send().await.unwrap()).await;
    assert_eq!(
        data_kid_verified_by(&data(&v), &old, "before the rotation"),
        old.kid()
    );

    // Rotation: same path, new content; the configuration file itself is unchanged.
    std::fs::write(&key_file, new.private_pem()).unwrap();
    let v = after_reload(&p, &c, "ok").await;
    assert_eq!(
        data_kid_verified_by(&data(&v), &new, "after SIGHUP"),
        new.kid(),
        "after SIGHUP the data header is signed by the rotated key"
    );
    let jwks: serde_json::Value = reqwest::get(format!("{base}/oauth2/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], new.kid(), "{jwks}");
    let pem = reqwest::get(format!("{base}/oauth2/public-keys/{}", new.kid()))
        .await
        .unwrap();
    assert_eq!(pem.status(), 200);
    assert_eq!(pem.text().await.unwrap(), new.public_pem());

    // A broken key file: the reload is rejected and the running key kept.
    std::fs::write(&key_file, "not a key").unwrap();
    let v = after_reload(&p, &c, "rejected").await;
    assert_eq!(
        data_kid_verified_by(&data(&v), &new, "after a rejected reload"),
        new.kid()
    );
}
