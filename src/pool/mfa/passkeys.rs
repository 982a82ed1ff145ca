//! Passkeys (docs/src/pool/mfa.md, `pool.passkeys = true`): WebAuthn discoverable credentials, added and
//! removed by a signed-in user at `/passkeys`, and used from the sign-in page without a user
//! name. Each ceremony's challenge is random and travels sealed (authenticated encryption with
//! the key ring) in this browser's cookie, so it is bound to the browser that asked for it and
//! handing one out — which anyone may do on the sign-in page — writes nothing; it lives five
//! minutes, and once a response to it has verified its id is remembered until it expires, so
//! it is used once only. The RP id is the host of the pool's
//! `public_url`; the origin must be the pool's own. Only these pages load script
//! (`assets/passkeys.js`, same origin), which is all the WebAuthn API needs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::webauthn::{self, Expected};
use crate::http::body::Body;
use crate::pool::config::MfaMode;
use crate::pool::i18n::t;
use crate::pool::op::json_response;
use crate::pool::pages::password::unavailable;
use crate::pool::pages::{Page, cookie_value, login, redirect};
use crate::pool::store::{Passkey, UserStatus};
use crate::pool::{Pool, Ready, Req, now};

const CHALLENGE_COOKIE: &str = "portcullis_pool_webauthn";
const CHALLENGE_SECONDS: i64 = 300;
const REGISTER: &str = "register";
const SIGN_IN: &str = "sign-in";

/// (origin, RP id) of the pool: `https://login.example.com`, `login.example.com`.
fn relying_party(pool: &Pool) -> Option<(String, String)> {
    let u = url::Url::parse(&pool.issuer).ok()?;
    Some((u.origin().ascii_serialization(), u.host_str()?.to_string()))
}

fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}

fn json_unavailable(req: &Req<'_>, e: &dyn std::fmt::Display) -> Response<Body> {
    tracing::error!(error = %e, request_id = req.rid, "pool database error at passkeys");
    json_error(StatusCode::SERVICE_UNAVAILABLE, t(req.lang, "unavailable"))
}

fn random_b64(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("system RNG available");
    URL_SAFE_NO_PAD.encode(b)
}

/// A ceremony's challenge as the browser holds it: sealed (authenticated encryption with the
/// key ring) in its cookie, so handing one out writes nothing.
#[derive(serde::Serialize, serde::Deserialize)]
struct Challenge {
    /// Random id: what is remembered once the challenge has been answered (single use).
    id: String,
    purpose: String,
    challenge: String,
    /// The user a registration is for ("" for sign-in).
    sub: String,
    exp: i64,
}

const CHALLENGE_SEAL: &str = "pool-webauthn-challenge";

/// Hands out a challenge for `purpose`, bound to this browser by a fresh sealed cookie.
fn new_challenge(pool: &Pool, purpose: &str, sub: &str) -> (String, String) {
    let c = Challenge {
        id: pool.sealer.random_hex(16),
        purpose: purpose.to_string(),
        challenge: random_b64(32),
        sub: sub.to_string(),
        exp: now() + CHALLENGE_SECONDS,
    };
    let sealed = pool.seal_b64(CHALLENGE_SEAL, &serde_json::to_vec(&c).unwrap_or_default());
    (
        c.challenge,
        pool.cookie(CHALLENGE_COOKIE, &sealed, CHALLENGE_SECONDS),
    )
}

/// This browser's live challenge for `purpose`, if any. It still has to be spent
/// ([`spend_challenge`]) once the response to it has verified.
fn open_challenge(pool: &Pool, req: &Req<'_>, purpose: &str) -> Option<Challenge> {
    let raw = cookie_value(req, CHALLENGE_COOKIE)?;
    let c: Challenge = serde_json::from_slice(&pool.open_b64(CHALLENGE_SEAL, raw)?).ok()?;
    (c.purpose == purpose && c.exp >= now()).then_some(c)
}

/// Marks a verified challenge used: `Ok(false)` when it already was (a replay). Only
/// responses that verified write here, so the table holds no more than real ceremonies of
/// the last five minutes.
async fn spend_challenge(
    ready: &Ready,
    c: &Challenge,
) -> Result<bool, crate::pool::store::StoreError> {
    ready
        .store
        .spend_challenge(&c.id, &c.purpose, c.exp, now())
        .await
}

