//! Revoked sessions (docs/src/proxy/sessions.md "Revocation, with either store"): a session signed out, every
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

//! Revoked sessions and credentials (docs/src/proxy/sessions.md "Revocation, with either store"; security
//! invariant "revocation covers every credential"): a session signed out, every session and
//! bearer token of a user, or every session and bearer token made from one IdP session
//! (back-channel logout).
//!
//! The list lives in memory and is checked on the request path without any I/O: a session (or
//! a cached bearer token) is looked up only when the list's generation changed since it was
//! last checked, so a known one costs one atomic load. It is kept under `data_dir` (a JSON
//! lines file, appended to by the server and the CLI, read incrementally from the last offset,
//! and compacted at start and whenever most of its lines are dead) and, when Redis is
//! configured, in Redis: a hash of the live entries (read whole only when a replica starts or
//! was cut off for minutes), a stream of changes that every replica reads each second from the
//! last id it saw (so a poll costs the same with ten entries as with a million), and a sorted
//! set by expiry that lets any replica delete expired entries a batch at a time. A revocation
//! on one replica is honoured by all within [`MAX_STALENESS`]. When Redis is configured but has
//! not answered for longer than that, [`Revocations::fresh`] is false and the request path
//! fails closed (503) for requests that carry a session or a bearer token.
//!
//! Entries expire with what they can affect: a signed-out session's entry with that session;
//! a user-wide or IdP-session entry after [`Revocations::entry_life`] (the session timeout, at
//! least a day so bearer tokens are covered, and at least every longer timeout recorded as
//! [`Entry::Lifetime`] whose sessions may still be alive). Sessions are also held to
//! `created_at + session.timeout` as configured now. Expired entries leave memory once a minute.

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
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
/// How often expired entries are dropped from memory and from Redis, and the file's size is
/// checked for compaction.
const PRUNE_EVERY_POLLS: u64 = 60;
/// A user-wide or IdP-session revocation lives at least this long, so that it outlives the
/// bearer access tokens issued before it (an hour or so at common IdPs; a day at most).
pub const MIN_USER_ENTRY_LIFE: Duration = Duration::from_secs(24 * 3600);

/// The live entries, field = [`Entry::key`], value = the entry's JSON.
const REDIS_HASH: &str = "portcullis:revocations";
/// The change log (a stream; field `e` = the entry's JSON). The hash tag puts it in the
/// hash's Redis Cluster slot, so one script can write both.
const REDIS_LOG: &str = "{portcullis:revocations}:log";
/// Entry keys scored by their `until`, for deleting expired entries in batches.
const REDIS_EXPIRY: &str = "{portcullis:revocations}:expiry";
/// How long changes stay in the log; a replica that has not read it for [`FULL_READ_AFTER`]
/// reads the hash whole instead.
const LOG_KEEP_MS: i64 = 15 * 60 * 1000;
const FULL_READ_AFTER_MS: i64 = 5 * 60 * 1000;
/// Entries read per round trip from the log, and deleted per script call.
const BATCH: usize = 1000;
/// Entries asked for per round trip when the hash is read whole.
const HASH_BATCH: usize = 10_000;

/// Adds (or merges) an entry: the hash, the expiry set (`GT`: a score is never lowered, new
/// members are added) and the log, in one atomic step. The log is trimmed to [`LOG_KEEP_MS`]
/// by the server's own clock (`XADD … MINID`: Redis 6.2 or later).
const ADD_SCRIPT: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], 'GT', ARGV[3], ARGV[1])
local t = redis.call('TIME')
local minid = tonumber(t[1]) * 1000 - tonumber(ARGV[4])
return redis.call('XADD', KEYS[2], 'MINID', '~', minid, '*', 'e', ARGV[2])
";

/// Deletes up to ARGV[2] entries whose `until` is before ARGV[1]; returns how many.
const EXPIRE_SCRIPT: &str = r"
local ks = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ks > 0 then
  redis.call('HDEL', KEYS[1], unpack(ks))
  redis.call('ZREM', KEYS[2], unpack(ks))
end
return #ks
";

/// Deletes hash fields (ARGV: field, value, field, value, …) whose value is still the one given.
const DELETE_IF_SAME_SCRIPT: &str = r"
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return n
";

/// How long a user-wide or IdP-session entry must live, given the session timeout in effect:
/// the longer of the timeout and [`MIN_USER_ENTRY_LIFE`].
pub fn user_entry_life(session_timeout: Duration) -> Duration {
    session_timeout.max(MIN_USER_ENTRY_LIFE)
}

