//! Sign-up (fields generated from the configured attributes; every problem reported at once,
//! each by name), confirmation with the emailed/logged code, and resending a code.

use http::{Response, StatusCode};
use serde_json::Value;

use super::form::{self, FormErrors};
use super::login::{enc, to_login_with_notice};
use super::{Field, Page, redirect};
use crate::http::body::Body;
use crate::pool::attributes::{self, AttributeError};
use crate::pool::config::PoolConfig;
use crate::pool::i18n::{self, Lang, t};
use crate::pool::store::{CodeCheck, NewUser, StoreError, UserStatus};
use crate::pool::{Pool, Ready, Req, delivery, now, password, username};

/// Sign-ups per client address per hour, at most (then 429): unauthenticated work — a
/// password hash, a user row, a code sent — is bounded per client.
pub const SIGNUPS_PER_ADDRESS_PER_HOUR: u32 = 30;

fn fields(pool: &Pool, req: &Req<'_>, lang: Lang) -> Vec<Field> {
    let mut names: Vec<(&String, bool)> = pool
        .cfg
        .required_attributes
        .iter()
        .map(|a| (a, true))
        .collect();
    for a in &pool.cfg.signup_attributes {
        if !pool.cfg.required_attributes.contains(a) {
            names.push((a, false));
        }
    }
    names
        .into_iter()
        .map(|(name, required)| {
            let mut f = field_for(name, lang, required);
            f.value = req.field(name).to_string();
            f
        })
        .collect()
}

/// An empty form field for an attribute, with the input type and autocomplete that fit it.
pub fn field_for(name: &str, lang: Lang, required: bool) -> Field {
    let (kind, autocomplete) = match name {
        "email" => ("email", "email"),
        "phone_number" => ("tel", "tel"),
        "name" => ("text", "name"),
        "given_name" => ("text", "given-name"),
        "family_name" => ("text", "family-name"),
        "birthdate" => ("text", "bday"),
        "website" | "profile" | "picture" => ("url", "url"),
        _ => ("text", "off"),
    };
    Field {
        name: name.to_string(),
        label: i18n::attribute_label(lang, name),
        kind,
        autocomplete,
        required,
        value: String::new(),
    }
}

/// The sign-up form's fields in the order the page shows them.
fn order(pool: &Pool) -> Vec<&str> {
    let mut o = vec!["username"];
    for a in pool
        .cfg
        .required_attributes
        .iter()
        .chain(pool.cfg.signup_attributes.iter())
    {
        if !o.contains(&a.as_str()) {
            o.push(a);
        }
    }
    o.push("password");
    o
}

fn form(pool: &Pool, req: &Req<'_>, status: StatusCode, errors: Vec<String>) -> Response<Body> {
    form_with(pool, req, status, errors, FormErrors::default())
}

fn form_with(
    pool: &Pool,
    req: &Req<'_>,
    status: StatusCode,
    errors: Vec<String>,
    problems: FormErrors,
) -> Response<Body> {
    let mut page = Page {
        form: problems.in_order(&order(pool)),
        errors,
        fields: fields(pool, req, req.lang),
        req: req.value("req").to_string(),
        ..Page::default()
    };
    page.values
        .insert("username".into(), req.field("username").to_string());
    pool.pages
        .render(pool, req, status, "signup.html", "sign_up", page)
}

pub fn show(pool: &Pool, req: &Req<'_>) -> Response<Body> {
    if !pool.cfg.self_signup {
        return pool.pages.message(
            pool,
            req,
            StatusCode::FORBIDDEN,
            "sign_up",
            "signup_disabled",
        );
    }
    form(pool, req, StatusCode::OK, Vec::new())
}

/// Every problem with a new user's name, password and attributes, as messages. A name in a
/// configured identity provider's namespace (`{name}_`, any case or width) is refused: it
/// belongs to that provider's users (self sign-up and admin create alike).
pub fn problems_for(
    cfg: &PoolConfig,
    lang: Lang,
    name: &str,
    pw: &str,
    attrs: &Result<serde_json::Map<String, Value>, Vec<AttributeError>>,
) -> Vec<String> {
    let mut errors = Vec::new();
    if username::reserved(
        name,
        cfg.identity_providers
            .iter()
            .map(|p| p.provider.name.as_str()),
    ) {
        errors.push(t(lang, "err_username_reserved").to_string());
    }
    if let Err(e) = username::validate(name) {
        errors.push(
            t(
                lang,
                match e {
                    username::UsernameError::Empty => "err_username_empty",
                    username::UsernameError::TooLong => "err_username_long",
                    username::UsernameError::BadCharacter => "err_username_char",
                },
            )
            .to_string(),
        );
    }
    let rules = password::unmet_rules(pw, &cfg.password_policy);
    if !rules.is_empty() {
        errors.push(i18n::password_error(lang, &rules));
    }
    if let Err(list) = attrs {
        errors.extend(list.iter().map(|e| i18n::attribute_error(lang, e)));
    }
    errors
}

