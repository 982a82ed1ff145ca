//! Bearer tokens for APIs (docs/src/proxy/bearer-tokens.md), end to end: the real binary in front of an echo upstream,
//! tokens from the real `oidc-provider` (its own JWT access tokens through the
//! client_credentials grant with a resource indicator, and tokens it signs with exactly the
//! claims a case needs through its `/__test/sign` control), and tokens from the built-in pool's
//! `client_credentials` grant. Inline and through forward auth (`/oauth2/auth`).

#[allow(dead_code)]
#[path = "../proxy/harness.rs"]
mod harness;
// The pool tests' sign-in form helper; it brings its own copy of the free-port helper.
#[allow(clippy::duplicate_mod)]
#[path = "../pool_support/mod.rs"]
mod pool_support;
mod pool_users;
mod revocation;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use harness::*;
use serde_json::{Value, json};

const JOB_SECRET: &str = "job-secret-job-secret-0123456789";
const AUDIENCE: &str = "api://orders";
const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .unwrap(),
    )
    .unwrap()
}

/// Claims of a good access token for the `/api/` route, for `sub`.
fn good_claims(idp: &Idp, sub: &str) -> Value {
    let t = now();
    json!({
        "iss": idp.issuer, "sub": sub, "aud": AUDIENCE, "scope": "orders/read",
        "client_id": "some-app", "iat": t, "exp": t + 300, "jti": format!("jti-{sub}-{t}"),
    })
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

/// An RFC 6750 challenge, e.g. `error="invalid_token"`, checked on a refused response; the body
/// is JSON with the same error, and no cookie is ever set.
async fn assert_refused(r: reqwest::Response, status: u16, error: &str, case: &str) {
    assert_eq!(r.status(), status, "{case}");
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains(&format!("error=\"{error}\"")),
        "{case}: {challenge}"
    );
    assert!(r.headers().get("set-cookie").is_none(), "{case}");
    assert!(r.headers().get("location").is_none(), "{case}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], error, "{case}: {body}");
}

fn proxy_config(port: u16, admin: u16, idp: &Idp, echo: &str) -> String {
    format!(
        r#"
public_url = "http://127.0.0.1:{port}"

[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
admin_token = "{ADMIN_TOKEN}"
trusted_proxies = ["127.0.0.1/32"]
workers = 1

[session]
secrets = ["{SECRET}"]

[log]
level = "debug"

[providers.idp]
issuer = "{issuer}"
client_id = "portcullis"
client_secret = "{CLIENT_SECRET}"

[[routes]]
path = "/admin-api/"
upstream = "{echo}"
accept_bearer = true
bearer_audience = ["{AUDIENCE}"]
allow_groups = ["admins"]

[[routes]]
path = "/api/"
upstream = "{echo}"
accept_bearer = true
bearer_audience = ["{AUDIENCE}"]
allow_scopes = ["orders/read"]

[[routes]]
path = "/client-api/"
upstream = "{echo}"
accept_bearer = true
bearer_audience = ["portcullis"]

[[routes]]
path = "/"
upstream = "{echo}"
"#,
        issuer = idp.issuer
    )
}

struct IdpStack {
    idp: Idp,
    _echo: Echo,
    proxy: Proxy,
}

async fn idp_stack() -> IdpStack {
    portcullis::install_crypto();
    let (port, admin) = Proxy::ports();
    let base = format!("http://127.0.0.1:{port}");
    let job = json!({
        "client_id": "job", "client_secret": JOB_SECRET,
        "grant_types": ["client_credentials"], "redirect_uris": [], "response_types": [],
    });
    let idp = Idp::start_with_env(
        json!([Idp::client_for(&base, json!({})), job]),
        3600,
        &[(
            "IDP_RESOURCE_SERVERS",
            &json!({AUDIENCE: {"scope": "orders/read orders/write"}}).to_string(),
        )],
    );
    let echo = Echo::start().await;
    let proxy = Proxy::start(port, admin, &proxy_config(port, admin, &idp, &echo.url())).await;
    IdpStack {
        idp,
        _echo: echo,
        proxy,
    }
}

/// A JWT access token (RFC 9068) issued by oidc-provider itself to the machine client `job`.
async fn idp_access_token(idp: &Idp, scope: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/token", idp.issuer))
        .basic_auth("job", Some(JOB_SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", AUDIENCE),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

async fn get(base: &str, path: &str, token: &str) -> reqwest::Response {
    bare_client()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn forward_auth(base: &str, uri: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = bare_client()
        .get(format!("{base}/oauth2/auth"))
        .header("x-forwarded-uri", uri)
        .header("accept", "application/json");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_the_real_idp_inline_and_through_forward_auth() {
    let s = idp_stack().await;
    let (idp, base) = (&s.idp, s.proxy.base.as_str());

    // oidc-provider's own JWT access token: forwarded with the token's identity, no cookie.
    let real = idp_access_token(idp, "orders/read").await;
    let c = claims_of(&real);
    assert_eq!(
        (c["aud"].as_str(), c["sub"].as_str()),
        (Some(AUDIENCE), Some("job"))
    );
    let r = get(base, "/api/orders", &real).await;
    assert!(r.headers().get("set-cookie").is_none());
    let seen = echoed(r).await;
    assert_eq!(header(&seen, "x-amzn-oidc-identity"), Some("job"));
    assert_eq!(
        header(&seen, "x-amzn-oidc-accesstoken"),
        Some(real.as_str())
    );
    let data = claims_of(header(&seen, "x-amzn-oidc-data").unwrap());
    assert_eq!(data["sub"], "job");
    assert_eq!(data["scope"], "orders/read");
    // The same token again: the same answer, from the worker's cache (one request worker
    // here), without another signature check.
    let verified = || {
        s.proxy
            .logs()
            .matches("bearer token signature verified")
            .count()
    };
    let before = verified();
    for _ in 0..5 {
        assert_eq!(get(base, "/api/orders", &real).await.status(), 200);
    }
    assert_eq!(verified(), before, "a cached token is not verified again");
    let fresh = idp_access_token(idp, "orders/read").await;
    assert_eq!(get(base, "/api/orders", &fresh).await.status(), 200);
    assert_eq!(verified(), before + 1, "a new token is verified once");
    // A real token without the route's scope.
    let write_only = idp_access_token(idp, "orders/write").await;
    assert_refused(
        get(base, "/api/orders", &write_only).await,
        403,
        "insufficient_scope",
        "real token without orders/read",
    )
    .await;

    // Crafted tokens, signed by the IdP's published key unless the case says otherwise.
    let rsa = json!({});
    let good = idp.sign(rsa.clone(), good_claims(idp, "alice")).await;
    let seen = echoed(get(base, "/api/x", &good).await).await;
    assert_eq!(header(&seen, "x-amzn-oidc-identity"), Some("alice"));
    assert_eq!(header(&seen, "x-forwarded-user"), Some("alice"));

    let t = now();
    let base_claims = good_claims(idp, "alice");
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "expired",
            rsa.clone(),
            with(base_claims.clone(), json!({"exp": t - 120})),
        ),
        (
            "not yet valid",
            rsa.clone(),
            with(base_claims.clone(), json!({"nbf": t + 300})),
        ),
        (
            "no exp",
            rsa.clone(),
            with(base_claims.clone(), json!({"exp": null})),
        ),
        (
            "wrong iss",
            rsa.clone(),
            with(base_claims.clone(), json!({"iss": "http://evil.example"})),
        ),
        (
            "wrong aud",
            rsa.clone(),
            with(base_claims.clone(), json!({"aud": "api://other"})),
        ),
        (
            "wrong aud, right client_id",
            rsa.clone(),
            with(
                base_claims.clone(),
                json!({"aud": "api://other", "client_id": AUDIENCE}),
            ),
        ),
        (
            "an ID token",
            rsa.clone(),
            with(base_claims.clone(), json!({"token_use": "id"})),
        ),
        (
            "unknown kid",
            json!({"kid": "no-such-key"}),
            base_claims.clone(),
        ),
    ];
    for (case, header, claims) in cases {
        let token = idp.sign(header, claims).await;
        assert_refused(
            get(base, "/api/x", &token).await,
            401,
            "invalid_token",
            case,
        )
        .await;
    }
    // Within the 60 s leeway: still good.
    let leeway = idp
        .sign(
            rsa.clone(),
            with(base_claims.clone(), json!({"exp": t - 30, "nbf": t + 30})),
        )
        .await;
    assert_eq!(get(base, "/api/x", &leeway).await.status(), 200);

    // Tokens no key of the IdP signed.
    let payload = b64(&base_claims);
    let alg_none = format!("{}.{payload}.", b64(&json!({"alg": "none", "typ": "JWT"})));
    let hs_input = format!("{}.{payload}", b64(&json!({"alg": "HS256", "typ": "JWT"})));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, CLIENT_SECRET.as_bytes());
    let hs256 = format!(
        "{hs_input}.{}",
        URL_SAFE_NO_PAD.encode(ring::hmac::sign(&key, hs_input.as_bytes()))
    );
    let (head, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let tampered = format!(
        "{head}.{}.{sig}",
        b64(&with(base_claims.clone(), json!({"sub": "mallory"})))
    );
    for (case, token) in [
        ("alg none", alg_none.as_str()),
        ("HS256 with the client secret", hs256.as_str()),
        ("tampered payload", tampered.as_str()),
        ("not a JWT", "opaque-token-value"),
    ] {
        assert_refused(get(base, "/api/x", token).await, 401, "invalid_token", case).await;
    }

    // Scopes: a missing one is 403 insufficient_scope; `scp` arrays count.
    let no_scope = idp
        .sign(
            rsa.clone(),
            with(base_claims.clone(), json!({"scope": "orders/write"})),
        )
        .await;
    let r = get(base, "/api/x", &no_scope).await;
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"orders/read\"")
    );
    assert_refused(r, 403, "insufficient_scope", "missing scope").await;
    let scp = idp
        .sign(
            rsa.clone(),
            with(
                base_claims.clone(),
                json!({"scope": null, "scp": ["orders/read"]}),
            ),
        )
        .await;
    assert_eq!(get(base, "/api/x", &scp).await.status(), 200);
    // Cognito style: no `aud`, `client_id` one of the audiences.
    let cognito = idp
        .sign(
            rsa.clone(),
            with(
                base_claims.clone(),
                json!({"aud": null, "client_id": AUDIENCE}),
            ),
        )
        .await;
    assert_eq!(get(base, "/api/x", &cognito).await.status(), 200);

    // The route's other rules apply to the token's claims (groups_claim "groups").
    let admin = idp
        .sign(
            rsa.clone(),
            with(good_claims(idp, "alice"), json!({"groups": ["admins"]})),
        )
        .await;
    let staff = idp
        .sign(
            rsa.clone(),
            with(good_claims(idp, "bob"), json!({"groups": ["staff"]})),
        )
        .await;
    let seen = echoed(get(base, "/admin-api/x", &admin).await).await;
    assert_eq!(header(&seen, "x-forwarded-groups"), Some("admins"));
    let r = get(base, "/admin-api/x", &staff).await;
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");

    // Forward auth: the same decision, the identity as response headers.
    let r = forward_auth(base, "/api/orders", Some(&real)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-amzn-oidc-identity"], "job");
    assert_eq!(r.headers()["x-amzn-oidc-accesstoken"], real.as_str());
    assert!(r.headers().get("x-amzn-oidc-data").is_some());
    assert!(r.headers().get("set-cookie").is_none());
    let expired = idp
        .sign(
            rsa.clone(),
            with(base_claims.clone(), json!({"exp": t - 120})),
        )
        .await;
    assert_refused(
        forward_auth(base, "/api/orders", Some(&expired)).await,
        401,
        "invalid_token",
        "forward auth, expired",
    )
    .await;
    assert_refused(
        forward_auth(base, "/api/orders", Some(&write_only)).await,
        403,
        "insufficient_scope",
        "forward auth, missing scope",
    )
    .await;
    assert_eq!(
        forward_auth(base, "/admin-api/x", Some(&staff))
            .await
            .status(),
        403
    );
    let r = forward_auth(base, "/api/orders", None).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").is_none());
    let body: Value = r.json().await.unwrap();
    assert!(body["login_url"].as_str().is_some(), "{body}");

    // With the IdP down, tokens are still checked against the keys already fetched.
    let later = idp
        .sign(
            rsa.clone(),
            with(good_claims(idp, "carol"), json!({"jti": "while-down"})),
        )
        .await;
    idp.set_down(true).await;
    assert_eq!(get(base, "/api/orders", &real).await.status(), 200);
    assert_eq!(get(base, "/api/orders", &later).await.status(), 200);
    idp.set_down(false).await;

    // A bearer header on a route without accept_bearer changes nothing there: sign in.
    let r = get(base, "/other", &good).await;
    assert_eq!(r.status(), 302);
    assert!(location(&r).starts_with(&idp.issuer), "{}", location(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_authorization_a_bearer_route_behaves_as_before() {
    let s = idp_stack().await;
    let base = s.proxy.base.as_str();
    // A browser is sent to sign in; a script gets 401 JSON with the login URL.
    let r = client()
        .get(format!("{base}/api/page"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(location(&r).starts_with(&s.idp.issuer), "{}", location(&r));
    let r = bare_client()
        .get(format!("{base}/api/page"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").is_none());
    // A cookie session works on it as on any route.
    let c = client();
    let done = login(&c, &s.proxy, "/api/page", "alice").await;
    assert_eq!(done.status(), 302);
    let seen = echoed(
        c.get(format!("{base}/api/page"))
            .header("accept", HTML)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(header(&seen, "x-amzn-oidc-identity"), Some("alice"));
    // A session cookie next to a bad token: the token decides.
    let r = c
        .get(format!("{base}/api/page"))
        .bearer_auth("not-a-jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

fn pool_config(port: u16, admin: u16, echo: &str, dir: &std::path::Path) -> String {
    format!(
        r#"
public_url = "http://127.0.0.1:{port}"

[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
trusted_proxies = ["127.0.0.1/32"]

[session]
secrets = ["{SECRET}"]

[[routes]]
path = "/api/write/"
upstream = "{echo}"
provider = "pool"
accept_bearer = true
bearer_audience = ["{AUDIENCE}"]
allow_scopes = ["orders/write"]

[[routes]]
path = "/api/"
upstream = "{echo}"
provider = "pool"
on_unauthenticated = "deny"
accept_bearer = true
bearer_audience = ["{AUDIENCE}"]
allow_scopes = ["orders/read"]

[[routes]]
path = "/"
upstream = "{echo}"
provider = "pool"

[pool]
database = "sqlite://{db}"

[[pool.clients]]
client_id = "billing-job"
client_secret = "{JOB_SECRET}"
grant_types = ["client_credentials"]
scopes = ["orders/read", "orders/write"]
audience = "{AUDIENCE}"

[[pool.clients]]
client_id = "reader"
client_secret = "{JOB_SECRET}"
grant_types = ["client_credentials"]
scopes = ["orders/read"]
audience = "{AUDIENCE}"

[[pool.clients]]
client_id = "wiki"
client_secret = "{JOB_SECRET}"
redirect_uris = ["https://wiki.example.com/callback"]
"#,
        db = dir.join("pool.db").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_client_credentials_tokens_call_the_api() {
    portcullis::install_crypto();
    let (port, admin) = Proxy::ports();
    let echo = Echo::start().await;
    let dir = temp_dir("bearer-pool");
    let proxy = Proxy::start(port, admin, &pool_config(port, admin, &echo.url(), &dir)).await;
    let base = proxy.base.as_str();
    let issuer = format!("{base}/oauth2/pool");
    let discovery: Value = reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        discovery["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("client_credentials"))
    );
    let token = |client: &'static str, secret: &'static str, scope: Option<&'static str>| {
        let issuer = issuer.clone();
        async move {
            let mut form = vec![("grant_type", "client_credentials")];
            if let Some(s) = scope {
                form.push(("scope", s));
            }
            reqwest::Client::new()
                .post(format!("{issuer}/token"))
                .basic_auth(client, Some(secret))
                .form(&form)
                .send()
                .await
                .unwrap()
        }
    };

    let r = token("billing-job", JOB_SECRET, Some("orders/read")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "orders/read");
    assert_eq!(body["expires_in"], 3600);
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none());
    let read = body["access_token"].as_str().unwrap().to_string();
    let c = claims_of(&read);
    assert_eq!(c["iss"], issuer.as_str());
    assert_eq!(c["sub"], "billing-job");
    assert_eq!(c["client_id"], "billing-job");
    assert_eq!(c["aud"], AUDIENCE);
    assert_eq!(c["scope"], "orders/read");
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
    assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()));

    // The token calls the API; a route needing another scope says so.
    let seen = echoed(get(base, "/api/orders", &read).await).await;
    assert_eq!(header(&seen, "x-amzn-oidc-identity"), Some("billing-job"));
    assert_refused(
        get(base, "/api/write/orders", &read).await,
        403,
        "insufficient_scope",
        "pool token without orders/write",
    )
    .await;
    // No scope asked: every scope of the client.
    let r = token("billing-job", JOB_SECRET, None).await;
    let all: Value = r.json().await.unwrap();
    assert_eq!(all["scope"], "orders/read orders/write");
    let all = all["access_token"].as_str().unwrap().to_string();
    assert_eq!(get(base, "/api/write/orders", &all).await.status(), 200);
    // Through forward auth too.
    let r = forward_auth(base, "/api/write/x", Some(&all)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-amzn-oidc-identity"], "billing-job");

    // Refusals at the token endpoint.
    let r = token("reader", JOB_SECRET, Some("orders/read orders/write")).await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "invalid_scope");
    let r = token("billing-job", "wrong-secret", Some("orders/read")).await;
    assert_eq!(r.status(), 401);
    let r = token("wiki", JOB_SECRET, None).await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "unauthorized_client");

    assert_refused(
        get(base, "/api/orders", "a.b.c").await,
        401,
        "invalid_token",
        "garbage",
    )
    .await;
}
