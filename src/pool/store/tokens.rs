//! Authorization codes and refresh tokens (stored hashed). Every code starts a token *family*;
//! the refresh tokens and access tokens issued from it carry the family id, so revoking the
//! family (code replay, refresh-token replay, global sign-out) kills everything it issued
//! (RFC 6749 §4.1.2, OAuth 2.0 Security BCP §4.14).

use sqlx::Row;

use super::{Store, StoreError, hash_secret};

#[derive(Debug, Clone)]
pub struct StoredCode {
    pub family: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub sub: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: i64,
    pub expires_at: i64,
}

/// The outcome of presenting a refresh token.
#[derive(Debug)]
pub enum RefreshUse {
    /// Valid: it is now spent; here is its family, client, subject, scope and auth time.
    Fresh {
        family: String,
        client_id: String,
        sub: String,
        scope: String,
        auth_time: i64,
    },
    /// Unknown, expired, or its family was revoked.
    Invalid,
    /// Already used once: the family has just been revoked.
    Replayed,
}

impl Store {
    pub async fn insert_code(
        &self,
        code: &str,
        c: &StoredCode,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        sqlx::query("INSERT INTO token_families (family, sub, client_id, revoked, created_at) VALUES ($1, $2, $3, 0, $4)")
            .bind(&c.family)
            .bind(&c.sub)
            .bind(&c.client_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO auth_codes (code_hash, family, client_id, redirect_uri, sub, scope, nonce, code_challenge, auth_time, expires_at, used) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0)",
        )
        .bind(hash_secret(code))
        .bind(&c.family)
        .bind(&c.client_id)
        .bind(&c.redirect_uri)
        .bind(&c.sub)
        .bind(&c.scope)
        .bind(c.nonce.clone())
        .bind(c.code_challenge.clone())
        .bind(c.auth_time)
        .bind(c.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Spends a code. `Ok(None)` for an unknown code; `Err`-free `Some((code, false))` when it
    /// had already been spent — the caller then revokes its family.
    pub async fn take_code(&self, code: &str) -> Result<Option<(StoredCode, bool)>, StoreError> {
        let h = hash_secret(code);
        // The UPDATE is the single-use gate: only one request can flip `used` from 0 to 1.
        let first = sqlx::query("UPDATE auth_codes SET used = 1 WHERE code_hash = $1 AND used = 0")
            .bind(&h)
            .execute(&self.db)
            .await?;
        let row = sqlx::query(
            "SELECT family, client_id, redirect_uri, sub, scope, nonce, code_challenge, auth_time, expires_at FROM auth_codes WHERE code_hash = $1",
        )
        .bind(&h)
        .fetch_optional(&self.db)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let c = StoredCode {
            family: r.try_get("family")?,
            client_id: r.try_get("client_id")?,
            redirect_uri: r.try_get("redirect_uri")?,
            sub: r.try_get("sub")?,
            scope: r.try_get("scope")?,
            nonce: r.try_get("nonce")?,
            code_challenge: r.try_get("code_challenge")?,
            auth_time: r.try_get("auth_time")?,
            expires_at: r.try_get("expires_at")?,
        };
        Ok(Some((c, first.rows_affected() == 1)))
    }

    pub async fn revoke_family(&self, family: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE token_families SET revoked = 1 WHERE family = $1")
            .bind(family)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Whether tokens of this family may still be used.
    pub async fn family_active(&self, family: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT revoked FROM token_families WHERE family = $1")
            .bind(family)
            .fetch_optional(&self.db)
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64, _>("revoked")? == 0,
            None => false,
        })
    }

    pub async fn insert_refresh(
        &self,
        token: &str,
        family: &str,
        scope: &str,
        auth_time: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family, scope, auth_time, expires_at, used) VALUES ($1, $2, $3, $4, $5, 0)",
        )
        .bind(hash_secret(token))
        .bind(family)
        .bind(scope)
        .bind(auth_time)
        .bind(expires_at)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Spends a refresh token (rotation); a second use revokes the whole family.
    /// The scope a refresh token holds, without using it (so a refused request for more does
    /// not spend the token).
    pub async fn refresh_scope(&self, token: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT scope FROM refresh_tokens WHERE token_hash = $1")
            .bind(hash_secret(token))
            .fetch_optional(&self.db)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("scope")?),
            None => None,
        })
    }

    pub async fn use_refresh(&self, token: &str, now: i64) -> Result<RefreshUse, StoreError> {
        let h = hash_secret(token);
        let first =
            sqlx::query("UPDATE refresh_tokens SET used = 1 WHERE token_hash = $1 AND used = 0")
                .bind(&h)
                .execute(&self.db)
                .await?;
        let row = sqlx::query(
            "SELECT r.family AS family, r.scope AS scope, r.auth_time AS auth_time, r.expires_at AS expires_at, \
             f.client_id AS client_id, f.sub AS sub, f.revoked AS revoked \
             FROM refresh_tokens r JOIN token_families f ON f.family = r.family WHERE r.token_hash = $1",
        )
        .bind(&h)
        .fetch_optional(&self.db)
        .await?;
        let Some(r) = row else {
            return Ok(RefreshUse::Invalid);
        };
        let family: String = r.try_get("family")?;
        if first.rows_affected() == 0 {
            self.revoke_family(&family).await?;
            return Ok(RefreshUse::Replayed);
        }
        if r.try_get::<i64, _>("revoked")? != 0 || r.try_get::<i64, _>("expires_at")? <= now {
            return Ok(RefreshUse::Invalid);
        }
        Ok(RefreshUse::Fresh {
            family,
            client_id: r.try_get("client_id")?,
            sub: r.try_get("sub")?,
            scope: r.try_get("scope")?,
            auth_time: r.try_get("auth_time")?,
        })
    }
}