fn with_cookie(mut r: Response<Body>, cookie: &str) -> Response<Body> {
    if let Ok(v) = http::HeaderValue::from_str(cookie) {
        r.headers_mut().append(http::header::SET_COOKIE, v);
    }
    r
}

fn decode_field(req: &Req<'_>, name: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(req.field(name)).ok()
}

/// "Sign in first, then come back", for the pages of a signed-in user.
fn sign_in_first(pool: &Pool, req: &Req<'_>) -> Response<Body> {
    pool.pages.message(
        pool,
        req,
        StatusCode::UNAUTHORIZED,
        "passkeys_title",
        "passkeys_sign_in_first",
    )
}

/// `GET /passkeys`: the signed-in user's passkeys, with add and remove.
pub async fn show(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    let Some((user, _)) = pool.session_user(ready, req).await else {
        return sign_in_first(pool, req);
    };
    let keys = match ready.store.passkeys_of(&user.sub).await {
        Ok(k) => k,
        Err(e) => return unavailable(pool, req, &e),
    };
    let notice = match req.param("notice") {
        n @ ("passkey_added" | "passkey_removed") => t(req.lang, n).to_string(),
        _ => String::new(),
    };
    page(pool, req, StatusCode::OK, &keys, notice, Vec::new())
}

fn page(
    pool: &Pool,
    req: &Req<'_>,
    status: StatusCode,
    keys: &[Passkey],
    notice: String,
    errors: Vec<String>,
) -> Response<Body> {
    let list: Vec<Value> = keys
        .iter()
        .map(|k| {
            let day = httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(k.created_at.max(0) as u64),
            );
            json!({ "id": k.id, "name": k.name, "created": day })
        })
        .collect();
    let p = Page {
        notice,
        errors,
        extra: json!({ "passkeys": list }),
        ..Page::default()
    };
    pool.pages
        .render(pool, req, status, "passkeys.html", "passkeys_title", p)
}

/// `POST /passkeys/options`: creation options for `navigator.credentials.create()`.
pub async fn register_options(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    if !pool.csrf_ok(req) {
        return json_error(StatusCode::FORBIDDEN, t(req.lang, "csrf"));
    }
    let Some((user, _)) = pool.session_user(ready, req).await else {
        return json_error(
            StatusCode::UNAUTHORIZED,
            t(req.lang, "passkeys_sign_in_first"),
        );
    };
    let Some((_, rp_id)) = relying_party(pool) else {
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, "no relying-party id");
    };
    let existing = match ready.store.passkeys_of(&user.sub).await {
        Ok(k) => k,
        Err(e) => return json_unavailable(req, &e),
    };
    let (challenge, cookie) = new_challenge(pool, REGISTER, &user.sub);
    let options = json!({
        "challenge": challenge,
        "rp": { "id": rp_id, "name": pool.cfg.ui.title },
        "user": {
            "id": URL_SAFE_NO_PAD.encode(user.sub.as_bytes()),
            "name": user.username,
            "displayName": user.email().unwrap_or(&user.username),
        },
        "pubKeyCredParams": [
            { "type": "public-key", "alg": -7 },
            { "type": "public-key", "alg": -8 },
            { "type": "public-key", "alg": -257 }
        ],
        "timeout": CHALLENGE_SECONDS * 1000,
        "attestation": "none",
        "authenticatorSelection": {
            "residentKey": "required",
            "requireResidentKey": true,
            "userVerification": "preferred"
        },
        "excludeCredentials": existing.iter().map(|k| json!({"type": "public-key", "id": k.id})).collect::<Vec<_>>(),
    });
    with_cookie(json_response(StatusCode::OK, &options), &cookie)
}

