//! The built-in user pool (docs/src/pool/index.md): a Cognito-style OpenID Provider served at
//! `{public_url}/oauth2/pool`, with hosted sign-in pages, users in SQLite or PostgreSQL, and an
//! admin CLI/API. The proxy reaches it over real HTTP/OIDC like any other provider; nothing in
//! the relying party trusts the pool by any other path.
//!
//! Invariants: every state-changing form is CSRF-checked; every value reaching a page is
//! escaped by the template engine; codes, tokens and passwords are stored hashed and never
//! logged (except the explicitly labelled `delivery = "log"` development line); lockout and
//! rate-limit counters live in the database so they hold across replicas.

mod account;
pub mod admin;
pub mod admin_api;
pub mod attributes;
pub mod audit;
pub mod backchannel;
pub mod cli;
pub mod clients;
pub mod config;
mod console;
#[doc(hidden)]
pub use console::ROUTES as CONSOLE_ROUTES;
pub mod delivery;
pub mod events;
mod federation;
pub mod hashing;
mod health;
pub mod i18n;
pub mod jwt;
pub mod lockout;
pub mod mail;
pub mod mfa;
pub mod migration;
mod op;
mod pages;
pub mod password;
pub mod smtp;
pub mod store;
pub mod transfer;
pub mod username;
mod web;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::OnceCell;

use crate::config::{Config, Secret};
use crate::http::body::Body;
use crate::session::keyring::KeyRing;
pub use config::PoolConfig;
use i18n::Lang;
use jwt::Keys;
use store::{Store, StoreError};
use web::Answer;

/// Largest form or JSON body the pool reads.
pub const MAX_BODY: usize = 64 * 1024;

/// What the pool needs from the database before it can answer: the store, the signing keys,
/// and a dummy hash (so unknown users cost one Argon2 verification, like known ones).
pub struct Ready {
    pub store: Store,
    pub keys: Keys,
    pub dummy_hash: String,
}

/// Why the pool could not start.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("pool database {url}: {source}")]
    Store {
        url: String,
        #[source]
        source: StoreError,
    },
    #[error("pool templates: {0}")]
    Templates(String),
    #[error("pool assets: {0}")]
    Assets(String),
    #[error("password hashing failed")]
    Hash,
}

pub struct Pool {
    pub cfg: Arc<PoolConfig>,
    /// The issuer URL, e.g. `https://app.example.com/oauth2/pool`.
    pub issuer: String,
    /// The issuer's path, e.g. `/oauth2/pool`; every page and endpoint lives under it.
    pub base: String,
    secure: bool,
    /// Peers whose `X-Forwarded-For` names the real client (for per-address throttling).
    trusted_proxies: Vec<ipnet::IpNet>,
    pub clients: clients::Clients,
    sealer: KeyRing,
    csrf_key: ring::hmac::Key,
    pages: pages::Renderer,
    ready: OnceCell<Ready>,
    federation: federation::Federation,
    /// `pool.migration`: asked about sign-ins that name an unknown user.
    migration: Option<migration::Hook>,
    /// Ends the proxy's sessions of a user whose pool sessions end.
    proxy_sessions: Option<Arc<crate::session::revocation::UserSessions>>,
    /// Logout tokens for `[[pool.clients]]` with a `backchannel_logout_uri`.
    backchannel: Option<Arc<backchannel::Backchannel>>,
    /// Whether the database answers (pool pages 503 while it does not).
    health: health::DbHealth,
    /// How long a pool session lasts: `pool.session_timeout`, or the proxy's `session.timeout`
    /// when a route signs in through the pool and that is longer (see [`session_lifetime`]).
    pub session_lifetime: std::time::Duration,
    /// The app's origin (`public_url`'s): where the account home's "back to the app" goes.
    app_origin: String,
    /// Other origins a `rd` may name (`allowed_redirect_origins`).
    allowed_redirect_origins: Vec<String>,
}

