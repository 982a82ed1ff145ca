//! A lean HTTP/1.1 client for plain `http://` upstreams, driven inside the request's own task.
//!
//! The general client (`hyper_util`'s pooled `Client`) hands every request to a spawned
//! connection task through a channel and the response back through another, clones its
//! connector, and locks a shared pool. On the hot path — a request without a body, no upgrade,
//! on a request worker — this module instead writes the request head straight to a pooled
//! upstream socket owned by the worker, parses the response head with `httparse`, and streams
//! the body by reading that socket from the response body itself. One task, no channels; the
//! connection goes back to the worker's pool when the body has been read to its end.
//!
//! Framing follows RFC 9112 §6.3: no body for HEAD, 1xx, 204 and 304; `Transfer-Encoding`
//! (chunked decoded here, anything else read to close) overrides `Content-Length`; otherwise
//! `Content-Length`, or to close. A connection is reused only when the response was complete,
//! HTTP/1.1, without `Connection: close`, and nothing followed it. Anything malformed is an
//! error (502), never a guess.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::http::body::BoxError;

/// Largest response head accepted from an upstream.
const MAX_HEAD: usize = 64 * 1024;
/// Most response header fields accepted from an upstream.
const MAX_HEADERS: usize = 100;
/// Free space made in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;
/// Longest chunk-size line, and most trailer bytes, accepted in a chunked body.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;
/// An idle connection older than this is closed rather than reused (upstreams commonly close
/// idle keep-alive connections after 60-75 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// Most idle connections kept per worker.
const MAX_IDLE: usize = 256;

/// Why an exchange failed.
#[derive(Debug)]
pub enum H1Error {
    /// Could not connect.
    Connect(String),
    /// The connection failed or closed before any byte of the response arrived: on a reused
    /// connection the upstream most likely closed it while idle, so an idempotent request may
    /// be retried on a fresh one.
    Closed(String),
    /// The response was malformed, too large, or cut short.
    Invalid(String),
}

impl std::fmt::Display for H1Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            H1Error::Connect(s) => write!(f, "cannot connect to the upstream: {s}"),
            H1Error::Closed(s) => write!(f, "upstream closed the connection: {s}"),
            H1Error::Invalid(s) => write!(f, "invalid response from the upstream: {s}"),
        }
    }
}

/// One upstream connection and its buffers.
pub struct Conn {
    io: TcpStream,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
    /// The request head being written (kept to reuse its allocation).
    out: Vec<u8>,
    /// The header names of the previous response, by position: an upstream answers with the
    /// same names in the same order, so a custom name is a reference count, not an allocation.
    names: Vec<HeaderName>,
    /// Where each field of the response head being parsed lies (reused).
    spans: Vec<(u32, u32, u32, u32)>,
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// The connections to one upstream, one idle list per request worker: a connection is
/// registered with the worker runtime that opened it and is only ever used there.
pub struct H1Pool {
    host: String,
    port: u16,
    connect_timeout: Duration,
    workers: Vec<Arc<WorkerPool>>,
}

/// One worker's idle connections. Its own `Arc`, so that a response body's reference to it
/// is a count no other core touches.
struct WorkerPool {
    idle: Mutex<Vec<Idle>>,
    /// Whether this worker's sweeper task runs.
    swept: std::sync::atomic::AtomicBool,
}

/// How often a worker closes the idle connections the upstream has closed (or that aged out):
/// without it they would sit in CLOSE-WAIT until the next request on that route (issue 9).
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

/// The reactor has seen this idle connection readable: the upstream closed it (or sent bytes
/// nobody asked for). Cached readiness only — no syscall.
fn closed_by_peer(conn: &Conn) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    conn.io.poll_read_ready(&mut cx).is_ready()
}

impl WorkerPool {
    /// `since`: when the request that used it started (an idle age that errs on the old side,
    /// without reading the clock again).
    fn checkin(self: &Arc<Self>, conn: Box<Conn>, since: Instant) {
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(Idle { conn, since });
            }
        }
        if !self.swept.swap(true, std::sync::atomic::Ordering::Relaxed) {
            // On the worker's own runtime, where the connections are registered; it ends when
            // the pool goes (a reload replaced the route).
            let pool = Arc::downgrade(self);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SWEEP_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(pool) = pool.upgrade() else { return };
                    pool.sweep(Instant::now());
                }
            });
        }
    }

    fn sweep(&self, now: Instant) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|i| now.duration_since(i.since) <= IDLE_TIMEOUT && !closed_by_peer(&i.conn));
    }
}

