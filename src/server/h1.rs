//! A lean HTTP/1.1 server path for plain-HTTP connections, in front of hyper.
//!
//! Most requests a proxy sees are simple: HTTP/1.1, no body, no upgrade, kept alive. For those,
//! this module parses the head with `httparse`, calls the service in the connection's own task,
//! and writes the response head and body straight to the socket — no dispatcher, no per-request
//! timer (one lazily re-armed timer per connection bounds the head-read time), no shutdown
//! watcher per request. Anything else — a body (`Content-Length` or `Transfer-Encoding`), an
//! upgrade, `Expect`, `Connection` other than `keep-alive`, HTTP/1.0, an absolute or `*` target,
//! `CONNECT`, a head that does not parse, an over-long head, the HTTP/2 preface — is handed to
//! hyper together with every byte already read, and hyper serves the rest of the connection
//! exactly as it serves a connection from the start. So every unusual case, and every error
//! response hyper gives (400, 414, 431), behaves as before; only requests that cannot carry a
//! body are ever served here, which leaves no room for a request-smuggling disagreement.
//!
//! Responses: `Content-Length` when the body's length is known (a mismatching header is
//! replaced by the real length; a body that overruns a declared length aborts the connection),
//! `Transfer-Encoding: chunked` otherwise; no body after HEAD, 1xx, 204 or 304; a `date` header
//! when the service set none. Body data is written as it comes: a body that is not ready is
//! never waited on with bytes held back (streaming responses stay streaming).

use std::future::{Future, poll_fn};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri, header};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::app::App;
use crate::http::body::{Body, RequestBody};
use crate::live::Live;
use crate::proxy::Inbound;
use crate::proxy::h1::{cached_name, parse_length};

/// Most header fields in a request head served here (hyper's default, which answers 431
/// beyond it).
const MAX_FIELDS: usize = 100;
/// Free space made in the read buffer before each read.
const READ_CHUNK: usize = 8 * 1024;
/// Response bytes gathered before they are written even though more body is ready.
const WRITE_BATCH: usize = 64 * 1024;

/// The worker's stop signal, as the lean connections see it.
#[derive(Default)]
pub struct Stop {
    stopping: AtomicBool,
    notify: Notify,
}

