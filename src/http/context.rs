//! One request's context: the facts fixed when it arrives — its id, the client's address,
//! whether the client is a trusted proxy, whether it wants JSON, the clock, and its trace —
//! built once in `App::handle` and read by every layer; errors are rendered through it.

use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use http::Response;

use crate::error::RequestError;
use crate::http::body::Body;
use crate::trace::Trace;

pub struct RequestContext {
    pub id: RequestId,
    /// The peer's address (the connection's, not `X-Forwarded-For`).
    pub client: IpAddr,
    /// The peer is in `server.trusted_proxies`.
    pub trusted_peer: bool,
    /// A script, not a browser page (JSON error bodies, 401 rather than a sign-in redirect).
    pub json: bool,
    /// The request's one monotonic clock reading: latencies and session times start here.
    pub started: Instant,
    /// The same instant on the wall clock (trace ids, span start).
    pub wall: SystemTime,
    pub trace: Trace,
}

impl RequestContext {
    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    /// `e` as the response this client gets: page or JSON, with the request id.
    pub fn render(&self, e: RequestError) -> Response<Body> {
        e.render(self.id.as_str(), self.json)
    }
}

/// A request id as ASCII hex.
pub struct RequestId([u8; 16]);

impl RequestId {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

/// Request ids: a random per-process prefix, the worker, and that worker's counter — unique,
/// cheap (no atomic shared between cores), not secret.
pub struct RequestIds {
    prefix: u32,
}

thread_local! {
    static REQUEST_COUNTER: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

impl RequestIds {
    /// Ids with a fresh random prefix (one per configuration built).
    pub fn random() -> RequestIds {
        let mut p = [0u8; 4];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut p)
            .expect("system RNG available");
        RequestIds {
            prefix: u32::from_be_bytes(p),
        }
    }

    /// 16 hex digits, formatted on the stack: 24 bits of prefix, 8 of worker, 32 of counter.
    pub fn next(&self) -> RequestId {
        let n = REQUEST_COUNTER.with(|c| {
            let n = c.get();
            c.set(n.wrapping_add(1));
            n
        });
        let worker = (crate::worker::index() & 0xff) as u64;
        let v = (u64::from(self.prefix >> 8) << 40) | (worker << 32) | u64::from(n);
        let mut buf = [0u8; 16];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = b"0123456789abcdef"[((v >> (60 - 4 * i)) & 0xf) as usize];
        }
        RequestId(buf)
    }
}
