//! A route's listener-rule keys (ALB's names): the conditions beyond a host and a path prefix
//! (`host` lists and wildcards, `path_pattern`, `methods`, `headers`, `query`, `source_ips`),
//! the actions that answer instead of forwarding (`redirect`, `fixed_response`) and
//! `cors_preflight`. The raw serde shapes and their validation live here; every value is
//! checked and turned into its typed form at load, so nothing is parsed per request.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use ipnet::IpNet;
use serde::Deserialize;

use super::{Problems, Upstream};
use crate::routing::wildcard::has_wildcard;

/// A string, or a list of them (`host = "a"` or `host = ["a", "b"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A port given as a number or as `"#{port}"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawPort {
    Number(i64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedirect {
    pub status: Option<u16>,
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub port: Option<RawPort>,
    pub path: Option<String>,
    pub query: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFixedResponse {
    pub status: Option<u16>,
    pub content_type: Option<String>,
    pub body: Option<String>,
}

/// The rule keys of one `[[routes]]` entry, as written.
pub struct RawRule {
    pub host: Option<OneOrMany>,
    pub path: Option<String>,
    pub path_pattern: Option<String>,
    pub methods: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, OneOrMany>>,
    pub query: Option<BTreeMap<String, OneOrMany>>,
    pub source_ips: Option<Vec<String>>,
    pub redirect: Option<RawRedirect>,
    pub fixed_response: Option<RawFixedResponse>,
    pub cors_preflight: Option<String>,
}

/// What must hold for a route to be chosen: every condition given (ALB's semantics); within
/// one condition, any of its values.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    /// Canonical host names or patterns (`*`, `?`); empty: any host.
    pub hosts: Vec<String>,
    /// Path prefix (case-sensitive), `/` by default.
    pub path: String,
    /// A wildcard pattern for the whole normalised path, in place of `path`.
    pub path_pattern: Option<String>,
    pub methods: Vec<Method>,
    /// Header name → patterns for its value (case-insensitive).
    pub headers: Vec<(HeaderName, Vec<String>)>,
    /// Query key (case-insensitive) → patterns for its value (case-insensitive).
    pub query: Vec<(String, Vec<String>)>,
    pub source_ips: Vec<IpNet>,
}

impl Conditions {
    /// Conditions beyond host and path: the route's table entry must look at the request.
    pub fn has_request_conditions(&self) -> bool {
        !self.methods.is_empty()
            || !self.headers.is_empty()
            || !self.query.is_empty()
            || !self.source_ips.is_empty()
    }
}

/// What a route does with a request that passed its authentication.
#[derive(Debug, Clone)]
pub enum Action {
    /// Forward to the upstream.
    Forward(Upstream),
    /// Answer with a redirect built from the request (ALB's redirect action).
    Redirect(Redirect),
    /// Answer with a fixed status, content type and body (ALB's fixed-response action).
    FixedResponse(FixedResponse),
}

/// ALB's reserved keywords in a redirect's components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    Protocol,
    Host,
    Port,
    /// The path without its leading `/`.
    Path,
    Query,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Var(Placeholder),
}

/// A redirect component, split at load into text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(pub Vec<Piece>);

impl Template {
    fn var(v: Placeholder) -> Template {
        Template(vec![Piece::Var(v)])
    }
}

#[derive(Debug, Clone)]
pub struct Redirect {
    /// 301 or 302.
    pub status: StatusCode,
    /// `Some(true)`: https, `Some(false)`: http, `None`: the request's (`#{protocol}`).
    pub https: Option<bool>,
    pub host: Template,
    /// `None`: the request's port (`#{port}`).
    pub port: Option<u16>,
    pub path: Template,
    pub query: Template,
}

#[derive(Debug, Clone)]
pub struct FixedResponse {
    pub status: StatusCode,
    pub content_type: HeaderValue,
    pub body: Bytes,
}

/// ALB's fixed-response content types.
pub const FIXED_CONTENT_TYPES: &[&str] = &[
    "text/plain",
    "text/css",
    "text/html",
    "application/javascript",
    "application/json",
];
/// ALB's limit on a fixed response's body.
pub const FIXED_BODY_MAX: usize = 1024;
/// ALB's limit on a redirect component and on a condition's value.
const VALUE_MAX: usize = 128;