/// How the response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Framing {
    /// Exactly this many more bytes.
    Length(u64),
    Chunked(Chunk),
    /// Until the upstream closes the connection.
    Eof,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    Done,
}

impl H1Pool {
    pub fn new(host: &str, port: u16, connect_timeout: Duration, workers: usize) -> H1Pool {
        // IPv6 literals come bracketed from the URL; the resolver wants them bare.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        H1Pool {
            host,
            port,
            connect_timeout,
            workers: (0..=workers)
                .map(|_| {
                    Arc::new(WorkerPool {
                        idle: Mutex::new(Vec::new()),
                        swept: std::sync::atomic::AtomicBool::new(false),
                    })
                })
                .collect(),
        }
    }

    /// Whether this worker index has a pool (0 — a thread that is not a request worker — has
    /// none: its runtime may not be the one that registered the sockets).
    pub fn serves(&self, worker: usize) -> bool {
        worker != 0 && worker < self.workers.len()
    }

    fn checkout(&self, worker: usize, now: Instant) -> Option<Box<Conn>> {
        let mut idle = self.workers[worker]
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while let Some(i) = idle.pop() {
            if now.duration_since(i.since) > IDLE_TIMEOUT {
                // The most recently used one is too old: so are all the others.
                idle.clear();
                return None;
            }
            // An idle connection has nothing to read; if the reactor has seen it readable, the
            // upstream closed it (or sent garbage): drop it.
            if !closed_by_peer(&i.conn) {
                return Some(i.conn);
            }
        }
        None
    }

    async fn connect(&self) -> Result<Box<Conn>, H1Error> {
        let attempt = async {
            let mut last = None;
            let addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(|e| H1Error::Connect(format!("{}: {e}", self.host)))?;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(io) => {
                        let _ = io.set_nodelay(true);
                        return Ok(Box::new(Conn {
                            io,
                            buf: BytesMut::with_capacity(READ_CHUNK),
                            out: Vec::with_capacity(1024),
                            names: Vec::new(),
                            spans: Vec::with_capacity(32),
                        }));
                    }
                    Err(e) => last = Some(format!("{addr}: {e}")),
                }
            }
            Err(H1Error::Connect(
                last.unwrap_or_else(|| format!("{}: no address", self.host)),
            ))
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(H1Error::Connect(format!(
                "{}:{}: connect timed out",
                self.host, self.port
            ))),
        }
    }

    /// Sends a request without a body and returns the response head with a body that streams
    /// from the connection. `target` is the request-target (path and query); `started`, when
    /// the request arrived.
    pub async fn request(
        &self,
        worker: usize,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        started: Instant,
    ) -> Result<Response<UpstreamBody>, H1Error> {
        let (mut conn, reused) = match self.checkout(worker, started) {
            Some(c) => (c, true),
            None => (self.connect().await?, false),
        };
        encode_head(&mut conn.out, method, target, headers);
        let head_only = *method == Method::HEAD;
        match exchange(&mut conn, head_only).await {
            Ok(head) => Ok(self.respond(worker, conn, head, started)),
            Err(H1Error::Closed(_)) if reused && is_idempotent(method) => {
                let mut fresh = self.connect().await?;
                fresh.out = std::mem::take(&mut conn.out);
                let head = exchange(&mut fresh, head_only).await?;
                Ok(self.respond(worker, fresh, head, started))
            }
            Err(e) => Err(e),
        }
    }

    fn respond(
        &self,
        worker: usize,
        conn: Box<Conn>,
        head: Head,
        started: Instant,
    ) -> Response<UpstreamBody> {
        let mut body = UpstreamBody {
            conn: Some(conn),
            started,
            pool: self.workers[worker].clone(),
            framing: head.framing,
            reusable: head.reusable,
        };
        if body.is_done() {
            body.finish();
        }
        let mut resp = Response::new(body);
        *resp.status_mut() = head.status;
        *resp.headers_mut() = head.headers;
        resp
    }
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// `METHOD target HTTP/1.1`, every header as `name: value`, blank line. Names and values come
/// from `http` types, which cannot hold CR or LF.
fn encode_head(out: &mut Vec<u8>, method: &Method, target: &str, headers: &HeaderMap) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

struct Head {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    reusable: bool,
}