impl Stop {
    /// Idle connections close now; busy ones after their response.
    pub fn trigger(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn is_set(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

/// How a lean connection ended.
pub enum Outcome {
    /// Closed (by the client, an error, the head-read timeout, or shutdown).
    Closed,
    /// Hyper must serve the rest of the connection, starting with these bytes already read.
    HandOff(Bytes),
}

/// Per-server settings.
pub struct Limits {
    /// Time allowed to receive a complete request head, counted from when the connection
    /// started waiting for it (idle keep-alive time included), as hyper's `header_read_timeout`.
    pub header_read_timeout: Duration,
    /// A head still incomplete at this many bytes goes to hyper (which answers 431).
    pub max_head: usize,
}

/// A request head served here: its parts, the header values sharing the head's bytes.
struct Parsed {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

// Returned by value once per request and matched at once: boxing would cost an allocation.
#[allow(clippy::large_enum_variant)]
enum Parse {
    Complete(Parsed),
    Partial,
    HandOff,
}

/// Serves requests on `stream` until it closes or needs hyper.
pub async fn serve(
    stream: &mut TcpStream,
    conn: &(Arc<Live>, Inbound),
    limits: &Limits,
    stop: &Stop,
) -> Outcome {
    // The running configuration, re-read only when a reload swapped it (no reference count
    // shared with other workers is touched per request).
    let mut current = conn.0.cache();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut names: Vec<HeaderName> = Vec::new();
    let mut spans: Vec<(u32, u32, u32, u32)> = Vec::with_capacity(16);
    let mut deadline = tokio::time::Instant::now() + limits.header_read_timeout;
    // One timer for the connection's life, re-armed only when it fires early: a request costs
    // no timer registration.
    let mut timer = std::pin::pin!(tokio::time::sleep_until(deadline));
    let mut stopped = std::pin::pin!(stop.notify.notified());
    stopped.as_mut().enable();
    loop {
        if stop.is_set() {
            return Outcome::Closed;
        }
        deadline = tokio::time::Instant::now() + limits.header_read_timeout;
        let parsed = loop {
            if !buf.is_empty() {
                match parse(&mut buf, &mut names, &mut spans) {
                    Parse::Complete(p) => break p,
                    Parse::HandOff => return Outcome::HandOff(buf.freeze()),
                    Parse::Partial if buf.len() >= limits.max_head => {
                        return Outcome::HandOff(buf.freeze());
                    }
                    Parse::Partial => {}
                }
            }
            if buf.capacity() - buf.len() < READ_CHUNK {
                buf.reserve(READ_CHUNK);
            }
            let idle = buf.is_empty();
            let read = poll_fn(|cx| {
                if let Poll::Ready(r) =
                    tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, &mut buf)
                {
                    return Poll::Ready(Some(r));
                }
                // Shutdown closes a connection between requests, not one mid-head.
                if idle && stopped.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    if tokio::time::Instant::now() >= deadline {
                        return Poll::Ready(None);
                    }
                    timer.as_mut().reset(deadline);
                    let _ = timer.as_mut().poll(cx);
                }
                Poll::Pending
            })
            .await;
            match read {
                Some(Ok(n)) if n > 0 => {}
                _ => return Outcome::Closed,
            }
        };
        let head_request = parsed.method == Method::HEAD;
        let mut req = Request::new(RequestBody::Empty);
        *req.method_mut() = parsed.method;
        *req.uri_mut() = parsed.uri;
        *req.headers_mut() = parsed.headers;
        let app = current.load();
        let Some(resp) = handle(stream, &mut buf, app, &conn.1, req).await else {
            return Outcome::Closed;
        };
        match respond(stream, &mut out, resp, head_request, stop).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return Outcome::Closed,
        }
    }
}

/// Runs the service for one request. A request still pending after its second poll (the
/// upstream is slow; a fast one completes on its first or second) also watches the client
/// socket: if the client goes away, the request is dropped — and with it the upstream exchange
/// — instead of running to the route timeout. `None`: the client went away.
async fn handle(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    app: &App,
    inbound: &Inbound,
    req: Request<RequestBody>,
) -> Option<Response<Body>> {
    let mut handling = std::pin::pin!(app.handle(req, inbound));
    let mut polls = 0u32;
    poll_fn(|cx| {
        if let Poll::Ready(resp) = handling.as_mut().poll(cx) {
            return Poll::Ready(Some(resp));
        }
        polls += 1;
        // Only while nothing is buffered: bytes already read are the client's next request
        // (pipelined), kept for it, and the end of the connection is then noticed on write.
        if polls >= 2 && buf.is_empty() {
            buf.reserve(READ_CHUNK);
            match tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(None),
                Poll::Ready(Ok(_)) | Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

/// Parses a complete request head at the start of `buf`, removing it from `buf` when it is one
/// served here.
fn parse(
    buf: &mut BytesMut,
    names: &mut Vec<HeaderName>,
    spans: &mut Vec<(u32, u32, u32, u32)>,
) -> Parse {
    spans.clear();
    let (len, method, target) = {
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut req = httparse::Request::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut req,
            buf,
            &mut fields,
        ) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Parse::Partial,
            // Hyper answers what does not parse (400, 431) — or serves HTTP/2.
            Err(_) => return Parse::HandOff,
        };
        if req.version != Some(1) || len > u32::MAX as usize {
            return Parse::HandOff;
        }
        let (Some(method), Some(path)) = (req.method, req.path) else {
            return Parse::HandOff;
        };
        if !path.starts_with('/') || method == "CONNECT" {
            return Parse::HandOff;
        }
        let base = buf.as_ptr() as usize;
        for h in req.headers.iter() {
            let name = h.name.as_bytes();
            // Anything that may carry a body or change the connection goes to hyper.
            let served = match name.len() {
                6 => !name.eq_ignore_ascii_case(b"expect"),
                7 => !name.eq_ignore_ascii_case(b"upgrade"),
                10 => {
                    !name.eq_ignore_ascii_case(b"connection")
                        || h.value.trim_ascii().eq_ignore_ascii_case(b"keep-alive")
                }
                14 => !name.eq_ignore_ascii_case(b"content-length"),
                17 => !name.eq_ignore_ascii_case(b"transfer-encoding"),
                _ => true,
            };
            if !served {
                return Parse::HandOff;
            }
            let n = (h.name.as_ptr() as usize - base) as u32;
            let v = (h.value.as_ptr() as usize - base) as u32;
            spans.push((n, n + h.name.len() as u32, v, v + h.value.len() as u32));
        }
        let m = (method.as_ptr() as usize - base, method.len());
        let t = (path.as_ptr() as usize - base, path.len());
        (len, m, t)
    };
    let Ok(method) = Method::from_bytes(&buf[method.0..method.0 + method.1]) else {
        return Parse::HandOff;
    };
    // Checked on the borrowed bytes first, so that a hand-off still has the whole head.
    let head = buf.split_to(len).freeze();
    let uri = match Uri::from_maybe_shared(head.slice(target.0..target.0 + target.1)) {
        Ok(u) => u,
        Err(_) => return rejoin(buf, head),
    };
    // Room for what the gate and the forwarder add (X-Forwarded-*, identity headers), so that the
    // map is not grown and rehashed on the way.
    let mut headers = HeaderMap::with_capacity(spans.len() + 12);
    for (i, &(ns, ne, vs, ve)) in spans.iter().enumerate() {
        let raw_name = &head[ns as usize..ne as usize];
        let Some(name) = cached_name(names, i, raw_name) else {
            return rejoin(buf, head);
        };
        let Ok(value) = HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize)) else {
            return rejoin(buf, head);
        };
        headers.append(name, value);
    }
    Parse::Complete(Parsed {
        method,
        uri,
        headers,
    })
}

/// Puts a head split off for serving back in front of the buffer, for hyper.
fn rejoin(buf: &mut BytesMut, head: Bytes) -> Parse {
    let mut whole = BytesMut::with_capacity(head.len() + buf.len());
    whole.extend_from_slice(&head);
    whole.extend_from_slice(buf);
    *buf = whole;
    Parse::HandOff
}

/// How the response body is delimited on the wire.
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// Writes one response. `Ok(true)`: the connection can serve another request.
async fn respond(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    resp: Response<Body>,
    head_request: bool,
    stop: &Stop,
) -> io::Result<bool> {
    let (mut parts, mut body) = resp.into_parts();
    let status = parts.status.as_u16();
    let bodiless = head_request || status < 200 || status == 204 || status == 304;
    let framing = if bodiless {
        Framing::None
    } else if let Some(n) = body.size_hint().exact() {
        if parts
            .headers
            .get(header::CONTENT_LENGTH)
            .is_none_or(|v| parse_length(v.as_bytes()) != Some(n))
        {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        Framing::Length(n)
    } else if let Some(n) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| parse_length(v.as_bytes()))
    {
        Framing::Length(n)
    } else {
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        Framing::Chunked
    };
    let mut keep_alive = !parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    if keep_alive && stop.is_set() {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        keep_alive = false;
    }

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or_default()
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    if !parts.headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        date::append(out);
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    drop(parts);

    let mut left = match framing {
        Framing::None => {
            drop(body);
            stream.write_all(out).await?;
            return Ok(keep_alive);
        }
        Framing::Length(n) => n,
        Framing::Chunked => 0,
    };
    let chunked = matches!(framing, Framing::Chunked);
    loop {
        // A body that is not ready is not waited on while bytes are held back.
        let step = poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
            Poll::Pending if !out.is_empty() => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
            Poll::Ready(f) => Poll::Ready(Some(f)),
        })
        .await;
        match step {
            None => {
                stream.write_all(out).await?;
                out.clear();
            }
            Some(None) => {
                if chunked {
                    out.extend_from_slice(b"0\r\n\r\n");
                } else if left != 0 {
                    // Shorter than declared: the client must see the connection end.
                    stream.write_all(out).await?;
                    return Ok(false);
                }
                stream.write_all(out).await?;
                return Ok(keep_alive);
            }
            Some(Some(Err(e))) => {
                tracing::debug!(error = %e, "response body failed; closing the connection");
                let _ = stream.write_all(out).await;
                return Ok(false);
            }
            Some(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers are not sent on HTTP/1.1
                };
                if data.is_empty() {
                    continue;
                }
                if chunked {
                    use std::io::Write;
                    let _ = write!(out, "{:x}\r\n", data.len());
                } else {
                    let n = data.len() as u64;
                    if n > left {
                        tracing::debug!("response body longer than its length; closing");
                        let _ = stream.write_all(out).await;
                        return Ok(false);
                    }
                    left -= n;
                }
                if out.len() + data.len() <= WRITE_BATCH {
                    out.extend_from_slice(&data);
                } else {
                    stream.write_all(out).await?;
                    out.clear();
                    stream.write_all(&data).await?;
                }
                if chunked {
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }
}

/// The `date` header value, formatted once per second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }

