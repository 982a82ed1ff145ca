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
    /// The `sub` of the user concerned (empty: none, or a row from before schema 3).
    pub subject: String,
    /// Parameters as JSON text (empty: none).
    pub params: String,
}

const AUDIT_COLUMNS: &str = "id, at_us, actor, action, target, outcome, reason, subject, params";

fn audit_row(r: &sqlx::any::AnyRow) -> Result<AuditRow, StoreError> {
    Ok(AuditRow {
        id: r.try_get("id")?,
        at_us: r.try_get("at_us")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        target: r.try_get("target")?,
        outcome: r.try_get("outcome")?,
        reason: r.try_get("reason")?,
        subject: r
            .try_get::<Option<String>, _>("subject")?
            .unwrap_or_default(),
        params: r
            .try_get::<Option<String>, _>("params")?
            .unwrap_or_default(),
    })
}

impl Store {
    pub async fn insert_audit(&self, row: &AuditRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (id, at_us, actor, action, target, outcome, reason, subject, params) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&row.id)
        .bind(row.at_us)
        .bind(&row.actor)
        .bind(&row.action)
        .bind(&row.target)
        .bind(&row.outcome)
        .bind(&row.reason)
        .bind((!row.subject.is_empty()).then_some(row.subject.as_str()))
        .bind((!row.params.is_empty()).then_some(row.params.as_str()))
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Rows at or after `since_us`, newest first, at most `limit`.
    pub async fn list_audit(&self, since_us: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log \
             WHERE at_us >= $1 ORDER BY at_us DESC, id DESC LIMIT $2"
        )))
        .bind(since_us)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(audit_row).collect()
    }

    /// The newest `limit` rows about one user: recorded with their `sub`, or naming them as
    /// the target (`name` or `name (group …)`). Two indexed reads merged.
    pub async fn audit_of(
        &self,
        sub: &str,
        name: &str,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let by_sub = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE subject = $1 ORDER BY at_us DESC LIMIT $2"
        )))
        .bind(sub)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        let mut out = self.audit_named(name, true, limit).await?;
        for r in &by_sub {
            out.push(audit_row(r)?);
        }
        out.sort_by(|a, b| (b.at_us, &b.id).cmp(&(a.at_us, &a.id)));
        out.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(out)
    }

    /// The newest `limit` rows naming `name` as their target (`name` or `name (group …)`);
    /// with `unattributed`, only those recorded without a user's `sub`.
    pub async fn audit_named(
        &self,
        name: &str,
        unattributed: bool,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let only = if unattributed {
            " AND subject IS NULL"
        } else {
            ""
        };
        let by_name = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE (target = $1 OR (target >= $2 AND target < $3 AND substr(target, 1, length($2)) = $2)) \
             {only} ORDER BY at_us DESC LIMIT $4"
        )))
        .bind(name)
        .bind(format!("{name} ("))
        .bind(format!("{name} )"))
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        by_name.iter().map(audit_row).collect()
    }
}
