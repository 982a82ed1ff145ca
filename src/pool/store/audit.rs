//! The audit log's table: one row per administrative action (time, actor, action, target,
//! outcome and a short reason). Rows are only ever inserted and read, never updated; nothing
//! secret (password, code, token) is ever written here — callers pass names, not values.

use sqlx::Row;

use super::{Store, StoreError};

/// The audit table, created by `Store::migrate` after schema version 1.
pub(super) const SCHEMA_AUDIT: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit_log (id TEXT PRIMARY KEY, at_us BIGINT NOT NULL, actor TEXT NOT NULL, \
     action TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL, reason TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at_us)",
];

/// One stored audit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub id: String,
    /// Microseconds since the Unix epoch.
    pub at_us: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// `ok` or `failed`.
    pub outcome: String,
    /// Why it failed (empty on success).
    pub reason: String,
}

impl Store {
    pub async fn insert_audit(&self, row: &AuditRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (id, at_us, actor, action, target, outcome, reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.id)
        .bind(row.at_us)
        .bind(&row.actor)
        .bind(&row.action)
        .bind(&row.target)
        .bind(&row.outcome)
        .bind(&row.reason)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Rows at or after `since_us`, newest first, at most `limit`.
    pub async fn list_audit(&self, since_us: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at_us, actor, action, target, outcome, reason FROM audit_log \
             WHERE at_us >= $1 ORDER BY at_us DESC, id DESC LIMIT $2",
        )
        .bind(since_us)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get("id")?,
                    at_us: r.try_get("at_us")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    outcome: r.try_get("outcome")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect()
    }
}
