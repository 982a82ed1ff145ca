//! The account home at `{issuer}/account`: a signed-in user's own place — profile (the
//! attributes the pool lets users write; a new email address is verified by a code before it
//! replaces the old one), password, second factors (TOTP, recovery codes, passkeys), linked
//! providers, sessions (sign out one or all others) and deleting the account.
//!
//! Every page here needs a live pool session (anonymous browsers go to the sign-in page and come
//! back); every form is CSRF-checked; every id a form names (a session, a passkey, a provider) is
//! looked up among the signed-in user's own, never taken on trust. Destructive actions ask for
//! confirmation first; deleting the account also asks for the password (or, for a user without
//! one, a provider sign-in of the last few minutes).

pub mod texts;

use http::{Method, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::i18n::{self, t};
use super::pages::{Page, SESSION_COOKIE, cookie_value};
use super::store::{CodeCheck, SessionRow, StoreError, User, sessions::sid_of_session};
use super::web::{PageError, PageResult, redirect};
use super::{Pool, Ready, Req, attributes, now, password};
use crate::http::body::Body;

/// Where the account home sends the user back to (checked like every redirect), kept across
/// the account pages and a sign-in detour.
const RD_COOKIE: &str = "portcullis_pool_account_rd";
/// How long a new email address waits for its code.
const EMAIL_CODE_SECS: i64 = 3600;
/// The purpose of the code that verifies a new email address.
const EMAIL_PURPOSE: &str = "email_change";
/// The purpose of the code that lets a user without a password set one.
const SET_PASSWORD_PURPOSE: &str = "set_password";
/// How recent a provider sign-in must be to delete an account that has no password.
const REAUTH_SECS: i64 = 600;
/// Attributes the account home never lets users write (verification flags, links, ids).
const NEVER_WRITABLE: &[&str] = &[
    "email_verified",
    "phone_number_verified",
    "identities",
    "sub",
    "updated_at",
];

/// The account home's templates (overridable from `pool.ui.templates_dir` like the others).
pub const TEMPLATES: &[(&str, &str)] =
    &[("account.html", include_str!("../templates/account.html"))];

/// Records the device (User-Agent) and address that started the pool session `id`, for the
/// session list. Best effort: a failure is logged and the sign-in goes on.
pub async fn record_device(ready: &Ready, req: &Req<'_>, id: &str, sub: &str, t: i64) {
    let ua = req
        .parts
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Err(e) = ready
        .store
        .record_session_info(id, sub, ua, &req.ip.to_string(), t)
        .await
    {
        tracing::warn!(error = %e, request_id = req.rid, "cannot record the device of a pool session");
    }
}

/// Answers `{issuer}/account` and the forms under it.
pub async fn handle(pool: &Pool, ready: &Ready, req: &Req<'_>, path: &str) -> Response<Body> {
    let post = req.parts.method == Method::POST;
    let r = async {
        let Some((user, auth_time)) = pool.session_user(ready, req).await else {
            return Err(PageError::SignInRequired {
                next: Some("account"),
            });
        };
        let me = Me {
            user,
            auth_time,
            sid: cookie_value(req, SESSION_COOKIE)
                .map(sid_of_session)
                .unwrap_or_default(),
        };
        if post {
            pool.verified_form(req)?;
        }
        match (path, post) {
            ("/account", false) => show(pool, ready, req, &me, Notice::from_query(req)).await,
            ("/account/reauth", false) => reauth(pool, req),
            ("/account/profile", true) => profile(pool, ready, req, &me).await,
            ("/account/verify-email", true) => verify_email(pool, ready, req, &me).await,
            ("/account/passkeys/rename", true) => rename_passkey(pool, ready, req, &me).await,
            ("/account/passkeys/remove", true) => remove_passkey(pool, ready, req, &me).await,
            ("/account/sessions/end", true) => end_session(pool, ready, req, &me).await,
            ("/account/sessions/end-others", true) => end_others(pool, ready, req, &me).await,
            ("/account/providers/unlink", true) => unlink(pool, ready, req, &me).await,
            ("/account/delete", true) => delete(pool, ready, req, &me).await,
            ("/account/password/code", true) => password_code(pool, ready, req, &me).await,
            ("/account/password/set", true) => set_password(pool, ready, req, &me).await,
            _ => Ok(crate::error::RequestError::NotFound.render(req.rid, false)),
        }
    }
    .await;
    r.unwrap_or_else(|e| e.render(pool, req))
}

/// The signed-in user of an account request.
struct Me {
    user: User,
    auth_time: i64,
    /// The `sid` of this browser's pool session.
    sid: String,
}

/// What the home page says on top (after a form redirected back to it).
#[derive(Default)]
struct Notice {
    notice: String,
    errors: Vec<String>,
}

impl Notice {
    fn from_query(req: &Req<'_>) -> Notice {
        let key = req.param("notice");
        let notice = if texts::NOTICES.contains(&key) {
            t(req.lang, key).to_string()
        } else {
            String::new()
        };
        Notice {
            notice,
            errors: Vec::new(),
        }
    }

    fn error(req: &Req<'_>, key: &str) -> Notice {
        Notice {
            notice: String::new(),
            errors: vec![t(req.lang, key).to_string()],
        }
    }
}

/// Back to the home page with a notice (Post/Redirect/Get).
fn home(pool: &Pool, notice: &str) -> PageResult {
    Ok(redirect(
        &format!("{}/account?notice={notice}", pool.base),
        &[],
    ))
}

/// The app URL to go back to: `rd` of this request or the one kept from earlier, checked like
/// every redirect (relative paths are on the app's origin).
fn back_to_app(pool: &Pool, req: &Req<'_>) -> Option<String> {
    let rd = match req.param("rd") {
        "" => {
            let kept = cookie_value(req, RD_COOKIE)?;
            url::form_urlencoded::parse(format!("rd={kept}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())?
        }
        rd => rd.to_string(),
    };
    let target = crate::auth::redirect::safe_target(
        Some(&rd),
        &pool.app_origin,
        &pool.allowed_redirect_origins,
    );
    Some(if target.starts_with('/') {
        format!("{}{target}", pool.app_origin)
    } else {
        target
    })
}

/// Which attributes this user may write here: the ones asked for at sign-up.
fn writable(pool: &Pool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in pool
        .cfg
        .required_attributes
        .iter()
        .chain(&pool.cfg.signup_attributes)
    {
        if !NEVER_WRITABLE.contains(&a.as_str()) && !out.contains(a) {
            out.push(a.clone());
        }
    }
    out
}

fn email_verified(u: &User) -> bool {
    matches!(u.attributes.get("email_verified"), Some(Value::Bool(true)))
        || matches!(u.attributes.get("email_verified"), Some(Value::String(s)) if s == "true")
}

fn has_password(u: &User) -> bool {
    !u.password_hash.is_empty()
}

/// A short name for a device from its User-Agent ("Firefox on Windows").
fn device(ua: &str) -> String {
    if ua.is_empty() {
        return String::new();
    }
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(k, _)| ua.contains(k))
    .map(|(_, v)| *v);
    let os = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(k, _)| ua.contains(k))
    .map(|(_, v)| *v);
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} · {o}"),
        (Some(b), None) => b.to_string(),
        (None, Some(o)) => o.to_string(),
        (None, None) => ua.chars().take(60).collect(),
    }
}

