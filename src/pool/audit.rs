//! The audit log: every administrative action — from the CLI, the admin JSON API or the web
//! console — and every event of a user's own (sign-up, confirmation, sign-in and its failures,
//! lockout, password and second-factor changes, links to providers, deletion) is recorded in
//! the pool database (time, actor, action, target, the user's `sub`, outcome) and emitted as one
//! structured `tracing` event (target `portcullis::audit`).
//!
//! Records are language-neutral: an action and a failure reason are codes (`create_user`,
//! `invalid`) with parameters (`{"fields": ["email"]}`), rendered in the reader's language only
//! when shown ([`describe_actor`], and the console's `audit_*` texts). Rows written before
//! codes existed keep their free text and are shown as they are.
//!
//! Invariant: an entry names *what* was done to *whom*, never a value that grants access: no
//! password, code, token or hash is ever passed to [`record`]. A failed write of the log is
//! logged as an error and does not undo the action (which has already happened).

use std::fmt;

use super::store::{AuditRow, Store, StoreError};

/// Who performed an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// `portcullis pool …`, run by this operating-system user.
    Cli(String),
    /// The admin JSON API (bearer `pool.admin_token`: one shared identity).
    Api,
    /// The web admin console, signed in as this pool user.
    Console(String),
    /// A pool user acting on their own account (signed in, or proving who they are).
    User(String),
    /// Someone not (yet) known: a failed sign-in, a lockout.
    Anonymous,
}

impl Actor {
    /// The CLI actor for the user running this process (`$USER`/`$LOGNAME`, else the uid).
    pub fn cli_user() -> Actor {
        let name = ["USER", "LOGNAME"]
            .iter()
            .filter_map(|k| std::env::var(k).ok())
            .find(|v| !v.is_empty())
            .unwrap_or_else(|| {
                use std::os::unix::fs::MetadataExt;
                match std::fs::metadata("/proc/self") {
                    Ok(m) => user_name_of(m.uid()).unwrap_or_else(|| format!("uid {}", m.uid())),
                    Err(_) => "unknown".into(),
                }
            });
        Actor::Cli(name)
    }
}

/// The account name of `uid` in `/etc/passwd` (so `root` rather than `uid 0` when a shell has
/// no `$USER`).
fn user_name_of(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd_name(&text, uid)
}

fn passwd_name(text: &str, uid: u32) -> Option<String> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id = f.nth(1)?;
        (id.parse::<u32>().ok()? == uid && !name.is_empty()).then(|| name.to_string())
    })
}

/// A stored actor as a person reads it: `cli:root` → `cli (root)`, `console:ann` →
/// `console (ann)`, `user:bob` → `bob`; anything else as it is.
pub fn describe_actor(stored: &str) -> String {
    match stored.split_once(':') {
        Some(("user", name)) => name.to_string(),
        Some((kind @ ("cli" | "console"), who)) => format!("{kind} ({who})"),
        _ => stored.to_string(),
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Cli(u) => write!(f, "cli:{u}"),
            Actor::Api => f.write_str("api"),
            Actor::Console(u) => write!(f, "console:{u}"),
            Actor::User(u) => write!(f, "user:{u}"),
            Actor::Anonymous => f.write_str("anonymous"),
        }
    }
}

/// How an action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Failed, with a short reason (an error class or message; never a secret value).
    Failed(String),
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed(_) => "failed",
        }
    }

    fn reason(&self) -> &str {
        match self {
            Outcome::Ok => "",
            Outcome::Failed(r) => r,
        }
    }
}

/// One entry of the log, as read back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// RFC 3339, UTC, microseconds.
    pub time: String,
    #[serde(skip)]
    pub at_us: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// `ok` or `failed`.
    pub outcome: String,
    /// Why it failed (empty on success): a code (`invalid`, `no_such_user`, …), or the free
    /// text of a row written before codes.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The `sub` of the user the entry is about, when known.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subject: String,
    /// The action's parameters (field names, a provider, a failure count, …); `null` when none.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub params: serde_json::Value,
}

/// Text from users or admins made safe for a terminal or a text log: control characters
/// (newline, tab, escape, …) and the bidirectional-override characters come out as Rust-style
/// escapes (`\n`, `\t`, `\u{1b}`, `\u{202e}`), and a backslash as `\\`, so a crafted name
/// cannot start a new line, forge a column or hide text. Ordinary text is returned as is.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c == '\\'
            || c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !s.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Records one action: a row in the pool database and a structured log event.
