//! A provider's user, and what becomes of it in the pool: the user already linked to that
//! (provider, sub); else, with `link_by_email` and the provider's `email_verified: true`, the
//! CONFIRMED user whose stored address is that one and verified; else a new user
//! `{name}_{sub}` (see `username::federated`), created once every required attribute is there
//! (asked for on one page). Later sign-ins update the mapped attributes.
//!
//! An address (or phone number) counts as verified only when the pool verified it (a code) or
//! the provider that supplied that very value said so: a value typed on the attribute page is
//! unverified, and a provider's flag never upgrades a value it did not supply.

use http::{HeaderValue, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Upstream, ask_for_attributes, claim_text};
use crate::http::body::Body;
use crate::pool::attributes::{self, AttributeProblem};
use crate::pool::i18n::t;
use crate::pool::store::{NewUser, StoreError, User, UserStatus};
use crate::pool::{Pool, Ready, Req, now, now_ms, username};

/// What a provider said about its user, mapped to pool attributes (not yet validated).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub provider: String,
    pub provider_sub: String,
    pub issuer: String,
    /// pool attribute → value, from `attribute_mapping`.
    pub attributes: Vec<(String, String)>,
    /// `email_verified` / `phone_number_verified`, when mapped.
    pub email_verified: Option<bool>,
    pub phone_number_verified: Option<bool>,
    /// The provider's own `email` and whether it says it verified it (for `link_by_email`).
    pub provider_email: Option<String>,
    pub provider_email_verified: bool,
    /// The `state` of the sign-in that produced it: names the browser's login cookie, which
    /// binds the attribute page to that browser.
    pub login: String,
    /// Attributes typed on the attribute page (never verified).
    #[serde(default)]
    pub typed: Vec<String>,
    /// The provider's own `amr` values (RFC 8176), when its ID token has them.
    #[serde(default)]
    pub amr: Vec<String>,
}

/// At most this many `amr` values are taken from a provider, each a short token.
const MAX_AMR: usize = 8;

/// The provider's `amr`: string values that are short RFC 8176-style tokens, once each, in
/// order; `fed` (the pool's own), `pwd` (a federated sign-in is never the pool's password
/// sign-in, whatever the provider did) and anything else are left out.
fn provider_amr(claims: &Map<String, Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let Some(Value::Array(items)) = claims.get("amr") else {
        return out;
    };
    for v in items.iter().filter_map(Value::as_str) {
        let token = !v.is_empty()
            && v.len() <= 32
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if token && v != "fed" && v != "pwd" && !out.iter().any(|o| o == v) && out.len() < MAX_AMR {
            out.push(v.to_string());
        }
    }
    out
}

/// A claim that is `true` (or the string "true", as some providers send it).
fn truthy(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true))) || matches!(v, Some(Value::String(s)) if s == "true")
}

impl Identity {
    pub fn from_claims(
        up: &Upstream,
        provider_sub: &str,
        claims: &Map<String, Value>,
        login: &str,
    ) -> Identity {
        let mut id = Identity {
            provider: up.name().to_string(),
            provider_sub: provider_sub.to_string(),
            issuer: up.cfg.provider.issuer.clone(),
            attributes: Vec::new(),
            email_verified: None,
            phone_number_verified: None,
            provider_email: claims
                .get("email")
                .and_then(Value::as_str)
                .map(str::to_string),
            provider_email_verified: truthy(claims.get("email_verified")),
            login: login.to_string(),
            typed: Vec::new(),
            amr: provider_amr(claims),
        };
        for (attr, claim) in &up.cfg.attribute_mapping {
            match attr.as_str() {
                "email_verified" => id.email_verified = Some(truthy(claims.get(claim))),
                "phone_number_verified" => {
                    id.phone_number_verified = Some(truthy(claims.get(claim)))
                }
                _ => {
                    if let Some(v) = claim_text(claims, claim).filter(|v| !v.trim().is_empty()) {
                        id.attributes.push((attr.clone(), v));
                    }
                }
            }
        }
        id
    }

