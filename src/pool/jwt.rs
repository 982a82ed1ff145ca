//! The pool's token signing: JWTs (ID and access tokens) with keys kept in the database, so
//! every replica signs and verifies with the same keys. ID tokens are RS256 by default, as
//! Cognito's are and as OpenID Connect Discovery requires the OP to support; `pool.signing_alg
//! = "ES256"` switches to ES256. The oldest key of the signing algorithm that was not rotated out
//! signs; every key verifies and is published in the JWKS with `kid`, `alg` and `use`.
//!
//! Rotation (`portcullis pool keys rotate`, `POST /pool/keys/rotate`): a new key signs from
//! then on; each key it replaces stays published until every token it signed has expired (the
//! longest token lifetime plus a margin), then leaves the JWKS and the database. Replicas
//! reread the keys every [`KEY_REFRESH`], and sooner when a token names a key they do not
//! know, so all of them sign with the new key within that time.
//!
//! Verification accepts only our own keys, matched by `kid` **and** algorithm: `none`, HMAC and
//! algorithm confusion (an RS256 key used as ES256, or the other way) cannot verify.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    self, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaKeyPair, UnparsedPublicKey,
};
use serde_json::{Map, Value};

use super::store::{Store, StoreError};
use crate::signing::{SigningKey, pem, pem_body};

/// The algorithm the pool signs its tokens with (`pool.signing_alg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    Rs256,
    Es256,
}

impl SigningAlg {
    pub fn name(self) -> &'static str {
        match self {
            SigningAlg::Rs256 => "RS256",
            SigningAlg::Es256 => "ES256",
        }
    }
}

/// One RS256 key: ring signs, the JWK publishes `n` and `e`.
struct RsaKey {
    kid: String,
    pair: RsaKeyPair,
    jwk: Value,
}

enum PoolKey {
    Es256(SigningKey),
    Rs256(RsaKey),
}

impl PoolKey {
    fn alg(&self) -> SigningAlg {
        match self {
            PoolKey::Es256(_) => SigningAlg::Es256,
            PoolKey::Rs256(_) => SigningAlg::Rs256,
        }
    }
    fn kid(&self) -> &str {
        match self {
            PoolKey::Es256(k) => k.kid(),
            PoolKey::Rs256(k) => &k.kid,
        }
    }
    fn jwk(&self) -> &Value {
        match self {
            PoolKey::Es256(k) => k.jwk(),
            PoolKey::Rs256(k) => &k.jwk,
        }
    }

    /// A PKCS#8 PEM from the database: a P-256 or an RSA key.
    fn from_pem(text: &str) -> Option<PoolKey> {
        if let Some(k) = SigningKey::from_pem(text) {
            return Some(PoolKey::Es256(k));
        }
        let der = pem_body(text, "PRIVATE KEY")?;
        let pair = RsaKeyPair::from_pkcs8(&der).ok()?;
        let public = pair.public();
        let components = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(public);
        let (n, e) = (components.n, components.e);
        let digest = ring::digest::digest(&ring::digest::SHA256, public.as_ref());
        let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]);
        let jwk = serde_json::json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(&n),
            "e": URL_SAFE_NO_PAD.encode(&e),
        });
        Some(PoolKey::Rs256(RsaKey { kid, pair, jwk }))
    }
}

/// A fresh 2,048-bit RSA key as PKCS#8 PEM (ring cannot generate RSA keys; the pure-Rust
/// `rsa` crate can, once per pool database).
fn generate_rsa_pem() -> Result<String, StoreError> {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)
        .map_err(|e| StoreError::Corrupt(format!("RSA key generation failed: {e}")))?;
    let der = key
        .to_pkcs8_der()
        .map_err(|e| StoreError::Corrupt(format!("RSA key encoding failed: {e}")))?;
    Ok(pem("PRIVATE KEY", der.as_bytes()))
}

/// One loaded key and, once rotated out, when it leaves the JWKS.
struct Loaded {
    key: PoolKey,
    /// `None` while the key may sign; else it only verifies, until this time.
    expires_at: Option<i64>,
}

/// The keys as last read from the database.
struct KeySet {
    keys: Vec<Loaded>,
}

impl KeySet {
    /// The signing key: the oldest key of the signing algorithm not rotated out (replicas that
    /// raced to create the first key converge on the same one).
    fn signer(&self, alg: SigningAlg) -> Option<&PoolKey> {
        self.keys
            .iter()
            .find(|k| k.key.alg() == alg && k.expires_at.is_none())
            .map(|k| &k.key)
    }
}