/// One revocation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// One session (sign-out), by its own random id.
    Session { sid: String, until: i64 },
    /// Every session and bearer token of a user at a provider created (issued) before `at_ms`.
    Subject {
        provider: String,
        sub: String,
        at_ms: i64,
        until: i64,
    },
    /// Every session and bearer token made from one IdP session (`sid`) before `at_ms`.
    IdpSession {
        provider: String,
        sid: String,
        at_ms: i64,
        until: i64,
    },
    /// Sessions `secs` long (a `session.timeout` in effect) may exist until `until`: kept so
    /// that a user-wide entry made after the timeout was lowered still lives as long as the
    /// sessions made under the longer one.
    Lifetime { secs: i64, until: i64 },
}

impl Entry {
    fn until(&self) -> i64 {
        match self {
            Entry::Session { until, .. }
            | Entry::Subject { until, .. }
            | Entry::IdpSession { until, .. }
            | Entry::Lifetime { until, .. } => *until,
        }
    }

    /// The entry's identity (a later entry for the same thing is merged with an earlier one).
    fn key(&self) -> String {
        match self {
            Entry::Session { sid, .. } => format!("s\u{1f}{sid}"),
            Entry::Subject { provider, sub, .. } => format!("u\u{1f}{provider}\u{1f}{sub}"),
            Entry::IdpSession { provider, sid, .. } => format!("i\u{1f}{provider}\u{1f}{sid}"),
            Entry::Lifetime { secs, .. } => format!("l\u{1f}{secs}"),
        }
    }
}

/// What a revocation is checked against: a session, or a verified bearer token.
pub struct Credential<'a> {
    /// The session's own id (empty for a bearer token).
    pub sid: &'a str,
    pub provider: &'a str,
    pub sub: &'a str,
    /// When it was created (a token: its `iat`; 0 when unknown, which every user-wide
    /// revocation covers).
    pub created_ms: i64,
    /// The IdP session it came from, if known.
    pub idp_sid: Option<&'a str>,
}

impl<'a> Credential<'a> {
    pub fn of(s: &'a Session) -> Credential<'a> {
        Credential {
            sid: &s.sid,
            provider: &s.provider,
            sub: &s.sub,
            created_ms: s.created_ms(),
            idp_sid: s.idp_sid.as_deref(),
        }
    }
}

/// A stream record: its id and its fields (`e`, the entry's JSON).
type Record = (String, Vec<String>);
/// An `XREAD` reply: per stream, its name and records (nil when nothing is new).
type XreadReply = Option<Vec<(String, Vec<Record>)>>;

/// `(at_ms, until)` of a user-wide or IdP-session entry.
type Span = (i64, i64);

#[derive(Default)]
struct State {
    sessions: HashMap<String, i64>,
    subjects: HashMap<(String, String), Span>,
    idp_sessions: HashMap<(String, String), Span>,
    /// Session lifetime (seconds) → until when sessions that long may exist.
    lifetimes: HashMap<i64, i64>,
}

fn merge(slot: &mut Span, at_ms: i64, until: i64) {
    slot.0 = slot.0.max(at_ms);
    slot.1 = slot.1.max(until);
}

impl State {
    /// Applies an entry; true when it may revoke something (not expired, not a lifetime
    /// record), i.e. when what was checked must be checked again.
    fn apply(&mut self, e: &Entry, now: i64) -> bool {
        if e.until() < now {
            return false;
        }
        match e {
            Entry::Session { sid, until } => {
                let slot = self.sessions.entry(sid.clone()).or_insert(*until);
                *slot = (*slot).max(*until);
            }
            Entry::Lifetime { secs, until } => {
                let slot = self.lifetimes.entry(*secs).or_insert(*until);
                *slot = (*slot).max(*until);
                return false;
            }
            Entry::Subject {
                provider,
                sub,
                at_ms,
                until,
            } => merge(
                self.subjects
                    .entry((provider.clone(), sub.clone()))
                    .or_insert((0, 0)),
                *at_ms,
                *until,
            ),
            Entry::IdpSession {
                provider,
                sid,
                at_ms,
                until,
            } => merge(
                self.idp_sessions
                    .entry((provider.clone(), sid.clone()))
                    .or_insert((0, 0)),
                *at_ms,
                *until,
            ),
        }
        true
    }

