//! The console's view of many users: one page of a filtered, sorted list, read with keyset
//! pagination (the sort key and the user's `sub` of the last row shown; never OFFSET), so any
//! page of 100,000 users costs about the same as the first. Schema version 3 adds the indexes
//! these queries walk and the audit log's `subject` / `params` columns.
//!
//! Every value from a request is a bound parameter; the only SQL text chosen from a request is
//! one of the fixed sort expressions of [`Sort`], picked by an enum.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::users::COLUMNS;
use super::{Store, StoreError, User};

/// What the list is ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Username,
    Created,
    LastSignIn,
    Status,
}

impl Sort {
    pub const ALL: [Sort; 4] = [
        Sort::Username,
        Sort::Created,
        Sort::LastSignIn,
        Sort::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Username => "username",
            Sort::Created => "created",
            Sort::LastSignIn => "last_sign_in",
            Sort::Status => "status",
        }
    }

    pub fn parse(s: &str) -> Option<Sort> {
        Sort::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The SQL expression sorted on (a fixed string, never built from input).
    fn expr(self) -> &'static str {
        match self {
            Sort::Username => "u.username",
            Sort::Created => "u.created_at",
            Sort::LastSignIn => "COALESCE(a.last_sign_in, 0)",
            Sort::Status => "u.status",
        }
    }

    fn numeric(self) -> bool {
        matches!(self, Sort::Created | Sort::LastSignIn)
    }
}

/// A position in the list: the sort key and `sub` of a row; the next page starts after it
/// (or, going back, ends before it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub key: String,
    pub sub: String,
}

/// Which users to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// A prefix of the user name or of the email address (lower case).
    pub prefix: String,
    pub status: Option<String>,
    pub group: Option<String>,
    /// `Some(true)`: with TOTP or a passkey; `Some(false)`: with neither.
    pub mfa: Option<bool>,
    /// Linked to this federated provider.
    pub provider: Option<String>,
    /// Only these (canonical) user names: the ones locked now, computed by the caller.
    pub only: Option<Vec<String>>,
}

/// One row of the list.
#[derive(Debug, Clone)]
pub struct Listed {
    pub user: User,
    pub last_sign_in: Option<i64>,
    pub mfa: bool,
}

