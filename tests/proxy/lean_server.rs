//! The lean HTTP/1.1 server path (src/server/h1.rs), end to end: the real binary, raw client
//! sockets that write exact bytes, and the echo upstream. Simple requests are served by the
//! lean path; the first request it does not serve (a body, an upgrade, HTTP/1.0, …) hands the
//! connection, with every byte already read, to hyper. These tests pin what a client sees on
//! one connection across that boundary, the response framing, and the timeouts.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(10);

/// The real binary with one allow route to `upstream` (20 s route timeout); `server_extra`:
/// more `[server]` keys.
async fn proxy_to(upstream: &str, server_extra: &str) -> Proxy {
    portcullis::install_crypto();
    allow_proxy(upstream, server_extra, "timeout = \"20s\"").await
}

/// One response as read off the wire.
#[derive(Debug)]
struct Wire {
    status: u16,
    /// Lower-cased names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: bool,
}

impl Wire {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A client connection that reads responses one at a time (for pipelining: several requests
/// may be written before any response is read).
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(port: u16) -> Client {
        Client {
            s: TcpStream::connect(("127.0.0.1", port)).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &str) {
        self.s.write_all(bytes.as_bytes()).await.unwrap();
    }

    /// Reads more; false at the end of the connection.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        let n = tokio::time::timeout(WAIT, self.s.read(&mut chunk))
            .await
            .expect("the proxy answered in time")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// Reads one response; `head`: it answers a HEAD request (no body follows).
    async fn response(&mut self, head: bool) -> Wire {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(self.fill().await, "connection ended before a response head");
        };
        let text = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end);
        let mut lines = text.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let chunked = find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let mut body = Vec::new();
        if head || status == 204 || status == 304 {
        } else if chunked {
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    assert!(self.fill().await, "connection ended inside a chunked body");
                };
                let size_text = String::from_utf8(self.buf[..line_end].to_vec()).unwrap();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap(), 16)
                    .unwrap_or_else(|_| panic!("bad chunk size line {size_text:?}"));
                while self.buf.len() < line_end + 2 + size + 2 {
                    assert!(self.fill().await, "connection ended inside a chunk");
                }
                assert_eq!(&self.buf[line_end + 2 + size..line_end + 4 + size], b"\r\n");
                body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.drain(..line_end + 4 + size);
                if size == 0 {
                    break;
                }
            }
        } else if let Some(n) = find("content-length") {
            let n: usize = n.parse().unwrap();
            while self.buf.len() < n {
                assert!(self.fill().await, "connection ended inside the body");
            }
            body = self.buf.drain(..n).collect();
        } else {
            while self.fill().await {}
            body = std::mem::take(&mut self.buf);
        }
        Wire {
            status,
            headers,
            body,
            chunked,
        }
    }

    /// Waits for the proxy to close the connection; false if it stays open past `within`.
    /// Any bytes received meanwhile are returned with the verdict.
    async fn closed_within(&mut self, within: Duration) -> (bool, Vec<u8>) {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.s.read(&mut chunk)).await {
                Err(_) => return (false, got),
                Ok(Ok(0)) | Ok(Err(_)) => return (true, got),
                Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nAccept: */*\r\n\r\n")
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let echo = Echo::start().await;
    let p = proxy_to(&echo.url(), "").await;
    let mut c = Client::connect(p.port).await;
    c.send(&format!(
        "{}{}{}",
        get("/one"),
        get("/two?x=1"),
        get("/three")
    ))
    .await;
    for want in ["/one", "/two?x=1", "/three"] {
        let r = c.response(false).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["uri"], want);
        assert_eq!(r.json()["method"], "GET");
    }
    // Still open and serving.
    c.send(&get("/four")).await;
    assert_eq!(c.response(false).await.json()["uri"], "/four");
}

#[tokio::test]
async fn bodies_after_simple_requests_are_served_on_the_same_connection() {
    // Everything in one write: the lean path serves the GET, then hands the POST (with its
    // body, already read) and the rest of the connection to hyper.
    let echo = Echo::start().await;
    let p = proxy_to(&echo.url(), "").await;
    let mut c = Client::connect(p.port).await;
    c.send(&format!(
        "{}POST /form HTTP/1.1\r\nHost: app.test\r\nContent-Length: 11\r\n\r\nhello=world{}\
         PUT /chunked HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n\
         4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n{}",
        get("/before"),
        get("/between"),
        get("/after"),
    ))
    .await;
    let want = [
        ("GET", "/before", 0),
        ("POST", "/form", 11),
        ("GET", "/between", 0),
        ("PUT", "/chunked", 7),
        ("GET", "/after", 0),
    ];
    for (method, uri, len) in want {
        let r = c.response(false).await;
        assert_eq!(r.status, 200, "{uri}");
        let v = r.json();
        assert_eq!(v["method"], method);
        assert_eq!(v["uri"], uri);
        assert_eq!(v["body_len"], len, "{uri}");
    }
}

#[tokio::test]
async fn head_responses_carry_no_body_and_the_connection_stays_usable() {
    let echo = Echo::start().await;
    let p = proxy_to(&echo.url(), "").await;
    let mut c = Client::connect(p.port).await;
    c.send(&format!(
        "HEAD /h HTTP/1.1\r\nHost: app.test\r\n\r\n{}",
        get("/after-head")
    ))
    .await;
    let h = c.response(true).await;
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    // The next response starts right where the HEAD response's head ended.
    let r = c.response(false).await;
    assert_eq!(r.json()["uri"], "/after-head");
}

#[tokio::test]
async fn generated_pages_have_a_date_and_an_exact_length() {
    let echo = Echo::start().await;
    let p = proxy_to(&echo.url(), "").await;
    let mut c = Client::connect(p.port).await;
    c.send("GET /oauth2/no-such-endpoint HTTP/1.1\r\nHost: app.test\r\nAccept: text/html\r\n\r\n")
        .await;
    let r = c.response(false).await;
    assert_eq!(r.status, 404);
    assert!(!r.chunked);
    assert_eq!(
        r.header("content-length").unwrap(),
        r.body.len().to_string()
    );
    let date = r.header("date").expect("a date header");
    assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
    // Upstream responses keep the upstream's own date and length.
    c.send(&get("/x")).await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("date").iter().count(), 1);
}

#[tokio::test]
async fn responses_of_unknown_length_are_chunked_to_the_client() {
    // An upstream that answers close-delimited (no length, HTTP/1.1 `Connection: close`):
    // the proxy cannot give the client a length, so it chunks, and keeps the client's
    // connection.
    let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = up.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = up.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart-one;")
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = s.write_all(b"part-two").await;
            });
        }
    });
    let p = proxy_to(&format!("http://{addr}"), "").await;
    let mut c = Client::connect(p.port).await;
    for _ in 0..2 {
        c.send(&get("/unknown-length")).await;
        let r = c.response(false).await;
        assert_eq!(r.status, 200);
        assert!(r.chunked, "{:?}", r.headers);
        assert!(r.header("content-length").is_none());
        assert_eq!(r.body, b"part-one;part-two");
    }
}

#[tokio::test]
async fn slow_and_idle_clients_are_closed_after_the_header_read_timeout() {
    let echo = Echo::start().await;
    let p = proxy_to(&echo.url(), "header_read_timeout = \"1s\"").await;

    // A head that never completes.
    let mut c = Client::connect(p.port).await;
    c.send("GET / HTTP/1.1\r\nHost: app.test\r\n").await;
    let t = Instant::now();
    let (closed, got) = c.closed_within(Duration::from_secs(6)).await;
    assert!(closed, "a stalled head kept the connection open");
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(t.elapsed() >= Duration::from_millis(900));

    // A head trickled a byte at a time: progress does not extend the time allowed.
    let mut c = Client::connect(p.port).await;
    let t = Instant::now();
    let trickle = b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for b in trickle {
        if c.s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let (gone, _) = c.closed_within(Duration::from_millis(200)).await;
        if gone {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickled head was allowed {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());

    // Idle keep-alive after a complete exchange.
    let mut c = Client::connect(p.port).await;
    c.send(&get("/idle")).await;
    assert_eq!(c.response(false).await.status, 200);
    let (closed, _) = c.closed_within(Duration::from_secs(6)).await;
    assert!(
        closed,
        "an idle keep-alive connection was kept past the timeout"
    );

    // A connection that keeps sending complete requests is never cut.
    let mut c = Client::connect(p.port).await;
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(2500) {
        c.send(&get("/busy")).await;
        assert_eq!(c.response(false).await.status, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_its_upstream_request() {
    // The upstream reads the request and never answers; it records when the proxy closes
    // that connection.
    let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = up.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = up.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => {
                            let _ = tx.send(Instant::now());
                            return;
                        }
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    let p = proxy_to(&format!("http://{addr}"), "").await;
    let mut c = Client::connect(p.port).await;
    c.send(&get("/hangs")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(c);
    let gone = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect(
            "the upstream request was still open 5 s after the client left (route timeout is 20 s)",
        )
        .unwrap();
    assert!(closed >= gone);
}

#[tokio::test]
async fn http10_h2c_and_malformed_requests_are_still_answered_by_hyper() {
    let echo = Echo::start().await;
    let p = proxy_to(&echo.url(), "").await;

    let mut c = Client::connect(p.port).await;
    c.send("GET /ten HTTP/1.0\r\nHost: app.test\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["uri"], "/ten");

    let mut c = Client::connect(p.port).await;
    c.send("GET /a b c HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await;
    assert_eq!(c.response(false).await.status, 400);

    // After a served request, a bad one on the same connection still gets hyper's answer.
    let mut c = Client::connect(p.port).await;
    c.send(&format!(
        "{}GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        get("/ok")
    ))
    .await;
    assert_eq!(c.response(false).await.status, 200);
    assert_eq!(c.response(false).await.status, 400);

    let mut c = Client::connect(p.port).await;
    let mut req = String::from("GET / HTTP/1.1\r\nHost: app.test\r\n");
    for i in 0..120 {
        req.push_str(&format!("x-field-{i}: v\r\n"));
    }
    req.push_str("\r\n");
    c.send(&req).await;
    assert_eq!(c.response(false).await.status, 431);

    // HTTP/2 with prior knowledge on the plain listener.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2.get(format!("{}/h2c", p.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(echoed(r).await["uri"], "/h2c");
}

#[tokio::test]
async fn sigterm_closes_idle_keep_alive_connections_without_waiting_for_the_grace() {
    let echo = Echo::start().await;
    let mut p = proxy_to(&echo.url(), "shutdown_grace = \"20s\"").await;
    let mut idle = Client::connect(p.port).await;
    idle.send(&get("/warm")).await;
    assert_eq!(idle.response(false).await.status, 200);
    let t = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &p.pid().to_string()])
        .status();
    let (closed, _) = idle.closed_within(Duration::from_secs(8)).await;
    assert!(closed, "the idle connection stayed open");
    let status = p.wait_exit(Duration::from_secs(8)).expect("exited");
    assert!(status.success(), "{status:?}");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
}