///
/// `action` is a stable verb (`create_user`, `delete_user`, `set_password`, …), `target` what it
/// applied to (a user name, `user (group g)`, a file name).
pub async fn record(
    store: &Store,
    actor: &Actor,
    action: &str,
    target: &str,
    outcome: &Outcome,
) -> Result<(), StoreError> {
    record_full(
        store,
        actor,
        action,
        target,
        "",
        &serde_json::Value::Null,
        outcome,
    )
    .await
}

/// An event of a user's own account, done by the user (sign-up, sign-in, a password or
/// factor change, …): recorded with the user's name and `sub`. A failed write is logged and
/// otherwise ignored (the event has happened). One line at the place the event happens.
pub async fn by_user(store: &Store, user: &super::store::User, action: &str) {
    by_user_with(store, user, action, serde_json::Value::Null).await;
}

/// [`by_user`] with parameters (a provider, the sign-in methods, …; never a secret).
pub async fn by_user_with(
    store: &Store,
    user: &super::store::User,
    action: &str,
    params: serde_json::Value,
) {
    by_user_named(store, &user.username, &user.sub, action, params).await;
}

/// [`by_user_with`] for a user known by name and `sub` only (just created).
pub async fn by_user_named(
    store: &Store,
    username: &str,
    sub: &str,
    action: &str,
    params: serde_json::Value,
) {
    let actor = Actor::User(username.to_string());
    let _ = record_full(store, &actor, action, username, sub, &params, &Outcome::Ok).await;
}

/// A failed sign-in with this name, or the failure that locked the name out:
/// `sign_in_failed` / `lockout`, by someone not yet known, with the failure count and address.
/// Recorded alike whether a user has the name (`sub` set) or not (`sub` empty; the name cut
/// to 128 characters), so the write costs the same and the time of the answer tells nothing.
pub async fn sign_in_failed(
    store: &Store,
    name: &str,
    sub: &str,
    failures: u32,
    locked: bool,
    ip: std::net::IpAddr,
) {
    let params = serde_json::json!({"failures": failures, "ip": ip.to_string()});
    let action = if locked { "lockout" } else { "sign_in_failed" };
    let target: String = name.chars().take(128).collect();
    let _ = record_full(
        store,
        &Actor::Anonymous,
        action,
        &target,
        sub,
        &params,
        &Outcome::Failed("bad_credentials".into()),
    )
    .await;
}

/// [`record`] with the `sub` of the user concerned (empty when none) and parameters.
pub async fn record_full(
    store: &Store,
    actor: &Actor,
    action: &str,
    target: &str,
    subject: &str,
    params: &serde_json::Value,
    outcome: &Outcome,
) -> Result<(), StoreError> {
    let actor_s = actor.to_string();
    tracing::event!(
        target: "portcullis::audit",
        tracing::Level::INFO,
        audit.actor = %printable(&actor_s),
        audit.action = action,
        audit.target = %printable(target),
        audit.outcome = outcome.as_str(),
        audit.reason = %printable(outcome.reason()),
        "admin action"
    );
    let row = AuditRow {
        id: uuid::Uuid::new_v4().to_string(),
        at_us: now_us(),
        actor: actor_s,
        action: action.to_string(),
        target: target.to_string(),
        outcome: outcome.as_str().to_string(),
        reason: outcome.reason().to_string(),
        subject: subject.to_string(),
        params: if params.is_null() {
            String::new()
        } else {
            params.to_string()
        },
    };
    let r = store.insert_audit(&row).await;
    if let Err(e) = &r {
        tracing::error!(target: "portcullis::audit", error = %e, action, "cannot write the audit log");
    }
    r
}

/// Entries at or after `since` (Unix seconds; `None`: from the beginning), newest first, at
/// most `limit`.
pub async fn list(store: &Store, since: Option<i64>, limit: i64) -> Result<Vec<Entry>, StoreError> {
    let since_us = since.map(|s| s.saturating_mul(1_000_000)).unwrap_or(0);
    Ok(store
        .list_audit(since_us, limit)
        .await?
        .into_iter()
        .map(entry)
        .collect())
}

