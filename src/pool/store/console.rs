//! What the admin console needs besides users: groups that exist without members (created in
//! the console or by `groups create`), and each user's last sign-in time.

use sqlx::Row;

use super::{Store, StoreError};

pub(super) const SCHEMA_CONSOLE: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS pool_groups (group_name TEXT PRIMARY KEY, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS user_activity (sub TEXT PRIMARY KEY, last_sign_in BIGINT NOT NULL)",
];

impl Store {
    /// Creates an (empty) group; `false` when it already existed.
    pub async fn create_group(&self, group: &str, now: i64) -> Result<bool, StoreError> {
        let exists = sqlx::query("SELECT 1 AS one FROM user_groups WHERE group_name = $1 LIMIT 1")
            .bind(group)
            .fetch_optional(&self.db)
            .await?
            .is_some();
        let r = sqlx::query(
            "INSERT INTO pool_groups (group_name, created_at) VALUES ($1, $2) ON CONFLICT (group_name) DO NOTHING",
        )
        .bind(group)
        .bind(now)
        .execute(&self.db)
        .await?;
        Ok(r.rows_affected() > 0 && !exists)
    }

    /// Deletes a group and every membership in it; `false` when there was no such group.
    pub async fn delete_group(&self, group: &str) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let members = sqlx::query("DELETE FROM user_groups WHERE group_name = $1")
            .bind(group)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let own = sqlx::query("DELETE FROM pool_groups WHERE group_name = $1")
            .bind(group)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(members + own > 0)
    }

    /// Groups created without members (the ones with members come from `list_groups`).
    pub async fn created_groups(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT group_name FROM pool_groups ORDER BY group_name")
            .fetch_all(&self.db)
            .await?;
        rows.iter()
            .map(|r| r.try_get("group_name").map_err(StoreError::from))
            .collect()
    }

    pub async fn record_sign_in(&self, sub: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO user_activity (sub, last_sign_in) VALUES ($1, $2) \
             ON CONFLICT (sub) DO UPDATE SET last_sign_in = excluded.last_sign_in",
        )
        .bind(sub)
        .bind(now)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    pub async fn last_sign_in(&self, sub: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT last_sign_in FROM user_activity WHERE sub = $1")
            .bind(sub)
            .fetch_optional(&self.db)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("last_sign_in")?),
            None => None,
        })
    }
}
