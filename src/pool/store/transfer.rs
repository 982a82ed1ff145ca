//! Bulk reads and writes for moving users in and out (docs/src/pool/import-export.md): the names and emails already
//! taken (checked before an import), and an import's users created in one transaction, so a
//! file is imported whole or not at all.

use std::collections::HashSet;

use sqlx::Row;

use super::{NewUser, Store, StoreError};

impl Store {
    /// Every canonical user name and every (lower-cased) email address in the pool.
    pub async fn taken_names(&self) -> Result<(HashSet<String>, HashSet<String>), StoreError> {
        let rows = sqlx::query("SELECT username, email FROM users")
            .fetch_all(&self.db)
            .await?;
        let mut names = HashSet::with_capacity(rows.len());
        let mut emails = HashSet::new();
        for r in &rows {
            names.insert(r.try_get::<String, _>("username")?);
            if let Some(e) = r.try_get::<Option<String>, _>("email")? {
                emails.insert(e);
            }
        }
        Ok((names, emails))
    }

    /// Creates every user or none: a name or email taken meanwhile rolls the whole batch back.
    pub async fn create_users(&self, users: &[NewUser], now: i64) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        for u in users {
            super::users::insert_user(&mut tx, u, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
