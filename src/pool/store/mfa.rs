//! Second factors (docs/src/pool/mfa.md): TOTP secrets (sealed with the key ring by the caller — this
//! table never sees a usable secret), the last TOTP step used (so a code is accepted once),
//! recovery codes (SHA-256 of 80-bit random codes), passkeys (public keys and sign counters),
//! the ids of answered WebAuthn challenges (until they expire, for single use), and the `amr` of pool sessions and token families.

use sqlx::Row;

use super::{Store, StoreError, hash_secret};

/// Idempotent, like [`super::SCHEMA_V1`]; run by `Store::migrate`.
pub(super) const SCHEMA_MFA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS mfa_totp (sub TEXT PRIMARY KEY, secret_sealed TEXT NOT NULL, \
     last_step BIGINT NOT NULL, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mfa_recovery (code_hash TEXT PRIMARY KEY, sub TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS mfa_recovery_sub ON mfa_recovery (sub)",
    "CREATE TABLE IF NOT EXISTS mfa_session_amr (id_hash TEXT PRIMARY KEY, amr TEXT NOT NULL, expires_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mfa_family_amr (family TEXT PRIMARY KEY, amr TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mfa_passkeys (credential_id TEXT PRIMARY KEY, sub TEXT NOT NULL, \
     public_key TEXT NOT NULL, sign_count BIGINT NOT NULL, backup_eligible BIGINT NOT NULL, \
     name TEXT NOT NULL, created_at BIGINT NOT NULL, last_used_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS mfa_passkeys_sub ON mfa_passkeys (sub)",
    "CREATE TABLE IF NOT EXISTS mfa_challenges (id_hash TEXT PRIMARY KEY, purpose TEXT NOT NULL, \
     challenge TEXT NOT NULL, sub TEXT NOT NULL, expires_at BIGINT NOT NULL)",
    // Spent challenges are purged by expiry: an index, so that purge is no table scan.
    "CREATE INDEX IF NOT EXISTS mfa_challenges_expires ON mfa_challenges (expires_at)",
];

/// A registered passkey.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Passkey {
    /// base64url credential id.
    pub id: String,
    #[serde(skip)]
    pub sub: String,
    /// The COSE public key, base64url.
    #[serde(skip)]
    pub public_key: String,
    pub sign_count: i64,
    /// Backup-eligible (synced) credentials are software keys (`amr` "swk"), others "hwk".
    pub backup_eligible: bool,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: i64,
}

fn recovery_hash(sub: &str, code: &str) -> String {
    hash_secret(&format!("{sub}\0recovery\0{code}"))
}

