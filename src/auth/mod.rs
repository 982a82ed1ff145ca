//! The relying party and the one auth gate. [`Auth::gate`] is the ONLY place an access
//! decision is made for a proxied request: it strips client-sent identity headers, finds the
//! session (cache → open → refresh), applies the route's `on_unauthenticated` and
//! authorization rules, and either hands back the request to forward — identity headers set,
//! session cookies removed — or the response to send (redirect, 401, 403).
//! Fails closed: anything that does not open is "no session".

pub mod authorize;
pub mod endpoints;
pub mod http_client;
pub mod jws;
pub mod login;
pub mod oidc;
pub mod redirect;
pub mod routes;

use std::collections::HashMap;
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response};
use parking_lot::Mutex;

use crate::config::{Config, OnUnauthenticated, RouteConfig};
use crate::error::RequestError;
use crate::http::body::Body;
use crate::http::negotiate::is_non_navigational;
use crate::identity_headers::{self, DataSigner, Identity};
use crate::metrics::{Decision, Metrics};
use crate::session::Session;
use crate::session::cache::SessionCache;
use crate::session::keyring::KeyRing;
use crate::session::shards::{CookieJar, TooLarge};
use oidc::OidcProvider;
use routes::RouteTable;

/// AEAD associated data for session cookies (binds a sealed value to its purpose).
pub const SESSION_PURPOSE: &[u8] = b"portcullis-session";

/// How many opened sessions are kept ready.
const SESSION_CACHE_CAPACITY: usize = 65_536;
/// How long a refresh result is shared with requests that still carry the old cookie.
const REFRESH_SHARE_SECS: i64 = 60;

/// A session that opened, with everything derived from it.
pub struct Opened {
    pub session: Session,
    pub identity: Identity,
    pub provider: usize,
}

#[derive(Clone)]
struct Refreshed {
    opened: Option<Arc<Opened>>,
    set_cookie: Vec<HeaderValue>,
    at: i64,
}

/// The session (if any) behind a request, plus cookies to set (after a refresh).
#[derive(Default)]
pub struct SessionState {
    pub opened: Option<Arc<Opened>>,
    pub set_cookie: Vec<HeaderValue>,
}

/// What the gate decided.
pub enum Verdict {
    Forward {
        opened: Option<Arc<Opened>>,
        set_cookie: Vec<HeaderValue>,
        decision: Decision,
    },
    Respond {
        response: Response<Body>,
        decision: Decision,
    },
}

pub struct Auth {
    pub cfg: Arc<Config>,
    pub routes: RouteTable,
    pub providers: Vec<Arc<OidcProvider>>,
    pub keyring: KeyRing,
    pub jar: CookieJar,
    pub signer: DataSigner,
    pub metrics: Arc<Metrics>,
    /// One cache per request worker (index 0: any other thread), so that a hot session's
    /// locks and reference counts are never shared between cores; a worker that has not seen a
    /// cookie yet opens it once itself.
    caches: Vec<SessionCache<Opened>>,
    refreshing: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Refreshed>>>>,
}

impl Auth {
    pub fn new(
        cfg: Arc<Config>,
        providers: Vec<Arc<OidcProvider>>,
        keyring: KeyRing,
        signer: DataSigner,
        metrics: Arc<Metrics>,
    ) -> Auth {
        let jar = CookieJar::new(&cfg.session.cookie_name, cfg.secure_cookies());
        let workers = cfg.server.workers.max(1);
        let each = (SESSION_CACHE_CAPACITY / workers).max(1024);
        let caches = (0..=workers).map(|_| SessionCache::new(each)).collect();
        Auth {
            routes: RouteTable::new(cfg.routes.clone()),
            cfg,
            providers,
            keyring,
            jar,
            signer,
            metrics,
            caches,
            refreshing: Mutex::new(HashMap::new()),
        }
    }

    fn opened_from(&self, session: Session) -> Option<Opened> {
        let provider = self
            .providers
            .iter()
            .position(|p| p.name() == session.provider)?;
        let p = &self.providers[provider].cfg;
        let identity = Identity::new(&session, &p.groups_claim, &p.issuer, &p.client_id);
        Some(Opened {
            session,
            identity,
            provider,
        })
    }