/// [`problems_for`] as the sign-up page shows them: each at its field, named by its label.
pub fn field_problems(
    cfg: &PoolConfig,
    lang: Lang,
    name: &str,
    pw: &str,
    attrs: &Result<serde_json::Map<String, Value>, Vec<AttributeError>>,
) -> FormErrors {
    let mut e = FormErrors::default();
    if username::reserved(
        name,
        cfg.identity_providers
            .iter()
            .map(|p| p.provider.name.as_str()),
    ) {
        e.push(lang, "username", t(lang, "fl_username_reserved"));
    }
    if let Err(problem) = username::validate(name) {
        let key = match problem {
            username::UsernameError::Empty => "fl_required",
            username::UsernameError::TooLong => "fl_username_long",
            username::UsernameError::BadCharacter => "fl_username_char",
        };
        e.push(lang, "username", t(lang, key));
    }
    let rules = password::unmet_rules(pw, &cfg.password_policy);
    if !rules.is_empty() {
        e.push(lang, "password", form::password_message(lang, &rules));
    }
    if let Err(list) = attrs {
        for a in list {
            e.push(lang, &a.name, form::attribute_message(lang, a));
        }
    }
    e
}

/// The user name and email already taken, found before anything is created, so that they
/// are reported with every other problem at once.
async fn taken(ready: &Ready, req: &Req<'_>, lang: Lang, email: Option<&str>) -> FormErrors {
    let mut e = FormErrors::default();
    let raw = req.field("username");
    if let Ok(canonical) = username::validate(raw)
        && let Ok(Some(_)) = ready.store.user_by_username(&canonical).await
    {
        e.push(lang, "username", t(lang, "user_exists"));
    }
    if let Some(email) = email
        && let Ok(Some(_)) = ready.store.user_by_email(email).await
    {
        e.push(lang, "email", t(lang, "email_exists"));
    }
    e
}

