//! HTTP/2 abuse on the plain listener (h2c with prior knowledge, which Portcullis serves):
//! the header-field limit applies as on HTTP/1.1 (431), and a client that opens and at once
//! cancels streams (Rapid Reset, CVE-2023-44487) is cut off or bounded, while everyone else
//! is still served.

use std::time::{Duration, Instant};

use crate::harness::allow_proxy;
use crate::support::Recorder;

fn setup() {
    portcullis::install_crypto();
}

/// RFC 9113 §8.2.3 / RFC 6585 §5: more than 100 header fields (hyper's HTTP/1.1 limit, which
/// Portcullis applies everywhere) are refused with 431 over HTTP/2 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_100_header_fields_over_h2_get_431() {
    setup();
    let rec = Recorder::start().await;
    let p = allow_proxy(&rec.url, "", "").await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut rb = h2.get(format!("{}/many", p.base));
    for i in 0..155 {
        rb = rb.header(format!("x-field-{i}"), "v");
    }
    let r = rb.send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 431);
    assert!(rec.paths().is_empty(), "{:?}", rec.paths());
    // 99 fields (plus the pseudo-headers) still pass.
    let mut rb = h2.get(format!("{}/fewer", p.base));
    for i in 0..90 {
        rb = rb.header(format!("x-field-{i}"), "v");
    }
    assert_eq!(rb.send().await.unwrap().status(), 200);
}

/// CVE-2023-44487: thousands of streams opened and reset at once. The attacking connection
/// is closed by the server (GOAWAY) or its cost stays bounded; an ordinary client is served
/// throughout, and the whole attack ends in bounded time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_bounded_and_others_are_still_served() {
    setup();
    let rec = Recorder::start().await;
    let p = allow_proxy(&rec.url, "", "").await;
    let port = p.port;
    let attack = tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(conn);
        let mut sent = 0usize;
        for i in 0..20_000 {
            if futures_util::future::poll_fn(|cx| client.poll_ready(cx))
                .await
                .is_err()
            {
                break;
            }
            let req = http::Request::get(format!("http://127.0.0.1:{port}/reset{i}"))
                .body(())
                .unwrap();
            match client.send_request(req, true) {
                // Dropping the response future and the stream resets the stream.
                Ok((resp, mut stream)) => {
                    stream.send_reset(h2::Reason::CANCEL);
                    drop(resp);
                }
                Err(_) => break,
            }
            sent += 1;
        }
        drop(client);
        let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
        (sent, ended.is_ok())
    });
    // An ordinary client during the attack.
    let c = reqwest::Client::new();
    let t = Instant::now();
    let mut worst = Duration::ZERO;
    while !attack.is_finished() && t.elapsed() < Duration::from_secs(30) {
        let one = Instant::now();
        let r = c.get(format!("{}/ok", p.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        worst = worst.max(one.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (sent, ended) = tokio::time::timeout(Duration::from_secs(30), attack)
        .await
        .expect("the attack ends in bounded time")
        .unwrap();
    assert!(ended, "the attacking connection did not end");
    assert!(
        worst < Duration::from_secs(2),
        "an ordinary request took {worst:?} during the attack"
    );
    let forwarded = rec
        .paths()
        .iter()
        .filter(|p| p.starts_with("/reset"))
        .count();
    eprintln!("rapid reset: {sent} streams opened and reset, {forwarded} reached the upstream");
    assert!(forwarded <= sent);
    // Still serving afterwards.
    let r = c.get(format!("{}/after", p.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// One h2 request on a fresh prior-knowledge connection: `uri` gives `:authority`, `host` an
/// optional `host` header field. Returns the status and the body.
async fn h2_get(port: u16, uri: &str, host: Option<&str>) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let mut req = http::Request::get(uri);
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let (resp, _) = client.send_request(req.body(()).unwrap(), true).unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn upstream_host(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["headers"]["host"][0].as_str().map(str::to_string)
}

/// RFC 9113 §8.3.1 and HDR-12 (the 2026-12-07 review's F3, over HTTP/2): an `:authority`
/// naming one host and a `host` field naming another is malformed — 400, never routed by one
/// and served as the other. Hosts in any spelling match their route, and the upstream gets the
/// host the route matched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_authority_and_a_different_host_field_are_refused() {
    setup();
    let echo = crate::harness::Echo::start().await;
    let p = crate::harness::host_routes_proxy(&echo.url(), "").await;
    let port = p.port;
    // The attack: routed as www.test (allow), served as admin.test.
    let (status, body) = h2_get(port, "http://www.test/secret", Some("admin.test")).await;
    assert_eq!(
        status,
        400,
        ":authority www.test with host admin.test; the upstream saw host {:?}",
        upstream_host(&body)
    );
    let (status, _) = h2_get(port, "http://admin.test/secret", Some("www.test")).await;
    assert_eq!(status, 400);
    // The same host in two spellings is one authority.
    let (status, body) = h2_get(port, "http://www.test/x", Some("WWW.test.")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream_host(&body).as_deref(), Some("www.test"));
    // `:authority` alone (what h2 clients send): matched canonically, forwarded canonically.
    for (authority, want) in [
        ("admin.test", 401),
        ("admin.test.", 401),
        ("ADMIN.TEST:80", 401),
        ("www.test.", 200),
    ] {
        let (status, body) = h2_get(port, &format!("http://{authority}/x"), None).await;
        assert_eq!(
            status,
            want,
            ":authority {authority:?}; the upstream saw host {:?}",
            upstream_host(&body)
        );
        if want == 200 {
            assert_eq!(upstream_host(&body).as_deref(), Some("www.test"));
        }
    }
}