async fn read_more(conn: &mut Conn) -> io::Result<usize> {
    conn.buf.reserve(READ_CHUNK);
    poll_fn(|cx| tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf)).await
}

/// Writes the encoded request head and reads the response head (skipping interim 1xx).
async fn exchange(conn: &mut Conn, head_only: bool) -> Result<Head, H1Error> {
    if let Err(e) = conn.io.write_all(&conn.out).await {
        return Err(H1Error::Closed(e.to_string()));
    }
    conn.buf.clear();
    let mut received = false;
    loop {
        if !conn.buf.is_empty() {
            match parse_head(&mut conn.buf, &mut conn.names, &mut conn.spans, head_only)? {
                Some(Some(head)) => return Ok(head),
                Some(None) => continue, // an interim response was consumed
                None => {
                    if conn.buf.len() > MAX_HEAD {
                        return Err(H1Error::Invalid("response head too large".into()));
                    }
                }
            }
        }
        match read_more(conn).await {
            Ok(0) if !received => return Err(H1Error::Closed("closed before responding".into())),
            Ok(0) => return Err(H1Error::Invalid("response head cut short".into())),
            Ok(_) => received = true,
            Err(e) if !received => return Err(H1Error::Closed(e.to_string())),
            Err(e) => return Err(H1Error::Invalid(e.to_string())),
        }
    }
}

/// Parses a complete head at the start of `buf` and removes it from `buf`. `None`: not
/// complete yet; `Some(None)`: an interim (1xx) response was skipped.
fn parse_head(
    buf: &mut BytesMut,
    names: &mut Vec<HeaderName>,
    spans: &mut Vec<(u32, u32, u32, u32)>,
    head_only: bool,
) -> Result<Option<Option<Head>>, H1Error> {
    // Offsets of each field in `buf`, so that the head can be frozen once and every value
    // shared from it without copying. (Kept in the connection's vector: nothing to initialise.)
    spans.clear();
    let (len, code, minor) = {
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut res,
            buf,
            &mut fields,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
            Ok(httparse::Status::Complete(_)) => {
                return Err(H1Error::Invalid("response head too large".into()));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(H1Error::Invalid(e.to_string())),
        };
        let base = buf.as_ptr() as usize;
        for h in res.headers.iter() {
            // The head is at most MAX_HEAD (< 4 GiB) bytes: offsets fit in u32.
            let n = (h.name.as_ptr() as usize - base) as u32;
            let v = (h.value.as_ptr() as usize - base) as u32;
            spans.push((n, n + h.name.len() as u32, v, v + h.value.len() as u32));
        }
        (len, res.code.unwrap_or(0), res.version.unwrap_or(1))
    };
    let count = spans.len();
    if (100..200).contains(&code) && code != 101 {
        buf.advance(len);
        return Ok(Some(None));
    }
    let status =
        StatusCode::from_u16(code).map_err(|_| H1Error::Invalid(format!("status code {code}")))?;
    if code == 101 {
        return Err(H1Error::Invalid(
            "unexpected 101 Switching Protocols".into(),
        ));
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = minor == 0;
    for (i, &(ns, ne, vs, ve)) in spans.iter().enumerate() {
        let (ns, ne, vs, ve) = (ns as usize, ne as usize, vs as usize, ve as usize);
        let raw_name = &head[ns..ne];
        let name = cached_name(names, i, raw_name)
            .ok_or_else(|| H1Error::Invalid("bad header name".into()))?;
        let raw = &head[vs..ve];
        if name == header::CONTENT_LENGTH {
            let n =
                parse_length(raw).ok_or_else(|| H1Error::Invalid("bad Content-Length".into()))?;
            if length.is_some_and(|l| l != n) {
                return Err(H1Error::Invalid("conflicting Content-Length".into()));
            }
            length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            // A coding is a token (parameters after `;`): anything else is not a framing
            // anyone can agree on (hyper reads `g\xffzip, chunked` to close; RFC 9112 §6.1).
            let tokens = raw.split(|b| *b == b',').all(|t| {
                let t = t
                    .split(|b| *b == b';')
                    .next()
                    .unwrap_or_default()
                    .trim_ascii();
                !t.is_empty()
                    && t.iter()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
            });
            if !tokens {
                return Err(H1Error::Invalid("bad Transfer-Encoding".into()));
            }
            // RFC 9112 §6.1: in an HTTP/1.0 message its framing is faulty (hyper agrees).
            if minor == 0 {
                return Err(H1Error::Invalid("Transfer-Encoding in HTTP/1.0".into()));
            }
            // Only the final coding matters: chunked, or the body runs to close.
            chunked = Some(
                raw.rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked")),
            );
        } else if name == header::CONNECTION {
            for t in raw.split(|b| *b == b',') {
                let t = t.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if minor == 0 && t.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                }
            }
        }
        let value = HeaderValue::from_maybe_shared(head.slice(vs..ve))
            .map_err(|_| H1Error::Invalid("bad header value".into()))?;
        headers.append(name, value);
    }
    let bodiless = head_only || code == 204 || code == 304;
    let framing = if bodiless {
        Framing::Length(0)
    } else if let Some(chunked) = chunked {
        // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3); a response with both is
        // suspect, so its connection is not reused, and the length is not passed on.
        if length.is_some() {
            close = true;
            headers.remove(header::CONTENT_LENGTH);
        }
        if chunked {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::Eof
        }
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Eof
    };
    if framing == Framing::Eof {
        close = true;
    }
    Ok(Some(Some(Head {
        status,
        headers,
        framing,
        reusable: !close,
    })))
}

