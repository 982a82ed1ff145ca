//! One authority per request (HDR-12, host-header confusion). A request names its host in the
//! target (absolute-form `GET http://a.example/x`, HTTP/2 `:authority`) and in `Host`; when
//! both are present they must name the same host, or the request is refused (400) — never
//! routed by one and served as the other. `Host` sent twice is refused too.
//!
//! Hosts are compared in one canonical spelling, computed once per request: lower case, one
//! trailing dot removed, the scheme's default port removed (`:80` for http, `:443` for https).
//! Route tables hold canonical hosts (made at load with [`route_host`]); the upstream receives
//! the canonical authority as its `Host`. Anything that is not a host name, an IPv4 address or
//! a bracketed IPv6 literal (user information, a path, a space, a percent sign, an empty
//! label, a bad port) is refused rather than matched against a route that has no host.

use http::request::Parts;
use http::{HeaderMap, HeaderName, header};

/// A canonical `host[:port]`: the port kept only when it is not the scheme's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    authority: String,
    host_len: usize,
}

impl Host {
    /// The canonical spelling of `raw` (`host`, `host:port`, `[v6]`, `[v6]:port`), with
    /// `default_port` (the scheme's) dropped. `None` for an empty value (no host named).
    pub fn parse(raw: &str, default_port: u16) -> Result<Option<Host>, HostError> {
        if raw.is_empty() {
            return Ok(None);
        }
        let (host, port) = split(raw)?;
        let host = canonical_name(host)?;
        let port = match port {
            None | Some("") => None,
            Some(p) => match parse_port(p)? {
                p if p == default_port => None,
                p => Some(p),
            },
        };
        let host_len = host.len();
        let authority = match port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        Ok(Some(Host {
            authority,
            host_len,
        }))
    }

    /// The host without its port: what a route's `host` is compared with.
    pub fn name(&self) -> &str {
        &self.authority[..self.host_len]
    }

    /// `host[:port]` as the upstream's `Host` receives it.
    pub fn as_str(&self) -> &str {
        &self.authority
    }
}

/// Why a host was refused (the 400's message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("the host is not a valid host name or address")]
    Invalid,
    #[error("the port is not a number from 0 to 65535")]
    Port,
    #[error("the request target and the Host header name different hosts")]
    Conflict,
    #[error("more than one Host header")]
    Duplicate,
    #[error("the X-Forwarded-Host header is not one valid host")]
    Forwarded,
    #[error("the X-Forwarded-Host header names another host than the request's Host")]
    ForwardedConflict,
}

fn split(raw: &str) -> Result<(&str, Option<&str>), HostError> {
    if raw.starts_with('[') {
        let end = raw.find(']').ok_or(HostError::Invalid)?;
        let rest = &raw[end + 1..];
        return match rest.strip_prefix(':') {
            Some(port) => Ok((&raw[..=end], Some(port))),
            None if rest.is_empty() => Ok((&raw[..=end], None)),
            None => Err(HostError::Invalid),
        };
    }
    Ok(match raw.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (raw, None),
    })
}

fn parse_port(p: &str) -> Result<u16, HostError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::Port);
    }
    p.parse().map_err(|_| HostError::Port)
}

/// Lower case, one trailing dot removed; labels of letters, digits, `-` and `_`.
fn canonical_name(host: &str) -> Result<String, HostError> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(HostError::Invalid)?;
        let ok = !inner.is_empty()
            && inner.contains(':')
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        return match ok {
            true => Ok(format!("[{}]", inner.to_ascii_lowercase())),
            false => Err(HostError::Invalid),
        };
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    match ok {
        true => Ok(name.to_ascii_lowercase()),
        false => Err(HostError::Invalid),
    }
}

/// A route's configured `host`, canonical; a port is refused (routes match the host whatever
/// the port).
pub fn route_host(raw: &str) -> Result<String, String> {
    let (host, port) = split(raw).map_err(|e| format!("{raw:?}: {e}"))?;
    if port.is_some() {
        return Err(format!(
            "{raw:?} has a port: a route's host is matched whatever the port"
        ));
    }
    canonical_name(host).map_err(|e| format!("{raw:?}: {e}"))
}

