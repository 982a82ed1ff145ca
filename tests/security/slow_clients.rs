//! Slow clients (Slowloris, CVE-2007-6750): many connections that trickle a request head never
//! finish it, hold a worker, or delay anyone else; each is closed at `server.header_read_timeout`
//! however steadily it trickles. One trickling connection on its own is pinned by
//! tests/proxy/lean_server.rs (`slow_and_idle_clients_are_closed_after_the_header_read_timeout`).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::allow_proxy;
use crate::support::Recorder;

const SLOW: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_trickling_heads_starve_no_one_and_are_all_closed() {
    portcullis::install_crypto();
    let rec = Recorder::start().await;
    let p = allow_proxy(&rec.url, "header_read_timeout = \"2s\"", "").await;
    let start = Instant::now();
    let mut slow = Vec::new();
    for i in 0..SLOW {
        let port = p.port;
        slow.push(tokio::spawn(async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                return Some(Duration::ZERO);
            };
            let head = format!("GET /slow{i} HTTP/1.1\r\nHost: app\r\nX-Pad: ");
            let t = Instant::now();
            let mut bytes = head.into_bytes();
            bytes.extend(std::iter::repeat_n(b'a', 400));
            for b in bytes {
                if s.write_all(&[b]).await.is_err() {
                    return Some(t.elapsed());
                }
                let mut buf = [0u8; 256];
                match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return Some(t.elapsed()),
                    // Anything the server says (a 408) ends it too; wait for the close.
                    Ok(Ok(_)) => {}
                    Err(_) => {}
                }
            }
            None
        }));
    }
    // Meanwhile, ordinary requests are answered promptly.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = reqwest::Client::new();
    for i in 0..10 {
        let t = Instant::now();
        let r = c.get(format!("{}/ok{i}", p.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "an ordinary request waited {:?} behind {SLOW} slow clients",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for h in slow {
        let closed_after = h.await.unwrap();
        let d = closed_after.expect("a trickling head was never cut off");
        assert!(
            d < Duration::from_secs(6),
            "a trickling head was allowed {d:?} against a 2 s timeout"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(20));
    let paths = rec.paths();
    assert!(
        paths.iter().all(|p| p.starts_with("/ok")),
        "a slow head reached the upstream: {paths:?}"
    );
}
