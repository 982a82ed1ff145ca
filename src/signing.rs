//! The ES256 key that signs `x-amzn-oidc-data`, published by kid as PEM (ALB's scheme) and as a
//! JWKS. Loaded from `headers.signing_key_file` (PKCS#8 PEM; replicas share it) or generated at
//! start. Private key material never leaves this module.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use std::path::Path;

/// DER prefix of a P-256 SubjectPublicKeyInfo; the 65-byte uncompressed point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a PKCS#8 P-256 private key in PEM (\"BEGIN PRIVATE KEY\"); create one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`"
    )]
    Format { path: String },
}

pub struct SigningKey {
    kid: String,
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    public_pem: String,
    jwk: serde_json::Value,
    pkcs8: Vec<u8>,
}

impl SigningKey {
    pub fn generate() -> SigningKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("system RNG available for key generation");
        Self::from_pkcs8(pkcs8.as_ref()).expect("a freshly generated key parses")
    }

    pub fn load(path: &Path) -> Result<SigningKey, SigningKeyError> {
        Self::load_fingerprinted(path).map(|(k, _)| k)
    }

    /// Loads a key file and returns, with the key, the SHA-256 of the content it was read
    /// from (one read), so that a reload can tell a rotated file from an unchanged one.
    pub fn load_fingerprinted(path: &Path) -> Result<(SigningKey, [u8; 32]), SigningKeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| SigningKeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut fingerprint = [0u8; 32];
        fingerprint
            .copy_from_slice(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref());
        let der = pem_body(&text, "PRIVATE KEY").ok_or_else(|| SigningKeyError::Format {
            path: path.display().to_string(),
        })?;
        let key = Self::from_pkcs8(&der).ok_or_else(|| SigningKeyError::Format {
            path: path.display().to_string(),
        })?;
        Ok((key, fingerprint))
    }

    /// Parses a PKCS#8 PEM ("BEGIN PRIVATE KEY"), e.g. one kept in the pool's database.
    pub fn from_pem(text: &str) -> Option<SigningKey> {
        Self::from_pkcs8(&pem_body(text, "PRIVATE KEY")?)
    }

    fn from_pkcs8(der: &[u8]) -> Option<SigningKey> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng).ok()?;
        let point = pair.public_key().as_ref().to_vec();
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&point);
        let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
        let h = crate::session::keyring::hex(&digest.as_ref()[..16]);
        let kid = format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        );
        let public_pem = pem("PUBLIC KEY", &spki);
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Some(SigningKey {
            kid,
            pair,
            rng,
            public_pem,
            jwk,
            pkcs8: der.to_vec(),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    pub fn jwk(&self) -> &serde_json::Value {
        &self.jwk
    }

    /// PKCS#8 PEM of the private key, for writing a key file (`portcullis keygen --signing-key`).
    pub fn private_pem(&self) -> String {
        pem("PRIVATE KEY", &self.pkcs8)
    }

    /// A 64-byte `r‖s` ES256 signature (JWS form).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair
            .sign(&self.rng, message)
            .expect("ECDSA signing with a valid key and system RNG")
            .as_ref()
            .to_vec()
    }
}

pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

pub fn pem_body(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = text[start..].find(&end)? + start;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    #[test]
    fn signs_verifiably_and_round_trips_pem() {
        let k = SigningKey::generate();
        let sig = k.sign(b"msg");
        let der = pem_body(k.public_pem(), "PUBLIC KEY").unwrap();
        let point = &der[P256_SPKI_PREFIX.len()..];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
            .verify(b"msg", &sig)
            .unwrap();
        let path = std::env::temp_dir().join(format!("pc-sk-{}.pem", std::process::id()));
        std::fs::write(&path, k.private_pem()).unwrap();
        let again = SigningKey::load(&path).unwrap();
        assert_eq!(again.kid(), k.kid());
        std::fs::write(&path, "junk").unwrap();
        assert!(SigningKey::load(&path).is_err());
        std::fs::remove_file(path).unwrap();
    }
}
