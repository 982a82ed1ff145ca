//! Hosted pages: server-rendered with minijinja (auto-escaping every value), no JavaScript,
//! a strict Content-Security-Policy, and a CSRF token (`csrf_token`, an HMAC of a random
//! cookie) on every form. Templates are embedded; any of them can be replaced from
//! `pool.ui.templates_dir`. This module also owns the pool's browser session and the sealed
//! login request (`req`) that carries an authorization request through the pages.

pub mod form;
pub mod login;
pub mod password;
pub mod signup;

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Response, StatusCode, header};
use minijinja::Environment;
use serde::{Deserialize, Serialize};

use super::clients::Clients;
use super::config::UiConfig;
use super::i18n::{self, Lang};
use super::store::User;
use super::{Pool, PoolError, Ready, Req, now};
use crate::http::body::{self, Body};

const CSRF_COOKIE: &str = "portcullis_pool_csrf";
pub const SESSION_COOKIE: &str = "portcullis_pool_session";
/// Carries the `amr` of a first factor that was not the pool's password (a provider's sign-in)
/// to the second-factor pages, which otherwise count the first factor as `pwd`.
const FIRST_FACTOR_COOKIE: &str = "portcullis_pool_first";
/// As long as the second-factor pages wait for the code.
const FIRST_FACTOR_SECONDS: i64 = 600;

/// Names the user this browser just signed up (sealed, [`SIGNED_UP_SECONDS`]): confirming the
/// code in the same browser signs that user in.
const SIGNED_UP_COOKIE: &str = "portcullis_pool_signed_up";
/// As long as a sign-up's confirmation signs in automatically.
const SIGNED_UP_SECONDS: i64 = 3600;

/// The first factor of a sign-in waiting for its second (sealed into [`FIRST_FACTOR_COOKIE`]).
#[derive(Serialize, Deserialize)]
struct FirstFactor {
    sub: String,
    amr: Vec<String>,
    exp: i64,
}

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("signup.html", include_str!("../templates/signup.html")),
    ("confirm.html", include_str!("../templates/confirm.html")),
    (
        "forgot_password.html",
        include_str!("../templates/forgot_password.html"),
    ),
    (
        "reset_password.html",
        include_str!("../templates/reset_password.html"),
    ),
    (
        "change_password.html",
        include_str!("../templates/change_password.html"),
    ),
    ("message.html", include_str!("../templates/message.html")),
    ("mfa.html", include_str!("../templates/mfa.html")),
    (
        "mfa_setup.html",
        include_str!("../templates/mfa_setup.html"),
    ),
    (
        "mfa_recovery.html",
        include_str!("../templates/mfa_recovery.html"),
    ),
    ("passkeys.html", include_str!("../templates/passkeys.html")),
];
const POOL_CSS: &str = include_str!("../templates/pool.css");
/// The passkey pages' script (WebAuthn needs it); served same-origin so `script-src 'self'`.
const PASSKEYS_JS: &str = include_str!("../templates/passkeys.js");