/// The name of the `i`-th field of a head: the same position's name from the previous head on
/// this connection when it matches (a peer sends the same names in the same order, so a custom
/// name is a reference count, not an allocation), else parsed and remembered. `None`: not a
/// valid field name.
pub(crate) fn cached_name(names: &mut Vec<HeaderName>, i: usize, raw: &[u8]) -> Option<HeaderName> {
    if let Some(n) = names.get(i)
        && n.as_str().as_bytes().eq_ignore_ascii_case(raw)
    {
        return Some(n.clone());
    }
    let n = HeaderName::from_bytes(raw).ok()?;
    if i < names.len() {
        names[i] = n.clone();
    } else if i == names.len() {
        names.push(n.clone());
    }
    Some(n)
}

/// A `Content-Length` value: digits only (surrounding whitespace allowed), no overflow.
pub(crate) fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// A response body read straight from the upstream connection.
pub struct UpstreamBody {
    /// Boxed once per connection, so that the body (kept inline in every response) is small.
    conn: Option<Box<Conn>>,
    started: Instant,
    pool: Arc<WorkerPool>,
    framing: Framing,
    reusable: bool,
}

fn invalid(msg: &str) -> BoxError {
    format!("invalid response body from the upstream: {msg}").into()
}

impl UpstreamBody {
    fn is_done(&self) -> bool {
        matches!(
            self.framing,
            Framing::Length(0) | Framing::Chunked(Chunk::Done)
        )
    }

    /// The body has been read to its end: the connection goes back to the pool if it can be
    /// reused (and nothing unexpected followed the body).
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.reusable
            && conn.buf.is_empty()
        {
            self.pool.checkin(conn, self.started);
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, BoxError>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Err(invalid("connection gone")));
        };
        conn.buf.reserve(READ_CHUNK);
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut conn.io),
            cx,
            &mut conn.buf
        ))?;
        Poll::Ready(Ok(n))
    }
}