/// `POST /passkeys/add`: verifies the new credential and stores it.
pub async fn add(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    if !pool.csrf_ok(req) {
        return pool.csrf_failed(req);
    }
    let Some((user, _)) = pool.session_user(ready, req).await else {
        return sign_in_first(pool, req);
    };
    let store = &ready.store;
    let keys = match store.passkeys_of(&user.sub).await {
        Ok(k) => k,
        Err(e) => return unavailable(pool, req, &e),
    };
    let refuse = |why: &dyn std::fmt::Display| {
        tracing::info!(request_id = req.rid, reason = %why, "pool.event" = "passkey_refused", "passkey registration refused");
        page(
            pool,
            req,
            StatusCode::BAD_REQUEST,
            &keys,
            String::new(),
            vec![t(req.lang, "passkey_failed").to_string()],
        )
    };
    let issued = match open_challenge(pool, req, REGISTER) {
        Some(c) if c.sub == user.sub => c,
        _ => return refuse(&"no live challenge for this browser and user"),
    };
    let challenge = issued.challenge.clone();
    let (Some((origin, rp_id)), Some(cd), Some(att)) = (
        relying_party(pool),
        decode_field(req, "client_data"),
        decode_field(req, "attestation_object"),
    ) else {
        return refuse(&"missing or malformed fields");
    };
    let want = Expected {
        challenge: &challenge,
        origin: &origin,
        rp_id: &rp_id,
    };
    let cred = match webauthn::verify_registration(&cd, &att, &want) {
        Ok(c) => c,
        Err(e) => return refuse(&e),
    };
    match spend_challenge(ready, &issued).await {
        Ok(true) => {}
        Ok(false) => return refuse(&"challenge already used"),
        Err(e) => return unavailable(pool, req, &e),
    }
    let name: String = req.field("name").trim().chars().take(64).collect();
    let t0 = now();
    let key = Passkey {
        id: cred.id,
        sub: user.sub.clone(),
        public_key: cred.public_key,
        sign_count: i64::from(cred.sign_count),
        backup_eligible: cred.backup_eligible,
        name: if name.is_empty() {
            t(req.lang, "passkey_default_name").to_string()
        } else {
            name
        },
        created_at: t0,
        last_used_at: t0,
    };
    match store.add_passkey(&key).await {
        Ok(()) => {}
        Err(crate::pool::store::StoreError::Exists(_)) => {
            return refuse(&"credential id already registered");
        }
        Err(e) => return unavailable(pool, req, &e),
    }
    tracing::info!(request_id = req.rid, sub = %user.sub, "pool.event" = "passkey_added", "passkey added");
    crate::pool::events::factors_changed(
        &pool.cfg,
        store,
        &user,
        crate::pool::events::FactorChange::PasskeyAdded,
        req.lang,
    )
    .await;
    redirect(
        &format!("{}/passkeys?notice=passkey_added", pool.base),
        &[pool.cookie(CHALLENGE_COOKIE, "", 0)],
    )
}

/// `POST /passkeys/remove`.
pub async fn remove(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    if !pool.csrf_ok(req) {
        return pool.csrf_failed(req);
    }
    let Some((user, _)) = pool.session_user(ready, req).await else {
        return sign_in_first(pool, req);
    };
    match ready.store.remove_passkey(&user.sub, req.field("id")).await {
        Ok(_) => {
            tracing::info!(request_id = req.rid, sub = %user.sub, "pool.event" = "passkey_removed", "passkey removed");
            crate::pool::events::factors_changed(
                &pool.cfg,
                &ready.store,
                &user,
                crate::pool::events::FactorChange::PasskeyRemoved,
                req.lang,
            )
            .await;
            redirect(
                &format!("{}/passkeys?notice=passkey_removed", pool.base),
                &[],
            )
        }
        Err(e) => unavailable(pool, req, &e),
    }
}

/// `POST /passkeys/login/options`: request options for `navigator.credentials.get()` — no
/// user name, no credential list (discoverable credentials).
pub async fn sign_in_options(pool: &Pool, _ready: &Ready, req: &Req<'_>) -> Response<Body> {
    if !pool.csrf_ok(req) {
        return json_error(StatusCode::FORBIDDEN, t(req.lang, "csrf"));
    }
    let Some((_, rp_id)) = relying_party(pool) else {
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, "no relying-party id");
    };
    // Nothing is written: the challenge travels sealed in the cookie.
    let (challenge, cookie) = new_challenge(pool, SIGN_IN, "");
    with_cookie(
        json_response(
            StatusCode::OK,
            &json!({
                "challenge": challenge,
                "rpId": rp_id,
                "timeout": CHALLENGE_SECONDS * 1000,
                "userVerification": "preferred",
            }),
        ),
        &cookie,
    )
}

