//! OpenID Connect Back-Channel Logout 1.0, as a relying party: `POST
//! /oauth2/backchannel-logout` with a `logout_token`. The token is validated per §2.6 — signed
//! by a key of the issuing provider's JWKS (same algorithms as ID tokens), `iss` a configured
//! provider, `aud` its `client_id`, `iat` present (at most 60 s ahead, at most 10 minutes
//! old), `exp` present and not passed, `jti` never seen before (the replay cache is shared
//! through Redis when configured), `events` holding the back-channel logout event, `sid`
//! and/or `sub`, and no `nonce` — then the sessions it names end on every replica: with a
//! `sid`, those made from that IdP session; with only a `sub`, every session of that user at
//! that provider. Valid: 200; anything else: 400 `{"error": "invalid_request"}`; both
//! `Cache-Control: no-store`.

use std::collections::HashMap;

use http::{HeaderValue, Response, StatusCode, header};
use parking_lot::Mutex;
use serde_json::{Map, Value};

use super::Auth;
use crate::http::body::{self, Body};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Largest logout request body read.
pub const MAX_BODY: usize = 16 * 1024;
/// Clock skew tolerated for `iat` in the future.
const IAT_AHEAD: i64 = 60;
/// Oldest `iat` accepted (and how long a `jti` is remembered).
const MAX_AGE: i64 = 600;

/// `jti`s seen, when no Redis is shared (this process only).
#[derive(Default)]
pub struct SeenJtis {
    seen: Mutex<HashMap<String, i64>>,
}

impl SeenJtis {
    /// True the first time a `jti` is offered (within [`MAX_AGE`]).
    fn first(&self, key: &str, now: i64) -> bool {
        let mut seen = self.seen.lock();
        seen.retain(|_, at| now - *at <= MAX_AGE);
        if seen.contains_key(key) {
            return false;
        }
        seen.insert(key.to_string(), now);
        true
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogoutError {
    #[error("{0}")]
    Invalid(String),
    #[error("the session store is unavailable: {0}")]
    Unavailable(String),
}

fn invalid(why: impl Into<String>) -> LogoutError {
    LogoutError::Invalid(why.into())
}

fn reply(status: StatusCode, v: Value) -> Response<Body> {
    let mut r = Response::new(body::full(v.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    crate::error::security_headers(h);
    r
}

/// The claims of an unverified JWT, only to find out who claims to have issued it.
pub(super) fn unverified_claims(raw: &str) -> Option<Map<String, Value>> {
    use base64::Engine;
    let payload = raw.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub(super) fn aud_contains(claims: &Map<String, Value>, client_id: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(a)) => a == client_id,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    }
}

impl Auth {
    /// `POST /oauth2/backchannel-logout` with the form body already read.
    pub async fn backchannel_logout(&self, form: &[u8], now: i64) -> Response<Body> {
        match self.logout_token(form, now).await {
            Ok(what) => {
                tracing::info!(
                    "auth.decision" = "backchannel_logout",
                    ended = what,
                    "back-channel logout"
                );
                reply(StatusCode::OK, Value::Object(Map::new()))
            }
            Err(LogoutError::Invalid(why)) => {
                tracing::info!("auth.decision" = "backchannel_logout", "auth.reason" = %why, "back-channel logout refused");
                reply(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": "invalid_request", "error_description": why}),
                )
            }
            Err(LogoutError::Unavailable(why)) => {
                tracing::warn!(error = %why, "back-channel logout: session store unavailable");
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({"error": "session_store_unavailable", "error_description": "try again later"}),
                )
            }
        }
    }

    async fn logout_token(&self, form: &[u8], now: i64) -> Result<&'static str, LogoutError> {
        let token = url::form_urlencoded::parse(form)
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| invalid("the logout_token form field is missing"))?;
        let claimed =
            unverified_claims(&token).ok_or_else(|| invalid("logout_token is not a JWT"))?;
        let iss = claimed
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let provider = self
            .providers
            .iter()
            .find(|p| p.cfg.issuer == iss)
            .ok_or_else(|| invalid("iss is not a configured provider"))?;
        let claims = provider
            .verify_jwt(&token)
            .await
            .map_err(|e| invalid(format!("signature: {e}")))?;
        if claims.get("iss").and_then(Value::as_str) != Some(provider.cfg.issuer.as_str()) {
            return Err(invalid("iss does not match"));
        }
        if !aud_contains(&claims, &provider.cfg.client_id) {
            return Err(invalid("aud is not this client"));
        }
        let iat = claims
            .get("iat")
            .and_then(Value::as_i64)
            .ok_or_else(|| invalid("iat is missing"))?;
        if iat > now + IAT_AHEAD {
            return Err(invalid("iat is in the future"));
        }
        if iat < now - MAX_AGE {
            return Err(invalid("iat is too old"));
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or_else(|| invalid("exp is missing"))?;
        if exp <= now {
            return Err(invalid("the token has expired"));
        }
        if claims.contains_key("nonce") {
            return Err(invalid("a logout token must not carry a nonce"));
        }
        match claims
            .get("events")
            .and_then(Value::as_object)
            .and_then(|e| e.get(EVENT))
        {
            Some(Value::Object(_)) => {}
            _ => {
                return Err(invalid(
                    "events does not hold the back-channel logout event",
                ));
            }
        }
        let sid = claims
            .get("sid")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        if sid.is_none() && sub.is_none() {
            return Err(invalid("neither sid nor sub is present"));
        }
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("jti is missing"))?;
        if !self.first_jti(provider.name(), jti, now).await? {
            return Err(invalid("this logout token was already used (jti replay)"));
        }
        let life = self.cfg.session.timeout;
        let ended = match (sid, sub) {
            (Some(sid), _) => self
                .store
                .revoke_idp_session(provider.name(), sid, life)
                .await
                .map(|_| "idp_session"),
            (None, Some(sub)) => self
                .store
                .revoke_subject(provider.name(), sub, life)
                .await
                .map(|_| "subject"),
            (None, None) => unreachable!("checked above"),
        };
        ended.map_err(|e| LogoutError::Unavailable(e.to_string()))
    }

    /// The replay check: shared through Redis when configured, else this process's memory.
    async fn first_jti(&self, provider: &str, jti: &str, now: i64) -> Result<bool, LogoutError> {
        let key = format!("portcullis:logout-jti:{provider}:{jti}");
        match self.store.redis() {
            Some(redis) => {
                let set: Option<String> = redis
                    .query(
                        redis::cmd("SET")
                            .arg(&key)
                            .arg("1")
                            .arg("NX")
                            .arg("EX")
                            .arg(MAX_AGE + IAT_AHEAD),
                    )
                    .await
                    .map_err(|e| LogoutError::Unavailable(e.to_string()))?;
                Ok(set.is_some())
            }
            None => Ok(self.seen_jtis.first(&key, now)),
        }
    }
}
