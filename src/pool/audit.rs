//! The audit log (SPEC §7.3): every administrative action — from the CLI, the admin JSON API or
//! the web console — is recorded in the pool database (time, actor, action, target, outcome)
//! and emitted as one structured `tracing` event (target `portcullis::audit`).
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
                std::fs::metadata("/proc/self")
                    .map(|m| format!("uid {}", m.uid()))
                    .unwrap_or_else(|_| "unknown".into())
            });
        Actor::Cli(name)
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Cli(u) => write!(f, "cli:{u}"),
            Actor::Api => f.write_str("api"),
            Actor::Console(u) => write!(f, "console:{u}"),
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
    /// Why it failed (empty on success).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
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
        .map(|r| Entry {
            time: rfc3339_us(r.at_us),
            at_us: r.at_us,
            actor: r.actor,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            reason: r.reason,
        })
        .collect())
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