pub struct Renderer {
    env: Environment<'static>,
    csp: HeaderValue,
    /// The CSP of the passkey pages: the same plus their own script and its `fetch`.
    csp_passkeys: HeaderValue,
    brand_css: Option<Vec<u8>>,
    logo: Option<(Vec<u8>, &'static str)>,
    title: String,
}

fn image_type(path: &std::path::Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        // SVG is served, but the CSP (`default-src 'none'`) keeps any script in it inert.
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

impl Renderer {
    pub fn new(ui: &UiConfig, clients: &Clients) -> Result<Renderer, PoolError> {
        let mut env = Environment::new();
        for (name, src) in TEMPLATES
            .iter()
            .chain(super::federation::TEMPLATES)
            .chain(super::console::TEMPLATES)
            .chain(super::account::TEMPLATES)
        {
            let override_src = ui
                .templates_dir
                .as_ref()
                .map(|d| d.join(name))
                .filter(|p| p.is_file());
            let source = match override_src {
                Some(p) => std::fs::read_to_string(&p)
                    .map_err(|e| PoolError::Templates(format!("{}: {e}", p.display())))?,
                None => src.to_string(),
            };
            env.add_template_owned(name.to_string(), source)
                .map_err(|e| PoolError::Templates(format!("{name}: {e}")))?;
        }
        // Every template is HTML, whatever its name: auto-escape all of them.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| PoolError::Assets(format!("{}: {e}", p.display())))
        };
        let brand_css = ui.css.as_deref().map(read).transpose()?;
        let logo = match &ui.logo {
            Some(p) => Some((read(p)?, image_type(p))),
            None => None,
        };
        // Forms post to ourselves and then redirect to a registered client; browsers check
        // form-action on that redirect too, so the clients' origins are listed.
        let mut form_action = String::from("'self'");
        for o in clients.redirect_origins() {
            form_action.push(' ');
            form_action.push_str(&o);
        }
        let csp = format!(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
        );
        let header = |v: &str| {
            HeaderValue::from_str(v).map_err(|_| {
                PoolError::Templates("client redirect origin is not a valid header value".into())
            })
        };
        Ok(Renderer {
            env,
            csp_passkeys: header(&format!("{csp}; script-src 'self'; connect-src 'self'"))?,
            csp: header(&csp)?,
            brand_css,
            logo,
            title: ui.title.clone(),
        })
    }

    pub fn asset(&self, sub: &str) -> Response<Body> {
        let (bytes, ct): (Vec<u8>, &'static str) = match sub {
            "/assets/pool.css" => (POOL_CSS.as_bytes().to_vec(), "text/css; charset=utf-8"),
            "/assets/passkeys.js" => (
                PASSKEYS_JS.as_bytes().to_vec(),
                "text/javascript; charset=utf-8",
            ),
            "/assets/brand.css" => match &self.brand_css {
                Some(b) => (b.clone(), "text/css; charset=utf-8"),
                None => return plain(StatusCode::NOT_FOUND, "not found\n"),
            },
            _ => match &self.logo {
                Some((b, ct)) => (b.clone(), ct),
                None => return plain(StatusCode::NOT_FOUND, "not found\n"),
            },
        };
        let mut r = Response::new(body::full(bytes));
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'self'"),
        );
        r
    }

    /// Renders a template into a response, adding the CSRF cookie when it is new.
    pub fn render(
        &self,
        pool: &Pool,
        req: &Req<'_>,
        status: StatusCode,
        template: &str,
        heading_key: &str,
        mut page: Page,
    ) -> Response<Body> {
        let (csrf_token, set_cookie) = pool.csrf_for(req);
        if let Some(c) = set_cookie {
            page.cookies.push(c);
        }
        if let Some(l) = Lang::parse(req.param("lang")) {
            page.cookies.push(i18n::lang_cookie(l, pool.secure));
        }
        let ctx = minijinja::context! {
            t => i18n::all(req.lang),
            lang => req.lang.code(),
            title => &self.title,
            heading => i18n::t(req.lang, heading_key),
            logo => self.logo.is_some(),
            brand_css => self.brand_css.is_some(),
            base => &pool.base,
            page => template.trim_end_matches(".html"),
            csrf_token => csrf_token,
            q => page.query_suffix(),
            errors => &page.errors,
            notice => &page.notice,
            values => &page.values,
            fields => &page.fields,
            self_signup => pool.cfg.self_signup,
            password_rules => password_rules(pool, req.lang),
            challenge => &page.challenge,
            message => &page.message,
            user => &page.user,
            mfa => pool.cfg.mfa != super::config::MfaMode::Off,
            passkeys => pool.cfg.passkeys,
            extra => &page.extra,
            federated => pool.federation.buttons(&pool.base, &page.req, req.lang),
            data => &page.data,
            lang_links => i18n::switch_links(req.parts.uri.path(), req.parts.uri.query(), req.lang),
            app => pool.app_home(),
            ferr => page.form.by_field(),
            summary => page.form.summary(&page.errors),
        };
        let html = match self.env.get_template(template).and_then(|t| t.render(ctx)) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(template, error = %e, request_id = req.rid, "page template failed");
                return crate::error::RequestError::Internal("template".into())
                    .render(req.rid, false);
            }
        };
        let mut r = Response::new(body::full(html));
        *r.status_mut() = status;
        self.secure_headers(&mut r, "text/html; charset=utf-8");
        if pool.cfg.passkeys && matches!(template, "login.html" | "passkeys.html") {
            r.headers_mut()
                .insert(header::CONTENT_SECURITY_POLICY, self.csp_passkeys.clone());
        }
        for c in page.cookies {
            if let Ok(v) = HeaderValue::from_str(&c) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        r
    }

    fn secure_headers(&self, r: &mut Response<Body>, ct: &'static str) {
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        // Codes and states travel in URLs: never leak them to other sites.
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }

    /// A page with only a heading, a message and a link back to sign-in.
    pub fn message(
        &self,
        pool: &Pool,
        req: &Req<'_>,
        status: StatusCode,
        heading: &str,
        message: &str,
    ) -> Response<Body> {
        // A request that no longer opens (expired, forged) is not carried on: the link then
        // leads back to the application, which starts again.
        let carried = match pool.open_request(req) {
            Ok(Some(_)) => req.value("req").to_string(),
            _ => String::new(),
        };
        let page = Page {
            message: i18n::t(req.lang, message).to_string(),
            req: carried,
            ..Page::default()
        };
        self.render(pool, req, status, "message.html", heading, page)
    }
}

