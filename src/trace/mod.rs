//! Request tracing: every forwarded request carries ALB's `X-Amzn-Trace-Id` and a W3C
//! `traceparent`, both in the access log; with `[tracing]` configured, one span per request is
//! exported over OTLP ([`otlp`]).
//!
//! - `X-Amzn-Trace-Id` from a trusted proxy (`server.trusted_proxies`) is kept when well formed:
//!   its `Root` and custom fields stay, its `Self` is replaced by ours (ALB's rule for a hop).
//!   From anyone else, or malformed, oversized or with control characters, it is replaced by a
//!   new `Root=1-{8 hex unix time}-{24 hex random}`.
//! - `traceparent` (version `00`): from a trusted proxy a valid one keeps its trace id (and is
//!   this hop's parent); otherwise the trace id is the `Root`'s 32 hex digits (time and id), so
//!   the two headers name the same trace. The span id is new for every hop.

pub mod otlp;

use std::cell::Cell;

use http::{HeaderMap, HeaderName, HeaderValue};

pub const X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Longest `X-Amzn-Trace-Id` kept from a trusted proxy (ALB's own values are under 100 bytes).
pub const MAX_AMZN_LEN: usize = 512;
/// Most `;`-separated fields in a kept `X-Amzn-Trace-Id`.
pub const MAX_AMZN_FIELDS: usize = 8;
/// Longest `tracestate` passed on (W3C asks to propagate at least 512 characters).
pub const MAX_TRACESTATE_LEN: usize = 512;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// One request's trace identity, fixed when the request arrives.
#[derive(Debug, Clone)]
pub struct Trace {
    pub trace_id: [u8; 16],
    /// This hop's span (the upstream's parent).
    pub span_id: [u8; 8],
    /// The trusted caller's span, when it sent a valid `traceparent`.
    pub parent: Option<[u8; 8]>,
    /// Whether the trace is recorded (the `traceparent` flag sent upstream).
    pub sampled: bool,
    /// The `X-Amzn-Trace-Id` sent upstream.
    pub amzn: HeaderValue,
    /// The `traceparent` sent upstream.
    pub traceparent: HeaderValue,
    /// A trusted caller's `tracestate`, passed on with its `traceparent`.
    pub tracestate: Option<HeaderValue>,
}

impl Trace {
    /// The trace for a request with `headers`; `trusted`: the peer is a trusted proxy, whose
    /// trace headers are kept when well formed. `now`: seconds since the Unix epoch.
    pub fn begin(headers: &HeaderMap, trusted: bool, now: u64) -> Trace {
        let parent = if trusted {
            headers
                .get(&TRACEPARENT)
                .and_then(|v| parse_traceparent(v.as_bytes()))
        } else {
            None
        };
        let kept = if trusted {
            headers
                .get(&X_AMZN_TRACE_ID)
                .and_then(|v| parse_amzn(v.as_bytes()))
        } else {
            None
        };
        let time = now as u32;
        let mut root_buf = [0u8; 35];
        let root: &[u8] = match (&kept, &parent) {
            (Some(k), _) if k.root.is_some() => k.root.unwrap_or_default(),
            // No Root to keep: one from the trusted traceparent's trace id (the same trace),
            // else a new one.
            (_, Some(p)) => root_field(&mut root_buf, &p.trace_id),
            _ => {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&time.to_be_bytes());
                fill_random(&mut id[4..]);
                root_field(&mut root_buf, &id)
            }
        };
        let trace_id = match &parent {
            Some(p) => p.trace_id,
            None => root_trace_id(root).unwrap_or_default(),
        };
        let mut span_id = [0u8; 8];
        fill_random_nonzero(&mut span_id);

        // `Self=…;Root=…;custom…` when a trusted proxy's header had a Root (ALB's order);
        // `Root=…[;custom…]` otherwise.
        let mut amzn = Vec::with_capacity(64 + kept.as_ref().map_or(0, |k| k.custom_len));
        if kept.as_ref().is_some_and(|k| k.root.is_some()) {
            amzn.extend_from_slice(b"Self=1-");
            push_hex(&mut amzn, &time.to_be_bytes());
            amzn.push(b'-');
            let mut id = [0u8; 12];
            fill_random(&mut id);
            push_hex(&mut amzn, &id);
            amzn.push(b';');
        }
        amzn.extend_from_slice(b"Root=");
        amzn.extend_from_slice(root);
        if let Some(k) = &kept {
            for f in k.custom.iter().flatten() {
                amzn.push(b';');
                amzn.extend_from_slice(f);
            }
        }
        let tracestate = match (&parent, trusted) {
            (Some(_), true) => headers
                .get(&TRACESTATE)
                .filter(|v| valid_tracestate(v.as_bytes()))
                .cloned(),
            _ => None,
        };
        let sampled = parent.as_ref().is_some_and(|p| p.sampled);
        let mut t = Trace {
            trace_id,
            span_id,
            parent: parent.map(|p| p.span_id),
            sampled,
            amzn: header_value(amzn),
            traceparent: HeaderValue::from_static(""),
            tracestate,
        };
        t.traceparent = t.format_traceparent();
        t
    }

    /// Records whether this trace is sampled (the OTLP sampler's answer).
    pub fn set_sampled(&mut self, sampled: bool) {
        if self.sampled != sampled {
            self.sampled = sampled;
            self.traceparent = self.format_traceparent();
        }
    }

    fn format_traceparent(&self) -> HeaderValue {
        let mut v = Vec::with_capacity(55);
        v.extend_from_slice(b"00-");
        push_hex(&mut v, &self.trace_id);
        v.push(b'-');
        push_hex(&mut v, &self.span_id);
        v.extend_from_slice(if self.sampled { b"-01" } else { b"-00" });
        header_value(v)
    }

    /// Sets the trace headers on a request about to be forwarded (whatever the client sent).
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(X_AMZN_TRACE_ID, self.amzn.clone());
        headers.insert(TRACEPARENT, self.traceparent.clone());
        match &self.tracestate {
            Some(s) => {
                headers.insert(TRACESTATE, s.clone());
            }
            None => {
                headers.remove(TRACESTATE);
            }
        }
    }

    /// Names the trace on a forward-auth answer, so that the proxy in front can pass the same
    /// ids on to the app (e.g. nginx `auth_request_set`).
    pub fn on_response(&self, headers: &mut HeaderMap) {
        headers.insert(X_AMZN_TRACE_ID, self.amzn.clone());
        headers.insert(TRACEPARENT, self.traceparent.clone());
    }

    /// The `X-Amzn-Trace-Id` value as text (ASCII by construction).
    pub fn amzn_str(&self) -> &str {
        self.amzn.to_str().unwrap_or("")
    }

    pub fn traceparent_str(&self) -> &str {
        self.traceparent.to_str().unwrap_or("")
    }
}