async fn show(pool: &Pool, ready: &Ready, req: &Req<'_>, me: &Me, top: Notice) -> PageResult {
    show_with(pool, ready, req, me, top, StatusCode::OK, None).await
}

/// The home page again with one problem on top.
async fn refuse(
    pool: &Pool,
    ready: &Ready,
    req: &Req<'_>,
    me: &Me,
    key: &str,
    status: StatusCode,
) -> PageResult {
    show_with(pool, ready, req, me, Notice::error(req, key), status, None).await
}

/// The home page; `confirm` asks to confirm one destructive action first.
async fn show_with(
    pool: &Pool,
    ready: &Ready,
    req: &Req<'_>,
    me: &Me,
    top: Notice,
    status: StatusCode,
    confirm: Option<Value>,
) -> PageResult {
    let u = &me.user;
    let lang = req.lang;
    let t0 = now();
    let profile: Vec<Value> = writable(pool)
        .iter()
        .filter(|a| a.as_str() != "email")
        .map(|a| {
            json!({
                "name": a,
                "label": i18n::attribute_label(lang, a),
                "value": u.attributes.get(a).and_then(Value::as_str).unwrap_or(""),
                "type": if a == "phone_number" { "tel" } else { "text" },
            })
        })
        .collect();
    let email_verified = email_verified(u);
    let pending_email = ready.store.pending(&u.sub, "email", t0).await?;
    let sessions: Vec<Value> = ready
        .store
        .sessions_of(&u.sub, t0)
        .await?
        .iter()
        .map(|s: &SessionRow| {
            let d = device(&s.user_agent);
            json!({
                "sid": s.sid,
                "device": if d.is_empty() { t(lang, "acct_unknown_device").to_string() } else { d },
                "address": s.address,
                "since": super::console::time(s.auth_time),
                "current": crate::pool::ct_eq(s.sid.as_bytes(), me.sid.as_bytes()),
            })
        })
        .collect();
    let passkeys: Vec<Value> = if pool.cfg.passkeys {
        ready
            .store
            .passkeys_of(&u.sub)
            .await?
            .iter()
            .map(|k| json!({ "id": k.id, "name": k.name, "created": super::console::time(k.created_at) }))
            .collect()
    } else {
        Vec::new()
    };
    let totp = ready.store.totp_secret(&u.sub).await?.is_some();
    let recovery_left = if totp {
        ready.store.recovery_codes_left(&u.sub).await?
    } else {
        0
    };
    let linked = ready.store.links_of(&u.sub).await?;
    let providers: Vec<Value> = pool
        .cfg
        .identity_providers
        .iter()
        .map(|p| {
            let name = &p.provider.name;
            let enc: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
            json!({
                "name": name,
                "display_name": p.provider.display_name,
                "linked": linked.iter().any(|(l, _)| l == name),
                "reauth": format!("{}/account/reauth?provider={enc}", pool.base),
            })
        })
        .collect();
    let email = u.email().unwrap_or("");
    let data = json!({
        "username": u.username,
        "email": email,
        "email_verified": email_verified,
        "email_writable": writable(pool).iter().any(|a| a == "email") || !email.is_empty(),
        "pending_email": pending_email,
        // A code from an emailed link, filled in (only the form's POST uses it).
        "code": digits(req.param("code")),
        "set_code": digits(req.param("set_code")),
        "profile": profile,
        "has_password": has_password(u),
        "may_set_password": !has_password(u) && email_verified && !email.is_empty(),
        "password_rules": super::pages::password_rules(pool, lang),
        "totp": totp,
        "recovery_left": recovery_left,
        "passkeys": passkeys,
        "providers": providers,
        "sessions": sessions,
        "others": sessions.iter().filter(|s| s["current"] != true).count(),
        "back": back_to_app(pool, req),
        "reauth_fresh": reauth_fresh(ready, req, me).await,
        "confirm": confirm,
    });
    let page = Page {
        notice: top.notice,
        errors: top.errors,
        user: u.username.clone(),
        data,
        cookies: rd_cookie(pool, req),
        ..Page::default()
    };
    Ok(pool
        .pages
        .render(pool, req, status, "account.html", "acct_title", page))
}

