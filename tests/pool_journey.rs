//! The whole journey through the real binary: an unauthenticated request → the pool's sign-in
//! page → sign up → confirm with the code from the log → sign in → the upstream receives the
//! identity headers → sign out ends both the proxy's and the pool's sessions.

mod pool_support;

use pool_support::*;

async fn sign_up_confirm_sign_in_sign_out(backend: Backend) {
    let s = Server::start(backend, "").await;
    let c = browser();

    let (r, hops) = follow(&c, &s.base, s.url("/hello?x=1")).await;
    assert!(
        hops[0].starts_with(&s.url("/oauth2/pool/authorize?")),
        "{hops:?}"
    );
    assert!(
        hops.last()
            .unwrap()
            .starts_with(&s.url("/oauth2/pool/login?req=")),
        "{hops:?}"
    );
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let login_html = r.text().await.unwrap();
    assert!(
        login_html.contains("name=\"username\"")
            && login_html.contains("name=\"password\"")
            && login_html.contains("name=\"csrf_token\"")
    );
    assert!(
        !login_html.contains("<script"),
        "hosted pages need no JavaScript"
    );

    let confirm_url = sign_up(&c, &s, &login_html, "Alice", "alice@example.com").await;
    assert!(
        confirm_url.contains("/oauth2/pool/confirm?username=alice"),
        "{confirm_url}"
    );
    // Confirmed on another device (the code typed elsewhere): that browser did not choose
    // the password, so it is sent to sign in, still carrying the app's request.
    let login_url = confirm(&browser(), &s, &confirm_url, "alice").await;
    assert!(
        login_url.contains("notice=confirmed") && login_url.contains("req="),
        "{login_url}"
    );
    let notice = c
        .get(&login_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(notice.contains("Your account is confirmed"), "{notice}");

    // Sign in with the full-width spelling of the name: the same user.
    let r = sign_in(&c, &s, &login_url, "ＡＬＩＣＥ", PASSWORD).await;
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
    let to = location(&r);
    assert!(to.starts_with(&s.url("/oauth2/idpresponse?code=")), "{to}");
    assert!(to.contains("&iss="), "RFC 9207 iss parameter: {to}");
    let auth_code = url::Url::parse(&to)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();

    let (r, hops) = follow(&c, &s.base, to).await;
    assert_eq!(hops, vec![s.url("/hello?x=1")]);
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    let h = &echo["headers"];
    assert_eq!(echo["path"], "/hello?x=1");
    assert_eq!(h["x-forwarded-email"], "alice@example.com");
    assert_eq!(h["x-forwarded-preferred-username"], "alice");
    let sub = h["x-amzn-oidc-identity"].as_str().unwrap();
    assert_eq!(sub.len(), 36, "sub is a UUID: {sub}");
    assert!(h["x-amzn-oidc-data"].as_str().unwrap().split('.').count() == 3);
    let access_token = h["x-amzn-oidc-accesstoken"].as_str().unwrap().to_string();
    assert!(
        h["x-amzn-oidc-accesstoken"]
            .as_str()
            .unwrap()
            .starts_with("ey")
    );

    let info: serde_json::Value = c
        .get(s.url("/oauth2/userinfo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], sub);
    assert_eq!(info["email_verified"], true);
    assert_eq!(info["claims"]["cognito:username"], "alice");

    // Sign out: the proxy clears its cookies and sends us to the pool's end-session endpoint,
    // which ends the pool session and returns to the site, which needs a sign-in again.
    let r = c
        .get(s.url("/oauth2/sign_out?rd=/bye"))
        .send()
        .await
        .unwrap();
    let to = location(&r);
    assert!(to.starts_with(&s.url("/oauth2/pool/logout?")), "{to}");
    let (r, hops) = follow(&c, &s.base, to).await;
    assert_eq!(hops[0], s.url("/bye"), "{hops:?}");
    assert!(
        hops.last().unwrap().contains("/oauth2/pool/login?req="),
        "signed out of the pool too: {hops:?}"
    );
    assert!(r.text().await.unwrap().contains("name=\"password\""));

    // The log never carries the password, a token or a cookie (only the labelled dev code line).
    let log = s.log_text();
    assert!(!log.contains(PASSWORD), "password in the log");
    assert!(!log.contains(&auth_code), "authorization code in the log");
    assert!(!log.contains(&access_token), "access token in the log");
    assert!(
        !log.contains(&access_token[access_token.len() - 43..]),
        "token signature in the log"
    );
    assert!(
        !log.contains("portcullis_pool_session="),
        "cookie in the log"
    );
}
on_both!(journey, sign_up_confirm_sign_in_sign_out);

async fn japanese_browser_gets_japanese_pages(backend: Backend) {
    let s = Server::start(backend, "").await;
    let c = browser_lang("ja-JP,ja;q=0.9,en;q=0.8");
    let (r, _) = follow(&c, &s.base, s.url("/")).await;
    let html = r.text().await.unwrap();
    assert!(
        html.contains("<html lang=\"ja\">")
            && html.contains("サインイン")
            && html.contains("パスワード"),
        "{html}"
    );
    let r = sign_in(&c, &s, &s.url("/oauth2/pool/login"), "nobody", "wrong").await;
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("ユーザー名またはパスワードが正しくありません。")
    );
}
on_both!(japanese, japanese_browser_gets_japanese_pages);

/// The pool on its own host name (`pool.public_url`): the issuer, its pages and cookies live
/// there, the proxy's callback stays on the public URL.
async fn pool_on_its_own_host_name(backend: Backend) {
    let s = Server::start_with(backend, "", true).await;
    let pool_origin = s.base.replace("127.0.0.1", "127.0.0.2");
    create_user(&s, "sam", "sam@example.com");
    let c = browser();
    let (r, hops) = follow(&c, &s.base, s.url("/x")).await;
    assert!(
        hops[0].starts_with(&format!("{pool_origin}/oauth2/pool/authorize?")),
        "{hops:?}"
    );
    let login_url = r.url().to_string();
    assert!(login_url.starts_with(&format!("{pool_origin}/oauth2/pool/login?req=")));
    let d: serde_json::Value = reqwest::get(format!(
        "{pool_origin}/oauth2/pool/.well-known/openid-configuration"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(d["issuer"], format!("{pool_origin}/oauth2/pool"));
    let page = c
        .get(&login_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (action, csrf) = form(&page, &pool_origin, "/login");
    let r = c
        .post(action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "sam"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    let to = location(&r);
    assert!(to.starts_with(&s.url("/oauth2/idpresponse?code=")), "{to}");
    let (r, _) = follow(&c, &s.base, to).await;
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["x-forwarded-email"], "sam@example.com");
}
on_both!(own_host, pool_on_its_own_host_name);

/// From the app's `path`, signs `name` up and types the logged code on the confirm page, in
/// the same browser; the answer to the confirmation.
async fn sign_up_and_confirm_here(
    c: &reqwest::Client,
    s: &Server,
    path: &str,
    name: &str,
) -> reqwest::Response {
    let (r, _) = follow(c, &s.base, s.url(path)).await;
    let login_html = r.text().await.unwrap();
    let email = format!("{name}@example.com");
    let confirm_url = sign_up(c, s, &login_html, name, &email).await;
    let (_, page) = get_page(c, &confirm_url).await;
    let code = s.code_for(name, "signup");
    submit_form(
        c,
        &s.base,
        &page,
        "/confirm",
        &[("username", name), ("code", code.as_str())],
    )
    .await
}

/// Sign-up → confirmation in the same browser → signed in on the app it came from, with no
/// extra step (no second password). The browser that signed up is the one that chose the
/// password: only it is signed in this way (another browser: `sign_up_confirm_sign_in_sign_out`).
async fn confirming_in_the_same_browser_lands_on_the_app(backend: Backend) {
    let s = Server::start(backend, "").await;
    let c = browser();
    let r = sign_up_and_confirm_here(&c, &s, "/hello?from=signup", "mia").await;
    assert_eq!(r.status(), 302);
    let to = location(&r);
    assert!(
        to.starts_with(&s.url("/oauth2/idpresponse?code=")),
        "confirmed in the browser that signed up: straight back to the app, got {to}"
    );
    let (r, hops) = follow(&c, &s.base, to).await;
    assert_eq!(
        hops.last().unwrap(),
        &s.url("/hello?from=signup"),
        "{hops:?}"
    );
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert!(
        echo["headers"]["x-amzn-oidc-identity"].as_str().is_some(),
        "{echo}"
    );
}
on_both!(
    confirm_signs_in,
    confirming_in_the_same_browser_lands_on_the_app
);

/// `mfa = "required"`: the confirmation leads through the second factor's set-up, still
/// carrying the app's request.
async fn confirming_with_required_mfa_sets_up_the_factor_first(backend: Backend) {
    let s = Server::start(backend, "mfa = \"required\"").await;
    let r = sign_up_and_confirm_here(&browser(), &s, "/hello", "noa").await;
    let to = location(&r);
    assert!(
        to.contains("/oauth2/pool/mfa/setup?req="),
        "set-up first, carrying the request: {to}"
    );
}
on_both!(
    confirm_required_mfa,
    confirming_with_required_mfa_sets_up_the_factor_first
);