    pub fn attribute(&self, name: &str) -> Option<String> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// Sets (or, with an empty value, removes) an attribute typed on the attribute page; a
    /// typed value is never a verified one.
    pub fn set_attribute(&mut self, name: &str, value: &str) {
        // The provider's own value sent back unchanged (the page shows it prefilled) is still
        // the provider's, with the provider's flag; only a different value counts as typed.
        if !self.typed.iter().any(|t| t == name) && self.attribute(name).as_deref() == Some(value) {
            return;
        }
        if !self.typed.iter().any(|t| t == name) {
            self.typed.push(name.to_string());
        }
        self.attributes.retain(|(k, _)| k != name);
        if !value.trim().is_empty() {
            self.attributes.push((name.to_string(), value.to_string()));
        }
    }

    /// The attributes this provider supplied itself (not typed on the attribute page).
    fn supplied(&self) -> Vec<String> {
        self.attributes
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| !self.typed.contains(k))
            .collect()
    }

    /// The `amr` of a sign-in through this provider: `fed`, then the provider's own values.
    pub fn sign_in_amr(&self) -> Vec<String> {
        std::iter::once("fed".to_string())
            .chain(self.amr.iter().cloned())
            .collect()
    }

    /// The `identities` entry for this provider (Cognito's shape).
    fn entry(&self) -> Value {
        json!({
            "providerName": self.provider,
            "providerType": "OIDC",
            "userId": self.provider_sub,
            "issuer": self.issuer,
            "primary": true,
            "dateCreated": now_ms(),
        })
    }
}

/// Adds this provider's entry to a user's `identities` attribute (once per provider user).
fn with_identity(attrs: &mut Map<String, Value>, id: &Identity) {
    let list = attrs
        .entry("identities")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    if let Value::Array(items) = list {
        let known = items.iter().any(|i| {
            i.get("providerName").and_then(Value::as_str) == Some(id.provider.as_str())
                && i.get("userId").and_then(Value::as_str) == Some(id.provider_sub.as_str())
        });
        if !known {
            items.push(id.entry());
        }
    }
}

