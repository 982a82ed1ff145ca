//! Revoked sessions (SPEC §4 "Revocation, with either store"): a session signed out, every
//! session of a user, or every session made from one IdP session (back-channel logout).
//!
//! The list lives in memory and is checked on the request path without any I/O: a session is
//! looked up only when the list's generation changed since that session was last checked, so
//! a known session costs one atomic load. It is kept under `data_dir` (an append-only JSON
//! lines file, so the CLI and the server can both add to it) and, when Redis is configured, in
//! a Redis hash with a version counter that every replica polls each second — a revocation on
//! one replica is honoured by all within [`MAX_STALENESS`]. When Redis is configured but has
//! not answered for longer than that, [`Revocations::fresh`] is false and the request path
//! fails closed (503) for requests that carry a session.
//!
//! Entries expire with the sessions they can affect (a session's own expiry, or the longest
//! session life for a user-wide revocation), so the list stays small.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::Session;
use super::redis::{Redis, Unavailable};

/// How stale the shared list may be before session-bearing requests fail closed.
pub const MAX_STALENESS: Duration = Duration::from_secs(5);
/// How often the shared list (Redis, the file) is polled.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

const REDIS_HASH: &str = "portcullis:revocations";
const REDIS_VERSION: &str = "portcullis:revocations:version";

/// One revocation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// One session (sign-out), by its own random id.
    Session { sid: String, until: i64 },
    /// Every session of a user at a provider created before `at_ms`.
    Subject {
        provider: String,
        sub: String,
        at_ms: i64,
        until: i64,
    },
    /// Every session made from one IdP session (`sid` of the ID token) before `at_ms`.
    IdpSession {
        provider: String,
        sid: String,
        at_ms: i64,
        until: i64,
    },
}

impl Entry {
    fn until(&self) -> i64 {
        match self {
            Entry::Session { until, .. }
            | Entry::Subject { until, .. }
            | Entry::IdpSession { until, .. } => *until,
        }
    }

    /// The entry's identity (a later entry for the same thing replaces an earlier one).
    fn key(&self) -> String {
        match self {
            Entry::Session { sid, .. } => format!("s\u{1f}{sid}"),
            Entry::Subject { provider, sub, .. } => format!("u\u{1f}{provider}\u{1f}{sub}"),
            Entry::IdpSession { provider, sid, .. } => format!("i\u{1f}{provider}\u{1f}{sid}"),
        }
    }
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, i64>,
    subjects: HashMap<(String, String), i64>,
    idp_sessions: HashMap<(String, String), i64>,
}

impl State {
    fn apply(&mut self, e: &Entry, now: i64) {
        if e.until() < now {
            return;
        }
        match e {
            Entry::Session { sid, .. } => {
                self.sessions.insert(sid.clone(), e.until());
            }
            Entry::Subject {
                provider,
                sub,
                at_ms,
                ..
            } => {
                let slot = self
                    .subjects
                    .entry((provider.clone(), sub.clone()))
                    .or_insert(0);
                *slot = (*slot).max(*at_ms);
            }
            Entry::IdpSession {
                provider,
                sid,
                at_ms,
                ..
            } => {
                let slot = self
                    .idp_sessions
                    .entry((provider.clone(), sid.clone()))
                    .or_insert(0);
                *slot = (*slot).max(*at_ms);
            }
        }
    }

    fn revokes(&self, s: &Session) -> bool {
        if self.sessions.contains_key(&s.sid) {
            return true;
        }
        let created = s.created_ms();
        let key = (s.provider.clone(), s.sub.clone());
        if self.subjects.get(&key).is_some_and(|at| created <= *at) {
            return true;
        }
        if let Some(idp_sid) = &s.idp_sid
            && self
                .idp_sessions
                .get(&(s.provider.clone(), idp_sid.clone()))
                .is_some_and(|at| created <= *at)
        {
            return true;
        }
        false
    }
}

