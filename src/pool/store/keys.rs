//! Signing-key rotation state: when a key stopped signing and when it leaves the JWKS. A
//! separate table (not a column of `signing_keys`) so the migration is one idempotent
//! `CREATE TABLE IF NOT EXISTS` on both SQLite and PostgreSQL.

use sqlx::Row;

use super::{Store, StoreError};

pub(super) const SCHEMA_KEYS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS signing_key_retired (kid TEXT PRIMARY KEY, retired_at BIGINT NOT NULL, \
     expires_at BIGINT NOT NULL)",
];

/// One stored signing key.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub kid: String,
    pub pem: String,
    pub created_at: i64,
    /// Set once rotated out: the key verifies (and is published) until then, and never signs.
    pub expires_at: Option<i64>,
}

impl Store {
    /// Every signing key, oldest first.
    pub async fn signing_key_rows(&self) -> Result<Vec<KeyRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.kid, k.private_pem, k.created_at, r.expires_at FROM signing_keys k \
             LEFT JOIN signing_key_retired r ON r.kid = k.kid ORDER BY k.created_at, k.kid",
        )
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyRow {
                    kid: r.try_get("kid")?,
                    pem: r.try_get("private_pem")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get::<Option<i64>, _>("expires_at")?,
                })
            })
            .collect()
    }

    /// Rotates keys out: they stop signing now and leave the JWKS at `expires_at`. A key
    /// already rotated out keeps its earlier time.
    pub async fn retire_signing_keys(
        &self,
        kids: &[String],
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let now = crate::pool::now();
        for kid in kids {
            sqlx::query(
                "INSERT INTO signing_key_retired (kid, retired_at, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (kid) DO NOTHING",
            )
            .bind(kid)
            .bind(now)
            .bind(expires_at)
            .execute(&self.db)
            .await?;
        }
        Ok(())
    }

    /// Deletes rotated-out keys whose every token has expired.
    pub async fn purge_signing_keys(&self, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM signing_keys WHERE kid IN (SELECT kid FROM signing_key_retired WHERE expires_at <= $1)",
        )
        .bind(now)
        .execute(&self.db)
        .await?;
        sqlx::query("DELETE FROM signing_key_retired WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.db)
            .await?;
        Ok(())
    }
}
