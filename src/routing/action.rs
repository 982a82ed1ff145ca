//! The answers a route gives by itself instead of forwarding: ALB's redirect and fixed-response
//! actions. Both run after the route's authentication, like a forward would.
//!
//! A redirect is built from the request's canonical parts only: the scheme it came over, its
//! canonical host (lower case, validated when the request arrived), its port, its normalised
//! path and its query (both already valid URI text). The configured text around the
//! placeholders was checked at load. The target is always absolute (`scheme://host[:port]`),
//! so no path can turn it into a protocol-relative or foreign URL, and a value that would not
//! make a header (a control character) is refused, never sent.

use http::{HeaderValue, Response, StatusCode, header};

use crate::config::rules::{Piece, Placeholder, Template};
use crate::config::{FixedResponse, Redirect};
use crate::error::RequestError;
use crate::http::body::{self, Body};

/// The request a redirect is built from.
pub struct Origin<'a> {
    pub https: bool,
    /// Canonical host name (no port).
    pub host: &'a str,
    pub port: u16,
    /// The normalised path, with its leading `/`.
    pub path: &'a str,
    pub query: Option<&'a str>,
}

impl Origin<'_> {
    fn value(&self, v: Placeholder, out: &mut String) {
        match v {
            Placeholder::Protocol => out.push_str(if self.https { "https" } else { "http" }),
            Placeholder::Host => out.push_str(self.host),
            Placeholder::Port => out.push_str(&self.port.to_string()),
            // ALB: `#{path}` is the path without its leading `/`.
            Placeholder::Path => out.push_str(self.path.strip_prefix('/').unwrap_or(self.path)),
            Placeholder::Query => out.push_str(self.query.unwrap_or("")),
        }
    }

    fn render(&self, t: &Template, out: &mut String) {
        for piece in &t.0 {
            match piece {
                Piece::Text(s) => out.push_str(s),
                Piece::Var(v) => self.value(*v, out),
            }
        }
    }
}

/// The `Location` of `r` for a request from `o`.
pub fn location(r: &Redirect, o: &Origin<'_>) -> Result<String, RequestError> {
    // ALB never sends an HTTPS request to HTTP.
    let https = r.https.unwrap_or(o.https) || o.https;
    let mut host = String::with_capacity(o.host.len() + 16);
    o.render(&r.host, &mut host);
    let host = match crate::http::host::Host::parse(&host, 0) {
        Ok(Some(h)) if h.name() == h.as_str() => h,
        _ => {
            return Err(RequestError::Internal(format!(
                "the route's redirect host {host:?} is not a host name"
            )));
        }
    };
    let port = r.port.unwrap_or(o.port);
    let mut out = String::with_capacity(64 + o.path.len() + o.query.map_or(0, str::len));
    out.push_str(if https { "https://" } else { "http://" });
    out.push_str(host.name());
    if port != crate::http::host::default_port(https) {
        out.push(':');
        out.push_str(&port.to_string());
    }
    let path_at = out.len();
    o.render(&r.path, &mut out);
    let mut query = String::new();
    o.render(&r.query, &mut query);
    if !query.is_empty() {
        out.push('?');
        out.push_str(&query);
    }
    // `/#{path}` on a request for `//x` makes `//x`: harmless after an authority, but keep the
    // path from ever reading as one.
    if out[path_at..].starts_with("//") {
        out.replace_range(path_at..path_at + 2, "/");
    }
    let same = https == o.https
        && host.name() == o.host
        && port == o.port
        && out[path_at..].split('?').next() == Some(o.path)
        && query == o.query.unwrap_or("");
    if same {
        return Err(RequestError::Internal(
            "the route's redirect points at the URL that was asked for (a loop)".into(),
        ));
    }
    Ok(out)
}