/// Keeps a checked `rd` of this request for the later account pages.
fn rd_cookie(pool: &Pool, req: &Req<'_>) -> Vec<String> {
    let rd = req.param("rd");
    if rd.is_empty() || rd.len() > 2048 {
        return Vec::new();
    }
    match back_to_app(pool, req) {
        Some(target) => {
            let enc: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
            vec![pool.build_cookie(RD_COOKIE, &enc, 86_400)]
        }
        None => Vec::new(),
    }
}

/// `GET /account/reauth?provider=NAME`: sign in at the provider again, then back here.
fn reauth(pool: &Pool, req: &Req<'_>) -> PageResult {
    let provider = req.param("provider");
    if !pool
        .cfg
        .identity_providers
        .iter()
        .any(|p| p.provider.name == provider)
    {
        return Err(PageError::BadRequest("invalid_request"));
    }
    let enc: String = url::form_urlencoded::byte_serialize(provider.as_bytes()).collect();
    Ok(redirect(
        &format!("{}/federation/start?provider={enc}", pool.base),
        &[pool.build_cookie(super::console::NEXT_COOKIE, "account", 900)],
    ))
}

/// Whether this session began with a provider's sign-in in the last [`REAUTH_SECS`].
async fn reauth_fresh(ready: &Ready, req: &Req<'_>, me: &Me) -> bool {
    if now() - me.auth_time > REAUTH_SECS {
        return false;
    }
    let Some(id) = cookie_value(req, SESSION_COOKIE) else {
        return false;
    };
    matches!(ready.store.session_amr(id).await, Ok(Some(amr)) if amr.iter().any(|a| a == "fed"))
}

