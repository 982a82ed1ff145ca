//! Listeners and protocols: HTTPS with HTTP/2, WebSocket pass-through, graceful SIGTERM.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;

use crate::harness::*;

fn setup() {
    portcullis::install_crypto();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_speaks_http2_and_http1() {
    setup();
    let dir = temp_dir("tls");
    let (cert, key, ca) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    let sh = format!(
        "set -e; cd {d}; \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=test-ca -keyout ca.key -out ca.pem 2>/dev/null; \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -keyout key.pem -out leaf.csr 2>/dev/null; \
         printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext.cnf; \
         openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out cert.pem 2>/dev/null",
        d = dir.display()
    );
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(&sh)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let (port, admin) = Proxy::ports();
    let echo = Echo::start().await;
    let cfg = format!(
        r#"
public_url = "https://localhost:{port}"
[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
tls_cert = "{}"
tls_key = "{}"
[session]
secrets = ["{SECRET}"]
[[routes]]
upstream = "{}"
on_unauthenticated = "allow"
"#,
        cert.display(),
        key.display(),
        echo.url()
    );
    let proxy = Proxy::start(port, admin, &cfg).await;
    let _ = proxy;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    for http2 in [true, false] {
        let mut b = reqwest::Client::builder().tls_certs_merge([ca.clone()]);
        if !http2 {
            b = b.http1_only();
        }
        let c = b.build().unwrap();
        let r = c
            .get(format!("https://localhost:{port}/hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.version(),
            if http2 {
                reqwest::Version::HTTP_2
            } else {
                reqwest::Version::HTTP_11
            }
        );
        let v = echoed(r).await;
        assert_eq!(header(&v, "x-forwarded-proto"), Some("https"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_proxied_with_a_session() {
    setup();
    let s = Stack::start().await;
    // Anonymous on an allow route.
    let url = format!("ws://127.0.0.1:{}/public/ws", s.proxy.port);
    let (mut ws, resp) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade through the proxy");
    assert_eq!(resp.status(), 101);
    ws.send(tokio_tungstenite::tungstenite::Message::text("ping-1"))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.into_text().unwrap().as_str(), "ping-1");
    // On an authenticate route: refused without a session, echoes with one.
    let url = format!("ws://127.0.0.1:{}/ws", s.proxy.port);
    let err = tokio_tungstenite::connect_async(url.clone()).await;
    assert!(err.is_err(), "no session, no upgrade");
    let c = client();
    let cb = login(&c, &s.proxy, "/", "alice").await;
    let cookie: String = cb
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .filter(|p| p.starts_with("AWSELBAuthSessionCookie-") && !p.ends_with('='))
        .collect::<Vec<_>>()
        .join("; ");
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("authenticated upgrade");
    ws.send(tokio_tungstenite::tungstenite::Message::text("hello"))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.into_text().unwrap().as_str(), "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    setup();
    let (port, admin) = Proxy::ports();
    let echo = Echo::start().await;
    let cfg = format!(
        r#"
public_url = "http://127.0.0.1:{port}"
[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
[session]
secrets = ["{SECRET}"]
[[routes]]
upstream = "{}"
on_unauthenticated = "allow"
timeout = "30s"
"#,
        echo.url()
    );
    let mut proxy = Proxy::start(port, admin, &cfg).await;
    let base = proxy.base.clone();
    let inflight = tokio::spawn(async move {
        client()
            .get(format!("{base}/slow"))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &proxy.pid().to_string()])
        .status();
    let status = inflight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(status, 200);
    let exit = tokio::task::spawn_blocking(move || proxy.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(
        exit.is_some_and(|s| s.success()),
        "exits cleanly after draining"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chooser_page_lists_the_route_providers() {
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
[providers.one]
issuer = "{iss}"
client_id = "portcullis"
client_secret = "{CLIENT_SECRET}"
display_name = "First IdP"
[providers.two]
issuer = "{iss}"
client_id = "portcullis"
client_secret = "{CLIENT_SECRET}"
display_name = "Second IdP"
[[routes]]
upstream = "{echo}"
providers = ["one", "two"]
"#,
        iss = idp.issuer,
        echo = echo.url()
    );
    let proxy = Proxy::start(port, admin, &cfg).await;
    let c = client();
    let r = c
        .get(format!("{base}/app"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/oauth2/start?rd=%2Fapp");
    let r = c
        .get(format!("{base}/oauth2/start?rd=%2Fapp"))
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(
        page.contains("First IdP") && page.contains("Second IdP"),
        "{page}"
    );
    let r = c
        .get(format!("{base}/oauth2/start?rd=%2Fapp&provider=two"))
        .send()
        .await
        .unwrap();
    let cb = complete_login(&c, r, "alice").await;
    assert_eq!(location(&cb), "/app");
    let _ = proxy;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_in_both_directions() {
    setup();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    // Response: the first chunk must arrive while the upstream still holds the last one.
    let mut r = client()
        .get(format!("{base}/public/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(10), r.chunk())
        .await
        .expect("first chunk before the end")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first-chunk\n");
    client()
        .get(format!("{base}/public/release"))
        .send()
        .await
        .unwrap();
    let last = tokio::time::timeout(Duration::from_secs(10), r.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&last[..], b"last-chunk\n");
    // Request: a 24 MiB upload arrives whole.
    let body = vec![b'x'; 24 * 1024 * 1024];
    let v = echoed(
        client()
            .post(format!("{base}/public/upload"))
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["body_len"], 24 * 1024 * 1024);
}