/// How long the pool's own session lasts. A proxy session made through the pool must not
/// outlive it, or a user visibly signed in to the app would meet "your sign-in has timed out"
/// on the account and factor pages: when a route signs in through the pool, the pool session
/// lasts at least the proxy's `session.timeout`.
pub fn session_lifetime(cfg: &Config, pool: &PoolConfig) -> std::time::Duration {
    let pool_routes = cfg.routes.iter().any(|r| {
        r.providers
            .iter()
            .any(|&i| cfg.providers.get(i).is_some_and(|p| p.name == "pool"))
    });
    if pool_routes {
        pool.session_timeout.max(cfg.session.timeout)
    } else {
        pool.session_timeout
    }
}

/// Redacts the database URL's password for messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// The issuer URL: the pool's origin (`pool.public_url`, else `public_url`) + `/oauth2/pool`.
pub fn issuer_url(cfg: &Config, pool: &PoolConfig) -> url::Url {
    let mut u = pool
        .public_url
        .clone()
        .unwrap_or_else(|| cfg.public_url.clone());
    u.set_path(crate::http::paths::POOL_PREFIX);
    u
}

/// The decoded `name=value` pairs of a query string.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// Constant-time equality for secrets (length is not hidden).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn now() -> i64 {
    crate::session::now_unix()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Pool {
    /// Builds the pool (templates, assets, clients); the database is opened by [`Pool::ready`].
    pub fn new(cfg: &Config, pool: PoolConfig, secrets: &[Secret]) -> Result<Pool, PoolError> {
        let issuer_url = issuer_url(cfg, &pool);
        let issuer = issuer_url.as_str().trim_end_matches('/').to_string();
        let base = issuer_url.path().trim_end_matches('/').to_string();
        let mut callback = cfg.public_url.clone();
        callback.set_path(crate::http::paths::CALLBACK);
        let builtin_secret = KeyRing::derive_secret(secrets, "pool-client").map(Secret::new);
        let clients = clients::Clients::new(
            &pool.clients,
            builtin_secret,
            callback.to_string(),
            cfg.public_origin.clone(),
        );
        let sealer = KeyRing::new(secrets).map_err(|e| PoolError::Templates(e.to_string()))?;
        let csrf_secret = KeyRing::derive_secret(secrets, "pool-csrf").unwrap_or_default();
        let csrf_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, csrf_secret.as_bytes());
        let pages = pages::Renderer::new(&pool.ui, &clients)?;
        let federation = federation::Federation::new(&pool.identity_providers, &issuer)?;
        let backchannel = backchannel::Backchannel::new(&issuer, &pool);
        let migration = pool.migration.as_ref().map(migration::Hook::new);
        let session_lifetime = session_lifetime(cfg, &pool);
        Ok(Pool {
            session_lifetime,
            app_origin: cfg.public_origin.clone(),
            allowed_redirect_origins: cfg.allowed_redirect_origins.clone(),
            cfg: Arc::new(pool),
            issuer,
            base,
            secure: issuer_url.scheme() == "https",
            trusted_proxies: cfg.server.trusted_proxies.clone(),
            clients,
            sealer,
            csrf_key,
            pages,
            ready: OnceCell::new(),
            federation,
            migration,
            proxy_sessions: None,
            backchannel,
            health: health::DbHealth::default(),
        })
    }

    /// Ends the proxy's sessions of pool users whenever their pool sessions end.
    pub fn with_proxy_sessions(
        mut self,
        hook: Arc<crate::session::revocation::UserSessions>,
    ) -> Pool {
        self.proxy_sessions = Some(hook);
        self
    }

    /// Opens the database (migrating it) and loads the signing keys, once.
    pub async fn ready(&self) -> Result<&Ready, PoolError> {
        self.ready
            .get_or_try_init(|| async {
                let err = |source| PoolError::Store { url: redact_url(&self.cfg.database), source };
                let store = Store::open(&self.cfg.database)
                    .await
                    .map_err(err)?
                    .with_proxy_sessions(self.proxy_sessions.clone())
                    .with_backchannel(self.backchannel.clone());
                let keys = Keys::load(&store, self.cfg.signing_alg, now()).await.map_err(err)?;
                // Made once, outside the hashing limit, so a flood cannot keep the pool from opening.
                let seed = KeyRing::new(&[Secret::new("x".repeat(32))]).map(|k| k.random_hex(16)).unwrap_or_default();
                let dummy_hash = tokio::task::spawn_blocking(move || password::hash_now(&seed))
                    .await
                    .map_err(|_| PoolError::Hash)?
                    .map_err(|_| PoolError::Hash)?;
                let _ = store.purge_expired(now()).await;
                let _ = store.purge_expired_mfa(now()).await;
                purge_periodically(store.clone());
                tracing::info!(database = %redact_url(&self.cfg.database), issuer = %self.issuer, "user pool ready");
                Ok(Ready { store, keys, dummy_hash })
            })
            .await
    }

    /// Readiness for `/readyz`: the database answers.
    pub async fn database_ok(&self) -> bool {
        self.live("readyz").await.is_some()
    }

    /// Whether a request path belongs to the pool.
    pub fn owns(&self, path: &str) -> bool {
        path == self.base
            || path
                .strip_prefix(&self.base)
                .is_some_and(|rest| rest.starts_with('/'))
    }

    /// Answers a request under the issuer path.
    pub async fn handle<B>(&self, parts: &Parts, body: B, peer: IpAddr, rid: &str) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let lang = Lang::of_request(&parts.headers, parts.uri.query());
        let form = if parts.method == Method::POST {
            match read_body(body).await {
                Ok(b) => {
                    let is_form = parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
                    if !is_form && !b.is_empty() {
                        return pages::plain(
                            StatusCode::UNSUPPORTED_MEDIA_TYPE,
                            "expected application/x-www-form-urlencoded\n",
                        );
                    }
                    url::form_urlencoded::parse(&b).into_owned().collect()
                }
                Err(resp) => return resp,
            }
        } else {
            Vec::new()
        };
        let query = query_pairs(parts.uri.query());
        let ip = self.client_ip(parts, peer);
        let req = Req {
            parts,
            form,
            query,
            ip,
            lang,
            rid,
        };
        let sub = &parts.uri.path()[self.base.len()..];
        let ready = match self.live(rid).await {
            Some(r) => r,
            None => {
                // The database is not answering (down, or its connections all busy in a
                // flood): come back soon.
                let mut r = self.pages.message(
                    self,
                    &req,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "error_title",
                    "unavailable",
                );
                hashing::retry_later(&mut r);
                return r;
            }
        };
        let m = &parts.method;
        let get = m == Method::GET || m == Method::HEAD;
        let post = m == Method::POST;
        match sub {
            "/.well-known/openid-configuration" if get => op::discovery(self),
            "/jwks.json" if get => op::jwks(ready).await,
            "/authorize" if get || post => op::authorize(self, ready, &req).await,
            "/token" if post => op::token(self, ready, &req).await,
            "/userinfo" if get || post => op::userinfo(self, ready, &req).await,
            "/logout" if get || post => op::end_session(self, ready, &req).await,
            "/login" if get => pages::login::open(self, ready, &req).await,
            "/login" if post => pages::login::submit(self, ready, &req).await,
            "/signup" if get => pages::signup::show(self, &req),
            "/signup" if post => pages::signup::submit(self, ready, &req).await,
            "/confirm" if get => pages::signup::show_confirm(self, &req),
            "/confirm" if post => pages::signup::confirm(self, ready, &req).await,
            "/resend-code" if post => pages::signup::resend(self, ready, &req).await,
            "/forgot-password" if get => pages::password::show_forgot(self, &req),
            "/forgot-password" if post => pages::password::forgot(self, ready, &req).await,
            "/reset-password" if get => pages::password::show_reset(self, &req),
            "/reset-password" if post => pages::password::reset(self, ready, &req).await,
            "/change-password" if get => pages::password::show_change(self, ready, &req)
                .await
                .answer(self, &req),
            "/change-password" if post => pages::password::change(self, ready, &req)
                .await
                .answer(self, &req),
            "/mfa" if get => mfa::pages::show_challenge(self, ready, &req).await,
            "/mfa" if post => mfa::pages::submit_challenge(self, ready, &req).await,
            "/mfa/setup" if get => mfa::pages::show_setup(self, ready, &req)
                .await
                .answer(self, &req),
            "/mfa/setup" if post => mfa::pages::submit_setup(self, ready, &req)
                .await
                .answer(self, &req),
            "/mfa/manage" if post => mfa::pages::manage(self, ready, &req)
                .await
                .answer(self, &req),
            "/mfa/continue" if post => mfa::pages::continue_sign_in(self, ready, &req).await,
            "/passkeys" if get && self.cfg.passkeys => mfa::passkeys::show(self, ready, &req).await,
            "/passkeys/options" if post && self.cfg.passkeys => {
                mfa::passkeys::register_options(self, ready, &req).await
            }
            "/passkeys/add" if post && self.cfg.passkeys => {
                mfa::passkeys::add(self, ready, &req).await
            }
            "/passkeys/remove" if post && self.cfg.passkeys => {
                mfa::passkeys::remove(self, ready, &req).await
            }
            "/passkeys/login/options" if post && self.cfg.passkeys => {
                mfa::passkeys::sign_in_options(self, ready, &req).await
            }
            "/passkeys/login" if post && self.cfg.passkeys => {
                mfa::passkeys::sign_in(self, ready, &req).await
            }
            "/assets/passkeys.js" if get && self.cfg.passkeys => self.pages.asset(sub),
            "/account" if get => account::handle(self, ready, &req, sub).await,
            "/account/reauth" if get => account::handle(self, ready, &req, sub).await,
            "/account/profile" if post => account::handle(self, ready, &req, sub).await,
            "/account/verify-email" if post => account::handle(self, ready, &req, sub).await,
            "/account/passkeys/rename" if post => account::handle(self, ready, &req, sub).await,
            "/account/passkeys/remove" if post => account::handle(self, ready, &req, sub).await,
            "/account/sessions/end" if post => account::handle(self, ready, &req, sub).await,
            "/account/sessions/end-others" if post => account::handle(self, ready, &req, sub).await,
            "/account/providers/unlink" if post => account::handle(self, ready, &req, sub).await,
            "/account/delete" if post => account::handle(self, ready, &req, sub).await,
            "/account/password/code" if post => account::handle(self, ready, &req, sub).await,
            "/account/password/set" if post => account::handle(self, ready, &req, sub).await,
            p if self.cfg.admin_console && (p == "/admin" || p.starts_with("/admin/")) => {
                console::handle(self, ready, &req, p).await
            }
            "/federation/start" if get => federation::start(self, &req).await,
            "/federation/callback" if get => federation::callback(self, ready, &req).await,
            "/federation/complete" if post => federation::complete(self, ready, &req).await,
            "/assets/pool.css" | "/assets/brand.css" | "/assets/logo" if get => {
                self.pages.asset(sub)
            }
            "" | "/" if get => pages::login::show(self, &req, None),
            _ => crate::error::RequestError::NotFound.render(rid, false),
        }
    }
}

