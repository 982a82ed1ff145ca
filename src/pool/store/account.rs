//! What the account home needs from the database: the pool sessions of a user with the device
//! and address that started them, ending one of them (only the owner's), the attribute changes
//! waiting for their code (a new email address stays here, not on the user, until verified),
//! passkey names, and the provider links of a user.

use sqlx::Row;

use super::sessions::sid_of_hash;
use super::{Store, StoreError, hash_secret};

pub(super) const SCHEMA_ACCOUNT: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS web_session_info (id_hash TEXT PRIMARY KEY, sub TEXT NOT NULL, \
     user_agent TEXT NOT NULL, address TEXT NOT NULL, created_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS web_session_info_sub ON web_session_info (sub)",
    "CREATE TABLE IF NOT EXISTS pending_attributes (sub TEXT NOT NULL, name TEXT NOT NULL, \
     value TEXT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (sub, name))",
];

/// Longest User-Agent kept for the session list.
const MAX_USER_AGENT: usize = 256;

/// One live pool session of a user, as the account home lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionRow {
    /// The session's `sid` (derived from the hash of its id; names it without revealing it).
    pub sid: String,
    pub user_agent: String,
    pub address: String,
    pub auth_time: i64,
    pub expires_at: i64,
}

impl Store {
    /// Records the device and address that started the pool session `id`.
    pub async fn record_session_info(
        &self,
        id: &str,
        sub: &str,
        user_agent: &str,
        address: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let ua: String = user_agent
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_USER_AGENT)
            .collect();
        sqlx::query(
            "INSERT INTO web_session_info (id_hash, sub, user_agent, address, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id_hash) DO NOTHING",
        )
        .bind(hash_secret(id))
        .bind(sub)
        .bind(ua)
        .bind(address)
        .bind(now)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// The live pool sessions of `sub`, newest first.
    pub async fn sessions_of(&self, sub: &str, now: i64) -> Result<Vec<SessionRow>, StoreError> {
        // Rows of sessions that ended are dropped on the way.
        sqlx::query(
            "DELETE FROM web_session_info WHERE sub = $1 AND id_hash NOT IN \
             (SELECT id_hash FROM web_sessions WHERE sub = $1 AND expires_at > $2)",
        )
        .bind(sub)
        .bind(now)
        .execute(&self.db)
        .await?;
        let rows = sqlx::query(
            "SELECT s.id_hash, s.auth_time, s.expires_at, i.user_agent, i.address FROM web_sessions s \
             LEFT JOIN web_session_info i ON i.id_hash = s.id_hash \
             WHERE s.sub = $1 AND s.expires_at > $2 ORDER BY s.auth_time DESC, s.id_hash",
        )
        .bind(sub)
        .bind(now)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SessionRow {
                    sid: sid_of_hash(&r.try_get::<String, _>("id_hash")?),
                    user_agent: r
                        .try_get::<Option<String>, _>("user_agent")?
                        .unwrap_or_default(),
                    address: r
                        .try_get::<Option<String>, _>("address")?
                        .unwrap_or_default(),
                    auth_time: r.try_get("auth_time")?,
                    expires_at: r.try_get("expires_at")?,
                })
            })
            .collect()
    }

    /// Ends the pool session named by `sid` when it belongs to `sub` (`Ok(false)` otherwise):
    /// its token families are revoked, the proxy's sessions made from it end, and its clients
    /// get logout tokens.
    pub async fn end_session_of(&self, sub: &str, sid: &str) -> Result<bool, StoreError> {
        let rows = sqlx::query("SELECT id_hash FROM web_sessions WHERE sub = $1")
            .bind(sub)
            .fetch_all(&self.db)
            .await?;
        let mut found = None;
        for r in rows {
            let h: String = r.try_get("id_hash")?;
            if crate::pool::ct_eq(sid_of_hash(&h).as_bytes(), sid.as_bytes()) {
                found = Some(h);
            }
        }
        let Some(id_hash) = found else {
            return Ok(false);
        };
        let targets = self.logout_targets(sub, Some(sid)).await;
        sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1 AND sub = $2")
            .bind(&id_hash)
            .bind(sub)
            .execute(&self.db)
            .await?;
        sqlx::query("DELETE FROM web_session_info WHERE id_hash = $1")
            .bind(&id_hash)
            .execute(&self.db)
            .await?;
        sqlx::query("UPDATE token_families SET revoked = 1 WHERE sub = $1 AND family LIKE $2")
            .bind(sub)
            .bind(format!("{sid}.%"))
            .execute(&self.db)
            .await?;
        if let Some(hook) = &self.proxy_sessions
            && let Err(e) = hook.end_idp_session(sid).await
        {
            tracing::warn!(error = %e, "the proxy's sessions of a pool session were revoked here but could not be shared through redis");
        }
        self.send_logouts(targets);
        Ok(true)
    }

    /// Keeps a new value of `name` until its code is entered (replacing an earlier one).
    pub async fn put_pending(
        &self,
        sub: &str,
        name: &str,
        value: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO pending_attributes (sub, name, value, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (sub, name) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
        )
        .bind(sub)
        .bind(name)
        .bind(value)
        .bind(expires_at)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// The value of `name` waiting for its code, while it has not expired.
    pub async fn pending(
        &self,
        sub: &str,
        name: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT value FROM pending_attributes WHERE sub = $1 AND name = $2 AND expires_at > $3",
        )
        .bind(sub)
        .bind(name)
        .bind(now)
        .fetch_optional(&self.db)
        .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("value")?),
            None => None,
        })
    }

    pub async fn drop_pending(&self, sub: &str, name: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM pending_attributes WHERE sub = $1 AND name = $2")
            .bind(sub)
            .bind(name)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Renames a passkey of `sub` (`Ok(false)` when it is not theirs).
    pub async fn rename_passkey(
        &self,
        sub: &str,
        id: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let r =
            sqlx::query("UPDATE mfa_passkeys SET name = $3 WHERE sub = $1 AND credential_id = $2")
                .bind(sub)
                .bind(id)
                .bind(name)
                .execute(&self.db)
                .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The providers linked to `sub`: (provider, the provider's user id).
    pub async fn links_of(&self, sub: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, provider_sub FROM federated_identities WHERE sub = $1 ORDER BY provider, provider_sub",
        )
        .bind(sub)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("provider")?, r.try_get("provider_sub")?)))
            .collect()
    }

    /// Removes the link of `sub` to `provider` (`Ok(false)` when there was none).
    pub async fn unlink(&self, sub: &str, provider: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM federated_identities WHERE sub = $1 AND provider = $2")
            .bind(sub)
            .bind(provider)
            .execute(&self.db)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// What the account home adds to deleting a user: its factors, links, session devices and
    /// waiting changes (the user row, sessions and tokens go with [`Store::delete_user`]).
    pub async fn delete_account_rows(&self, sub: &str) -> Result<(), StoreError> {
        self.delete_factors(sub).await?;
        for table in [
            "federated_identities",
            "web_session_info",
            "pending_attributes",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE sub = $1"
            )))
            .bind(sub)
            .execute(&self.db)
            .await?;
        }
        Ok(())
    }
}
