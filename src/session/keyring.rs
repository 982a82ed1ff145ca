//! The AEAD key ring that seals sessions and login state. Each configured secret is stretched
//! with HKDF-SHA256 into an AES-256-GCM key; the first key seals, every key opens (rotation).
//! Sealed layout: `version(1) ‖ key-id(4) ‖ nonce(12) ‖ ciphertext+tag`, with the cookie's
//! purpose (its name) as associated data so a value cannot be replayed under another name.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::Secret;

const VERSION: u8 = 1;
const HEADER: usize = 1 + 4 + NONCE_LEN;

struct Key {
    id: [u8; 4],
    key: LessSafeKey,
}

/// Seals with the first secret, opens with any.
pub struct KeyRing {
    keys: Vec<Key>,
    rng: SystemRandom,
}

/// Why a key ring could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("no session secret configured")]
    Empty,
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive(secret: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"portcullis/v1");
    let prk = salt.extract(secret);
    let infos = [info];
    let okm = prk
        .expand(&infos, Len(len))
        .expect("HKDF output length is within limits");
    let mut out = vec![0u8; len];
    okm.fill(&mut out)
        .expect("HKDF fill matches requested length");
    out
}

impl KeyRing {
    pub fn new(secrets: &[Secret]) -> Result<KeyRing, KeyRingError> {
        if secrets.is_empty() {
            return Err(KeyRingError::Empty);
        }
        let keys = secrets
            .iter()
            .map(|s| {
                let material = derive(s.expose().as_bytes(), b"session-aead", 32);
                let idv = derive(s.expose().as_bytes(), b"key-id", 4);
                let unbound =
                    UnboundKey::new(&AES_256_GCM, &material).expect("32-byte AES-256 key");
                Key {
                    id: [idv[0], idv[1], idv[2], idv[3]],
                    key: LessSafeKey::new(unbound),
                }
            })
            .collect();
        Ok(KeyRing {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// Derives a stable secret for another purpose from the sealing secret (e.g. the built-in
    /// pool's client secret for the proxy), so operators manage one secret.
    pub fn derive_secret(secrets: &[Secret], purpose: &str) -> Option<String> {
        let s = secrets.first()?;
        Some(hex(&derive(s.expose().as_bytes(), purpose.as_bytes(), 24)))
    }

    pub fn seal(&self, purpose: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let k = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).expect("system RNG available");
        let mut out = Vec::with_capacity(HEADER + plaintext.len() + 16);
        out.push(VERSION);
        out.extend_from_slice(&k.id);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        k.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose),
                &mut body,
            )
            .expect("AES-GCM sealing of an in-memory buffer");
        out.extend_from_slice(&body);
        out
    }

    /// Opens a sealed value; `None` for anything that does not authenticate.
    pub fn open(&self, purpose: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < HEADER + 16 || sealed[0] != VERSION {
            return None;
        }
        let id = &sealed[1..5];
        let k = self.keys.iter().find(|k| k.id == id)?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[5..HEADER]);
        let mut body = sealed[HEADER..].to_vec();
        let plain = k
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose),
                &mut body,
            )
            .ok()?;
        let n = plain.len();
        body.truncate(n);
        Some(body)
    }

    /// Fills `out` with random bytes (tickets).
    pub fn fill_random(&self, out: &mut [u8]) {
        self.rng.fill(out).expect("system RNG available");
    }

    /// Random bytes, hex-encoded (ids, states, nonces).
    pub fn random_hex(&self, bytes: usize) -> String {
        let mut b = vec![0u8; bytes];
        self.rng.fill(&mut b).expect("system RNG available");
        hex(&b)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

/// A fresh random session secret, as `portcullis keygen` prints it.
pub fn generate_secret() -> String {
    use base64::Engine;
    let mut b = [0u8; 32];
    SystemRandom::new()
        .fill(&mut b)
        .expect("system RNG available");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(s: &[&str]) -> KeyRing {
        KeyRing::new(
            &s.iter()
                .map(|s| Secret::new(s.to_string()))
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }

    #[test]
    fn seal_open_rotate_and_reject() {
        let old = ring(&["old-secret-old-secret-old-secret-0"]);
        let sealed = old.seal(b"c", b"hello");
        assert_eq!(old.open(b"c", &sealed).as_deref(), Some(&b"hello"[..]));
        // Rotation: new first, old still opens.
        let rotated = ring(&[
            "new-secret-new-secret-new-secret-0",
            "old-secret-old-secret-old-secret-0",
        ]);
        assert_eq!(rotated.open(b"c", &sealed).as_deref(), Some(&b"hello"[..]));
        let fresh = rotated.seal(b"c", b"x");
        assert!(
            old.open(b"c", &fresh).is_none(),
            "old ring cannot open new key"
        );
        // Wrong purpose, tampering, truncation.
        assert!(old.open(b"other", &sealed).is_none());
        let mut t = sealed.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert!(old.open(b"c", &t).is_none());
        assert!(old.open(b"c", &sealed[..sealed.len() - 1]).is_none());
        assert!(old.open(b"c", &[]).is_none());
    }
}
