//! The pool as an OpenID Provider for other apps (`[[pool.clients]]`): exact redirect_uri,
//! single-use codes whose replay revokes what they issued, rotating refresh tokens whose replay
//! revokes the family, PKCE required for public clients and no downgrade for anyone, client
//! authentication by basic and post, and userinfo honouring revocation.

mod pool_support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pool_support::*;
use serde_json::Value;

const CLIENTS: &str = r#"
[[pool.clients]]
client_id = "app"
client_secret = "app-secret-0123456789"
redirect_uris = ["http://127.0.0.1:9/cb"]
[[pool.clients]]
client_id = "spa"
redirect_uris = ["http://127.0.0.1:9/spa"]
"#;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A browser signed in to the pool (no authorization request pending).
async fn signed_in(s: &Server) -> reqwest::Client {
    create_user(s, "carol", "carol@example.com");
    let (ok, _, err) = s.cli(&["groups", "add-user", "admins", "carol"]);
    assert!(ok, "{err}");
    let c = browser();
    let r = sign_in(&c, s, &s.url("/oauth2/pool/login"), "carol", PASSWORD).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("carol"));
    c
}

fn authorize_url(s: &Server, client: &str, redirect: &str, extra: &str) -> String {
    let r = url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>();
    s.url(&format!("/oauth2/pool/authorize?response_type=code&client_id={client}&redirect_uri={r}&scope=openid%20email&state=st&nonce=nn{extra}"))
}

/// Authorizes with an existing pool session; returns the code.
async fn code(
    c: &reqwest::Client,
    s: &Server,
    client: &str,
    redirect: &str,
    extra: &str,
) -> String {
    let r = c
        .get(authorize_url(s, client, redirect, extra))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = url::Url::parse(&location(&r)).unwrap();
    assert!(loc.as_str().starts_with(redirect), "{loc}");
    let q: std::collections::HashMap<String, String> = loc.query_pairs().into_owned().collect();
    assert_eq!(q.get("state").map(String::as_str), Some("st"));
    q.get("code")
        .cloned()
        .unwrap_or_else(|| panic!("no code: {loc}"))
}

async fn token(s: &Server, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> (u16, Value) {
    let c = reqwest::Client::new();
    let mut req = c.post(s.url("/oauth2/pool/token")).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    assert_eq!(r.headers()["cache-control"], "no-store");
    (status, r.json().await.unwrap())
}

async fn exchange(s: &Server, code: &str, redirect: &str) -> (u16, Value) {
    token(
        s,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
        ],
        Some(("app", "app-secret-0123456789")),
    )
    .await
}