    /// Seals a session into `Set-Cookie` values (shards + deletions of unused shards).
    pub fn seal(
        &self,
        session: &Session,
        now: i64,
    ) -> Result<(Vec<HeaderValue>, String), TooLarge> {
        let json = serde_json::to_vec(session).expect("a session serialises to JSON");
        let sealed = self.keyring.seal(SESSION_PURPOSE, &json);
        let values = self.jar.encode(&sealed, session.expires_at - now)?;
        use base64::Engine;
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&sealed);
        Ok((values, text))
    }

    /// This thread's session cache.
    fn cache(&self) -> &SessionCache<Opened> {
        let w = crate::server::worker_index();
        &self.caches[if w < self.caches.len() { w } else { 0 }]
    }

    /// Makes an [`Opened`] for a fresh session and caches it under its cookie text.
    pub fn remember(&self, text: &str, session: Session) -> Option<Arc<Opened>> {
        let opened = Arc::new(self.opened_from(session)?);
        self.cache().insert(text, opened.clone());
        Some(opened)
    }

    /// Finds the request's session: cached, else opened from the cookie; refreshed when the
    /// access token has expired and a refresh token exists.
    pub async fn session(&self, headers: &HeaderMap, now: i64) -> SessionState {
        let Some(text) = self.jar.read(headers) else {
            return SessionState::default();
        };
        let opened = match self.cache().get(&text) {
            Some(o) => o,
            None => {
                let Some(sealed) = CookieJar::decode(&text) else {
                    return SessionState::default();
                };
                let Some(plain) = self.keyring.open(SESSION_PURPOSE, &sealed) else {
                    return SessionState::default();
                };
                let Ok(session) = serde_json::from_slice::<Session>(&plain) else {
                    return SessionState::default();
                };
                match self.opened_from(session) {
                    Some(o) => {
                        let o = Arc::new(o);
                        self.cache().insert(&text, o.clone());
                        o
                    }
                    None => return SessionState::default(),
                }
            }
        };
        if opened.session.is_expired(now) {
            for c in &self.caches {
                c.remove(&text);
            }
            return SessionState::default();
        }
        let margin = self.cfg.session.refresh_margin.as_secs() as i64;
        if opened.session.access_token_expired(now, margin)
            && opened.session.refresh_token.is_some()
        {
            let r = self.refresh_once(&opened, now).await;
            return SessionState {
                opened: r.opened,
                set_cookie: r.set_cookie,
            };
        }
        SessionState {
            opened: Some(opened),
            set_cookie: Vec::new(),
        }
    }

    /// One refresh per session at a time: concurrent requests share the first one's result.
    async fn refresh_once(&self, opened: &Arc<Opened>, now: i64) -> Refreshed {
        let cell = {
            let mut map = self.refreshing.lock();
            map.retain(|_, c| c.get().is_none_or(|r| now - r.at < REFRESH_SHARE_SECS));
            map.entry(opened.session.sid.clone()).or_default().clone()
        };
        cell.get_or_init(|| self.do_refresh(opened.clone(), now))
            .await
            .clone()
    }

    async fn do_refresh(&self, opened: Arc<Opened>, now: i64) -> Refreshed {
        let failed = Refreshed {
            opened: None,
            set_cookie: self.jar.clear().to_vec(),
            at: now,
        };
        let provider = &self.providers[opened.provider];
        let Some(rt) = opened.session.refresh_token.as_deref() else {
            return failed;
        };
        let tokens = match provider.refresh(rt, now).await {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(provider = provider.name(), error = %e, "auth.reason" = "refresh_failed", "session refresh failed; treating as no session");
                return failed;
            }
        };
        let mut s = opened.session.clone();
        if !tokens.id_claims.is_empty() {
            if tokens.id_claims.get("sub").and_then(|v| v.as_str()) != Some(s.sub.as_str()) {
                tracing::warn!(
                    provider = provider.name(),
                    "refreshed ID token has a different subject; session dropped"
                );
                return failed;
            }
            for (k, v) in tokens.id_claims {
                s.claims.insert(k, v);
            }
        }
        if let Ok(Some(info)) = provider.userinfo(&tokens.access_token, &s.sub).await {
            for (k, v) in info {
                s.claims.insert(k, v);
            }
        }
        s.access_token = Some(tokens.access_token);
        s.access_expires_at = tokens.access_expires_at;
        if tokens.refresh_token.is_some() {
            s.refresh_token = tokens.refresh_token;
        }
        if tokens.id_token.is_some() {
            s.id_token = tokens.id_token;
        }
        match self.seal(&s, now) {
            Ok((set_cookie, text)) => {
                tracing::debug!(provider = provider.name(), "session refreshed");
                Refreshed {
                    opened: self.remember(&text, s),
                    set_cookie,
                    at: now,
                }
            }
            Err(_) => failed,
        }
    }

    /// The gate for a proxied request on `route`. Mutates `parts.headers`: identity headers are
    /// always stripped; on success they are set from the session and our cookies are removed.
    /// `arrived`: when the request arrived (its clock reading is reused for session times).
    pub async fn gate(
        &self,
        route: &RouteConfig,
        parts: &mut Parts,
        request_id: &str,
        arrived: std::time::Instant,
    ) -> Verdict {
        identity_headers::strip(&mut parts.headers);
        let now = crate::session::unix_at(arrived);
        let state = self.session(&parts.headers, now).await;
        self.jar.strip(&mut parts.headers);
        let route_name = route.index;
        let Some(opened) = state.opened else {
            return match route.on_unauthenticated {
                OnUnauthenticated::Allow => Verdict::Forward {
                    opened: None,
                    set_cookie: state.set_cookie,
                    decision: Decision::Public,
                },
                OnUnauthenticated::Deny => {
                    tracing::info!(
                        route = route_name,
                        "auth.decision" = "deny",
                        "auth.reason" = "no_session",
                        "Request denied"
                    );
                    let json = is_non_navigational(&parts.headers);
                    let mut response = RequestError::Denied.render(request_id, json);
                    append_cookies(&mut response, &state.set_cookie);
                    Verdict::Respond {
                        response,
                        decision: Decision::Unauthenticated,
                    }
                }
                OnUnauthenticated::Authenticate => {
                    let rd = parts
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str())
                        .unwrap_or("/");
                    let mut response = if is_non_navigational(&parts.headers) {
                        tracing::info!(
                            route = route_name,
                            "auth.decision" = "deny",
                            "auth.reason" = "no_session_xhr",
                            "Request denied"
                        );
                        let login_url = login::start_url(rd, None);
                        RequestError::Unauthenticated { login_url }.render(request_id, true)
                    } else {
                        tracing::info!(
                            route = route_name,
                            "auth.decision" = "authenticate",
                            "auth.reason" = "no_session",
                            "Request redirected to sign in"
                        );
                        match self.login_redirect(route, rd).await {
                            Ok(r) => r,
                            Err(e) => e.render(request_id, false),
                        }
                    };
                    append_cookies(&mut response, &state.set_cookie);
                    Verdict::Respond {
                        response,
                        decision: Decision::Unauthenticated,
                    }
                }
            };
        };
        let groups_claim = &self.providers[opened.provider].cfg.groups_claim;
        if route.on_unauthenticated != OnUnauthenticated::Allow
            && let Err(required) =
                authorize::check(&route.authorization, &opened.session, groups_claim)
        {
            tracing::info!(
                route = route_name,
                "auth.decision" = "forbid",
                "auth.reason" = "authorization",
                "Request denied"
            );
            let json = is_non_navigational(&parts.headers);
            let mut response = RequestError::Forbidden { required }.render(request_id, json);
            append_cookies(&mut response, &state.set_cookie);
            return Verdict::Respond {
                response,
                decision: Decision::Forbidden,
            };
        }
        opened
            .identity
            .inject(&mut parts.headers, &self.signer, now);
        tracing::debug!(
            route = route_name,
            "auth.decision" = "allow",
            "Request allowed"
        );
        Verdict::Forward {
            opened: Some(opened),
            set_cookie: state.set_cookie,
            decision: Decision::Allowed,
        }
    }

    /// Redirect that begins a sign-in for `route` (chooser page when it offers several IdPs).
    async fn login_redirect(
        &self,
        route: &RouteConfig,
        rd: &str,
    ) -> Result<Response<Body>, RequestError> {
        match route.providers.as_slice() {
            [one] => self.start_login(*one, rd).await,
            _ => Ok(login::redirect(&login::start_url(rd, None), &[])),
        }
    }
}

/// Adds `Set-Cookie` values to a response.
pub fn append_cookies(resp: &mut Response<Body>, cookies: &[HeaderValue]) {
    for c in cookies {
        resp.headers_mut()
            .append(http::header::SET_COOKIE, c.clone());
    }
}