pub async fn submit(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    if !pool.csrf_ok(req) {
        return pool.csrf_failed(req);
    }
    if !pool.cfg.self_signup {
        return pool.pages.message(
            pool,
            req,
            StatusCode::FORBIDDEN,
            "sign_up",
            "signup_disabled",
        );
    }
    let offered: Vec<&String> = pool
        .cfg
        .required_attributes
        .iter()
        .chain(pool.cfg.signup_attributes.iter())
        .collect();
    let input: Vec<(String, String)> = req
        .form
        .iter()
        .filter(|(k, _)| offered.contains(&k))
        .cloned()
        .collect();
    let attrs = attributes::validate(
        &input,
        &pool.cfg.required_attributes,
        pool.cfg.default_phone_region,
    );
    let mut problems = field_problems(
        &pool.cfg,
        req.lang,
        req.field("username"),
        req.field("password"),
        &attrs,
    );
    let email = attrs
        .as_ref()
        .ok()
        .and_then(|a| a.get("email"))
        .and_then(Value::as_str);
    // Only a name or address already taken: 409, as when the store refuses it below.
    let taken = taken(ready, req, req.lang, email).await;
    let status = if problems.is_empty() && !taken.is_empty() {
        StatusCode::CONFLICT
    } else {
        StatusCode::BAD_REQUEST
    };
    for p in taken.items() {
        problems.add(&p.field, p.label.clone(), p.message.clone());
    }
    let (Ok(mut attrs), true) = (attrs, problems.is_empty()) else {
        return form_with(pool, req, status, Vec::new(), problems);
    };
    let Ok(canonical) = username::validate(req.field("username")) else {
        return form_with(pool, req, status, Vec::new(), problems);
    };
    if attrs.contains_key("email") {
        attrs.insert("email_verified".into(), Value::Bool(false));
    }
    if attrs.contains_key("phone_number") {
        attrs.insert("phone_number_verified".into(), Value::Bool(false));
    }
    // At most SIGNUPS_PER_ADDRESS_PER_HOUR sign-ups per client address (counted in the
    // pool's store, before the password is hashed), then 429.
    let t_ms = now().saturating_mul(1000);
    match ready
        .store
        .record_failure(&format!("signup:{}", req.ip), t_ms, t_ms - 3_600_000)
        .await
    {
        Ok(n) if n > SIGNUPS_PER_ADDRESS_PER_HOUR => {
            tracing::warn!(
                request_id = req.rid,
                "pool.event" = "sign_up_throttled",
                "too many sign-ups from one client address"
            );
            return form(
                pool,
                req,
                StatusCode::TOO_MANY_REQUESTS,
                vec![t(req.lang, "signups_throttled").to_string()],
            );
        }
        Ok(_) => {}
        Err(e) => return super::password::unavailable(pool, req, &e),
    }
    let hash = match password::hash(req.field("password")).await {
        Ok(h) => h,
        Err(password::HashError::Busy(_)) => return super::login::busy(pool, req),
        Err(_) => {
            return pool.pages.message(
                pool,
                req,
                StatusCode::INTERNAL_SERVER_ERROR,
                "error_title",
                "unavailable",
            );
        }
    };
    let user = NewUser {
        sub: uuid::Uuid::new_v4().to_string(),
        username: canonical.clone(),
        status: UserStatus::Unconfirmed,
        password_hash: hash,
        attributes: attrs,
    };
    let t0 = now();
    match ready.store.create_user(&user, t0).await {
        Ok(()) => {}
        Err(StoreError::Exists(what)) => {
            let (field, key) = match what {
                "email" => ("email", "email_exists"),
                _ => ("username", "user_exists"),
            };
            let mut p = FormErrors::default();
            p.push(req.lang, field, t(req.lang, key));
            return form_with(pool, req, StatusCode::CONFLICT, Vec::new(), p);
        }
        Err(e) => return super::password::unavailable(pool, req, &e),
    }
    tracing::info!(request_id = req.rid, sub = %user.sub, "pool.event" = "sign_up", "user signed up");
    crate::pool::audit::by_user_named(
        &ready.store,
        &user.username,
        &user.sub,
        "sign_up",
        serde_json::Value::Null,
    )
    .await;
    let mut notice = "";
    match ready.store.user_by_sub(&user.sub).await {
        Ok(Some(u)) => {
            if let Err(e) = delivery::issue(
                &pool.cfg,
                &ready.store,
                &u,
                delivery::Purpose::Signup,
                req.lang,
                t0,
            )
            .await
            {
                if let delivery::DeliveryError::TooManyToAddress(_) = e {
                    // Answered as usual: the page does not tell what the address was sent.
                    tracing::warn!(error = %e, request_id = req.rid, "pool.event" = "code_not_sent", "confirmation code not sent");
                } else {
                    tracing::error!(error = %e, request_id = req.rid, "cannot deliver a confirmation code");
                    notice = "&notice=delivery_failed";
                }
            }
        }
        _ => notice = "&notice=delivery_failed",
    }
    let mut to = format!("{}/confirm?username={}{notice}", pool.base, enc(&canonical));
    let q = req.value("req");
    if !q.is_empty() {
        to.push_str(&format!("&req={}", enc(q)));
    }
    // This browser chose the password: confirming here signs it in (see `confirm`).
    redirect(&to, &[pool.signed_up_cookie(&user.sub)])
}

fn confirm_page(
    pool: &Pool,
    req: &Req<'_>,
    status: StatusCode,
    errors: Vec<String>,
    notice: String,
) -> Response<Body> {
    confirm_form(pool, req, status, errors, notice, FormErrors::default())
}

/// The confirm form again with its problems at their fields.
fn confirm_page_with(
    pool: &Pool,
    req: &Req<'_>,
    status: StatusCode,
    problems: FormErrors,
) -> Response<Body> {
    confirm_form(pool, req, status, Vec::new(), String::new(), problems)
}

fn confirm_form(
    pool: &Pool,
    req: &Req<'_>,
    status: StatusCode,
    errors: Vec<String>,
    notice: String,
    problems: FormErrors,
) -> Response<Body> {
    let mut page = Page {
        errors,
        notice,
        form: problems.in_order(&["username", "code"]),
        req: req.value("req").to_string(),
        ..Page::default()
    };
    page.values
        .insert("username".into(), req.value("username").to_string());
    page.values
        .insert("code".into(), req.value("code").to_string());
    pool.pages
        .render(pool, req, status, "confirm.html", "confirm_title", page)
}

