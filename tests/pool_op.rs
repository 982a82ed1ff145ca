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

/// Adds `[[routes]]` ahead of the catch-all route and restarts the server on the new config.
async fn with_routes(s: &mut Server, routes: &str) {
    let text = std::fs::read_to_string(&s.config).unwrap();
    // The echo upstream of the catch-all route serves the new routes too.
    let upstream = text
        .split("upstream = \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let routes = routes.replace("UPSTREAM", &upstream);
    let text = text.replacen(
        "[[routes]]\npath = \"/\"",
        &format!("{routes}\n[[routes]]\npath = \"/\""),
        1,
    );
    std::fs::write(&s.config, text).unwrap();
    s.kill9();
    s.spawn().await;
}

/// The PKCE code grant of public client `spa`.
async fn spa_exchange(s: &Server, code: &str) -> (u16, Value) {
    token(
        s,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", "http://127.0.0.1:9/spa"),
            ("client_id", "spa"),
            ("code_verifier", VERIFIER),
        ],
        None,
    )
    .await
}

/// The `code` of a redirect to the client, if there is one.
fn code_in(loc: &str) -> Option<String> {
    url::Url::parse(loc)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
}

/// The error (and state) an authorization request was answered with at the client.
fn redirect_error(loc: &str) -> (Option<String>, Option<String>) {
    let u = url::Url::parse(loc).unwrap();
    let get = |name: &str| {
        u.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    (get("error"), get("state"))
}

/// F2 (security review 2026-12-07): a user of a public client ran the code flow with their own
/// PKCE verifier, asked for `openid orders/write admin:all`, got an access token holding all of
/// it, and passed a bearer route whose `allow_scopes` is `orders/write`. Scopes are granted per
/// client for user tokens too: anything else is `invalid_scope`, at authorize and at the token
/// endpoint (a refresh cannot widen), and a route's `allow_scopes` then means what it says.
async fn user_tokens_carry_only_the_clients_scopes(backend: Backend) {
    let clients = r#"
[[pool.clients]]
client_id = "spa"
redirect_uris = ["http://127.0.0.1:9/spa"]
scopes = ["orders/read"]
[[pool.clients]]
client_id = "app"
client_secret = "app-secret-0123456789"
redirect_uris = ["http://127.0.0.1:9/cb"]
scopes = ["orders/write"]
"#;
    let mut s = Server::start(backend, clients).await;
    with_routes(
        &mut s,
        "[[routes]]\npath = \"/api/write/\"\nupstream = \"UPSTREAM\"\nprovider = \"pool\"\n\
         on_unauthenticated = \"deny\"\naccept_bearer = true\nbearer_audience = [\"spa\", \"app\"]\n\
         allow_scopes = [\"orders/write\"]\n\
         [[routes]]\npath = \"/api/\"\nupstream = \"UPSTREAM\"\nprovider = \"pool\"\n\
         on_unauthenticated = \"deny\"\naccept_bearer = true\nbearer_audience = [\"spa\"]\n\
         allow_scopes = [\"orders/read\"]\n",
    )
    .await;
    let c = signed_in(&s).await;
    let spa = "http://127.0.0.1:9/spa";
    let s256 = format!("&code_challenge={CHALLENGE}&code_challenge_method=S256");
    let authorize = |scope: &str| {
        let r = url::form_urlencoded::byte_serialize(spa.as_bytes()).collect::<String>();
        let sc = url::form_urlencoded::byte_serialize(scope.as_bytes()).collect::<String>();
        s.url(&format!(
            "/oauth2/pool/authorize?response_type=code&client_id=spa&redirect_uri={r}&scope={sc}&state=st{s256}"
        ))
    };

    // The review's request: refused at the client's redirect URI, state kept, no code.
    for scope in [
        "openid orders/write admin:all",
        "openid orders/write",
        "openid admin:all",
    ] {
        let r = c.get(authorize(scope)).send().await.unwrap();
        assert_eq!(r.status(), 302, "{scope}");
        let loc = location(&r);
        assert!(loc.starts_with(spa), "{loc}");
        assert!(!loc.contains("code="), "a code for {scope:?}: {loc}");
        assert_eq!(
            redirect_error(&loc),
            (Some("invalid_scope".into()), Some("st".into())),
            "{scope}: {loc}"
        );
    }

    // A second `scope` (or any parameter twice, query and form together) is refused outright.
    let r = c
        .get(format!(
            "{}&scope=openid%20admin%3Aall",
            authorize("openid")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    let r = c
        .post(authorize("openid"))
        .form(&[("scope", "openid admin:all")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Other separators are separators: tab, `+`.
    for scope in ["openid\tadmin:all", "openid+admin:all"] {
        let url =
            authorize("X").replace("scope=X", &format!("scope={}", scope.replace('\t', "%09")));
        let r = c.get(url).send().await.unwrap();
        assert_eq!(
            redirect_error(&location(&r)).0.as_deref(),
            Some("invalid_scope"),
            "{scope}"
        );
    }

    // The client's own scope and the standard ones: granted.
    let r = c
        .get(authorize("openid email profile orders/read"))
        .send()
        .await
        .unwrap();
    let loc = location(&r);
    let code = code_in(&loc).unwrap_or_else(|| panic!("no code: {loc}"));
    let (st, t) = spa_exchange(&s, &code).await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["scope"], "openid email profile orders/read");
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(claims(access)["scope"], "openid email profile orders/read");

    // The bearer routes: orders/read passes /api/, not /api/write/.
    let api = |path: &str| {
        reqwest::Client::new()
            .get(s.url(path))
            .bearer_auth(access)
            .send()
    };
    assert_eq!(api("/api/orders").await.unwrap().status(), 200);
    assert_eq!(api("/api/write/orders").await.unwrap().status(), 403);

    // A refresh cannot widen the grant; it may narrow it.
    let refresh = t["refresh_token"].as_str().unwrap();
    let (st, body) = token(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", "spa"),
            ("scope", "openid orders/read admin:all"),
        ],
        None,
    )
    .await;
    assert_eq!(
        (st, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    let (st, body) = token(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", "spa"),
            ("scope", "openid orders/read"),
        ],
        None,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["scope"],
        "openid orders/read"
    );

    // A confidential client is held to its own list too.
    let cb = "http://127.0.0.1:9/cb";
    let r = c
        .get(
            authorize_url(&s, "app", cb, "")
                .replace("scope=openid%20email", "scope=openid%20orders/read"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        redirect_error(&location(&r)).0.as_deref(),
        Some("invalid_scope")
    );
    let r = c
        .get(
            authorize_url(&s, "app", cb, "")
                .replace("scope=openid%20email", "scope=openid%20orders/write"),
        )
        .send()
        .await
        .unwrap();
    let code = code_in(&location(&r)).unwrap();
    let (st, t) = exchange(&s, &code, cb).await;
    assert_eq!(st, 200, "{t}");
    let access = t["access_token"].as_str().unwrap();
    let r = reqwest::Client::new()
        .get(s.url("/api/write/x"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
on_both!(user_scopes, user_tokens_carry_only_the_clients_scopes);

/// F2, the review's reproduction as it ran: public client `spa` (no `scopes` configured), a
/// bearer route over the pool with `bearer_audience = ["spa"]` and `allow_scopes =
/// ["orders/write"]`, an ordinary user asking for `openid orders/write admin:all`.
async fn public_client_user_cannot_ask_for_any_scope(backend: Backend) {
    let mut s = Server::start(backend, CLIENTS).await;
    with_routes(
        &mut s,
        "[[routes]]\npath = \"/api/\"\nupstream = \"UPSTREAM\"\nprovider = \"pool\"\n\
         on_unauthenticated = \"deny\"\naccept_bearer = true\nbearer_audience = [\"spa\"]\n\
         allow_scopes = [\"orders/write\"]\n",
    )
    .await;
    let c = signed_in(&s).await;
    let spa = "http://127.0.0.1:9/spa";
    let r = url::form_urlencoded::byte_serialize(spa.as_bytes()).collect::<String>();
    let r = c
        .get(s.url(&format!(
            "/oauth2/pool/authorize?response_type=code&client_id=spa&redirect_uri={r}\
             &scope=openid%20orders%2Fwrite%20admin%3Aall&state=st\
             &code_challenge={CHALLENGE}&code_challenge_method=S256"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = location(&r);
    if let Some(code) = code_in(&loc) {
        // Show how far the attack gets before failing.
        let (_, t) = spa_exchange(&s, &code).await;
        let access = t["access_token"].as_str().unwrap_or_default();
        let api = reqwest::Client::new()
            .get(s.url("/api/orders"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
            .status();
        panic!(
            "escalation: token scope {:?}, access token scope {:?}, GET /api/orders (allow_scopes = orders/write): {api}",
            t["scope"],
            claims(access)["scope"]
        );
    }
    assert_eq!(
        redirect_error(&loc),
        (Some("invalid_scope".into()), Some("st".into())),
        "{loc}"
    );
}
on_both!(
    public_scope_escalation,
    public_client_user_cannot_ask_for_any_scope
);

fn kid_of(jwt: &str) -> String {
    let h: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    h["kid"].as_str().unwrap().to_string()
}

async fn jwks_kids(s: &Server) -> Vec<String> {
    let jwks: Value = reqwest::get(s.url("/oauth2/pool/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

/// Signs a browser in through the proxy in front of the pool; returns the upstream's answer.
async fn proxy_sign_in(s: &Server) -> u16 {
    let c = browser();
    let (r, hops) = follow(&c, &s.base, s.url("/app")).await;
    assert_eq!(r.status(), 200);
    let login = hops.last().unwrap().clone();
    assert!(login.contains("/oauth2/pool/login"), "{hops:?}");
    let r = sign_in(&c, s, &login, "carol", PASSWORD).await;
    assert_eq!(r.status(), 302);
    let (r, _) = follow(&c, &s.base, absolute(&s.base, &location(&r))).await;
    r.status().as_u16()
}

/// Signing-key rotation (OpenID certification's `oidcc-server-rotate-keys`, and the issue's
/// "the pool's signing key cannot be rotated"): through the admin API the new key signs at
/// once; the old one stays in the JWKS (its tokens still verify) until every token it signed
/// has expired, then leaves; a rotation from the CLI (another process, as another replica's
/// would be) reaches the server within its key refresh; the proxy keeps signing people in.
async fn signing_keys_rotate(backend: Backend) {
    let s = Server::start(
        backend,
        &format!("tokens = {{ id = \"3s\", access = \"3s\" }}\n{CLIENTS}"),
    )
    .await;
    let c = signed_in(&s).await;
    let cb = "http://127.0.0.1:9/cb";
    let t1 = exchange(&s, &code(&c, &s, "app", cb, "").await, cb).await.1;
    let old = kid_of(t1["id_token"].as_str().unwrap());
    assert_eq!(jwks_kids(&s).await, vec![old.clone()]);

    let admin = reqwest::Client::new();
    let r = admin
        .post(format!("{}/pool/keys/rotate", s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the admin token is required");
    let r = admin
        .post(format!("{}/pool/keys/rotate", s.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let new = body["kid"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    let rotated_at = std::time::Instant::now();

    // New tokens carry the new kid; the JWKS publishes both; the old access token still works.
    let t2 = exchange(&s, &code(&c, &s, "app", cb, "").await, cb).await.1;
    assert_eq!(kid_of(t2["id_token"].as_str().unwrap()), new);
    assert_eq!(kid_of(t2["access_token"].as_str().unwrap()), new);
    let kids = jwks_kids(&s).await;
    assert!(kids.contains(&old) && kids.contains(&new), "{kids:?}");
    assert_eq!(
        userinfo(&s, t2["access_token"].as_str().unwrap()).await,
        200
    );
    assert_eq!(proxy_sign_in(&s).await, 200);

    // The CLI (a process of its own, like another replica) rotates again: the server signs with
    // that key within its key refresh (10 s).
    let (ok, out, err) = s.cli(&["keys", "rotate"]);
    assert!(ok, "{out}{err}");
    let third = out
        .lines()
        .find(|l| l.contains("\tsigning"))
        .and_then(|l| l.split('\t').next())
        .unwrap_or_else(|| panic!("no signing key listed: {out}"))
        .to_string();
    assert!(third != new && third != old, "{out}");
    assert!(
        out.contains(&format!("{old}\tRS256\tretired\tuntil")),
        "{out}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let t = exchange(&s, &code(&c, &s, "app", cb, "").await, cb).await.1;
        if kid_of(t["id_token"].as_str().unwrap()) == third {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server never signed with {third}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(jwks_kids(&s).await.contains(&third));
    // The proxy refetches the pool's JWKS for an unknown key at most every 10 s: two rotations
    // within 10 s can make a sign-in wait for that interval, never longer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(12);
    loop {
        let status = proxy_sign_in(&s).await;
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy could not sign in after the second rotation: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    // Every token the first key signed has expired (3 s, plus as much again): it leaves.
    let wait = std::time::Duration::from_secs(7).saturating_sub(rotated_at.elapsed());
    tokio::time::sleep(wait).await;
    // A refresh of the keys is due within 10 s of the last one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(12);
    loop {
        let kids = jwks_kids(&s).await;
        if !kids.contains(&old) {
            assert!(kids.contains(&third), "{kids:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old key stayed: {kids:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let (ok, out, _) = s.cli(&["keys", "list"]);
    assert!(ok && !out.contains(&old), "{out}");
    assert!(s.cli(&["audit"]).1.contains("keys.rotate"));
}
on_both!(key_rotation, signing_keys_rotate);