/// The canonical origin of an `http(s)` URL, `scheme://host[:port]`: what redirect targets
/// are compared by. The `url` crate already lower-cases the host and drops the default port;
/// this also removes one trailing dot, so `https://app.example.com./` is `app.example.com`'s.
pub fn canonical_origin(u: &url::Url) -> String {
    let origin = u.origin().ascii_serialization();
    match (u.host(), u.port()) {
        (Some(url::Host::Domain(d)), port) if d.ends_with('.') && d.len() > 1 => {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}", u.scheme(), &d[..d.len() - 1])
        }
        _ => origin,
    }
}

/// The default port of a scheme (`https` → 443, anything else → 80).
pub fn default_port(https: bool) -> u16 {
    if https { 443 } else { 80 }
}

/// The one authority of a request, kept in its extensions for every later layer (route
/// matching, forward auth, the forwarder) and never recomputed.
#[derive(Debug, Clone, Default)]
pub struct RequestHost {
    pub host: Option<Host>,
    /// The request's scheme is https (the target's scheme, else the listener's TLS).
    pub https: bool,
}

impl RequestHost {
    /// The request's authority from its target and its `Host` header(s); 400-worthy when they
    /// disagree, when `Host` is sent twice, or when either is not a host.
    pub fn of(parts: &Parts, tls: bool) -> Result<RequestHost, HostError> {
        let https = match parts.uri.scheme_str() {
            Some(s) => s.eq_ignore_ascii_case("https"),
            None => tls,
        };
        let port = default_port(https);
        let header = single(&parts.headers, &header::HOST, HostError::Duplicate)?
            .map(|v| Host::parse(v, port))
            .transpose()?
            .flatten();
        let target = match parts.uri.authority() {
            Some(a) if a.as_str().contains('@') => return Err(HostError::Invalid),
            Some(a) => Host::parse(a.as_str(), port)?,
            None => None,
        };
        let host = match (target, header) {
            (Some(t), Some(h)) if t != h => return Err(HostError::Conflict),
            (Some(t), _) => Some(t),
            (None, h) => h,
        };
        Ok(RequestHost { host, https })
    }

    /// The host a trusted proxy names in `X-Forwarded-Host` (with `X-Forwarded-Proto` for
    /// the default port), canonical. `Ok(None)` when it sends none.
    pub fn forwarded(headers: &HeaderMap, https: bool) -> Result<Option<Host>, HostError> {
        use crate::http::headers::{X_FORWARDED_HOST, X_FORWARDED_PROTO};
        let https = match single(headers, &X_FORWARDED_PROTO, HostError::Forwarded)? {
            Some(p) => p.trim().eq_ignore_ascii_case("https"),
            None => https,
        };
        match single(headers, &X_FORWARDED_HOST, HostError::Forwarded)? {
            None => Ok(None),
            Some(v) => match Host::parse(v.trim(), default_port(https)) {
                Ok(Some(h)) => Ok(Some(h)),
                _ => Err(HostError::Forwarded),
            },
        }
    }
}

