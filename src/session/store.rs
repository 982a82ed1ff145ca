//! The session store: the one place sessions are loaded, saved, revoked and their refresh
//! coordinated. The auth gate asks "who is signed in" ([`SessionStore::load`]) and gets a
//! [`Principal`]; it never knows where the session lives:
//!
//! - **cookie** (default): the sealed session is the cookie (ALB-style shards);
//! - **redis**: the cookie `NAME-0` holds only an opaque ticket (256 random bits); the session
//!   is sealed with the same key ring and kept in Redis under the SHA-256 of the ticket, with a
//!   TTL equal to its remaining life (a Redis dump reveals neither tokens nor tickets).
//!
//! Either way a known session is a lookup in a per-worker cache keyed by the exact cookie text
//! — no base64, no AEAD, no JSON, no network — and a revocation check that costs one atomic
//! load unless the revocation list changed. Redis is asked only for a ticket this worker has
//! not seen, for sign-out, and for the cross-replica refresh lock; when it cannot answer, the
//! request fails closed ([`Unavailable`] → 503), never "no session" and never a stale session.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue};

use super::cache::SessionCache;
use super::keyring::KeyRing;
use super::principal::{Principal, Principals};
use super::redis::{Redis, Unavailable};
use super::revocation::{Entry, Revocations};
use super::shards::{CookieJar, TooLarge};
use super::{Session, now_unix};
use crate::config::StoreKind;
use crate::worker::PerWorker;

/// AEAD associated data for sessions sealed into cookies.
pub const SESSION_PURPOSE: &[u8] = b"portcullis-session";
/// AEAD associated data for sessions sealed into Redis (a Redis value cannot be replayed as a
/// cookie, nor the other way round).
const REDIS_PURPOSE: &[u8] = b"portcullis-session-redis";
/// How many opened sessions are kept ready, over all workers.
const CACHE_CAPACITY: usize = 65_536;
/// Length of a ticket in bytes (256 bits).
const TICKET_BYTES: usize = 32;
/// How long a refresh result is shared with replicas that still see the old session.
const REFRESH_SHARE: Duration = Duration::from_secs(60);
/// The cross-replica refresh lock's lifetime (longer than one refresh at the IdP takes).
const REFRESH_LOCK: Duration = Duration::from_secs(15);

/// A session found for a request.
pub struct Loaded {
    pub principal: Arc<Principal>,
    /// The cookie text it was found under (cache key; the ticket with the Redis store).
    text: Box<[u8]>,
}

/// Why a session could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    #[error("the session's provider is not configured")]
    UnknownProvider,
}

pub struct SessionStore {
    kind: StoreKind,
    keyring: Arc<KeyRing>,
    jar: CookieJar,
    caches: PerWorker<SessionCache<Principal>>,
    principals: Principals,
    revocations: Arc<Revocations>,
    redis: Option<Arc<Redis>>,
    /// `session.timeout` as configured now: a session also ends `timeout` after it was
    /// created, whatever expiry was sealed into it under an earlier, longer timeout.
    timeout: Duration,
}

fn redis_key(ticket: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, ticket);
    format!("portcullis:session:{}", super::keyring::hex(d.as_ref()))
}

fn refreshed_key(sid: &str) -> String {
    format!("portcullis:refreshed:{sid}")
}

fn lock_key(sid: &str) -> String {
    format!("portcullis:refresh-lock:{sid}")
}

impl SessionStore {
    pub fn new(
        kind: StoreKind,
        keyring: Arc<KeyRing>,
        jar: CookieJar,
        principals: Principals,
        revocations: Arc<Revocations>,
        redis: Option<Arc<Redis>>,
        workers: usize,
    ) -> SessionStore {
        let each = (CACHE_CAPACITY / workers.max(1)).max(1024);
        SessionStore {
            kind,
            keyring,
            jar,
            caches: PerWorker::new(workers, || SessionCache::new(each)),
            principals,
            revocations,
            redis,
            timeout: Duration::MAX,
        }
    }