/// `POST /account/profile`: the writable attributes; a new email address waits for its code.
async fn profile(pool: &Pool, ready: &Ready, req: &Req<'_>, me: &Me) -> PageResult {
    let u = &me.user;
    let names = writable(pool);
    let input: Vec<(String, String)> = names
        .iter()
        .filter(|n| n.as_str() != "email")
        .map(|n| (n.clone(), req.field(n).to_string()))
        .chain(
            Some(("email".to_string(), req.field("email").to_string()))
                .filter(|(_, v)| !v.trim().is_empty()),
        )
        .collect();
    let required: Vec<String> = pool
        .cfg
        .required_attributes
        .iter()
        .filter(|r| r.as_str() != "email")
        .cloned()
        .collect();
    let attrs = match attributes::validate(&input, &required, pool.cfg.default_phone_region) {
        Ok(a) => a,
        Err(errs) => {
            let top = Notice {
                notice: String::new(),
                errors: errs
                    .iter()
                    .map(|e| i18n::attribute_error(req.lang, e))
                    .collect(),
            };
            return show_with(pool, ready, req, me, top, StatusCode::BAD_REQUEST, None).await;
        }
    };
    let t0 = now();
    let mut next: Map<String, Value> = u.attributes.clone();
    for n in names.iter().filter(|n| n.as_str() != "email") {
        match attrs.get(n) {
            Some(v) => {
                if n == "phone_number" && next.get(n) != Some(v) {
                    next.insert("phone_number_verified".into(), Value::Bool(false));
                }
                next.insert(n.clone(), v.clone());
            }
            None => {
                next.remove(n);
            }
        }
    }
    if next != u.attributes {
        ready.store.set_attributes(&u.sub, &next, t0).await?;
        tracing::info!(request_id = req.rid, sub = %u.sub, "pool.event" = "profile_changed", "profile changed by its user");
    }
    let new_email = attrs.get("email").and_then(Value::as_str).unwrap_or("");
    let current = u.email().unwrap_or("");
    if !new_email.is_empty() && !new_email.eq_ignore_ascii_case(current) {
        if ready.store.user_by_email(new_email).await?.is_some() {
            // Held verified by someone else: the code could never be used; say so now.
            return refuse(
                pool,
                ready,
                req,
                me,
                "acct_email_taken",
                StatusCode::CONFLICT,
            )
            .await;
        }
        ready
            .store
            .put_pending(&u.sub, "email", new_email, t0 + EMAIL_CODE_SECS)
            .await?;
        send_code(pool, ready, req, u, new_email, EMAIL_PURPOSE).await?;
        return home(pool, "acct_email_code_sent");
    }
    home(pool, "acct_profile_saved")
}

