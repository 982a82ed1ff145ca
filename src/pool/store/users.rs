//! Users and their groups. `username` is always the canonical form (`pool::username`); `email`
//! holds the lower-cased address used for sign-in by email; every other attribute (including
//! the display form of the email) lives in the JSON `attributes` object.

use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Store, StoreError};

/// Cognito's user statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum UserStatus {
    #[serde(rename = "UNCONFIRMED")]
    Unconfirmed,
    #[serde(rename = "CONFIRMED")]
    Confirmed,
    #[serde(rename = "FORCE_CHANGE_PASSWORD")]
    ForceChangePassword,
    #[serde(rename = "RESET_REQUIRED")]
    ResetRequired,
    #[serde(rename = "DISABLED")]
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Unconfirmed => "UNCONFIRMED",
            UserStatus::Confirmed => "CONFIRMED",
            UserStatus::ForceChangePassword => "FORCE_CHANGE_PASSWORD",
            UserStatus::ResetRequired => "RESET_REQUIRED",
            UserStatus::Disabled => "DISABLED",
        }
    }

    pub fn parse(s: &str) -> Option<UserStatus> {
        Some(match s {
            "UNCONFIRMED" => UserStatus::Unconfirmed,
            "CONFIRMED" => UserStatus::Confirmed,
            "FORCE_CHANGE_PASSWORD" => UserStatus::ForceChangePassword,
            "RESET_REQUIRED" => UserStatus::ResetRequired,
            "DISABLED" => UserStatus::Disabled,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct User {
    pub sub: String,
    pub username: String,
    pub status: UserStatus,
    #[serde(skip)]
    pub password_hash: String,
    pub attributes: Map<String, Value>,
    pub groups: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl User {
    pub fn email(&self) -> Option<&str> {
        self.attributes.get("email").and_then(Value::as_str)
    }
}

pub struct NewUser {
    pub sub: String,
    pub username: String,
    pub status: UserStatus,
    pub password_hash: String,
    pub attributes: Map<String, Value>,
}

fn email_key(attrs: &Map<String, Value>) -> Option<String> {
    attrs
        .get("email")
        .and_then(Value::as_str)
        .map(str::to_lowercase)
}

fn user_from(row: &AnyRow) -> Result<User, StoreError> {
    let status: String = row.try_get("status")?;
    let attrs: String = row.try_get("attributes")?;
    let attributes = match serde_json::from_str::<Value>(&attrs) {
        Ok(Value::Object(m)) => m,
        _ => {
            return Err(StoreError::Corrupt(
                "user attributes are not a JSON object".into(),
            ));
        }
    };
    Ok(User {
        sub: row.try_get("sub")?,
        username: row.try_get("username")?,
        status: UserStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status:?}")))?,
        password_hash: row.try_get("password_hash")?,
        attributes,
        groups: Vec::new(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Inserts a user unless the name or the email address is taken (on `conn`, which may be a
/// transaction's connection).
pub(super) async fn insert_user(
    conn: &mut sqlx::AnyConnection,
    u: &NewUser,
    now: i64,
) -> Result<(), StoreError> {
    let email = email_key(&u.attributes);
    if let Some(e) = &email
        && sqlx::query("SELECT sub FROM users WHERE email = $1")
            .bind(e)
            .fetch_optional(&mut *conn)
            .await?
            .is_some()
    {
        return Err(StoreError::Exists("email"));
    }
    let r = sqlx::query(
        "INSERT INTO users (sub, username, email, status, password_hash, attributes, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (username) DO NOTHING",
    )
    .bind(&u.sub)
    .bind(&u.username)
    .bind(email)
    .bind(u.status.as_str())
    .bind(&u.password_hash)
    .bind(Value::Object(u.attributes.clone()).to_string())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Exists("user name"));
    }
    Ok(())
}

const COLUMNS: &str = "sub, username, status, password_hash, attributes, created_at, updated_at";

impl Store {
    pub async fn create_user(&self, u: &NewUser, now: i64) -> Result<(), StoreError> {
        let mut conn = self.db.acquire().await?;
        insert_user(&mut conn, u, now).await
    }

    async fn with_groups(&self, user: Option<User>) -> Result<Option<User>, StoreError> {
        let Some(mut u) = user else { return Ok(None) };
        u.groups = self.groups_of(&u.sub).await?;
        Ok(Some(u))
    }

    pub async fn user_by_username(&self, canonical: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE username = $1"
        )))
        .bind(canonical)
        .fetch_optional(&self.db)
        .await?;
        self.with_groups(row.as_ref().map(user_from).transpose()?)
            .await
    }

    /// Sign-in by user name, or else by email address (case-insensitive).
    pub async fn user_by_login(
        &self,
        canonical: &str,
        raw: &str,
    ) -> Result<Option<User>, StoreError> {
        if let Some(u) = self.user_by_username(canonical).await? {
            return Ok(Some(u));
        }
        if !raw.contains('@') {
            return Ok(None);
        }
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE email = $1"
        )))
        .bind(raw.trim().to_lowercase())
        .fetch_optional(&self.db)
        .await?;
        self.with_groups(row.as_ref().map(user_from).transpose()?)
            .await
    }

    pub async fn user_by_sub(&self, sub: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE sub = $1"
        )))
        .bind(sub)
        .fetch_optional(&self.db)
        .await?;
        self.with_groups(row.as_ref().map(user_from).transpose()?)
            .await
    }

    pub async fn list_users(&self, limit: i64) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users ORDER BY username LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut u = user_from(r)?;
            u.groups = self.groups_of(&u.sub).await?;
            out.push(u);
        }
        Ok(out)
    }

    pub async fn count_users(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.db)
            .await?
            .try_get("n")?)
    }

    pub async fn set_status(
        &self,
        sub: &str,
        status: UserStatus,
        now: i64,
    ) -> Result<(), StoreError> {
        let r = sqlx::query("UPDATE users SET status = $1, updated_at = $2 WHERE sub = $3")
            .bind(status.as_str())
            .bind(now)
            .bind(sub)
            .execute(&self.db)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NoSuchUser);
        }
        Ok(())
    }

    pub async fn set_password(
        &self,
        sub: &str,
        hash: &str,
        status: UserStatus,
        now: i64,
    ) -> Result<(), StoreError> {
        let r = sqlx::query(
            "UPDATE users SET password_hash = $1, status = $2, updated_at = $3 WHERE sub = $4",
        )
        .bind(hash)
        .bind(status.as_str())
        .bind(now)
        .bind(sub)
        .execute(&self.db)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NoSuchUser);
        }
        Ok(())
    }

    pub async fn set_attributes(
        &self,
        sub: &str,
        attrs: &Map<String, Value>,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET attributes = $1, email = $2, updated_at = $3 WHERE sub = $4")
            .bind(Value::Object(attrs.clone()).to_string())
            .bind(email_key(attrs))
            .bind(now)
            .bind(sub)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Deletes a user and everything that belongs to them, in one transaction.
    pub async fn delete_user(&self, sub: &str) -> Result<(), StoreError> {
        let targets = self.logout_targets(sub, None).await;
        let mut tx = self.db.begin().await?;
        for table in ["user_groups", "codes", "web_sessions", "auth_codes"] {
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE sub = $1")))
                .bind(sub)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM refresh_tokens WHERE family IN (SELECT family FROM token_families WHERE sub = $1)")
            .bind(sub)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM token_families WHERE sub = $1")
            .bind(sub)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query("DELETE FROM users WHERE sub = $1")
            .bind(sub)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NoSuchUser);
        }
        tx.commit().await?;
        self.end_proxy_sessions(sub).await;
        self.send_logouts(targets);
        Ok(())
    }

    pub async fn groups_of(&self, sub: &str) -> Result<Vec<String>, StoreError> {
        let rows =
            sqlx::query("SELECT group_name FROM user_groups WHERE sub = $1 ORDER BY group_name")
                .bind(sub)
                .fetch_all(&self.db)
                .await?;
        rows.iter()
            .map(|r| r.try_get("group_name").map_err(StoreError::from))
            .collect()
    }

    pub async fn add_to_group(&self, sub: &str, group: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO user_groups (sub, group_name) VALUES ($1, $2) ON CONFLICT (sub, group_name) DO NOTHING")
            .bind(sub)
            .bind(group)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    pub async fn remove_from_group(&self, sub: &str, group: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM user_groups WHERE sub = $1 AND group_name = $2")
            .bind(sub)
            .bind(group)
            .execute(&self.db)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Every group with its members' user names.
    pub async fn list_groups(&self) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT g.group_name AS group_name, u.username AS username FROM user_groups g \
             JOIN users u ON u.sub = g.sub ORDER BY g.group_name, u.username",
        )
        .fetch_all(&self.db)
        .await?;
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in &rows {
            let g: String = r.try_get("group_name")?;
            let u: String = r.try_get("username")?;
            match out.last_mut() {
                Some((last, members)) if *last == g => members.push(u),
                _ => out.push((g, vec![u])),
            }
        }
        Ok(out)
    }
}