pub(crate) fn password_rules(pool: &Pool, lang: Lang) -> String {
    let p = &pool.cfg.password_policy;
    let mut rules = vec![i18n::fill(
        i18n::t(lang, "rule_min"),
        &[("n", &p.min_length.to_string())],
    )];
    for (on, key) in [
        (p.require_lowercase, "rule_lower"),
        (p.require_uppercase, "rule_upper"),
        (p.require_digits, "rule_digit"),
        (p.require_symbols, "rule_symbol"),
    ] {
        if on {
            rules.push(i18n::t(lang, key).to_string());
        }
    }
    rules.join(if lang == Lang::Ja { "、" } else { ", " })
}

/// What a page shows besides the fixed texts.
#[derive(Default)]
pub struct Page {
    /// Messages about the whole form (shown first in the list at the top).
    pub errors: Vec<String>,
    /// Problems of single fields: next to each field, and listed at the top by label.
    pub form: form::FormErrors,
    pub notice: String,
    pub values: BTreeMap<String, String>,
    pub fields: Vec<Field>,
    pub challenge: String,
    pub message: String,
    pub user: String,
    /// Page-specific data of the multi-factor pages (QR code, recovery codes, passkeys).
    pub extra: serde_json::Value,
    /// The sealed login request, carried in every link and form action.
    pub req: String,
    /// Anything else a page shows (the admin console's tables), as `data` in templates.
    pub data: serde_json::Value,
    pub cookies: Vec<String>,
}

impl Page {
    fn query_suffix(&self) -> String {
        if self.req.is_empty() {
            String::new()
        } else {
            format!(
                "?req={}",
                url::form_urlencoded::byte_serialize(self.req.as_bytes()).collect::<String>()
            )
        }
    }
}

#[derive(Serialize)]
pub struct Field {
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub autocomplete: &'static str,
    pub required: bool,
    pub value: String,
}

pub use super::web::{redirect, text as plain};

pub fn cookie_value<'a>(req: &'a Req, name: &str) -> Option<&'a str> {
    req.parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The pool session a response belongs to: the one it starts (a `Set-Cookie` among
/// `set_cookies`), else the browser's.
pub fn session_id<'a>(req: &'a Req, set_cookies: &'a [String]) -> Option<&'a str> {
    let started = set_cookies.iter().find_map(|c| {
        let (pair, _) = c.split_once(';').unwrap_or((c, ""));
        let (k, v) = pair.split_once('=')?;
        (k == SESSION_COOKIE && !v.is_empty()).then_some(v)
    });
    started.or_else(|| cookie_value(req, SESSION_COOKIE))
}

/// An authorization request waiting for the user to sign in, sealed (AEAD) into `req`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub scope: String,
    pub code_challenge: Option<String>,
    pub exp: i64,
    /// The client asked for a second factor (`acr_values` naming `mfa`, as the proxy's
    /// step-up does): the sign-in is not complete without one, and a user who has none is
    /// offered to set one up on the way, whatever `pool.mfa` says.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mfa: bool,
}

/// A `req` parameter that is forged, corrupt or expired.
#[derive(Debug, Clone, Copy)]
pub struct InvalidRequest;

/// A temporary-password sign-in waiting for the new password, sealed into `challenge`.
#[derive(Debug, Serialize, Deserialize)]
struct Challenge {
    sub: String,
    exp: i64,
}

impl Pool {
    pub fn cookie(&self, name: &str, value: &str, max_age: i64) -> String {
        self.build_cookie(name, value, max_age)
    }

    fn csrf_token(&self, cookie: &str) -> String {
        crate::session::keyring::hex(
            &ring::hmac::sign(&self.csrf_key, cookie.as_bytes()).as_ref()[..20],
        )
    }

