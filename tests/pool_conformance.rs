//! The OpenID Foundation's certification plans for an OpenID Provider, ported: one test per
//! module of `oidcc-basic-certification-test-plan`, `oidcc-config-certification-test-plan`,
//! `oidcc-rp-initiated-logout-certification-test-plan` and
//! `oidcc-backchannel-rp-initiated-logout-certification-test-plan`, each named after the module
//! and checking what the module checks, driving the pool over HTTP as a relying party would
//! (static client `rp`, `client_secret_basic` unless the module says otherwise). Where a module
//! exercises a feature the pool does not offer (request objects, `claims`), the test asserts
//! the refusal the specification requires and the discovery document saying so.

mod pool_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use pool_support::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "rp-secret-0123456789";
const CB: &str = "http://127.0.0.1:9/cb";
const LOGGED_OUT: &str = "http://127.0.0.1:9/logged-out";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn clients(backchannel: Option<&str>) -> String {
    let bc = backchannel
        .map(|u| format!("backchannel_logout_uri = \"{u}\"\n"))
        .unwrap_or_default();
    format!(
        "[[pool.clients]]\nclient_id = \"rp\"\nclient_secret = \"{SECRET}\"\nredirect_uris = [\"{CB}\"]\n\
         post_logout_redirect_uris = [\"{LOGGED_OUT}\"]\n{bc}"
    )
}

/// The pool with client `rp` and user `alice` holding every kind of claim.
async fn op() -> Server {
    op_with(None).await
}

async fn op_with(backchannel: Option<&str>) -> Server {
    let s = Server::start(Backend::Sqlite, &clients(backchannel)).await;
    let (ok, out, err) = s.cli(&[
        "users",
        "add",
        "alice",
        "--password",
        PASSWORD,
        "--permanent",
        "--attribute",
        "email=alice@example.com",
        "--attribute",
        "email_verified=true",
        "--attribute",
        "name=Alice Liddell",
        "--attribute",
        "given_name=Alice",
        "--attribute",
        "family_name=Liddell",
        "--attribute",
        "phone_number=+81 90 1234 5678",
        "--attribute",
        "phone_number_verified=true",
        "--attribute",
        "address=1 Rabbit Hole, Oxford",
        "--attribute",
        "custom:house=Christ Church",
    ]);
    assert!(ok, "users add: {out}{err}");
    s
}

async fn discovery(s: &Server) -> Value {
    reqwest::get(s.url("/oauth2/pool/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A browser with a pool session for alice.
async fn signed_in(s: &Server) -> reqwest::Client {
    let c = browser();
    let r = sign_in(&c, s, &s.url("/oauth2/pool/login"), "alice", PASSWORD).await;
    assert_eq!(r.status(), 200);
    c
}

/// The authorization URL with the defaults of the plans' requests, `extra` overriding them
/// (an empty value drops the parameter).
fn authorize_url(s: &Server, extra: &[(&str, &str)]) -> String {
    let mut params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", "rp"),
        ("redirect_uri", CB),
        ("scope", "openid"),
        ("state", "st"),
        ("nonce", "nn"),
    ];
    for (k, v) in extra {
        params.retain(|(n, _)| n != k);
        if !v.is_empty() {
            params.push((k, v));
        }
    }
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    s.url(&format!("/oauth2/pool/authorize?{q}"))
}

/// The query of a redirect to the client; panics when the answer is not one.
fn at_client(r: &reqwest::Response, to: &str) -> HashMap<String, String> {
    assert_eq!(r.status(), 302, "not a redirect");
    let loc = location(r);
    assert!(loc.starts_with(to), "redirected elsewhere: {loc}");
    url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Authorizes with the browser's session; returns the callback's parameters.
async fn authorize(
    c: &reqwest::Client,
    s: &Server,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let r = c.get(authorize_url(s, extra)).send().await.unwrap();
    at_client(&r, CB)
}

async fn token_call(s: &Server, form: &[(&str, &str)], basic: bool) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(s.url("/oauth2/pool/token"))
        .form(form);
    if basic {
        req = req.basic_auth("rp", Some(SECRET));
    }
    let r = req.send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap())
}

/// The code grant with client_secret_basic; asserts success.
async fn exchange(s: &Server, code: &str) -> Value {
    let (st, t) = token_call(
        s,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CB),
        ],
        true,
    )
    .await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    t
}

