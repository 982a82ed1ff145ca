//! ID token signatures checked with `ring`, against the provider's JWKS parsed once per fetch.
//!
//! `openidconnect` verifies RSA signatures with the pure-Rust `rsa` crate, about four times
//! slower than `ring` (173 µs against 42 µs for an RS256 ID token on the benchmark machine) —
//! a quarter of Portcullis's CPU per login. This module is only a faster first try: when it
//! finds exactly one suitable key and `ring` accepts the signature, the caller skips
//! `openidconnect`'s signature step and still runs all of its claim checks (iss, aud, exp, iat,
//! nonce, the JOSE header). In every other case — an algorithm not handled here, no key or
//! several keys that could match, a key `ring` does not take (RSA under 2,048 bits), a bad
//! signature — it answers "not verified" and `openidconnect` verifies the token exactly as
//! before, with the same errors.

use base64::Engine;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use serde_json::Value;

/// One public signing key from a JWKS.
#[derive(Debug)]
pub struct Key {
    kid: Option<String>,
    /// The JWK's own `alg`, when it names one: the token's must then be the same.
    alg: Option<String>,
    material: Material,
}

#[derive(Debug)]
enum Material {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed SEC1 point (`04 || x || y`).
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
}

fn b64(v: Option<&Value>) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v?.as_str()?.trim_end_matches('='))
        .ok()
}

fn point(x: Option<&Value>, y: Option<&Value>, len: usize) -> Option<Vec<u8>> {
    let (x, y) = (b64(x)?, b64(y)?);
    if x.len() != len || y.len() != len {
        return None;
    }
    let mut p = Vec::with_capacity(1 + 2 * len);
    p.push(4);
    p.extend_from_slice(&x);
    p.extend_from_slice(&y);
    Some(p)
}

/// The signing keys of a JWKS (`{"keys": [...]}`) this module can use; others are skipped
/// (and stay `openidconnect`'s to use).
pub fn parse_jwks(jwks: &Value) -> Vec<Key> {
    let Some(keys) = jwks.get("keys").and_then(Value::as_array) else {
        return Vec::new();
    };
    keys.iter()
        .filter(|k| k.get("use").is_none_or(|u| u == "sig"))
        .filter_map(|k| {
            let material = match (
                k.get("kty").and_then(Value::as_str)?,
                k.get("crv").and_then(Value::as_str),
            ) {
                ("RSA", _) => Material::Rsa {
                    n: b64(k.get("n"))?,
                    e: b64(k.get("e"))?,
                },
                ("EC", Some("P-256")) => Material::P256(point(k.get("x"), k.get("y"), 32)?),
                ("EC", Some("P-384")) => Material::P384(point(k.get("x"), k.get("y"), 48)?),
                ("OKP", Some("Ed25519")) => {
                    let x = b64(k.get("x"))?;
                    (x.len() == 32).then_some(Material::Ed25519(x))?
                }
                _ => return None,
            };
            Some(Key {
                kid: k.get("kid").and_then(Value::as_str).map(str::to_string),
                alg: k.get("alg").and_then(Value::as_str).map(str::to_string),
                material,
            })
        })
        .collect()
}

/// How a JWS `alg` is verified with `ring`: RSA with these parameters, or a raw public key of
/// the material's kind.
enum Verifier {
    Rsa(&'static signature::RsaParameters),
    P256,
    P384,
    Ed25519,
}

impl Verifier {
    fn for_alg(alg: &str) -> Option<Verifier> {
        use Verifier::*;
        Some(match alg {
            "RS256" => Rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
            "RS384" => Rsa(&signature::RSA_PKCS1_2048_8192_SHA384),
            "RS512" => Rsa(&signature::RSA_PKCS1_2048_8192_SHA512),
            "PS256" => Rsa(&signature::RSA_PSS_2048_8192_SHA256),
            "PS384" => Rsa(&signature::RSA_PSS_2048_8192_SHA384),
            "PS512" => Rsa(&signature::RSA_PSS_2048_8192_SHA512),
            "ES256" => P256,
            "ES384" => P384,
            "EdDSA" => Ed25519,
            _ => return None,
        })
    }