pub struct Revocations {
    state: RwLock<State>,
    generation: AtomicU64,
    file: Option<PathBuf>,
    redis: Option<Arc<Redis>>,
    /// Milliseconds (Unix) of the last successful Redis poll.
    last_sync_ms: AtomicI64,
    redis_version: Mutex<Option<i64>>,
    file_seen: Mutex<Option<(std::time::SystemTime, u64)>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Revocations {
    /// `file`: the list under `data_dir`; `redis`: the shared copy, when configured.
    pub fn new(file: Option<PathBuf>, redis: Option<Arc<Redis>>) -> Arc<Revocations> {
        let r = Arc::new(Revocations {
            state: RwLock::new(State::default()),
            generation: AtomicU64::new(1),
            file,
            redis,
            last_sync_ms: AtomicI64::new(now_ms()),
            redis_version: Mutex::new(None),
            file_seen: Mutex::new(None),
        });
        r.reload_file(true);
        r
    }

    /// Changes whenever the list changes; a session checked at this generation need not be
    /// checked again until it moves.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn is_revoked(&self, s: &Session) -> bool {
        self.state.read().revokes(s)
    }

    /// False when the shared list (Redis) has not been read for longer than
    /// [`MAX_STALENESS`]: a revocation elsewhere might then be missed, so callers fail closed.
    pub fn fresh(&self) -> bool {
        self.redis.is_none()
            || now_ms() - self.last_sync_ms.load(Ordering::Relaxed)
                <= MAX_STALENESS.as_millis() as i64
    }

    pub fn shared(&self) -> bool {
        self.redis.is_some()
    }

    /// Adds a revocation: in memory at once, then to the file and to Redis. With Redis
    /// configured, an error from Redis is returned (the caller reports it: the revocation
    /// holds here but may not reach other replicas).
    pub async fn add(&self, e: Entry) -> Result<(), Unavailable> {
        let now = now_ms() / 1000;
        self.state.write().apply(&e, now);
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(path) = &self.file
            && let Err(err) = append_line(path, &e)
        {
            tracing::warn!(file = %path.display(), error = %err, "cannot record a revocation under data_dir");
        }
        if let Some(redis) = &self.redis {
            let json = serde_json::to_string(&e).expect("an entry serialises");
            redis
                .query::<i64>(redis::cmd("HSET").arg(REDIS_HASH).arg(e.key()).arg(json))
                .await?;
            redis
                .query::<i64>(redis::cmd("INCR").arg(REDIS_VERSION))
                .await?;
        }
        Ok(())
    }

    /// Re-reads the file when it changed (`force`: always).
    fn reload_file(&self, force: bool) {
        let Some(path) = &self.file else { return };
        let meta = std::fs::metadata(path).ok();
        let seen = meta
            .as_ref()
            .map(|m| (m.modified().unwrap_or(std::time::UNIX_EPOCH), m.len()));
        {
            let mut last = self.file_seen.lock();
            if !force && *last == seen {
                return;
            }
            *last = seen;
        }
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        let now = now_ms() / 1000;
        let mut st = self.state.write();
        for line in text.lines() {
            if let Ok(e) = serde_json::from_str::<Entry>(line) {
                st.apply(&e, now);
            }
        }
        drop(st);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// One poll of the shared copies: the file always, Redis when its version moved.
    pub async fn sync(&self) {
        self.reload_file(false);
        let Some(redis) = &self.redis else { return };
        let version = match redis
            .query::<Option<i64>>(redis::cmd("GET").arg(REDIS_VERSION))
            .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "revocation list: redis unreachable");
                return;
            }
        };
        let changed = *self.redis_version.lock() != version;
        if changed {
            let all: HashMap<String, String> =
                match redis.query(redis::cmd("HGETALL").arg(REDIS_HASH)).await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "revocation list: redis unreachable");
                        return;
                    }
                };
            let now = now_ms() / 1000;
            let mut expired = Vec::new();
            {
                let mut st = self.state.write();
                for (field, json) in &all {
                    match serde_json::from_str::<Entry>(json) {
                        Ok(e) if e.until() >= now => st.apply(&e, now),
                        _ => expired.push(field.clone()),
                    }
                }
            }
            self.generation.fetch_add(1, Ordering::AcqRel);
            *self.redis_version.lock() = version;
            if !expired.is_empty() {
                let _ = redis
                    .query::<i64>(redis::cmd("HDEL").arg(REDIS_HASH).arg(expired))
                    .await;
            }
        }
        self.last_sync_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Polls the shared copies every second, for as long as the process runs.
    pub fn spawn_sync(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.sync().await;
            }
        });
    }

    /// Forgets expired entries from memory (called with the poll).
    pub fn prune(&self) {
        let now = now_ms() / 1000;
        let mut st = self.state.write();
        st.sessions.retain(|_, until| *until >= now);
    }
}