fn decode(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Verifies a JWS against the pool's JWKS by `kid` (the pool signs RS256); returns header and
/// claims.
async fn verified(s: &Server, jwt: &str) -> (Value, Value) {
    let (header, claims) = verified_jws(s, jwt).await;
    assert_eq!(header["alg"], "RS256");
    (header, claims)
}

/// The ID token checks every module's happy path makes (OIDC Core 3.1.3.7).
async fn check_id_token(s: &Server, t: &Value, nonce: Option<&str>) -> Value {
    let (header, id) = verified(s, t["id_token"].as_str().unwrap()).await;
    assert!(header["kid"].as_str().is_some_and(|k| !k.is_empty()));
    assert_eq!(id["iss"], s.url("/oauth2/pool"));
    assert_eq!(id["aud"], "rp", "aud is a single value");
    assert!(id["sub"].as_str().is_some_and(|x| !x.is_empty()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (iat, exp) = (id["iat"].as_i64().unwrap(), id["exp"].as_i64().unwrap());
    assert!((iat - now).abs() < 60 && exp > now, "{id}");
    match nonce {
        Some(n) => assert_eq!(id["nonce"], n),
        None => assert!(id.get("nonce").is_none(), "{id}"),
    }
    // at_hash binds the access token (OIDC Core 3.1.3.6).
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        t["access_token"].as_str().unwrap().as_bytes(),
    );
    assert_eq!(id["at_hash"], URL_SAFE_NO_PAD.encode(&d.as_ref()[..16]));
    id
}

async fn userinfo(s: &Server, access: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(s.url("/oauth2/pool/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// Signs in with scope `scope`; returns the token response.
async fn tokens_for(s: &Server, scope: &str) -> Value {
    let c = signed_in(s).await;
    let q = authorize(&c, s, &[("scope", scope)]).await;
    exchange(s, &q["code"]).await
}

const PROTOCOL: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "amr",
    "sid",
    "token_use",
    "cognito:username",
    "cognito:groups",
    "groups",
];
const PROFILE: &[&str] = &[
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "custom:house",
];
const EMAIL: &[&str] = &["email", "email_verified"];
const PHONE: &[&str] = &["phone_number", "phone_number_verified"];
const ADDRESS: &[&str] = &["address"];

/// The claims of `v` are exactly the protocol ones plus `expected` (OIDC Core 5.4).
fn only_claims(v: &Value, expected: &[&[&str]], what: &str) {
    let allowed: Vec<&str> = expected.iter().flat_map(|g| g.iter().copied()).collect();
    for k in v.as_object().unwrap().keys() {
        assert!(
            PROTOCOL.contains(&k.as_str()) || allowed.contains(&k.as_str()),
            "{what}: claim {k} released beyond the scopes asked for: {v}"
        );
    }
    for k in allowed {
        assert!(v.get(k).is_some(), "{what}: {k} missing: {v}");
    }
}

async fn scope_module(scope: &str, expected: &[&[&str]]) {
    let s = op().await;
    let t = tokens_for(&s, scope).await;
    let id = check_id_token(&s, &t, Some("nn")).await;
    let (st, ui) = userinfo(&s, t["access_token"].as_str().unwrap()).await;
    assert_eq!(st, 200);
    assert_eq!(ui["sub"], id["sub"]);
    only_claims(&ui, expected, "userinfo");
    only_claims(&id, expected, "ID token");
    if expected.contains(&ADDRESS) {
        for v in [&ui, &id] {
            // OIDC Core 5.1.1: a JSON object, never a string.
            assert_eq!(
                v["address"],
                json!({"formatted": "1 Rabbit Hole, Oxford"}),
                "{v}"
            );
        }
    }
    if expected.contains(&EMAIL) {
        assert_eq!(ui["email_verified"], Value::Bool(true));
    }
    if expected.contains(&PHONE) {
        assert_eq!(ui["phone_number_verified"], Value::Bool(true));
        assert_eq!(ui["phone_number"], "+819012345678");
    }
}

/// A signed-in request with `extra` parameters succeeds: a code, tokens, a valid ID token.
async fn succeeds_with(extra: &[(&str, &str)]) -> Value {
    let s = op().await;
    let c = signed_in(&s).await;
    let q = authorize(&c, &s, extra).await;
    assert_eq!(q["state"], "st");
    let t = exchange(&s, &q["code"]).await;
    check_id_token(&s, &t, Some("nn")).await
}

// ---------------------------------------------------------------------------------------------
// oidcc-basic-certification-test-plan
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_server() {
    let s = op().await;
    let c = signed_in(&s).await;
    let q = authorize(&c, &s, &[]).await;
    assert_eq!(q["state"], "st");
    assert_eq!(q["iss"], s.url("/oauth2/pool"));
    let t = exchange(&s, &q["code"]).await;
    check_id_token(&s, &t, Some("nn")).await;
    assert!(t["expires_in"].as_u64().is_some_and(|e| e > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_response_type_missing() {
    let s = op().await;
    let c = signed_in(&s).await;
    let q = authorize(&c, &s, &[("response_type", "")]).await;
    assert!(!q.contains_key("code"));
    assert_eq!(q["error"], "invalid_request", "{q:?}");
    assert_eq!(q["state"], "st");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_idtoken_signature() {
    let s = op().await;
    let t = tokens_for(&s, "openid").await;
    let (header, _) = verified(&s, t["id_token"].as_str().unwrap()).await;
    assert_eq!(header["alg"], "RS256");
}

/// The module registers a client asking for unsigned ID tokens; with static clients the pool
/// never offers `none`, and its ID tokens are always signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_idtoken_unsigned() {
    let s = op().await;
    let d = discovery(&s).await;
    assert!(
        !d["id_token_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "none")
    );
    let t = tokens_for(&s, "openid").await;
    let header = decode(t["id_token"].as_str().unwrap().split('.').next().unwrap());
    assert_ne!(header["alg"], "none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_userinfo_get() {
    let s = op().await;
    let t = tokens_for(&s, "openid").await;
    let (st, ui) = userinfo(&s, t["access_token"].as_str().unwrap()).await;
    assert_eq!(st, 200);
    let id = decode(t["id_token"].as_str().unwrap().split('.').nth(1).unwrap());
    assert_eq!(ui["sub"], id["sub"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_userinfo_post_header() {
    let s = op().await;
    let t = tokens_for(&s, "openid").await;
    let r = reqwest::Client::new()
        .post(s.url("/oauth2/pool/userinfo"))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.unwrap()["sub"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_userinfo_post_body() {
    let s = op().await;
    let t = tokens_for(&s, "openid").await;
    let r = reqwest::Client::new()
        .post(s.url("/oauth2/pool/userinfo"))
        .form(&[("access_token", t["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.unwrap()["sub"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_ensure_request_without_nonce_succeeds_for_code_flow() {
    let s = op().await;
    let c = signed_in(&s).await;
    let q = authorize(&c, &s, &[("nonce", "")]).await;
    let t = exchange(&s, &q["code"]).await;
    check_id_token(&s, &t, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_scope_profile() {
    scope_module("openid profile", &[PROFILE]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_scope_email() {
    scope_module("openid email", &[EMAIL]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_scope_address() {
    scope_module("openid address", &[ADDRESS]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_scope_phone() {
    scope_module("openid phone", &[PHONE]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_scope_all() {
    scope_module(
        "openid profile email address phone",
        &[PROFILE, EMAIL, ADDRESS, PHONE],
    )
    .await;
}

/// `openid` alone releases `sub` and the protocol claims only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_scope_openid_only() {
    scope_module("openid", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_ensure_other_scope_order_succeeds() {
    let s = op().await;
    let c = signed_in(&s).await;
    for scope in ["email openid", "openid email"] {
        let q = authorize(&c, &s, &[("scope", scope)]).await;
        let t = exchange(&s, &q["code"]).await;
        check_id_token(&s, &t, Some("nn")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_display_page() {
    succeeds_with(&[("display", "page")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_display_popup() {
    succeeds_with(&[("display", "popup")]).await;
}

/// Authorizes with `extra`, which must send the signed-in browser to the sign-in page; signs in
/// there and returns the new ID token's claims.
async fn signs_in_again(s: &Server, c: &reqwest::Client, extra: &[(&str, &str)]) -> Value {
    let r = c.get(authorize_url(s, extra)).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let login = absolute(&s.base, &location(&r));
    assert!(
        login.contains("/oauth2/pool/login"),
        "{extra:?}: expected the sign-in page, got {login}"
    );
    let r = sign_in(c, s, &login, "alice", PASSWORD).await;
    let q = at_client(&r, CB);
    check_id_token(s, &exchange(s, &q["code"]).await, Some("nn")).await
}

/// A signed-in browser, its first ID token's claims, and a pause of `wait`.
async fn signed_in_then_wait(s: &Server, wait: Duration) -> (reqwest::Client, Value) {
    let c = signed_in(s).await;
    let q = authorize(&c, s, &[]).await;
    let first = check_id_token(s, &exchange(s, &q["code"]).await, Some("nn")).await;
    tokio::time::sleep(wait).await;
    (c, first)
}

/// The user signs in again although signed in; the new ID token's `auth_time` is newer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_prompt_login() {
    let s = op().await;
    let (c, first) = signed_in_then_wait(&s, Duration::from_millis(1100)).await;
    let second = signs_in_again(&s, &c, &[("prompt", "login")]).await;
    assert!(
        second["auth_time"].as_i64().unwrap() > first["auth_time"].as_i64().unwrap(),
        "{first} / {second}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_prompt_none_not_logged_in() {
    let s = op().await;
    let r = browser()
        .get(authorize_url(&s, &[("prompt", "none")]))
        .send()
        .await
        .unwrap();
    let q = at_client(&r, CB);
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["state"], "st");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_prompt_none_logged_in() {
    succeeds_with(&[("prompt", "none")]).await;
}

/// OIDC Core 3.1.2.1: when the sign-in is older than `max_age`, the user signs in again, and
/// the ID token carries `auth_time`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_max_age_1() {
    let s = op().await;
    let (c, first) = signed_in_then_wait(&s, Duration::from_millis(2100)).await;
    // prompt=none cannot sign in again: login_required.
    let r = c
        .get(authorize_url(&s, &[("max_age", "1"), ("prompt", "none")]))
        .send()
        .await
        .unwrap();
    assert_eq!(at_client(&r, CB)["error"], "login_required");
    let second = signs_in_again(&s, &c, &[("max_age", "1")]).await;
    let at = second["auth_time"]
        .as_i64()
        .expect("auth_time with max_age");
    assert!(at > first["auth_time"].as_i64().unwrap());
    // max_age=0 means: always sign in again.
    signs_in_again(&s, &c, &[("max_age", "0")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_max_age_10000() {
    let id = succeeds_with(&[("max_age", "10000")]).await;
    assert!(id["auth_time"].as_i64().is_some(), "{id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_ensure_request_with_unknown_parameter_succeeds() {
    succeeds_with(&[("extra", "foobar")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_id_token_hint() {
    let s = op().await;
    let c = signed_in(&s).await;
    let q = authorize(&c, &s, &[]).await;
    let t = exchange(&s, &q["code"]).await;
    let first = check_id_token(&s, &t, Some("nn")).await;
    let hint = t["id_token"].as_str().unwrap();
    let q = authorize(&c, &s, &[("id_token_hint", hint), ("prompt", "none")]).await;
    let second = check_id_token(&s, &exchange(&s, &q["code"]).await, Some("nn")).await;
    assert_eq!(first["sub"], second["sub"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_login_hint() {
    let s = op().await;
    let c = browser();
    let r = c
        .get(authorize_url(&s, &[("login_hint", "alice")]))
        .send()
        .await
        .unwrap();
    let login = absolute(&s.base, &location(&r));
    let (_, page) = get_page(&c, &login).await;
    assert!(page.contains("value=\"alice\""), "{page}");
    let r = sign_in(&c, &s, &login, "alice", PASSWORD).await;
    exchange(&s, &at_client(&r, CB)["code"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_ui_locales() {
    succeeds_with(&[("ui_locales", "se")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_claims_locales() {
    succeeds_with(&[("claims_locales", "se")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_ensure_request_with_acr_values_succeeds() {
    succeeds_with(&[("acr_values", "1 2")]).await;
}

async fn code_reuse(wait: Duration) {
    let s = op().await;
    let c = signed_in(&s).await;
    let q = authorize(&c, &s, &[]).await;
    let t = exchange(&s, &q["code"]).await;
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&s, access).await.0, 200);
    tokio::time::sleep(wait).await;
    let (st, body) = token_call(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", CB),
        ],
        true,
    )
    .await;
    assert_eq!((st, body["error"].as_str()), (400, Some("invalid_grant")));
    // RFC 6749 §4.1.2: the tokens issued for the code are revoked.
    assert_eq!(userinfo(&s, access).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_codereuse() {
    code_reuse(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_codereuse_30seconds() {
    code_reuse(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_ensure_registered_redirect_uri() {
    let s = op().await;
    let c = signed_in(&s).await;
    let r = c
        .get(authorize_url(
            &s,
            &[("redirect_uri", "https://evil.test/cb")],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
}

/// OIDC Core 3.1.2.1: the authorization endpoint MUST support POST (form-encoded) as GET.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_ensure_post_request_succeeds() {
    let s = op().await;
    let c = signed_in(&s).await;
    let r = c
        .post(s.url("/oauth2/pool/authorize"))
        .form(&[
            ("response_type", "code"),
            ("client_id", "rp"),
            ("redirect_uri", CB),
            ("scope", "openid"),
            ("state", "st"),
            ("nonce", "nn"),
        ])
        .send()
        .await
        .unwrap();
    let q = at_client(&r, CB);
    assert_eq!(q["state"], "st");
    let t = exchange(&s, &q["code"]).await;
    check_id_token(&s, &t, Some("nn")).await;
    // Not signed in: the POST leads to the sign-in page like a GET does.
    let r = browser()
        .post(s.url("/oauth2/pool/authorize"))
        .form(&[
            ("response_type", "code"),
            ("client_id", "rp"),
            ("redirect_uri", CB),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(location(&r).contains("/oauth2/pool/login?req="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_server_client_secret_post() {
    let s = op().await;
    let c = signed_in(&s).await;
    let q = authorize(&c, &s, &[]).await;
    let (st, t) = token_call(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", CB),
            ("client_id", "rp"),
            ("client_secret", SECRET),
        ],
        false,
    )
    .await;
    assert_eq!(st, 200, "{t}");
    check_id_token(&s, &t, Some("nn")).await;
}

/// Request objects are not supported: `request_uri` is refused with
/// `request_uri_not_supported` (OIDC Core 6.2) and discovery says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_request_uri_unsigned_supported_correctly_or_rejected_as_unsupported() {
    let s = op().await;
    let d = discovery(&s).await;
    assert_eq!(d["request_uri_parameter_supported"], Value::Bool(false));
    let c = signed_in(&s).await;
    let q = authorize(&c, &s, &[("request_uri", "https://rp.example/request.jwt")]).await;
    assert!(!q.contains_key("code"), "{q:?}");
    assert_eq!(q["error"], "request_uri_not_supported");
    assert_eq!(q["state"], "st");
}

fn unsigned_request_object() -> String {
    let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
    let p = URL_SAFE_NO_PAD.encode(
        json!({"iss": "rp", "aud": "pool", "response_type": "code", "client_id": "rp",
               "redirect_uri": CB, "scope": "openid email", "state": "st", "nonce": "nn"})
        .to_string(),
    );
    format!("{h}.{p}.")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_unsigned_request_object_supported_correctly_or_rejected_as_unsupported() {
    let s = op().await;
    let d = discovery(&s).await;
    assert_eq!(d["request_parameter_supported"], Value::Bool(false));
    let c = signed_in(&s).await;
    let q = authorize(&c, &s, &[("request", &unsigned_request_object())]).await;
    assert!(
        !q.contains_key("code"),
        "a request object silently ignored: {q:?}"
    );
    assert_eq!(q["error"], "request_not_supported");
    assert_eq!(q["state"], "st");
}

/// The module checks that a request object's `redirect_uri` is processed; refused outright
/// here, so nothing in it is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_ensure_request_object_with_redirect_uri() {
    let s = op().await;
    let c = signed_in(&s).await;
    let q = authorize(
        &c,
        &s,
        &[
            ("request", &unsigned_request_object()),
            ("redirect_uri", CB),
        ],
    )
    .await;
    assert_eq!(q["error"], "request_not_supported");
}

/// The `claims` parameter is not supported (discovery says so); the request still succeeds
/// and `name` comes with the `profile` scope, not through `claims`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_claims_essential() {
    let s = op().await;
    let d = discovery(&s).await;
    assert_eq!(d["claims_parameter_supported"], Value::Bool(false));
    let c = signed_in(&s).await;
    let claims = r#"{"userinfo":{"name":{"essential":true}}}"#;
    let q = authorize(&c, &s, &[("claims", claims)]).await;
    let t = exchange(&s, &q["code"]).await;
    let (st, ui) = userinfo(&s, t["access_token"].as_str().unwrap()).await;
    assert_eq!(st, 200);
    assert!(ui.get("name").is_none(), "{ui}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_refresh_token() {
    let s = op().await;
    let t = tokens_for(&s, "openid email").await;
    let first = check_id_token(&s, &t, Some("nn")).await;
    let (st, r) = token_call(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ],
        true,
    )
    .await;
    assert_eq!(st, 200, "{r}");
    // OIDC Core 12.2: same iss, sub, aud; no nonce.
    let second = check_id_token(&s, &r, None).await;
    assert_eq!(first["sub"], second["sub"]);
    assert_eq!(first["auth_time"], second["auth_time"]);
    assert_eq!(r["scope"], "openid email");
    // Another client cannot use it.
    let (st, _) = token_call(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", r["refresh_token"].as_str().unwrap()),
            ("client_id", "spa"),
        ],
        false,
    )
    .await;
    assert!(st == 400 || st == 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_ensure_request_with_valid_pkce_succeeds() {
    let s = op().await;
    let c = signed_in(&s).await;
    let q = authorize(
        &c,
        &s,
        &[
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    let (st, t) = token_call(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", CB),
            ("code_verifier", VERIFIER),
        ],
        true,
    )
    .await;
    assert_eq!(st, 200, "{t}");
    check_id_token(&s, &t, Some("nn")).await;
}

// ---------------------------------------------------------------------------------------------
// oidcc-config-certification-test-plan
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_discovery_endpoint_verification() {
    let s = op().await;
    let d = discovery(&s).await;
    let issuer = s.url("/oauth2/pool");
    assert_eq!(d["issuer"], issuer);
    for ep in [
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
    ] {
        assert!(
            d[ep].as_str().is_some_and(|u| u.starts_with(&issuer)),
            "{ep}: {d}"
        );
    }
    let has = |k: &str, v: &str| d[k].as_array().unwrap().iter().any(|x| x == v);
    assert!(has("scopes_supported", "openid"));
    assert!(has("scopes_supported", "address"));
    assert!(has("response_types_supported", "code"));
    assert!(has("subject_types_supported", "public"));
    assert!(has("id_token_signing_alg_values_supported", "RS256"));
    assert!(has("claims_supported", "sub"));
    assert!(has("claims_supported", "address"));
    assert!(has("grant_types_supported", "authorization_code"));
    for flag in [
        "request_parameter_supported",
        "request_uri_parameter_supported",
        "claims_parameter_supported",
    ] {
        assert_eq!(
            d[flag],
            Value::Bool(false),
            "{flag} must be stated false: {d}"
        );
    }
    // ValidateServerJWKs: every key is public, has kid/use/alg, and kids are unique.
    let jwks: Value = reqwest::get(d["jwks_uri"].as_str().unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert!(!keys.is_empty());
    let mut kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    for k in keys {
        assert_eq!(k["use"], "sig");
        assert!(k.get("d").is_none());
    }
    kids.sort();
    kids.dedup();
    assert_eq!(kids.len(), keys.len());
}

// ---------------------------------------------------------------------------------------------
// oidcc-rp-initiated-logout-certification-test-plan
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_rp_initiated_logout_discovery_endpoint_verification() {
    let s = op().await;
    let d = discovery(&s).await;
    assert_eq!(d["end_session_endpoint"], s.url("/oauth2/pool/logout"));
}

/// A signed-in browser and its ID token.
async fn session_and_id_token(s: &Server) -> (reqwest::Client, String) {
    let c = signed_in(s).await;
    let q = authorize(&c, s, &[]).await;
    let t = exchange(s, &q["code"]).await;
    (c, t["id_token"].as_str().unwrap().to_string())
}

async fn logout(c: &reqwest::Client, s: &Server, params: &[(&str, &str)]) -> reqwest::Response {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    c.get(s.url(&format!("/oauth2/pool/logout?{q}")))
        .send()
        .await
        .unwrap()
}

/// After a logout the browser's pool session is gone: prompt=none says login_required.
async fn assert_signed_out(c: &reqwest::Client, s: &Server) {
    let r = c
        .get(authorize_url(s, &[("prompt", "none")]))
        .send()
        .await
        .unwrap();
    assert_eq!(at_client(&r, CB)["error"], "login_required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_rp_initiated_logout() {
    let s = op().await;
    let (c, id) = session_and_id_token(&s).await;
    let r = logout(
        &c,
        &s,
        &[
            ("id_token_hint", &id),
            ("post_logout_redirect_uri", LOGGED_OUT),
            ("state", "ls"),
        ],
    )
    .await;
    assert_eq!(at_client(&r, LOGGED_OUT)["state"], "ls");
    assert_signed_out(&c, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_rp_initiated_logout_bad_post_logout_redirect_uri() {
    let s = op().await;
    let (c, id) = session_and_id_token(&s).await;
    let r = logout(
        &c,
        &s,
        &[
            ("id_token_hint", &id),
            ("post_logout_redirect_uri", "https://evil.test/"),
            ("state", "ls"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200, "no redirect to an unregistered URI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_rp_initiated_logout_modified_id_token_hint() {
    let s = op().await;
    let (c, id) = session_and_id_token(&s).await;
    let mut parts: Vec<String> = id.split('.').map(str::to_string).collect();
    let mut claims = decode(&parts[1]);
    claims["sub"] = json!("someone-else");
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    let r = logout(
        &c,
        &s,
        &[
            ("id_token_hint", &parts.join(".")),
            ("post_logout_redirect_uri", LOGGED_OUT),
            ("state", "ls"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200, "a forged hint must not redirect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_rp_initiated_logout_no_id_token_hint() {
    let s = op().await;
    let (c, _) = session_and_id_token(&s).await;
    let r = logout(
        &c,
        &s,
        &[
            ("client_id", "rp"),
            ("post_logout_redirect_uri", LOGGED_OUT),
            ("state", "ls"),
        ],
    )
    .await;
    assert_eq!(at_client(&r, LOGGED_OUT)["state"], "ls");
    assert_signed_out(&c, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_rp_initiated_logout_no_params() {
    let s = op().await;
    let (c, _) = session_and_id_token(&s).await;
    let r = logout(&c, &s, &[]).await;
    assert_eq!(r.status(), 200);
    assert_signed_out(&c, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_rp_initiated_logout_no_post_logout_redirect_uri() {
    let s = op().await;
    let (c, id) = session_and_id_token(&s).await;
    let r = logout(&c, &s, &[("id_token_hint", &id)]).await;
    assert_eq!(r.status(), 200);
    assert_signed_out(&c, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_rp_initiated_logout_no_state() {
    let s = op().await;
    let (c, id) = session_and_id_token(&s).await;
    let r = logout(
        &c,
        &s,
        &[
            ("id_token_hint", &id),
            ("post_logout_redirect_uri", LOGGED_OUT),
        ],
    )
    .await;
    assert!(!at_client(&r, LOGGED_OUT).contains_key("state"));
    assert_signed_out(&c, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_rp_initiated_logout_only_state() {
    let s = op().await;
    let (c, _) = session_and_id_token(&s).await;
    let r = logout(&c, &s, &[("state", "ls")]).await;
    assert_eq!(r.status(), 200);
    assert_signed_out(&c, &s).await;
}

// ---------------------------------------------------------------------------------------------
// oidcc-backchannel-rp-initiated-logout-certification-test-plan
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_backchannel_logout_discovery_endpoint_verification() {
    let s = op().await;
    let d = discovery(&s).await;
    assert_eq!(d["backchannel_logout_supported"], Value::Bool(true));
    assert_eq!(d["backchannel_logout_session_supported"], Value::Bool(true));
}

/// A back-channel logout URI that records the `logout_token` of each POST and answers 200.
async fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/bc", l.local_addr().unwrap());
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = got.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(i) = text.find("\r\n\r\n") {
                        let len = text[..i]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= i + 4 + len {
                            let body = &buf[i + 4..i + 4 + len];
                            if let Some((_, t)) =
                                url::form_urlencoded::parse(body).find(|(k, _)| k == "logout_token")
                            {
                                seen.lock().push(t.into_owned());
                            }
                            let _ = sock
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidcc_backchannel_rp_initiated_logout() {
    let (url, got) = receiver().await;
    let s = op_with(Some(&url)).await;
    let c = signed_in(&s).await;
    let q = authorize(&c, &s, &[]).await;
    let t = exchange(&s, &q["code"]).await;
    let id = check_id_token(&s, &t, Some("nn")).await;
    let r = logout(
        &c,
        &s,
        &[
            ("id_token_hint", t["id_token"].as_str().unwrap()),
            ("post_logout_redirect_uri", LOGGED_OUT),
            ("state", "ls"),
        ],
    )
    .await;
    assert_eq!(at_client(&r, LOGGED_OUT)["state"], "ls");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let token = loop {
        if let Some(t) = got.lock().first().cloned() {
            break t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no logout token delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Back-Channel Logout 1.0 §2.4 / §2.6.
    let (header, lt) = verified(&s, &token).await;
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(lt["iss"], s.url("/oauth2/pool"));
    assert_eq!(lt["aud"], "rp");
    assert!(lt["iat"].is_i64() && lt["jti"].is_string());
    assert!(lt.get("nonce").is_none());
    assert!(lt["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(
        lt["sid"] == id["sid"] || lt["sub"] == id["sub"],
        "{lt} / {id}"
    );
    assert_signed_out(&c, &s).await;
}