impl Pool {
    /// The client address for throttling: the peer, or — only when the peer is a trusted
    /// proxy — the nearest untrusted address in `X-Forwarded-For` (clients can forge the rest).
    /// Entries are read from the right; `ip:port` and `[v6]:port` count as their address. An
    /// entry that is no address stops the walk and the peer is the key (fail closed: skipping
    /// it would make a forged entry further left the key).
    fn client_ip(&self, parts: &Parts, peer: IpAddr) -> IpAddr {
        crate::http::client_ip::client_ip(&parts.headers, peer, &self.trusted_proxies)
    }
}

/// Every route of [`Pool::handle`], relative to the issuer path (kept equal to its `match` by
/// the unit test below). `/passkeys…` answer only with `pool.passkeys`, `/admin…` only with
/// `pool.admin_console` (see [`console::ROUTES`]).
#[doc(hidden)]
pub const ROUTES: &[crate::surface::Route] = {
    use crate::surface::Route as R;
    &[
        R::exact("GET", "/.well-known/openid-configuration"),
        R::exact("GET", "/jwks.json"),
        R::exact("GET POST", "/authorize"),
        R::exact("POST", "/token"),
        R::exact("GET POST", "/userinfo"),
        R::exact("GET POST", "/logout"),
        R::exact("GET", "/login"),
        R::exact("POST", "/login"),
        R::exact("GET", "/signup"),
        R::exact("POST", "/signup"),
        R::exact("GET", "/confirm"),
        R::exact("POST", "/confirm"),
        R::exact("POST", "/resend-code"),
        R::exact("GET", "/forgot-password"),
        R::exact("POST", "/forgot-password"),
        R::exact("GET", "/reset-password"),
        R::exact("POST", "/reset-password"),
        R::exact("GET", "/change-password"),
        R::exact("POST", "/change-password"),
        R::exact("GET", "/mfa"),
        R::exact("POST", "/mfa"),
        R::exact("GET", "/mfa/setup"),
        R::exact("POST", "/mfa/setup"),
        R::exact("POST", "/mfa/manage"),
        R::exact("POST", "/mfa/continue"),
        R::exact("GET", "/passkeys"),
        R::exact("POST", "/passkeys/options"),
        R::exact("POST", "/passkeys/add"),
        R::exact("POST", "/passkeys/remove"),
        R::exact("POST", "/passkeys/login/options"),
        R::exact("POST", "/passkeys/login"),
        R::exact("GET", "/assets/passkeys.js"),
        R::exact("GET", "/account"),
        R::exact("GET", "/account/reauth"),
        R::exact("POST", "/account/profile"),
        R::exact("POST", "/account/verify-email"),
        R::exact("POST", "/account/passkeys/rename"),
        R::exact("POST", "/account/passkeys/remove"),
        R::exact("POST", "/account/sessions/end"),
        R::exact("POST", "/account/sessions/end-others"),
        R::exact("POST", "/account/providers/unlink"),
        R::exact("POST", "/account/delete"),
        R::exact("POST", "/account/password/code"),
        R::exact("POST", "/account/password/set"),
        R::exact("*", "/admin"),
        R::prefix("*", "/admin/"),
        R::exact("GET", "/federation/start"),
        R::exact("GET", "/federation/callback"),
        R::exact("POST", "/federation/complete"),
        R::exact("GET", "/assets/pool.css"),
        R::exact("GET", "/assets/brand.css"),
        R::exact("GET", "/assets/logo"),
        R::exact("GET", ""),
        R::exact("GET", "/"),
    ]
};