/// A well-formed `X-Amzn-Trace-Id` from a trusted proxy: its Root and custom fields (its
/// `Self` is dropped: this hop writes its own).
struct KeptAmzn<'a> {
    root: Option<&'a [u8]>,
    custom: [Option<&'a [u8]>; MAX_AMZN_FIELDS],
    custom_len: usize,
}

/// `Field=value;…`: visible ASCII only, bounded, at most one `Root` (and it must be
/// `1-{8 hex}-{24 hex}`); fields named with letters, digits, `-` and `_`.
fn parse_amzn(v: &[u8]) -> Option<KeptAmzn<'_>> {
    if v.is_empty() || v.len() > MAX_AMZN_LEN || !v.iter().all(|b| (0x21..0x7f).contains(b)) {
        return None;
    }
    let mut kept = KeptAmzn {
        root: None,
        custom: [None; MAX_AMZN_FIELDS],
        custom_len: 0,
    };
    let mut n = 0;
    for field in v.split(|b| *b == b';') {
        let eq = field.iter().position(|b| *b == b'=')?;
        let (name, value) = (&field[..eq], &field[eq + 1..]);
        if name.is_empty()
            || value.is_empty()
            || !name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        if name.eq_ignore_ascii_case(b"Root") {
            if kept.root.is_some() || !valid_root(value) {
                return None;
            }
            kept.root = Some(value);
        } else if name.eq_ignore_ascii_case(b"Self") {
            continue;
        } else {
            if n == MAX_AMZN_FIELDS {
                return None;
            }
            kept.custom[n] = Some(field);
            kept.custom_len += field.len() + 1;
            n += 1;
        }
    }
    Some(kept)
}

