//! The pool's database: SQLite (default; WAL, synchronous=FULL, so a `kill -9` loses no
//! committed write) or PostgreSQL (several replicas), through one sqlx `Any` pool. Every query is
//! written once in the SQL both accept (`$n` placeholders, `ON CONFLICT`, `RETURNING`).
//! Migrations run on start, idempotently, serialised across replicas on PostgreSQL.
//! Secrets (codes, tokens, session ids) are stored only as SHA-256 hashes.

mod account;
mod audit;
mod console;
mod directory;
mod federation;
mod keys;
mod mfa;
mod security;
pub mod sessions;
mod tokens;
mod transfer;
mod users;

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

pub use account::SessionRow;
pub use audit::AuditRow;
pub use directory::{Filter, Listed, Position, Sort};
pub use keys::KeyRow;
pub use mfa::Passkey;
pub use security::{CodeCheck, Reservation, Reserve};
pub use tokens::{RefreshUse, StoredCode};
pub use users::{NewUser, User, UserStatus};

/// A database failure; the message never contains a row's secret values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("a user with this {0} already exists")]
    Exists(&'static str),
    #[error("no such user")]
    NoSuchUser,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot create the database directory {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pub(crate) db: AnyPool,
    pub backend: Backend,
    /// The proxy's sessions of pool users, ended whenever a user's pool sessions end.
    pub(crate) proxy_sessions: Option<std::sync::Arc<crate::session::revocation::UserSessions>>,
    /// Sends logout tokens to the clients of a user whose pool sessions end (`sessions.rs`).
    pub(crate) backchannel: Option<std::sync::Arc<crate::pool::backchannel::Backchannel>>,
}

/// Schema version 1. Each statement is idempotent so a half-applied migration can be rerun.
const SCHEMA_V1: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS pool_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS users (sub TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, email TEXT, \
     status TEXT NOT NULL, password_hash TEXT NOT NULL, attributes TEXT NOT NULL, \
     created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS users_email ON users (email)",
    "CREATE TABLE IF NOT EXISTS user_groups (sub TEXT NOT NULL, group_name TEXT NOT NULL, PRIMARY KEY (sub, group_name))",
    "CREATE TABLE IF NOT EXISTS codes (sub TEXT NOT NULL, purpose TEXT NOT NULL, code_hash TEXT NOT NULL, \
     expires_at BIGINT NOT NULL, attempts BIGINT NOT NULL, PRIMARY KEY (sub, purpose))",
    "CREATE TABLE IF NOT EXISTS attempts (lock_key TEXT PRIMARY KEY, failures BIGINT NOT NULL, last_failure BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS signing_keys (kid TEXT PRIMARY KEY, private_pem TEXT NOT NULL, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS auth_codes (code_hash TEXT PRIMARY KEY, family TEXT NOT NULL, client_id TEXT NOT NULL, \
     redirect_uri TEXT NOT NULL, sub TEXT NOT NULL, scope TEXT NOT NULL, nonce TEXT, code_challenge TEXT, \
     auth_time BIGINT NOT NULL, expires_at BIGINT NOT NULL, used BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS token_families (family TEXT PRIMARY KEY, sub TEXT NOT NULL, client_id TEXT NOT NULL, \
     revoked BIGINT NOT NULL, created_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS token_families_sub ON token_families (sub)",
    "CREATE TABLE IF NOT EXISTS refresh_tokens (token_hash TEXT PRIMARY KEY, family TEXT NOT NULL, scope TEXT NOT NULL, \
     auth_time BIGINT NOT NULL, expires_at BIGINT NOT NULL, used BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS web_sessions (id_hash TEXT PRIMARY KEY, sub TEXT NOT NULL, auth_time BIGINT NOT NULL, \
     expires_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS web_sessions_sub ON web_sessions (sub)",
];

impl Store {
    /// Connects (creating a SQLite file and its directory when missing) without migrating.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let mut url = url.to_string();
        if backend == Backend::Sqlite {
            let file = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let file = file.split('?').next().unwrap_or(file);
            if let Some(dir) = Path::new(file).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            if !url.contains("mode=") {
                url.push_str(if url.contains('?') {
                    "&mode=rwc"
                } else {
                    "?mode=rwc"
                });
            }
        }
        let opts = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(10));
        let opts = if backend == Backend::Sqlite {
            opts.after_connect(|conn, _| {
                Box::pin(async move {
                    // FULL: a committed sign-up survives a crash of the process or the machine.
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    Ok(())
                })
            })
        } else {
            opts
        };
        let db = opts.connect(&url).await?;
        Ok(Store {
            db,
            backend,
            proxy_sessions: None,
            backchannel: None,
        })
    }

    /// Connects and brings the schema up to date.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.db.acquire().await?;
        match self.backend {
            Backend::Sqlite => {
                // WAL is persistent in the file; set once, before any table exists.
                conn.execute("PRAGMA journal_mode = WAL").await?;
            }
            Backend::Postgres => {
                // Replicas starting together must not race on CREATE TABLE.
                conn.execute("SELECT pg_advisory_lock(7305)").await?;
            }
        }
        let mut result = Ok(());
        for stmt in SCHEMA_V1
            .iter()
            .chain(audit::SCHEMA_AUDIT)
            .chain(console::SCHEMA_CONSOLE)
            .chain(federation::SCHEMA_FEDERATION)
            .chain(account::SCHEMA_ACCOUNT)
        {
            if let Err(e) = conn.execute(*stmt).await {
                result = Err(StoreError::Db(e));
                break;
            }
        }
        // Signing-key rotation (its own step; see keys.rs).
        for stmt in keys::SCHEMA_KEYS {
            if result.is_ok()
                && let Err(e) = conn.execute(*stmt).await
            {
                result = Err(StoreError::Db(e));
            }
        }
        for stmt in mfa::SCHEMA_MFA {
            if result.is_ok()
                && let Err(e) = conn.execute(*stmt).await
            {
                result = Err(StoreError::Db(e));
            }
        }
        if result.is_ok() {
            result = sqlx::query(
                "INSERT INTO pool_meta (name, value) VALUES ('schema_version', '1') ON CONFLICT (name) DO NOTHING",
            )
            .execute(&mut *conn)
            .await
            .map(|_| ())
            .map_err(StoreError::Db);
        }
        if result.is_ok() {
            result = users::migrate_v2(&mut conn).await;
        }
        if result.is_ok() {
            result = directory::migrate_v3(&mut conn).await;
        }
        if self.backend == Backend::Postgres {
            conn.execute("SELECT pg_advisory_unlock(7305)").await?;
        }
        result
    }

    /// Ends the proxy's sessions of a user along with the pool's (see `proxy_sessions`).
    pub fn with_proxy_sessions(
        mut self,
        hook: Option<std::sync::Arc<crate::session::revocation::UserSessions>>,
    ) -> Store {
        self.proxy_sessions = hook;
        self
    }

    /// After a user's pool sessions ended: the proxy's end too, on every replica.
    pub(crate) async fn end_proxy_sessions(&self, sub: &str) {
        if let Some(hook) = &self.proxy_sessions
            && let Err(e) = hook.end_all(sub).await
        {
            tracing::warn!(error = %e, "the user's proxy sessions were revoked here but could not be shared through redis");
        }
    }

    /// Readiness: one round trip.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.db).await.is_ok()
    }
}

