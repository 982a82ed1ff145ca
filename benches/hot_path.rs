//! Micro-benchmarks of the pieces every request (or every login) goes through: session cookie
//! seal/open with 1–4 shards and the session-cache hit that replaces opening on a known cookie,
//! route matching over 10/100/1,000 routes, identity header strip + inject, the
//! `x-amzn-oidc-data` JWT cached vs signed afresh, and ID token validation (RS256, ES256).
//!
//! `cargo bench` (all, about a minute) or `cargo bench -- routes` (one group). Measurement
//! times are kept short on purpose: these numbers locate costs, they are not a contract.

use std::hint::black_box;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue};
use openidconnect::core::{
    CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::{ClientId, ClientSecret, IssuerUrl, Nonce};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{Map, Value, json};

use portcullis::config::{
    Action, Authorization, Conditions, JwtFormat, OnUnauthenticated, RouteConfig, Secret, Upstream,
};
use portcullis::identity_headers::{self, DataSigner, Identity};
use portcullis::routing::{Request, RouteTable};
use portcullis::session::Session;
use portcullis::session::cache::SessionCache;
use portcullis::session::keyring::KeyRing;
use portcullis::session::shards::CookieJar;
use portcullis::signing::SigningKey;

const PURPOSE: &[u8] = b"session";
const ISSUER: &str = "http://127.0.0.1:4000";
const CLIENT_ID: &str = "portcullis";
const NOW: i64 = 1_900_000_000;

fn quick() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

/// A session like the test IdP's alice, padded with `extra` bytes of claims to reach a shard count.
fn session(extra: usize) -> Session {
    let mut claims = Map::new();
    claims.insert("sub".into(), "alice".into());
    claims.insert("email".into(), "alice@example.com".into());
    claims.insert("email_verified".into(), true.into());
    claims.insert("name".into(), "Alice Example".into());
    claims.insert("preferred_username".into(), "alice".into());
    claims.insert("groups".into(), json!(["admins", "staff"]));
    if extra > 0 {
        claims.insert("blob".into(), "x".repeat(extra).into());
    }
    Session {
        sid: "5f0c3e0b9d6a4c1e8f2a7b3d".into(),
        sub: "alice".into(),
        provider: "idp".into(),
        claims,
        access_token: Some("a".repeat(43)),
        access_expires_at: Some(NOW + 3600),
        refresh_token: Some("r".repeat(43)),
        id_token: Some("h".repeat(700)),
        created_at: NOW,
        expires_at: NOW + 7 * 86400,
        created_ms: NOW * 1000,
        idp_sid: None,
    }
}

fn keyring() -> KeyRing {
    KeyRing::new(&[Secret::new(
        "bench-secret-bench-secret-bench-secret-0123".into(),
    )])
    .expect("one secret")
}

/// The request's Cookie header as a browser would send it after the `Set-Cookie` values.
fn cookie_header(set: &[HeaderValue]) -> HeaderMap {
    let pairs: Vec<String> = set
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .filter(|p| !p.ends_with('='))
        .collect();
    let mut h = HeaderMap::new();
    h.insert(
        http::header::COOKIE,
        HeaderValue::from_str(&format!("_ga=GA1.1.123; {}; theme=dark", pairs.join("; "))).unwrap(),
    );
    h
}

fn seal(ring: &KeyRing, jar: &CookieJar, s: &Session) -> Vec<HeaderValue> {
    let json = serde_json::to_vec(s).unwrap();
    let sealed = ring.seal(PURPOSE, &json);
    jar.encode(&sealed, s.expires_at - NOW).unwrap()
}

fn open(ring: &KeyRing, jar: &CookieJar, h: &HeaderMap) -> Option<Session> {
    let text = jar.read(h)?;
    let sealed = CookieJar::decode(&text)?;
    let plain = ring.open(PURPOSE, &sealed)?;
    serde_json::from_slice(&plain).ok()
}

fn sessions(c: &mut Criterion) {
    let ring = keyring();
    let jar = CookieJar::new("AWSELBAuthSessionCookie", true);
    let mut g = c.benchmark_group("session");
    // Extra claim bytes that make the sealed session need 1, 2, 3 and 4 shards.
    for (shards, extra) in [(1usize, 0usize), (2, 4_000), (3, 7_000), (4, 10_000)] {
        let s = session(extra);
        let set = seal(&ring, &jar, &s);
        let used = set
            .iter()
            .filter(|v| !v.to_str().unwrap().contains("Max-Age=0"))
            .count();
        assert_eq!(used, shards, "padding {extra} should need {shards} shards");
        g.bench_with_input(BenchmarkId::new("seal", shards), &s, |b, s| {
            b.iter(|| seal(&ring, &jar, black_box(s)))
        });
        let h = cookie_header(&set);
        assert!(open(&ring, &jar, &h).is_some());
        g.bench_with_input(BenchmarkId::new("open", shards), &h, |b, h| {
            b.iter(|| open(&ring, &jar, black_box(h)))
        });
    }
    // What a request with a known cookie pays instead of `open`: read + cache lookup.
    let cache: SessionCache<Session> = SessionCache::new(10_000);
    for i in 0..5_000 {
        let s = session(0);
        let set = seal(&ring, &jar, &s);
        let h = cookie_header(&set);
        let text = jar.read(&h).unwrap().into_owned();
        cache.insert(&text, Arc::new(s));
        if i == 4_999 {
            g.bench_function("cache_hit_1_shard", |b| {
                b.iter(|| {
                    let t = jar.read(black_box(&h)).unwrap();
                    cache.get(&t).unwrap()
                })
            });
        }
    }
    // Removing our cookies from the Cookie header before it goes upstream.
    let h = cookie_header(&seal(&ring, &jar, &session(0)));
    g.bench_function("strip_cookie_header", |b| {
        b.iter_batched(
            || h.clone(),
            |mut h| {
                jar.strip(&mut h);
                h
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn route(i: usize, conditions: Conditions) -> RouteConfig {
    RouteConfig {
        index: i,
        name: format!("r{i}"),
        conditions,
        action: Action::Forward(Upstream::File("/srv".into())),
        cors_preflight: false,
        on_unauthenticated: OnUnauthenticated::Authenticate,
        connect_timeout: Duration::from_secs(1),
        timeout: Duration::from_secs(30),
        providers: vec![0],
        authorization: Authorization::default(),
        bearer: None,
    }
}

fn prefix(path: String) -> Conditions {
    Conditions {
        path,
        ..Conditions::default()
    }
}

/// The issue-18 table: hosts × paths, some with conditions, the request matching the last
/// rule. `n` rules in all.
fn alb_table(n: usize) -> Vec<RouteConfig> {
    let mut list: Vec<RouteConfig> = (0..n - 1)
        .map(|i| {
            let mut c = Conditions {
                hosts: vec![format!("app{}.example.com", i % 50)],
                path: format!("/svc{i}/"),
                ..Conditions::default()
            };
            match i % 10 {
                0 => c.methods = vec![http::Method::POST],
                1 => c.headers = vec![(HeaderName::from_static("x-env"), vec!["beta".into()])],
                2 => c.query = vec![("version".into(), vec!["2".into()])],
                3 => c.source_ips = vec!["10.0.0.0/8".parse().unwrap()],
                4 => c.hosts = vec![format!("*.tenant{i}.example.com")],
                5 => {
                    c.path_pattern = Some(format!("/svc{i}/*/edit"));
                }
                _ => {}
            }
            route(i, c)
        })
        .collect();
    list.push(route(
        n - 1,
        Conditions {
            hosts: vec!["app.example.com".into()],
            path: "/".into(),
            ..Conditions::default()
        },
    ));
    list
}

fn routes(c: &mut Criterion) {
    let mut g = c.benchmark_group("routes");
    let headers = HeaderMap::new();
    let get = http::Method::GET;
    let req = |host: &'static str, path: &'static str| Request {
        host: Some(host),
        path,
        query: Some("x=1"),
        method: &get,
        headers: &headers,
        peer: std::net::IpAddr::from([192, 0, 2, 1]),
    };
    for n in [10usize, 100, 1_000] {
        let mut list: Vec<RouteConfig> = (0..n - 1)
            .map(|i| route(i, prefix(format!("/app{i}/section/"))))
            .collect();
        list.push(route(n - 1, prefix("/".into())));
        let t = RouteTable::new(list, vec![]);
        // Worst case for a scan: only the catch-all matches, after every other prefix.
        g.bench_with_input(BenchmarkId::new("find_last", n), &t, |b, t| {
            b.iter(|| t.find(black_box(&req("app.example.com", "/index.html"))))
        });
        let mid: &'static str = Box::leak(format!("/app{}/section/page", n / 2).into_boxed_str());
        g.bench_with_input(BenchmarkId::new("find_middle", n), &t, |b, t| {
            b.iter(|| t.find(black_box(&req("app.example.com", mid))))
        });
    }
    // Issue 18's target: the last of 1,000 ALB-style rules costs what one rule does.
    for n in [1usize, 1_000] {
        let t = RouteTable::new(alb_table(n), vec![]);
        assert_eq!(
            t.find(&req("app.example.com", "/index.html"))
                .map(|r| r.index),
            Some(n - 1)
        );
        g.bench_with_input(BenchmarkId::new("alb_rules_last", n), &t, |b, t| {
            b.iter(|| t.find(black_box(&req("app.example.com", "/index.html"))))
        });
    }
    g.finish();
}

fn signer() -> DataSigner {
    DataSigner {
        key: Arc::new(SigningKey::generate()),
        format: JwtFormat::Alb,
        signer: "arn:aws:elasticloadbalancing:local:portcullis".into(),
        forwarded_user: true,
        access_token: true,
        forward_unverified_email: false,
    }
}

/// A browser's request headers, including a forged identity header that must go.
fn browser_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "app.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://app.example.com/"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-site", "same-origin"),
        ("upgrade-insecure-requests", "1"),
        ("cookie", "_ga=GA1.1.123; theme=dark"),
        ("x_amzn_oidc_identity", "mallory"),
    ] {
        h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h
}

fn headers(c: &mut Criterion) {
    let signer = signer();
    let identity = Identity::new(&session(0), "groups", ISSUER, CLIENT_ID);
    let _ = identity.data_header(&signer, NOW);
    let h = browser_headers();
    let mut g = c.benchmark_group("headers");
    g.bench_function("strip", |b| {
        b.iter_batched(
            || h.clone(),
            |mut h| {
                identity_headers::strip(&mut h);
                h
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("strip_and_inject_cached_jwt", |b| {
        b.iter_batched(
            || h.clone(),
            |mut h| {
                identity_headers::strip(&mut h);
                identity.inject(&mut h, &signer, NOW);
                h
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("identity_jwt");
    g.bench_function("cached_data_header", |b| {
        b.iter(|| identity.data_header(&signer, black_box(NOW)))
    });
    let claims = identity.claims().clone();
    g.bench_function("uncached_sign_data", |b| {
        b.iter(|| {
            identity_headers::sign_data(
                &signer,
                black_box(&claims),
                ISSUER,
                CLIENT_ID,
                NOW,
                NOW + 600,
            )
        })
    });
    g.bench_function("identity_new_per_session", |b| {
        let s = session(0);
        b.iter(|| Identity::new(black_box(&s), "groups", ISSUER, CLIENT_ID))
    });
    g.finish();
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

fn id_token_claims(nonce: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({
        "iss": ISSUER, "aud": CLIENT_ID, "sub": "alice", "nonce": nonce,
        "iat": now, "exp": now + 3600, "at_hash": "x4Gu2bWJ1Vx2kU5C0MQ0gw",
        "email": "alice@example.com", "email_verified": true, "name": "Alice Example",
        "preferred_username": "alice", "groups": ["admins", "staff"],
    })
}

fn jws(alg: &str, kid: &str, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

fn id_tokens(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let nonce = "n-0S6_WzA2Mj";
    let claims = id_token_claims(nonce);

    // RS256 with a fixed 2048-bit key (ring cannot generate RSA keys).
    let rsa = RsaKeyPair::from_pkcs8(include_bytes!("fixtures/rsa2048.pk8")).expect("PKCS#8 RSA");
    let comps: signature::RsaPublicKeyComponents<Vec<u8>> = rsa.public().into();
    let rs256 = jws("RS256", "rsa-1", &claims, |m| {
        let mut sig = vec![0u8; rsa.public().modulus_len()];
        rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, m, &mut sig)
            .unwrap();
        sig
    });

    let pk8 =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ec = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pk8.as_ref(),
        &rng,
    )
    .unwrap();
    let point = ec.public_key().as_ref().to_vec();
    let es256 = jws("ES256", "ec-1", &claims, |m| {
        ec.sign(&rng, m).unwrap().as_ref().to_vec()
    });

    let jwks = verifier_jwks(&comps, &point);
    let verifier = CoreIdTokenVerifier::new_confidential_client(
        ClientId::new(CLIENT_ID.into()),
        ClientSecret::new("s3cret".into()),
        IssuerUrl::new(ISSUER.into()).unwrap(),
        jwks,
    )
    .set_allowed_algs([
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    ]);
    let nonce = Nonce::new(nonce.into());
    // What the relying party does (src/auth/oidc.rs): the signature with ring against keys
    // parsed once per JWKS fetch, then openidconnect's claim checks without its signature step.
    let ring_keys = portcullis::auth::jws::parse_jwks(
        &serde_json::to_value(verifier_jwks(&comps, &point)).unwrap(),
    );
    let claims_only = verifier.clone().insecure_disable_signature_check();

    let mut g = c.benchmark_group("id_token");
    // The signature check alone with ring, for comparison with openidconnect's whole
    // validation (which verifies through RustCrypto and re-reads the JWK on every call).
    let rsa_pub = signature::RsaPublicKeyComponents {
        n: comps.n.clone(),
        e: comps.e.clone(),
    };
    let ec_pub =
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point.clone());
    for (name, jwt) in [("RS256", &rs256), ("ES256", &es256)] {
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        g.bench_function(BenchmarkId::new("ring_signature_only", name), |b| {
            b.iter(|| match name {
                "RS256" => rsa_pub
                    .verify(
                        &signature::RSA_PKCS1_2048_8192_SHA256,
                        input.as_bytes(),
                        &sig,
                    )
                    .is_ok(),
                _ => ec_pub.verify(input.as_bytes(), &sig).is_ok(),
            })
        });
    }
    for (name, jwt) in [("RS256", &rs256), ("ES256", &es256)] {
        let tok = CoreIdToken::from_str(jwt).expect("parses");
        tok.claims(&verifier, &nonce).expect("verifies");
        g.bench_function(BenchmarkId::new("parse_and_verify", name), |b| {
            b.iter(|| {
                let tok = CoreIdToken::from_str(black_box(jwt)).unwrap();
                tok.claims(&verifier, &nonce)
                    .map(|c| c.subject().len())
                    .unwrap()
            })
        });
    }
    for (name, jwt) in [("RS256", &rs256), ("ES256", &es256)] {
        assert!(portcullis::auth::jws::verified(jwt, &ring_keys));
        g.bench_function(BenchmarkId::new("ring_then_claims", name), |b| {
            b.iter(|| {
                assert!(portcullis::auth::jws::verified(black_box(jwt), &ring_keys));
                let tok = CoreIdToken::from_str(jwt).unwrap();
                tok.claims(&claims_only, &nonce)
                    .map(|c| c.subject().len())
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn verifier_jwks(
    comps: &signature::RsaPublicKeyComponents<Vec<u8>>,
    point: &[u8],
) -> CoreJsonWebKeySet {
    serde_json::from_value(json!({"keys": [
        {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
         "n": b64(&comps.n), "e": b64(&comps.e)},
        {"kty": "EC", "kid": "ec-1", "use": "sig", "alg": "ES256", "crv": "P-256",
         "x": b64(&point[1..33]), "y": b64(&point[33..65])},
    ]}))
    .expect("a valid JWKS")
}

criterion_group! {
    name = benches;
    config = quick();
    targets = sessions, routes, headers, id_tokens
}
criterion_main!(benches);