    /// The token for this browser's CSRF cookie, and a Set-Cookie when the cookie is new.
    fn csrf_for(&self, req: &Req<'_>) -> (String, Option<String>) {
        match cookie_value(req, CSRF_COOKIE) {
            Some(c) if c.len() == 32 && c.bytes().all(|b| b.is_ascii_hexdigit()) => {
                (self.csrf_token(c), None)
            }
            _ => {
                let c = self.sealer.random_hex(16);
                (
                    self.csrf_token(&c),
                    Some(self.cookie(CSRF_COOKIE, &c, 86_400)),
                )
            }
        }
    }

    /// Double-submit check: the form's `csrf_token` must be the HMAC of the browser's cookie.
    pub fn csrf_ok(&self, req: &Req<'_>) -> bool {
        let Some(c) = cookie_value(req, CSRF_COOKIE) else {
            return false;
        };
        let want = self.csrf_token(c);
        crate::pool::ct_eq(want.as_bytes(), req.field("csrf_token").as_bytes())
    }

    pub fn csrf_failed(&self, req: &Req<'_>) -> Response<Body> {
        super::web::PageError::Csrf.render(self, req)
    }

    pub fn seal_request(&self, a: &AuthRequest) -> String {
        let json = serde_json::to_vec(a).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(self.sealer.seal(b"pool-authreq", &json))
    }

    /// Opens `req`: `Ok(None)` when absent, `Err` when forged or expired.
    pub fn open_request(&self, req: &Req<'_>) -> Result<Option<AuthRequest>, InvalidRequest> {
        self.open_request_raw(req.value("req"))
    }

    /// Opens a sealed `req` value: `Ok(None)` when empty, `Err` when forged or expired.
    pub fn open_request_raw(&self, raw: &str) -> Result<Option<AuthRequest>, InvalidRequest> {
        if raw.is_empty() {
            return Ok(None);
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| InvalidRequest)?;
        let plain = self
            .sealer
            .open(b"pool-authreq", &bytes)
            .ok_or(InvalidRequest)?;
        let a: AuthRequest = serde_json::from_slice(&plain).map_err(|_| InvalidRequest)?;
        if a.exp < now() {
            Err(InvalidRequest)
        } else {
            Ok(Some(a))
        }
    }

    pub fn seal_challenge(&self, sub: &str) -> String {
        let json = serde_json::to_vec(&Challenge {
            sub: sub.to_string(),
            exp: now() + 600,
        })
        .unwrap_or_default();
        URL_SAFE_NO_PAD.encode(self.sealer.seal(b"pool-challenge", &json))
    }

    pub fn open_challenge(&self, raw: &str) -> Option<String> {
        let plain = self
            .sealer
            .open(b"pool-challenge", &URL_SAFE_NO_PAD.decode(raw).ok()?)?;
        let c: Challenge = serde_json::from_slice(&plain).ok()?;
        (c.exp >= now()).then_some(c.sub)
    }

    /// The user of this browser's pool session, when it is live and the user may sign in.
    pub async fn session_user(&self, ready: &Ready, req: &Req<'_>) -> Option<(User, i64)> {
        let id = cookie_value(req, SESSION_COOKIE)?;
        let (sub, auth_time) = ready.store.web_session(id, now()).await.ok()??;
        let user = ready.store.user_by_sub(&sub).await.ok()??;
        (user.status == super::store::UserStatus::Confirmed).then_some((user, auth_time))
    }

    /// A successful password sign-in: the second factor when the pool asks for one
    /// (`pool.mfa`), else start a pool session and answer the waiting authorization request
    /// with a code, or show "signed in" when there was none.
    pub async fn finish_sign_in(
        &self,
        ready: &Ready,
        req: &Req<'_>,
        user: &User,
        areq: Option<AuthRequest>,
    ) -> Response<Body> {
        let amr = super::mfa::amr(super::mfa::PWD);
        self.finish_sign_in_as(ready, req, user, areq, &amr).await
    }