/// `POST /passkeys/login`: verifies the assertion and signs the passkey's user in.
pub async fn sign_in(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    if !pool.csrf_ok(req) {
        return pool.csrf_failed(req);
    }
    let Ok(areq) = pool.open_request(req) else {
        return super::invalid_request(pool, req);
    };
    let store = &ready.store;
    let refuse = |why: &dyn std::fmt::Display| {
        tracing::info!(request_id = req.rid, reason = %why, "pool.event" = "passkey_sign_in_failed", "passkey sign-in refused");
        login::error_page(
            pool,
            req,
            StatusCode::UNAUTHORIZED,
            t(req.lang, "passkey_failed").to_string(),
        )
    };
    let Some(issued) = open_challenge(pool, req, SIGN_IN) else {
        return refuse(&"no live challenge for this browser");
    };
    let challenge = issued.challenge.clone();
    let (Some((origin, rp_id)), Some(cd), Some(ad), Some(sig)) = (
        relying_party(pool),
        decode_field(req, "client_data"),
        decode_field(req, "authenticator_data"),
        decode_field(req, "signature"),
    ) else {
        return refuse(&"missing or malformed fields");
    };
    let key = match store.passkey(req.field("credential_id")).await {
        Ok(Some(k)) => k,
        Ok(None) => return refuse(&"unknown credential"),
        Err(e) => return unavailable(pool, req, &e),
    };
    // The user handle, when the authenticator returns one, must be the key's owner.
    let handle = req.field("user_handle");
    if !handle.is_empty()
        && URL_SAFE_NO_PAD.decode(handle).ok().as_deref() != Some(key.sub.as_bytes())
    {
        return refuse(&"user handle does not match the credential");
    }
    let Ok(cose) = URL_SAFE_NO_PAD.decode(&key.public_key) else {
        return refuse(&"stored key is corrupt");
    };
    let want = Expected {
        challenge: &challenge,
        origin: &origin,
        rp_id: &rp_id,
    };
    let stored = u32::try_from(key.sign_count).unwrap_or(u32::MAX);
    let a = match webauthn::verify_assertion(&cd, &ad, &sig, &cose, stored, &want) {
        Ok(a) => a,
        Err(e) => return refuse(&e),
    };
    // Single use: a verified response spends its challenge; a second one is a replay.
    match spend_challenge(ready, &issued).await {
        Ok(true) => {}
        Ok(false) => return refuse(&"challenge already used"),
        Err(e) => return unavailable(pool, req, &e),
    }
    // Compare-and-set: two parallel uses of one counter value cannot both succeed.
    match store
        .touch_passkey(&key.id, key.sign_count, i64::from(a.sign_count), now())
        .await
    {
        Ok(true) => {}
        Ok(false) => return refuse(&"sign counter changed concurrently"),
        Err(e) => return unavailable(pool, req, &e),
    }
    let user = match store.user_by_sub(&key.sub).await {
        Ok(Some(u)) => u,
        Ok(None) => return refuse(&"the credential's user no longer exists"),
        Err(e) => return unavailable(pool, req, &e),
    };
    if user.status != UserStatus::Confirmed {
        return login::error_page(
            pool,
            req,
            StatusCode::FORBIDDEN,
            t(req.lang, "disabled").to_string(),
        );
    }
    if pool.cfg.mfa == MfaMode::Required && !a.user_verified {
        return login::error_page(
            pool,
            req,
            StatusCode::UNAUTHORIZED,
            t(req.lang, "passkey_needs_uv").to_string(),
        );
    }
    // RFC 8176: a synced (backup-eligible) passkey is a software key, else a hardware key;
    // with user verification (PIN, biometrics) it is two factors in one.
    let mut amr = vec![if a.backup_eligible { "swk" } else { "hwk" }.to_string()];
    if a.user_verified {
        amr.push("mfa".to_string());
    }
    pool.start_session(
        ready,
        req,
        &user,
        areq,
        &amr,
        vec![pool.cookie(CHALLENGE_COOKIE, "", 0)],
    )
    .await
}