    /// Holds sessions to `created_at + timeout` too (the configured `session.timeout`), so a
    /// lowered timeout shortens sessions made under a longer one: none outlives the
    /// revocation entries sized by the timeout in effect.
    pub fn with_timeout(mut self, timeout: Duration) -> SessionStore {
        self.timeout = timeout;
        self.revocations.note_timeout(timeout);
        self
    }

    /// The session has run out: its sealed expiry, or `created_at + session.timeout`.
    fn is_over(&self, s: &super::Session, now: i64) -> bool {
        s.is_expired(now)
            || i64::try_from(self.timeout.as_secs())
                .is_ok_and(|t| now >= s.created_at.saturating_add(t))
    }

    pub fn jar(&self) -> &CookieJar {
        &self.jar
    }

    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    pub fn redis(&self) -> Option<&Arc<Redis>> {
        self.redis.as_ref()
    }

    fn forget(&self, text: &[u8]) {
        for c in self.caches.all() {
            c.remove(text);
        }
    }

    /// Who is signed in: `Ok(None)` for no session (absent, malformed, foreign, expired,
    /// revoked); `Err` when Redis is needed and cannot answer.
    pub async fn load(&self, headers: &HeaderMap, now: i64) -> Result<Option<Loaded>, Unavailable> {
        let Some(text) = self.jar.read(headers) else {
            return Ok(None);
        };
        let principal = match self.caches.get().get(&text) {
            Some(p) => p,
            None => {
                let session = match self.kind {
                    StoreKind::Cookie => self.open_cookie(&text),
                    StoreKind::Redis => self.fetch(&text).await?,
                };
                let Some(p) = session.and_then(|s| self.principals.make(s)) else {
                    return Ok(None);
                };
                let p = Arc::new(p);
                self.caches.get().insert(&text, p.clone());
                p
            }
        };
        if self.is_over(&principal.session, now) {
            self.forget(&text);
            return Ok(None);
        }
        // With a shared list, a list that could not be read for a while might be missing a
        // revocation made elsewhere: fail closed rather than honour a possibly revoked session.
        if !self.revocations.fresh() {
            return Err(Unavailable(
                "the shared revocation list could not be read from redis".into(),
            ));
        }
        let generation = self.revocations.generation();
        if principal.checked_at() != generation {
            if self.revocations.is_revoked(&principal.session) {
                self.forget(&text);
                return Ok(None);
            }
            principal.mark_checked(generation);
        }
        Ok(Some(Loaded {
            principal,
            text: text.into_owned().into_boxed_slice(),
        }))
    }

    fn open_cookie(&self, text: &[u8]) -> Option<Session> {
        let sealed = CookieJar::decode(text)?;
        let plain = self.keyring.open(SESSION_PURPOSE, &sealed)?;
        serde_json::from_slice::<Session>(&plain).ok()
    }

    /// The session behind a ticket, from Redis.
    async fn fetch(&self, ticket: &[u8]) -> Result<Option<Session>, Unavailable> {
        // A ticket is exactly 43 base64url characters; anything else is not one of ours and
        // costs no round trip.
        if ticket.len() != 43 || CookieJar::decode(ticket).is_none_or(|b| b.len() != TICKET_BYTES) {
            return Ok(None);
        }
        let Some(redis) = &self.redis else {
            return Ok(None);
        };
        let value: Option<Vec<u8>> = redis
            .query(redis::cmd("GET").arg(redis_key(ticket)))
            .await?;
        Ok(value
            .and_then(|sealed| self.keyring.open(REDIS_PURPOSE, &sealed))
            .and_then(|plain| serde_json::from_slice::<Session>(&plain).ok()))
    }