fn claims(jwt: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

async fn userinfo(s: &Server, access: &str) -> u16 {
    reqwest::Client::new()
        .get(s.url("/oauth2/pool/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn exact_redirect_uri_and_code_reuse(backend: Backend) {
    let s = Server::start(backend, CLIENTS).await;
    let c = signed_in(&s).await;
    let cb = "http://127.0.0.1:9/cb";

    // Not registered exactly: an error page here, never a redirect to the given URI.
    for bad in [
        "http://127.0.0.1:9/cb/",
        "http://127.0.0.1:9/cb?x=1",
        "http://127.0.0.1:9/cbx",
        "http://evil.test/cb",
    ] {
        let r = c
            .get(authorize_url(&s, "app", bad, ""))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.headers().get("location").is_none());
    }
    let r = c
        .get(authorize_url(&s, "nobody", cb, ""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let code1 = code(&c, &s, "app", cb, "").await;
    // The token request must repeat the same redirect_uri.
    let (st, body) = exchange(&s, &code1, "http://127.0.0.1:9/other").await;
    assert_eq!((st, body["error"].as_str()), (400, Some("invalid_grant")));

    let code2 = code(&c, &s, "app", cb, "").await;
    let (st, t) = exchange(&s, &code2, cb).await;
    assert_eq!(st, 200, "{t}");
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], "app");
    assert_eq!(id["nonce"], "nn");
    assert_eq!(id["iss"], s.url("/oauth2/pool"));
    assert_eq!(
        id["email_verified"],
        Value::Bool(true),
        "a boolean, not a string: {id}"
    );
    assert_eq!(id["cognito:username"], "carol");
    assert_eq!(id["cognito:groups"], serde_json::json!(["admins"]));
    assert_eq!(id["groups"], serde_json::json!(["admins"]));
    let access = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(userinfo(&s, &access).await, 200);

    // Replaying the code fails and revokes what it issued: the access and refresh tokens die.
    let (st, body) = exchange(&s, &code2, cb).await;
    assert_eq!((st, body["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(userinfo(&s, &access).await, 401);
    let (st, _) = token(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ],
        Some(("app", "app-secret-0123456789")),
    )
    .await;
    assert_eq!(st, 400);

    // Client authentication: client_secret_post works; a wrong secret is 401 invalid_client.
    let code3 = code(&c, &s, "app", cb, "").await;
    let (st, body) = token(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code3),
            ("redirect_uri", cb),
            ("client_id", "app"),
            ("client_secret", "wrong"),
        ],
        None,
    )
    .await;
    assert_eq!((st, body["error"].as_str()), (401, Some("invalid_client")));
    let code4 = code(&c, &s, "app", cb, "").await;
    let (st, _) = token(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code4),
            ("redirect_uri", cb),
            ("client_id", "app"),
            ("client_secret", "app-secret-0123456789"),
        ],
        None,
    )
    .await;
    assert_eq!(st, 200);
}
on_both!(redirect_and_code_reuse, exact_redirect_uri_and_code_reuse);

