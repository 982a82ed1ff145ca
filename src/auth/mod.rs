//! The relying party and the one access decision. [`Auth::decide`] is the ONLY place an access
//! decision is made, for the inline gate ([`Auth::gate`]) and for forward auth
//! (`/oauth2/auth`) alike: it asks the session store who is signed in (refreshing an expired
//! access token once per session, across replicas), applies the route's `on_unauthenticated`
//! and authorization rules, and returns a [`Decision`]. Every decision is logged once with the
//! same fields (`route`, `auth.decision`, `auth.reason`) and counted with the same labels.
//! Fails closed: anything that does not open is "no session"; a store that cannot answer is
//! 503, never "forward without identity".

pub mod authorize;
pub mod backchannel;
pub mod bearer;
pub mod decision;
pub mod endpoints;
pub mod http_client;
pub mod jws;
pub mod login;
pub mod oidc;
pub mod redirect;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response};
use parking_lot::Mutex;

use crate::config::{Config, RouteConfig};
use crate::error::RequestError;
use crate::http::body::Body;
use crate::http::negotiate::is_non_navigational;
use crate::identity_headers::{self, DataSigner};
use crate::metrics::Metrics;
use crate::routing::RouteTable;
use crate::session::keyring::KeyRing;
use crate::session::principal::Principal;
use crate::session::redis::Unavailable;
use crate::session::store::{Loaded, SessionStore};
pub use decision::{Decision, Outcome, Via};
use oidc::OidcProvider;

/// How long a local refresh result is shared with requests that still carry the old cookie.
const REFRESH_SHARE_SECS: i64 = 60;
/// How long a replica waits for another replica's refresh of the same session.
const REFRESH_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Refreshed {
    principal: Option<Arc<Principal>>,
    set_cookie: Vec<HeaderValue>,
    at: i64,
}

/// The session (if any) behind a request, plus cookies to set (after a refresh).
#[derive(Default)]
pub struct SessionState {
    pub principal: Option<Arc<Principal>>,
    /// The session as loaded (sign-out needs it).
    pub loaded: Option<Loaded>,
    pub set_cookie: Vec<HeaderValue>,
}

/// What the gate decided: forward (identity set) or answer.
pub enum Verdict {
    Forward {
        principal: Option<Arc<Principal>>,
        set_cookie: Vec<HeaderValue>,
        decision: crate::metrics::Decision,
    },
    Respond {
        response: Response<Body>,
        decision: crate::metrics::Decision,
    },
}

pub struct Auth {
    pub cfg: Arc<Config>,
    pub routes: RouteTable,
    pub providers: Vec<Arc<OidcProvider>>,
    pub keyring: Arc<KeyRing>,
    pub store: Arc<SessionStore>,
    pub signer: DataSigner,
    pub metrics: Arc<Metrics>,
    refreshing: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Refreshed>>>>,
    /// Logout-token `jti`s seen (when no Redis is shared).
    seen_jtis: backchannel::SeenJtis,
    /// Verified bearer tokens, per worker.
    bearer_cache: bearer::BearerCache,
}

impl Auth {
    pub fn new(
        cfg: Arc<Config>,
        providers: Vec<Arc<OidcProvider>>,
        keyring: Arc<KeyRing>,
        store: Arc<SessionStore>,
        signer: DataSigner,
        metrics: Arc<Metrics>,
    ) -> Auth {
        let bearer_cache = bearer::BearerCache::new(cfg.server.workers);
        Auth {
            routes: RouteTable::new(cfg.routes.clone(), cfg.server.trusted_proxies.clone()),
            cfg,
            providers,
            keyring,
            store,
            signer,
            metrics,
            refreshing: Mutex::new(HashMap::new()),
            seen_jtis: backchannel::SeenJtis::default(),
            bearer_cache,
        }
    }

    /// Finds the request's session; refreshed when the access token has expired and a
    /// refresh token exists. `Err` when the session store cannot answer (503).
    pub async fn session(
        &self,
        headers: &HeaderMap,
        now: i64,
    ) -> Result<SessionState, Unavailable> {
        let Some(loaded) = self.store.load(headers, now).await? else {
            return Ok(SessionState::default());
        };
        let margin = self.cfg.session.refresh_margin.as_secs() as i64;
        let s = &loaded.principal.session;
        if s.access_token_expired(now, margin) && s.refresh_token.is_some() {
            let r = self.refresh_once(&loaded, now).await?;
            return Ok(SessionState {
                principal: r.principal,
                loaded: Some(loaded),
                set_cookie: r.set_cookie,
            });
        }
        Ok(SessionState {
            principal: Some(loaded.principal.clone()),
            loaded: Some(loaded),
            set_cookie: Vec::new(),
        })
    }

    /// One refresh per session at a time: concurrent requests here share the first one's
    /// result, and with Redis, replicas take a lock so that only one of them calls the IdP.
    async fn refresh_once(&self, loaded: &Loaded, now: i64) -> Result<Refreshed, Unavailable> {
        let sid = loaded.principal.session.sid.clone();
        let cell = {
            let mut map = self.refreshing.lock();
            map.retain(|_, c| c.get().is_none_or(|r| now - r.at < REFRESH_SHARE_SECS));
            map.entry(sid).or_default().clone()
        };
        let r = cell
            .get_or_try_init(|| self.coordinated_refresh(loaded, now))
            .await?;
        Ok(r.clone())
    }