    /// [`Pool::finish_sign_in`] for a first factor other than the pool's password: a sign-in
    /// through an identity provider has `amr` `fed` and the provider's own values, never `pwd`.
    pub async fn finish_sign_in_as(
        &self,
        ready: &Ready,
        req: &Req<'_>,
        user: &User,
        areq: Option<AuthRequest>,
        amr: &[String],
    ) -> Response<Body> {
        // No session exists until every factor the pool asks for has been shown.
        let gated = match super::mfa::gate(self, ready, req, user).await {
            Some(r) => Some(r),
            None => self.step_up_gate(req, user, areq.as_ref(), amr),
        };
        if let Some(mut r) = gated {
            // The second-factor pages learn how the first factor was shown (a password's
            // sign-in clears what an earlier provider's sign-in left).
            let cookie = if amr.iter().any(|a| a == "pwd") {
                self.cookie(FIRST_FACTOR_COOKIE, "", 0)
            } else {
                let first = FirstFactor {
                    sub: user.sub.clone(),
                    amr: amr.to_vec(),
                    exp: now() + FIRST_FACTOR_SECONDS,
                };
                let json = serde_json::to_vec(&first).unwrap_or_default();
                let sealed = URL_SAFE_NO_PAD.encode(self.sealer.seal(b"pool-first-factor", &json));
                self.cookie(FIRST_FACTOR_COOKIE, &sealed, FIRST_FACTOR_SECONDS)
            };
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            return r;
        }
        self.start_session(ready, req, user, areq, amr, Vec::new())
            .await
    }

    /// The cookie that marks this browser as the one that signed `sub` up.
    pub fn signed_up_cookie(&self, sub: &str) -> String {
        let mark = FirstFactor {
            sub: sub.to_string(),
            amr: Vec::new(),
            exp: now() + SIGNED_UP_SECONDS,
        };
        let json = serde_json::to_vec(&mark).unwrap_or_default();
        let sealed = URL_SAFE_NO_PAD.encode(self.sealer.seal(b"pool-signed-up", &json));
        self.cookie(SIGNED_UP_COOKIE, &sealed, SIGNED_UP_SECONDS)
    }

    /// Whether this browser signed `sub` up (within [`SIGNED_UP_SECONDS`]).
    pub fn signed_up_here(&self, req: &Req<'_>, sub: &str) -> bool {
        cookie_value(req, SIGNED_UP_COOKIE)
            .and_then(|raw| URL_SAFE_NO_PAD.decode(raw).ok())
            .and_then(|sealed| self.sealer.open(b"pool-signed-up", &sealed))
            .and_then(|plain| serde_json::from_slice::<FirstFactor>(&plain).ok())
            .is_some_and(|m| m.sub == sub && m.exp >= now())
    }

    /// A client that asked for a second factor (a step-up, [`AuthRequest::mfa`]) from a user
    /// whose sign-in has none and who has no TOTP (else [`super::mfa::gate`] asked for it):
    /// set-up now, then on to the app. When the pool offers no second factor at all, a page
    /// that says so; handing out a code would only send the browser round the same loop.
    fn step_up_gate(
        &self,
        req: &Req<'_>,
        user: &User,
        areq: Option<&AuthRequest>,
        amr: &[String],
    ) -> Option<Response<Body>> {
        let a = areq.filter(|a| a.mfa)?;
        if amr.iter().any(|x| x == "mfa") {
            return None;
        }
        if self.cfg.mfa == super::config::MfaMode::Off {
            return Some(self.pages.message(
                self,
                req,
                StatusCode::FORBIDDEN,
                "fl_step_up_title",
                "fl_step_up_unavailable",
            ));
        }
        let to = format!(
            "{}/mfa/setup?req={}",
            self.base,
            login::enc(&self.seal_request(a))
        );
        Some(redirect(&to, &[self.pending_cookie(&user.sub)]))
    }

    /// Where "continue to the app" leads when no authorization request is waiting: the root
    /// of the proxy's public origin (which signs in through the pool and comes back).
    pub fn app_home(&self) -> String {
        self.clients
            .get("portcullis")
            .and_then(|c| c.post_logout_origin.clone())
            .map(|o| format!("{}/", o.trim_end_matches('/')))
            .unwrap_or_else(|| "/".to_string())
    }

