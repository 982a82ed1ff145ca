//! Security state shared by every replica: one-time codes (hashed, limited attempts), sign-in
//! failure counters (lockout and per-address throttling), the ID-token signing keys, and the
//! pool's own browser sessions (hashed ids).

use sqlx::{AssertSqlSafe, Row};

use super::{Store, StoreError, hash_secret};

/// The outcome of checking a one-time code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    Ok,
    Wrong,
    Expired,
    /// Too many wrong tries: the code is void; a new one must be requested.
    TooManyAttempts,
    Missing,
}

/// Wrong guesses allowed per code before it is void.
pub const CODE_ATTEMPTS: i64 = 5;

fn code_hash(sub: &str, purpose: &str, code: &str) -> String {
    hash_secret(&format!("{sub}\0{purpose}\0{code}"))
}

/// The outcome of [`Store::reserve_attempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// The attempt is counted; check the secret now.
    Reserved(Reservation),
    /// The key is locked: nothing was counted. Its failure count and last failure (ms).
    Locked { failures: u32, last: i64 },
}

/// One counted attempt, to be undone if its secret was right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// The key's failure count including this attempt.
    pub failures: u32,
    at_ms: i64,
    before: (u32, i64),
}

impl Store {
    /// Stores a new code for (user, purpose), replacing any earlier one.
    pub async fn put_code(
        &self,
        sub: &str,
        purpose: &str,
        code: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO codes (sub, purpose, code_hash, expires_at, attempts) VALUES ($1, $2, $3, $4, 0) \
             ON CONFLICT (sub, purpose) DO UPDATE SET code_hash = excluded.code_hash, expires_at = excluded.expires_at, attempts = 0",
        )
        .bind(sub)
        .bind(purpose)
        .bind(code_hash(sub, purpose, code))
        .bind(expires_at)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Checks a code; a correct one is consumed, a wrong one counts against the attempt limit.
    pub async fn check_code(
        &self,
        sub: &str,
        purpose: &str,
        code: &str,
        now: i64,
    ) -> Result<CodeCheck, StoreError> {
        // Count the attempt first (atomically), so parallel guesses cannot exceed the limit.
        let row = sqlx::query(
            "UPDATE codes SET attempts = attempts + 1 WHERE sub = $1 AND purpose = $2 RETURNING code_hash, expires_at, attempts",
        )
        .bind(sub)
        .bind(purpose)
        .fetch_optional(&self.db)
        .await?;
        let Some(row) = row else {
            return Ok(CodeCheck::Missing);
        };
        let stored: String = row.try_get("code_hash")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        let attempts: i64 = row.try_get("attempts")?;
        if attempts > CODE_ATTEMPTS {
            return Ok(CodeCheck::TooManyAttempts);
        }
        if expires_at <= now {
            return Ok(CodeCheck::Expired);
        }
        let given = code_hash(sub, purpose, code.trim());
        if !crate::pool::ct_eq(stored.as_bytes(), given.as_bytes()) {
            return Ok(if attempts >= CODE_ATTEMPTS {
                CodeCheck::TooManyAttempts
            } else {
                CodeCheck::Wrong
            });
        }
        sqlx::query("DELETE FROM codes WHERE sub = $1 AND purpose = $2")
            .bind(sub)
            .bind(purpose)
            .execute(&self.db)
            .await?;
        Ok(CodeCheck::Ok)
    }