/// Ends every proxy session of a user of one provider: what the built-in pool calls when a
/// user's pool sessions end (global sign-out, disable, delete, password reset), from the
/// server or from the CLI.
pub struct UserSessions {
    revocations: Arc<Revocations>,
    provider: String,
    max_life: Duration,
}

impl UserSessions {
    pub fn new(revocations: Arc<Revocations>, provider: &str, max_life: Duration) -> UserSessions {
        UserSessions {
            revocations,
            provider: provider.to_string(),
            max_life,
        }
    }

    /// Ends the proxy sessions made from one session at the provider (the `sid` of its ID
    /// tokens): what the built-in pool calls when one of its sign-in sessions ends.
    pub async fn end_idp_session(&self, sid: &str) -> Result<(), Unavailable> {
        self.revocations
            .add(Entry::IdpSession {
                provider: self.provider.clone(),
                sid: sid.to_string(),
                at_ms: now_ms(),
                until: now_ms() / 1000 + self.max_life.as_secs() as i64,
            })
            .await
    }

    pub async fn end_all(&self, sub: &str) -> Result<(), Unavailable> {
        self.revocations
            .add(Entry::Subject {
                provider: self.provider.clone(),
                sub: sub.to_string(),
                at_ms: now_ms(),
                until: now_ms() / 1000 + self.max_life.as_secs() as i64,
            })
            .await
    }
}

fn append_line(path: &std::path::Path, e: &Entry) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut line = serde_json::to_string(e).expect("an entry serialises");
    line.push('\n');
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    // One write of one short line with O_APPEND: concurrent writers (the CLI, the server)
    // never interleave within a line.
    opts.open(path)?.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(sid: &str, sub: &str, created_ms: i64, idp_sid: Option<&str>) -> Session {
        Session {
            sid: sid.into(),
            sub: sub.into(),
            provider: "idp".into(),
            claims: Default::default(),
            access_token: None,
            access_expires_at: None,
            refresh_token: None,
            id_token: None,
            created_at: created_ms / 1000,
            created_ms,
            expires_at: i64::MAX / 2,
            idp_sid: idp_sid.map(str::to_string),
        }
    }

    #[test]
    fn table() {
        let now = now_ms() / 1000;
        let mut st = State::default();
        st.apply(
            &Entry::Session {
                sid: "s1".into(),
                until: now + 60,
            },
            now,
        );
        st.apply(
            &Entry::Session {
                sid: "old".into(),
                until: now - 1,
            },
            now,
        );
        st.apply(
            &Entry::Subject {
                provider: "idp".into(),
                sub: "alice".into(),
                at_ms: 5_000,
                until: now + 60,
            },
            now,
        );
        st.apply(
            &Entry::IdpSession {
                provider: "idp".into(),
                sid: "op-1".into(),
                at_ms: 5_000,
                until: now + 60,
            },
            now,
        );
        let cases = [
            (session("s1", "bob", 1, None), true),
            (session("old", "bob", 1, None), false),
            (session("s2", "alice", 4_999, None), true),
            (session("s2", "alice", 5_000, None), true),
            (session("s3", "alice", 5_001, None), false),
            (session("s4", "carol", 1_000, Some("op-1")), true),
            (session("s5", "carol", 6_000, Some("op-1")), false),
            (session("s6", "carol", 1_000, Some("op-2")), false),
        ];
        for (s, want) in cases {
            assert_eq!(st.revokes(&s), want, "{} {} {}", s.sid, s.sub, s.created_ms);
        }
    }

    #[tokio::test]
    async fn file_is_shared_between_instances() {
        let dir = std::env::temp_dir().join(format!("portcullis-rev-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = dir.join("revocations.jsonl");
        let a = Revocations::new(Some(file.clone()), None);
        let b = Revocations::new(Some(file.clone()), None);
        let s = session("x1", "dave", 1, None);
        assert!(!b.is_revoked(&s));
        let g = b.generation();
        a.add(Entry::Session {
            sid: "x1".into(),
            until: now_ms() / 1000 + 60,
        })
        .await
        .unwrap();
        assert!(a.is_revoked(&s));
        b.sync().await;
        assert!(b.is_revoked(&s));
        assert_ne!(b.generation(), g);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
