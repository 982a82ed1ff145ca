//! Raw-socket clients and a recording upstream, for the byte-exact classes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub body: Vec<u8>,
}

/// An upstream that records every request it receives and answers `200 ok`.
pub struct Recorder {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let path = req.uri().to_string();
                            let body = match req.into_body().collect().await {
                                Ok(b) => b.to_bytes().to_vec(),
                                Err(_) => b"<body error>".to_vec(),
                            };
                            log.lock().unwrap().push(Seen { path, body });
                            Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(
                                b"ok",
                            ))))
                        }
                    });
                    // Far more header fields than Portcullis lets through, so that a limit
                    // seen by a client is Portcullis's own, not this upstream's.
                    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    b.http1().max_headers(1000);
                    let _ = b.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Recorder { url, seen }
    }

    pub fn paths(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.path.clone())
            .collect()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

/// Writes `bytes` on a fresh connection and reads until the server closes it or `wait`
/// passes. Returns everything read, as text.
pub async fn exchange(port: u16, bytes: &[u8], wait: Duration) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// The status codes of the responses in a raw HTTP/1.1 byte stream, in order.
pub fn statuses(text: &str) -> Vec<u16> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("HTTP/1.1 ") {
        let at_line_start = i == 0 || rest[..i].ends_with('\n');
        if at_line_start && let Some(code) = rest.get(i + 9..i + 12).and_then(|c| c.parse().ok()) {
            out.push(code);
        }
        rest = &rest[i + 9..];
    }
    out
}
