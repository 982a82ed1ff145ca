//! The second-factor pages: `/mfa` (the challenge after the password), `/mfa/setup` (enrol
//! TOTP: a QR code rendered here as inline SVG, no script and no outside service, plus the
//! secret as text; confirmed by a first code), and `/mfa/continue` (after the recovery codes
//! were shown once). Every form is CSRF-checked; wrong challenge codes feed the sign-in
//! lockout of the user (and of the client address).

use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{PWD_OTP, amr, recovery, totp};
use crate::http::body::Body;
use crate::pool::config::MfaMode;
use crate::pool::i18n::{self, t};
use crate::pool::pages::login::{count_address_failure, locked, locked_after, reserve, user_key};
use crate::pool::pages::password::unavailable;
use crate::pool::pages::{Page, redirect};
use crate::pool::store::User;
use crate::pool::web::{PageError, PageResult};
use crate::pool::{Pool, Ready, Req, now, now_ms};

/// A TOTP secret offered on the set-up page and not yet confirmed, sealed into the form so
/// that nothing is stored before the first good code.
#[derive(Serialize, Deserialize)]
struct Enrolment {
    secret: String,
    exp: i64,
}

/// How long a set-up page stays valid.
const ENROLMENT_SECONDS: i64 = 900;

/// "Your sign-in timed out: sign in again", with the link back.
const EXPIRED: PageError = PageError::Message(StatusCode::UNAUTHORIZED, "mfa_title", "mfa_expired");

fn expired(pool: &Pool, req: &Req<'_>) -> Response<Body> {
    EXPIRED.render(pool, req)
}

#[allow(clippy::too_many_arguments)]
fn render(
    pool: &Pool,
    req: &Req<'_>,
    status: StatusCode,
    template: &str,
    heading: &str,
    errors: Vec<String>,
    extra: serde_json::Value,
    cookies: Vec<String>,
) -> Response<Body> {
    let page = Page {
        errors,
        req: req.value("req").to_string(),
        extra,
        cookies,
        ..Page::default()
    };
    pool.pages
        .render(pool, req, status, template, heading, page)
}

pub async fn show_challenge(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    if pool.pending_user(ready, req).await.is_none() {
        return expired(pool, req);
    }
    render(
        pool,
        req,
        StatusCode::OK,
        "mfa.html",
        "mfa_title",
        Vec::new(),
        json!({}),
        Vec::new(),
    )
}

/// What a typed second-factor code turned out to be.
enum CodeOutcome {
    Accepted,
    Wrong,
}

async fn check_code(
    pool: &Pool,
    ready: &Ready,
    user: &User,
    typed: &str,
) -> Result<CodeOutcome, crate::pool::store::StoreError> {
    let store = &ready.store;
    if totp::normalise(typed).is_some() {
        let Some(sealed) = store.totp_secret(&user.sub).await? else {
            return Ok(CodeOutcome::Wrong);
        };
        let Some(secret) = pool.open_totp(&user.sub, &sealed) else {
            // Sealed under a key no longer in `session.secrets`: the user needs an mfa-reset.
            tracing::error!(sub = %user.sub, "a TOTP secret does not open with the current key ring");
            return Ok(CodeOutcome::Wrong);
        };
        return Ok(match totp::matching_step(&secret, typed, now()) {
            Some(step) if store.advance_totp_step(&user.sub, step).await? => CodeOutcome::Accepted,
            _ => CodeOutcome::Wrong,
        });
    }
    match recovery::normalise(typed) {
        Some(code) if store.use_recovery_code(&user.sub, &code).await? => {
            tracing::info!(sub = %user.sub, "pool.event" = "recovery_code_used", "a recovery code was used");
            Ok(CodeOutcome::Accepted)
        }
        _ => Ok(CodeOutcome::Wrong),
    }
}

