//! Federation inside the pool (docs/src/pool/federation.md): "Continue with {display_name}" on the hosted sign-in
//! and sign-up pages. The pool is a relying party of each `[[pool.identity_providers]]` entry
//! through the proxy's own [`OidcProvider`] (discovery, PKCE S256, state, nonce, full ID token
//! validation, userinfo), with its callback at `{issuer}/federation/callback`.
//!
//! Invariants: the login-in-progress state (state, nonce, PKCE verifier, the waiting
//! authorization request) lives only in a sealed cookie named after the state, valid for the
//! login window; a callback without that cookie, with another state or after the window is
//! refused. A provider's user becomes the pool user `{name}_{sub}` (CONFIRMED, no password);
//! it is linked to an existing user by email only when the provider is configured with
//! `link_by_email` and the provider itself says `email_verified: true`. Disabled users stay out.
//! Never logged: codes, tokens, claims' values.

mod identity;
pub mod texts;

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::config::IdentityProviderConfig;
use super::i18n::{self, t};
use super::pages::{Field, Page, cookie_value, redirect};
use super::{Pool, PoolError, Ready, Req, now};
use crate::auth::http_client::IdpClient;
use crate::auth::oidc::OidcProvider;
use crate::http::body::Body;
pub use identity::Identity;

/// The pool's own templates for federation (overridable like the others).
pub const TEMPLATES: &[(&str, &str)] = &[(
    "federation_complete.html",
    include_str!("../templates/federation_complete.html"),
)];

const PENDING_PURPOSE: &[u8] = b"pool-federation-login";
const COMPLETE_PURPOSE: &[u8] = b"pool-federation-complete";
const COOKIE_PREFIX: &str = "portcullis_pool_fed_";
/// How long a "Continue with …" sign-in may take, IdP login and attribute page included.
const LOGIN_WINDOW_SECS: i64 = 15 * 60;

/// One upstream provider: its pool-side settings and the shared relying-party code.
pub struct Upstream {
    pub cfg: IdentityProviderConfig,
    oidc: OidcProvider,
}

impl Upstream {
    pub fn name(&self) -> &str {
        &self.cfg.provider.name
    }
}

/// Every configured provider, in configuration order (the order of the buttons).
pub struct Federation {
    upstreams: Vec<Upstream>,
}

/// A "Continue with …" button as templates see it.
#[derive(Serialize)]
pub struct Button {
    pub name: String,
    pub label: String,
    pub href: String,
}

impl Federation {
    pub fn new(cfgs: &[IdentityProviderConfig], issuer: &str) -> Result<Federation, PoolError> {
        let callback = url::Url::parse(&format!("{issuer}/federation/callback"))
            .map_err(|e| PoolError::Templates(format!("federation callback URL: {e}")))?;
        let upstreams = cfgs
            .iter()
            .map(|c| Upstream {
                oidc: OidcProvider::new(
                    c.provider.clone(),
                    &callback,
                    IdpClient::new(c.provider.timeout),
                ),
                cfg: c.clone(),
            })
            .collect();
        Ok(Federation { upstreams })
    }