/// The newest `limit` entries about one user: by `sub`, or (rows from before `sub` was
/// recorded, and admin actions) by user name.
pub async fn of_user(
    store: &Store,
    sub: &str,
    username: &str,
    limit: i64,
) -> Result<Vec<Entry>, StoreError> {
    Ok(store
        .audit_of(sub, username, limit)
        .await?
        .into_iter()
        .map(entry)
        .collect())
}

/// The newest `limit` entries whose target is `name` (or `name (group …)`), whoever they
/// were about when recorded.
pub async fn naming(store: &Store, name: &str, limit: i64) -> Result<Vec<Entry>, StoreError> {
    Ok(store
        .audit_named(name, false, limit)
        .await?
        .into_iter()
        .map(entry)
        .collect())
}

fn entry(r: AuditRow) -> Entry {
    Entry {
        time: rfc3339_us(r.at_us),
        at_us: r.at_us,
        actor: r.actor,
        action: r.action,
        target: r.target,
        outcome: r.outcome,
        reason: r.reason,
        subject: r.subject,
        params: serde_json::from_str(&r.params).unwrap_or(serde_json::Value::Null),
    }
}

/// The Unix time a duration such as `24h` ago (for `--since`); `None` when `text` is not a
/// duration.
pub fn ago(text: &str) -> Option<i64> {
    let d = crate::config::duration::parse(text)?;
    Some(super::now().saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)))
}

/// `2026-12-04T20:31:05.123456Z` for a time in microseconds since the epoch.
pub fn rfc3339_us(at_us: i64) -> String {
    let secs = at_us.div_euclid(1_000_000);
    let micros = at_us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_as_rfc3339_utc() {
        let table = [
            (0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400_000_001, "2000-02-29T00:00:00.000001Z"),
            (1_796_416_265_123_456, "2026-12-04T20:31:05.123456Z"),
            (-1_000_000, "1969-12-31T23:59:59.000000Z"),
        ];
        for (us, want) in table {
            assert_eq!(rfc3339_us(us), want, "{us}");
        }
    }

    #[test]
    fn cli_actor_is_an_account_name_and_reads_as_cli_name() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nann:x:1000:1000::/home/ann:/bin/sh\n";
        assert_eq!(passwd_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(passwd_name(passwd, 1000).as_deref(), Some("ann"));
        assert_eq!(passwd_name(passwd, 5), None);
        assert_eq!(passwd_name("broken", 0), None);
        assert_eq!(describe_actor("cli:root"), "cli (root)");
        assert_eq!(describe_actor("cli:uid 7"), "cli (uid 7)");
        assert_eq!(describe_actor("console:ann"), "console (ann)");
        assert_eq!(describe_actor("user:bob"), "bob");
        assert_eq!(describe_actor("api"), "api");
        assert_eq!(describe_actor("anonymous"), "anonymous");
    }

    #[test]
    fn actors_print_their_kind() {
        assert_eq!(Actor::Cli("root".into()).to_string(), "cli:root");
        assert_eq!(Actor::Api.to_string(), "api");
        assert_eq!(Actor::Console("ann".into()).to_string(), "console:ann");
    }

    #[tokio::test]
    async fn records_and_lists_newest_first() {
        let dir = std::env::temp_dir().join(format!("pc-audit-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&format!("sqlite://{}/pool.db", dir.display()))
            .await
            .unwrap();
        let actor = Actor::Cli("ops".into());
        record(&store, &actor, "create_user", "ann", &Outcome::Ok)
            .await
            .unwrap();
        record(
            &store,
            &Actor::Api,
            "delete_user",
            "bob",
            &Outcome::Failed("no_such_user".into()),
        )
        .await
        .unwrap();
        let all = list(&store, None, 10).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            (
                all[0].actor.as_str(),
                all[0].action.as_str(),
                all[0].outcome.as_str()
            ),
            ("api", "delete_user", "failed")
        );
        assert_eq!(all[0].reason, "no_such_user");
        assert_eq!(
            (all[1].actor.as_str(), all[1].target.as_str()),
            ("cli:ops", "ann")
        );
        assert!(all[1].time.ends_with('Z'));
        let future = crate::pool::now() + 3600;
        assert!(list(&store, Some(future), 10).await.unwrap().is_empty());
        assert_eq!(list(&store, None, 1).await.unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