    /// Saves a new session (or a refreshed one, `previous`: the cookie text it replaces) and
    /// returns the `Set-Cookie` values and its principal, cached under its new cookie text.
    pub async fn save(
        &self,
        session: &Session,
        now: i64,
        previous: Option<&Loaded>,
    ) -> Result<(Vec<HeaderValue>, Arc<Principal>), SaveError> {
        let json = serde_json::to_vec(session).expect("a session serialises to JSON");
        let life = session.expires_at - now;
        let (cookies, text) = match self.kind {
            StoreKind::Cookie => {
                let sealed = self.keyring.seal(SESSION_PURPOSE, &json);
                let cookies = self.jar.encode(&sealed, life)?;
                (cookies, URL_SAFE_NO_PAD.encode(&sealed).into_bytes())
            }
            StoreKind::Redis => {
                // A refresh keeps the ticket, so every replica finds the new tokens under it.
                let ticket = match previous {
                    Some(p) => p.text.to_vec(),
                    None => {
                        let mut t = [0u8; TICKET_BYTES];
                        self.keyring.fill_random(&mut t);
                        URL_SAFE_NO_PAD.encode(t).into_bytes()
                    }
                };
                self.put(&ticket, &json, life).await?;
                let raw = CookieJar::decode(&ticket).unwrap_or_default();
                let cookies = if previous.is_some() {
                    Vec::new()
                } else {
                    self.jar.encode_raw(&raw, life)?
                };
                (cookies, ticket)
            }
        };
        if let Some(p) = previous {
            self.forget(&p.text);
        }
        let principal = Arc::new(
            self.principals
                .make(session.clone())
                .ok_or(SaveError::UnknownProvider)?,
        );
        self.caches.get().insert(&text, principal.clone());
        Ok((cookies, principal))
    }

    async fn put(&self, ticket: &[u8], json: &[u8], life: i64) -> Result<(), Unavailable> {
        let redis = self
            .redis
            .as_ref()
            .ok_or_else(|| Unavailable("no redis configured".into()))?;
        let sealed = self.keyring.seal(REDIS_PURPOSE, json);
        redis
            .query::<()>(
                redis::cmd("SET")
                    .arg(redis_key(ticket))
                    .arg(sealed)
                    .arg("PX")
                    .arg((life.max(1) as u64) * 1000),
            )
            .await
    }

    /// `Set-Cookie` values that delete every session shard.
    pub fn clear(&self) -> &[HeaderValue] {
        self.jar.clear()
    }

    /// Sign-out: the session is revoked (a replayed copy of the cookie is "no session" on
    /// every replica) and, with the Redis store, deleted.
    pub async fn sign_out(&self, loaded: &Loaded) -> Result<(), Unavailable> {
        self.forget(&loaded.text);
        let s = &loaded.principal.session;
        let revoked = self
            .revocations
            .add(Entry::Session {
                sid: s.sid.clone(),
                until: s.expires_at,
            })
            .await;
        if self.kind == StoreKind::Redis
            && let Some(redis) = &self.redis
        {
            redis
                .query::<i64>(redis::cmd("DEL").arg(redis_key(&loaded.text)))
                .await?;
        }
        revoked
    }

    /// Ends every session and bearer token of a user at a provider (all devices, every
    /// replica). `max_life`: the session timeout (the entry lives [`Revocations::entry_life`]).
    pub async fn revoke_subject(
        &self,
        provider: &str,
        sub: &str,
        max_life: Duration,
    ) -> Result<(), Unavailable> {
        let max_life = self.revocations.entry_life(max_life);
        let now = now_unix();
        self.revocations
            .add(Entry::Subject {
                provider: provider.to_string(),
                sub: sub.to_string(),
                at_ms: super::now_unix_ms(),
                until: now + max_life.as_secs() as i64,
            })
            .await
    }

    /// Ends every session and bearer token made from an IdP session (back-channel logout
    /// with a `sid`). `max_life`: the session timeout (the entry lives [`Revocations::entry_life`]).
    pub async fn revoke_idp_session(
        &self,
        provider: &str,
        idp_sid: &str,
        max_life: Duration,
    ) -> Result<(), Unavailable> {
        let max_life = self.revocations.entry_life(max_life);
        let now = now_unix();
        self.revocations
            .add(Entry::IdpSession {
                provider: provider.to_string(),
                sid: idp_sid.to_string(),
                at_ms: super::now_unix_ms(),
                until: now + max_life.as_secs() as i64,
            })
            .await
    }

    // ------------------------------------------------------------------ refresh coordination