/// Sends a one-hour code for `purpose` to `to` (the new address, or the verified one).
async fn send_code(
    pool: &Pool,
    ready: &Ready,
    req: &Req<'_>,
    u: &User,
    to: &str,
    purpose: &'static str,
) -> Result<(), PageError> {
    let t0 = now();
    let now_ms = t0.saturating_mul(1000);
    let sent = ready
        .store
        .record_failure(&format!("send:{}", u.sub), now_ms, now_ms - 3_600_000)
        .await?;
    if sent > super::delivery::SENDS_PER_HOUR {
        return Err(PageError::Forbidden("acct_too_many_codes"));
    }
    let code = super::delivery::generate_code();
    ready
        .store
        .put_code(&u.sub, purpose, &code, t0 + EMAIL_CODE_SECS)
        .await?;
    match &pool.cfg.delivery {
        super::config::Delivery::Log => {
            // Development only (pool.delivery = "log"): the code is deliberately logged.
            tracing::warn!(
                target: "portcullis::pool::delivery",
                delivery = "log",
                username = %super::audit::printable(&u.username),
                purpose,
                code = %code,
                "DEVELOPMENT ONLY one-time code (pool.delivery = \"log\"; use \"smtp\" in production)"
            );
        }
        super::config::Delivery::Smtp(smtp_cfg) => {
            // The purpose's email (title, link, code, expiry in words); the link opens the
            // account home with the code filled in, and only the form's POST uses it.
            let (kind, anchor) = if purpose == EMAIL_PURPOSE {
                (super::mail::Purpose::EmailChange, "code")
            } else {
                (super::mail::Purpose::Reset, "set_code")
            };
            let link = super::delivery::link(&pool.cfg, "/account", &[(anchor, &code)])
                .map_err(|e| PageError::Unavailable(e.to_string()))?;
            let expiry = i18n::duration_words(req.lang, EMAIL_CODE_SECS);
            let mail = pool
                .cfg
                .ui
                .mail
                .email(
                    kind,
                    req.lang,
                    &pool.cfg.ui.title,
                    &u.username,
                    &[
                        ("code", &code),
                        ("link", &link),
                        ("expiry", &expiry),
                        ("email", to),
                    ],
                )
                .map_err(PageError::Unavailable)?;
            super::smtp::send(smtp_cfg, to, &mail)
                .await
                .map_err(|e| PageError::Unavailable(e.to_string()))?;
        }
    }
    Ok(())
}

