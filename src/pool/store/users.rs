//! Users and their groups. `username` is always the canonical form (`pool::username`); `email`
//! holds the lower-cased address **only while it is verified** (`email_verified: true`): it is
//! what sign-in by email, "forgot password", `link_by_email` and the admin find a user by, and a
//! unique partial index keeps one verified holder per address. An unverified address lives only
//! in the JSON `attributes` object (with every other attribute and the display form of the
//! email): it identifies no one, blocks no one, and any number of users may hold it.

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

/// The lower-cased address, verified or not.
fn address(attrs: &Map<String, Value>) -> Option<String> {
    attrs
        .get("email")
        .and_then(Value::as_str)
        .map(|e| e.trim().to_lowercase())
}

/// Whether the attributes say the email address is verified.
fn email_verified(attrs: &Map<String, Value>) -> bool {
    matches!(attrs.get("email_verified"), Some(Value::Bool(true)))
        || matches!(attrs.get("email_verified"), Some(Value::String(s)) if s == "true")
}

/// The `email` column: the lower-cased address while it is verified, else nothing.
fn email_key(attrs: &Map<String, Value>) -> Option<String> {
    address(attrs).filter(|_| email_verified(attrs))
}

/// A write to `users` refused by a unique index is `Exists("email")`: user name conflicts are
/// `DO NOTHING`, so the index that refused is the one on verified addresses.
fn email_conflict(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d)
            if d.is_unique_violation() || matches!(d.code().as_deref(), Some("23505" | "2067")) =>
        {
            StoreError::Exists("email")
        }
        _ => StoreError::Db(e),
    }
}