    pub async fn delete_codes(&self, sub: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM codes WHERE sub = $1")
            .bind(sub)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// The failure count and last failure time (ms) of a lockout key.
    pub async fn attempts(&self, key: &str) -> Result<(u32, i64), StoreError> {
        let row = sqlx::query("SELECT failures, last_failure FROM attempts WHERE lock_key = $1")
            .bind(key)
            .fetch_optional(&self.db)
            .await?;
        Ok(match row {
            Some(r) => (
                r.try_get::<i64, _>("failures")?.clamp(0, u32::MAX as i64) as u32,
                r.try_get("last_failure")?,
            ),
            None => (0, 0),
        })
    }

    /// Records a failure atomically (one statement, so replicas cannot lose a count); a key quiet
    /// since `reset_before_ms` starts again from one. Returns the new count.
    pub async fn record_failure(
        &self,
        key: &str,
        now_ms: i64,
        reset_before_ms: i64,
    ) -> Result<u32, StoreError> {
        let row = sqlx::query(
            "INSERT INTO attempts (lock_key, failures, last_failure) VALUES ($1, 1, $2) \
             ON CONFLICT (lock_key) DO UPDATE SET \
             failures = CASE WHEN attempts.last_failure <= $3 THEN 1 ELSE attempts.failures + 1 END, \
             last_failure = $2 RETURNING failures",
        )
        .bind(key)
        .bind(now_ms)
        .bind(reset_before_ms)
        .fetch_one(&self.db)
        .await?;
        Ok(row.try_get::<i64, _>("failures")?.clamp(0, u32::MAX as i64) as u32)
    }

    /// Reserves one attempt on a lockout key *before* the secret is checked (the rule: counters are
    /// reserved before verifying, so concurrent requests see each other and a burst cannot pass
    /// a limit that a sequence could not). One statement: the count goes up only while the key
    /// is not locked — `threshold` failures lock it for `lock` as [`crate::pool::lockout`]
    /// computes — and a key quiet since `reset_before_ms` starts again from one. The caller
    /// undoes the reservation with [`Store::release_attempt`] when the secret was right.
    pub async fn reserve_attempt(
        &self,
        key: &str,
        threshold: u32,
        policy: &crate::pool::config::LockoutPolicy,
        now_ms: i64,
    ) -> Result<Reserve, StoreError> {
        let before = self.attempts(key).await?;
        let reset_before = now_ms - policy.reset_after.as_millis() as i64;
        // The lock length per failure count, as literal integers computed from the
        // configuration (never from a request): constant from where it reaches the maximum.
        let mut case = format!("CASE WHEN attempts.failures < {threshold} THEN 0");
        let max_ms = policy.max.as_millis() as i64;
        for extra in 0..=40u32 {
            let f = threshold.saturating_add(extra);
            let ms = crate::pool::lockout::lock_duration(f, threshold, policy).as_millis() as i64;
            if ms >= max_ms {
                break;
            }
            case.push_str(&format!(" WHEN attempts.failures = {f} THEN {ms}"));
        }
        case.push_str(&format!(" ELSE {max_ms} END"));
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO attempts (lock_key, failures, last_failure) VALUES ($1, 1, $2) \
             ON CONFLICT (lock_key) DO UPDATE SET \
             failures = CASE WHEN attempts.last_failure <= $3 THEN 1 ELSE attempts.failures + 1 END, \
             last_failure = $2 \
             WHERE attempts.last_failure <= $3 OR attempts.last_failure + ({case}) <= $2 \
             RETURNING failures"
        )))
        .bind(key)
        .bind(now_ms)
        .bind(reset_before)
        .fetch_optional(&self.db)
        .await?;
        Ok(match row {
            Some(r) => Reserve::Reserved(Reservation {
                failures: r.try_get::<i64, _>("failures")?.clamp(0, u32::MAX as i64) as u32,
                at_ms: now_ms,
                before,
            }),
            None => {
                let (failures, last) = self.attempts(key).await?;
                Reserve::Locked { failures, last }
            }
        })
    }

    /// Undoes a reservation whose secret was right: the key goes back to what it was before,
    /// or — when other attempts came in meanwhile — loses just this one.
    pub async fn release_attempt(&self, key: &str, r: &Reservation) -> Result<(), StoreError> {
        let (failures, last) = r.before;
        let done = if failures == 0 {
            sqlx::query(
                "DELETE FROM attempts WHERE lock_key = $1 AND failures = $2 AND last_failure = $3",
            )
            .bind(key)
            .bind(i64::from(r.failures))
            .bind(r.at_ms)
            .execute(&self.db)
            .await?
        } else {
            sqlx::query(
                "UPDATE attempts SET failures = $4, last_failure = $5 \
                 WHERE lock_key = $1 AND failures = $2 AND last_failure = $3",
            )
            .bind(key)
            .bind(i64::from(r.failures))
            .bind(r.at_ms)
            .bind(i64::from(failures))
            .bind(last)
            .execute(&self.db)
            .await?
        };
        if done.rows_affected() == 0 {
            sqlx::query(
                "UPDATE attempts SET failures = failures - 1 WHERE lock_key = $1 AND failures > 0",
            )
            .bind(key)
            .execute(&self.db)
            .await?;
        }
        Ok(())
    }

    /// Removes counters quiet since `before_ms`: a key quiet that long counts from zero again
    /// anyway, so its row only takes room. Without this every unknown name ever tried (and
    /// every client address) would keep a row for good.
    pub async fn purge_quiet_attempts(&self, before_ms: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM attempts WHERE last_failure < $1")
            .bind(before_ms)
            .execute(&self.db)
            .await?;
        Ok(r.rows_affected())
    }

    pub async fn clear_attempts(&self, key: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM attempts WHERE lock_key = $1")
            .bind(key)
            .execute(&self.db)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// The signing keys' PKCS#8 PEMs, oldest first.
    pub async fn signing_keys(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT private_pem FROM signing_keys ORDER BY created_at, kid")
            .fetch_all(&self.db)
            .await?;
        rows.iter()
            .map(|r| r.try_get("private_pem").map_err(StoreError::from))
            .collect()
    }

    pub async fn add_signing_key(&self, kid: &str, pem: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO signing_keys (kid, private_pem, created_at) VALUES ($1, $2, $3) ON CONFLICT (kid) DO NOTHING")
            .bind(kid)
            .bind(pem)
            .bind(now)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    pub async fn create_web_session(
        &self,
        id: &str,
        sub: &str,
        auth_time: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO web_sessions (id_hash, sub, auth_time, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(hash_secret(id))
            .bind(sub)
            .bind(auth_time)
            .bind(expires_at)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// The (sub, auth_time) of a live pool session.
    pub async fn web_session(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let row = sqlx::query(
            "SELECT sub, auth_time FROM web_sessions WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(hash_secret(id))
        .bind(now)
        .fetch_optional(&self.db)
        .await?;
        Ok(match row {
            Some(r) => Some((r.try_get("sub")?, r.try_get("auth_time")?)),
            None => None,
        })
    }

    pub async fn delete_web_session(&self, id: &str) -> Result<(), StoreError> {
        let targets = self.session_logout_targets(id).await?;
        sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
            .bind(hash_secret(id))
            .execute(&self.db)
            .await?;
        self.end_proxy_session(id).await;
        self.send_logouts(targets);
        Ok(())
    }

    /// Global sign-out: every pool session and every token family of the user.
    pub async fn sign_out_everywhere(&self, sub: &str) -> Result<(), StoreError> {
        let targets = self.logout_targets(sub, None).await;
        sqlx::query("DELETE FROM web_sessions WHERE sub = $1")
            .bind(sub)
            .execute(&self.db)
            .await?;
        sqlx::query("UPDATE token_families SET revoked = 1 WHERE sub = $1")
            .bind(sub)
            .execute(&self.db)
            .await?;
        self.end_proxy_sessions(sub).await;
        self.send_logouts(targets);
        Ok(())
    }

    /// Removes expired rows (codes, sessions, authorization codes, refresh tokens).
    pub async fn purge_expired(&self, now: i64) -> Result<(), StoreError> {
        for table in ["codes", "web_sessions", "auth_codes", "refresh_tokens"] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE expires_at < $1"
            )))
            .bind(now - 86_400)
            .execute(&self.db)
            .await?;
        }
        Ok(())
    }
}

