//! Reserved paths under `/oauth2/` (docs/src/reference/http-paths.md), answered by Portcullis itself: callback, start,
//! sign-out, userinfo, forward-auth, and the header-signing keys. The built-in pool's paths are
//! handed to the pool.

use std::net::IpAddr;

use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode, header};

use super::Auth;
use super::login::{query_param, redirect, start_url};
use super::redirect::safe_target;
use crate::error::{RequestError, html_escape, page};
use crate::http::body::{self, Body};
use crate::http::headers::*;
use crate::http::host::{Host, RequestHost};
use crate::http::negotiate::is_non_navigational;
use crate::http::paths;
use crate::session::now_unix;

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(body::full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    crate::error::security_headers(r.headers_mut());
    r
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<bytes::Bytes>,
) -> Response<Body> {
    let mut r = Response::new(body::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    crate::error::security_headers(r.headers_mut());
    r
}

/// The path-and-query of an `X-Original-URL` (absolute, or a path), exactly as sent: nothing
/// is resolved here, so the normaliser sees what the fronting proxy saw.
fn path_of_original_url(u: &str) -> &str {
    if u.starts_with('/') {
        return u;
    }
    match u.find("://") {
        Some(i) => match u[i + 3..].find(['/', '?']) {
            Some(j) if u.as_bytes()[i + 3 + j] == b'/' => &u[i + 3 + j..],
            _ => "/",
        },
        None => "/",
    }
}

/// The canonical host an absolute `X-Original-URL` names (`None` for a bare path), with its
/// scheme's default port dropped; a malformed authority is refused.
fn original_url_host(u: &str) -> Result<Option<Host>, crate::http::host::HostError> {
    let Some(i) = u.find("://") else {
        return Ok(None);
    };
    let https = u[..i].eq_ignore_ascii_case("https");
    let rest = &u[i + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match Host::parse(authority, crate::http::host::default_port(https))? {
        Some(h) => Ok(Some(h)),
        None => Err(crate::http::host::HostError::Invalid),
    }
}

/// Forward auth's 401 for a route that signs users in: the JSON body names the login URL,
/// and so does `Location`.
fn sign_in_required(login_url: String, request_id: &str) -> Response<Body> {
    let location = HeaderValue::from_str(&super::login::uri_reference(&login_url)).ok();
    let mut r = RequestError::Unauthenticated { login_url }.render(request_id, true);
    if let Some(v) = location {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Every path of the public listener that Portcullis answers itself, outside the pool: the
/// arms of [`Auth::endpoint`]'s `match` (kept equal by the unit test below) and the
/// back-channel logout, which the app answers before it (see `App::route`).
#[doc(hidden)]
pub const ROUTES: &[crate::surface::Route] = {
    use crate::surface::Route as R;
    &[
        R::exact("GET", paths::CALLBACK),
        R::exact("GET", paths::START),
        R::exact("GET POST", paths::SIGN_OUT),
        R::exact("GET", paths::USERINFO),
        R::exact("GET", paths::AUTH),
        R::exact("GET", paths::JWKS),
        R::prefix("GET", paths::PUBLIC_KEYS_PREFIX),
        R::exact("POST", paths::BACKCHANNEL_LOGOUT),
    ]
};

/// A reserved path's answer, with what to count it as.
pub struct Endpoint {
    pub response: Response<Body>,
    /// The route a forward-auth check was decided for.
    pub route: Option<usize>,
    pub decision: crate::metrics::Decision,
}

impl Auth {
    pub fn is_trusted(&self, peer: IpAddr) -> bool {
        self.cfg
            .server
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&peer))
    }

    /// Answers a reserved path (not the pool's). `None` when the path is not ours.
    pub async fn endpoint(
        &self,
        parts: &Parts,
        path: &str,
        peer: IpAddr,
        request_id: &str,
    ) -> Option<Endpoint> {
        let query = parts.uri.query();
        let xhr = is_non_navigational(&parts.headers);
        let get_only = |r: Response<Body>| {
            if parts.method == Method::GET || parts.method == Method::HEAD {
                r
            } else {
                RequestError::MethodNotAllowed.render(request_id, xhr)
            }
        };
        let response = match path {
            paths::CALLBACK => get_only(self.callback(query, &parts.headers, request_id).await),
            paths::START => {
                let own = parts
                    .extensions
                    .get::<RequestHost>()
                    .and_then(|h| h.host.as_ref());
                get_only(self.start(query, own, parts, peer, request_id).await)
            }
            paths::SIGN_OUT => {
                if parts.method == Method::GET || parts.method == Method::POST {
                    self.sign_out(query, &parts.headers).await
                } else {
                    RequestError::MethodNotAllowed.render(request_id, xhr)
                }
            }
            paths::USERINFO => get_only(self.userinfo(&parts.headers, request_id).await),
            paths::AUTH => {
                let (r, route, decision) = self.forward_auth(parts, peer, request_id).await;
                let r = get_only(r);
                // Counted like the inline path: the route and the decision, not `internal`.
                return Some(Endpoint {
                    response: r,
                    route,
                    decision,
                });
            }
            paths::JWKS => get_only(json(
                StatusCode::OK,
                &serde_json::json!({"keys": [self.signer.key.jwk()]}),
            )),
            p if p.starts_with(paths::PUBLIC_KEYS_PREFIX) => {
                let kid = &p[paths::PUBLIC_KEYS_PREFIX.len()..];
                if kid == self.signer.key.kid() {
                    let mut r = text(
                        StatusCode::OK,
                        "application/x-pem-file",
                        self.signer.key.public_pem().to_string(),
                    );
                    r.headers_mut().insert(
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("public, max-age=3600"),
                    );
                    get_only(r)
                } else {
                    RequestError::NotFound.render(request_id, xhr)
                }
            }
            _ => return None,
        };
        Some(Endpoint {
            response,
            route: None,
            decision: crate::metrics::Decision::Internal,
        })
    }

    /// `/oauth2/start`: validated `rd`; the provider named, or the one of the route `rd` matches;
    /// a chooser page when that route offers several.
    async fn start(
        &self,
        query: Option<&str>,
        own_host: Option<&Host>,
        parts: &Parts,
        peer: IpAddr,
        request_id: &str,
    ) -> Response<Body> {
        let rd = safe_target(
            query_param(query, "rd").as_deref(),
            &self.cfg.public_origin,
            &self.cfg.allowed_redirect_origins,
        );
        // `prompt=login` (a step-up: sign in again, not single sign-on) is the only prompt
        // passed on to the IdP; `acr_values=mfa` (a step-up that needs a second factor) the
        // only `acr_values`.
        let (prompt, acr) = match (
            only_value(query, "prompt", "login"),
            only_value(query, "acr_values", "mfa"),
        ) {
            (Ok(p), Ok(a)) => (p, a),
            (Err(e), _) | (_, Err(e)) => return e.render(request_id, false),
        };
        // The route `rd` names: its host (an absolute `rd`'s, else this request's), canonical
        // like every host a route is matched on, and its path.
        let (rd_host, rd_path, rd_query) = match url::Url::parse(&rd) {
            Ok(u) => (
                u.host_str().and_then(|h| Host::parse(h, 0).ok().flatten()),
                u.path().to_string(),
                u.query().map(str::to_string),
            ),
            Err(_) => (
                own_host.cloned(),
                rd.split('?').next().unwrap_or("/").to_string(),
                rd.split_once('?').map(|(_, q)| q.to_string()),
            ),
        };
        // The page to return to will be fetched with GET by this same client.
        let route = self.routes.find(&crate::routing::Request {
            host: rd_host.as_ref().map(Host::name),
            path: &rd_path,
            query: rd_query.as_deref(),
            method: &Method::GET,
            headers: &parts.headers,
            peer,
        });
        let candidates: Vec<usize> = match route {
            Some(r) if !r.providers.is_empty() => r.providers.clone(),
            _ => (0..self.providers.len()).collect(),
        };
        let chosen = match query_param(query, "provider") {
            Some(name) => match self.providers.iter().position(|p| p.name() == name) {
                Some(i) => Some(i),
                None => {
                    return RequestError::BadRequest(format!(
                        "unknown provider {:?}",
                        crate::error::sanitize_code(&name)
                    ))
                    .render(request_id, false);
                }
            },
            None if candidates.len() == 1 => Some(candidates[0]),
            None => None,
        };
        match chosen {
            Some(i) => self
                .start_login_prompt(i, &rd, prompt, acr)
                .await
                .unwrap_or_else(|e| e.render(request_id, false)),
            None if candidates.is_empty() => RequestError::NotFound.render(request_id, false),
            None => {
                let items: String = candidates
                    .iter()
                    .map(|i| {
                        let p = &self.providers[*i];
                        format!(
                            "<li><a href=\"{}\">{}</a></li>",
                            html_escape(&start_url(&rd, Some(p.name()))),
                            html_escape(&p.cfg.display_name)
                        )
                    })
                    .collect();
                let mut r = text(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    page("Choose how to sign in", &format!("<ul>{items}</ul>")),
                );
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
        }
    }

    async fn userinfo(&self, headers: &http::HeaderMap, request_id: &str) -> Response<Body> {
        let state = match self.session(headers, now_unix()).await {
            Ok(s) => s,
            Err(e) => {
                return RequestError::SessionStoreUnavailable(e.to_string())
                    .render(request_id, true);
            }
        };
        let Some(o) = state.principal else {
            let mut r = RequestError::Denied.render(request_id, true);
            super::append_cookies(&mut r, &state.set_cookie);
            return r;
        };
        let p = &self.providers[o.provider].cfg;
        let s = &o.session;
        let mut r = json(
            StatusCode::OK,
            &serde_json::json!({
                "sub": s.sub,
                "email": s.email(),
                "email_verified": s.claims.get("email_verified"),
                "preferred_username": s.claims.get("preferred_username"),
                "name": s.claims.get("name"),
                "groups": s.groups(&p.groups_claim),
                "provider": s.provider,
                "claims": o.identity.claims(),
                "expires_at": s.expires_at,
            }),
        );
        super::append_cookies(&mut r, &state.set_cookie);
        r
    }

    /// `/oauth2/auth` for nginx `auth_request`, Traefik, Envoy, Caddy. The original host and
    /// URI are believed only from trusted proxies, the host compared canonically; the path gets the same normalisation and
    /// the same encoded-slash rule as the inline path; the decision is [`Auth::decide`]'s.
    async fn forward_auth(
        &self,
        parts: &Parts,
        peer: IpAddr,
        request_id: &str,
    ) -> (Response<Body>, Option<usize>, crate::metrics::Decision) {
        use crate::metrics::Decision as M;
        let h = &parts.headers;
        let hv = |n: &http::HeaderName| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        // The request's own host, canonical (set once in `App::route`); a trusted proxy's
        // `X-Forwarded-Host` replaces it, made canonical the same way (one value, a valid host;
        // otherwise 400), with `X-Forwarded-Proto` naming the scheme whose default port goes.
        let own = parts
            .extensions
            .get::<RequestHost>()
            .cloned()
            .unwrap_or_default();
        let (host, uri) = if self.is_trusted(peer) {
            let host = match RequestHost::forwarded(h, own.https) {
                Ok(Some(forwarded)) => Some(forwarded),
                Ok(None) => own.host,
                Err(e) => {
                    return (
                        RequestError::BadRequest(e.to_string()).render(request_id, true),
                        None,
                        M::Internal,
                    );
                }
            };
            let mut host = host;
            let uri = match (hv(&X_FORWARDED_URI), hv(&X_ORIGINAL_URL)) {
                (Some(u), _) => Some(u),
                // An absolute `X-Original-URL` names a host too: one authority per request, so
                // it must be the host decided for (or it supplies one when none was named).
                (None, Some(u)) => {
                    match original_url_host(&u) {
                        Ok(Some(named)) => match &host {
                            Some(h) if *h != named => {
                                return (
                                    RequestError::BadRequest(
                                        crate::http::host::HostError::Conflict.to_string(),
                                    )
                                    .render(request_id, true),
                                    None,
                                    M::Internal,
                                );
                            }
                            Some(_) => {}
                            None => host = Some(named),
                        },
                        Ok(None) => {}
                        Err(e) => {
                            return (
                                RequestError::BadRequest(e.to_string()).render(request_id, true),
                                None,
                                M::Internal,
                            );
                        }
                    }
                    Some(path_of_original_url(&u).to_string())
                }
                (None, None) => None,
            };
            (host, uri.unwrap_or_else(|| "/".into()))
        } else {
            (own.host, "/".into())
        };
        let (path_only, query) = match uri.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (uri.as_str(), None),
        };
        let path = match crate::http::normalize::normalize(path_only, self.cfg.encoded_slashes()) {
            Ok(Some(p)) => p,
            Ok(None) => path_only.to_string(),
            Err(e) => {
                tracing::info!(
                    via = "forward_auth",
                    "auth.decision" = M::Internal.as_str(),
                    "auth.reason" = "bad_path",
                    "Request denied"
                );
                return (
                    RequestError::BadRequest(e.to_string()).render(request_id, true),
                    None,
                    M::Internal,
                );
            }
        };
        // The original request's method: a trusted proxy's `X-Forwarded-Method`, else this
        // request's own.
        let method = match hv(&X_FORWARDED_METHOD) {
            Some(m) if self.is_trusted(peer) => {
                Method::from_bytes(m.as_bytes()).unwrap_or_else(|_| parts.method.clone())
            }
            _ => parts.method.clone(),
        };
        let Some(route) = self.routes.find(&crate::routing::Request {
            host: host.as_ref().map(Host::name),
            path: &path,
            query,
            method: &method,
            headers: h,
            peer,
        }) else {
            return (
                RequestError::NoRoute.render(request_id, true),
                None,
                M::Internal,
            );
        };
        let rd = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        let now = now_unix();
        let d = self
            .decide(route, h, &rd, now, super::Via::ForwardAuth)
            .await;
        let label = d.outcome.metric();
        let mut resp = match d.outcome {
            super::Outcome::Allowed | super::Outcome::Public => {
                let mut r = text(StatusCode::OK, "text/plain", "ok");
                if let Some(p) = &d.principal {
                    p.identity.inject(r.headers_mut(), &self.signer, now);
                }
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
            // A fronting proxy cannot read the JSON body: the sign-in URL also goes in
            // `Location`, for nginx (`auth_request_set $x $upstream_http_location`), Caddy
            // (`{rp.header.Location}`) and Traefik to redirect browsers with.
            super::Outcome::SignIn => sign_in_required(start_url(&rd, None), request_id),
            super::Outcome::Unauthenticated {
                login_url: Some(login_url),
            } => sign_in_required(login_url, request_id),
            super::Outcome::Unauthenticated { login_url: None } => {
                RequestError::Denied.render(request_id, true)
            }
            super::Outcome::Forbidden { required } => {
                RequestError::Forbidden { required }.render(request_id, true)
            }
            super::Outcome::StepUp {
                required,
                login_url,
            } => RequestError::StepUp {
                required,
                login_url,
            }
            .render(request_id, true),
            super::Outcome::Unavailable(why) => {
                RequestError::SessionStoreUnavailable(why).render(request_id, true)
            }
            super::Outcome::InvalidToken(why) => {
                RequestError::InvalidToken(why).render(request_id, true)
            }
            super::Outcome::InsufficientScope { scope } => {
                RequestError::InsufficientScope { scope }.render(request_id, true)
            }
        };
        super::append_cookies(&mut resp, &d.set_cookie);
        (resp, Some(route.index), label)
    }
}

/// A redirect helper re-exported for callers outside auth.
pub fn found(location: &str) -> Response<Body> {
    redirect(location, &[])
}

/// The query parameter `name`, which may only be `allowed` (absent: `None`); anything else is a
/// 400 that names it.
fn only_value(
    query: Option<&str>,
    name: &str,
    allowed: &'static str,
) -> Result<Option<&'static str>, RequestError> {
    match query_param(query, name).as_deref() {
        None => Ok(None),
        Some(v) if v == allowed => Ok(Some(allowed)),
        Some(other) => Err(RequestError::BadRequest(format!(
            "{name} {:?} is not supported (only \"{allowed}\")",
            crate::error::sanitize_code(other)
        ))),
    }
}

#[cfg(test)]
mod route_table {
    use crate::http::paths;
    use crate::surface::{arms, declared, token_in};

    #[test]
    fn routes_name_exactly_the_arms_of_the_dispatchers() {
        let names = [
            ("paths::CALLBACK", paths::CALLBACK),
            ("paths::START", paths::START),
            ("paths::SIGN_OUT", paths::SIGN_OUT),
            ("paths::USERINFO", paths::USERINFO),
            ("paths::AUTH", paths::AUTH),
            ("paths::JWKS", paths::JWKS),
            ("paths::PUBLIC_KEYS_PREFIX", paths::PUBLIC_KEYS_PREFIX),
            ("paths::BACKCHANNEL_LOGOUT", paths::BACKCHANNEL_LOGOUT),
        ];
        let token = token_in(&names);
        // Methods are decided inside the arms (`get_only`), so only the paths are compared.
        let paths_of = |list: Vec<crate::surface::Arm>| -> Vec<(String, bool)> {
            list.into_iter().map(|a| (a.token, a.prefix)).collect()
        };
        let mut want = paths_of(arms(
            include_str!("endpoints.rs"),
            "let response = match path {",
        ));
        // The app answers the back-channel logout before the reserved-path dispatcher.
        let app = include_str!("../app.rs");
        assert!(app.contains("parts.uri.path() == paths::BACKCHANNEL_LOGOUT"));
        want.push(("paths::BACKCHANNEL_LOGOUT".into(), false));
        want.sort();
        let mut got = paths_of(declared(super::ROUTES, token));
        got.sort();
        assert_eq!(got, want);
    }
}