    fn get(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.name() == name)
    }

    /// The buttons for a page carrying the sealed authorization request `req` (may be empty).
    pub fn buttons(&self, base: &str, req: &str, lang: i18n::Lang) -> Vec<Button> {
        self.upstreams
            .iter()
            .map(|u| {
                let mut href = format!("{base}/federation/start?provider={}", enc(u.name()));
                if !req.is_empty() {
                    href.push_str("&req=");
                    href.push_str(&enc(req));
                }
                Button {
                    name: u.name().to_string(),
                    label: i18n::fill(
                        t(lang, "continue_with"),
                        &[("name", &u.cfg.provider.display_name)],
                    ),
                    href,
                }
            })
            .collect()
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// What the login-in-progress cookie carries (sealed).
#[derive(Serialize, Deserialize)]
struct PendingLogin {
    state: String,
    nonce: String,
    verifier: String,
    provider: String,
    /// The sealed authorization request the sign-in pages were carrying ("" when none).
    req: String,
    created: i64,
}

fn cookie_name(state: &str) -> String {
    format!("{COOKIE_PREFIX}{}", &state[..state.len().min(16)])
}

impl Pool {
    fn federation_cookie(&self, name: &str, value: &str, max_age: i64) -> String {
        format!(
            "{name}={value}; Path={}/federation; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
            self.base,
            if self.secure { "; Secure" } else { "" }
        )
    }

    fn seal_json<T: Serialize>(&self, purpose: &[u8], v: &T) -> String {
        let json = serde_json::to_vec(v).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(self.sealer.seal(purpose, &json))
    }

    fn open_json<T: for<'de> Deserialize<'de>>(&self, purpose: &[u8], raw: &str) -> Option<T> {
        let plain = self
            .sealer
            .open(purpose, &URL_SAFE_NO_PAD.decode(raw).ok()?)?;
        serde_json::from_slice(&plain).ok()
    }

    /// A federation page with a heading and a message (already translated), at `status`.
    fn federation_message(
        &self,
        req: &Req<'_>,
        status: StatusCode,
        message: String,
        cookies: Vec<String>,
    ) -> Response<Body> {
        self.federation_page(req, status, "error_title", message, "", cookies)
    }

    /// [`Pool::federation_message`] titled `heading`, whose "Sign in" link carries the
    /// waiting authorization request (`req_raw`), so that signing in another way still ends
    /// on the app that sent the user.
    fn federation_page(
        &self,
        req: &Req<'_>,
        status: StatusCode,
        heading: &str,
        message: String,
        req_raw: &str,
        cookies: Vec<String>,
    ) -> Response<Body> {
        let page = Page {
            message,
            cookies,
            req: req_raw.to_string(),
            ..Page::default()
        };
        self.pages
            .render(self, req, status, "message.html", heading, page)
    }
}

/// `GET {issuer}/federation/start?provider=NAME[&req=…]`: to the provider's authorization URL.
pub async fn start(pool: &Pool, req: &Req<'_>) -> Response<Body> {
    let Some(up) = pool.federation.get(req.param("provider")) else {
        return pool.federation_message(
            req,
            StatusCode::NOT_FOUND,
            t(req.lang, "fed_unknown_provider").to_string(),
            Vec::new(),
        );
    };
    if pool.open_request(req).is_err() {
        return pool.pages.message(
            pool,
            req,
            StatusCode::BAD_REQUEST,
            "error_title",
            "invalid_request",
        );
    }
    let state = pool.sealer.random_hex(16);
    let nonce = pool.sealer.random_hex(16);
    let verifier = pool.sealer.random_hex(32);
    let url = match up.oidc.authorize_url(&state, &nonce, &verifier).await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(provider = up.name(), error = %e, request_id = req.rid, "identity provider unavailable");
            return idp_unavailable(pool, req, Vec::new());
        }
    };
    let pending = PendingLogin {
        state: state.clone(),
        nonce,
        verifier,
        provider: up.name().to_string(),
        req: req.param("req").to_string(),
        created: now(),
    };
    let sealed = pool.seal_json(PENDING_PURPOSE, &pending);
    let cookie = pool.federation_cookie(&cookie_name(&state), &sealed, LOGIN_WINDOW_SECS);
    tracing::info!(
        provider = up.name(),
        request_id = req.rid,
        "pool.event" = "federation_start",
        "federated sign-in started"
    );
    redirect(url.as_str(), &[cookie])
}

fn idp_unavailable(pool: &Pool, req: &Req<'_>, cookies: Vec<String>) -> Response<Body> {
    pool.federation_message(
        req,
        StatusCode::BAD_GATEWAY,
        t(req.lang, "fed_idp_unavailable").to_string(),
        cookies,
    )
}