    pub fn append(out: &mut Vec<u8>) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != secs || c.1.is_empty() {
                *c = (secs, httpdate::fmt_http_date(now));
            }
            out.extend_from_slice(c.1.as_bytes());
        });
    }
}

/// A connection with bytes already read in front of it: what hyper reads first after a
/// hand-off.
pub struct Rewind {
    prefix: Bytes,
    io: TcpStream,
}

impl Rewind {
    pub fn new(prefix: Bytes, io: TcpStream) -> Rewind {
        Rewind { prefix, io }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let bytes = self.prefix.split_to(n);
            buf.put_slice(&bytes);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Entry points for the fuzz targets in `fuzz/` (not an API): the head parser as a connection
/// runs it, request after request on one buffer and one header-name cache.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// What [`Connection::next`] made of the bytes at the start of the buffer.
    #[allow(clippy::large_enum_variant)]
    pub enum Head {
        /// Served here: the request and how many bytes its head took.
        Served {
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            consumed: usize,
        },
        /// Incomplete: more bytes are needed.
        Partial,
        /// Hyper serves the rest, starting with every byte still in the buffer.
        HandOff,
    }

    /// One connection's parser state.
    #[derive(Default)]
    pub struct Connection {
        names: Vec<HeaderName>,
        spans: Vec<(u32, u32, u32, u32)>,
    }

    impl Connection {
        pub fn next(&mut self, buf: &mut BytesMut) -> Head {
            let before = buf.len();
            match parse(buf, &mut self.names, &mut self.spans) {
                Parse::Complete(p) => Head::Served {
                    method: p.method,
                    uri: p.uri,
                    headers: p.headers,
                    consumed: before - buf.len(),
                },
                Parse::Partial => Head::Partial,
                Parse::HandOff => Head::HandOff,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> (Parse, BytesMut) {
        let mut buf = BytesMut::from(s.as_bytes());
        let mut names = Vec::new();
        let mut spans = Vec::new();
        let p = parse(&mut buf, &mut names, &mut spans);
        (p, buf)
    }

    fn handed_off(s: &str) -> bool {
        let (p, buf) = parse_str(s);
        // A hand-off leaves every byte for hyper.
        matches!(p, Parse::HandOff) && buf.as_ref() == s.as_bytes()
    }

    #[test]
    fn a_simple_request_is_served_and_removed_from_the_buffer() {
        let (p, buf) = parse_str(
            "GET /a/b?c=d HTTP/1.1\r\nHost: x\r\nCookie: a=b\r\nConnection: keep-alive\r\nX-Custom: 1\r\n\r\nGET /next",
        );
        let Parse::Complete(p) = p else {
            panic!("not served")
        };
        assert_eq!(p.method, Method::GET);
        assert_eq!(p.uri, "/a/b?c=d");
        assert_eq!(p.headers.len(), 4);
        assert_eq!(p.headers["cookie"], "a=b");
        assert_eq!(p.headers["x-custom"], "1");
        assert_eq!(
            buf.as_ref(),
            b"GET /next",
            "pipelined bytes stay for the next request"
        );
    }

    #[test]
    fn an_incomplete_head_waits_for_more() {
        assert!(matches!(
            parse_str("GET / HTTP/1.1\r\nHost: x\r\n").0,
            Parse::Partial
        ));
    }

    #[test]
    fn anything_that_may_carry_a_body_or_change_the_connection_goes_to_hyper() {
        for s in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "GET / HTTP/1.1\r\ncontent-length: 0\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET / HTTP/1.1\r\nTRANSFER-ENCODING: gzip\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: keep-alive, x-foo\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "GET http://example.com/ HTTP/1.1\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\n\r\n",
            "CONNECT example.com:443 HTTP/1.1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            "GET /a b HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        ] {
            assert!(handed_off(s), "served here: {s:?}");
        }
    }

    #[test]
    fn more_fields_than_hyper_allows_go_to_hyper() {
        let mut s = String::from("GET / HTTP/1.1\r\n");
        for i in 0..MAX_FIELDS {
            s.push_str(&format!("x-{i}: v\r\n"));
        }
        assert!(matches!(
            parse_str(&format!("{s}\r\n")).0,
            Parse::Complete(_)
        ));
        s.push_str("x-last: v\r\n\r\n");
        assert!(handed_off(&s));
    }

    #[test]
    fn header_names_are_reused_by_position_and_checked() {
        let mut names = Vec::new();
        let mut spans = Vec::new();
        for (req, want) in [
            (
                "GET / HTTP/1.1\r\nX-One: 1\r\nX-Two: 2\r\n\r\n",
                ["x-one", "x-two"],
            ),
            (
                "GET / HTTP/1.1\r\nX-One: 1\r\nX-Three: 3\r\n\r\n",
                ["x-one", "x-three"],
            ),
        ] {
            let mut buf = BytesMut::from(req.as_bytes());
            let Parse::Complete(p) = parse(&mut buf, &mut names, &mut spans) else {
                panic!("not served")
            };
            let got: Vec<_> = p.headers.keys().map(|k| k.as_str().to_string()).collect();
            assert_eq!(got, want);
        }
    }
}