/// How long a sign-up may stay unconfirmed without a valid code: the code's own lifetime.
const UNCONFIRMED_SECS: i64 = 24 * 3600;

impl Store {
    /// Removes UNCONFIRMED users older than a day whose sign-up code has expired (a resent code
    /// keeps its user until it expires too), with their codes, groups and provider links: the
    /// user name and the address they held are free again. Returns how many were removed.
    /// Runs at start and then periodically (`Pool::ready`).
    pub async fn purge_unconfirmed(&self, now: i64) -> Result<u64, StoreError> {
        let mut removed = 0;
        loop {
            let rows = sqlx::query(
                "SELECT u.sub AS sub FROM users u WHERE u.status = 'UNCONFIRMED' AND u.created_at <= $1 \
                 AND NOT EXISTS (SELECT 1 FROM codes c WHERE c.sub = u.sub AND c.purpose = 'signup' AND c.expires_at > $2) \
                 LIMIT 500",
            )
            .bind(now - UNCONFIRMED_SECS)
            .bind(now)
            .fetch_all(&self.db)
            .await?;
            if rows.is_empty() {
                return Ok(removed);
            }
            let mut tx = self.db.begin().await?;
            for r in &rows {
                let sub: String = r.try_get("sub")?;
                // Still unconfirmed: a confirmation that just happened keeps its user.
                let gone =
                    sqlx::query("DELETE FROM users WHERE sub = $1 AND status = 'UNCONFIRMED'")
                        .bind(&sub)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                if gone == 0 {
                    continue;
                }
                removed += gone;
                for table in ["codes", "user_groups", "federated_identities"] {
                    sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE sub = $1")))
                        .bind(&sub)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            if rows.len() < 500 {
                return Ok(removed);
            }
        }
    }
}