async fn refresh_tokens_rotate_and_reuse_revokes_the_family(backend: Backend) {
    let s = Server::start(backend, CLIENTS).await;
    let c = signed_in(&s).await;
    let cb = "http://127.0.0.1:9/cb";
    let code1 = code(&c, &s, "app", cb, "").await;
    let (_, t1) = exchange(&s, &code1, cb).await;
    let r1 = t1["refresh_token"].as_str().unwrap();
    let basic = Some(("app", "app-secret-0123456789"));
    let (st, t2) = token(
        &s,
        &[("grant_type", "refresh_token"), ("refresh_token", r1)],
        basic,
    )
    .await;
    assert_eq!(st, 200, "{t2}");
    let r2 = t2["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r2, "refresh tokens rotate");
    assert_eq!(
        claims(t2["id_token"].as_str().unwrap())["sub"],
        claims(t1["id_token"].as_str().unwrap())["sub"]
    );
    let access2 = t2["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&s, access2).await, 200);

    // r1 again: refused, and the whole family (r2 and its access token) is revoked.
    let (st, body) = token(
        &s,
        &[("grant_type", "refresh_token"), ("refresh_token", r1)],
        basic,
    )
    .await;
    assert_eq!((st, body["error"].as_str()), (400, Some("invalid_grant")));
    let (st, _) = token(
        &s,
        &[("grant_type", "refresh_token"), ("refresh_token", r2)],
        basic,
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(userinfo(&s, access2).await, 401);

    // Global sign-out revokes refresh tokens too.
    let code2 = code(&c, &s, "app", cb, "").await;
    let (_, t3) = exchange(&s, &code2, cb).await;
    let (ok, _, _) = s.cli(&["users", "sign-out", "CAROL"]);
    assert!(ok);
    let (st, _) = token(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t3["refresh_token"].as_str().unwrap()),
        ],
        basic,
    )
    .await;
    assert_eq!(st, 400);
    // …and the pool session: authorize now asks for a sign-in again.
    let r = c
        .get(authorize_url(&s, "app", cb, ""))
        .send()
        .await
        .unwrap();
    assert!(location(&r).contains("/oauth2/pool/login?req="));
}
on_both!(
    refresh_reuse,
    refresh_tokens_rotate_and_reuse_revokes_the_family
);

async fn pkce_is_required_for_public_clients_and_cannot_be_downgraded(backend: Backend) {
    let s = Server::start(backend, CLIENTS).await;
    let c = signed_in(&s).await;
    let spa = "http://127.0.0.1:9/spa";
    let error_of = |loc: String| {
        url::Url::parse(&loc)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "error")
            .map(|(_, v)| v.into_owned())
    };

    // A public client without a challenge, or with the `plain` method, is refused.
    let r = c
        .get(authorize_url(&s, "spa", spa, ""))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(location(&r)).as_deref(), Some("invalid_request"));
    let r = c
        .get(authorize_url(
            &s,
            "spa",
            spa,
            &format!("&code_challenge={VERIFIER}&code_challenge_method=plain"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(location(&r)).as_deref(), Some("invalid_request"));

    let s256 = format!("&code_challenge={CHALLENGE}&code_challenge_method=S256");
    // Challenge sent, no verifier at the token endpoint: refused.
    let c1 = code(&c, &s, "spa", spa, &s256).await;
    let (st, _) = token(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &c1),
            ("redirect_uri", spa),
            ("client_id", "spa"),
        ],
        None,
    )
    .await;
    assert_eq!(st, 400);
    // Wrong verifier: refused.
    let c2 = code(&c, &s, "spa", spa, &s256).await;
    let wrong = "x".repeat(43);
    let (st, _) = token(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &c2),
            ("redirect_uri", spa),
            ("client_id", "spa"),
            ("code_verifier", &wrong),
        ],
        None,
    )
    .await;
    assert_eq!(st, 400);
    // Right verifier: tokens.
    let c3 = code(&c, &s, "spa", spa, &s256).await;
    let (st, t) = token(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &c3),
            ("redirect_uri", spa),
            ("client_id", "spa"),
            ("code_verifier", VERIFIER),
        ],
        None,
    )
    .await;
    assert_eq!(st, 200, "{t}");

    // Downgrade: a confidential client's code issued without a challenge must not be
    // redeemable with a verifier (OAuth 2.0 Security BCP §4.8.2), and vice versa.
    let cb = "http://127.0.0.1:9/cb";
    let c4 = code(&c, &s, "app", cb, "").await;
    let (st, body) = token(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &c4),
            ("redirect_uri", cb),
            ("code_verifier", VERIFIER),
        ],
        Some(("app", "app-secret-0123456789")),
    )
    .await;
    assert_eq!((st, body["error"].as_str()), (400, Some("invalid_grant")));
    let c5 = code(&c, &s, "app", cb, &s256).await;
    let (st, _) = exchange(&s, &c5, cb).await;
    assert_eq!(st, 400);

    // A public client cannot authenticate with a made-up secret instead of PKCE.
    let c6 = code(&c, &s, "spa", spa, &s256).await;
    let (st, _) = token(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &c6),
            ("redirect_uri", spa),
            ("code_verifier", VERIFIER),
        ],
        Some(("spa", "guess")),
    )
    .await;
    assert_eq!(st, 401);
}
on_both!(
    pkce,
    pkce_is_required_for_public_clients_and_cannot_be_downgraded
);

async fn discovery_and_jwks_describe_the_provider(backend: Backend) {
    let s = Server::start(backend, CLIENTS).await;
    let d: Value = reqwest::get(s.url("/oauth2/pool/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], s.url("/oauth2/pool"));
    assert_eq!(d["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let jwks: Value = reqwest::get(d["jwks_uri"].as_str().unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Regression (issue 9, item 4): OpenID Connect Discovery requires RS256; the pool listed
    // only ES256 and authlib refused it. RS256 by default, as Cognito signs.
    assert_eq!(
        d["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    let k = &jwks["keys"][0];
    assert_eq!(
        (k["alg"].as_str(), k["use"].as_str(), k["kty"].as_str()),
        (Some("RS256"), Some("sig"), Some("RSA"))
    );
    assert!(k["kid"].as_str().is_some_and(|kid| !kid.is_empty()));
    assert!(k.get("d").is_none(), "no private key material in the JWKS");
    assert!(k.get("p").is_none(), "no private key material in the JWKS");
}
on_both!(discovery, discovery_and_jwks_describe_the_provider);