/// How often a replica rereads the keys, so a rotation made elsewhere (the CLI, another
/// replica's admin API) reaches it: a new key signs everywhere within this time, and an
/// unknown `kid` makes verification reread sooner (at most once a second).
pub const KEY_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// What a key looks like in `pool keys list` and `GET /pool/keys`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: &'static str,
    pub created_at: i64,
    /// `signing`, or `retired` (published for verification until `expires_at`).
    pub status: &'static str,
    pub expires_at: Option<i64>,
}

pub struct Keys {
    set: std::sync::RwLock<std::sync::Arc<KeySet>>,
    alg: SigningAlg,
    rng: SystemRandom,
    /// When the set was last read (ms since the epoch); guards rereads.
    loaded_ms: std::sync::atomic::AtomicI64,
    /// When a token naming an unknown key last caused a reread (ms since the epoch).
    kid_miss_ms: std::sync::atomic::AtomicI64,
    reload: tokio::sync::Mutex<()>,
}

fn parse_rows(rows: Vec<super::store::KeyRow>, now: i64) -> Result<KeySet, StoreError> {
    let mut keys = Vec::new();
    for r in rows {
        if r.expires_at.is_some_and(|e| e <= now) {
            continue;
        }
        let key = PoolKey::from_pem(&r.pem).ok_or_else(|| {
            StoreError::Corrupt("a signing key is not PKCS#8 P-256 or RSA".into())
        })?;
        keys.push(Loaded {
            key,
            expires_at: r.expires_at,
        });
    }
    Ok(KeySet { keys })
}

/// A new key of `alg` as PKCS#8 PEM and its `kid`.
async fn generate(alg: SigningAlg) -> Result<(String, String), StoreError> {
    let pem = match alg {
        SigningAlg::Es256 => SigningKey::generate().private_pem(),
        SigningAlg::Rs256 => tokio::task::spawn_blocking(generate_rsa_pem)
            .await
            .map_err(|e| StoreError::Corrupt(format!("key generation: {e}")))??,
    };
    let key = PoolKey::from_pem(&pem)
        .ok_or_else(|| StoreError::Corrupt("a generated key does not parse".into()))?;
    Ok((key.kid().to_string(), pem))
}

/// Reads the keys, creating one of the signing algorithm when none may sign, and removes
/// rotated-out keys whose tokens have all expired.
async fn read_set(store: &Store, alg: SigningAlg, now: i64) -> Result<KeySet, StoreError> {
    let _ = store.purge_signing_keys(now).await;
    let mut set = parse_rows(store.signing_key_rows().await?, now)?;
    if set.signer(alg).is_none() {
        let (kid, pem) = generate(alg).await?;
        store.add_signing_key(&kid, &pem, now).await?;
        set = parse_rows(store.signing_key_rows().await?, now)?;
    }
    Ok(set)
}

/// Rotates the signing key: a new key of `alg` signs from now on; every key that signed
/// before stays published (and verifies) for `keep` seconds — the longest lifetime of a token
/// it signed plus a margin — then leaves the JWKS and the database. Returns the new `kid`.
pub async fn rotate(
    store: &Store,
    alg: SigningAlg,
    keep: i64,
    now: i64,
) -> Result<String, StoreError> {
    let (kid, pem) = generate(alg).await?;
    let old: Vec<String> = store
        .signing_key_rows()
        .await?
        .into_iter()
        .filter(|r| r.expires_at.is_none())
        .filter(|r| PoolKey::from_pem(&r.pem).is_some_and(|k| k.alg() == alg))
        .map(|r| r.kid)
        .collect();
    store.add_signing_key(&kid, &pem, now).await?;
    store.retire_signing_keys(&old, now + keep).await?;
    Ok(kid)
}

/// How long a rotated-out key stays published: the longest lifetime of a token it signed (ID
/// or access token) plus a margin for clock skew and tokens in flight — that lifetime again,
/// at most 10 minutes.
pub fn retention(cfg: &super::PoolConfig) -> i64 {
    let longest = cfg.tokens.id.max(cfg.tokens.access).as_secs() as i64;
    longest + longest.min(600)
}

