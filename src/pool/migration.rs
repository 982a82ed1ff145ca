//! Lazy migration from an old system (`pool.migration`, docs/src/pool/import-export.md; Cognito's "migrate user"
//! trigger without Lambda): when a sign-in names a user the pool does not have, the pool POSTs
//! `{"username", "password"}` to the hook with `Authorization: Bearer {secret}`. A 200 answer
//! `{"attributes": {...}}` creates the user, CONFIRMED, with that password hashed by the pool
//! (Argon2id); anything else — another status, a redirect (never followed), a timeout, a body
//! that is not that JSON, attributes the pool refuses, a name or email already taken — is an
//! ordinary failed sign-in, indistinguishable on the page from a wrong password.
//!
//! Never logged: the password, the request body, the secret. Logged: the outcome class.

use serde_json::{Map, Value, json};

use super::config::{MigrationConfig, PoolConfig};
use super::store::{NewUser, Store, User, UserStatus};
use super::{attributes, now, password, username};
use crate::auth::http_client::{HttpError, IdpClient};

/// The configured hook and its HTTP client (no redirects, the configured timeout).
pub struct Hook {
    cfg: MigrationConfig,
    http: IdpClient,
}

/// Why a migration did not happen (for the log; the user only sees a failed sign-in).
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("the migration hook could not be reached or timed out: {0}")]
    Unreachable(String),
    #[error("the migration hook answered {0}")]
    Refused(u16),
    #[error("the migration hook's answer is not {{\"attributes\": {{...}}}}")]
    BadAnswer,
    #[error("the migrated user is not acceptable: {0}")]
    Invalid(String),
    #[error("cannot store the migrated user: {0}")]
    Store(String),
}

impl Hook {
    pub fn new(cfg: &MigrationConfig) -> Hook {
        Hook {
            http: IdpClient::new(cfg.timeout),
            cfg: cfg.clone(),
        }
    }

    /// Asks the hook about `login` / `pw` and, when it vouches for them, creates the user.
    pub async fn migrate(
        &self,
        pool: &PoolConfig,
        store: &Store,
        login: &str,
        pw: &str,
    ) -> Result<User, MigrationError> {
        let attrs = self.ask(login, pw).await?;
        create(pool, store, login, pw, attrs).await
    }

    async fn ask(&self, login: &str, pw: &str) -> Result<Map<String, Value>, MigrationError> {
        let req = self
            .http
            .reqwest()
            .post(self.cfg.url.clone())
            .bearer_auth(self.cfg.secret.expose())
            .json(&json!({"username": login, "password": pw}))
            .build()
            .map_err(|e| MigrationError::Unreachable(e.without_url().to_string()))?;
        // The whole exchange, body included, within the timeout (the client's own timeout
        // covers it too; this bounds a slow trickle of body bytes as well).
        let resp = tokio::time::timeout(self.cfg.timeout, self.http.execute(req))
            .await
            .map_err(|_| MigrationError::Unreachable("timed out".into()))?
            .map_err(|e| {
                MigrationError::Unreachable(match e {
                    HttpError::Request(r) if r.is_timeout() => "timed out".into(),
                    HttpError::Request(r) if r.is_connect() => "cannot connect".into(),
                    HttpError::Request(r) => r.without_url().to_string(),
                    HttpError::TooLarge => "the answer is too large".into(),
                    HttpError::Build(m) => m,
                })
            })?;
        if resp.status() != http::StatusCode::OK {
            return Err(MigrationError::Refused(resp.status().as_u16()));
        }
        match serde_json::from_slice::<Value>(resp.body()) {
            Ok(Value::Object(mut o)) => match o.remove("attributes") {
                Some(Value::Object(a)) => Ok(a),
                _ => Err(MigrationError::BadAnswer),
            },
            _ => Err(MigrationError::BadAnswer),
        }
    }
}

/// Creates the user the hook vouched for, with the pool's own checks (user name, required and
/// valid attributes, phone numbers as E.164).
async fn create(
    pool: &PoolConfig,
    store: &Store,
    login: &str,
    pw: &str,
    attrs: Map<String, Value>,
) -> Result<User, MigrationError> {
    let name = username::validate(login)
        .map_err(|_| MigrationError::Invalid("the user name is not acceptable".into()))?;
    let mut plain = Vec::new();
    let mut verified = Vec::new();
    for (k, v) in attrs {
        let text = match v {
            Value::String(s) => s,
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            _ => return Err(MigrationError::Invalid(format!("{k}: not a string"))),
        };
        match k.as_str() {
            "email_verified" | "phone_number_verified" => match text.as_str() {
                "true" | "false" => verified.push((k, text == "true")),
                _ => return Err(MigrationError::Invalid(format!("{k}: not true or false"))),
            },
            _ => plain.push((k, text)),
        }
    }
    let mut map =
        attributes::validate(&plain, &pool.required_attributes, pool.default_phone_region)
            .map_err(|errors| {
                let names: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
                MigrationError::Invalid(format!("attributes {}", names.join(", ")))
            })?;
    for (flag, claim) in [
        ("email_verified", "email"),
        ("phone_number_verified", "phone_number"),
    ] {
        if map.contains_key(claim) {
            let v = verified.iter().any(|(k, v)| k == flag && *v);
            map.insert(flag.into(), Value::Bool(v));
        }
    }
    let hash = password::hash(pw)
        .await
        .map_err(|e| MigrationError::Store(e.to_string()))?;
    let sub = uuid::Uuid::new_v4().to_string();
    store
        .create_user(
            &NewUser {
                sub: sub.clone(),
                username: name,
                status: UserStatus::Confirmed,
                password_hash: hash,
                attributes: map,
            },
            now(),
        )
        .await
        .map_err(|e| MigrationError::Store(e.to_string()))?;
    store
        .user_by_sub(&sub)
        .await
        .map_err(|e| MigrationError::Store(e.to_string()))?
        .ok_or_else(|| MigrationError::Store("the new user vanished".into()))
}