fn append_cookies(mut r: Response<Body>, cookies: &[String]) -> Response<Body> {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

fn unavailable(pool: &Pool, req: &Req<'_>, e: &StoreError, cookies: Vec<String>) -> Response<Body> {
    tracing::error!(error = %e, request_id = req.rid, "pool database error during federated sign-in");
    pool.federation_message(
        req,
        StatusCode::SERVICE_UNAVAILABLE,
        t(req.lang, "unavailable").to_string(),
        cookies,
    )
}

/// Signs the provider's user in: linked user, user linked by email, or a new user.
pub async fn sign_in(
    pool: &Pool,
    ready: &Ready,
    req: &Req<'_>,
    up: &Upstream,
    id: Identity,
    req_raw: &str,
    cookies: Vec<String>,
) -> Response<Body> {
    let store = &ready.store;
    let Ok(areq) = pool.open_request_raw(req_raw) else {
        return append_cookies(
            pool.pages.message(
                pool,
                req,
                StatusCode::BAD_REQUEST,
                "error_title",
                "invalid_request",
            ),
            &cookies,
        );
    };
    match store.federated_user(&id.provider, &id.provider_sub).await {
        Err(e) => return unavailable(pool, req, &e, cookies),
        // A link to a never-confirmed sign-up (left by an older version, which linked by an
        // address nobody verified) is no link: the provider's user gets its own account, and
        // the link is replaced below.
        Ok(Some(user)) if user.status == UserStatus::Unconfirmed => {
            tracing::warn!(provider = %id.provider, sub = %user.sub, request_id = req.rid, "pool.event" = "federation_link_dropped", "a provider user was linked to an unconfirmed sign-up; the link is replaced");
        }
        Ok(Some(user)) => {
            return existing(pool, ready, req, &id, user, areq, req_raw, cookies).await;
        }
        Ok(None) => {}
    }
    if up.cfg.link_by_email
        && id.provider_email_verified
        && let Some(email) = &id.provider_email
    {
        // Only a CONFIRMED user whose own address is this one and verified (by the pool's
        // code, or by the provider that supplied it): never an unconfirmed sign-up or an
        // address somebody merely typed or got from a provider that did not verify it.
        match store.user_by_email(email).await {
            Err(e) => return unavailable(pool, req, &e, cookies),
            Ok(Some(user))
                if user.status == UserStatus::Confirmed
                    && truthy(user.attributes.get("email_verified"))
                    && user
                        .email()
                        .is_some_and(|e| e.trim().eq_ignore_ascii_case(email.trim())) =>
            {
                if let Err(e) = store
                    .link_identity(&id.provider, &id.provider_sub, &user.sub, now())
                    .await
                {
                    return unavailable(pool, req, &e, cookies);
                }
                tracing::info!(provider = %id.provider, sub = %user.sub, request_id = req.rid, "pool.event" = "federation_linked", "provider user linked to an existing user by verified email");
                crate::pool::audit::by_user_with(
                    store,
                    &user,
                    "federation_link",
                    serde_json::json!({"provider": id.provider}),
                )
                .await;
                return existing(pool, ready, req, &id, user, areq, req_raw, cookies).await;
            }
            Ok(_) => {}
        }
    }
    create(pool, ready, req, id, req_raw, areq, cookies).await
}

/// A user already in the pool: status checks, mapped attributes updated, signed in.
#[allow(clippy::too_many_arguments)]
async fn existing(
    pool: &Pool,
    ready: &Ready,
    req: &Req<'_>,
    id: &Identity,
    user: User,
    areq: Option<super::super::pages::AuthRequest>,
    req_raw: &str,
    cookies: Vec<String>,
) -> Response<Body> {
    match user.status {
        UserStatus::Confirmed => {}
        UserStatus::Disabled => {
            tracing::info!(sub = %user.sub, request_id = req.rid, "pool.event" = "sign_in_refused", "federated sign-in of a disabled user refused");
            return pool.federation_message(
                req,
                StatusCode::FORBIDDEN,
                t(req.lang, "disabled").to_string(),
                cookies,
            );
        }
        _ => {
            return pool.federation_page(
                req,
                StatusCode::FORBIDDEN,
                "fl_fed_conflict_title",
                t(req.lang, "fed_account_not_ready").to_string(),
                req_raw,
                cookies,
            );
        }
    }
    let store = &ready.store;
    let mut attrs = user.attributes.clone();
    // What this sign-in wrote from the provider (not typed, valid, not another user's).
    let mut written: Vec<String> = Vec::new();
    for (k, v) in &id.attributes {
        // One at a time: an invalid value from the provider leaves the stored one alone.
        let Ok(valid) = attributes::validate(
            &[(k.clone(), v.clone())],
            &[],
            pool.cfg.default_phone_region,
        ) else {
            continue;
        };
        for (name, value) in valid {
            if name == "email" && attrs.get("email") != Some(&value) {
                // An email that another user signs in with is not taken over.
                match store
                    .user_by_email(value.as_str().unwrap_or_default())
                    .await
                {
                    Ok(Some(other)) if other.sub != user.sub => continue,
                    Ok(_) => {}
                    Err(e) => return unavailable(pool, req, &e, cookies),
                }
            }
            if !id.typed.contains(&name) {
                written.push(name.clone());
            }
            attrs.insert(name, value);
        }
    }
    set_flags(&user.attributes, &mut attrs, id, &written);
    with_identity(&mut attrs, id);
    if attrs != user.attributes {
        match store.set_attributes(&user.sub, &attrs, now()).await {
            Ok(()) => {}
            // Another user verified this address meanwhile: it stays theirs.
            Err(StoreError::Exists("email")) => {
                return email_exists(pool, req, id, req_raw, cookies);
            }
            Err(e) => return unavailable(pool, req, &e, cookies),
        }
    }
    finish(
        pool,
        ready,
        req,
        &user.sub,
        areq,
        req_raw,
        &id.sign_in_amr(),
        cookies,
    )
    .await
}

/// Signs in the user `sub` as stored now (attributes just written included), with the `amr`
/// of a federated sign-in. When a second factor is due, the pages it sends the browser to
/// carry the waiting authorization request (`req_raw`), as they do after a password.
#[allow(clippy::too_many_arguments)]
async fn finish(
    pool: &Pool,
    ready: &Ready,
    req: &Req<'_>,
    sub: &str,
    areq: Option<super::super::pages::AuthRequest>,
    req_raw: &str,
    amr: &[String],
    cookies: Vec<String>,
) -> Response<Body> {
    let user = match ready.store.user_by_sub(sub).await {
        Ok(Some(u)) => u,
        Ok(None) => return unavailable(pool, req, &StoreError::NoSuchUser, cookies),
        Err(e) => return unavailable(pool, req, &e, cookies),
    };
    let mut r = pool.finish_sign_in_as(ready, req, &user, areq, amr).await;
    let mfa = format!("{}/mfa", pool.base);
    let to = r
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .filter(|to| to.starts_with(&mfa) && !to.contains("req=") && !req_raw.is_empty())
        .map(|to| {
            let sep = if to.contains('?') { '&' } else { '?' };
            format!("{to}{sep}req={}", crate::pool::pages::login::enc(req_raw))
        });
    if let Some(v) = to.and_then(|to| HeaderValue::from_str(&to).ok()) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    append_cookies(r, &cookies)
}

/// `email_verified` / `phone_number_verified` of the value now stored (`attrs`; `before` is
/// what was stored until now, `written` the attributes this provider just supplied):
/// - verified when this provider supplied this very value and says it verified it (its mapped
///   flag; without a mapping, its own `email_verified` for the `email` it sent);
/// - still verified when the value is unchanged and was verified (by the pool's code, or by
///   a provider before);
/// - else unverified: a typed value, a value another provider supplied, a changed value.
fn set_flags(
    before: &Map<String, Value>,
    attrs: &mut Map<String, Value>,
    id: &Identity,
    written: &[String],
) {
    for (claim, flag, mapped) in [
        ("email", "email_verified", id.email_verified),
        (
            "phone_number",
            "phone_number_verified",
            id.phone_number_verified,
        ),
    ] {
        let Some(value) = attrs.get(claim).and_then(Value::as_str).map(str::to_string) else {
            continue;
        };
        let same = |other: &str| {
            if claim == "email" {
                other.trim().eq_ignore_ascii_case(value.trim())
            } else {
                other == value
            }
        };
        let supplied = written.iter().any(|w| w == claim);
        let provider_says = supplied
            && match mapped {
                Some(v) => v,
                None => {
                    claim == "email"
                        && id.provider_email_verified
                        && id.provider_email.as_deref().is_some_and(same)
                }
            };
        let kept =
            before.get(claim).and_then(Value::as_str).is_some_and(same) && truthy(before.get(flag));
        attrs.insert(flag.into(), Value::Bool(provider_says || kept));
    }
}

fn email_exists(
    pool: &Pool,
    req: &Req<'_>,
    id: &Identity,
    req_raw: &str,
    cookies: Vec<String>,
) -> Response<Body> {
    tracing::info!(provider = %id.provider, request_id = req.rid, "pool.event" = "federation_conflict", "federated user not created: another user has this email (not linked)");
    pool.federation_page(
        req,
        StatusCode::CONFLICT,
        "fl_fed_conflict_title",
        t(req.lang, "fed_email_exists").to_string(),
        req_raw,
        cookies,
    )
}

/// A new pool user `{name}_{sub}`, or the page asking for the attributes it still needs.
async fn create(
    pool: &Pool,
    ready: &Ready,
    req: &Req<'_>,
    id: Identity,
    req_raw: &str,
    areq: Option<super::super::pages::AuthRequest>,
    cookies: Vec<String>,
) -> Response<Body> {
    // A verified address is one user's (users sign in with it): refuse at once, before asking
    // for anything, when an unlinked user holds this one verified. An address nobody verified
    // (an unconfirmed sign-up's, say) holds nothing.
    if let Some(email) = id.attribute("email") {
        match ready.store.user_by_email(&email).await {
            Ok(Some(_)) => return email_exists(pool, req, &id, req_raw, cookies),
            Ok(None) => {}
            Err(e) => return unavailable(pool, req, &e, cookies),
        }
    }
    let required = &pool.cfg.required_attributes;
    let mut attrs =
        match attributes::validate(&id.attributes, required, pool.cfg.default_phone_region) {
            Ok(a) => a,
            Err(problems) => {
                // Every required attribute, and any the provider gave in a form the pool refuses.
                let mut ask: Vec<String> = required.clone();
                for p in &problems {
                    if !ask.contains(&p.name) {
                        ask.push(p.name.clone());
                    }
                }
                let first = req.field("challenge").is_empty();
                let mut errors = crate::pool::pages::form::FormErrors::default();
                for p in problems
                    .iter()
                    .filter(|p| !(first && p.problem == AttributeProblem::Missing))
                {
                    let message = crate::pool::pages::form::attribute_message(req.lang, p);
                    errors.push(req.lang, &p.name, message);
                }
                return ask_for_attributes(pool, req, id, ask, req_raw, errors);
            }
        };
    let Some(name) = username::federated(&id.provider, &id.provider_sub) else {
        tracing::warn!(provider = %id.provider, request_id = req.rid, "provider subject cannot form a pool user name");
        return pool.federation_message(
            req,
            StatusCode::BAD_GATEWAY,
            t(req.lang, "fed_idp_unavailable").to_string(),
            cookies,
        );
    };
    set_flags(&Map::new(), &mut attrs, &id, &id.supplied());
    with_identity(&mut attrs, &id);
    let sub = uuid::Uuid::new_v4().to_string();
    let new = NewUser {
        sub: sub.clone(),
        username: name,
        status: UserStatus::Confirmed,
        // No password: a federated user signs in through its provider (an empty hash never
        // verifies), and "forgot password" does not give it one (as Cognito refuses it for
        // external users): someone removed at the provider keeps no way in.
        password_hash: String::new(),
        attributes: attrs,
    };
    let store = &ready.store;
    match store.create_user(&new, now()).await {
        Ok(()) => {}
        Err(StoreError::Exists("email")) => return email_exists(pool, req, &id, req_raw, cookies),
        Err(StoreError::Exists(_)) => {
            tracing::info!(provider = %id.provider, request_id = req.rid, "pool.event" = "federation_conflict", "federated user not created: the user name is taken");
            return pool.federation_message(
                req,
                StatusCode::CONFLICT,
                t(req.lang, "user_exists").to_string(),
                cookies,
            );
        }
        Err(e) => return unavailable(pool, req, &e, cookies),
    }
    if let Err(e) = store
        .link_identity(&id.provider, &id.provider_sub, &sub, now())
        .await
    {
        return unavailable(pool, req, &e, cookies);
    }
    tracing::info!(provider = %id.provider, sub = %sub, request_id = req.rid, "pool.event" = "federation_user_created", "federated user created");
    crate::pool::audit::by_user_named(
        store,
        &new.username,
        &sub,
        "federated_sign_up",
        serde_json::json!({"provider": id.provider}),
    )
    .await;
    finish(
        pool,
        ready,
        req,
        &sub,
        areq,
        req_raw,
        &id.sign_in_amr(),
        cookies,
    )
    .await
}