/// Rotates, records it in the audit log, and lists the keys after it.
pub async fn rotate_audited(
    admin: &super::admin::Admin<'_>,
    now: i64,
) -> Result<(String, Vec<KeyInfo>), super::admin::AdminError> {
    let alg = admin.cfg.signing_alg;
    match rotate(admin.store, alg, retention(admin.cfg), now).await {
        Ok(kid) => {
            admin
                .record("keys.rotate", &kid, &super::audit::Outcome::Ok)
                .await;
            tracing::info!(kid = %kid, "pool.event" = "keys_rotated", "the pool's signing key was rotated");
            Ok((kid, list(admin.store, alg, now).await?))
        }
        Err(e) => {
            admin
                .record(
                    "keys.rotate",
                    "",
                    &super::audit::Outcome::Failed("database".into()),
                )
                .await;
            Err(e.into())
        }
    }
}

/// The keys in the database, oldest first (expired ones are left out).
pub async fn list(store: &Store, alg: SigningAlg, now: i64) -> Result<Vec<KeyInfo>, StoreError> {
    let set = parse_rows(store.signing_key_rows().await?, now)?;
    let signer = set.signer(alg).map(|k| k.kid().to_string());
    let rows = store.signing_key_rows().await?;
    Ok(set
        .keys
        .iter()
        .map(|k| KeyInfo {
            kid: k.key.kid().to_string(),
            alg: k.key.alg().name(),
            created_at: rows
                .iter()
                .find(|r| r.kid == k.key.kid())
                .map(|r| r.created_at)
                .unwrap_or_default(),
            status: if signer.as_deref() == Some(k.key.kid()) {
                "signing"
            } else if k.expires_at.is_some() {
                "retired"
            } else {
                "published"
            },
            expires_at: k.expires_at,
        })
        .collect())
}

impl Keys {
    /// Loads the keys, creating one of the signing algorithm when the database has none that
    /// may sign. Replicas racing here each insert one; all are loaded and the oldest signs, so
    /// they converge.
    pub async fn load(store: &Store, alg: SigningAlg, now: i64) -> Result<Keys, StoreError> {
        let set = read_set(store, alg, now).await?;
        Ok(Keys {
            set: std::sync::RwLock::new(std::sync::Arc::new(set)),
            alg,
            rng: SystemRandom::new(),
            loaded_ms: std::sync::atomic::AtomicI64::new(super::now_ms()),
            kid_miss_ms: std::sync::atomic::AtomicI64::new(0),
            reload: tokio::sync::Mutex::new(()),
        })
    }

    fn current(&self) -> std::sync::Arc<KeySet> {
        match self.set.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Rereads the keys now (after a rotation made here).
    pub async fn reload(&self, store: &Store) -> Result<(), StoreError> {
        let _g = self.reload.lock().await;
        self.reread(store).await
    }

    /// Reads the set and swaps it in; the caller holds `reload`.
    async fn reread(&self, store: &Store) -> Result<(), StoreError> {
        let result = read_set(store, self.alg, super::now()).await;
        self.loaded_ms
            .store(super::now_ms(), std::sync::atomic::Ordering::Relaxed);
        let set = std::sync::Arc::new(result?);
        match self.set.write() {
            Ok(mut g) => *g = set,
            Err(p) => *p.into_inner() = set,
        }
        Ok(())
    }

    /// Rereads the keys when the last read is older than [`KEY_REFRESH`]; one caller rereads,
    /// the others go on with the current set. A database error keeps the current set.
    pub async fn refresh(&self, store: &Store) {
        let age = super::now_ms() - self.loaded_ms.load(std::sync::atomic::Ordering::Relaxed);
        if age < KEY_REFRESH.as_millis() as i64 {
            return;
        }
        let Ok(_g) = self.reload.try_lock() else {
            return;
        };
        if let Err(e) = self.reread(store).await {
            tracing::warn!(error = %e, "cannot reread the pool's signing keys");
        }
    }

    /// Whether a token names a key this replica does not know (yet).
    fn unknown_kid(&self, token: &str) -> bool {
        let kid = token
            .split('.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
            .and_then(|h| h.get("kid").and_then(Value::as_str).map(str::to_string));
        kid.is_some_and(|kid| !self.current().keys.iter().any(|k| k.key.kid() == kid))
    }

    /// [`Keys::verify`], rereading the keys first (at most once a second) when the token names
    /// a key rotated in on another replica moments ago.
    pub async fn verify_fresh(&self, store: &Store, token: &str) -> Option<Map<String, Value>> {
        if self.unknown_kid(token) {
            // At most one such reread a second, however many tokens name unknown keys.
            let now = super::now_ms();
            let last = self.kid_miss_ms.load(std::sync::atomic::Ordering::Relaxed);
            if now - last >= 1000
                && self
                    .kid_miss_ms
                    .compare_exchange(
                        last,
                        now,
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                    )
                    .is_ok()
            {
                let _g = self.reload.lock().await;
                if let Err(e) = self.reread(store).await {
                    tracing::warn!(error = %e, "cannot reread the pool's signing keys");
                }
            }
        }
        self.verify(token)
    }

    /// The algorithms discovery lists: the signing one first. RS256 is always listed (OpenID
    /// Connect Discovery §3 requires it) and an RS256 key is always published with it.
    pub fn algs(&self) -> Vec<&'static str> {
        let mut v = vec![self.alg.name()];
        for k in &self.current().keys {
            if !v.contains(&k.key.alg().name()) {
                v.push(k.key.alg().name());
            }
        }
        v
    }

    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The published keys: the signing key and every rotated-out key whose tokens may still be
    /// valid.
    pub fn jwks(&self) -> Value {
        Value::Object(Map::from_iter([(
            "keys".to_string(),
            Value::Array(
                self.current()
                    .keys
                    .iter()
                    .map(|k| k.key.jwk().clone())
                    .collect(),
            ),
        )]))
    }

    /// The `kid` new tokens are signed with.
    pub fn signing_kid(&self) -> Option<String> {
        self.current().signer(self.alg).map(|k| k.kid().to_string())
    }

    /// Signs claims as a compact JWS with the signing key.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_typed(claims, "JWT")
    }