/// Takes up to `want` buffered bytes as a data frame.
fn take(buf: &mut BytesMut, want: u64) -> Bytes {
    let n = (buf.len() as u64).min(want) as usize;
    buf.split_to(n).freeze()
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let buf = &mut conn.buf;
            let buffered = !buf.is_empty();
            match this.framing {
                Framing::Length(0) | Framing::Chunked(Chunk::Done) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(rem) if buffered => {
                    let data = take(buf, rem);
                    this.framing = Framing::Length(rem - data.len() as u64);
                    if this.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(Chunk::Data(rem)) if buffered => {
                    let data = take(buf, rem);
                    let left = rem - data.len() as u64;
                    this.framing = Framing::Chunked(if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    });
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Eof if buffered => {
                    let data = buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(state) if buffered => match step_chunk(buf, state) {
                    Ok(Some(next)) => {
                        this.framing = Framing::Chunked(next);
                        continue;
                    }
                    Ok(None) => {} // need more bytes
                    Err(e) => {
                        this.conn = None;
                        return Poll::Ready(Some(Err(e)));
                    }
                },
                _ => {}
            }
            match ready!(this.poll_read(cx)) {
                Ok(0) if this.framing == Framing::Eof => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(invalid("closed before the end"))));
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// Advances the chunked decoder over the framing (not the data) at the start of `buf`.
/// `Ok(None)`: more bytes are needed.
fn step_chunk(buf: &mut BytesMut, state: Chunk) -> Result<Option<Chunk>, BoxError> {
    match state {
        Chunk::Size => {
            let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                return Ok(None);
            };
            let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            let rest = line[digits..].trim_ascii_start();
            // A CR inside the line (in an extension) is not a line end: refused, as hyper does.
            if digits == 0
                || digits > 16
                || !(rest.is_empty() || rest[0] == b';')
                || line.contains(&b'\r')
            {
                return Err(invalid("bad chunk size"));
            }
            let size = line[..digits].iter().fold(0u64, |n, d| {
                (n << 4) | u64::from((*d as char).to_digit(16).unwrap_or(0))
            });
            Ok(Some(if size == 0 {
                Chunk::Trailers(0)
            } else {
                Chunk::Data(size)
            }))
        }
        Chunk::DataEnd => {
            if buf.len() < 2 {
                return Ok(None);
            }
            if &buf[..2] != b"\r\n" {
                return Err(invalid("missing CRLF after a chunk"));
            }
            buf.advance(2);
            Ok(Some(Chunk::Size))
        }
        Chunk::Trailers(seen) => {
            let Some(line) = take_line(buf, MAX_TRAILERS)? else {
                return Ok(None);
            };
            if line.is_empty() {
                return Ok(Some(Chunk::Done));
            }
            let seen = seen + line.len() + 2;
            if seen > MAX_TRAILERS {
                return Err(invalid("trailers too large"));
            }
            if !is_field_line(&line) {
                return Err(invalid("bad trailer field"));
            }
            // Trailer fields are not passed on (as nginx does).
            Ok(Some(Chunk::Trailers(seen)))
        }
        Chunk::Data(_) | Chunk::Done => Ok(Some(state)),
    }
}

/// A header field line (RFC 9110 §5.1, §5.5): a token, a colon, then a value of visible
/// characters, spaces and tabs (obs-text allowed); what hyper accepts as a trailer field.
fn is_field_line(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|b| *b == b':') else {
        return false;
    };
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    colon > 0
        && line[..colon].iter().all(tchar)
        && line[colon + 1..]
            .iter()
            .all(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f))
}

/// Removes one CRLF-terminated line from the start of `buf`, returning it without the CRLF.
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, BoxError> {
    match buf.iter().position(|b| *b == b'\n') {
        None if buf.len() > max => Err(invalid("line too long")),
        None => Ok(None),
        Some(i) if i == 0 || buf[i - 1] != b'\r' => Err(invalid("bare LF")),
        Some(i) => {
            let line = buf.split_to(i + 1).freeze();
            Ok(Some(line.slice(..i - 1)))
        }
    }
}