/// One pool request: parsed query and form, client address, chosen language.
pub struct Req<'a> {
    pub parts: &'a Parts,
    pub form: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub ip: IpAddr,
    pub lang: Lang,
    pub rid: &'a str,
}

impl Req<'_> {
    /// A form field (POST body), or "" when absent.
    pub fn field(&self, name: &str) -> &str {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// A query parameter, or "" when absent.
    pub fn param(&self, name: &str) -> &str {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// A form field, else the query parameter of that name.
    pub fn value(&self, name: &str) -> &str {
        let f = self.field(name);
        if f.is_empty() { self.param(name) } else { f }
    }
}

async fn read_body<B>(body: B) -> Result<Bytes, Response<Body>>
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(_) => Err(pages::plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large or unreadable\n",
        )),
    }
}

/// Expired rows (codes, sessions, tokens) and unconfirmed sign-ups whose code has expired (their
/// user name and address are released) are removed at start and then every ten minutes.
fn purge_periodically(store: Store) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            tick.tick().await;
            if let Err(e) = store.purge_expired(now()).await {
                tracing::warn!(error = %e, "cannot purge expired codes and sessions");
            }
            match store.purge_unconfirmed(now()).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(
                        removed = n,
                        "pool.event" = "unconfirmed_purged",
                        "unconfirmed sign-ups whose code expired were removed"
                    )
                }
                Err(e) => tracing::warn!(error = %e, "cannot purge expired unconfirmed sign-ups"),
            }
        }
    });
}

#[cfg(test)]
mod route_table {
    use crate::surface::{arms, declared};

    #[test]
    fn routes_name_exactly_the_arms_of_the_dispatcher() {
        let want = arms(include_str!("mod.rs"), "match sub {");
        assert_eq!(declared(super::ROUTES, str::to_string), want);
    }
}