    /// The entry as it stands now for `e`'s key (merged with what is known), to be shared.
    fn merged(&self, e: &Entry) -> Entry {
        match e {
            Entry::Session { sid, until } => Entry::Session {
                sid: sid.clone(),
                until: self.sessions.get(sid).copied().unwrap_or(*until),
            },
            Entry::Lifetime { secs, until } => Entry::Lifetime {
                secs: *secs,
                until: self.lifetimes.get(secs).copied().unwrap_or(*until),
            },
            Entry::Subject {
                provider,
                sub,
                at_ms,
                until,
            } => {
                let (at_ms, until) = self
                    .subjects
                    .get(&(provider.clone(), sub.clone()))
                    .copied()
                    .unwrap_or((*at_ms, *until));
                Entry::Subject {
                    provider: provider.clone(),
                    sub: sub.clone(),
                    at_ms,
                    until,
                }
            }
            Entry::IdpSession {
                provider,
                sid,
                at_ms,
                until,
            } => {
                let (at_ms, until) = self
                    .idp_sessions
                    .get(&(provider.clone(), sid.clone()))
                    .copied()
                    .unwrap_or((*at_ms, *until));
                Entry::IdpSession {
                    provider: provider.clone(),
                    sid: sid.clone(),
                    at_ms,
                    until,
                }
            }
        }
    }

    fn revokes(&self, c: &Credential<'_>) -> bool {
        if !c.sid.is_empty() && self.sessions.contains_key(c.sid) {
            return true;
        }
        // Keys are owned pairs; a lookup allocates only when the maps are not empty.
        if !self.subjects.is_empty()
            && self
                .subjects
                .get(&(c.provider.to_string(), c.sub.to_string()))
                .is_some_and(|(at, _)| c.created_ms <= *at)
        {
            return true;
        }
        if let Some(idp_sid) = c.idp_sid
            && !self.idp_sessions.is_empty()
            && self
                .idp_sessions
                .get(&(c.provider.to_string(), idp_sid.to_string()))
                .is_some_and(|(at, _)| c.created_ms <= *at)
        {
            return true;
        }
        false
    }

    /// Drops entries that expired before `now`; returns how many.
    fn prune(&mut self, now: i64) -> usize {
        let before = self.len();
        self.sessions.retain(|_, until| *until >= now);
        self.subjects.retain(|_, (_, until)| *until >= now);
        self.idp_sessions.retain(|_, (_, until)| *until >= now);
        self.lifetimes.retain(|_, until| *until >= now);
        before - self.len()
    }

    fn len(&self) -> usize {
        self.sessions.len() + self.subjects.len() + self.idp_sessions.len() + self.lifetimes.len()
    }

    /// The longest session lifetime that may still have sessions alive.
    fn longest_lifetime(&self) -> i64 {
        self.lifetimes.keys().copied().max().unwrap_or(0)
    }