/// `1-{8 hex}-{24 hex}`.
fn valid_root(v: &[u8]) -> bool {
    v.len() == 35
        && v.starts_with(b"1-")
        && v[10] == b'-'
        && v[2..10].iter().all(u8::is_ascii_hexdigit)
        && v[11..].iter().all(u8::is_ascii_hexdigit)
}

/// The 16-byte trace id a Root names: its time and id digits, in order.
fn root_trace_id(root: &[u8]) -> Option<[u8; 16]> {
    if !valid_root(root) {
        return None;
    }
    let mut digits = [0u8; 32];
    digits[..8].copy_from_slice(&root[2..10]);
    digits[8..].copy_from_slice(&root[11..]);
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = (unhex(digits[2 * i])? << 4) | unhex(digits[2 * i + 1])?;
    }
    Some(id)
}

/// `1-{first 4 bytes}-{last 12 bytes}` of a trace id, into `buf`.
fn root_field<'b>(buf: &'b mut [u8; 35], id: &[u8; 16]) -> &'b [u8] {
    buf[..2].copy_from_slice(b"1-");
    hex_into(&mut buf[2..10], &id[..4]);
    buf[10] = b'-';
    hex_into(&mut buf[11..], &id[4..]);
    &buf[..]
}

fn hex_into(out: &mut [u8], bytes: &[u8]) {
    for (o, b) in out.chunks_mut(2).zip(bytes) {
        o[0] = HEX[(b >> 4) as usize];
        o[1] = HEX[(b & 0xf) as usize];
    }
}

struct Parent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    sampled: bool,
}

/// `00-{32 lower hex}-{16 lower hex}-{2 lower hex}`, neither id all zeros.
fn parse_traceparent(v: &[u8]) -> Option<Parent> {
    if v.len() != 55 || !v.starts_with(b"00-") || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let lower_hex = |s: &[u8]| s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !lower_hex(&v[3..35]) || !lower_hex(&v[36..52]) || !lower_hex(&v[53..55]) {
        return None;
    }
    let mut trace_id = [0u8; 16];
    decode_hex(&v[3..35], &mut trace_id)?;
    let mut span_id = [0u8; 8];
    decode_hex(&v[36..52], &mut span_id)?;
    let mut flags = [0u8; 1];
    decode_hex(&v[53..55], &mut flags)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags[0] & 1 == 1,
    })
}

/// Printable ASCII (spaces allowed, as around `,`), bounded.
fn valid_tracestate(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= MAX_TRACESTATE_LEN && v.iter().all(|b| (0x20..0x7f).contains(b))
}

fn decode_hex(s: &[u8], out: &mut [u8]) -> Option<()> {
    for (i, b) in out.iter_mut().enumerate() {
        *b = (unhex(s[2 * i])? << 4) | unhex(s[2 * i + 1])?;
    }
    Some(())
}

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 0xf) as usize]);
    }
}

fn header_value(v: Vec<u8>) -> HeaderValue {
    // Visible ASCII by construction (hex digits and checked fields).
    HeaderValue::from_maybe_shared(bytes::Bytes::from(v))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

thread_local! {
    /// SplitMix64 state, seeded once per thread from the system RNG: trace and span ids need
    /// to be unique and unguessable enough to not collide, not secret.
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        // Never on a supported OS; the time and the thread's address still differ per thread.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        b = (t ^ (&b as *const _ as u64)).to_le_bytes();
    }
    u64::from_le_bytes(b)
}