/// Checks the form's `code` (TOTP or recovery code) under the user's sign-in lockout: a wrong
/// code counts as a failed sign-in. `Ok(None)` when accepted, else the status and message.
async fn check_under_lockout(
    pool: &Pool,
    ready: &Ready,
    req: &Req<'_>,
    user: &User,
) -> Result<Option<(StatusCode, String)>, crate::pool::store::StoreError> {
    let store = &ready.store;
    let policy = pool.cfg.lockout;
    let key = user_key(&user.username);
    let t0 = now_ms();
    // Counted before the code is checked, so concurrent guesses see each other.
    let held = match reserve(store, &key, policy.max_attempts, &policy, t0).await? {
        Ok(r) => r,
        Err(s) => return Ok(Some((StatusCode::TOO_MANY_REQUESTS, locked(req, s)))),
    };
    if let CodeOutcome::Accepted = check_code(pool, ready, user, req.field("code")).await? {
        store.release_attempt(&key, &held).await?;
        return Ok(None);
    }
    count_address_failure(store, req, &policy, t0).await;
    let failures = held.failures;
    let now_locked = locked_after(&held, policy.max_attempts, &policy);
    tracing::info!(
        request_id = req.rid,
        "pool.event" = "mfa_failed",
        failures,
        "second factor failed"
    );
    Ok(Some(match now_locked {
        Some(s) => (StatusCode::TOO_MANY_REQUESTS, locked(req, s)),
        None => (
            StatusCode::UNAUTHORIZED,
            t(req.lang, "mfa_bad_code").to_string(),
        ),
    }))
}

pub async fn submit_challenge(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    if !pool.csrf_ok(req) {
        return pool.csrf_failed(req);
    }
    let Some(user) = pool.pending_user(ready, req).await else {
        return expired(pool, req);
    };
    let Ok(areq) = pool.open_request(req) else {
        return super::invalid_request(pool, req);
    };
    match check_under_lockout(pool, ready, req, &user).await {
        Ok(None) => {}
        Ok(Some((status, message))) => {
            return render(
                pool,
                req,
                status,
                "mfa.html",
                "mfa_title",
                vec![message],
                json!({}),
                Vec::new(),
            );
        }
        Err(e) => return unavailable(pool, req, &e),
    }
    let cookies = vec![pool.clear_pending_cookie()];
    pool.start_session(ready, req, &user, areq, &amr(PWD_OTP), cookies)
        .await
}

/// Who is at the set-up page: a browser between password and second factor (`required`), or
/// a signed-in user.
enum Enroller {
    SigningIn(User),
    SignedIn(User),
}

impl Enroller {
    fn user(&self) -> &User {
        match self {
            Enroller::SigningIn(u) | Enroller::SignedIn(u) => u,
        }
    }
}