/// `GET {issuer}/federation/callback?code&state`: checks the state against the sealed cookie,
/// exchanges the code, validates the ID token, reads userinfo, then signs the user in.
pub async fn callback(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    let expired = |cookies: Vec<String>| {
        tracing::info!(
            request_id = req.rid,
            "pool.event" = "federation_refused",
            "federation callback refused: state missing, unknown or expired"
        );
        pool.federation_message(
            req,
            StatusCode::UNAUTHORIZED,
            t(req.lang, "fed_expired").to_string(),
            cookies,
        )
    };
    let state = req.param("state");
    if state.len() < 16 || !state.bytes().all(|b| b.is_ascii_hexdigit()) {
        return expired(Vec::new());
    }
    let name = cookie_name(state);
    let clear = vec![pool.federation_cookie(&name, "", 0)];
    let pending: Option<PendingLogin> =
        cookie_value(req, &name).and_then(|v| pool.open_json(PENDING_PURPOSE, v));
    let Some(pending) = pending else {
        return expired(clear);
    };
    // The state came sealed from our own cookie (unforgeable): comparing it binds this
    // callback to the browser that started the sign-in (RFC 6749 §10.12, login CSRF).
    if pending.state != state || now() - pending.created > LOGIN_WINDOW_SECS {
        return expired(clear);
    }
    let Some(up) = pool.federation.get(&pending.provider) else {
        return expired(clear);
    };
    let error = req.param("error");
    if !error.is_empty() {
        tracing::info!(
            provider = up.name(),
            request_id = req.rid,
            "pool.event" = "federation_idp_error",
            idp_error = error,
            "identity provider returned an error"
        );
        // docs/src/reference/status-codes.md: an IdP error at the callback is ALB's 561, with the IdP's error code.
        let status = StatusCode::from_u16(561).unwrap_or(StatusCode::BAD_GATEWAY);
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        // Cancelled by the user (OIDC Core 3.1.2.6 `access_denied`): said so, with the way
        // back to the sign-in page of the same request.
        let (heading, message) = if code == "access_denied" {
            (
                "fl_fed_cancel_title",
                i18n::fill(t(req.lang, "fl_fed_cancelled"), &[("code", &code)]),
            )
        } else {
            (
                "fl_fed_error_title",
                i18n::fill(t(req.lang, "fed_idp_error"), &[("code", &code)]),
            )
        };
        let req_raw = pool
            .open_request_raw(&pending.req)
            .map_or("", |_| &pending.req);
        return pool.federation_page(req, status, heading, message, req_raw, clear);
    }
    let code = req.param("code");
    if code.is_empty() {
        return pool.federation_message(
            req,
            StatusCode::BAD_REQUEST,
            t(req.lang, "fed_expired").to_string(),
            clear,
        );
    }
    let tokens = match up
        .oidc
        .exchange(code, &pending.verifier, &pending.nonce, now())
        .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(provider = up.name(), error = %e, request_id = req.rid, "pool.event" = "federation_refused", "federated sign-in failed at the token exchange");
            return idp_unavailable(pool, req, clear);
        }
    };
    let mut claims = tokens.id_claims;
    let provider_sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match up.oidc.userinfo(&tokens.access_token, &provider_sub).await {
        Ok(Some(info)) => {
            // The ID token's own claims win where both have one (they are signed).
            for (k, v) in info {
                claims.entry(k).or_insert(v);
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(provider = up.name(), error = %e, request_id = req.rid, "federated sign-in failed at userinfo");
            return idp_unavailable(pool, req, clear);
        }
    }
    let id = Identity::from_claims(up, &provider_sub, &claims, &pending.state);
    identity::sign_in(pool, ready, req, up, id, &pending.req, clear).await
}

/// A new user whose provider did not give every required attribute (or gave an invalid one),
/// sealed into the attribute page's `fed` field until it is complete.
#[derive(Serialize, Deserialize)]
struct Incomplete {
    identity: Identity,
    /// The attributes the page asks for.
    ask: Vec<String>,
    req: String,
    exp: i64,
}

