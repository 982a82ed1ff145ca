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
