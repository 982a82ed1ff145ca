//! Sign-in flows, sessions, identity headers, authorization, refresh, sign-out.

use std::time::Duration;

use base64::Engine;
use serde_json::json;

use crate::harness::*;

fn setup() {
    portcullis::install_crypto();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_modes_redirect_deny_allow_and_xhr() {
    setup();
    let s = Stack::start().await;
    let c = client();
    let base = &s.proxy.base;

    // allow: forwarded without identity.
    let r = c.get(format!("{base}/public/page")).send().await.unwrap();
    let v = echoed(r).await;
    assert_eq!(v["path"], "/public/page");
    assert!(header(&v, "x-amzn-oidc-identity").is_none());

    // deny: 401.
    let r = c
        .get(format!("{base}/api/things"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // authenticate, browser: 302 to the IdP with PKCE S256, state and nonce.
    let r = c
        .get(format!("{base}/app?x=1"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{}", s.proxy.logs());
    let loc = reqwest::Url::parse(&location(&r)).unwrap();
    assert!(loc.as_str().starts_with(&s.idp.issuer), "{loc}");
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "portcullis");
    assert_eq!(q["redirect_uri"], format!("{base}/oauth2/idpresponse"));
    assert!(q["state"].len() >= 32 && q["nonce"].len() >= 32 && q["code_challenge"].len() >= 43);
    assert!(q["scope"].contains("openid") && q["scope"].contains("email"));
    let set_cookie: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        set_cookie
            .iter()
            .any(|c| c.contains("-login-") && c.contains("HttpOnly") && c.contains("Max-Age=900")),
        "{set_cookie:?}"
    );

    // authenticate, XHR / fetch / JSON-only Accept: 401 JSON naming the login URL.
    for (k, v) in [
        ("x-requested-with", "XMLHttpRequest"),
        ("sec-fetch-mode", "cors"),
        ("accept", "application/json"),
    ] {
        let r = c
            .get(format!("{base}/app"))
            .header(k, v)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{k}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let j: serde_json::Value = r.json().await.unwrap();
        assert!(
            j["login_url"]
                .as_str()
                .unwrap()
                .starts_with("/oauth2/start?rd="),
            "{j}"
        );
        assert!(j["request_id"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_login_sets_identity_headers_and_hides_session_cookies() {
    setup();
    let s = Stack::start().await;
    let c = client();
    let base = &s.proxy.base;
    let cb = login(&c, &s.proxy, "/app/home?q=1", "alice").await;
    assert_eq!(cb.status(), 302, "{}", cb.text().await.unwrap());
    assert_eq!(location(&cb), "/app/home?q=1");
    let cookies: Vec<String> = cb
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let shard0 = cookies
        .iter()
        .find(|c| c.starts_with("AWSELBAuthSessionCookie-0="))
        .expect("session shard 0");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(shard0.contains(attr), "{shard0}");
    }
    assert!(
        !shard0.contains("Secure"),
        "plain-http public_url must not set Secure"
    );
    assert!(cookies.iter().all(|c| c.len() <= 4000));

    let session = session_cookie(&cb);
    let r = bare_client()
        .get(format!("{base}/app/home?q=1"))
        .header("cookie", format!("other=kept; {session}"))
        .header("x-amzn-oidc-identity", "mallory")
        .header("X_Forwarded_User", "mallory")
        .send()
        .await
        .unwrap();
    let v = echoed(r).await;
    assert_eq!(header(&v, "x-amzn-oidc-identity"), Some("alice"));
    assert_eq!(
        v["headers"]["x-amzn-oidc-identity"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(v["headers"].get("x_forwarded_user").is_none());
    assert_eq!(header(&v, "x-forwarded-user"), Some("alice"));
    assert_eq!(header(&v, "x-forwarded-email"), Some("alice@example.com"));
    assert_eq!(header(&v, "x-forwarded-groups"), Some("admins,staff"));
    assert_eq!(header(&v, "x-forwarded-preferred-username"), Some("alice"));
    assert!(
        !header(&v, "x-amzn-oidc-accesstoken")
            .unwrap_or("")
            .is_empty()
    );
    let cookie = header(&v, "cookie").unwrap_or("");
    assert!(cookie.contains("other=kept"), "{cookie}");
    assert!(
        !cookie.contains("AWSELBAuthSessionCookie"),
        "session cookies must not reach the upstream: {cookie}"
    );

    // The data JWT in ALB format: padded base64url, security fields in the header.
    let data = header(&v, "x-amzn-oidc-data").unwrap();
    let parts: Vec<&str> = data.split('.').collect();
    assert_eq!(parts.len(), 3);
    let h: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE
            .decode(parts[0])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(h["alg"], "ES256");
    assert_eq!(h["client"], "portcullis");
    assert_eq!(h["iss"], s.idp.issuer);
    assert_eq!(h["signer"], "portcullis");
    let exp = h["exp"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        exp > now && exp <= now + 600,
        "exp at most 10 minutes ahead"
    );

    // The ALB way of verifying: PEM by kid, PyJWT + cryptography (an independent verifier).
    let kid = h["kid"].as_str().unwrap();
    let out = std::process::Command::new("python3")
        .arg(repo().join("tests/verify_alb.py"))
        .arg(format!("{base}/oauth2/public-keys/{kid}"))
        .arg(format!("{base}/oauth2/jwks.json"))
        .arg(data)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "PyJWT verification failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verified: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verified["sub"], "alice");
    assert_eq!(verified["email"], "alice@example.com");

    // /oauth2/userinfo
    let u: serde_json::Value = c
        .get(format!("{base}/oauth2/userinfo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(u["sub"], "alice");
    assert_eq!(u["groups"], json!(["admins", "staff"]));
    let anon = client()
        .get(format!("{base}/oauth2/userinfo"))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_are_stripped_on_every_route() {
    setup();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    let spoof = [
        ("x-amzn-oidc-identity", "evil"),
        ("x-amzn-oidc-data", "evil"),
        ("x-amzn-oidc-accesstoken", "evil"),
        ("x-forwarded-user", "evil"),
        ("x-forwarded-email", "evil@example.com"),
        ("x-forwarded-groups", "admins"),
        ("x-forwarded-preferred-username", "evil"),
        ("x_amzn_oidc_identity", "evil"),
        ("x.forwarded.email", "evil"),
        ("X-Forwarded_Groups", "admins"),
    ];
    let check = |v: &serde_json::Value| {
        let text = v["headers"].to_string();
        assert!(
            !text.contains("evil"),
            "spoofed header reached upstream: {text}"
        );
    };
    // Anonymous on an allow route.
    let mut rb = client().get(format!("{base}/public/x"));
    for (k, val) in spoof {
        rb = rb.header(k, val);
    }
    check(&echoed(rb.send().await.unwrap()).await);
    // Anonymous spoof on deny and authenticate routes never gets through.
    let mut rb = client().get(format!("{base}/api/x"));
    for (k, val) in spoof {
        rb = rb.header(k, val);
    }
    assert_eq!(rb.send().await.unwrap().status(), 401);
    let mut rb = client()
        .get(format!("{base}/admin/x"))
        .header("accept", HTML);
    for (k, val) in spoof {
        rb = rb.header(k, val);
    }
    assert_eq!(rb.send().await.unwrap().status(), 302);
    // Signed in, on authenticate, deny and allow routes.
    let c = client();
    login(&c, &s.proxy, "/", "bob").await;
    for path in ["/x", "/api/x", "/public/x"] {
        let mut rb = c.get(format!("{base}{path}"));
        for (k, val) in spoof {
            rb = rb.header(k, val);
        }
        let v = echoed(rb.send().await.unwrap()).await;
        check(&v);
        assert_eq!(header(&v, "x-amzn-oidc-identity"), Some("bob"), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_rules_pass_and_fail() {
    setup();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    let alice = client();
    login(&alice, &s.proxy, "/", "alice").await;
    let bob = client();
    login(&bob, &s.proxy, "/", "bob").await;
    let mallory = client();
    login(&mallory, &s.proxy, "/", "mallory").await;

    assert_eq!(
        alice
            .get(format!("{base}/admin/x"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = bob
        .get(format!("{base}/admin/x"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("admins"),
        "the 403 page names what was required"
    );
    assert!(
        !page.contains("staff"),
        "the 403 page does not list the user's own groups"
    );
    // Email domain: alice@example.com verified passes; bob@other.org fails; mallory@example.com
    // is unverified and fails.
    assert_eq!(
        alice
            .get(format!("{base}/corp/x"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        bob.get(format!("{base}/corp/x"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        mallory
            .get(format!("{base}/corp/x"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    // XHR gets JSON.
    let r = bob
        .get(format!("{base}/admin/x"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["error"], "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_access_token_is_refreshed_once() {
    setup();
    // Access tokens live 2 s at the IdP.
    let s = Stack::start_with(2, "", json!({})).await;
    let base = &s.proxy.base;
    let c = client();
    login(&c, &s.proxy, "/", "alice").await;
    let v1 = echoed(c.get(format!("{base}/x")).send().await.unwrap()).await;
    let at1 = header(&v1, "x-amzn-oidc-accesstoken").unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let r = c.get(format!("{base}/x")).send().await.unwrap();
    let refreshed: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        refreshed
            .iter()
            .any(|c| c.starts_with("AWSELBAuthSessionCookie-0=") && !c.contains("Max-Age=0")),
        "refresh re-issues the session cookie: {refreshed:?}"
    );
    let v2 = echoed(r).await;
    let at2 = header(&v2, "x-amzn-oidc-accesstoken").unwrap().to_string();
    assert_ne!(at1, at2, "a new access token after refresh");
    assert_eq!(header(&v2, "x-amzn-oidc-identity"), Some("alice"));
    // The new cookie works without another refresh.
    let r = c.get(format!("{base}/x")).send().await.unwrap();
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(
        echoed(r).await["headers"]["x-amzn-oidc-accesstoken"][0],
        at2.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_refresh_is_no_session() {
    setup();
    let s = Stack::start_with(2, "", json!({})).await;
    let base = &s.proxy.base;
    let c = client();
    login(&c, &s.proxy, "/", "alice").await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    s.idp.set_down(true).await;
    let r = c
        .get(format!("{base}/x"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    // Refresh failed: no session, so the route's authenticate applies (IdP is down → 302 still
    // needs only the cached discovery).
    assert_eq!(r.status(), 302, "{}", r.status());
    s.idp.set_down(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_clears_every_shard_and_logs_out_at_the_idp() {
    setup();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    let c = client();
    login(&c, &s.proxy, "/", "alice").await;
    let r = c
        .get(format!("{base}/oauth2/sign_out?rd=/bye"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let cleared: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    for i in 0..4 {
        assert!(
            cleared
                .iter()
                .any(|c| c.starts_with(&format!("AWSELBAuthSessionCookie-{i}=;"))
                    && c.contains("Max-Age=0")),
            "{cleared:?}"
        );
    }
    let loc = reqwest::Url::parse(&location(&r)).unwrap();
    assert!(
        loc.as_str().starts_with(&s.idp.issuer),
        "RP-initiated logout at the IdP: {loc}"
    );
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert!(q.contains_key("id_token_hint"));
    assert_eq!(q["post_logout_redirect_uri"], format!("{base}/bye"));
    // The session is gone from the browser.
    let r = c
        .get(format!("{base}/x"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(location(&r).starts_with(&s.idp.issuer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_tabs_can_sign_in_at_once() {
    setup();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    let c = client();
    let tab1 = c
        .get(format!("{base}/one"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    let tab2 = c
        .get(format!("{base}/two"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    // Finish tab 2 first, then tab 1: each returns to its own page.
    let cb2 = complete_login(&c, tab2, "alice").await;
    assert_eq!(location(&cb2), "/two");
    let cb1 = complete_login(&c, tab1, "alice").await;
    assert_eq!(location(&cb1), "/one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_state_and_expired_login_window_get_401_start_again() {
    setup();
    let s = Stack::start_with(3600, "login_window = \"2s\"", json!({})).await;
    let base = &s.proxy.base;
    let c = client();
    for q in [
        "",
        "?code=abc",
        "?code=abc&state=00112233445566778899aabbccddeeff",
        "?state=zz",
    ] {
        let r = c
            .get(format!("{base}/oauth2/idpresponse{q}"))
            .header("accept", HTML)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{q}");
        assert!(r.text().await.unwrap().contains("Start again"));
    }
    // A login that takes longer than the window.
    let start = c
        .get(format!("{base}/slowpoke"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    let loc = location(&start);
    tokio::time::sleep(Duration::from_millis(2600)).await;
    // The browser may still send the cookie (clock skew); the sealed creation time decides.
    let cb = complete_login(&c, start_from(loc), "alice").await;
    assert_eq!(cb.status(), 401);
}

/// Re-wraps a Location so `complete_login` can continue from it.
fn start_from(loc: String) -> reqwest::Response {
    let resp = http::Response::builder()
        .status(302)
        .header("location", loc)
        .body("")
        .unwrap();
    reqwest::Response::from(resp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_error_at_callback_is_561() {
    setup();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    let c = client();
    let start = c
        .get(format!("{base}/x"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    let loc = reqwest::Url::parse(&location(&start)).unwrap();
    let state = loc
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    let r = c
        .get(format!(
            "{base}/oauth2/idpresponse?error=access_denied&state={state}"
        ))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 561);
    assert!(r.text().await.unwrap().contains("access_denied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_down_during_token_exchange_is_502() {
    setup();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    let c = client();
    let start = c
        .get(format!("{base}/x"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    // Walk the IdP part and stop before the callback.
    let callback =
        walk_to_callback(&c, reqwest::Url::parse(&location(&start)).unwrap(), "alice").await;
    s.idp.set_down(true).await;
    let r = c.get(callback).header("accept", HTML).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(text.contains("Request id"), "{text}");
    s.idp.set_down(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_too_large_for_four_shards_is_a_clear_500() {
    setup();
    let s = Stack::start().await;
    let c = client();
    let cb = login(&c, &s.proxy, "/", "big").await;
    assert_eq!(cb.status(), 500);
    let text = cb.text().await.unwrap();
    assert!(
        text.contains("too large") && text.contains("redis"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_truncated_reordered_and_foreign_cookies_are_no_session() {
    setup();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    let c = client();
    let cb = login(&c, &s.proxy, "/", "medium").await;
    assert_eq!(cb.status(), 302, "medium account signs in");
    let shards: Vec<(String, String)> = cb
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .filter(|p| p.starts_with("AWSELBAuthSessionCookie-") && !p.ends_with('='))
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap();
            (n.to_string(), v.to_string())
        })
        .collect();
    assert!(
        shards.len() >= 2,
        "the medium account needs several shards, got {}",
        shards.len()
    );
    let send = |cookie: String| {
        let base = base.clone();
        async move {
            bare_client()
                .get(format!("{base}/x"))
                .header("accept", HTML)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let join = |list: &[(String, String)]| {
        list.iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    assert_eq!(send(join(&shards)).await, 200, "the untouched cookie works");
    // Tampered.
    let mut t = shards.clone();
    let mut chars: Vec<char> = t[0].1.chars().collect();
    chars[40] = if chars[40] == 'A' { 'B' } else { 'A' };
    t[0].1 = chars.into_iter().collect();
    assert_eq!(send(join(&t)).await, 302);
    // Truncated: last shard missing; and a shard cut short.
    assert_eq!(send(join(&shards[..shards.len() - 1])).await, 302);
    let mut cut = shards.clone();
    cut[0].1.truncate(100);
    assert_eq!(send(join(&cut)).await, 302);
    // Reordered: shard values swapped.
    let mut r = shards.clone();
    let v0 = r[0].1.clone();
    r[0].1 = r[1].1.clone();
    r[1].1 = v0;
    assert_eq!(send(join(&r)).await, 302);
    // Garbage.
    assert_eq!(
        send("AWSELBAuthSessionCookie-0=%%%not-base64".into()).await,
        302
    );
    assert_eq!(send("AWSELBAuthSessionCookie-0=".into()).await, 302);
    // Foreign: sealed by another deployment's secret.
    let (port, admin) = Proxy::ports();
    let other_cfg = config(port, admin, &s.idp.issuer, &s.echo.url(), "", &s.static_dir)
        .replace(SECRET, "another-secret-another-secret-another-secret");
    let other = Proxy::start(port, admin, &other_cfg).await;
    let r = bare_client()
        .get(format!("{}/x", other.base))
        .header("accept", HTML)
        .header("cookie", join(&shards))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_a_full_login_hold_no_secrets() {
    setup();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    let c = client();
    let start = c
        .get(format!("{base}/x"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    let cb = complete_login(&c, start, "alice").await;
    let code = reqwest::Url::parse(cb.url().as_str())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    let cookies: Vec<String> = cb
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| {
            v.to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .split_once('=')
                .unwrap()
                .1
                .to_string()
        })
        .filter(|v| v.len() > 8)
        .collect();
    let v = echoed(c.get(format!("{base}/x")).send().await.unwrap()).await;
    let token = header(&v, "x-amzn-oidc-accesstoken").unwrap().to_string();
    let data = header(&v, "x-amzn-oidc-data").unwrap().to_string();
    c.get(format!("{base}/oauth2/sign_out"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = s.proxy.logs();
    assert!(
        logs.contains("sign-in completed"),
        "debug logs were captured: {logs}"
    );
    for secret in [
        code.as_str(),
        token.as_str(),
        data.as_str(),
        SECRET,
        CLIENT_SECRET,
    ] {
        assert!(!logs.contains(secret), "a secret appeared in the logs");
    }
    for cookie in &cookies {
        assert!(
            !logs.contains(&cookie[..cookie.len().min(40)]),
            "a cookie value appeared in the logs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_signed_with_each_supported_algorithm_verify() {
    setup();
    for alg in ["RS256", "PS256", "ES256", "EdDSA"] {
        let s = Stack::start_with(3600, "", json!({"id_token_signed_response_alg": alg})).await;
        let c = client();
        let cb = login(&c, &s.proxy, "/", "alice").await;
        assert_eq!(cb.status(), 302, "{alg}: {}", s.proxy.logs());
        let v = echoed(c.get(format!("{}/x", s.proxy.base)).send().await.unwrap()).await;
        assert_eq!(header(&v, "x-amzn-oidc-identity"), Some("alice"), "{alg}");
        // The fast path (src/auth/jws.rs) took this real IdP's token and JWKS.
        assert!(
            s.proxy
                .logs()
                .contains("ID token signature verified with ring"),
            "{alg}: {}",
            s.proxy.logs()
        );
    }
}

/// OIDC Core 3.1.3.7 / RFC 8725 §3.1: an HMAC-signed ID token (keyed with the client secret, or
/// a public key misused as one) is never accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_signed_id_tokens_are_refused() {
    setup();
    let s = Stack::start_with(3600, "", json!({"id_token_signed_response_alg": "HS256"})).await;
    let c = client();
    let cb = login(&c, &s.proxy, "/", "alice").await;
    assert_eq!(
        cb.status(),
        502,
        "an HS256 ID token must not create a session"
    );
    let r = c
        .get(format!("{}/x", s.proxy.base))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
}

/// Key rotation at the IdP: a token signed with a kid unknown since discovery triggers one JWKS
/// refetch, after which it verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_after_key_rotation_refetches_the_jwks() {
    setup();
    let s = Stack::start().await;
    let first = client();
    assert_eq!(login(&first, &s.proxy, "/", "alice").await.status(), 302);
    let r = reqwest::Client::new()
        .post(format!("{}/__test/rotate-keys", s.idp.issuer))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let second = client();
    let cb = login(&second, &s.proxy, "/", "bob").await;
    assert_eq!(cb.status(), 302, "{}", s.proxy.logs());
    assert!(s.proxy.logs().contains("JWKS refetched"));
}
