//! The identity headers and the `x-amzn-oidc-data` JWT (src/identity_headers.rs,
//! src/signing.rs), for any session claims and any client-sent headers.
//!
//! Input: a selector byte (JWT format, `forwarded_user`, `access_token`,
//! `forward_unverified_email`), then header names separated by `\n` up to a `\0`, then the claims as JSON (anything else is the `sub`).
//! Properties: nothing panics; after `strip` then `inject`, every header that is an identity
//! header in disguise (any case, `_` or `.` for `-`) is gone and the identity headers present
//! are exactly the ones Portcullis set, with its values; the data JWT is three base64url parts
//! (padded in ALB format, unpadded in the standard one), its ES256 signature verifies with the
//! signer's public key, its header names the key, and its payload is the session's claims
//! without the protocol claims, plus `exp` and `iss` (and `iat`, `aud` in standard format).
#![no_main]

use std::sync::{Arc, LazyLock};

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis::config::JwtFormat;
use portcullis::http::headers::IDENTITY_HEADERS;
use portcullis::identity_headers::{DataSigner, Identity, is_identity_header, strip};
use portcullis::session::Session;
use portcullis::signing::SigningKey;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde_json::{Map, Value};

const PROTOCOL: &[&str] = &[
    "aud",
    "azp",
    "nonce",
    "at_hash",
    "c_hash",
    "iat",
    "exp",
    "iss",
    "auth_time",
    "jti",
    "sid",
    "acr",
    "amr",
    "nbf",
];
const NOW: i64 = 1_800_000_000;

static KEY: LazyLock<(Arc<SigningKey>, Vec<u8>)> = LazyLock::new(|| {
    let key = SigningKey::generate();
    let jwk = key.jwk();
    let coord = |c: &str| {
        URL_SAFE_NO_PAD
            .decode(jwk[c].as_str().expect("EC JWK coordinate"))
            .expect("base64url coordinate")
    };
    let mut point = vec![4u8];
    point.extend(coord("x"));
    point.extend(coord("y"));
    (Arc::new(key), point)
});

fn part(engine: &base64::engine::GeneralPurpose, p: &str) -> Value {
    let bytes = engine
        .decode(p)
        .expect("a JWT part is base64url in the format's padding");
    serde_json::from_slice(&bytes).expect("a JWT part is JSON")
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (names, claims) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&rest[..0], rest),
    };
    let (sub, claims) = match serde_json::from_slice::<Value>(claims) {
        Ok(Value::Object(m)) => (
            m.get("sub")
                .and_then(Value::as_str)
                .unwrap_or("user")
                .to_string(),
            m,
        ),
        _ => (String::from_utf8_lossy(claims).into_owned(), Map::new()),
    };
    let format = if sel & 1 == 0 {
        JwtFormat::Alb
    } else {
        JwtFormat::Standard
    };
    let (key, point) = &*KEY;
    let signer = DataSigner {
        key: key.clone(),
        format,
        signer: "arn:aws:elasticloadbalancing:fuzz".into(),
        forwarded_user: sel & 2 != 0,
        access_token: sel & 4 != 0,
        forward_unverified_email: sel & 16 != 0,
    };
    let session = Session {
        sid: "sid".into(),
        sub,
        provider: "idp".into(),
        claims: claims.clone(),
        access_token: (sel & 8 != 0).then(|| "access-token-value".into()),
        access_expires_at: None,
        refresh_token: None,
        id_token: None,
        created_at: NOW - 10,
        expires_at: NOW + 3600,
        created_ms: (NOW - 10) * 1000,
        idp_sid: None,
    };
    let identity = Identity::new(&session, "groups", "https://idp.example", "client-1");

    // What Portcullis sets, alone.
    let mut expected = HeaderMap::new();
    identity.inject(&mut expected, &signer, NOW);

    let mut headers = HeaderMap::new();
    for name in names.split(|&b| b == b'\n') {
        if let Ok(n) = HeaderName::from_bytes(name) {
            headers.append(n, HeaderValue::from_static("forged"));
        }
    }
    headers.append("x-kept", HeaderValue::from_static("1"));
    strip(&mut headers);
    for n in headers.keys() {
        assert!(!is_identity_header(n.as_str()), "{n} survived strip");
    }
    identity.inject(&mut headers, &signer, NOW);
    assert_eq!(headers.get("x-kept").map(|v| v.as_bytes()), Some(&b"1"[..]));
    for (n, v) in &headers {
        if is_identity_header(n.as_str()) {
            assert!(
                IDENTITY_HEADERS.contains(&n.as_str()),
                "{n} is not canonical"
            );
            let all: Vec<_> = headers.get_all(n).iter().collect();
            assert_eq!(all, expected.get_all(n).iter().collect::<Vec<_>>(), "{n}");
            assert_ne!(v.as_bytes(), b"forged", "{n} kept a forged value");
        }
    }
    for n in expected.keys() {
        assert!(headers.contains_key(n), "{n} missing");
    }

    let jwt = headers
        .get("x-amzn-oidc-data")
        .expect("the data header is always set")
        .to_str()
        .expect("a JWT is text");
    let engine = match format {
        JwtFormat::Alb => &URL_SAFE,
        JwtFormat::Standard => &URL_SAFE_NO_PAD,
    };
    let (signed, sig) = jwt.rsplit_once('.').expect("three parts");
    let (h, p) = signed.split_once('.').expect("three parts");
    assert!(!p.contains('.'), "more than three parts");
    let sig = engine.decode(sig).expect("the signature is base64url");
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .verify(signed.as_bytes(), &sig)
        .expect("the data JWT verifies with the signer's key");
    let header = part(engine, h);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], key.kid());
    let payload = part(engine, p);
    let mut want = claims;
    for c in PROTOCOL {
        want.remove(*c);
    }
    want.insert("exp".into(), (NOW + 600).into());
    match format {
        JwtFormat::Alb => {
            want.insert("iss".into(), "https://idp.example".into());
            assert_eq!(header["exp"], NOW + 600);
            assert_eq!(header["client"], "client-1");
            assert_eq!(header["signer"], "arn:aws:elasticloadbalancing:fuzz");
        }
        JwtFormat::Standard => {
            want.insert("iat".into(), NOW.into());
            want.insert("iss".into(), "arn:aws:elasticloadbalancing:fuzz".into());
            want.insert("aud".into(), "client-1".into());
        }
    }
    assert_eq!(payload, Value::Object(want), "payload");
});
