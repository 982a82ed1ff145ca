//! A bearer route takes access tokens only, and a revoked user's tokens stop working
//! (security invariants "a token is used only for what it is" and "revocation covers every
//! credential"): the real binary, tokens from the real `oidc-provider` (a real ID token from
//! its code flow, and tokens it signs with exactly the claims a case needs).

use std::time::{Duration, Instant};

use super::*;

const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A real ID token of the IdP for the proxy's client (`aud` = `portcullis`): the code flow
/// driven directly against oidc-provider, the code exchanged at its token endpoint.
async fn real_id_token(idp: &Idp, base: &str) -> String {
    let c = client();
    let mut auth = reqwest::Url::parse(&format!("{}/auth", idp.issuer)).unwrap();
    auth.query_pairs_mut()
        .append_pair("client_id", "portcullis")
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("redirect_uri", &format!("{base}/oauth2/idpresponse"))
        .append_pair("state", "st-bearer")
        .append_pair("nonce", "nonce-bearer");
    let callback = walk_to_callback(&c, auth, "alice").await;
    let code = callback
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in {callback}"));
    let r = reqwest::Client::new()
        .post(format!("{}/token", idp.issuer))
        .basic_auth("portcullis", Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", &format!("{base}/oauth2/idpresponse")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["id_token"].as_str().expect("an id_token").to_string()
}

/// ID tokens and logout tokens are not access tokens: 401 `invalid_token`, inline and through
/// forward auth, whatever their `aud`; RFC 9068 access tokens (`typ: at+jwt`) and untyped
/// access tokens still pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_and_logout_tokens_are_not_access_tokens() {
    let s = idp_stack().await;
    let (idp, base) = (&s.idp, s.proxy.base.as_str());

    // The IdP's own ID token (oidc-provider sets no token_use), on a route whose
    // bearer_audience lists the client it was issued to.
    let id_token = real_id_token(idp, base).await;
    let c = claims_of(&id_token);
    assert_eq!(c["aud"], "portcullis", "{c}");
    assert!(c.get("token_use").is_none(), "{c}");
    assert_refused(
        get(base, "/client-api/x", &id_token).await,
        401,
        "invalid_token",
        "the IdP's real ID token",
    )
    .await;
    assert_refused(
        forward_auth(base, "/client-api/x", Some(&id_token)).await,
        401,
        "invalid_token",
        "the IdP's real ID token, forward auth",
    )
    .await;

    let t = now();
    let access = good_claims(idp, "alice");
    let logout = json!({
        "iss": idp.issuer, "sub": "alice", "aud": AUDIENCE, "scope": "orders/read",
        "iat": t, "exp": t + 120, "jti": format!("logout-{t}"),
        "events": {LOGOUT_EVENT: {}},
    });
    let refused: Vec<(&str, Value, Value)> = vec![
        (
            "ID token with a nonce",
            json!({}),
            with(access.clone(), json!({"nonce": "n-1"})),
        ),
        (
            "ID token with at_hash",
            json!({}),
            with(access.clone(), json!({"at_hash": "x3GB4iZ0wFZn4dCxI6e3Aw"})),
        ),
        (
            "typ id_token+jwt",
            json!({"typ": "id_token+jwt"}),
            access.clone(),
        ),
        (
            "a logout token (typ logout+jwt)",
            json!({"typ": "logout+jwt"}),
            logout.clone(),
        ),
        ("a logout token typed JWT", json!({"typ": "JWT"}), logout),
        (
            "events claim",
            json!({}),
            with(access.clone(), json!({"events": {"x": {}}})),
        ),
        (
            "token_use refresh",
            json!({}),
            with(access.clone(), json!({"token_use": "refresh"})),
        ),
        (
            "typ secevent+jwt",
            json!({"typ": "secevent+jwt"}),
            access.clone(),
        ),
    ];
    for (case, header, claims) in refused {
        let token = idp.sign(header, claims).await;
        assert_refused(
            get(base, "/api/x", &token).await,
            401,
            "invalid_token",
            case,
        )
        .await;
        assert_refused(
            forward_auth(base, "/api/x", Some(&token)).await,
            401,
            "invalid_token",
            case,
        )
        .await;
    }
    let accepted: Vec<(&str, Value, Value)> = vec![
        ("typ at+jwt", json!({"typ": "at+jwt"}), access.clone()),
        (
            "typ application/at+jwt",
            json!({"typ": "application/at+jwt"}),
            access.clone(),
        ),
        (
            "token_use access",
            json!({"typ": "JWT"}),
            with(access.clone(), json!({"token_use": "access"})),
        ),
        ("untyped access token", json!({}), access.clone()),
    ];
    for (case, header, claims) in accepted {
        let token = idp.sign(header, claims).await;
        assert_eq!(get(base, "/api/x", &token).await.status(), 200, "{case}");
    }
    // oidc-provider's own RFC 9068 access token (typ at+jwt) still passes.
    let real = idp_access_token(idp, "orders/read").await;
    assert_eq!(get(base, "/api/orders", &real).await.status(), 200);
}

