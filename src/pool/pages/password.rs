//! Forgot password (always the same answer, so it reveals no account), reset with a code, and
//! change password — either the forced change of a temporary password (a sealed, 10-minute
//! `challenge` from the sign-in page) or a signed-in user's change.

use http::{Response, StatusCode};
use serde_json::Value;

use super::form::{self, FormErrors};
use super::login::{enc, to_login_with_notice, user_key};
use super::{Page, redirect};
use crate::http::body::Body;
use crate::pool::i18n::t;
use crate::pool::store::{CodeCheck, UserStatus};
use crate::pool::web::{PageError, PageResult};
use crate::pool::{Pool, Ready, Req, delivery, now, password, username};

fn page(
    pool: &Pool,
    req: &Req<'_>,
    template: &str,
    heading: &str,
    status: StatusCode,
    errors: Vec<String>,
    notice: String,
) -> Response<Body> {
    let mut p = Page {
        errors,
        notice,
        req: req.value("req").to_string(),
        ..Page::default()
    };
    p.values
        .insert("username".into(), req.value("username").to_string());
    p.values
        .insert("code".into(), req.value("code").to_string());
    pool.pages.render(pool, req, status, template, heading, p)
}

/// The reset form again, with its problems at their fields; the user name and the code typed
/// stay (a password-rule error must not make the user find the code again).
fn reset_again(pool: &Pool, req: &Req<'_>, problems: FormErrors) -> Response<Body> {
    let mut p = Page {
        form: problems.in_order(&["username", "code", "new_password"]),
        req: req.value("req").to_string(),
        ..Page::default()
    };
    p.values
        .insert("username".into(), req.value("username").to_string());
    let code: String = req
        .field("code")
        .chars()
        .filter(|c| c.is_ascii_digit())
        .take(6)
        .collect();
    p.values.insert("code".into(), code);
    pool.pages.render(
        pool,
        req,
        StatusCode::BAD_REQUEST,
        "reset_password.html",
        reset_title(req),
        p,
    )
}