/// The redirect response (`Cache-Control: no-store` on a 302, as a temporary answer must not
/// be cached; a 301 is cacheable, as ALB's is).
pub fn redirect(r: &Redirect, o: &Origin<'_>) -> Result<Response<Body>, RequestError> {
    let target = location(r, o)?;
    let Ok(v) = HeaderValue::from_str(&target) else {
        return Err(RequestError::BadRequest(
            "the redirect target would not be a valid header".into(),
        ));
    };
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = r.status;
    let h = resp.headers_mut();
    h.insert(header::LOCATION, v);
    if r.status == StatusCode::FOUND {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    crate::error::security_headers(h);
    Ok(resp)
}

/// The fixed response: status, content type and body as configured.
pub fn fixed(f: &FixedResponse) -> Response<Body> {
    let mut resp = Response::new(body::full(f.body.clone()));
    *resp.status_mut() = f.status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, f.content_type.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    crate::error::security_headers(h);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Action;
    use crate::config::Problems;
    use crate::config::rules::{RawRedirect, RawRule, build_rule};

    fn redirect_of(raw: RawRedirect) -> Result<Redirect, Vec<String>> {
        let mut p = Problems::default();
        let rule = RawRule {
            host: None,
            path: None,
            path_pattern: None,
            methods: None,
            headers: None,
            query: None,
            source_ips: None,
            redirect: Some(raw),
            fixed_response: None,
            cors_preflight: None,
        };
        let (_, action, _) = build_rule(rule, None, "r", &mut p);
        match (action, p.is_empty()) {
            (Some(Action::Redirect(r)), true) => Ok(r),
            _ => Err(p.0.into_iter().map(|x| x.to_string()).collect()),
        }
    }

    fn origin<'a>(
        https: bool,
        host: &'a str,
        port: u16,
        path: &'a str,
        q: Option<&'a str>,
    ) -> Origin<'a> {
        Origin {
            https,
            host,
            port,
            path,
            query: q,
        }
    }

    #[test]
    fn placeholders_follow_alb() {
        let r = redirect_of(RawRedirect {
            status: Some(301),
            protocol: Some("HTTPS".into()),
            port: Some(crate::config::rules::RawPort::Number(443)),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            location(&r, &origin(false, "app.test", 80, "/a/b", Some("x=1"))).unwrap(),
            "https://app.test/a/b?x=1"
        );
        let r = redirect_of(RawRedirect {
            status: Some(302),
            host: Some("new.#{host}".into()),
            path: Some("/v2/#{path}".into()),
            query: Some("#{query}&from=#{port}".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            location(&r, &origin(false, "app.test", 8080, "/a", Some("x=1"))).unwrap(),
            "http://new.app.test:8080/v2/a?x=1&from=8080"
        );
        // An https request never goes to http.
        let r = redirect_of(RawRedirect {
            status: Some(301),
            protocol: Some("HTTP".into()),
            host: Some("other.test".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            location(&r, &origin(true, "app.test", 443, "/", None)).unwrap(),
            "https://other.test/"
        );
    }

    #[test]
    fn refused_at_load() {
        // Changes nothing: a loop (ALB refuses it too).
        assert!(
            redirect_of(RawRedirect {
                status: Some(301),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            redirect_of(RawRedirect {
                status: Some(301),
                path: Some("/#{path}".into()),
                host: Some("#{host}".into()),
                ..Default::default()
            })
            .is_err()
        );
        let bad = [
            RawRedirect {
                status: Some(307),
                host: Some("x.test".into()),
                ..Default::default()
            },
            RawRedirect {
                status: Some(301),
                path: Some("no-slash".into()),
                ..Default::default()
            },
            RawRedirect {
                status: Some(301),
                path: Some("//evil.test/".into()),
                ..Default::default()
            },
            RawRedirect {
                status: Some(301),
                path: Some("/a\r\nSet-Cookie: x".into()),
                ..Default::default()
            },
            RawRedirect {
                status: Some(301),
                host: Some("evil.test/x".into()),
                ..Default::default()
            },
            RawRedirect {
                status: Some(301),
                host: Some("#{path}.test".into()),
                ..Default::default()
            },
            RawRedirect {
                status: Some(301),
                path: Some("/#{nope}".into()),
                ..Default::default()
            },
            RawRedirect {
                status: None,
                host: Some("x.test".into()),
                ..Default::default()
            },
        ];
        for b in bad {
            let shown = format!("{b:?}");
            assert!(redirect_of(b).is_err(), "{shown} must be refused");
        }
    }

    #[test]
    fn a_redirect_that_lands_on_itself_is_refused_at_request_time() {
        let r = redirect_of(RawRedirect {
            status: Some(301),
            protocol: Some("HTTPS".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(location(&r, &origin(true, "app.test", 443, "/x", None)).is_err());
        assert!(location(&r, &origin(false, "app.test", 443, "/x", None)).is_ok());
    }
}