/// Schema version 2: `email` keeps only verified addresses, unique among users. Existing rows
/// are rewritten once; when two users hold one verified address, the older keeps it and the
/// newer's becomes unverified (logged), so the unique index can be built.
pub(super) async fn migrate_v2(conn: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
    use sqlx::Connection;
    if super::schema_version(&mut *conn).await? >= 2 {
        return Ok(());
    }
    let mut tx = conn.begin().await?;
    let rows = sqlx::query(
        "SELECT sub, username, email, attributes FROM users WHERE email IS NOT NULL ORDER BY created_at, sub",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut holders = std::collections::HashSet::new();
    for r in &rows {
        let sub: String = r.try_get("sub")?;
        let username: String = r.try_get("username")?;
        let stored: Option<String> = r.try_get("email")?;
        let text: String = r.try_get("attributes")?;
        let Ok(Value::Object(mut attrs)) = serde_json::from_str::<Value>(&text) else {
            return Err(StoreError::Corrupt(format!(
                "user {username:?}: attributes are not a JSON object"
            )));
        };
        let mut key = email_key(&attrs);
        if let Some(k) = &key
            && !holders.insert(k.clone())
        {
            tracing::warn!(user = %crate::pool::audit::printable(&username), "a second user with the same verified email address: its address is now unverified (the older user keeps it)");
            attrs.insert("email_verified".into(), Value::Bool(false));
            key = None;
        }
        if key != stored {
            sqlx::query("UPDATE users SET email = $1, attributes = $2 WHERE sub = $3")
                .bind(&key)
                .bind(Value::Object(attrs).to_string())
                .bind(&sub)
                .execute(&mut *tx)
                .await?;
        }
    }
    sqlx::query(
        "CREATE UNIQUE INDEX IF NOT EXISTS users_verified_email ON users (email) WHERE email IS NOT NULL",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE pool_meta SET value = '2' WHERE name = 'schema_version'")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) fn user_from(row: &AnyRow) -> Result<User, StoreError> {
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

/// Inserts a user unless the name is taken or another user holds its address verified (on
/// `conn`, which may be a transaction's connection). The unique index decides a race: of
/// concurrent creations with one verified address, one succeeds and the others get
/// `Exists("email")`. An address nobody verified holds nothing: users with the same unverified
/// address are any number.
pub(super) async fn insert_user(
    conn: &mut sqlx::AnyConnection,
    u: &NewUser,
    now: i64,
) -> Result<(), StoreError> {
    if let Some(a) = address(&u.attributes)
        && sqlx::query("SELECT sub FROM users WHERE email = $1")
            .bind(a)
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
    .bind(email_key(&u.attributes))
    .bind(u.status.as_str())
    .bind(&u.password_hash)
    .bind(Value::Object(u.attributes.clone()).to_string())
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(email_conflict)?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Exists("user name"));
    }
    Ok(())
}

pub(super) const COLUMNS: &str =
    "sub, username, status, password_hash, attributes, created_at, updated_at";

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

    /// Sign-in by user name, or else by verified email address (case-insensitive).
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

    /// Replaces a user's attributes. Making an address verified that another user holds
    /// verified is `Exists("email")` (decided by the unique index, so concurrent writers cannot
    /// both win).
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
            .await
            .map_err(email_conflict)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn new_user(name: &str, email: &str, verified: bool, status: UserStatus) -> NewUser {
        let Value::Object(attributes) = json!({"email": email, "email_verified": verified}) else {
            unreachable!("an object literal")
        };
        NewUser {
            sub: uuid::Uuid::new_v4().to_string(),
            username: name.to_string(),
            status,
            password_hash: String::new(),
            attributes,
        }
    }

    /// A burst of concurrent creations with one verified address: exactly one holds it, the
    /// others are told "exists: email"; unverified holders of it are any number, and none of
    /// them can become a second verified holder.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_verified_holder_per_address_under_a_burst() {
        for store in crate::pool::store::test_stores("burst").await {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..24 {
                let store = store.clone();
                tasks.spawn(async move {
                    let u = new_user(
                        &format!("burst{i}"),
                        "Same@Example.com",
                        true,
                        UserStatus::Confirmed,
                    );
                    store.create_user(&u, 1).await
                });
            }
            let (mut ok, mut exists) = (0, 0);
            while let Some(r) = tasks.join_next().await {
                match r.unwrap() {
                    Ok(()) => ok += 1,
                    Err(StoreError::Exists("email")) => exists += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(
                (ok, exists),
                (1, 23),
                "{:?}: verified holders of one address",
                store.backend
            );
            let holder = store.user_by_email("same@example.com").await.unwrap();
            assert!(holder.is_some_and(|u| u.username.starts_with("burst")));
            // Two users moving to one verified address at once (confirmation, an admin's
            // edit, a provider's new address): one wins, the other is told "exists: email".
            let mut movers = Vec::new();
            for i in 0..2 {
                let u = new_user(
                    &format!("mover{i}"),
                    &format!("mover{i}@example.com"),
                    true,
                    UserStatus::Confirmed,
                );
                store.create_user(&u, 1).await.unwrap();
                movers.push(u.sub);
            }
            let verify = |sub: String, address: &'static str| {
                let store = store.clone();
                async move {
                    let Value::Object(attrs) = json!({"email": address, "email_verified": true})
                    else {
                        unreachable!("an object literal")
                    };
                    store.set_attributes(&sub, &attrs, 2).await
                }
            };
            let (a, b) = tokio::join!(
                verify(movers[0].clone(), "Third@example.com"),
                verify(movers[1].clone(), "third@example.com")
            );
            let results = [a, b];
            assert_eq!(
                results.iter().filter(|r| r.is_ok()).count(),
                1,
                "{:?}: {results:?}",
                store.backend
            );
            assert!(
                results
                    .iter()
                    .any(|r| matches!(r, Err(StoreError::Exists("email"))))
            );
            // Unverified holders: any number, found by no one (not by sign-in either).
            let mut subs = Vec::new();
            for i in 0..3 {
                let u = new_user(
                    &format!("unverified{i}"),
                    "other@example.com",
                    false,
                    UserStatus::Unconfirmed,
                );
                store.create_user(&u, 1).await.unwrap();
                subs.push(u.sub);
            }
            assert!(
                store
                    .user_by_email("other@example.com")
                    .await
                    .unwrap()
                    .is_none()
            );
            assert!(
                store
                    .user_by_login("x", "other@example.com")
                    .await
                    .unwrap()
                    .is_none()
            );
            // One of them verifies it: the only verified holder; a second cannot.
            store
                .set_attributes(
                    &subs[0],
                    &json!({"email": "other@example.com", "email_verified": true})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    3,
                )
                .await
                .unwrap();
            let second = store
                .set_attributes(
                    &subs[1],
                    &json!({"email": "OTHER@example.com", "email_verified": true})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    3,
                )
                .await;
            assert!(
                matches!(second, Err(StoreError::Exists("email"))),
                "{second:?}"
            );
            let found = store.user_by_email("other@example.com").await.unwrap();
            assert_eq!(found.map(|u| u.sub), Some(subs[0].clone()));
        }
    }

    /// An UNCONFIRMED sign-up is removed once its code has expired (24 h), releasing its name
    /// and address; a confirmed user of the same age, a younger sign-up and one whose code was
    /// resent (still valid) stay.
    #[tokio::test]
    async fn unconfirmed_sign_ups_expire_with_their_code() {
        const DAY: i64 = 86_400;
        let t0 = 1_000_000;
        for store in crate::pool::store::test_stores("purge").await {
            let old = new_user("old", "old@example.com", false, UserStatus::Unconfirmed);
            let kept = new_user("kept", "kept@example.com", true, UserStatus::Confirmed);
            let resent = new_user(
                "resent",
                "resent@example.com",
                false,
                UserStatus::Unconfirmed,
            );
            let young = new_user("young", "young@example.com", false, UserStatus::Unconfirmed);
            for (u, at) in [
                (&old, t0),
                (&kept, t0),
                (&resent, t0),
                (&young, t0 + DAY / 2),
            ] {
                store.create_user(u, at).await.unwrap();
            }
            store
                .put_code(&old.sub, "signup", "123456", t0 + DAY)
                .await
                .unwrap();
            store
                .put_code(&resent.sub, "signup", "654321", t0 + DAY + 3_600)
                .await
                .unwrap();
            store.add_to_group(&old.sub, "g").await.unwrap();
            store
                .link_identity("corp", "old-sub", &old.sub, t0)
                .await
                .unwrap();

            let removed = store.purge_unconfirmed(t0 + DAY + 60).await.unwrap();
            assert_eq!(removed, 1, "{:?}", store.backend);
            assert!(store.user_by_sub(&old.sub).await.unwrap().is_none());
            assert!(
                store
                    .federated_user("corp", "old-sub")
                    .await
                    .unwrap()
                    .is_none()
            );
            for u in [&kept, &resent, &young] {
                assert!(
                    store.user_by_sub(&u.sub).await.unwrap().is_some(),
                    "{}",
                    u.username
                );
            }
            // The name and the address are free again.
            let again = new_user("old", "old@example.com", false, UserStatus::Unconfirmed);
            store.create_user(&again, t0 + DAY + 61).await.unwrap();
            assert!(store.groups_of(&again.sub).await.unwrap().is_empty());
            // Once the resent code has expired too, that sign-up goes as well.
            assert_eq!(store.purge_unconfirmed(t0 + DAY + 3_601).await.unwrap(), 1);
            assert!(store.user_by_sub(&resent.sub).await.unwrap().is_none());
        }
    }

    /// A database of schema 1 (every address in `email`, verified or not; two users with one
    /// verified address) is rewritten once when opened: unverified addresses leave the column,
    /// the older of the two keeps the verified address, the newer's becomes unverified, and
    /// the unique index holds from then on.
    #[tokio::test]
    async fn schema_2_keeps_only_verified_addresses() {
        for store in crate::pool::store::test_stores("v2").await {
            sqlx::query("DROP INDEX users_verified_email")
                .execute(&store.db)
                .await
                .unwrap();
            sqlx::query("UPDATE pool_meta SET value = '1' WHERE name = 'schema_version'")
                .execute(&store.db)
                .await
                .unwrap();
            for (sub, email, verified, at) in [
                ("s-typed", "Typed@x.example", false, 1),
                ("s-older", "dup@x.example", true, 1),
                ("s-newer", "dup@x.example", true, 2),
            ] {
                sqlx::query(
                    "INSERT INTO users (sub, username, email, status, password_hash, attributes, created_at, updated_at) \
                     VALUES ($1, $1, $2, 'CONFIRMED', '', $3, $4, $4)",
                )
                .bind(sub)
                .bind(email.to_lowercase())
                .bind(json!({"email": email, "email_verified": verified}).to_string())
                .bind(at)
                .execute(&store.db)
                .await
                .unwrap();
            }
            store.migrate().await.unwrap();
            let column = |sub: &'static str| {
                let store = store.clone();
                async move {
                    sqlx::query("SELECT email FROM users WHERE sub = $1")
                        .bind(sub)
                        .fetch_one(&store.db)
                        .await
                        .unwrap()
                        .try_get::<Option<String>, _>("email")
                        .unwrap()
                }
            };
            assert_eq!(column("s-typed").await, None, "{:?}", store.backend);
            assert_eq!(column("s-older").await.as_deref(), Some("dup@x.example"));
            assert_eq!(column("s-newer").await, None);
            let newer = store.user_by_sub("s-newer").await.unwrap().unwrap();
            assert_eq!(newer.attributes["email_verified"], json!(false));
            let holder = store.user_by_email("DUP@x.example").await.unwrap();
            assert_eq!(holder.map(|u| u.sub).as_deref(), Some("s-older"));
            let again = store
                .set_attributes(
                    "s-newer",
                    &json!({"email": "dup@x.example", "email_verified": true})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    3,
                )
                .await;
            assert!(
                matches!(again, Err(StoreError::Exists("email"))),
                "{again:?}"
            );
            // Opening again changes nothing.
            store.migrate().await.unwrap();
            assert_eq!(column("s-older").await.as_deref(), Some("dup@x.example"));
        }
    }
}