    /// Takes the cross-replica refresh lock for a session: `Ok(true)` when this replica is
    /// to refresh. Without Redis there is only this process (the caller's local single-flight
    /// covers it).
    pub async fn lock_refresh(&self, sid: &str) -> Result<bool, Unavailable> {
        let Some(redis) = &self.redis else {
            return Ok(true);
        };
        let got: Option<String> = redis
            .query(
                redis::cmd("SET")
                    .arg(lock_key(sid))
                    .arg("1")
                    .arg("NX")
                    .arg("PX")
                    .arg(REFRESH_LOCK.as_millis() as u64),
            )
            .await?;
        Ok(got.is_some())
    }

    pub async fn unlock_refresh(&self, sid: &str) {
        if let Some(redis) = &self.redis {
            let _ = redis
                .query::<i64>(redis::cmd("DEL").arg(lock_key(sid)))
                .await;
        }
    }

    /// Publishes a refreshed session for replicas that still see the old one (cookie store:
    /// they cannot read the new cookie, so its sealed text is shared for a minute).
    pub async fn publish_refresh(&self, sid: &str, cookies_text: &[u8]) -> Result<(), Unavailable> {
        let (Some(redis), StoreKind::Cookie) = (&self.redis, self.kind) else {
            return Ok(());
        };
        redis
            .query::<()>(
                redis::cmd("SET")
                    .arg(refreshed_key(sid))
                    .arg(cookies_text)
                    .arg("PX")
                    .arg(REFRESH_SHARE.as_millis() as u64),
            )
            .await
    }

    /// A refresh another replica finished for `loaded`'s session, if any: the new principal
    /// and the `Set-Cookie` values that carry it to this client.
    pub async fn refreshed_elsewhere(
        &self,
        loaded: &Loaded,
        now: i64,
    ) -> Result<Option<(Vec<HeaderValue>, Arc<Principal>)>, Unavailable> {
        let Some(redis) = &self.redis else {
            return Ok(None);
        };
        let old = &loaded.principal.session;
        let (session, cookies, text) = match self.kind {
            StoreKind::Cookie => {
                let text: Option<Vec<u8>> = redis
                    .query(redis::cmd("GET").arg(refreshed_key(&old.sid)))
                    .await?;
                let Some(text) = text else { return Ok(None) };
                let Some(session) = self.open_cookie(&text) else {
                    return Ok(None);
                };
                let Some(sealed) = CookieJar::decode(&text) else {
                    return Ok(None);
                };
                let cookies = self
                    .jar
                    .encode(&sealed, session.expires_at - now)
                    .map_err(|e| Unavailable(e.to_string()))?;
                (session, cookies, text)
            }
            StoreKind::Redis => {
                let Some(session) = self.fetch(&loaded.text).await? else {
                    return Ok(None);
                };
                (session, Vec::new(), loaded.text.to_vec())
            }
        };
        if session.sid != old.sid || session.access_expires_at <= old.access_expires_at {
            return Ok(None);
        }
        let Some(p) = self.principals.make(session) else {
            return Ok(None);
        };
        let p = Arc::new(p);
        self.forget(&loaded.text);
        self.caches.get().insert(&text, p.clone());
        Ok(Some((cookies, p)))
    }

    /// The text a saved session is cached under (for [`Self::publish_refresh`]).
    pub fn text_of(&self, cookies: &[HeaderValue]) -> Vec<u8> {
        // Shards in order: `NAME-i=VALUE; attrs` → VALUE concatenated.
        let mut out = Vec::new();
        for c in cookies {
            let b = c.as_bytes();
            let Some(eq) = memchr::memchr(b'=', b) else {
                continue;
            };
            let end = memchr::memchr(b';', b).unwrap_or(b.len());
            if end > eq + 1 {
                out.extend_from_slice(&b[eq + 1..end]);
            }
        }
        out
    }

    /// Readiness of the store: Redis answers (when configured).
    pub async fn ready(&self) -> Option<bool> {
        match &self.redis {
            Some(r) => Some(r.ping().await),
            None => None,
        }
    }
}

impl Loaded {
    /// For tests and callers that need to know which ticket or cookie a session came under.
    pub fn text(&self) -> &[u8] {
        &self.text
    }
}
