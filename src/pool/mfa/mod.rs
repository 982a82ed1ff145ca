//! Multi-factor sign-in (docs/src/pool/mfa.md): TOTP with recovery codes, passkeys, and the `amr`
//! (RFC 8176) that records how a session was authenticated and that every ID token carries.
//!
//! Invariants: no pool session exists until every factor the pool asks for was shown — after
//! the password, a browser holds only a short-lived sealed "password verified" cookie bound to
//! the user; TOTP secrets are stored sealed with the key ring (a database dump cannot generate
//! codes) and recovery codes hashed; a TOTP code is accepted once (the last step used only
//! moves forward); wrong codes count toward the same lockout key as wrong passwords, so the
//! admin unlock clears both. Never log a code or a secret.

pub mod cbor;
pub mod pages;
pub mod passkeys;
pub mod recovery;
pub mod totp;
pub mod webauthn;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::config::MfaMode;
use super::pages::{SESSION_COOKIE, cookie_value, redirect};
use super::store::User;
use super::{Pool, Ready, Req, now};
use crate::http::body::Body;

/// `amr` of a password-only sign-in.
pub const PWD: &[&str] = &["pwd"];
/// `amr` of a password plus a one-time code (TOTP or a recovery code, both one-time passwords).
pub const PWD_OTP: &[&str] = &["pwd", "otp", "mfa"];

/// Owned `amr` values.
pub fn amr(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

/// The cookie that carries "the password was right" to the second-factor pages.
pub const PENDING_COOKIE: &str = "portcullis_pool_mfa";
/// How long a browser has between the password and the second factor.
const PENDING_SECONDS: i64 = 600;

#[derive(Serialize, Deserialize)]
struct Pending {
    sub: String,
    exp: i64,
}

impl Pool {
    fn seal_b64(&self, purpose: &str, plain: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(self.sealer.seal(purpose.as_bytes(), plain))
    }

    fn open_b64(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        self.sealer
            .open(purpose.as_bytes(), &URL_SAFE_NO_PAD.decode(sealed).ok()?)
    }

    pub(crate) fn pending_cookie(&self, sub: &str) -> String {
        let p = Pending {
            sub: sub.to_string(),
            exp: now() + PENDING_SECONDS,
        };
        let v = self.seal_b64(
            "pool-mfa-pending",
            &serde_json::to_vec(&p).unwrap_or_default(),
        );
        self.cookie(PENDING_COOKIE, &v, PENDING_SECONDS)
    }

    fn clear_pending_cookie(&self) -> String {
        self.cookie(PENDING_COOKIE, "", 0)
    }

    /// The user whose password this browser just proved, while that is recent.
    async fn pending_user(&self, ready: &Ready, req: &Req<'_>) -> Option<User> {
        let raw = cookie_value(req, PENDING_COOKIE)?;
        let p: Pending = serde_json::from_slice(&self.open_b64("pool-mfa-pending", raw)?).ok()?;
        if p.exp < now() {
            return None;
        }
        let user = ready.store.user_by_sub(&p.sub).await.ok()??;
        (user.status == super::store::UserStatus::Confirmed).then_some(user)
    }

    /// Seals a TOTP secret for storage, bound to its user (a sealed secret copied onto another
    /// user's row does not open).
    fn seal_totp(&self, sub: &str, secret: &[u8]) -> String {
        self.seal_b64(&format!("pool-totp:{sub}"), secret)
    }

    fn open_totp(&self, sub: &str, sealed: &str) -> Option<Vec<u8>> {
        self.open_b64(&format!("pool-totp:{sub}"), sealed)
    }
}

/// The path to a second-factor page, carrying the pending authorization request (`req`).
fn carry(pool: &Pool, req: &Req<'_>, path: &str) -> String {
    let q = req.value("req");
    if q.is_empty() {
        format!("{}{path}", pool.base)
    } else {
        format!("{}{path}?req={}", pool.base, super::pages::login::enc(q))
    }
}

/// Called once the password was right: `Some` sends the browser to the TOTP challenge (user has
/// TOTP) or to set-up (`required` and user has none); `None` lets the sign-in finish.
pub async fn gate(
    pool: &Pool,
    ready: &Ready,
    req: &Req<'_>,
    user: &User,
) -> Option<Response<Body>> {
    if pool.cfg.mfa == MfaMode::Off {
        return None;
    }
    let enrolled = match ready.store.totp_secret(&user.sub).await {
        Ok(s) => s.is_some(),
        Err(e) => return Some(super::pages::password::unavailable(pool, req, &e)),
    };
    let path = match (enrolled, pool.cfg.mfa) {
        (true, _) => "/mfa",
        (false, MfaMode::Required) => "/mfa/setup",
        (false, _) => return None,
    };
    Some(redirect(
        &carry(pool, req, path),
        &[pool.pending_cookie(&user.sub)],
    ))
}

/// A `req` parameter that is forged or expired.
fn invalid_request(pool: &Pool, req: &Req<'_>) -> Response<Body> {
    pool.pages.message(
        pool,
        req,
        StatusCode::BAD_REQUEST,
        "error_title",
        "invalid_request",
    )
}

/// The `amr` of this browser's pool session (`["pwd"]` when none was recorded).
pub async fn session_amr(ready: &Ready, req: &Req<'_>) -> Vec<String> {
    let recorded = match cookie_value(req, SESSION_COOKIE) {
        Some(id) => ready.store.session_amr(id).await.ok().flatten(),
        None => None,
    };
    recorded.unwrap_or_else(|| amr(PWD))
}

/// Whether a pool session signed in with `amr` may be reused (single sign-on) under the current
/// `pool.mfa`: with `required`, only a multi-factor one.
pub fn session_suffices(pool: &Pool, amr: &[String]) -> bool {
    pool.cfg.mfa != MfaMode::Required || amr.iter().any(|a| a == "mfa")
}
