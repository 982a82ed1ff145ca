//! The pool's token signing: ES256 JWTs (ID and access tokens) with keys kept in the database,
//! so every replica signs and verifies with the same keys. The oldest key signs; every key
//! verifies and is published in the JWKS with `kid`, `alg` and `use`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde_json::{Map, Value};

use super::store::{Store, StoreError};
use crate::signing::SigningKey;

pub struct Keys {
    keys: Vec<SigningKey>,
}

impl Keys {
    /// Loads the keys, creating the first one when the database has none. Replicas racing here
    /// each insert one; all are loaded and the oldest signs, so they converge.
    pub async fn load(store: &Store, now: i64) -> Result<Keys, StoreError> {
        if store.signing_keys().await?.is_empty() {
            let k = SigningKey::generate();
            store
                .add_signing_key(k.kid(), &k.private_pem(), now)
                .await?;
        }
        let mut keys = Vec::new();
        for pem in store.signing_keys().await? {
            keys.push(
                SigningKey::from_pem(&pem).ok_or_else(|| {
                    StoreError::Corrupt("a signing key is not PKCS#8 P-256".into())
                })?,
            );
        }
        Ok(Keys { keys })
    }

    pub fn jwks(&self) -> Value {
        Value::Object(Map::from_iter([(
            "keys".to_string(),
            Value::Array(self.keys.iter().map(|k| k.jwk().clone()).collect()),
        )]))
    }

    /// Signs claims as a compact JWS (ES256).
    pub fn sign(&self, claims: &Value) -> String {
        let k = &self.keys[0];
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": k.kid()});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = k.sign(input.as_bytes());
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
        // Only ES256 with one of our kids: `none` and algorithm confusion are impossible here.
        if header.get("alg")?.as_str()? != "ES256" {
            return None;
        }
        let kid = header.get("kid")?.as_str()?;
        let key = self.keys.iter().find(|k| k.kid() == kid)?;
        let jwk = key.jwk();
        let mut point = vec![4u8];
        point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str()?).ok()?);
        point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str()?).ok()?);
        let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(format!("{h}.{p}").as_bytes(), &sig)
            .ok()?;
        match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()? {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_rejects_tampering() {
        let keys = Keys {
            keys: vec![SigningKey::generate()],
        };
        let t = keys.sign(&serde_json::json!({"sub": "u1"}));
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
        let other = Keys {
            keys: vec![SigningKey::generate()],
        };
        assert!(other.verify(&t).is_none());
    }
}