/// The schema version recorded in `pool_meta` (0 when none is).
async fn schema_version(conn: &mut sqlx::AnyConnection) -> Result<u32, StoreError> {
    use sqlx::Row;
    let version: Option<String> =
        sqlx::query("SELECT value FROM pool_meta WHERE name = 'schema_version'")
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get("value"))
            .transpose()?;
    Ok(version.and_then(|v| v.parse::<u32>().ok()).unwrap_or(0))
}

/// SHA-256 hex of a secret value, for storage and lookup.
pub fn hash_secret(value: &str) -> String {
    crate::session::keyring::hex(
        ring::digest::digest(&ring::digest::SHA256, value.as_bytes()).as_ref(),
    )
}

/// Stores for unit tests: a fresh SQLite file, and a fresh PostgreSQL database when
/// `PORTCULLIS_TEST_POSTGRES_URL` names a server.
#[cfg(test)]
pub(crate) async fn test_stores(tag: &str) -> Vec<Store> {
    use sqlx::Connection;
    let stamp = format!("{}_{}", std::process::id(), crate::pool::now_ms());
    let dir = std::env::temp_dir().join(format!("pc-store-{tag}-{stamp}"));
    // Removed when the test ends: the test harness runs each test on a thread of its own, and
    // a thread's thread-locals are dropped when it exits.
    struct RemoveAtExit(std::path::PathBuf);
    impl Drop for RemoveAtExit {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    thread_local! {
        static DIRS: std::cell::RefCell<Vec<RemoveAtExit>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let _ = DIRS.try_with(|d| d.borrow_mut().push(RemoveAtExit(dir.clone())));
    let mut out = vec![
        Store::open(&format!("sqlite://{}", dir.join("pool.db").display()))
            .await
            .unwrap(),
    ];
    if let Ok(base) = std::env::var("PORTCULLIS_TEST_POSTGRES_URL") {
        let mut conn = sqlx::postgres::PgConnection::connect(&base).await.unwrap();
        let name = format!("pc_unit_{tag}_{stamp}");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let mut u = url::Url::parse(&base).unwrap();
        u.set_path(&format!("/{name}"));
        out.push(Store::open(u.as_str()).await.unwrap());
    }
    out
}