    /// Like [`Keys::sign`] with another `typ` header (e.g. `logout+jwt`).
    pub fn sign_typed(&self, claims: &Value, typ: &str) -> String {
        let set = self.current();
        // `read_set` always leaves a key that may sign; a set without one cannot be loaded.
        let k = match set.signer(self.alg) {
            Some(k) => k,
            None => &set.keys[0].key,
        };
        let header = serde_json::json!({"alg": k.alg().name(), "typ": typ, "kid": k.kid()});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = match k {
            PoolKey::Es256(e) => e.sign(input.as_bytes()),
            PoolKey::Rs256(r) => {
                let mut sig = vec![0u8; r.pair.public().modulus_len()];
                r.pair
                    .sign(
                        &signature::RSA_PKCS1_SHA256,
                        &self.rng,
                        input.as_bytes(),
                        &mut sig,
                    )
                    .expect("RSA signing with a key ring loaded cannot fail");
                sig
            }
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// Verifies the signature of a token we issued and returns its claims (expiry is the
    /// caller's to check: end-session accepts an expired `id_token_hint`).
    pub fn verify(&self, token: &str) -> Option<Map<String, Value>> {
        let mut parts = token.split('.');
        let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
        let alg = header.get("alg")?.as_str()?;
        let kid = header.get("kid")?.as_str()?;
        let set = self.current();
        let key = &set.keys.iter().find(|k| k.key.kid() == kid)?.key;
        // The key decides the algorithm; the header must agree (no algorithm confusion).
        if key.alg().name() != alg {
            return None;
        }
        let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
        let input = format!("{h}.{p}");
        match key {
            PoolKey::Es256(k) => {
                let jwk = k.jwk();
                let mut point = vec![4u8];
                point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str()?).ok()?);
                point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str()?).ok()?);
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
                    .verify(input.as_bytes(), &sig)
                    .ok()?;
            }
            PoolKey::Rs256(k) => {
                UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, k.pair.public().as_ref())
                    .verify(input.as_bytes(), &sig)
                    .ok()?;
            }
        }
        match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()? {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }
}