/// `POST /account/verify-email`: the code makes the waiting address the user's, verified.
async fn verify_email(pool: &Pool, ready: &Ready, req: &Req<'_>, me: &Me) -> PageResult {
    let u = &me.user;
    let t0 = now();
    let Some(new_email) = ready.store.pending(&u.sub, "email", t0).await? else {
        return home(pool, "acct_email_expired");
    };
    let check = ready
        .store
        .check_code(&u.sub, EMAIL_PURPOSE, req.field("code"), t0)
        .await?;
    if let Some(problem) = code_problem(check, "acct_email_expired") {
        if check != CodeCheck::Wrong {
            ready.store.drop_pending(&u.sub, "email").await?;
        }
        return refuse(pool, ready, req, me, problem, StatusCode::BAD_REQUEST).await;
    }
    let mut next = u.attributes.clone();
    next.insert("email".into(), Value::String(new_email));
    next.insert("email_verified".into(), Value::Bool(true));
    match ready.store.set_attributes(&u.sub, &next, t0).await {
        Ok(()) => {}
        Err(StoreError::Exists("email")) => {
            ready.store.drop_pending(&u.sub, "email").await?;
            return refuse(
                pool,
                ready,
                req,
                me,
                "acct_email_taken",
                StatusCode::CONFLICT,
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    }
    ready.store.drop_pending(&u.sub, "email").await?;
    tracing::info!(request_id = req.rid, sub = %u.sub, "pool.event" = "email_changed", "email address changed and verified by its user");
    home(pool, "acct_email_changed")
}

async fn rename_passkey(pool: &Pool, ready: &Ready, req: &Req<'_>, me: &Me) -> PageResult {
    let name = req.field("name").trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return refuse(
            pool,
            ready,
            req,
            me,
            "acct_passkey_name_bad",
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    if !ready
        .store
        .rename_passkey(&me.user.sub, req.field("id"), name)
        .await?
    {
        return Err(PageError::Forbidden("acct_not_yours"));
    }
    home(pool, "acct_passkey_renamed")
}

/// The confirmation step of a destructive form: the page again, with the action to confirm.
async fn confirm_first(
    pool: &Pool,
    ready: &Ready,
    req: &Req<'_>,
    me: &Me,
    action: &str,
    question: String,
    fields: Value,
) -> PageResult {
    let c = json!({
        "action": format!("{}{action}", pool.base),
        "question": question,
        "fields": fields,
        "password": action == "/account/delete" && has_password(&me.user),
    });
    show_with(
        pool,
        ready,
        req,
        me,
        Notice::default(),
        StatusCode::OK,
        Some(c),
    )
    .await
}

fn confirmed(req: &Req<'_>) -> bool {
    req.field("confirm") == "yes"
}

async fn remove_passkey(pool: &Pool, ready: &Ready, req: &Req<'_>, me: &Me) -> PageResult {
    let id = req.field("id");
    let keys = ready.store.passkeys_of(&me.user.sub).await?;
    let Some(key) = keys.iter().find(|k| k.id == id) else {
        return Err(PageError::Forbidden("acct_not_yours"));
    };
    if !confirmed(req) {
        let q = i18n::fill(t(req.lang, "acct_confirm_passkey"), &[("name", &key.name)]);
        return confirm_first(
            pool,
            ready,
            req,
            me,
            "/account/passkeys/remove",
            q,
            json!({ "id": id }),
        )
        .await;
    }
    let others = keys.len() > 1;
    if !has_password(&me.user) && !others && ready.store.links_of(&me.user.sub).await?.is_empty() {
        return Err(PageError::Forbidden("acct_last_sign_in"));
    }
    ready.store.remove_passkey(&me.user.sub, id).await?;
    tracing::info!(request_id = req.rid, sub = %me.user.sub, "pool.event" = "passkey_removed", "passkey removed by its user");
    crate::pool::events::factors_changed(
        &pool.cfg,
        &ready.store,
        &me.user,
        crate::pool::events::FactorChange::PasskeyRemoved,
        req.lang,
    )
    .await;
    home(pool, "acct_passkey_removed")
}

async fn end_session(pool: &Pool, ready: &Ready, req: &Req<'_>, me: &Me) -> PageResult {
    let sid = req.field("session");
    if !ready.store.end_session_of(&me.user.sub, sid).await? {
        return Err(PageError::Forbidden("acct_not_yours"));
    }
    tracing::info!(request_id = req.rid, sub = %me.user.sub, "pool.event" = "session_ended", "a session ended by its user");
    if crate::pool::ct_eq(sid.as_bytes(), me.sid.as_bytes()) {
        // This browser's own session: it is signed out now.
        return Ok(redirect(
            &format!("{}/login", pool.base),
            &[pool.build_cookie(SESSION_COOKIE, "", 0)],
        ));
    }
    home(pool, "acct_session_ended")
}

async fn end_others(pool: &Pool, ready: &Ready, req: &Req<'_>, me: &Me) -> PageResult {
    let mut n = 0;
    for s in ready.store.sessions_of(&me.user.sub, now()).await? {
        if s.sid != me.sid && ready.store.end_session_of(&me.user.sub, &s.sid).await? {
            n += 1;
        }
    }
    tracing::info!(request_id = req.rid, sub = %me.user.sub, ended = n, "pool.event" = "other_sessions_ended", "the user's other sessions ended by its user");
    home(pool, "acct_others_ended")
}

async fn unlink(pool: &Pool, ready: &Ready, req: &Req<'_>, me: &Me) -> PageResult {
    let provider = req.field("provider");
    let links = ready.store.links_of(&me.user.sub).await?;
    if !links.iter().any(|(p, _)| p == provider) {
        return Err(PageError::Forbidden("acct_not_yours"));
    }
    // Another way to sign in must remain: a password, a passkey or another provider.
    let other_link = links.iter().any(|(p, _)| p != provider);
    let passkey = pool.cfg.passkeys && !ready.store.passkeys_of(&me.user.sub).await?.is_empty();
    if !has_password(&me.user) && !other_link && !passkey {
        return refuse(
            pool,
            ready,
            req,
            me,
            "acct_last_sign_in",
            StatusCode::CONFLICT,
        )
        .await;
    }
    if !confirmed(req) {
        let display = pool
            .cfg
            .identity_providers
            .iter()
            .find(|p| p.provider.name == provider)
            .map(|p| p.provider.display_name.clone())
            .unwrap_or_else(|| provider.to_string());
        let q = i18n::fill(t(req.lang, "acct_confirm_unlink"), &[("name", &display)]);
        return confirm_first(
            pool,
            ready,
            req,
            me,
            "/account/providers/unlink",
            q,
            json!({ "provider": provider }),
        )
        .await;
    }
    ready.store.unlink(&me.user.sub, provider).await?;
    // The `identities` claim follows the links.
    let mut next = me.user.attributes.clone();
    if let Some(Value::Array(ids)) = next.get_mut("identities") {
        ids.retain(|i| i.get("providerName").and_then(Value::as_str) != Some(provider));
    }
    if next != me.user.attributes {
        ready
            .store
            .set_attributes(&me.user.sub, &next, now())
            .await?;
    }
    tracing::info!(request_id = req.rid, sub = %me.user.sub, provider, "pool.event" = "provider_unlinked", "identity provider unlinked by its user");
    home(pool, "acct_unlinked")
}

/// `POST /account/password/code`: a user without a password asks for a code at their verified
/// address (never through "forgot password", which refuses provider-only users).
async fn password_code(pool: &Pool, ready: &Ready, req: &Req<'_>, me: &Me) -> PageResult {
    let u = &me.user;
    let Some(to) = u.email().filter(|_| email_verified(u) && !has_password(u)) else {
        return Err(PageError::Forbidden("acct_set_password_refused"));
    };
    send_code(pool, ready, req, u, to, SET_PASSWORD_PURPOSE).await?;
    home(pool, "acct_password_code_sent")
}

/// `POST /account/password/set`: the code from the verified address, or a provider sign-in of
/// the last [`REAUTH_SECS`], lets a user without a password choose one.
async fn set_password(pool: &Pool, ready: &Ready, req: &Req<'_>, me: &Me) -> PageResult {
    let u = &me.user;
    if has_password(u) {
        return Err(PageError::Forbidden("acct_set_password_refused"));
    }
    let new_pw = req.field("new_password");
    let rules = password::unmet_rules(new_pw, &pool.cfg.password_policy);
    if !rules.is_empty() {
        let top = Notice {
            notice: String::new(),
            errors: vec![i18n::password_error(req.lang, &rules)],
        };
        return show_with(pool, ready, req, me, top, StatusCode::BAD_REQUEST, None).await;
    }
    if !reauth_fresh(ready, req, me).await {
        let check = ready
            .store
            .check_code(&u.sub, SET_PASSWORD_PURPOSE, req.field("code"), now())
            .await?;
        if let Some(problem) = code_problem(check, "acct_code_expired") {
            return refuse(pool, ready, req, me, problem, StatusCode::BAD_REQUEST).await;
        }
    }
    let hash = match password::hash(new_pw).await {
        Ok(h) => h,
        Err(password::HashError::Busy(_)) => return Err(PageError::Busy),
        Err(_) => return Err(PageError::Unavailable("hashing failed".into())),
    };
    ready
        .store
        .set_password(&u.sub, &hash, super::store::UserStatus::Confirmed, now())
        .await?;
    tracing::info!(request_id = req.rid, sub = %u.sub, "pool.event" = "password_set", "password set by a user who had none");
    home(pool, "acct_password_set")
}

/// `POST /account/delete`: after confirmation and re-authentication, the user is gone — pool
/// sessions and token families ended, the proxy's sessions revoked, logout tokens sent.
async fn delete(pool: &Pool, ready: &Ready, req: &Req<'_>, me: &Me) -> PageResult {
    let u = &me.user;
    if !confirmed(req) {
        let q = t(req.lang, "acct_confirm_delete").to_string();
        return confirm_first(pool, ready, req, me, "/account/delete", q, json!({})).await;
    }
    if has_password(u) {
        match password::verify(req.field("password"), &u.password_hash).await {
            Ok(true) => {}
            Ok(false) => {
                let c = json!({
                    "action": format!("{}/account/delete", pool.base),
                    "question": t(req.lang, "acct_confirm_delete"),
                    "fields": {},
                    "password": true,
                });
                return show_with(
                    pool,
                    ready,
                    req,
                    me,
                    Notice::error(req, "acct_wrong_password"),
                    StatusCode::FORBIDDEN,
                    Some(c),
                )
                .await;
            }
            Err(_) => return Err(PageError::Busy),
        }
    } else if !reauth_fresh(ready, req, me).await {
        return refuse(
            pool,
            ready,
            req,
            me,
            "acct_reauth_needed",
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    // Audited while the user's row is still there to name.
    crate::pool::audit::by_user(&ready.store, u, "delete_account").await;
    ready.store.delete_account_rows(&u.sub).await?;
    ready.store.delete_user(&u.sub).await?;
    tracing::info!(request_id = req.rid, sub = %u.sub, "pool.event" = "account_deleted", "account deleted by its user");
    let page = Page {
        message: t(req.lang, "acct_deleted").to_string(),
        cookies: vec![
            pool.build_cookie(SESSION_COOKIE, "", 0),
            pool.build_cookie(RD_COOKIE, "", 0),
        ],
        ..Page::default()
    };
    Ok(pool.pages.render(
        pool,
        req,
        StatusCode::OK,
        "message.html",
        "acct_deleted_title",
        page,
    ))
}

/// The problem a checked code answers with: none for a good code, "wrong" for a wrong one, and
/// `spent` for one that is missing, expired or void after too many tries.
fn code_problem(check: CodeCheck, spent: &'static str) -> Option<&'static str> {
    match check {
        CodeCheck::Ok => None,
        CodeCheck::Wrong => Some("acct_code_wrong"),
        CodeCheck::Missing | CodeCheck::Expired | CodeCheck::TooManyAttempts => Some(spent),
    }
}

/// A code from a link's query, kept only when it is six digits.
fn digits(v: &str) -> &str {
    if v.len() == 6 && v.bytes().all(|b| b.is_ascii_digit()) {
        v
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::device;

    #[test]
    fn devices_are_named_by_browser_and_system() {
        assert_eq!(
            device(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
            ),
            "Chrome · Windows"
        );
        assert_eq!(
            device(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile/15E148 Safari/604.1"
            ),
            "Safari · iPhone"
        );
        assert_eq!(device(""), "");
        assert_eq!(device("reqwest"), "reqwest");
    }
}