    async fn coordinated_refresh(
        &self,
        loaded: &Loaded,
        now: i64,
    ) -> Result<Refreshed, Unavailable> {
        let sid = &loaded.principal.session.sid;
        let deadline = tokio::time::Instant::now() + REFRESH_WAIT;
        loop {
            if let Some((set_cookie, p)) = self.store.refreshed_elsewhere(loaded, now).await? {
                tracing::debug!("session refreshed by another replica; using its tokens");
                return Ok(Refreshed {
                    principal: Some(p),
                    set_cookie,
                    at: now,
                });
            }
            if self.store.lock_refresh(sid).await? {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Unavailable(
                    "another replica's refresh of this session did not finish".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = self.do_refresh(loaded, now).await;
        self.store.unlock_refresh(sid).await;
        r
    }

    async fn do_refresh(&self, loaded: &Loaded, now: i64) -> Result<Refreshed, Unavailable> {
        let failed = Refreshed {
            principal: None,
            set_cookie: self.store.clear().to_vec(),
            at: now,
        };
        let old = &loaded.principal;
        let provider = &self.providers[old.provider];
        let Some(rt) = old.session.refresh_token.as_deref() else {
            return Ok(failed);
        };
        let tokens = match provider.refresh(rt, now).await {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(provider = provider.name(), error = %e, "auth.reason" = "refresh_failed", "session refresh failed; treating as no session");
                return Ok(failed);
            }
        };
        let mut s = old.session.clone();
        if !tokens.id_claims.is_empty() {
            if tokens.id_claims.get("sub").and_then(|v| v.as_str()) != Some(s.sub.as_str()) {
                tracing::warn!(
                    provider = provider.name(),
                    "refreshed ID token has a different subject; session dropped"
                );
                return Ok(failed);
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
        match self.store.save(&s, now, Some(loaded)).await {
            Ok((set_cookie, principal)) => {
                let text = self.store.text_of(&set_cookie);
                if let Err(e) = self.store.publish_refresh(&s.sid, &text).await {
                    tracing::warn!(error = %e, "could not share a refreshed session with other replicas");
                }
                tracing::debug!(provider = provider.name(), "session refreshed");
                Ok(Refreshed {
                    principal: Some(principal),
                    set_cookie,
                    at: now,
                })
            }
            Err(crate::session::store::SaveError::Unavailable(e)) => Err(e),
            Err(e) => {
                tracing::warn!(provider = provider.name(), error = %e, "refreshed session could not be stored");
                Ok(failed)
            }
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
        if route.cors_preflight && decision::is_cors_preflight(&parts.method, &parts.headers) {
            let d = self.preflight(route, Via::Proxy);
            self.store.jar().strip(&mut parts.headers);
            return Verdict::Forward {
                principal: None,
                set_cookie: d.set_cookie,
                decision: d.outcome.metric(),
            };
        }
        let now = crate::session::unix_at(arrived);
        let rd = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let d = self
            .decide(route, &parts.headers, rd, now, Via::Proxy)
            .await;
        self.store.jar().strip(&mut parts.headers);
        let label = d.outcome.metric();
        // A bearer request is a script's: its errors are JSON whatever it accepts.
        let json = is_non_navigational(&parts.headers)
            || (route.bearer.is_some() && bearer::token_of(&parts.headers).is_some());
        let mut response = match d.outcome {
            Outcome::Allowed | Outcome::Public => {
                if let Some(p) = &d.principal {
                    p.identity.inject(&mut parts.headers, &self.signer, now);
                }
                return Verdict::Forward {
                    principal: d.principal,
                    set_cookie: d.set_cookie,
                    decision: label,
                };
            }
            Outcome::SignIn => match self.login_redirect(route, rd).await {
                Ok(r) => r,
                Err(e) => e.render(request_id, false),
            },
            Outcome::Unauthenticated { login_url } => match login_url {
                Some(login_url) => {
                    RequestError::Unauthenticated { login_url }.render(request_id, true)
                }
                None => RequestError::Denied.render(request_id, json),
            },
            Outcome::Forbidden { required } => {
                RequestError::Forbidden { required }.render(request_id, json)
            }
            Outcome::StepUp {
                required,
                login_url,
            } => RequestError::StepUp {
                required,
                login_url,
            }
            .render(request_id, json),
            Outcome::Unavailable(why) => {
                RequestError::SessionStoreUnavailable(why).render(request_id, json)
            }
            Outcome::InvalidToken(why) => RequestError::InvalidToken(why).render(request_id, true),
            Outcome::InsufficientScope { scope } => {
                RequestError::InsufficientScope { scope }.render(request_id, true)
            }
        };
        append_cookies(&mut response, &d.set_cookie);
        Verdict::Respond {
            response,
            decision: label,
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