pub fn show_confirm(pool: &Pool, req: &Req<'_>) -> Response<Body> {
    let notice = match req.param("notice") {
        n @ ("needs_confirm" | "delivery_failed" | "code_resent") => t(req.lang, n).to_string(),
        _ => String::new(),
    };
    confirm_page(pool, req, StatusCode::OK, Vec::new(), notice)
}

pub async fn confirm(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
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
        Err(e) => return super::password::unavailable(pool, req, &e),
    };
    let bad = |key: &str| {
        let mut problems = FormErrors::default();
        problems.push(req.lang, "code", t(req.lang, key));
        confirm_page_with(pool, req, StatusCode::BAD_REQUEST, problems)
    };
    // Unknown users and already-confirmed users get the same answer as a wrong code.
    let Some(user) = user.filter(|u| u.status == UserStatus::Unconfirmed) else {
        return bad("bad_code");
    };
    let t0 = now();
    match ready
        .store
        .check_code(
            &user.sub,
            delivery::Purpose::Signup.as_str(),
            req.field("code"),
            t0,
        )
        .await
    {
        Ok(CodeCheck::Ok) => {}
        Ok(CodeCheck::TooManyAttempts) => return bad("code_attempts"),
        Ok(_) => return bad("bad_code"),
        Err(e) => return super::password::unavailable(pool, req, &e),
    }
    let mut attrs = user.attributes.clone();
    // The code went to the email address, so owning the code proves the address.
    if attrs.contains_key("email") {
        attrs.insert("email_verified".into(), Value::Bool(true));
    }
    let r = async {
        ready.store.set_attributes(&user.sub, &attrs, t0).await?;
        ready
            .store
            .set_status(&user.sub, UserStatus::Confirmed, t0)
            .await
    }
    .await;
    if let Err(StoreError::Exists("email")) = r {
        // Another user verified this address first (it is one user's): this one stays
        // unconfirmed, and says why.
        return confirm_page(
            pool,
            req,
            StatusCode::CONFLICT,
            vec![t(req.lang, "email_exists").to_string()],
            String::new(),
        );
    }
    if let Err(e) = r {
        tracing::error!(error = %e, request_id = req.rid, "cannot confirm user");
        return pool.pages.message(
            pool,
            req,
            StatusCode::SERVICE_UNAVAILABLE,
            "error_title",
            "unavailable",
        );
    }
    tracing::info!(request_id = req.rid, sub = %user.sub, "pool.event" = "confirmed", "user confirmed");
    crate::pool::audit::by_user(&ready.store, &user, "confirm_sign_up").await;
    // In the browser that signed up (it knows the password; the code proves the address),
    // the confirmed user is signed in and goes on to the app, through any second factor
    // the pool asks for. Anywhere else (a code typed on another device): sign in first.
    if pool.signed_up_here(req, &user.sub)
        && let Ok(areq) = pool.open_request(req)
        && let Ok(Some(now_confirmed)) = ready.store.user_by_sub(&user.sub).await
    {
        let waiting = areq.is_some();
        let mut r = pool.finish_sign_in(ready, req, &now_confirmed, areq).await;
        if !waiting && r.status() == StatusCode::OK {
            // Signed in, and no application is waiting: on to the application's root
            // rather than the "signed in" page.
            let cookies: Vec<String> = r
                .headers()
                .get_all(http::header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect();
            r = redirect(&pool.app_home(), &cookies);
        }
        if let Ok(v) = http::HeaderValue::from_str(&pool.cookie(super::SIGNED_UP_COOKIE, "", 0)) {
            r.headers_mut().append(http::header::SET_COOKIE, v);
        }
        return r;
    }
    to_login_with_notice(pool, req, "confirmed", &user.username)
}

pub async fn resend(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    if !pool.csrf_ok(req) {
        return pool.csrf_failed(req);
    }
    let raw = req.field("username");
    if let Ok(Some(user)) = ready
        .store
        .user_by_login(&username::canonical(raw), raw)
        .await
        && user.status == UserStatus::Unconfirmed
    {
        delivery::issue_in_background(
            pool.cfg.clone(),
            ready.store.clone(),
            user,
            delivery::Purpose::Signup,
            req.lang,
        );
    }
    // The same answer whether or not the account exists or needs confirming.
    confirm_page(
        pool,
        req,
        StatusCode::OK,
        Vec::new(),
        t(req.lang, "code_resent").to_string(),
    )
}
