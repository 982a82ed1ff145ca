//! The pool's token signing: JWTs (ID and access tokens) with keys kept in the database, so
//! every replica signs and verifies with the same keys. ID tokens are RS256 by default, as
//! Cognito's are and as OpenID Connect Discovery requires the OP to support; `pool.signing_alg
//! = "ES256"` switches to ES256. The oldest key of the signing algorithm signs; every key
//! verifies and is published in the JWKS with `kid`, `alg` and `use`.
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

pub struct Keys {
    keys: Vec<PoolKey>,
    alg: SigningAlg,
    rng: SystemRandom,
}

impl Keys {
    /// Loads the keys, creating one of the signing algorithm when the database has none.
    /// Replicas racing here each insert one; all are loaded and the oldest signs, so they
    /// converge.
    pub async fn load(store: &Store, alg: SigningAlg, now: i64) -> Result<Keys, StoreError> {
        let parse = |pems: Vec<String>| -> Result<Vec<PoolKey>, StoreError> {
            pems.iter()
                .map(|pem| {
                    PoolKey::from_pem(pem).ok_or_else(|| {
                        StoreError::Corrupt("a signing key is not PKCS#8 P-256 or RSA".into())
                    })
                })
                .collect()
        };
        let mut keys = parse(store.signing_keys().await?)?;
        if !keys.iter().any(|k| k.alg() == alg) {
            let pem = match alg {
                SigningAlg::Es256 => SigningKey::generate().private_pem(),
                SigningAlg::Rs256 => tokio::task::spawn_blocking(generate_rsa_pem)
                    .await
                    .map_err(|e| StoreError::Corrupt(format!("key generation: {e}")))??,
            };
            let key = PoolKey::from_pem(&pem)
                .ok_or_else(|| StoreError::Corrupt("a generated key does not parse".into()))?;
            store.add_signing_key(key.kid(), &pem, now).await?;
            keys = parse(store.signing_keys().await?)?;
        }
        Ok(Keys {
            keys,
            alg,
            rng: SystemRandom::new(),
        })
    }

    /// The algorithms discovery lists: the signing one first. RS256 is always listed (OpenID
    /// Connect Discovery §3 requires it) and an RS256 key is always published with it.
    pub fn algs(&self) -> Vec<&'static str> {
        let mut v = vec![self.alg.name()];
        for k in &self.keys {
            if !v.contains(&k.alg().name()) {
                v.push(k.alg().name());
            }
        }
        v
    }

    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    pub fn jwks(&self) -> Value {
        Value::Object(Map::from_iter([(
            "keys".to_string(),
            Value::Array(self.keys.iter().map(|k| k.jwk().clone()).collect()),
        )]))
    }

    /// Signs claims as a compact JWS with the oldest key of the signing algorithm.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_typed(claims, "JWT")
    }

    /// Like [`Keys::sign`] with another `typ` header (e.g. `logout+jwt`).
    pub fn sign_typed(&self, claims: &Value, typ: &str) -> String {
        let k = self
            .keys
            .iter()
            .find(|k| k.alg() == self.alg)
            .unwrap_or(&self.keys[0]);
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
        let key = self.keys.iter().find(|k| k.kid() == kid)?;
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
            keys: vec![key],
            alg,
            rng: SystemRandom::new(),
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
        let kid = keys.keys[0].kid().to_string();
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
}