/// The one value of a header that may appear once, as text; `err` when it appears twice or
/// is not visible ASCII.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    err: HostError,
) -> Result<Option<&'a str>, HostError> {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(err);
    }
    match first.to_str() {
        Ok(s) => Ok(Some(s)),
        Err(_) => Err(match err {
            HostError::Duplicate => HostError::Invalid,
            e => e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &str, port: u16) -> Option<String> {
        Host::parse(raw, port)
            .ok()
            .flatten()
            .map(|h| h.as_str().to_string())
    }

    #[test]
    fn every_spelling_of_a_host_has_one_canonical_form() {
        for raw in [
            "admin.test",
            "ADMIN.Test",
            "admin.test.",
            "admin.test:80",
            "Admin.TEST.:80",
            "admin.test:",
            "admin.test:080",
        ] {
            assert_eq!(canon(raw, 80).as_deref(), Some("admin.test"), "{raw}");
        }
        assert_eq!(canon("admin.test:443", 443).as_deref(), Some("admin.test"));
        assert_eq!(
            canon("admin.test:443", 80).as_deref(),
            Some("admin.test:443")
        );
        assert_eq!(
            canon("admin.test.:8080", 80).as_deref(),
            Some("admin.test:8080")
        );
        assert_eq!(canon("[::1]:80", 80).as_deref(), Some("[::1]"));
        assert_eq!(
            canon("[FE80::1]:8443", 443).as_deref(),
            Some("[fe80::1]:8443")
        );
        assert_eq!(
            canon("127.0.0.1:9000", 80).as_deref(),
            Some("127.0.0.1:9000")
        );
        let h = Host::parse("WWW.test.:8080", 80).unwrap().unwrap();
        assert_eq!(h.name(), "www.test");
        assert_eq!(Host::parse("", 80), Ok(None));
    }

    #[test]
    fn what_is_not_a_host_is_refused() {
        for raw in [
            "admin.test..",
            ".admin.test",
            "a..b",
            ".",
            "admin test",
            "admin.test/x",
            "user@admin.test",
            "admin.test:8o",
            "admin.test:99999",
            "admin.test:1:2",
            "admin%2etest",
            "a,b",
            "[::1",
            "[::1]x",
            "[zz]",
            "[]",
            "admin.test\\x",
        ] {
            assert!(Host::parse(raw, 80).is_err(), "{raw}");
        }
    }

    fn parts(target: &str, hosts: &[&str]) -> Parts {
        let mut b = http::Request::get(target);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_target_and_host_must_agree() {
        let of = |t, h: &[&str]| {
            RequestHost::of(&parts(t, h), false).map(|r| r.host.map(|h| h.as_str().to_string()))
        };
        assert_eq!(
            of("http://www.test/x", &["admin.test"]),
            Err(HostError::Conflict)
        );
        assert_eq!(
            of("http://www.test/x", &["WWW.test."]),
            Ok(Some("www.test".into()))
        );
        assert_eq!(of("http://www.test/x", &[]), Ok(Some("www.test".into())));
        assert_eq!(
            of("https://www.test:443/x", &["www.test"]),
            Ok(Some("www.test".into()))
        );
        assert_eq!(of("/x", &["a.test", "b.test"]), Err(HostError::Duplicate));
        assert_eq!(of("/x", &["a.test", "a.test"]), Err(HostError::Duplicate));
        assert_eq!(of("/x", &["A.test.:80"]), Ok(Some("a.test".into())));
        assert_eq!(of("/x", &[]), Ok(None));
        assert_eq!(
            of("http://u@www.test/x", &["www.test"]),
            Err(HostError::Invalid)
        );
        let tls = RequestHost::of(&parts("/x", &["a.test:443"]), true).unwrap();
        assert_eq!(tls.host.unwrap().as_str(), "a.test");
    }

    #[test]
    fn forwarded_host_is_one_canonical_host() {
        let mut h = HeaderMap::new();
        assert_eq!(RequestHost::forwarded(&h, false), Ok(None));
        h.insert("x-forwarded-host", "Admin.Test.:443".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(
            RequestHost::forwarded(&h, false).unwrap().unwrap().as_str(),
            "admin.test"
        );
        h.insert("x-forwarded-host", "a.test, b.test".parse().unwrap());
        assert_eq!(RequestHost::forwarded(&h, false), Err(HostError::Forwarded));
        h.insert("x-forwarded-host", "a.test".parse().unwrap());
        h.append("x-forwarded-host", "b.test".parse().unwrap());
        assert_eq!(RequestHost::forwarded(&h, false), Err(HostError::Forwarded));
    }

    #[test]
    fn origins_are_canonical() {
        let o = |s: &str| canonical_origin(&url::Url::parse(s).unwrap());
        assert_eq!(o("https://App.Example.com./x"), "https://app.example.com");
        assert_eq!(
            o("https://app.example.com:443/x"),
            "https://app.example.com"
        );
        assert_eq!(
            o("http://app.example.com.:8080/"),
            "http://app.example.com:8080"
        );
        assert_eq!(o("http://[::1]:80/"), "http://[::1]");
    }

    #[test]
    fn route_hosts_are_canonical_and_portless() {
        assert_eq!(
            route_host("Admin.Example.COM.").unwrap(),
            "admin.example.com"
        );
        assert!(route_host("admin.test:8080").is_err());
        assert!(route_host("admin test").is_err());
    }
}