/// The reset page's heading: "Choose your password" when opened from an invitation's link
/// (`invited=1`, which only the invitation email's link carries), else "Reset your password".
fn reset_title(req: &Req<'_>) -> &'static str {
    if req.param("invited") == "1" {
        "invite_title"
    } else {
        "reset_title"
    }
}

/// One problem of one field of the reset form.
fn reset_problem(pool: &Pool, req: &Req<'_>, field: &str, message: &str) -> Response<Body> {
    let mut e = FormErrors::default();
    e.push(req.lang, field, message);
    reset_again(pool, req, e)
}

pub fn unavailable(pool: &Pool, req: &Req<'_>, e: &dyn std::fmt::Display) -> Response<Body> {
    PageError::Unavailable(e.to_string()).render(pool, req)
}

/// A user created by an identity provider that has no password of its own (it signs in only
/// through a provider): "forgot password" must not give it one.
fn federated_only(u: &crate::pool::store::User) -> bool {
    u.password_hash.is_empty()
        && u.attributes
            .get("identities")
            .and_then(Value::as_array)
            .is_some_and(|ids| !ids.is_empty())
}

pub fn show_forgot(pool: &Pool, req: &Req<'_>) -> Response<Body> {
    page(
        pool,
        req,
        "forgot_password.html",
        "forgot_title",
        StatusCode::OK,
        Vec::new(),
        String::new(),
    )
}

pub async fn forgot(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    if !pool.csrf_ok(req) {
        return pool.csrf_failed(req);
    }
    let raw = req.field("username");
    let user = match ready
        .store
        .user_by_login(&username::canonical(raw), raw)
        .await
    {
        Ok(u) => u,
        Err(e) => return unavailable(pool, req, &e),
    };
    // A federated-only user (no password of its own) gets nothing that sets one: it signs in
    // through its provider, and someone removed there must keep no way in. The answer is the
    // same as for an unknown user.
    let federated_only = user.as_ref().is_some_and(federated_only);
    if federated_only {
        tracing::info!(
            request_id = req.rid,
            "pool.event" = "reset_refused",
            "forgot password for a user who signs in only through a provider: no code sent"
        );
    }
    if let Some(u) = user.filter(|u| {
        u.status != UserStatus::Disabled && u.status != UserStatus::Unconfirmed && !federated_only
    }) {
        delivery::issue_in_background(
            pool.cfg.clone(),
            ready.store.clone(),
            u,
            delivery::Purpose::Reset,
            req.lang,
        );
    }
    let mut to = format!(
        "{}/reset-password?notice=code_sent&username={}",
        pool.base,
        enc(raw)
    );
    let q = req.value("req");
    if !q.is_empty() {
        to.push_str(&format!("&req={}", enc(q)));
    }
    redirect(&to, &[])
}

pub fn show_reset(pool: &Pool, req: &Req<'_>) -> Response<Body> {
    let notice = match req.param("notice") {
        n @ ("code_sent" | "must_reset") => t(req.lang, n).to_string(),
        _ => String::new(),
    };
    page(
        pool,
        req,
        "reset_password.html",
        reset_title(req),
        StatusCode::OK,
        Vec::new(),
        notice,
    )
}

pub async fn reset(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    if !pool.csrf_ok(req) {
        return pool.csrf_failed(req);
    }
    let bad = |key: &str| reset_problem(pool, req, "code", t(req.lang, key));
    let rules = password::unmet_rules(req.field("new_password"), &pool.cfg.password_policy);
    if !rules.is_empty() {
        let mut e = FormErrors::default();
        if req.field("code").trim().is_empty() {
            e.push(req.lang, "code", t(req.lang, "fl_required"));
        }
        e.push(
            req.lang,
            "new_password",
            form::password_message(req.lang, &rules),
        );
        return reset_again(pool, req, e);
    }
    let raw = req.field("username");
    let user = match ready
        .store
        .user_by_login(&username::canonical(raw), raw)
        .await
    {
        Ok(u) => u,
        Err(e) => return unavailable(pool, req, &e),
    };
    let Some(user) = user.filter(|u| u.status != UserStatus::Disabled && !federated_only(u)) else {
        return bad("bad_code");
    };
    let t0 = now();
    match ready
        .store
        .check_code(
            &user.sub,
            delivery::Purpose::Reset.as_str(),
            req.field("code"),
            t0,
        )
        .await
    {
        Ok(CodeCheck::Ok) => {}
        Ok(CodeCheck::TooManyAttempts) => return bad("code_attempts"),
        Ok(_) => return bad("bad_code"),
        Err(e) => return unavailable(pool, req, &e),
    }
    let hash = match password::hash(req.field("new_password")).await {
        Ok(h) => h,
        Err(password::HashError::Busy(_)) => return super::login::busy(pool, req),
        Err(_) => return unavailable(pool, req, &"hashing failed"),
    };
    let mut attrs = user.attributes.clone();
    if attrs.contains_key("email") {
        attrs.insert("email_verified".into(), Value::Bool(true));
    }
    let r = async {
        ready
            .store
            .set_password(&user.sub, &hash, UserStatus::Confirmed, t0)
            .await?;
        // The code went to the address, so it is verified now, unless another user holds it
        // verified already (it stays theirs; this one stays unverified).
        match ready.store.set_attributes(&user.sub, &attrs, t0).await {
            Ok(()) | Err(crate::pool::store::StoreError::Exists("email")) => {}
            Err(e) => return Err(e),
        }
        // A reset password ends every existing session and token, and the lockout.
        ready.store.sign_out_everywhere(&user.sub).await?;
        ready.store.clear_attempts(&user_key(&user.username)).await
    }
    .await;
    if let Err(e) = r {
        return unavailable(pool, req, &e);
    }
    tracing::info!(request_id = req.rid, sub = %user.sub, "pool.event" = "password_reset", "password reset with a code");
    crate::pool::audit::by_user(&ready.store, &user, "forgot_password").await;
    // Asked by an administrator (an invitation, or an admin reset): the password is "set".
    let done = if user.status == UserStatus::ResetRequired {
        "password_set"
    } else {
        "password_reset"
    };
    to_login_with_notice(pool, req, done, &user.username)
}

pub async fn show_change(pool: &Pool, ready: &Ready, req: &Req<'_>) -> PageResult {
    if pool.session_user(ready, req).await.is_none() {
        return Err(PageError::SignInRequired { next: None });
    }
    Ok(page(
        pool,
        req,
        "change_password.html",
        "change_title",
        StatusCode::OK,
        Vec::new(),
        String::new(),
    ))
}

pub async fn change(pool: &Pool, ready: &Ready, req: &Req<'_>) -> PageResult {
    pool.verified_form(req)?;
    let challenge = req.field("challenge");
    let new_pw = req.field("new_password");
    let rerender = |field: &str, message: String| {
        let mut problems = FormErrors::default();
        match field {
            // The signed-in change's first field is the current password.
            "password" => problems.add(field, t(req.lang, "current_password"), message),
            _ => problems.push(req.lang, field, message),
        }
        let p = Page {
            form: problems,
            challenge: challenge.to_string(),
            req: req.value("req").to_string(),
            ..Page::default()
        };
        Ok(pool.pages.render(
            pool,
            req,
            StatusCode::BAD_REQUEST,
            "change_password.html",
            "change_title",
            p,
        ))
    };
    // Who is changing: the holder of a fresh temporary-password challenge, or a signed-in user
    // who proves the current password again.
    let user = if !challenge.is_empty() {
        let sub = pool
            .open_challenge(challenge)
            .ok_or(PageError::BadRequest("invalid_request"))?;
        match ready.store.user_by_sub(&sub).await? {
            Some(u) if u.status == UserStatus::ForceChangePassword => u,
            _ => return Err(PageError::BadRequest("invalid_request")),
        }
    } else {
        let Some((u, _)) = pool.session_user(ready, req).await else {
            return Err(PageError::SignInRequired { next: None });
        };
        match password::verify(req.field("password"), &u.password_hash).await {
            Ok(true) => {}
            Ok(false) => {
                return rerender("password", t(req.lang, "fl_bad_current").to_string());
            }
            Err(_) => return Err(PageError::Busy),
        }
        u
    };
    let rules = password::unmet_rules(new_pw, &pool.cfg.password_policy);
    if !rules.is_empty() {
        return rerender("new_password", form::password_message(req.lang, &rules));
    }
    match password::verify(new_pw, &user.password_hash).await {
        Ok(false) => {}
        Ok(true) => {
            return rerender("new_password", t(req.lang, "same_password").to_string());
        }
        Err(_) => return Err(PageError::Busy),
    }
    let hash = match password::hash(new_pw).await {
        Ok(h) => h,
        Err(password::HashError::Busy(_)) => return Err(PageError::Busy),
        Err(_) => return Err(PageError::Unavailable("hashing failed".into())),
    };
    ready
        .store
        .set_password(&user.sub, &hash, UserStatus::Confirmed, now())
        .await?;
    tracing::info!(request_id = req.rid, sub = %user.sub, "pool.event" = "password_changed", "password changed");
    crate::pool::audit::by_user(&ready.store, &user, "change_password").await;
    if !challenge.is_empty() {
        let areq = pool.open_request(req).ok().flatten();
        let mut u = user;
        u.status = UserStatus::Confirmed;
        return Ok(pool.finish_sign_in(ready, req, &u, areq).await);
    }
    let p = Page {
        message: t(req.lang, "password_changed").to_string(),
        user: user.username,
        ..Page::default()
    };
    Ok(pool
        .pages
        .render(pool, req, StatusCode::OK, "message.html", "change_title", p))
}
