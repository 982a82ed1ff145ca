//! `portcullis healthcheck`: one HTTP/1.1 GET against the admin listener's `/healthz`, for a
//! container `HEALTHCHECK` or an exec probe in an image that has no shell and no curl.
//!
//! Plain TCP on purpose: the admin listener never speaks TLS, and a blocking std socket with a
//! deadline needs no runtime.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The default target: the admin listener's default address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9901/healthz";

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("{0}: only http:// URLs with a host are supported")]
    BadUrl(String),
    #[error("cannot resolve {0}")]
    Resolve(String, #[source] std::io::Error),
    #[error("cannot reach {0}")]
    Connect(String, #[source] std::io::Error),
    #[error("no answer from {0} in time")]
    Timeout(String),
    #[error("reading the answer from {0}")]
    Io(String, #[source] std::io::Error),
    #[error("{0} answered {1:?}, not 200")]
    Status(String, String),
}

/// Sends `GET url` and succeeds only on status 200, all within `timeout`.
pub fn check(url: &str, timeout: Duration) -> Result<(), HealthError> {
    let bad = || HealthError::BadUrl(url.to_owned());
    let parsed = url::Url::parse(url).map_err(|_| bad())?;
    if parsed.scheme() != "http" {
        return Err(bad());
    }
    let host = parsed.host_str().ok_or_else(bad)?;
    let port = parsed.port_or_known_default().ok_or_else(bad)?;
    let deadline = Instant::now() + timeout;
    let addrs: Vec<_> = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .map_err(|e| HealthError::Resolve(url.to_owned(), e))?
        .collect();
    let mut last = None;
    let mut stream = None;
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut stream = stream.ok_or_else(|| match last {
        Some(e) => HealthError::Connect(url.to_owned(), e),
        None => HealthError::Timeout(url.to_owned()),
    })?;
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            HealthError::Timeout(url.to_owned())
        }
        _ => HealthError::Io(url.to_owned(), e),
    };
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left)).map_err(io)?;
    stream.set_write_timeout(Some(left)).map_err(io)?;
    let path = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    let authority = match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: portcullis-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    // The status line is all we need; read until its end (or 1 KiB).
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or("").trim();
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some(v), Some("200")) if v.starts_with("HTTP/1.") => Ok(()),
        _ => Err(HealthError::Status(url.to_owned(), line.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server answering `response` to the first request; returns its URL.
    fn serve_once(response: &'static str) -> String {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = l.local_addr().expect("local addr");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
                assert!(req.contains(&format!("Host: {addr}\r\n")), "{req}");
                let _ = s.write_all(response.as_bytes());
            }
        });
        format!("http://{addr}/healthz")
    }

    #[test]
    fn ok_on_200() {
        let url = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        check(&url, Duration::from_secs(2)).expect("healthy");
    }

    #[test]
    fn fails_on_other_status() {
        let url = serve_once("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        let e = check(&url, Duration::from_secs(2)).expect_err("503 is unhealthy");
        assert!(
            matches!(e, HealthError::Status(_, ref l) if l.contains("503")),
            "{e}"
        );
    }

    #[test]
    fn fails_when_nothing_listens() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}/healthz", l.local_addr().expect("addr"));
        drop(l);
        let e = check(&url, Duration::from_secs(2)).expect_err("closed port");
        assert!(matches!(e, HealthError::Connect(..)), "{e}");
    }

    #[test]
    fn times_out_on_a_silent_server() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}/healthz", l.local_addr().expect("addr"));
        let started = Instant::now();
        let e = check(&url, Duration::from_millis(300)).expect_err("silent server");
        assert!(matches!(e, HealthError::Timeout(_)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(l);
    }

    #[test]
    fn rejects_non_http_urls() {
        for u in ["https://127.0.0.1:9901/healthz", "not a url", "unix:/run/x"] {
            assert!(matches!(
                check(u, Duration::from_secs(1)),
                Err(HealthError::BadUrl(_))
            ));
        }
    }
}