    /// Every live entry, one line of JSON each (the compacted file).
    fn lines(&self) -> String {
        let mut out = String::new();
        let mut push = |e: Entry| {
            if let Ok(j) = serde_json::to_string(&e) {
                out.push_str(&j);
                out.push('\n');
            }
        };
        for (sid, until) in &self.sessions {
            push(Entry::Session {
                sid: sid.clone(),
                until: *until,
            });
        }
        for ((provider, sub), (at_ms, until)) in &self.subjects {
            push(Entry::Subject {
                provider: provider.clone(),
                sub: sub.clone(),
                at_ms: *at_ms,
                until: *until,
            });
        }
        for ((provider, sid), (at_ms, until)) in &self.idp_sessions {
            push(Entry::IdpSession {
                provider: provider.clone(),
                sid: sid.clone(),
                at_ms: *at_ms,
                until: *until,
            });
        }
        for (secs, until) in &self.lifetimes {
            push(Entry::Lifetime {
                secs: *secs,
                until: *until,
            });
        }
        out
    }
}

/// How far the file under `data_dir` has been read.
#[derive(Default)]
struct FileCursor {
    /// The file read (device, inode): a different one (compacted by another process) is read
    /// from the start.
    id: Option<(u64, u64)>,
    /// Bytes read (always at a line end).
    offset: u64,
    /// Lines in the file as far as read (for deciding when to compact).
    lines: usize,
}

/// The Redis change log's read position.
#[derive(Default)]
struct LogCursor {
    /// The last stream id applied; `None`: read the hash whole first.
    last_id: Option<String>,
}

pub struct Revocations {
    state: RwLock<State>,
    generation: AtomicU64,
    file: Option<PathBuf>,
    redis: Option<Arc<Redis>>,
    /// Milliseconds (Unix) of the last successful Redis poll.
    last_sync_ms: AtomicI64,
    log: tokio::sync::Mutex<LogCursor>,
    file_cursor: Mutex<FileCursor>,
    polls: AtomicU64,
    /// `session.timeout` in effect (seconds; 0 until known), recorded as a [`Entry::Lifetime`].
    timeout_secs: AtomicI64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(unix)]
fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    (0, m.len())
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
            log: tokio::sync::Mutex::new(LogCursor::default()),
            file_cursor: Mutex::new(FileCursor::default()),
            polls: AtomicU64::new(0),
            timeout_secs: AtomicI64::new(0),
        });
        r.read_file();
        r
    }

    /// Changes whenever the list gains an entry; something checked at this generation need
    /// not be checked again until it moves.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn is_revoked(&self, s: &Session) -> bool {
        self.state.read().revokes(&Credential::of(s))
    }

    /// Whether a credential (a session, or a bearer token's provider, `sub`, `iat` and `sid`)
    /// is revoked.
    pub fn revokes(&self, c: &Credential<'_>) -> bool {
        self.state.read().revokes(c)
    }

    /// The `session.timeout` now in effect (at start and on every reload); recorded with the
    /// list by [`Self::spawn_sync`] and the upkeep.
    pub fn note_timeout(&self, timeout: Duration) {
        let secs = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX / 4);
        self.timeout_secs.store(secs, Ordering::Relaxed);
    }

    /// How long a user-wide or IdP-session entry made now must live, given the session timeout
    /// of the caller: the longest of it, [`MIN_USER_ENTRY_LIFE`], and every longer timeout
    /// that may still have sessions alive (recorded [`Entry::Lifetime`]s), so a timeout lowered
    /// before a revocation and raised after it never lets a revoked session back.
    pub fn entry_life(&self, session_timeout: Duration) -> Duration {
        let recorded = self.state.read().longest_lifetime().max(0) as u64;
        user_entry_life(session_timeout).max(Duration::from_secs(recorded))
    }

    /// Records the timeout in effect as an [`Entry::Lifetime`] (refreshed by the upkeep, so it
    /// covers every session made while it is in effect).
    async fn record_lifetime(&self) {
        let secs = self.timeout_secs.load(Ordering::Relaxed);
        if secs <= 0 {
            return;
        }
        let until = (now_ms() / 1000)
            .saturating_add(secs)
            .saturating_add(2 * PRUNE_EVERY_POLLS as i64);
        if let Err(e) = self.add_quietly(Entry::Lifetime { secs, until }).await {
            tracing::warn!(error = %e, "revocation list: the session lifetime was not shared through redis");
        }
    }

    /// Live entries held in memory.
    pub fn len(&self) -> usize {
        self.state.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        self.record(e, true).await
    }

    /// [`Self::add`] without moving the generation (for entries that revoke nothing).
    async fn add_quietly(&self, e: Entry) -> Result<(), Unavailable> {
        self.record(e, false).await
    }

    async fn record(&self, e: Entry, revokes: bool) -> Result<(), Unavailable> {
        let now = now_ms() / 1000;
        let merged = {
            let mut st = self.state.write();
            st.apply(&e, now);
            st.merged(&e)
        };
        if revokes {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        if let Some(path) = &self.file
            && let Err(err) = append_line(path, &merged)
        {
            tracing::warn!(file = %path.display(), error = %err, "cannot record a revocation under data_dir");
        }
        if let Some(redis) = &self.redis {
            let json = serde_json::to_string(&merged)
                .map_err(|e| Unavailable(format!("cannot serialise a revocation: {e}")))?;
            redis
                .query::<String>(
                    redis::cmd("EVAL")
                        .arg(ADD_SCRIPT)
                        .arg(3)
                        .arg(REDIS_HASH)
                        .arg(REDIS_LOG)
                        .arg(REDIS_EXPIRY)
                        .arg(merged.key())
                        .arg(json)
                        .arg(merged.until())
                        .arg(LOG_KEEP_MS),
                )
                .await?;
        }
        Ok(())
    }

    /// Reads what was appended to the file since the last read (the whole file when it is a
    /// new one, e.g. compacted by another process).
    fn read_file(&self) {
        let Some(path) = &self.file else { return };
        let mut cursor = self.file_cursor.lock();
        let Ok(mut f) = std::fs::File::open(path) else {
            return;
        };
        let Ok(meta) = f.metadata() else { return };
        let id = file_id(&meta);
        if cursor.id != Some(id) || meta.len() < cursor.offset {
            *cursor = FileCursor {
                id: Some(id),
                offset: 0,
                lines: 0,
            };
        }
        if meta.len() == cursor.offset {
            return;
        }
        let mut buf = Vec::new();
        if f.seek(std::io::SeekFrom::Start(cursor.offset)).is_err()
            || f.read_to_end(&mut buf).is_err()
        {
            return;
        }
        // Only whole lines: a line being written is read on the next poll.
        let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        let now = now_ms() / 1000;
        let mut applied = false;
        {
            let mut st = self.state.write();
            for line in buf[..end].split(|b| *b == b'\n') {
                cursor.lines += 1;
                if let Ok(e) = serde_json::from_slice::<Entry>(line) {
                    applied |= st.apply(&e, now);
                }
            }
        }
        cursor.offset += end as u64 + 1;
        if applied {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Rewrites the file with the live entries only, when it holds more than half dead lines
    /// (`force`: whenever it holds any). Appenders (this process, the CLI) take a shared lock
    /// and re-open the file when it was replaced, so no entry is lost.
    pub fn compact(&self, force: bool) -> std::io::Result<bool> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        f.lock()?;
        if file_id(&std::fs::metadata(path)?) != file_id(&f.metadata()?) {
            // Another process compacted it meanwhile.
            return Ok(false);
        }
        // Everything appended so far, then the state, is the whole list.
        self.read_file();
        let now = now_ms() / 1000;
        let (text, live) = {
            let mut st = self.state.write();
            st.prune(now);
            (st.lines(), st.len())
        };
        let lines = self.file_cursor.lock().lines;
        if lines <= live || (!force && lines < 2 * live + 1024) {
            return Ok(false);
        }
        let tmp = path.with_extension("jsonl.compact");
        write_private(&tmp, text.as_bytes())?;
        std::fs::rename(&tmp, path)?;
        let meta = std::fs::metadata(path)?;
        *self.file_cursor.lock() = FileCursor {
            id: Some(file_id(&meta)),
            offset: meta.len(),
            lines: live,
        };
        drop(f);
        tracing::info!(file = %path.display(), lines_before = lines, entries = live, "revocation list compacted");
        Ok(true)
    }

    /// One poll of the shared copies: the file's new lines, the Redis log's new entries.
    pub async fn sync(&self) {
        self.read_file();
        let Some(redis) = &self.redis else { return };
        match self.read_redis(redis).await {
            Ok(()) => self.last_sync_ms.store(now_ms(), Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "revocation list: redis unreachable"),
        }
    }

    async fn read_redis(&self, redis: &Redis) -> Result<(), Unavailable> {
        let mut cursor = self.log.lock().await;
        let cut_off = now_ms() - self.last_sync_ms.load(Ordering::Relaxed) > FULL_READ_AFTER_MS;
        let mut applied = false;
        let mut last_id = match (&cursor.last_id, cut_off) {
            (Some(id), false) => id.clone(),
            _ => {
                // Where the log ends now, then the hash whole: changes made meanwhile are
                // read again from the log (applying an entry twice changes nothing).
                let tail: Vec<Record> = redis
                    .query(
                        redis::cmd("XREVRANGE")
                            .arg(REDIS_LOG)
                            .arg("+")
                            .arg("-")
                            .arg("COUNT")
                            .arg(1),
                    )
                    .await?;
                let id = tail
                    .into_iter()
                    .next()
                    .map(|(id, _)| id)
                    .unwrap_or_else(|| "0-0".to_string());
                applied |= self.read_hash(redis).await?;
                id
            }
        };
        loop {
            let reply: XreadReply = redis
                .query(
                    redis::cmd("XREAD")
                        .arg("COUNT")
                        .arg(BATCH)
                        .arg("STREAMS")
                        .arg(REDIS_LOG)
                        .arg(&last_id),
                )
                .await?;
            let records: Vec<Record> = reply
                .unwrap_or_default()
                .into_iter()
                .flat_map(|(_, r)| r)
                .collect();
            let n = records.len();
            let now = now_ms() / 1000;
            {
                let mut st = self.state.write();
                for (id, fields) in records {
                    for pair in fields.chunks(2) {
                        if let [k, v] = pair
                            && k == "e"
                            && let Ok(e) = serde_json::from_str::<Entry>(v)
                        {
                            applied |= st.apply(&e, now);
                        }
                    }
                    last_id = id;
                }
            }
            if n < BATCH {
                break;
            }
        }
        cursor.last_id = Some(last_id);
        if applied {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Reads the hash of live entries whole, a batch per round trip.
    async fn read_hash(&self, redis: &Redis) -> Result<bool, Unavailable> {
        let mut scan = 0u64;
        let mut applied = false;
        loop {
            let (next, flat): (u64, Vec<String>) = redis
                .query(
                    redis::cmd("HSCAN")
                        .arg(REDIS_HASH)
                        .arg(scan)
                        .arg("COUNT")
                        .arg(HASH_BATCH),
                )
                .await?;
            let now = now_ms() / 1000;
            // Entries that expired and that the expiry set may not know (written before it
            // existed, or unreadable) are deleted as they are met.
            let mut dead = Vec::new();
            {
                let mut st = self.state.write();
                for pair in flat.chunks(2) {
                    if let [field, json] = pair {
                        match serde_json::from_str::<Entry>(json) {
                            Ok(e) if e.until() >= now => applied |= st.apply(&e, now),
                            _ => dead.push((field.clone(), json.clone())),
                        }
                    }
                }
            }
            if !dead.is_empty() {
                // Deleted only if unchanged since read (another replica may have just
                // revoked the same user again).
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(DELETE_IF_SAME_SCRIPT).arg(1).arg(REDIS_HASH);
                for (field, json) in dead {
                    cmd.arg(field).arg(json);
                }
                let _ = redis.query::<i64>(&cmd).await;
            }
            if next == 0 {
                return Ok(applied);
            }
            scan = next;
        }
    }

    /// Deletes expired entries from Redis, a batch per call (every replica does it; it is
    /// idempotent).
    async fn expire_redis(&self, redis: &Redis) -> Result<usize, Unavailable> {
        let mut total = 0;
        loop {
            let n: usize = redis
                .query(
                    redis::cmd("EVAL")
                        .arg(EXPIRE_SCRIPT)
                        .arg(2)
                        .arg(REDIS_HASH)
                        .arg(REDIS_EXPIRY)
                        .arg(now_ms() / 1000)
                        .arg(BATCH),
                )
                .await?;
            total += n;
            if n < BATCH {
                return Ok(total);
            }
        }
    }

    /// The periodic upkeep: expired entries leave memory and Redis; the file is compacted
    /// (off the async threads) when most of it is dead.
    pub async fn upkeep(self: &Arc<Self>) {
        self.prune();
        self.record_lifetime().await;
        if let Some(redis) = &self.redis
            && let Err(e) = self.expire_redis(redis).await
        {
            tracing::warn!(error = %e, "revocation list: expired entries not removed from redis");
        }
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.compact(false)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "revocation list: the file under data_dir was not compacted")
            }
            Err(e) => tracing::warn!(error = %e, "revocation list: compaction task failed"),
        }
    }

    /// Polls the shared copies every second, for as long as the process runs; compacts the
    /// file first, and keeps the list bounded once a minute ([`Self::upkeep`]).
    pub fn spawn_sync(self: &Arc<Self>) {
        if let Err(e) = self.compact(true) {
            tracing::warn!(error = %e, "revocation list: the file under data_dir was not compacted");
        }
        let me = self.clone();
        tokio::spawn(async move {
            me.record_lifetime().await;
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.sync().await;
                if me.polls.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY_POLLS
                    == PRUNE_EVERY_POLLS - 1
                {
                    me.upkeep().await;
                }
            }
        });
    }

    /// Forgets expired entries from memory; returns how many.
    pub fn prune(&self) -> usize {
        self.state.write().prune(now_ms() / 1000)
    }
}

