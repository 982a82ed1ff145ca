//! The pool as an OpenID Provider with Back-Channel Logout 1.0: when a user's pool sessions
//! end (hosted sign-out, `users sign-out`, `disable`, `delete`, password reset), every
//! `[[pool.clients]]` with a `backchannel_logout_uri` that got tokens for that user — in that
//! pool session, for a single sign-out — receives a logout token (§2.4: `iss`, `aud` = its
//! `client_id`, `iat`, `exp`, `jti`, the back-channel logout event, `sub` and `sid`, no
//! `nonce`; JWS header `typ` = `logout+jwt`, signed with the pool's keys) as a form POST (§2.5).
//!
//! Delivery never holds up the user's page or the admin command: each token is sent from a
//! spawned task, retried with backoff on network errors, 5xx and 429 (a fresh `jti` each time,
//! so a retry is never a replay), and given up after [`BACKOFF`] is spent. A 4xx other than
//! 429 is final: the receiver refused the token and would refuse it again. The CLI, whose
//! process ends when its command does, waits for deliveries with [`Backchannel::settle`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use url::Url;

use super::config::PoolConfig;
use super::jwt::{Keys, SigningAlg};
use super::now;
use super::store::{Store, StoreError};
use crate::auth::http_client::IdpClient;

/// The event claim of a logout token (Back-Channel Logout 1.0 §2.4).
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The JWS `typ` of a logout token (§2.4, RFC 8417 style explicit typing).
pub const TOKEN_TYPE: &str = "logout+jwt";
/// Lifetime of a logout token.
const TOKEN_TTL: i64 = 120;
/// One delivery attempt, connect to last byte.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// Pauses before the retries: five attempts within about 8 s plus their timeouts.
const BACKOFF: [Duration; 4] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// How long `portcullis pool …` waits for its deliveries before exiting.
pub const CLI_WAIT: Duration = Duration::from_secs(5);

/// A client that holds a session of `sub` (the pool session `sid`, when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutTarget {
    pub client_id: String,
    pub sub: String,
    pub sid: Option<String>,
}

pub struct Backchannel {
    issuer: String,
    alg: SigningAlg,
    receivers: HashMap<String, Url>,
    http: IdpClient,
    /// The pool's signing keys, loaded from the database on the first delivery.
    keys: tokio::sync::OnceCell<Keys>,
    in_flight: parking_lot::Mutex<Vec<JoinHandle<()>>>,
}

impl Backchannel {
    /// `None` when no client has a `backchannel_logout_uri`.
    pub fn new(issuer: &str, pool: &PoolConfig) -> Option<Arc<Backchannel>> {
        let receivers: HashMap<String, Url> = pool
            .clients
            .iter()
            .filter_map(|c| Some((c.client_id.clone(), c.backchannel_logout_uri.clone()?)))
            .collect();
        if receivers.is_empty() {
            return None;
        }
        Some(Arc::new(Backchannel {
            issuer: issuer.to_string(),
            alg: pool.signing_alg,
            receivers,
            http: IdpClient::new(ATTEMPT_TIMEOUT),
            keys: tokio::sync::OnceCell::new(),
            in_flight: parking_lot::Mutex::new(Vec::new()),
        }))
    }

    /// Whether this client has a back-channel logout URI.
    pub fn receives(&self, client_id: &str) -> bool {
        self.receivers.contains_key(client_id)
    }

    /// Starts one delivery task per target and returns at once.
    pub(crate) fn dispatch(self: &Arc<Self>, store: &Store, targets: Vec<LogoutTarget>) {
        let mut in_flight = self.in_flight.lock();
        in_flight.retain(|h| !h.is_finished());
        for target in targets {
            let (bc, store) = (self.clone(), store.clone());
            in_flight.push(tokio::spawn(async move {
                bc.deliver(&store, &target).await;
            }));
        }
    }

    /// Waits up to `within` for every delivery started so far; true when all are done.
    pub async fn settle(&self, within: Duration) -> bool {
        let handles: Vec<JoinHandle<()>> = std::mem::take(&mut *self.in_flight.lock());
        let all = async {
            for h in handles {
                let _ = h.await;
            }
        };
        tokio::time::timeout(within, all).await.is_ok()
    }