async fn put_recovery(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    sub: &str,
    recovery: &[String],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM mfa_recovery WHERE sub = $1")
        .bind(sub)
        .execute(&mut **tx)
        .await?;
    for code in recovery {
        sqlx::query("INSERT INTO mfa_recovery (code_hash, sub) VALUES ($1, $2)")
            .bind(recovery_hash(sub, code))
            .bind(sub)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

fn passkey_from(r: &sqlx::any::AnyRow) -> Result<Passkey, StoreError> {
    Ok(Passkey {
        id: r.try_get("credential_id")?,
        sub: r.try_get("sub")?,
        public_key: r.try_get("public_key")?,
        sign_count: r.try_get("sign_count")?,
        backup_eligible: r.try_get::<i64, _>("backup_eligible")? != 0,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
    })
}

impl Store {
    /// The sealed TOTP secret of a user, if they have one.
    pub async fn totp_secret(&self, sub: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT secret_sealed FROM mfa_totp WHERE sub = $1")
            .bind(sub)
            .fetch_optional(&self.db)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("secret_sealed")?),
            None => None,
        })
    }

    /// Enrols TOTP: the secret (sealed), the step of the confirming code (already used), and
    /// the recovery codes (hashed), replacing any earlier ones — all or nothing.
    pub async fn enrol_totp(
        &self,
        sub: &str,
        sealed: &str,
        used_step: i64,
        recovery: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO mfa_totp (sub, secret_sealed, last_step, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (sub) DO UPDATE SET secret_sealed = excluded.secret_sealed, last_step = excluded.last_step, created_at = excluded.created_at",
        )
        .bind(sub)
        .bind(sealed)
        .bind(used_step)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        put_recovery(&mut tx, sub, recovery).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the user's recovery codes (the old ones stop working).
    pub async fn replace_recovery_codes(
        &self,
        sub: &str,
        recovery: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        put_recovery(&mut tx, sub, recovery).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks a TOTP step used; `false` when that step or a later one was already used, so a
    /// code (or any older one) is accepted at most once, even by two replicas at the same time.
    pub async fn advance_totp_step(&self, sub: &str, step: i64) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE mfa_totp SET last_step = $2 WHERE sub = $1 AND last_step < $2")
            .bind(sub)
            .bind(step)
            .execute(&self.db)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Spends a recovery code; `false` when it is not one of the user's unused codes.
    pub async fn use_recovery_code(&self, sub: &str, code: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM mfa_recovery WHERE code_hash = $1 AND sub = $2")
            .bind(recovery_hash(sub, code))
            .bind(sub)
            .execute(&self.db)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn recovery_codes_left(&self, sub: &str) -> Result<i64, StoreError> {
        let r = sqlx::query("SELECT COUNT(*) AS n FROM mfa_recovery WHERE sub = $1")
            .bind(sub)
            .fetch_one(&self.db)
            .await?;
        Ok(r.try_get("n")?)
    }

    /// Removes TOTP and recovery codes (admin `mfa-reset`); `true` when there was a secret.
    pub async fn reset_totp(&self, sub: &str) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let r = sqlx::query("DELETE FROM mfa_totp WHERE sub = $1")
            .bind(sub)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM mfa_recovery WHERE sub = $1")
            .bind(sub)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    /// Every factor of a deleted user.
    pub async fn delete_factors(&self, sub: &str) -> Result<(), StoreError> {
        self.reset_totp(sub).await?;
        sqlx::query("DELETE FROM mfa_passkeys WHERE sub = $1")
            .bind(sub)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Records how a pool session was authenticated (RFC 8176 values, JSON array).
    pub async fn set_session_amr(
        &self,
        session_id: &str,
        amr: &[String],
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mfa_session_amr (id_hash, amr, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id_hash) DO UPDATE SET amr = excluded.amr, expires_at = excluded.expires_at",
        )
        .bind(hash_secret(session_id))
        .bind(serde_json::to_string(amr).unwrap_or_default())
        .bind(expires_at)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    pub async fn session_amr(&self, session_id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let row = sqlx::query("SELECT amr FROM mfa_session_amr WHERE id_hash = $1")
            .bind(hash_secret(session_id))
            .fetch_optional(&self.db)
            .await?;
        parse_amr(row)
    }

    /// Records the `amr` of a token family (every ID token it issues carries it).
    pub async fn set_family_amr(&self, family: &str, amr: &[String]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mfa_family_amr (family, amr) VALUES ($1, $2) ON CONFLICT (family) DO NOTHING",
        )
        .bind(family)
        .bind(serde_json::to_string(amr).unwrap_or_default())
        .execute(&self.db)
        .await?;
        Ok(())
    }

    pub async fn family_amr(&self, family: &str) -> Result<Option<Vec<String>>, StoreError> {
        let row = sqlx::query("SELECT amr FROM mfa_family_amr WHERE family = $1")
            .bind(family)
            .fetch_optional(&self.db)
            .await?;
        parse_amr(row)
    }

    pub async fn purge_expired_mfa(&self, now: i64) -> Result<(), StoreError> {
        for stmt in [
            "DELETE FROM mfa_session_amr WHERE expires_at < $1",
            "DELETE FROM mfa_challenges WHERE expires_at < $1",
        ] {
            sqlx::query(stmt).bind(now).execute(&self.db).await?;
        }
        Ok(())
    }

    pub async fn passkeys_of(&self, sub: &str) -> Result<Vec<Passkey>, StoreError> {
        let rows = sqlx::query(
            "SELECT credential_id, sub, public_key, sign_count, backup_eligible, name, created_at, last_used_at \
             FROM mfa_passkeys WHERE sub = $1 ORDER BY created_at, credential_id",
        )
        .bind(sub)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(passkey_from).collect()
    }

    pub async fn passkey(&self, id: &str) -> Result<Option<Passkey>, StoreError> {
        let row = sqlx::query(
            "SELECT credential_id, sub, public_key, sign_count, backup_eligible, name, created_at, last_used_at \
             FROM mfa_passkeys WHERE credential_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.db)
        .await?;
        row.as_ref().map(passkey_from).transpose()
    }

    pub async fn add_passkey(&self, p: &Passkey) -> Result<(), StoreError> {
        let r = sqlx::query(
            "INSERT INTO mfa_passkeys (credential_id, sub, public_key, sign_count, backup_eligible, name, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (credential_id) DO NOTHING",
        )
        .bind(&p.id)
        .bind(&p.sub)
        .bind(&p.public_key)
        .bind(p.sign_count)
        .bind(i64::from(p.backup_eligible))
        .bind(&p.name)
        .bind(p.created_at)
        .bind(p.last_used_at)
        .execute(&self.db)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Exists("passkey"));
        }
        Ok(())
    }

    /// Records a sign-in with a passkey. The counter must grow when it is used at all (a
    /// clone of the authenticator shows up as a counter that did not move forward).
    pub async fn touch_passkey(
        &self,
        id: &str,
        old_count: i64,
        new_count: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE mfa_passkeys SET sign_count = $3, last_used_at = $4 WHERE credential_id = $1 AND sign_count = $2",
        )
        .bind(id)
        .bind(old_count)
        .bind(new_count)
        .bind(now)
        .execute(&self.db)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn remove_passkey(&self, sub: &str, id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM mfa_passkeys WHERE sub = $1 AND credential_id = $2")
            .bind(sub)
            .bind(id)
            .execute(&self.db)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records a WebAuthn challenge (by the hash of its id) as used, until it expires:
    /// `Ok(false)` when it already was. Expired records go first (indexed by expiry).
    pub async fn spend_challenge(
        &self,
        id: &str,
        purpose: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM mfa_challenges WHERE expires_at < $1")
            .bind(now)
            .execute(&self.db)
            .await?;
        let r = sqlx::query(
            "INSERT INTO mfa_challenges (id_hash, purpose, challenge, sub, expires_at) \
             VALUES ($1, $2, '', '', $3) ON CONFLICT (id_hash) DO NOTHING",
        )
        .bind(hash_secret(id))
        .bind(purpose)
        .bind(expires_at)
        .execute(&self.db)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}

fn parse_amr(row: Option<sqlx::any::AnyRow>) -> Result<Option<Vec<String>>, StoreError> {
    let Some(r) = row else { return Ok(None) };
    let text: String = r.try_get("amr")?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|_| StoreError::Corrupt("amr".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn temp_store() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "pc-mfa-store-{}-{}",
            std::process::id(),
            crate::pool::now_ms()
        ));
        let store = Store::open(&format!("sqlite://{}", dir.join("pool.db").display()))
            .await
            .unwrap();
        (store, dir)
    }

    /// A WebAuthn challenge is spent once (a replayed response is refused) and its record
    /// short-lived; a TOTP step and a recovery code are accepted once.
    #[tokio::test]
    async fn challenges_steps_and_recovery_codes_are_single_use() {
        let (s, dir) = temp_store().await;
        assert!(
            s.spend_challenge("id-1", "sign-in", 1_000, 10)
                .await
                .unwrap()
        );
        assert!(
            !s.spend_challenge("id-1", "sign-in", 1_000, 10)
                .await
                .unwrap(),
            "replay"
        );
        assert!(s.spend_challenge("id-2", "sign-in", 100, 10).await.unwrap());
        // Once expired, spent ids are purged as new ones come (an expired challenge is
        // refused before it gets here, by the expiry sealed with it).
        assert!(
            s.spend_challenge("id-3", "sign-in", 2_000, 1_001)
                .await
                .unwrap()
        );
        let left: i64 = sqlx::Row::get(
            &sqlx::query("SELECT COUNT(*) AS n FROM mfa_challenges")
                .fetch_one(&s.db)
                .await
                .unwrap(),
            "n",
        );
        assert_eq!(left, 1, "only the live spent id is kept");

        s.enrol_totp("u1", "sealed", 50, &["code1".into(), "code2".into()], 0)
            .await
            .unwrap();
        assert!(
            !s.advance_totp_step("u1", 50).await.unwrap(),
            "step used at enrolment"
        );
        assert!(!s.advance_totp_step("u1", 49).await.unwrap(), "older step");
        assert!(s.advance_totp_step("u1", 51).await.unwrap());
        assert!(
            !s.advance_totp_step("u1", 51).await.unwrap(),
            "same code twice"
        );
        assert!(s.use_recovery_code("u1", "code1").await.unwrap());
        assert!(!s.use_recovery_code("u1", "code1").await.unwrap());
        assert!(
            !s.use_recovery_code("u2", "code2").await.unwrap(),
            "another user's code"
        );
        assert_eq!(s.recovery_codes_left("u1").await.unwrap(), 1);
        assert!(s.reset_totp("u1").await.unwrap());
        assert_eq!(s.totp_secret("u1").await.unwrap(), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