/// Ends every proxy session and bearer token of a user of one provider: what the built-in
/// pool calls when a user's pool sessions end (global sign-out, disable, delete, password
/// reset), from the server or from the CLI.
pub struct UserSessions {
    revocations: Arc<Revocations>,
    provider: String,
    session_timeout: Duration,
}

impl UserSessions {
    /// `session_timeout`: the proxy's `session.timeout` (entries live
    /// [`Revocations::entry_life`]).
    pub fn new(
        revocations: Arc<Revocations>,
        provider: &str,
        session_timeout: Duration,
    ) -> UserSessions {
        UserSessions {
            revocations,
            provider: provider.to_string(),
            session_timeout,
        }
    }

    /// Ends the proxy sessions and bearer tokens made from one session at the provider (the
    /// `sid` of its ID tokens): what the built-in pool calls when one of its sign-in sessions
    /// ends.
    pub async fn end_idp_session(&self, sid: &str) -> Result<(), Unavailable> {
        self.revocations
            .add(Entry::IdpSession {
                provider: self.provider.clone(),
                sid: sid.to_string(),
                at_ms: now_ms(),
                until: now_ms() / 1000
                    + self.revocations.entry_life(self.session_timeout).as_secs() as i64,
            })
            .await
    }

    pub async fn end_all(&self, sub: &str) -> Result<(), Unavailable> {
        self.revocations
            .add(Entry::Subject {
                provider: self.provider.clone(),
                sub: sub.to_string(),
                at_ms: now_ms(),
                until: now_ms() / 1000
                    + self.revocations.entry_life(self.session_timeout).as_secs() as i64,
            })
            .await
    }
}