    async fn keys(&self, store: &Store) -> Result<&Keys, StoreError> {
        let keys = self
            .keys
            .get_or_try_init(|| Keys::load(store, self.alg, now()))
            .await?;
        // After a rotation, logout tokens are signed with the new key too.
        keys.refresh(store).await;
        Ok(keys)
    }

    async fn deliver(&self, store: &Store, t: &LogoutTarget) {
        let Some(uri) = self.receivers.get(&t.client_id) else {
            return;
        };
        let keys = match self.keys(store).await {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, client_id = %t.client_id, "pool.event" = "backchannel_logout_failed", "cannot sign a logout token");
                return;
            }
        };
        let pauses = std::iter::once(Duration::ZERO).chain(BACKOFF);
        for (attempt, pause) in pauses.enumerate() {
            tokio::time::sleep(pause).await;
            let token = keys.sign_typed(&logout_claims(&self.issuer, t, now()), TOKEN_TYPE);
            let outcome = self.post(uri, &token).await;
            let attempt = attempt + 1;
            match outcome {
                Ok(status) if status.is_success() => {
                    tracing::info!(client_id = %t.client_id, attempt, "pool.event" = "backchannel_logout", "logout token delivered");
                    return;
                }
                Ok(status)
                    if status.is_client_error()
                        && status != reqwest::StatusCode::TOO_MANY_REQUESTS =>
                {
                    tracing::warn!(client_id = %t.client_id, attempt, status = status.as_u16(), "pool.event" = "backchannel_logout_failed", "the client refused the logout token");
                    return;
                }
                Ok(status) => {
                    tracing::warn!(client_id = %t.client_id, attempt, status = status.as_u16(), "logout token not accepted yet; retrying");
                }
                Err(e) => {
                    tracing::warn!(client_id = %t.client_id, attempt, error = %e, "logout token not delivered yet; retrying");
                }
            }
        }
        tracing::error!(client_id = %t.client_id, "pool.event" = "backchannel_logout_failed", "logout token not delivered: retries exhausted");
    }

    async fn post(&self, uri: &Url, token: &str) -> Result<reqwest::StatusCode, reqwest::Error> {
        let resp = self
            .http
            .reqwest()
            .post(uri.as_str())
            .header(reqwest::header::CACHE_CONTROL, "no-store")
            .form(&[("logout_token", token)])
            .send()
            .await?;
        Ok(resp.status())
    }
}

/// The claims of a logout token (Back-Channel Logout 1.0 §2.4).
pub fn logout_claims(issuer: &str, t: &LogoutTarget, now: i64) -> Value {
    let mut c = json!({
        "iss": issuer,
        "aud": t.client_id,
        "iat": now,
        "exp": now + TOKEN_TTL,
        "jti": uuid::Uuid::new_v4().to_string(),
        "events": { EVENT: {} },
        "sub": t.sub,
    });
    if let Some(sid) = &t.sid {
        c["sid"] = json!(sid);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logout_claims_follow_section_2_4() {
        let t = LogoutTarget {
            client_id: "app".into(),
            sub: "u-1".into(),
            sid: Some("s".repeat(32)),
        };
        let c = logout_claims("https://p.test/oauth2/pool", &t, 1000);
        assert_eq!(c["iss"], "https://p.test/oauth2/pool");
        assert_eq!(c["aud"], "app");
        assert_eq!(c["iat"], 1000);
        assert_eq!(c["exp"], 1000 + TOKEN_TTL);
        assert_eq!(c["events"][EVENT], json!({}));
        assert_eq!(c["sub"], "u-1");
        assert_eq!(c["sid"], "s".repeat(32));
        assert!(c.get("nonce").is_none());
        let again = logout_claims("https://p.test/oauth2/pool", &t, 1000);
        assert_ne!(c["jti"], again["jti"], "every token has its own jti");
        let no_sid = LogoutTarget { sid: None, ..t };
        assert!(logout_claims("i", &no_sid, 0).get("sid").is_none());
    }
}