/// Who may set up TOTP here; `Err` is the page to show instead (MFA off, or nobody).
async fn enroller(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Result<Enroller, PageError> {
    if pool.cfg.mfa == MfaMode::Off {
        return Err(PageError::Message(
            StatusCode::NOT_FOUND,
            "mfa_setup_title",
            "mfa_off",
        ));
    }
    if let Some(u) = pool.pending_user(ready, req).await {
        return Ok(Enroller::SigningIn(u));
    }
    match pool.session_user(ready, req).await {
        Some((u, _)) => Ok(Enroller::SignedIn(u)),
        None => Err(EXPIRED),
    }
}

/// The QR code of an `otpauth://` URI as an inline `<svg>` (no script, no image request).
fn qr_svg(uri: &str) -> Option<String> {
    let code =
        qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build();
    let start = svg.find("<svg")?;
    Some(svg[start..].replacen(
        "<svg ",
        "<svg class=\"qr\" role=\"img\" aria-label=\"QR code\" ",
        1,
    ))
}

/// Groups of four for reading aloud or typing (apps ignore the spaces).
fn grouped(secret_b32: &str) -> String {
    secret_b32
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn setup_page(
    pool: &Pool,
    req: &Req<'_>,
    who: &Enroller,
    secret: &[u8],
    sealed: &str,
    status: StatusCode,
    errors: Vec<String>,
) -> Response<Body> {
    let user = who.user();
    let account = user.email().unwrap_or(&user.username);
    let uri = totp::otpauth_uri(&pool.cfg.ui.title, account, secret);
    let Some(qr) = qr_svg(&uri) else {
        return crate::error::RequestError::Internal("qr".into()).render(req.rid, false);
    };
    let extra = json!({
        "qr": qr,
        "secret": grouped(&totp::base32(secret)),
        "enrolment": sealed,
        "required": matches!(who, Enroller::SigningIn(_)),
        // A step-up's set-up: the app asked for a second factor this user does not have yet.
        "step_up": pool.open_request(req).ok().flatten().is_some_and(|a| a.mfa),
    });
    render(
        pool,
        req,
        status,
        "mfa_setup.html",
        "mfa_setup_title",
        errors,
        extra,
        Vec::new(),
    )
}

pub async fn show_setup(pool: &Pool, ready: &Ready, req: &Req<'_>) -> PageResult {
    let who = enroller(pool, ready, req).await?;
    let user = who.user();
    match ready.store.totp_secret(&user.sub).await? {
        // Enrolling a new secret must never stand in for the challenge of the old one.
        Some(_) if matches!(who, Enroller::SigningIn(_)) => {
            return Ok(redirect(&super::carry(pool, req, "/mfa"), &[]));
        }
        Some(_) => return enrolled_page(pool, ready, req, user, StatusCode::OK, Vec::new()).await,
        None => {}
    }
    let secret = totp::new_secret();
    let sealed = seal_enrolment(pool, &user.sub, &secret);
    Ok(setup_page(
        pool,
        req,
        &who,
        &secret,
        &sealed,
        StatusCode::OK,
        Vec::new(),
    ))
}

/// The set-up page of a user who has TOTP: how many recovery codes are left, new codes, and
/// (when `optional`) turning it off — each confirmed with a current code.
async fn enrolled_page(
    pool: &Pool,
    ready: &Ready,
    req: &Req<'_>,
    user: &User,
    status: StatusCode,
    errors: Vec<String>,
) -> PageResult {
    let left = ready.store.recovery_codes_left(&user.sub).await?;
    let extra = json!({
        "enrolled": true,
        "recovery_left": i18n::fill(t(req.lang, "mfa_recovery_left"), &[("n", &left.to_string())]),
        "may_turn_off": pool.cfg.mfa == MfaMode::Optional,
    });
    Ok(render(
        pool,
        req,
        status,
        "mfa_setup.html",
        "mfa_title",
        errors,
        extra,
        Vec::new(),
    ))
}

/// `POST /mfa/manage`: a signed-in user with TOTP gets new recovery codes (`action=recovery`)
/// or, when `pool.mfa = "optional"`, turns TOTP off (`action=off`). Both need a current code
/// (or a recovery code), so a borrowed session alone cannot remove the factor.
pub async fn manage(pool: &Pool, ready: &Ready, req: &Req<'_>) -> PageResult {
    pool.verified_form(req)?;
    let Some((user, _)) = pool.session_user(ready, req).await else {
        return Err(EXPIRED);
    };
    let store = &ready.store;
    match store.totp_secret(&user.sub).await? {
        Some(_) if pool.cfg.mfa != MfaMode::Off => {}
        _ => return Ok(redirect(&format!("{}/mfa/setup", pool.base), &[])),
    }
    let action = req.field("action");
    if action == "off" && pool.cfg.mfa != MfaMode::Optional {
        let msg = t(req.lang, "mfa_cannot_turn_off").to_string();
        return enrolled_page(pool, ready, req, &user, StatusCode::FORBIDDEN, vec![msg]).await;
    }
    if let Some((status, message)) = check_under_lockout(pool, ready, req, &user).await? {
        return enrolled_page(pool, ready, req, &user, status, vec![message]).await;
    }
    if action == "off" {
        store.reset_totp(&user.sub).await?;
        tracing::info!(request_id = req.rid, sub = %user.sub, "pool.event" = "mfa_turned_off", "TOTP turned off by the user");
        crate::pool::events::factors_changed(
            &pool.cfg,
            store,
            &user,
            crate::pool::events::FactorChange::TotpOff,
            req.lang,
        )
        .await;
        return Ok(pool.pages.message(
            pool,
            req,
            StatusCode::OK,
            "mfa_setup_title",
            "mfa_turned_off",
        ));
    }
    let (codes, hashed) = new_recovery_codes();
    store.replace_recovery_codes(&user.sub, &hashed).await?;
    tracing::info!(request_id = req.rid, sub = %user.sub, "pool.event" = "recovery_codes_renewed", "new recovery codes");
    crate::pool::events::factors_changed(
        &pool.cfg,
        store,
        &user,
        crate::pool::events::FactorChange::RecoveryCodes,
        req.lang,
    )
    .await;
    Ok(recovery_page(pool, req, &codes, Vec::new()))
}

fn seal_enrolment(pool: &Pool, sub: &str, secret: &[u8]) -> String {
    let e = Enrolment {
        secret: totp::base32(secret),
        exp: now() + ENROLMENT_SECONDS,
    };
    pool.seal_b64(
        &format!("pool-mfa-enrol:{sub}"),
        &serde_json::to_vec(&e).unwrap_or_default(),
    )
}

fn open_enrolment(pool: &Pool, sub: &str, sealed: &str) -> Option<Vec<u8>> {
    let e: Enrolment =
        serde_json::from_slice(&pool.open_b64(&format!("pool-mfa-enrol:{sub}"), sealed)?).ok()?;
    (e.exp >= now()).then(|| totp::base32_decode(&e.secret))?
}

pub async fn submit_setup(pool: &Pool, ready: &Ready, req: &Req<'_>) -> PageResult {
    pool.verified_form(req)?;
    let who = enroller(pool, ready, req).await?;
    if pool.open_request(req).is_err() {
        return Ok(super::invalid_request(pool, req));
    }
    let user = who.user().clone();
    let store = &ready.store;
    if store.totp_secret(&user.sub).await?.is_some() {
        return Ok(redirect(&super::carry(pool, req, "/mfa/setup"), &[]));
    }
    let sealed = req.field("enrolment");
    let Some(secret) = open_enrolment(pool, &user.sub, sealed) else {
        // Expired or forged: start again with a fresh secret.
        let secret = totp::new_secret();
        let sealed = seal_enrolment(pool, &user.sub, &secret);
        let msg = t(req.lang, "mfa_setup_expired").to_string();
        return Ok(setup_page(
            pool,
            req,
            &who,
            &secret,
            &sealed,
            StatusCode::BAD_REQUEST,
            vec![msg],
        ));
    };
    let Some(step) = totp::matching_step(&secret, req.field("code"), now()) else {
        let msg = t(req.lang, "mfa_setup_bad_code").to_string();
        return Ok(setup_page(
            pool,
            req,
            &who,
            &secret,
            sealed,
            StatusCode::UNPROCESSABLE_ENTITY,
            vec![msg],
        ));
    };
    let (codes, hashed) = new_recovery_codes();
    store
        .enrol_totp(
            &user.sub,
            &pool.seal_totp(&user.sub, &secret),
            step,
            &hashed,
            now(),
        )
        .await?;
    tracing::info!(request_id = req.rid, sub = %user.sub, "pool.event" = "mfa_enrolled", "TOTP set up");
    crate::pool::events::factors_changed(
        &pool.cfg,
        store,
        &user,
        crate::pool::events::FactorChange::TotpOn,
        req.lang,
    )
    .await;
    let mut cookies = Vec::new();
    if let Enroller::SigningIn(_) = who {
        // The first code was the second factor: the sign-in is complete.
        match pool.create_session(ready, req, &user, &amr(PWD_OTP)).await {
            Ok((c, _)) => cookies.extend([c, pool.clear_pending_cookie()]),
            Err(r) => return Ok(r),
        }
    }
    Ok(recovery_page(pool, req, &codes, cookies))
}

/// Fresh recovery codes: (as shown once, as stored).
fn new_recovery_codes() -> (Vec<String>, Vec<String>) {
    let codes = recovery::generate();
    let stored = codes
        .iter()
        .filter_map(|c| recovery::normalise(c))
        .collect();
    (codes, stored)
}

/// The one time recovery codes are shown.
fn recovery_page(
    pool: &Pool,
    req: &Req<'_>,
    codes: &[String],
    cookies: Vec<String>,
) -> Response<Body> {
    render(
        pool,
        req,
        StatusCode::OK,
        "mfa_recovery.html",
        "recovery_title",
        Vec::new(),
        json!({ "codes": codes }),
        cookies,
    )
}

/// After the recovery codes: answer the waiting authorization request from the session.
pub async fn continue_sign_in(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    if !pool.csrf_ok(req) {
        return pool.csrf_failed(req);
    }
    let Some((user, auth_time)) = pool.session_user(ready, req).await else {
        return expired(pool, req);
    };
    let Ok(areq) = pool.open_request(req) else {
        return super::invalid_request(pool, req);
    };
    let amr = super::session_amr(ready, req).await;
    pool.answer_sign_in(ready, req, &user, areq, auth_time, &amr, Vec::new())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_is_inline_svg_without_script() {
        let svg = qr_svg("otpauth://totp/Portcullis:a%40example.com?secret=ABC").unwrap();
        assert!(svg.starts_with("<svg class=\"qr\""), "{svg}");
        assert!(!svg.contains("script") && !svg.contains("style="));
    }
}