/// Schema version 3: indexes for the console's list and the audit log's per-user history.
pub(super) async fn migrate_v3(conn: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
    use sqlx::Connection;
    if super::schema_version(&mut *conn).await? >= 3 {
        return Ok(());
    }
    // A column added once stays (a rerun after a half-applied step must not add it again).
    let has_subject = sqlx::query("SELECT subject FROM audit_log LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .is_ok();
    let mut tx = conn.begin().await?;
    if !has_subject {
        sqlx::query("ALTER TABLE audit_log ADD COLUMN subject TEXT")
            .execute(&mut *tx)
            .await?;
        sqlx::query("ALTER TABLE audit_log ADD COLUMN params TEXT")
            .execute(&mut *tx)
            .await?;
    }
    for stmt in [
        "CREATE INDEX IF NOT EXISTS users_created ON users (created_at, sub)",
        "CREATE INDEX IF NOT EXISTS users_status ON users (status, sub)",
        "CREATE INDEX IF NOT EXISTS users_username_sub ON users (username, sub)",
        "CREATE INDEX IF NOT EXISTS user_groups_group ON user_groups (group_name, sub)",
        "CREATE INDEX IF NOT EXISTS user_activity_last ON user_activity (last_sign_in, sub)",
        "CREATE INDEX IF NOT EXISTS federated_identities_provider ON federated_identities (sub, provider)",
        "CREATE INDEX IF NOT EXISTS audit_log_subject ON audit_log (subject, at_us)",
        "CREATE INDEX IF NOT EXISTS audit_log_target ON audit_log (target, at_us)",
        "UPDATE pool_meta SET value = '3' WHERE name = 'schema_version'",
    ] {
        sqlx::query(stmt).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// `%` and `_` (and the escape itself) taken literally in a LIKE pattern with `ESCAPE '\'`.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A bound value of the query being built.
enum Arg {
    Text(String),
    Int(i64),
}

struct Query {
    sql: String,
    args: Vec<Arg>,
}

impl Query {
    fn bind(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }
}

/// The `FROM … WHERE …` of a filtered list (no paging).
fn filtered(f: &Filter) -> Query {
    let mut q = Query {
        sql: "FROM users u LEFT JOIN user_activity a ON a.sub = u.sub WHERE 1 = 1".into(),
        args: Vec::new(),
    };
    if !f.prefix.is_empty() {
        let p = f.prefix.to_lowercase();
        let name = q.bind(Arg::Text(p.clone()));
        // The email as serde_json writes it inside the attributes object.
        let json = serde_json::to_string(&p).unwrap_or_default();
        let inner = json.trim_start_matches('"').trim_end_matches('"');
        let pattern = q.bind(Arg::Text(format!("%\"email\":\"{}%", like_escape(inner))));
        q.sql.push_str(&format!(
            " AND (substr(u.username, 1, length({name})) = {name} OR lower(u.attributes) LIKE {pattern} ESCAPE '\\')"
        ));
    }
    if let Some(s) = &f.status {
        let p = q.bind(Arg::Text(s.clone()));
        q.sql.push_str(&format!(" AND u.status = {p}"));
    }
    if let Some(g) = &f.group {
        let p = q.bind(Arg::Text(g.clone()));
        q.sql.push_str(&format!(
            " AND u.sub IN (SELECT g.sub FROM user_groups g WHERE g.group_name = {p})"
        ));
    }
    if let Some(on) = f.mfa {
        // A set read once (few users have a factor), not two lookups per user.
        q.sql.push_str(if on {
            " AND u.sub IN "
        } else {
            " AND u.sub NOT IN "
        });
        q.sql
            .push_str("(SELECT t.sub FROM mfa_totp t UNION SELECT k.sub FROM mfa_passkeys k)");
    }
    if let Some(p) = &f.provider {
        let p = q.bind(Arg::Text(p.clone()));
        q.sql.push_str(&format!(
            " AND u.sub IN (SELECT f.sub FROM federated_identities f WHERE f.provider = {p})"
        ));
    }
    if let Some(names) = &f.only {
        if names.is_empty() {
            q.sql.push_str(" AND 1 = 0");
        } else {
            let ps: Vec<String> = names.iter().map(|n| q.bind(Arg::Text(n.clone()))).collect();
            q.sql
                .push_str(&format!(" AND u.username IN ({})", ps.join(", ")));
        }
    }
    q
}

fn run<'q>(
    sql: &'q str,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for a in args {
        query = match a {
            Arg::Text(s) => query.bind(s.as_str()),
            Arg::Int(i) => query.bind(*i),
        };
    }
    query
}

impl Store {
    /// Up to `limit` users matching `f`, ordered by `sort` (then `sub`), after `from` (or, with
    /// `back`, the `limit` just before it, still returned in list order).
    pub async fn list_page(
        &self,
        f: &Filter,
        sort: Sort,
        descending: bool,
        from: Option<&Position>,
        back: bool,
        limit: i64,
    ) -> Result<Vec<Listed>, StoreError> {
        let mut q = filtered(f);
        let expr = sort.expr();
        // Reading backwards walks the opposite order.
        let forward = descending == back;
        let (cmp, dir) = if forward { (">", "ASC") } else { ("<", "DESC") };
        if let Some(p) = from {
            let key = if sort.numeric() {
                q.bind(Arg::Int(p.key.parse().unwrap_or(0)))
            } else {
                q.bind(Arg::Text(p.key.clone()))
            };
            let sub = q.bind(Arg::Text(p.sub.clone()));
            q.sql.push_str(&format!(
                " AND ({expr} {cmp} {key} OR ({expr} = {key} AND u.sub {cmp} {sub}))"
            ));
        }
        let lim = q.bind(Arg::Int(limit));
        let cols: String = COLUMNS
            .split(',')
            .map(|c| format!("u.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {cols}, a.last_sign_in AS last_seen {} ORDER BY {expr} {dir}, u.sub {dir} LIMIT {lim}",
            q.sql
        );
        let rows = run(&sql, &q.args).fetch_all(&self.db).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(listed(r)?);
        }
        if back {
            out.reverse();
        }
        self.decorate(&mut out).await?;
        Ok(out)
    }

    /// Groups and whether MFA is on, for the users of one page (two queries, not one per row).
    async fn decorate(&self, rows: &mut [Listed]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let subs: Vec<&str> = rows.iter().map(|r| r.user.sub.as_str()).collect();
        let marks: Vec<String> = (1..=subs.len()).map(|i| format!("${i}")).collect();
        let list = marks.join(", ");
        let bind_all = |sql: String| {
            let subs = subs.clone();
            async move {
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for s in subs {
                    query = query.bind(s);
                }
                query.fetch_all(&self.db).await
            }
        };
        let mut groups: HashMap<String, Vec<String>> = HashMap::new();
        for r in bind_all(format!(
            "SELECT sub, group_name FROM user_groups WHERE sub IN ({list}) ORDER BY group_name"
        ))
        .await?
        {
            groups
                .entry(r.try_get("sub")?)
                .or_default()
                .push(r.try_get("group_name")?);
        }
        let mut mfa = std::collections::HashSet::new();
        for r in bind_all(format!(
            "SELECT sub FROM mfa_totp WHERE sub IN ({list}) UNION SELECT sub FROM mfa_passkeys WHERE sub IN ({list})"
        ))
        .await?
        {
            mfa.insert(r.try_get::<String, _>("sub")?);
        }
        for row in rows {
            row.user.groups = groups.remove(&row.user.sub).unwrap_or_default();
            row.mfa = mfa.contains(&row.user.sub);
        }
        Ok(())
    }

    /// The (canonical) user names whose lockout key may be locked now: at least `threshold`
    /// failures, the latest after `since_ms`; the caller checks each exactly. At most `cap`.
    pub async fn lock_candidates(
        &self,
        threshold: u32,
        since_ms: i64,
        cap: i64,
    ) -> Result<Vec<(String, u32, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT lock_key, failures, last_failure FROM attempts \
             WHERE lock_key LIKE 'user:%' AND failures >= $1 AND last_failure > $2 \
             ORDER BY last_failure DESC LIMIT $3",
        )
        .bind(i64::from(threshold))
        .bind(since_ms)
        .bind(cap)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                let key: String = r.try_get("lock_key")?;
                let failures: i64 = r.try_get("failures")?;
                Ok((
                    key.trim_start_matches("user:").to_string(),
                    u32::try_from(failures).unwrap_or(u32::MAX),
                    r.try_get("last_failure")?,
                ))
            })
            .collect()
    }
}

