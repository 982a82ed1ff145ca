//! Sessions: what a signed-in user carries ([`Session`]), sealed with an AEAD key ring
//! ([`keyring`]) into ALB-style cookie shards ([`shards`]) or kept in Redis behind a ticket
//! ([`store`]), revocable ([`revocation`]). Anything that does not open —
//! tampered, truncated, reordered, foreign, expired — is "no session", never an error.

pub mod cache;
pub mod keyring;
pub mod principal;
pub mod redis;
pub mod revocation;
pub mod shards;
pub mod store;

use serde::{Deserialize, Serialize};

/// A signed-in user's session. `expires_at` is enforced from inside the sealed value, never
/// from the cookie's Max-Age (a client can keep a cookie as long as it likes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Session {
    /// Random id: keys refresh de-duplication and caches; never shown to anyone.
    pub sid: String,
    pub sub: String,
    pub provider: String,
    /// ID token claims with the userinfo claims merged over them.
    pub claims: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// Creation time in milliseconds, so a revocation of the user a moment before a new
    /// sign-in never ends the new session (0 in sessions sealed before it existed).
    #[serde(default)]
    pub created_ms: i64,
    /// The IdP's session id (`sid` of the ID token), for back-channel logout by `sid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_sid: Option<String>,
}

impl Session {
    /// The session itself has run out (`session.timeout`).
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }

    /// When the session was created, in milliseconds.
    pub fn created_ms(&self) -> i64 {
        if self.created_ms > 0 {
            self.created_ms
        } else {
            self.created_at * 1000
        }
    }

    /// The access token needs a refresh (given a margin in seconds).
    pub fn access_token_expired(&self, now: i64, margin: i64) -> bool {
        self.access_expires_at.is_some_and(|at| now + margin >= at)
    }

    pub fn email(&self) -> Option<&str> {
        self.claims.get("email").and_then(|v| v.as_str())
    }

    /// `email_verified` is false only when the IdP said so (missing counts as not false).
    pub fn email_verified_not_false(&self) -> bool {
        match self.claims.get("email_verified") {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s != "false",
            _ => true,
        }
    }

    /// Group names from the named claim (array of strings, or a single string).
    pub fn groups(&self, claim: &str) -> Vec<&str> {
        match self.claims.get(claim) {
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(|v| v.as_str()).collect()
            }
            Some(serde_json::Value::String(s)) => vec![s.as_str()],
            _ => vec![],
        }
    }
}

/// Current Unix time in seconds.
/// Unix seconds at `at`, from a per-thread (wall clock, monotonic clock) pair re-read every
/// 10 s: the request path already has an `Instant`, so this saves reading the wall clock per
/// request. Wall-clock steps are picked up within 10 s.
pub fn unix_at(at: std::time::Instant) -> i64 {
    thread_local! {
        static BASE: std::cell::Cell<Option<(std::time::Instant, i64)>> =
            const { std::cell::Cell::new(None) };
    }
    BASE.with(|b| match b.get() {
        Some((i, u)) if at >= i && at.duration_since(i).as_secs() < 10 => {
            u + at.duration_since(i).as_secs() as i64
        }
        _ => {
            let u = now_unix();
            b.set(Some((at, u)));
            u
        }
    })
}

/// Current Unix time in milliseconds.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