    /// The key material this algorithm verifies with, and ring's algorithm for a raw key.
    fn raw<'m>(&self, m: &'m Material) -> Option<(&'static dyn VerificationAlgorithm, &'m [u8])> {
        match (self, m) {
            (Verifier::P256, Material::P256(p)) => {
                Some((&signature::ECDSA_P256_SHA256_FIXED, p.as_slice()))
            }
            (Verifier::P384, Material::P384(p)) => {
                Some((&signature::ECDSA_P384_SHA384_FIXED, p.as_slice()))
            }
            (Verifier::Ed25519, Material::Ed25519(p)) => Some((&signature::ED25519, p.as_slice())),
            _ => None,
        }
    }

    fn suits(&self, m: &Material) -> bool {
        match self {
            Verifier::Rsa(_) => matches!(m, Material::Rsa { .. }),
            _ => self.raw(m).is_some(),
        }
    }

    fn verify(&self, m: &Material, signed: &[u8], sig: &[u8]) -> bool {
        match (self, m) {
            (Verifier::Rsa(params), Material::Rsa { n, e }) => {
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, signed, sig)
                    .is_ok()
            }
            _ => self
                .raw(m)
                .is_some_and(|(alg, p)| UnparsedPublicKey::new(alg, p).verify(signed, sig).is_ok()),
        }
    }
}