fn private_options() -> std::fs::OpenOptions {
    let mut opts = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn append_line(path: &Path, e: &Entry) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut line = serde_json::to_string(e).map_err(std::io::Error::other)?;
    line.push('\n');
    // A compaction replaces the file under an exclusive lock: take a shared one, and write to
    // the file that is at the path once it is held (one write of one short line with O_APPEND,
    // so concurrent writers never interleave within a line).
    for _ in 0..8 {
        let mut f = private_options().create(true).append(true).open(path)?;
        f.lock_shared()?;
        let same = match std::fs::metadata(path) {
            Ok(m) => file_id(&m) == file_id(&f.metadata()?),
            Err(_) => false,
        };
        if same {
            return f.write_all(line.as_bytes());
        }
    }
    Err(std::io::Error::other(
        "the revocation file kept being replaced",
    ))
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
            assert_eq!(
                st.revokes(&Credential::of(&s)),
                want,
                "{} {} {}",
                s.sid,
                s.sub,
                s.created_ms
            );
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

    fn temp_file(tag: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-rev-{tag}-{}-{}",
            std::process::id(),
            now_ms()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("revocations.jsonl");
        (dir, file)
    }

    /// A bearer token is a credential without a session id: checked by provider, `sub`, its
    /// `iat` and its IdP session.
    #[test]
    fn bearer_credentials() {
        let now = now_ms() / 1000;
        let mut st = State::default();
        st.apply(
            &Entry::Subject {
                provider: "idp".into(),
                sub: "bob".into(),
                at_ms: 10_000,
                until: now + 60,
            },
            now,
        );
        st.apply(
            &Entry::IdpSession {
                provider: "pool".into(),
                sid: "ps-1".into(),
                at_ms: 10_000,
                until: now + 60,
            },
            now,
        );
        st.apply(
            &Entry::Session {
                sid: "x".into(),
                until: now + 60,
            },
            now,
        );
        let c = |provider, sub, created_ms, idp_sid| Credential {
            sid: "",
            provider,
            sub,
            created_ms,
            idp_sid,
        };
        assert!(st.revokes(&c("idp", "bob", 9_000, None)));
        assert!(st.revokes(&c("idp", "bob", 0, None)), "no iat: covered");
        assert!(!st.revokes(&c("idp", "bob", 11_000, None)), "issued after");
        assert!(!st.revokes(&c("other", "bob", 9_000, None)));
        assert!(st.revokes(&c("pool", "amy", 9_000, Some("ps-1"))));
        assert!(!st.revokes(&c("pool", "amy", 9_000, Some("ps-2"))));
        assert!(
            !st.revokes(&c("idp", "x", 1, None)),
            "an empty sid is no session"
        );
    }

    /// Later entries for the same user merge: the newest `at_ms`, the longest `until`.
    #[test]
    fn entries_merge_and_prune() {
        let now = now_ms() / 1000;
        let mut st = State::default();
        let subject = |at_ms, until| Entry::Subject {
            provider: "idp".into(),
            sub: "bob".into(),
            at_ms,
            until,
        };
        st.apply(&subject(5_000, now + 1_000), now);
        st.apply(&subject(9_000, now + 10), now);
        assert_eq!(st.merged(&subject(0, 0)), subject(9_000, now + 1_000));
        st.apply(
            &Entry::Session {
                sid: "gone".into(),
                until: now + 5,
            },
            now,
        );
        st.apply(
            &Entry::IdpSession {
                provider: "idp".into(),
                sid: "op".into(),
                at_ms: 1,
                until: now + 5,
            },
            now,
        );
        assert_eq!(st.len(), 3);
        assert_eq!(
            st.prune(now + 6),
            2,
            "the session and the IdP session expired"
        );
        assert_eq!(st.prune(now + 1_001), 1);
        assert_eq!(st.len(), 0);
    }

    /// `prune` (called by the periodic upkeep) removes expired entries of every kind from
    /// memory; live ones stay.
    #[tokio::test]
    async fn prune_forgets_expired_entries() {
        let (dir, file) = temp_file("prune");
        let r = Revocations::new(Some(file), None);
        let now = now_ms() / 1000;
        // Written as if they had been recorded earlier and were just about to expire.
        {
            let mut st = r.state.write();
            for i in 0..100 {
                st.apply(
                    &Entry::Session {
                        sid: format!("old-{i}"),
                        until: now,
                    },
                    now,
                );
                st.apply(
                    &Entry::Subject {
                        provider: "idp".into(),
                        sub: format!("u{i}"),
                        at_ms: 1,
                        until: now,
                    },
                    now,
                );
                st.apply(
                    &Entry::IdpSession {
                        provider: "idp".into(),
                        sid: format!("op{i}"),
                        at_ms: 1,
                        until: now,
                    },
                    now,
                );
            }
        }
        r.add(Entry::Subject {
            provider: "idp".into(),
            sub: "live".into(),
            at_ms: 5,
            until: now + 600,
        })
        .await
        .unwrap();
        assert_eq!(r.len(), 301);
        // One second later, the 300 entries are past their `until`.
        assert_eq!(r.state.write().prune(now + 1), 300);
        assert_eq!(r.len(), 1);
        assert!(r.revokes(&Credential {
            sid: "",
            provider: "idp",
            sub: "live",
            created_ms: 1,
            idp_sid: None,
        }));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A file of many expired entries and some live ones: compacted at start, it shrinks to the
    /// live ones, and a new instance (a restart) still honours every live one.
    #[tokio::test]
    async fn the_file_is_compacted_without_losing_live_entries() {
        let (dir, file) = temp_file("compact");
        let now = now_ms() / 1000;
        let mut text = String::new();
        for i in 0..5_000 {
            let e = Entry::Session {
                sid: format!("expired-{i}"),
                until: now - 10,
            };
            text.push_str(&serde_json::to_string(&e).unwrap());
            text.push('\n');
        }
        text.push_str("not json\n");
        for i in 0..20 {
            let e = Entry::Subject {
                provider: "idp".into(),
                sub: format!("live-{i}"),
                at_ms: 7_000,
                until: now + 3_600,
            };
            text.push_str(&serde_json::to_string(&e).unwrap());
            text.push('\n');
            // The same user revoked again later: merged into one line.
            let again = Entry::Subject {
                provider: "idp".into(),
                sub: format!("live-{i}"),
                at_ms: 8_000,
                until: now + 60,
            };
            text.push_str(&serde_json::to_string(&again).unwrap());
            text.push('\n');
        }
        std::fs::write(&file, &text).unwrap();
        let before = std::fs::metadata(&file).unwrap().len();
        let r = Revocations::new(Some(file.clone()), None);
        assert!(r.compact(true).unwrap(), "compacted");
        let after = std::fs::metadata(&file).unwrap().len();
        assert!(after * 50 < before, "{before} -> {after} bytes");
        assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 20);
        // Nothing to do the second time.
        assert!(!r.compact(true).unwrap());
        // Appending after a compaction goes to the new file, and another instance sees it.
        r.add(Entry::Session {
            sid: "late".into(),
            until: now + 60,
        })
        .await
        .unwrap();
        let restarted = Revocations::new(Some(file.clone()), None);
        for i in 0..20 {
            let c = Credential {
                sid: "",
                provider: "idp",
                sub: &format!("live-{i}"),
                created_ms: 8_000,
                idp_sid: None,
            };
            assert!(restarted.revokes(&c), "live-{i}");
        }
        assert!(restarted.is_revoked(&session("late", "x", 1, None)));
        assert!(!restarted.is_revoked(&session("expired-1", "x", 1, None)));
        assert_eq!(restarted.len(), 21);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A second process compacts the file while this one reads it incrementally: the
    /// replaced file is read from its start, nothing is lost.
    #[tokio::test]
    async fn a_file_replaced_by_another_process_is_read_again() {
        let (dir, file) = temp_file("replaced");
        let now = now_ms() / 1000;
        let a = Revocations::new(Some(file.clone()), None);
        let b = Revocations::new(Some(file.clone()), None);
        for i in 0..10 {
            a.add(Entry::Session {
                sid: format!("s{i}"),
                until: if i < 5 { now - 1 } else { now + 60 },
            })
            .await
            .unwrap();
        }
        b.sync().await;
        assert_eq!(b.len(), 5);
        assert!(a.compact(true).unwrap());
        a.add(Entry::Session {
            sid: "after".into(),
            until: now + 60,
        })
        .await
        .unwrap();
        let g = b.generation();
        b.sync().await;
        assert!(b.is_revoked(&session("after", "x", 1, None)));
        assert!(b.is_revoked(&session("s7", "x", 1, None)));
        assert_ne!(b.generation(), g);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The timeouts in effect are recorded with the list: after a restart with a lower
    /// timeout, a user-wide entry still lives as long as the longest sessions that may exist.
    #[tokio::test]
    async fn entry_life_covers_longer_recorded_timeouts() {
        let (dir, file) = temp_file("life");
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let r = Revocations::new(Some(file.clone()), None);
        assert_eq!(r.entry_life(Duration::from_secs(3)), hours(24));
        r.note_timeout(hours(72));
        r.record_lifetime().await;
        assert_eq!(r.entry_life(hours(1)), hours(72));
        assert_eq!(r.generation(), 1, "a lifetime revokes nothing");
        let restarted = Revocations::new(Some(file), None);
        assert_eq!(restarted.entry_life(hours(1)), hours(72));
        assert_eq!(restarted.entry_life(hours(100)), hours(100));
        // Once sessions that long can no longer exist, the record expires.
        let later = now_ms() / 1000 + 73 * 3600;
        assert_eq!(restarted.state.write().prune(later), 1);
        assert_eq!(restarted.entry_life(hours(1)), hours(24));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
