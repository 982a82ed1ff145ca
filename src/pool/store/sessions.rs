//! Which relying parties hold a session of a user, for back-channel logout (OIDC Back-Channel
//! Logout 1.0). A pool browser session is named by its `sid`: a stable, non-secret value
//! derived from the hash of the session id (never the id, which is the cookie's secret). The
//! `sid` travels from the session through the authorization code into the token *family* id
//! (`{sid}.{uuid}`), so every ID token of the family — after refreshes too — carries it without
//! a lookup, and the families of a user (`token_families`: sub, client) tell which clients got
//! tokens in which pool session.

use std::collections::BTreeSet;
use std::sync::Arc;

use sqlx::Row;

use super::{Store, StoreError, hash_secret};
use crate::pool::backchannel::{Backchannel, LogoutTarget};

/// Hex characters of a `sid`.
const SID_LEN: usize = 32;

/// The `sid` of the pool session whose id hashes to `id_hash`.
pub fn sid_of_hash(id_hash: &str) -> String {
    let mut sid = hash_secret(&format!("portcullis-pool-sid\0{id_hash}"));
    sid.truncate(SID_LEN);
    sid
}

/// The `sid` of the pool session with this id (the cookie value).
pub fn sid_of_session(id: &str) -> String {
    sid_of_hash(&hash_secret(id))
}

/// A new token family id, naming the pool session it was issued in when there is one.
pub fn new_family(sid: Option<&str>) -> String {
    let id = uuid::Uuid::new_v4();
    match sid {
        Some(s) => format!("{s}.{id}"),
        None => id.to_string(),
    }
}

/// The `sid` a family id names (families issued before sids existed name none).
pub fn sid_of_family(family: &str) -> Option<&str> {
    let (sid, _) = family.split_once('.')?;
    (sid.len() == SID_LEN && sid.bytes().all(|b| b.is_ascii_hexdigit())).then_some(sid)
}

impl Store {
    /// Sends logout tokens when this store ends pool sessions (see [`Backchannel`]).
    pub fn with_backchannel(mut self, hook: Option<Arc<Backchannel>>) -> Store {
        self.backchannel = hook;
        self
    }

    /// The clients (with a back-channel logout URI) holding live token families of `sub` —
    /// only those issued in the pool session `sid`, when given — one target per (client, sid).
    /// Best effort: a database error is logged and means no logout tokens, never a failed
    /// sign-out.
    pub(crate) async fn logout_targets(&self, sub: &str, sid: Option<&str>) -> Vec<LogoutTarget> {
        let Some(bc) = &self.backchannel else {
            return Vec::new();
        };
        let rows = match sqlx::query(
            "SELECT client_id, family FROM token_families WHERE sub = $1 AND revoked = 0",
        )
        .bind(sub)
        .fetch_all(&self.db)
        .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot find the clients to send logout tokens to");
                return Vec::new();
            }
        };
        let mut seen = BTreeSet::new();
        for r in rows {
            let (Ok(client_id), Ok(family)) = (
                r.try_get::<String, _>("client_id"),
                r.try_get::<String, _>("family"),
            ) else {
                continue;
            };
            let family_sid = sid_of_family(&family).map(str::to_string);
            if sid.is_some() && family_sid.as_deref() != sid {
                continue;
            }
            if bc.receives(&client_id) {
                seen.insert((client_id, family_sid));
            }
        }
        seen.into_iter()
            .map(|(client_id, sid)| LogoutTarget {
                client_id,
                sub: sub.to_string(),
                sid,
            })
            .collect()
    }

    /// The clients to tell when the pool session `id` (live or expired) ends.
    pub(crate) async fn session_logout_targets(
        &self,
        id: &str,
    ) -> Result<Vec<LogoutTarget>, StoreError> {
        if self.backchannel.is_none() {
            return Ok(Vec::new());
        }
        Ok(match self.web_session_sub(id).await? {
            Some(sub) => self.logout_targets(&sub, Some(&sid_of_session(id))).await,
            None => Vec::new(),
        })
    }

    async fn web_session_sub(&self, id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT sub FROM web_sessions WHERE id_hash = $1")
            .bind(hash_secret(id))
            .fetch_optional(&self.db)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("sub")?),
            None => None,
        })
    }

    /// After one pool session ended: the proxy's sessions made from it end too, everywhere.
    pub(crate) async fn end_proxy_session(&self, id: &str) {
        if let Some(hook) = &self.proxy_sessions
            && let Err(e) = hook.end_idp_session(&sid_of_session(id)).await
        {
            tracing::warn!(error = %e, "the proxy's sessions of a pool session were revoked here but could not be shared through redis");
        }
    }

    /// Starts delivering logout tokens in the background; returns at once.
    pub(crate) fn send_logouts(&self, targets: Vec<LogoutTarget>) {
        if let Some(bc) = &self.backchannel
            && !targets.is_empty()
        {
            bc.dispatch(self, targets);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_carry_the_session_sid() {
        let sid = sid_of_session("0123456789abcdef");
        assert_eq!(sid.len(), SID_LEN);
        assert_eq!(sid, sid_of_hash(&hash_secret("0123456789abcdef")));
        assert_ne!(sid, hash_secret("0123456789abcdef")[..SID_LEN]);
        let family = new_family(Some(&sid));
        assert_eq!(sid_of_family(&family), Some(sid.as_str()));
        assert_eq!(sid_of_family(&new_family(None)), None);
        assert_eq!(sid_of_family("not-a-sid.x"), None);
    }
}