/// True only when exactly one key could have signed `jwt` (by `kid`, key type and the key's
/// own `alg`) and `ring` verifies its signature with it.
pub fn verified(jwt: &str, keys: &[Key]) -> bool {
    let Some((signed, sig)) = jwt.rsplit_once('.') else {
        return false;
    };
    let mut parts = signed.split('.');
    let (Some(header), Some(_payload), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Some(header) = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
    else {
        return false;
    };
    let Some(alg) = header.get("alg").and_then(Value::as_str) else {
        return false;
    };
    let Some(verifier) = Verifier::for_alg(alg) else {
        return false;
    };
    let kid = header.get("kid").and_then(Value::as_str);
    let mut candidates = keys.iter().filter(|k| {
        verifier.suits(&k.material)
            && kid.is_none_or(|kid| k.kid.as_deref() == Some(kid))
            && k.alg.as_deref().is_none_or(|a| a == alg)
    });
    let (Some(key), None) = (candidates.next(), candidates.next()) else {
        return false;
    };
    let Ok(sig) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig) else {
        return false;
    };
    verifier.verify(&key.material, signed.as_bytes(), &sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
    use serde_json::json;

    fn enc(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    struct Keys {
        rsa: RsaKeyPair,
        ec: EcdsaKeyPair,
        ed: Ed25519KeyPair,
    }

    fn keys() -> Keys {
        let rng = SystemRandom::new();
        let ec_pk8 =
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .unwrap();
        let ed_pk8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Keys {
            rsa: RsaKeyPair::from_pkcs8(include_bytes!("../../benches/fixtures/rsa2048.pk8"))
                .unwrap(),
            ec: EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                ec_pk8.as_ref(),
                &rng,
            )
            .unwrap(),
            ed: Ed25519KeyPair::from_pkcs8(ed_pk8.as_ref()).unwrap(),
        }
    }

    fn jwk_rsa(k: &Keys, kid: &str) -> Value {
        let c: signature::RsaPublicKeyComponents<Vec<u8>> = k.rsa.public().into();
        json!({"kty": "RSA", "kid": kid, "use": "sig", "n": enc(&c.n), "e": enc(&c.e)})
    }

    fn jwk_ec(k: &Keys, kid: &str) -> Value {
        let p = k.ec.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": enc(&p[1..33]), "y": enc(&p[33..])})
    }

    fn jwk_ed(k: &Keys, kid: &str) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": enc(k.ed.public_key().as_ref())})
    }

    fn sign(k: &Keys, alg: &str, kid: Option<&str>, claims: &Value) -> String {
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        let input = format!(
            "{}.{}",
            enc(header.to_string().as_bytes()),
            enc(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match alg {
            "RS256" | "PS256" => {
                let pad: &dyn signature::RsaEncoding = if alg == "RS256" {
                    &signature::RSA_PKCS1_SHA256
                } else {
                    &signature::RSA_PSS_SHA256
                };
                let mut sig = vec![0; k.rsa.public().modulus_len()];
                k.rsa.sign(pad, &rng, input.as_bytes(), &mut sig).unwrap();
                sig
            }
            "ES256" => k.ec.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            "EdDSA" => k.ed.sign(input.as_bytes()).as_ref().to_vec(),
            // Anything else gets a signature no key made.
            _ => vec![7; 64],
        };
        format!("{input}.{}", enc(&sig))
    }

    #[test]
    fn tokens_signed_by_a_jwks_key_verify_for_every_algorithm_handled() {
        let k = keys();
        let jwks = json!({"keys": [jwk_rsa(&k, "r1"), jwk_ec(&k, "e1"), jwk_ed(&k, "d1")]});
        let parsed = parse_jwks(&jwks);
        assert_eq!(parsed.len(), 3);
        let claims = json!({"sub": "alice", "iss": "https://idp.test"});
        for (alg, kid) in [
            ("RS256", "r1"),
            ("PS256", "r1"),
            ("ES256", "e1"),
            ("EdDSA", "d1"),
        ] {
            let jwt = sign(&k, alg, Some(kid), &claims);
            assert!(verified(&jwt, &parsed), "{alg}");
            // Without a kid, the one key of the right type is used.
            assert!(
                verified(&sign(&k, alg, None, &claims), &parsed),
                "{alg} no kid"
            );
        }
    }

    #[test]
    fn anything_doubtful_is_left_to_openidconnect() {
        let k = keys();
        let parsed = parse_jwks(&json!({"keys": [jwk_rsa(&k, "r1"), jwk_ec(&k, "e1")]}));
        let claims = json!({"sub": "alice"});
        let good = sign(&k, "RS256", Some("r1"), &claims);
        assert!(verified(&good, &parsed));

        // A changed payload, a changed signature, a truncated token.
        let (head, rest) = good.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged = format!("{head}.{}.{sig}", enc(br#"{"sub":"mallory"}"#));
        assert!(!verified(&forged, &parsed));
        let mut bad_sig = good.clone();
        bad_sig.pop();
        bad_sig.push(if good.ends_with('A') { 'B' } else { 'A' });
        assert!(!verified(&bad_sig, &parsed));
        assert!(!verified(head, &parsed));
        assert!(!verified(&format!("{good}.extra"), &parsed));

        // An unknown kid, or a kid naming a key of another type.
        assert!(!verified(
            &sign(&k, "RS256", Some("nope"), &claims),
            &parsed
        ));
        assert!(!verified(&sign(&k, "RS256", Some("e1"), &claims), &parsed));
        // Algorithms not handled here (HMAC, none, ES512) are never "verified" here.
        for alg in ["HS256", "none", "ES512", "RS1"] {
            assert!(
                !verified(&sign(&k, alg, Some("r1"), &claims), &parsed),
                "{alg}"
            );
        }
        // Two keys that could match and no kid: ambiguous.
        let two = parse_jwks(&json!({"keys": [jwk_rsa(&k, "r1"), jwk_rsa(&k, "r2")]}));
        assert!(!verified(&sign(&k, "RS256", None, &claims), &two));
        assert!(verified(&sign(&k, "RS256", Some("r2"), &claims), &two));
        // The key's own alg must be the token's.
        let mut pinned = jwk_rsa(&k, "r1");
        pinned["alg"] = json!("RS384");
        let pinned = parse_jwks(&json!({"keys": [pinned]}));
        assert!(!verified(&good, &pinned));
        // Encryption keys are not signing keys.
        let mut enc_key = jwk_rsa(&k, "r1");
        enc_key["use"] = json!("enc");
        assert!(parse_jwks(&json!({"keys": [enc_key]})).is_empty());
        // Malformed JWKS entries are skipped, not fatal.
        let odd = parse_jwks(&json!({"keys": [
            {"kty": "RSA", "kid": "x"},
            {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"},
            {"kty": "oct", "k": "c2VjcmV0"},
            "not an object",
        ]}));
        assert!(odd.is_empty());
        assert!(parse_jwks(&json!({"nokeys": []})).is_empty());
    }
}
