//! Federated identities (docs/src/pool/federation.md): which pool user a provider's user is. The pool user's
//! `identities` attribute carries the same links for tokens; this table is the lookup.
//! A row whose user was deleted is ignored and replaced on the next sign-in.

use sqlx::Row;

use super::{Store, StoreError, User};

pub(super) const SCHEMA_FEDERATION: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS federated_identities (provider TEXT NOT NULL, provider_sub TEXT NOT NULL, \
     sub TEXT NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (provider, provider_sub))",
    "CREATE INDEX IF NOT EXISTS federated_identities_sub ON federated_identities (sub)",
];

impl Store {
    /// The pool user linked to a provider's user, if any (and still there).
    pub async fn federated_user(
        &self,
        provider: &str,
        provider_sub: &str,
    ) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(
            "SELECT sub FROM federated_identities WHERE provider = $1 AND provider_sub = $2",
        )
        .bind(provider)
        .bind(provider_sub)
        .fetch_optional(&self.db)
        .await?;
        match row {
            Some(r) => self.user_by_sub(&r.try_get::<String, _>("sub")?).await,
            None => Ok(None),
        }
    }

    /// Links a provider's user to a pool user (replacing a link to a deleted user).
    pub async fn link_identity(
        &self,
        provider: &str,
        provider_sub: &str,
        sub: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO federated_identities (provider, provider_sub, sub, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (provider, provider_sub) DO UPDATE SET sub = excluded.sub, created_at = excluded.created_at",
        )
        .bind(provider)
        .bind(provider_sub)
        .bind(sub)
        .bind(now)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// The user who signs in with this email address (case-insensitive), by email only.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT sub FROM users WHERE email = $1")
            .bind(email.trim().to_lowercase())
            .fetch_optional(&self.db)
            .await?;
        match row {
            Some(r) => self.user_by_sub(&r.try_get::<String, _>("sub")?).await,
            None => Ok(None),
        }
    }
}
