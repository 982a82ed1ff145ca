//! The request's one authority (src/http/host.rs, HDR-12). Properties, for any bytes as a
//! `Host` value, an absolute-form target's authority and an `X-Forwarded-Host`:
//! - nothing panics;
//! - a canonical host is final: parsing it again gives itself (with the same default port);
//!   it is lower case, has no trailing dot, no empty label, and only letters, digits, `-`,
//!   `_`, `.` (or a bracketed IPv6 literal), then at most a non-default numeric port;
//! - spellings of one host agree: upper case, one trailing dot and the default port added to a
//!   canonical host parse to the same host;
//! - a request whose target and `Host` parse to different hosts is refused, never served by
//!   either; two `Host` fields are refused.
#![no_main]

use http::request::Parts;
use libfuzzer_sys::fuzz_target;
use portcullis::http::host::{Host, HostError, RequestHost};

fn check_canonical(h: &Host, port: u16, input: &str) {
    let s = h.as_str();
    let again = Host::parse(s, port)
        .unwrap_or_else(|e| panic!("{input:?} -> {s:?} does not parse again: {e}"))
        .unwrap_or_else(|| panic!("{input:?} -> {s:?} is empty"));
    assert_eq!(again.as_str(), s, "{input:?}: not final");
    let name = h.name();
    assert!(s.starts_with(name), "{input:?}: {s:?} / {name:?}");
    assert!(
        !name.is_empty() && !name.ends_with('.'),
        "{input:?} -> {name:?}"
    );
    assert_eq!(name, name.to_ascii_lowercase(), "{input:?} -> {name:?}");
    if !name.starts_with('[') {
        assert!(
            name.split('.').all(|l| !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')),
            "{input:?} -> {name:?}"
        );
    }
    match &s[name.len()..] {
        "" => {}
        rest => {
            let p: u16 = rest
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("{input:?} -> {s:?}: bad port part"));
            assert_ne!(p, port, "{input:?} -> {s:?}: default port kept");
        }
    }
    // Other spellings of the same host: upper case and one trailing dot, the default port.
    let port_part = &s[name.len()..];
    let dot = if name.starts_with('[') { "" } else { "." };
    let upper = format!("{}{dot}{port_part}", name.to_ascii_uppercase());
    let with_port = format!("{name}:{port}");
    for variant in [upper.as_str(), with_port.as_str()] {
        if variant == with_port && !port_part.is_empty() {
            continue;
        }
        let v = Host::parse(variant, port).ok().flatten();
        assert_eq!(
            v.as_ref().map(Host::as_str),
            Some(s),
            "{input:?}: {variant:?}"
        );
    }
}

fn parts(target: &str, hosts: &[&[u8]]) -> Option<Parts> {
    let mut b = http::Request::get(target);
    for h in hosts {
        b = b.header(http::header::HOST, http::HeaderValue::from_bytes(h).ok()?);
    }
    Some(b.body(()).ok()?.into_parts().0)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let port = if sel & 1 == 0 { 80 } else { 443 };
    let (a, b) = match rest.iter().position(|&c| c == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    if let Ok(s) = std::str::from_utf8(a)
        && let Ok(Some(h)) = Host::parse(s, port)
    {
        check_canonical(&h, port, s);
    }
    // Target authority `a` and Host `b`: one authority or a refusal.
    let Ok(target_authority) = std::str::from_utf8(a) else {
        return;
    };
    let scheme = if port == 443 { "https" } else { "http" };
    let Some(p) = parts(&format!("{scheme}://{target_authority}/x"), &[b]) else {
        return;
    };
    let tls = sel & 2 != 0;
    match RequestHost::of(&p, tls) {
        Ok(rh) => {
            let t = p
                .uri
                .authority()
                .and_then(|a| Host::parse(a.as_str(), port).ok().flatten());
            let h = std::str::from_utf8(b)
                .ok()
                .and_then(|b| Host::parse(b, port).ok().flatten());
            if let (Some(t), Some(h)) = (&t, &h) {
                assert_eq!(t, h, "served with two authorities");
            }
            assert_eq!(
                rh.host,
                t.or(h),
                "the authority is the target's, else Host's"
            );
        }
        Err(HostError::Duplicate) => panic!("one Host field reported as two"),
        Err(_) => {}
    }
    if let Some(p) = parts("/x", &[b, b]) {
        assert_eq!(RequestHost::of(&p, tls).err(), Some(HostError::Duplicate));
    }
    // X-Forwarded-Host: one canonical host or a refusal.
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_bytes(b) {
        headers.insert("x-forwarded-host", v);
        if let Ok(Some(h)) = RequestHost::forwarded(&headers, port == 443) {
            check_canonical(&h, port, "x-forwarded-host");
        }
    }
});