/// OIDC Core 3.1.3.6 `at_hash` (and `c_hash`): the left half of the SHA-256 of the token,
/// base64url. SHA-256 serves both RS256 and ES256.
pub fn left_half_hash(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    URL_SAFE_NO_PAD.encode(&d.as_ref()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(alg: SigningAlg) -> Keys {
        let key = match alg {
            SigningAlg::Es256 => PoolKey::Es256(SigningKey::generate()),
            SigningAlg::Rs256 => PoolKey::from_pem(&generate_rsa_pem().unwrap()).unwrap(),
        };
        Keys {
            set: std::sync::RwLock::new(std::sync::Arc::new(KeySet {
                keys: vec![Loaded {
                    key,
                    expires_at: None,
                }],
            })),
            alg,
            rng: SystemRandom::new(),
            loaded_ms: std::sync::atomic::AtomicI64::new(0),
            kid_miss_ms: std::sync::atomic::AtomicI64::new(0),
            reload: tokio::sync::Mutex::new(()),
        }
    }

    #[test]
    fn signs_and_verifies_and_rejects_tampering() {
        for alg in [SigningAlg::Rs256, SigningAlg::Es256] {
            let keys = keys(alg);
            let t = keys.sign(&serde_json::json!({"sub": "u1"}));
            let header: Value = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(t.split('.').next().unwrap())
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(header["alg"], alg.name());
            assert_eq!(keys.verify(&t).unwrap()["sub"], "u1");
            let mut parts: Vec<&str> = t.split('.').collect();
            let forged = URL_SAFE_NO_PAD.encode(r#"{"sub":"admin"}"#);
            parts[1] = &forged;
            assert!(keys.verify(&parts.join(".")).is_none());
            let none_alg = format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
                forged
            );
            assert!(keys.verify(&none_alg).is_none());
            assert!(self::keys(alg).verify(&t).is_none());
        }
    }

    /// Algorithm confusion: a token whose header names another algorithm than its key's.
    #[test]
    fn header_alg_must_match_the_key() {
        let keys = keys(SigningAlg::Rs256);
        let t = keys.sign(&serde_json::json!({"sub": "u1"}));
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        let kid = keys.signing_kid().unwrap();
        for alg in ["HS256", "ES256", "none"] {
            parts[0] = URL_SAFE_NO_PAD
                .encode(serde_json::json!({"alg": alg, "typ": "JWT", "kid": kid}).to_string());
            assert!(keys.verify(&parts.join(".")).is_none(), "{alg}");
        }
    }

    /// OIDC Core 3.1.3.6; the expected value was computed independently with Python's
    /// `hashlib` (urlsafe base64 of the first 16 bytes of SHA-256, unpadded).
    #[test]
    fn at_hash_is_left_half_of_sha256() {
        let h = left_half_hash("jHkWEdUXMU1BwAsC4vtUsZwnNE7");
        assert_eq!(h.len(), 22);
        assert_eq!(h, "6cnUJ9v9-hUd45LPh1gN-g");
    }

    /// Two replicas on one database: a rotation made through one is unknown to the other until
    /// it rereads; a token naming the new key makes it reread at once. The replaced key stays
    /// published until its retention ends, then leaves the JWKS and the database.
    #[tokio::test]
    async fn rotation_reaches_another_replica_and_old_keys_leave() {
        let dir = std::env::temp_dir().join(format!("pc-jwt-rot-{}", std::process::id()));
        let url = format!("sqlite://{}", dir.join("pool.db").display());
        let store = Store::open(&url).await.unwrap();
        let t0 = crate::pool::now();
        let a = Keys::load(&store, SigningAlg::Es256, t0).await.unwrap();
        let b = Keys::load(&store, SigningAlg::Es256, t0).await.unwrap();
        let old = a.signing_kid().unwrap();
        assert_eq!(
            b.signing_kid().unwrap(),
            old,
            "replicas converge on one key"
        );
        let new = rotate(&store, SigningAlg::Es256, 60, t0).await.unwrap();
        a.reload(&store).await.unwrap();
        let token = a.sign(&serde_json::json!({"sub": "u1"}));
        assert_eq!(a.signing_kid().unwrap(), new);
        assert!(b.verify(&token).is_none(), "b has not reread yet");
        assert_eq!(b.verify_fresh(&store, &token).await.unwrap()["sub"], "u1");
        assert_eq!(
            b.signing_kid().unwrap(),
            new,
            "the reread also moves b's signing key"
        );
        let kids = |k: &Keys| {
            k.jwks()["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["kid"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let mut both = vec![old.clone(), new.clone()];
        both.sort();
        let mut published = kids(&b);
        published.sort();
        assert_eq!(published, both);
        let listed = list(&store, SigningAlg::Es256, t0).await.unwrap();
        let status = |kid: &str| listed.iter().find(|k| k.kid == kid).unwrap().status;
        assert_eq!((status(&old), status(&new)), ("retired", "signing"));
        // After the retention the old key is gone from the set and from the database.
        let set = read_set(&store, SigningAlg::Es256, t0 + 61).await.unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].key.kid(), new);
        assert_eq!(store.signing_key_rows().await.unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