/// The one page that asks for what the provider did not give.
fn complete_form(
    pool: &Pool,
    req: &Req<'_>,
    status: StatusCode,
    inc: &Incomplete,
    errors: super::pages::form::FormErrors,
    cookies: Vec<String>,
) -> Response<Body> {
    let fields = inc
        .ask
        .iter()
        .map(|name| {
            let typed = req.field(name);
            let value = if typed.is_empty() {
                inc.identity.attribute(name).unwrap_or_default()
            } else {
                typed.to_string()
            };
            let mut f = super::pages::signup::field_for(
                name,
                req.lang,
                pool.cfg.required_attributes.contains(name),
            );
            f.value = value;
            f
        })
        .collect::<Vec<Field>>();
    let order: Vec<&str> = inc.ask.iter().map(String::as_str).collect();
    let mut page = Page {
        form: errors.in_order(&order),
        fields,
        cookies,
        message: t(req.lang, "fed_complete_help").to_string(),
        challenge: pool.seal_json(COMPLETE_PURPOSE, inc),
        req: inc.req.clone(),
        ..Page::default()
    };
    page.values.insert(
        "provider".into(),
        pool.federation
            .get(&inc.identity.provider)
            .map(|u| u.cfg.provider.display_name.clone())
            .unwrap_or_default(),
    );
    pool.pages.render(
        pool,
        req,
        status,
        "federation_complete.html",
        "fed_complete_title",
        page,
    )
}

/// `POST {issuer}/federation/complete`: the attributes the provider did not give.
pub async fn complete(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    if !pool.csrf_ok(req) {
        return pool.csrf_failed(req);
    }
    let inc: Option<Incomplete> = pool.open_json(COMPLETE_PURPOSE, req.field("challenge"));
    // The page is bound to the browser that signed in at the provider: its login cookie (kept
    // while the page is open) must still be there, for the same sign-in.
    let inc = inc.filter(|i| {
        i.exp >= now()
            && cookie_value(req, &cookie_name(&i.identity.login))
                .and_then(|v| pool.open_json::<PendingLogin>(PENDING_PURPOSE, v))
                .is_some_and(|p| p.state == i.identity.login)
    });
    let Some(mut inc) = inc else {
        return pool.federation_message(
            req,
            StatusCode::UNAUTHORIZED,
            t(req.lang, "fed_expired").to_string(),
            Vec::new(),
        );
    };
    let Some(up) = pool.federation.get(&inc.identity.provider) else {
        return pool.federation_message(
            req,
            StatusCode::UNAUTHORIZED,
            t(req.lang, "fed_expired").to_string(),
            Vec::new(),
        );
    };
    let asked: BTreeSet<&String> = inc.ask.iter().collect();
    for name in asked {
        inc.identity.set_attribute(name, req.field(name));
    }
    let req_raw = inc.req.clone();
    let clear = vec![pool.federation_cookie(&cookie_name(&inc.identity.login), "", 0)];
    identity::sign_in(pool, ready, req, up, inc.identity, &req_raw, clear).await
}

/// Shows the attribute page for a new user: first with an explanation, then (after a submit
/// that still has problems) with every problem at once.
fn ask_for_attributes(
    pool: &Pool,
    req: &Req<'_>,
    identity: Identity,
    ask: Vec<String>,
    req_raw: &str,
    errors: super::pages::form::FormErrors,
) -> Response<Body> {
    let status = if req.field("challenge").is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let inc = Incomplete {
        identity,
        ask,
        req: req_raw.to_string(),
        exp: now() + LOGIN_WINDOW_SECS,
    };
    // The login cookie stays (not cleared) until the page is complete: it binds the page.
    complete_form(pool, req, status, &inc, errors, Vec::new())
}

/// Claims as text for attribute mapping: strings as they are, numbers and booleans printed;
/// objects and arrays are not attribute values.
fn claim_text(claims: &Map<String, Value>, claim: &str) -> Option<String> {
    match claims.get(claim)? {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