/// Entry points for the fuzz targets in `fuzz/` (not an API): a whole upstream response read
/// from a buffer the upstream then closed, as [`UpstreamBody`] reads it from a socket.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// A response as the lean client read it.
    pub struct Read {
        pub status: StatusCode,
        pub headers: HeaderMap,
        pub body: Vec<u8>,
        /// "length", "chunked" or "eof".
        pub framing: &'static str,
        /// Whether the connection would go back to the pool.
        pub reused: bool,
    }

    /// Reads the response to a request (`HEAD` when `head_only`) from `bytes`, then end of
    /// stream. `Err`: what the client would answer 502 for.
    pub fn read_response(bytes: &[u8], head_only: bool) -> Result<Read, String> {
        let mut buf = BytesMut::from(bytes);
        let (mut names, mut spans) = (Vec::new(), Vec::new());
        let head = loop {
            match parse_head(&mut buf, &mut names, &mut spans, head_only) {
                Ok(Some(Some(head))) => break head,
                Ok(Some(None)) => continue,
                Ok(None) => return Err("closed before a complete head".into()),
                Err(e) => return Err(e.to_string()),
            }
        };
        let framing = match head.framing {
            Framing::Length(_) => "length",
            Framing::Chunked(_) => "chunked",
            Framing::Eof => "eof",
        };
        let mut body = Vec::new();
        let mut state = head.framing;
        loop {
            match state {
                Framing::Length(0) | Framing::Chunked(Chunk::Done) => break,
                Framing::Eof => {
                    body.extend_from_slice(&buf.split());
                    break;
                }
                _ if buf.is_empty() => return Err("closed before the end".into()),
                Framing::Length(rem) => {
                    let data = take(&mut buf, rem);
                    state = Framing::Length(rem - data.len() as u64);
                    body.extend_from_slice(&data);
                }
                Framing::Chunked(Chunk::Data(rem)) => {
                    let data = take(&mut buf, rem);
                    let left = rem - data.len() as u64;
                    state = Framing::Chunked(if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    });
                    body.extend_from_slice(&data);
                }
                Framing::Chunked(c) => match step_chunk(&mut buf, c) {
                    Ok(Some(next)) => state = Framing::Chunked(next),
                    Ok(None) => return Err("closed before the end".into()),
                    Err(e) => return Err(e.to_string()),
                },
            }
        }
        Ok(Read {
            status: head.status,
            headers: head.headers,
            body,
            framing,
            reused: head.reusable && buf.is_empty(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(input: &[u8]) -> Result<Vec<u8>, BoxError> {
        let mut buf = BytesMut::from(input);
        let mut state = Chunk::Size;
        let mut out = Vec::new();
        loop {
            match state {
                Chunk::Done => return Ok(out),
                Chunk::Data(rem) => {
                    let n = (buf.len() as u64).min(rem) as usize;
                    if n == 0 {
                        return Err("incomplete".into());
                    }
                    out.extend_from_slice(&buf.split_to(n));
                    state = if rem == n as u64 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(rem - n as u64)
                    };
                }
                s => match step_chunk(&mut buf, s)? {
                    Some(next) => state = next,
                    None => return Err("incomplete".into()),
                },
            }
        }
    }

    #[test]
    fn chunked_bodies_decode() {
        assert_eq!(chunks(b"5\r\nhello\r\n0\r\n\r\n").unwrap(), b"hello");
        assert_eq!(
            chunks(b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n").unwrap(),
            b"abc0123456789"
        );
    }

    #[test]
    fn malformed_chunked_bodies_are_refused() {
        for bad in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"-1\r\n",
            b"11111111111111111\r\n",
            // Found by fuzz/fuzz_targets/h1_response_body.rs (hyper refuses both): a trailer
            // line that is not a field, and a bare CR inside a chunk-size line.
            b"2\r\nab\r\n0\r\n\rt=1\r\n\r\n",
            b"2\r\nab\r\n0\r\nnot a field\r\n\r\n",
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
            b"0\r\r\n\r\n",
        ] {
            assert!(chunks(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    fn head(raw: &[u8], head_only: bool) -> Result<Option<Option<Head>>, H1Error> {
        parse_head(
            &mut BytesMut::from(raw),
            &mut Vec::new(),
            &mut Vec::new(),
            head_only,
        )
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = |raw: &[u8]| head(raw, false).unwrap().unwrap().unwrap();
        let r = h(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Length(12), true));
        let r = h(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(r.framing, Framing::Chunked(Chunk::Size));
        let r = h(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(
            (r.framing, r.reusable),
            (Framing::Chunked(Chunk::Size), false)
        );
        assert!(!r.headers.contains_key(header::CONTENT_LENGTH));
        let r = h(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Eof, false));
        let r = h(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Eof, false));
        let r = h(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Length(0), true));
        let r = h(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n");
        assert!(!r.reusable);
        let r = h(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n");
        assert!(!r.reusable);
        let r = head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true)
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(r.framing, Framing::Length(0));
        assert!(matches!(
            head(b"HTTP/1.1 100 Continue\r\n\r\n", false),
            Ok(Some(None))
        ));
        assert!(matches!(
            head(b"HTTP/1.1 200 OK\r\nContent-Le", false),
            Ok(None)
        ));
    }

    #[test]
    fn bad_heads_are_refused() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"NOT HTTP\r\n\r\n",
            // Found by fuzz/fuzz_targets/h1_response_body.rs: hyper reads this to close.
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: g\xffzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: , chunked\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(
                head(bad, false).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn request_head_encoding() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("app"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        let mut out = Vec::new();
        encode_head(&mut out, &Method::GET, "/p?q=1", &h);
        assert_eq!(
            out,
            b"GET /p?q=1 HTTP/1.1\r\nhost: app\r\nx-a: 1\r\nx-a: 2\r\n\r\n".to_vec()
        );
    }
}