/// Validates the rule keys; `upstream` is the forward target when the route forwards.
/// Returns the conditions, the action (when it could be built) and `cors_preflight`.
pub fn build_rule(
    raw: RawRule,
    upstream: Option<Option<Upstream>>,
    kp: &str,
    p: &mut Problems,
) -> (Conditions, Option<Action>, bool) {
    let mut c = Conditions {
        path: raw.path.clone().unwrap_or_else(|| "/".into()),
        ..Conditions::default()
    };
    if !c.path.starts_with('/') {
        p.push(
            format!("{kp}.path"),
            format!("{:?} must start with /", c.path),
        );
    }
    let (hosts, listed) = match raw.host {
        None => (vec![], false),
        Some(OneOrMany::One(h)) => (vec![h], false),
        Some(OneOrMany::Many(v)) => (v, true),
    };
    for (i, h) in hosts.iter().enumerate() {
        match host_pattern(h) {
            Ok(h) => c.hosts.push(h),
            Err(why) if listed => p.push(format!("{kp}.host[{i}]"), why),
            Err(why) => p.push(format!("{kp}.host"), why),
        }
    }
    if let Some(pat) = raw.path_pattern {
        if raw.path.is_some() {
            p.push(
                format!("{kp}.path_pattern"),
                "set path (a prefix) or path_pattern (a wildcard pattern), not both",
            );
        }
        if !pat.starts_with('/') || pat.len() > VALUE_MAX || !visible_ascii(&pat) {
            p.push(
                format!("{kp}.path_pattern"),
                format!("{pat:?} must start with / and be at most 128 visible ASCII characters"),
            );
        }
        c.path_pattern = Some(pat);
    }
    for (i, m) in raw.methods.unwrap_or_default().into_iter().enumerate() {
        // ALB: A-Z, `-` and `_`, compared case-sensitively.
        let ok = !m.is_empty()
            && m.len() <= 40
            && m.bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
        match Method::from_bytes(m.as_bytes()) {
            Ok(method) if ok => c.methods.push(method),
            _ => p.push(
                format!("{kp}.methods[{i}]"),
                format!("{m:?} is not a method name (upper-case letters, - and _, like GET)"),
            ),
        }
    }
    for (name, values) in raw.headers.unwrap_or_default() {
        let key = format!("{kp}.headers.{name}");
        let values = condition_values(values, &key, p);
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) if name.len() <= 40 => c.headers.push((h, values)),
            _ => p.push(&key, "is not a header name of at most 40 characters"),
        }
    }
    for (name, values) in raw.query.unwrap_or_default() {
        let key = format!("{kp}.query.{name}");
        let values = condition_values(values, &key, p);
        if name.is_empty() || name.len() > VALUE_MAX || !visible_ascii(&name) || has_wildcard(&name)
        {
            p.push(
                &key,
                "a query key is 1 to 128 visible characters, without * or ?",
            );
        }
        c.query.push((name.to_ascii_lowercase(), values));
    }
    for (i, s) in raw.source_ips.unwrap_or_default().iter().enumerate() {
        match s.parse::<IpNet>() {
            Ok(n) => c.source_ips.push(n.trunc()),
            Err(_) => match s.parse::<IpAddr>() {
                Ok(a) => c.source_ips.push(IpNet::from(a)),
                Err(_) => p.push(
                    format!("{kp}.source_ips[{i}]"),
                    format!("{s:?} is not an address or CIDR like 10.0.0.0/8"),
                ),
            },
        }
    }

    let cors_preflight = match raw.cors_preflight.as_deref() {
        None | Some("off") => false,
        Some("allow") => true,
        Some(other) => {
            p.push(
                format!("{kp}.cors_preflight"),
                format!("{other:?} is not one of allow, off"),
            );
            false
        }
    };

    let given = [
        ("upstream", upstream.is_some()),
        ("redirect", raw.redirect.is_some()),
        ("fixed_response", raw.fixed_response.is_some()),
    ];
    let named: Vec<&str> = given.iter().filter(|(_, s)| *s).map(|(n, _)| *n).collect();
    if named.len() > 1 {
        p.push(
            kp,
            format!(
                "set one of upstream, redirect, fixed_response (found {})",
                named.join(", ")
            ),
        );
        return (c, None, cors_preflight);
    }
    let action = if let Some(r) = raw.redirect {
        redirect(r, &format!("{kp}.redirect"), p).map(Action::Redirect)
    } else if let Some(f) = raw.fixed_response {
        fixed_response(f, &format!("{kp}.fixed_response"), p).map(Action::FixedResponse)
    } else {
        match upstream {
            Some(u) => u.map(Action::Forward),
            None => {
                p.push(
                    format!("{kp}.upstream"),
                    "is required (http://…, https://… or file:///dir), or target_group / forward, unless the route has a redirect or fixed_response",
                );
                None
            }
        }
    };
    if cors_preflight && !matches!(action, Some(Action::Forward(_)) | None) {
        p.push(
            format!("{kp}.cors_preflight"),
            "lets preflights through to the upstream: it needs a route that forwards",
        );
    }
    (c, action, cors_preflight)
}