fn listed(r: &AnyRow) -> Result<Listed, StoreError> {
    Ok(Listed {
        user: super::users::user_from(r)?,
        last_sign_in: r.try_get("last_seen")?,
        mfa: false,
    })
}

#[cfg(test)]
mod tests {
    use super::super::AuditRow;

    /// A schema-2 database (audit rows without `subject` / `params`) is upgraded once: old
    /// rows stay as they were, new rows carry the columns, and opening again changes nothing.
    #[tokio::test]
    async fn schema_3_adds_the_audit_columns_once_and_keeps_old_rows() {
        for store in crate::pool::store::test_stores("v3").await {
            for stmt in [
                "DROP INDEX audit_log_subject",
                "ALTER TABLE audit_log DROP COLUMN subject",
                "ALTER TABLE audit_log DROP COLUMN params",
                "UPDATE pool_meta SET value = '2' WHERE name = 'schema_version'",
                "INSERT INTO audit_log (id, at_us, actor, action, target, outcome, reason) \
                 VALUES ('old', 1, 'cli:root', 'delete_user', 'ann', 'failed', 'no_such_user: no user named ann')",
            ] {
                sqlx::query(stmt).execute(&store.db).await.unwrap();
            }
            store.migrate().await.unwrap();
            store.migrate().await.unwrap();
            let rows = store.list_audit(0, 10).await.unwrap();
            assert_eq!(rows.len(), 1, "{:?}", store.backend);
            assert_eq!(rows[0].reason, "no_such_user: no user named ann");
            assert_eq!(
                (rows[0].subject.as_str(), rows[0].params.as_str()),
                ("", "")
            );
            store
                .insert_audit(&AuditRow {
                    id: "new".into(),
                    at_us: 2,
                    actor: "user:ann".into(),
                    action: "sign_in".into(),
                    target: "ann".into(),
                    outcome: "ok".into(),
                    reason: String::new(),
                    subject: "sub-ann".into(),
                    params: "{\"amr\":[\"pwd\"]}".into(),
                })
                .await
                .unwrap();
            let mine = store.audit_of("sub-ann", "ann", 10).await.unwrap();
            let ids: Vec<&str> = mine.iter().map(|r| r.id.as_str()).collect();
            assert_eq!(ids, ["new", "old"], "by sub, and old rows by name");
            let version: String =
                sqlx::query_scalar("SELECT value FROM pool_meta WHERE name = 'schema_version'")
                    .fetch_one(&store.db)
                    .await
                    .unwrap();
            assert_eq!(version, "3");
        }
    }
}
