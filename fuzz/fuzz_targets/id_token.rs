//! ID-token signatures (src/auth/jws.rs): the JWKS reader and the `ring` verifier that decides
//! whether a token's signature is already checked. Modes, by the first input byte:
//! - `J`: the rest is a JWKS document; every token below is then checked against it;
//! - `R`: the rest is a raw compact JWS, checked against the real keys;
//! - otherwise edits (4 bytes each) to one of four genuine tokens (RS256, ES256, EdDSA, and
//!   ES256 without `kid`): bit flips, byte changes, deletions, insertions, truncation, and
//!   header swaps between tokens (algorithm confusion, `kid` confusion).
//!
//! Property: nothing panics, and a token verifies only when its signed part (header and
//! payload, byte for byte) is one that the real key signed — no edit, splice or key
//! substitution yields a token that verifies with other content.
#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use portcullis::auth::jws::{Key, parse_jwks, verified};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

struct Fixture {
    keys: Vec<Key>,
    tokens: Vec<String>,
}

fn enc(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let rng = SystemRandom::new();
    let rsa = RsaKeyPair::from_pkcs8(include_bytes!("../../benches/fixtures/rsa2048.pk8"))
        .expect("the RSA fixture");
    let ec_pk8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .expect("EC key");
    let ec = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        ec_pk8.as_ref(),
        &rng,
    )
    .expect("EC key");
    let ed_pk8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("Ed25519 key");
    let ed = Ed25519KeyPair::from_pkcs8(ed_pk8.as_ref()).expect("Ed25519 key");
    let n: signature::RsaPublicKeyComponents<Vec<u8>> = rsa.public().into();
    let p = ec.public_key().as_ref();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "r1", "use": "sig", "n": enc(&n.n), "e": enc(&n.e)},
        {"kty": "EC", "crv": "P-256", "kid": "e1", "alg": "ES256", "x": enc(&p[1..33]), "y": enc(&p[33..])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "d1", "x": enc(ed.public_key().as_ref())},
    ]});
    let claims = json!({"iss": "https://idp.test", "sub": "alice", "aud": "c", "exp": 4102444800u64, "iat": 1, "nonce": "n"});
    let sign = |alg: &str, kid: Option<&str>| {
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        let input = format!(
            "{}.{}",
            enc(header.to_string().as_bytes()),
            enc(claims.to_string().as_bytes())
        );
        let sig = match alg {
            "RS256" => {
                let mut sig = vec![0; rsa.public().modulus_len()];
                rsa.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .expect("RSA signing");
                sig
            }
            "ES256" => ec
                .sign(&rng, input.as_bytes())
                .expect("EC signing")
                .as_ref()
                .to_vec(),
            _ => ed.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", enc(&sig))
    };
    let tokens = vec![
        sign("RS256", Some("r1")),
        sign("ES256", Some("e1")),
        sign("EdDSA", Some("d1")),
        sign("ES256", None),
    ];
    let keys = parse_jwks(&jwks);
    assert_eq!(keys.len(), 3);
    for t in &tokens {
        assert!(verified(t, &keys), "genuine token must verify");
    }
    Fixture { keys, tokens }
});

fn signed_part(jwt: &str) -> &str {
    jwt.rsplit_once('.').map_or("", |(s, _)| s)
}

fn check(jwt: &str, keys: &[Key], f: &Fixture) {
    if verified(jwt, keys) {
        let s = signed_part(jwt);
        assert!(
            f.tokens.iter().any(|t| signed_part(t) == s),
            "forged token verified: {jwt}"
        );
    }
}

fn edit(tokens: &[String], data: &[u8]) -> String {
    let mut t = tokens[usize::from(data[0]) % tokens.len()]
        .clone()
        .into_bytes();
    for op in data[1..].chunks_exact(4) {
        if t.is_empty() {
            break;
        }
        let pos = (usize::from(op[1]) << 8 | usize::from(op[2])) % t.len();
        match op[0] % 6 {
            0 => t[pos] ^= 1 << (op[3] % 8),
            1 => t[pos] = op[3],
            2 => {
                t.remove(pos);
            }
            3 => t.insert(pos, op[3]),
            4 => t.truncate(pos),
            // Another token's header (or signature) in place of this one's.
            _ => {
                let text = String::from_utf8_lossy(&t).into_owned();
                let other = &tokens[usize::from(op[3]) % tokens.len()];
                let mut mine: Vec<&str> = text.split('.').collect();
                let theirs: Vec<&str> = other.split('.').collect();
                let i = pos % 3;
                if mine.len() == 3 {
                    mine[i] = theirs[i];
                }
                t = mine.join(".").into_bytes();
            }
        }
    }
    String::from_utf8_lossy(&t).into_owned()
}

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    match data.split_first() {
        None => {}
        Some((b'J', rest)) => {
            if let Ok(v) = serde_json::from_slice::<Value>(rest) {
                let keys = parse_jwks(&v);
                for t in &f.tokens {
                    // A key set the fuzzer wrote may hold the real public keys: only forgeries
                    // are checked against it.
                    let mut parts: Vec<&str> = t.split('.').collect();
                    let mallory = enc(br#"{"iss":"https://idp.test","sub":"mallory"}"#);
                    parts[1] = &mallory;
                    check(&parts.join("."), &keys, f);
                    let _ = verified(t, &keys);
                }
            }
        }
        Some((b'R', rest)) => {
            if let Ok(jwt) = std::str::from_utf8(rest) {
                check(jwt, &f.keys, f);
            }
        }
        Some(_) => check(&edit(&f.tokens, data), &f.keys, f),
    }
});