fn visible_ascii(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

/// A route host: canonical like every request's (lower case, one trailing dot removed),
/// wildcards allowed; no port (a route's host matches whatever the port).
fn host_pattern(raw: &str) -> Result<String, String> {
    if !has_wildcard(raw) {
        return crate::http::host::route_host(raw);
    }
    let h = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    let ok = !h.is_empty()
        && h.len() <= VALUE_MAX
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*' | b'?'));
    match ok {
        true => Ok(h),
        false => Err(format!(
            "{raw:?}: a host pattern holds letters, digits, -, _, ., * and ? (no port)"
        )),
    }
}

fn condition_values(values: OneOrMany, key: &str, p: &mut Problems) -> Vec<String> {
    let values = values.into_vec();
    if values.is_empty() {
        p.push(key, "needs at least one value");
    }
    for v in &values {
        if v.len() > VALUE_MAX || v.chars().any(|c| c.is_control()) {
            p.push(
                key,
                format!("{v:?} must be at most 128 characters, without control characters"),
            );
        }
    }
    values
}

fn redirect(raw: RawRedirect, kp: &str, p: &mut Problems) -> Option<Redirect> {
    let before = p.0.len();
    let status = match raw.status {
        Some(s @ (301 | 302)) => StatusCode::from_u16(s).ok(),
        Some(s) => {
            p.push(format!("{kp}.status"), format!("{s} is not 301 or 302"));
            None
        }
        None => {
            p.push(
                format!("{kp}.status"),
                "is required: 301 (permanent) or 302 (temporary)",
            );
            None
        }
    };
    let https = match raw.protocol.as_deref() {
        None | Some("#{protocol}") => None,
        Some(s) if s.eq_ignore_ascii_case("https") => Some(true),
        Some(s) if s.eq_ignore_ascii_case("http") => Some(false),
        Some(s) => {
            p.push(
                format!("{kp}.protocol"),
                format!("{s:?} is not HTTP, HTTPS or #{{protocol}}"),
            );
            None
        }
    };
    use Placeholder as V;
    let host = match raw.host.as_deref() {
        None => Some(Template::var(V::Host)),
        Some(h) => template(h, &[V::Host], |b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
        })
        .map(lower_text)
        .map_err(|why| p.push(format!("{kp}.host"), why))
        .ok(),
    };
    let port = match &raw.port {
        None => None,
        Some(RawPort::Text(t)) if t == "#{port}" => None,
        Some(RawPort::Number(n)) if (1..=65535).contains(n) => Some(*n as u16),
        Some(RawPort::Text(t)) if t.parse::<u16>().is_ok_and(|n| n > 0) => t.parse().ok(),
        Some(other) => {
            p.push(
                format!("{kp}.port"),
                format!("{other:?} is not 1 to 65535 or #{{port}}"),
            );
            None
        }
    };
    let path = match raw.path.as_deref() {
        None => Some(Template(vec![Piece::Text("/".into()), Piece::Var(V::Path)])),
        Some(s) if !s.starts_with('/') || s.starts_with("//") => {
            p.push(format!("{kp}.path"), format!("{s:?} must start with one /"));
            None
        }
        Some(s) => template(s, &[V::Host, V::Path, V::Port], |b| {
            uri_char(b) && b != b'?'
        })
        .map_err(|why| p.push(format!("{kp}.path"), why))
        .ok(),
    };
    let query = match raw.query.as_deref() {
        None => Some(Template::var(V::Query)),
        Some(s) => template(
            s.strip_prefix('?').unwrap_or(s),
            &[V::Protocol, V::Host, V::Port, V::Path, V::Query],
            uri_char,
        )
        .map_err(|why| p.push(format!("{kp}.query"), why))
        .ok(),
    };
    // ALB refuses a redirect that changes none of protocol, host, port and path: it would
    // send the browser back to the very URL it asked for.
    let unchanged = https.is_none()
        && port.is_none()
        && host.as_ref() == Some(&Template::var(V::Host))
        && path.as_ref()
            == Some(&Template(vec![
                Piece::Text("/".into()),
                Piece::Var(V::Path),
            ]));
    if unchanged && p.0.len() == before {
        p.push(
            kp,
            "redirects to the URL it was asked for (a loop): change at least one of protocol, host, port, path",
        );
    }
    Some(Redirect {
        status: status?,
        https,
        host: host?,
        port,
        path: path?,
        query: query?,
    })
}