/// Polls `path` with `token` until it is refused (401 `invalid_token`); at most 5 s.
pub(super) async fn refused_within_5s(base: &str, path: &str, token: &str, case: &str) {
    let start = Instant::now();
    loop {
        let r = get(base, path, token).await;
        if r.status() == 401 {
            assert_refused(r, 401, "invalid_token", case).await;
            return;
        }
        assert_eq!(r.status(), 200, "{case}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{case}: the token still works 5 s after the revocation"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn token_for(idp: &Idp, sub: &str, extra: Value) -> Value {
    with(good_claims(idp, sub), extra)
}

/// Every way to revoke a user also ends that user's bearer tokens issued before it: the CLI,
/// the admin API, back-channel logout by `sub` and by `sid`. Tokens issued afterwards, and
/// other users' tokens, keep working. A token already cached as verified is checked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_user_ends_their_bearer_tokens() {
    let s = idp_stack().await;
    let (idp, base) = (&s.idp, s.proxy.base.as_str());
    let t = now();
    let bob = idp.sign(json!({}), token_for(idp, "bob", json!({}))).await;
    let carol = idp
        .sign(json!({}), token_for(idp, "carol", json!({})))
        .await;
    let dave = idp.sign(json!({}), token_for(idp, "dave", json!({}))).await;
    let erin = idp
        .sign(
            json!({}),
            token_for(idp, "erin", json!({"sid": "op-erin-1"})),
        )
        .await;
    let erin_other = idp
        .sign(
            json!({"typ": "at+jwt"}),
            token_for(idp, "erin", json!({"sid": "op-erin-2", "jti": "erin-2"})),
        )
        .await;
    let other = idp.sign(json!({}), token_for(idp, "zoe", json!({}))).await;
    let no_iat = idp
        .sign(json!({}), token_for(idp, "frank", json!({"iat": null})))
        .await;
    for tok in [&bob, &carol, &dave, &erin, &erin_other, &other, &no_iat] {
        // Twice: the second answer comes from the verified-token cache.
        assert_eq!(get(base, "/api/x", tok).await.status(), 200);
        assert_eq!(get(base, "/api/x", tok).await.status(), 200);
    }

    // `portcullis sessions revoke` (another process: reaches the server through data_dir).
    let config = s.proxy.log_path().parent().unwrap().join("portcullis.toml");
    let out = std::process::Command::new(bin())
        .args(["sessions", "revoke", "--provider", "idp", "--sub", "bob"])
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    refused_within_5s(base, "/api/x", &bob, "CLI sessions revoke").await;
    assert_refused(
        forward_auth(base, "/api/x", Some(&bob)).await,
        401,
        "invalid_token",
        "revoked, forward auth",
    )
    .await;

    // The admin API.
    let r = reqwest::Client::new()
        .post(format!("{}/sessions/revoke", s.proxy.admin))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"provider": "idp", "sub": "carol"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    refused_within_5s(base, "/api/x", &carol, "admin API revoke").await;
    // Same for a token without iat: it cannot show it was issued after the revocation.
    let r = reqwest::Client::new()
        .post(format!("{}/sessions/revoke", s.proxy.admin))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"provider": "idp", "sub": "frank"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    refused_within_5s(base, "/api/x", &no_iat, "token without iat").await;

    // Back-channel logout from the IdP: by sub, then by sid.
    let logout = |claims: Value| async move {
        let jwt = idp.sign(json!({"typ": "logout+jwt"}), claims).await;
        reqwest::Client::new()
            .post(format!("{base}/oauth2/backchannel-logout"))
            .form(&[("logout_token", jwt)])
            .send()
            .await
            .unwrap()
            .status()
    };
    let lt = |extra: Value| {
        with(
            json!({"iss": idp.issuer, "aud": "portcullis", "iat": now(), "exp": now() + 120,
                   "jti": format!("lt-{}", rand_suffix()), "events": {LOGOUT_EVENT: {}}}),
            extra,
        )
    };
    assert_eq!(logout(lt(json!({"sub": "dave"}))).await, 200);
    refused_within_5s(base, "/api/x", &dave, "back-channel logout by sub").await;
    assert_eq!(logout(lt(json!({"sid": "op-erin-1"}))).await, 200);
    refused_within_5s(base, "/api/x", &erin, "back-channel logout by sid").await;
    assert_eq!(
        get(base, "/api/x", &erin_other).await.status(),
        200,
        "a token of another IdP session of the same user is untouched"
    );

    // Others are untouched; tokens issued after the revocation work.
    assert_eq!(get(base, "/api/x", &other).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let t2 = now().max(t + 2);
    let bob_again = idp
        .sign(
            json!({}),
            token_for(idp, "bob", json!({"iat": t2, "jti": "bob-again"})),
        )
        .await;
    assert_eq!(
        get(base, "/api/x", &bob_again).await.status(),
        200,
        "a token issued after the revocation"
    );
    assert_eq!(get(base, "/api/x", &bob).await.status(), 401);
}

/// A token's `iat` cannot put it after a revocation: one issued with `iat` ahead of the clock
/// (within the leeway) is as old as the time it was first seen, so revoking its user ends it;
/// one whose `iat` is further ahead than the leeway is refused outright.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_future_iat_does_not_outlive_a_revocation() {
    let s = idp_stack().await;
    let (idp, base) = (&s.idp, s.proxy.base.as_str());
    let t = now();
    let ahead = idp
        .sign(
            json!({}),
            token_for(idp, "gina", json!({"iat": t + 30, "jti": "gina-ahead"})),
        )
        .await;
    let plain = idp
        .sign(
            json!({}),
            token_for(idp, "gina", json!({"jti": "gina-plain"})),
        )
        .await;
    for tok in [&ahead, &plain] {
        assert_eq!(get(base, "/api/x", tok).await.status(), 200);
    }
    let r = reqwest::Client::new()
        .post(format!("{}/sessions/revoke", s.proxy.admin))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"provider": "idp", "sub": "gina"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    refused_within_5s(base, "/api/x", &plain, "plain iat").await;
    refused_within_5s(
        base,
        "/api/x",
        &ahead,
        "iat 30 s ahead, seen before the revocation",
    )
    .await;

    let far = idp
        .sign(
            json!({}),
            token_for(
                idp,
                "hank",
                json!({"iat": t + 3600, "exp": t + 7200, "jti": "hank-far"}),
            ),
        )
        .await;
    assert_refused(
        get(base, "/api/x", &far).await,
        401,
        "invalid_token",
        "iat an hour ahead",
    )
    .await;
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A config whose `[session]` has `timeout` and whose `data_dir` is `data`: sessions of the IdP.
fn session_config(
    port: u16,
    admin: u16,
    idp: &Idp,
    echo: &str,
    data: &std::path::Path,
    timeout: &str,
) -> String {
    format!(
        r#"
public_url = "http://127.0.0.1:{port}"
data_dir = "{data}"

[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
admin_token = "{ADMIN_TOKEN}"

[session]
secrets = ["{SECRET}"]
timeout = "{timeout}"

[providers.idp]
issuer = "{issuer}"
client_id = "portcullis"
client_secret = "{CLIENT_SECRET}"

[[routes]]
path = "/"
upstream = "{echo}"
"#,
        data = data.display(),
        issuer = idp.issuer
    )
}

/// One proxy (restarted with different `session.timeout`s on the same ports and `data_dir`)
/// in front of the real IdP.
struct TimeoutStack {
    port: u16,
    admin: u16,
    base: String,
    idp: Idp,
    echo: Echo,
    data: std::path::PathBuf,
}

impl TimeoutStack {
    async fn new(tag: &str) -> TimeoutStack {
        portcullis::install_crypto();
        let (port, admin) = Proxy::ports();
        let base = format!("http://127.0.0.1:{port}");
        let idp = Idp::start(json!([Idp::client_for(&base, json!({}))]), 3600);
        TimeoutStack {
            port,
            admin,
            base,
            idp,
            echo: Echo::start().await,
            data: temp_dir(tag),
        }
    }

    fn config(&self, timeout: &str) -> String {
        session_config(
            self.port,
            self.admin,
            &self.idp,
            &self.echo.url(),
            &self.data,
            timeout,
        )
    }

    async fn start(&self, timeout: &str) -> Proxy {
        Proxy::start(self.port, self.admin, &self.config(timeout)).await
    }

    /// Signs `user` in through `p`; the session cookie, checked to work.
    async fn sign_in(&self, p: &Proxy, user: &str) -> String {
        let cb = login(&client(), p, "/app", user).await;
        assert_eq!(cb.status(), 302);
        let cookie = session_cookie(&cb);
        assert_eq!(status_with(&self.base, "/app", &cookie).await, 200);
        cookie
    }

    /// Revokes every session of `sub` through the admin API.
    async fn revoke(&self, sub: &str) {
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/sessions/revoke", self.admin))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"provider": "idp", "sub": sub}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// Review F13: a session made under `session.timeout = 1h`, its user revoked after the timeout
/// was lowered to 3 s; once the revocation entry's own time is up, a restart must not bring the
/// session back (its sealed expiry is still an hour away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_stays_revoked_after_a_lower_timeout_and_restarts() {
    let t = TimeoutStack::new("bearer-f13").await;
    let base = t.base.as_str();
    let p = t.start("1h").await;
    let cookie = t.sign_in(&p, "alice").await;
    drop(p);

    // The timeout lowered, then the user revoked (the entry is sized by the timeout now).
    let p = t.start("3s").await;
    t.revoke("alice").await;
    assert_eq!(status_with(base, "/app", &cookie).await, 302, "revoked");
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(p);
    for timeout in ["3s", "1h"] {
        let p = t.start(timeout).await;
        assert_eq!(
            status_with(base, "/app", &cookie).await,
            302,
            "the revoked session came back after a restart with timeout {timeout}"
        );
        drop(p);
    }
}

/// A lowered `session.timeout` applied by SIGHUP shortens the sessions already made: a session
/// older than the new timeout is over, though its sealed expiry is an hour away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_lowered_by_sighup_ends_older_sessions() {
    let t = TimeoutStack::new("bearer-f13-hup").await;
    let base = t.base.as_str();
    let p = t.start("1h").await;
    let cookie = t.sign_in(&p, "alice").await;
    let config = p.log_path().parent().unwrap().join("portcullis.toml");
    std::fs::write(&config, t.config("2s")).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &p.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let start = Instant::now();
    while status_with(base, "/app", &cookie).await != 302 {
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "a session older than the lowered timeout still works; log:\n{}",
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A new session under the new timeout works (until it is 2 s old).
    t.sign_in(&p, "bob").await;
}

/// A revocation made after `session.timeout` was lowered lives as long as the sessions made
/// under the longer timeout (48 h here, above the 24 h floor), so raising the timeout again
/// later cannot bring a revoked session back: the entry recorded under `data_dir` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_outlives_sessions_of_a_longer_earlier_timeout() {
    let t = TimeoutStack::new("bearer-f13-long").await;
    let p = t.start("48h").await;
    let cookie = t.sign_in(&p, "alice").await;
    drop(p);
    let p = t.start("3s").await;
    t.revoke("alice").await;
    drop(p);
    let text = std::fs::read_to_string(t.data.join("revocations.jsonl")).unwrap();
    let until = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == "subject" && e["sub"] == "alice")
        .filter_map(|e| e["until"].as_i64())
        .max()
        .expect("a subject entry for alice");
    assert!(
        until >= now() + 48 * 3600 - 120,
        "the entry lives {} s, less than the 48 h sessions it revokes:\n{text}",
        until - now()
    );
    let p = t.start("48h").await;
    assert_eq!(status_with(&t.base, "/app", &cookie).await, 302);
    drop(p);
}