    /// The `amr` of a sign-in the second-factor pages complete: they name the first factor
    /// `pwd`; when it was a provider's sign-in of this user (the sealed first-factor cookie),
    /// its `amr` (`fed`, …) takes the place of `pwd`.
    fn with_first_factor(&self, req: &Req<'_>, user: &User, amr: &[String]) -> Vec<String> {
        let first = amr
            .iter()
            .any(|a| a == "pwd")
            .then(|| cookie_value(req, FIRST_FACTOR_COOKIE))
            .flatten()
            .and_then(|raw| URL_SAFE_NO_PAD.decode(raw).ok())
            .and_then(|sealed| self.sealer.open(b"pool-first-factor", &sealed))
            .and_then(|plain| serde_json::from_slice::<FirstFactor>(&plain).ok())
            .filter(|f| f.sub == user.sub && f.exp >= now());
        let Some(first) = first else {
            return amr.to_vec();
        };
        let mut out = first.amr;
        for a in amr {
            if a != "pwd" && !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    }

    /// Starts a pool session authenticated by `amr` (RFC 8176), then answers.
    pub async fn start_session(
        &self,
        ready: &Ready,
        req: &Req<'_>,
        user: &User,
        areq: Option<AuthRequest>,
        amr: &[String],
        mut cookies: Vec<String>,
    ) -> Response<Body> {
        let amr = &self.with_first_factor(req, user, amr);
        match self.create_session(ready, req, user, amr).await {
            Ok((cookie, t)) => {
                cookies.push(cookie);
                self.answer_sign_in(ready, req, user, areq, t, amr, cookies)
                    .await
            }
            Err(r) => r,
        }
    }

    /// Stores a new pool session; the Set-Cookie for it and its start time.
    pub async fn create_session(
        &self,
        ready: &Ready,
        req: &Req<'_>,
        user: &User,
        amr: &[String],
    ) -> Result<(String, i64), Response<Body>> {
        let amr = &self.with_first_factor(req, user, amr);
        let id = self.sealer.random_hex(32);
        let t = now();
        let max_age = self.session_lifetime.as_secs() as i64;
        if let Err(e) = ready.store.record_sign_in(&user.sub, t).await {
            tracing::warn!(error = %e, request_id = req.rid, "cannot record the sign-in time");
        }
        let stored = match ready
            .store
            .create_web_session(&id, &user.sub, t, t + max_age)
            .await
        {
            Ok(()) => ready.store.set_session_amr(&id, amr, t + max_age).await,
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            tracing::error!(error = %e, request_id = req.rid, "cannot store pool session");
            return Err(self.pages.message(
                self,
                req,
                StatusCode::SERVICE_UNAVAILABLE,
                "error_title",
                "unavailable",
            ));
        }
        super::account::record_device(ready, req, &id, &user.sub, t).await;
        let user_agent = req
            .parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        super::events::signed_in(
            self.cfg.clone(),
            ready.store.clone(),
            user.clone(),
            user_agent.to_string(),
            req.ip,
            req.lang,
        );
        // Every factor asked for was right: the failure count of the user starts again.
        let _ = ready
            .store
            .clear_attempts(&login::user_key(&user.username))
            .await;
        tracing::info!(request_id = req.rid, sub = %user.sub, amr = %amr.join(" "), "pool.event" = "sign_in", "user signed in");
        crate::pool::audit::by_user_with(
            &ready.store,
            user,
            "sign_in",
            serde_json::json!({"amr": amr}),
        )
        .await;
        Ok((self.cookie(SESSION_COOKIE, &id, max_age), t))
    }

    /// Answers a signed-in browser: a code for the waiting authorization request, or the
    /// "signed in" page.
    #[allow(clippy::too_many_arguments)]
    pub async fn answer_sign_in(
        &self,
        ready: &Ready,
        req: &Req<'_>,
        user: &User,
        areq: Option<AuthRequest>,
        auth_time: i64,
        amr: &[String],
        cookies: Vec<String>,
    ) -> Response<Body> {
        match areq {
            Some(a) => {
                super::op::issue_code(self, ready, req, &a, user, auth_time, amr, cookies).await
            }
            // Sent here by the account home (`account`) or the admin console: back to it.
            None if cookie_value(req, super::console::NEXT_COOKIE).is_some() => {
                let mut cookies = cookies;
                cookies.push(self.cookie(super::console::NEXT_COOKIE, "", 0));
                let next = cookie_value(req, super::console::NEXT_COOKIE);
                let to = if next == Some("account") {
                    "account"
                } else {
                    "admin"
                };
                redirect(&format!("{}/{to}", self.base), &cookies)
            }
            None => {
                let page = Page {
                    user: user.username.clone(),
                    cookies,
                    ..Page::default()
                };
                self.pages.render(
                    self,
                    req,
                    StatusCode::OK,
                    "message.html",
                    "signed_in_title",
                    page,
                )
            }
        }
    }
}