fn lower_text(t: Template) -> Template {
    Template(
        t.0.into_iter()
            .map(|piece| match piece {
                Piece::Text(s) => Piece::Text(s.to_ascii_lowercase()),
                v => v,
            })
            .collect(),
    )
}

/// Characters a URI may carry as they are (RFC 3986 unreserved, sub-delims, `:@/?` and `%`).
fn uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

/// Splits `s` into text and the `allowed` placeholders; any other `#{…}`, a text character
/// `ok` refuses or a value over 128 characters is a problem.
fn template(s: &str, allowed: &[Placeholder], ok: impl Fn(u8) -> bool) -> Result<Template, String> {
    if s.is_empty() || s.len() > VALUE_MAX {
        return Err(format!("{s:?} must be 1 to 128 characters"));
    }
    let names = [
        ("#{protocol}", Placeholder::Protocol),
        ("#{host}", Placeholder::Host),
        ("#{port}", Placeholder::Port),
        ("#{path}", Placeholder::Path),
        ("#{query}", Placeholder::Query),
    ];
    let mut pieces = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some((name, v)) = names.iter().find(|(n, _)| rest.starts_with(n)) {
            if !allowed.contains(v) {
                return Err(format!("{name} cannot be used here"));
            }
            pieces.push(Piece::Var(*v));
            rest = &rest[name.len()..];
            continue;
        }
        let end = rest[1..].find("#{").map(|i| i + 1).unwrap_or(rest.len());
        let text = &rest[..end];
        if let Some(bad) = text.bytes().find(|b| !ok(*b)) {
            return Err(format!(
                "{s:?}: {:?} is not allowed here (percent-encode it)",
                bad as char
            ));
        }
        pieces.push(Piece::Text(text.to_string()));
        rest = &rest[end..];
    }
    Ok(Template(pieces))
}

fn fixed_response(raw: RawFixedResponse, kp: &str, p: &mut Problems) -> Option<FixedResponse> {
    let status = match raw.status {
        Some(s) if matches!(s / 100, 2 | 4 | 5) => StatusCode::from_u16(s).ok(),
        Some(s) => {
            p.push(
                format!("{kp}.status"),
                format!("{s} is not a 2XX, 4XX or 5XX status"),
            );
            None
        }
        None => {
            p.push(
                format!("{kp}.status"),
                "is required (a 2XX, 4XX or 5XX status)",
            );
            None
        }
    };
    let ct = raw.content_type.as_deref().unwrap_or("text/plain");
    let content_type = if FIXED_CONTENT_TYPES.contains(&ct) {
        HeaderValue::from_str(&format!("{ct}; charset=utf-8")).ok()
    } else {
        p.push(
            format!("{kp}.content_type"),
            format!("{ct:?} is not one of {}", FIXED_CONTENT_TYPES.join(", ")),
        );
        None
    };
    let body = raw.body.unwrap_or_default();
    if body.len() > FIXED_BODY_MAX {
        p.push(
            format!("{kp}.body"),
            format!("is {} bytes; at most {FIXED_BODY_MAX}", body.len()),
        );
    }
    Some(FixedResponse {
        status: status?,
        content_type: content_type?,
        body: Bytes::from(body),
    })
}