fn next_u64() -> u64 {
    RNG.with(|s| {
        let x = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(x);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

fn fill_random(out: &mut [u8]) {
    for chunk in out.chunks_mut(8) {
        let r = next_u64().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
}

fn fill_random_nonzero(out: &mut [u8; 8]) {
    loop {
        fill_random(out);
        if *out != [0; 8] {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const ROOT: &str = "1-67891233-abcdef012345678912345678";

    #[test]
    fn a_new_root_names_the_time_and_the_traceparent_the_same_trace() {
        let t = Trace::begin(&HeaderMap::new(), false, 0x6789_1233);
        let amzn = t.amzn_str();
        assert!(amzn.starts_with("Root=1-67891233-"), "{amzn}");
        assert_eq!(amzn.len(), "Root=".len() + 35);
        let tp = t.traceparent_str();
        assert_eq!(tp.len(), 55);
        assert_eq!(&tp[3..11], "67891233");
        assert_eq!(&tp[11..35], &amzn[16..]);
        assert!(tp.ends_with("-00"));
    }

    #[test]
    fn a_trusted_root_is_kept_with_custom_fields_and_a_new_self() {
        let h = headers(&[(
            "x-amzn-trace-id",
            &format!("Self=1-67891233-000000000000000000000000;Root={ROOT};CalledFrom=app"),
        )]);
        let t = Trace::begin(&h, true, 0x7000_0000);
        let amzn = t.amzn_str();
        assert!(amzn.starts_with("Self=1-70000000-"), "{amzn}");
        assert!(
            amzn.ends_with(&format!(";Root={ROOT};CalledFrom=app")),
            "{amzn}"
        );
        assert!(!amzn.contains("000000000000000000000000"));
        assert_eq!(
            &t.traceparent_str()[3..35],
            "67891233abcdef012345678912345678"
        );
        // Untrusted: replaced.
        let t = Trace::begin(&h, false, 0x7000_0000);
        assert!(t.amzn_str().starts_with("Root=1-70000000-"));
        assert!(!t.amzn_str().contains("CalledFrom"));
    }

    #[test]
    fn malformed_trusted_headers_are_replaced() {
        for bad in [
            "Root=1-6789123-abcdef012345678912345678".to_string(),
            format!("Root={ROOT};Root={ROOT}"),
            format!("Root={ROOT};x"),
            format!("Root={ROOT} ;A=b"),
            format!("Root={ROOT};A={}", "b".repeat(MAX_AMZN_LEN)),
            format!("Root={ROOT};A=\tb"),
            format!("Root={ROOT};A=\u{e9}"),
            (0..9).map(|i| format!("F{i}=x;")).collect::<String>() + &format!("Root={ROOT}"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(
                X_AMZN_TRACE_ID,
                HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
            );
            let t = Trace::begin(&h, true, 1);
            assert!(
                t.amzn_str().starts_with("Root=1-00000001-"),
                "{bad:?} → {}",
                t.amzn_str()
            );
        }
    }

    #[test]
    fn a_trusted_traceparent_keeps_its_trace_id_and_flag() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let h = headers(&[("traceparent", tp), ("tracestate", "congo=t61rcWkgMzE")]);
        let t = Trace::begin(&h, true, 1);
        let out = t.traceparent_str();
        assert!(
            out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{out}"
        );
        assert!(out.ends_with("-01"));
        assert_ne!(&out[36..52], "00f067aa0ba902b7");
        assert_eq!(
            t.parent,
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        // The Root derived from it names the same trace.
        assert_eq!(t.amzn_str(), "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736");
        assert!(t.tracestate.is_some());
        // Untrusted, uppercase, zero ids or another version: a new trace.
        for (bad, trusted) in [
            (tp, false),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                true,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                true,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                true,
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                true,
            ),
        ] {
            let t = Trace::begin(&headers(&[("traceparent", bad)]), trusted, 1);
            assert!(!t.traceparent_str().contains("4bf92f35"), "{bad}");
            assert!(t.tracestate.is_none());
            assert!(t.parent.is_none());
        }
    }

    #[test]
    fn span_ids_differ_per_request() {
        let a = Trace::begin(&HeaderMap::new(), false, 1);
        let b = Trace::begin(&HeaderMap::new(), false, 1);
        assert_ne!(a.span_id, b.span_id);
        assert_ne!(a.trace_id, b.trace_id);
    }
}
