//! The account home at `{issuer}/account`: only for a signed-in user (others go to the sign-in
//! page and come back), every form CSRF-checked, profile edits, an email change verified by a
//! code before it replaces the old address (and refused for an address another user holds
//! verified), sessions listed and ended one by one or all others (the other browser's pool
//! and proxy sessions end; another user's session cannot be named), unlinking the last way to
//! sign in refused, `rd` checked like every redirect, and deleting the account ending every
//! session and token.

mod pool_support;

use pool_support::*;
use serde_json::Value;

const SECRET: &str = "app-secret-0123456789";
const EXTRA: &str = "signup_attributes = [\"name\", \"phone_number\"]\n\
[[pool.clients]]\nclient_id = \"app\"\nclient_secret = \"app-secret-0123456789\"\n\
redirect_uris = [\"http://127.0.0.1:9/cb\"]\n";

const FORMS: &[&str] = &[
    "/account/profile",
    "/account/verify-email",
    "/account/passkeys/rename",
    "/account/passkeys/remove",
    "/account/sessions/end",
    "/account/sessions/end-others",
    "/account/providers/unlink",
    "/account/delete",
    "/account/password/code",
    "/account/password/set",
];

/// A browser signed in to the pool as `user` (created with [`PASSWORD`]).
async fn signed_in(s: &Server, user: &str, ua: &str) -> reqwest::Client {
    let c = browser();
    let page = c
        .get(s.url("/oauth2/pool/login"))
        .header("user-agent", ua)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (action, csrf) = form(&page, &s.base, "/login");
    let r = c
        .post(action)
        .header("user-agent", ua)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", user),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "sign-in failed");
    c
}

/// A browser signed in to the app through the proxy (and so to the pool) as `user`.
async fn signed_in_to_app(s: &Server, user: &str) -> reqwest::Client {
    let c = browser();
    let (r, hops) = follow(&c, &s.base, s.url("/app")).await;
    assert_eq!(r.status(), 200);
    let login = hops.last().unwrap().clone();
    let r = sign_in(&c, s, &login, user, PASSWORD).await;
    assert_eq!(r.status(), 302);
    let (r, _) = follow(&c, &s.base, absolute(&s.base, &location(&r))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(proxy_status(&c, s).await, 200);
    c
}

async fn proxy_status(c: &reqwest::Client, s: &Server) -> u16 {
    c.get(s.url("/oauth2/userinfo"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn home(c: &reqwest::Client, s: &Server) -> String {
    let (status, html) = get_page(c, &s.url("/oauth2/pool/account")).await;
    assert_eq!(status, 200, "{html}");
    html
}

/// Where an account request of this browser goes when it is not signed in.
async fn is_signed_out(c: &reqwest::Client, s: &Server) -> bool {
    let r = c.get(s.url("/oauth2/pool/account")).send().await.unwrap();
    r.status() == 302 && location(&r).ends_with("/oauth2/pool/login")
}

/// The `value` of every hidden `session` field, in page order.
fn session_ids(html: &str) -> Vec<String> {
    html.split("name=\"session\" value=\"")
        .skip(1)
        .map(|v| v.split('"').next().unwrap().to_string())
        .collect()
}

/// A token request of the `app` client: (status, JSON).
async fn token(s: &Server, form: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(s.url("/oauth2/pool/token"))
        .basic_auth("app", Some(SECRET))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json::<Value>().await.unwrap())
}

/// Posts the form of `html` whose action contains `part`, confirmed (`confirm=yes`).
async fn confirmed(
    c: &reqwest::Client,
    s: &Server,
    html: &str,
    part: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut all = vec![("confirm", "yes")];
    all.extend_from_slice(fields);
    submit_form(c, &s.base, html, part, &all).await
}

fn sub_of(s: &Server, user: &str) -> String {
    let (ok, out, err) = s.cli(&["users", "show", user]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["sub"].as_str().unwrap().to_string()
}

async fn anonymous_browsers_sign_in_first_and_every_form_needs_csrf(backend: Backend) {
    let s = Server::start(backend, EXTRA).await;
    create_user(&s, "dave", "dave@example.com");
    let anon = browser();
    // Anonymous: every account page and form goes to the sign-in page, nothing else.
    let r = anon
        .get(s.url("/oauth2/pool/account"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(location(&r).ends_with("/oauth2/pool/login"));
    for path in FORMS {
        let r = anon
            .post(s.url(&format!("/oauth2/pool{path}")))
            .form(&[("csrf_token", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "{path}");
        assert!(location(&r).ends_with("/oauth2/pool/login"), "{path}");
    }
    // A client that asks for JSON gets the error as JSON, with the request id.
    let r = reqwest::Client::new()
        .get(s.url("/oauth2/pool/account"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "sign_in_required", "{v}");
    assert!(
        v["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{v}"
    );
    // Signing in from there comes back to the account home.
    let r = sign_in(&anon, &s, &s.url("/oauth2/pool/login"), "dave", PASSWORD).await;
    assert_eq!(r.status(), 302);
    assert!(
        location(&r).ends_with("/oauth2/pool/account"),
        "{}",
        location(&r)
    );
    let html = home(&anon, &s).await;
    assert!(html.contains("dave@example.com"), "{html}");
    // Signed in: a form without its CSRF token, or with a wrong one, is refused (403) and
    // changes nothing.
    for path in FORMS {
        for token in [None, Some("0".repeat(40))] {
            let mut fields = vec![("name", "Mallory".to_string()), ("confirm", "yes".into())];
            if let Some(t) = &token {
                fields.push(("csrf_token", t.clone()));
            }
            let r = anon
                .post(s.url(&format!("/oauth2/pool{path}")))
                .form(&fields)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{path} with token {token:?}");
        }
    }
    assert!(!home(&anon, &s).await.contains("Mallory"));
    assert!(s.cli(&["users", "show", "dave"]).0, "dave still exists");
}
on_both!(
    anonymous_and_csrf,
    anonymous_browsers_sign_in_first_and_every_form_needs_csrf
);

async fn profile_and_email_change(backend: Backend) {
    let s = Server::start(backend, EXTRA).await;
    create_user(&s, "erin", "erin@example.com");
    create_user(&s, "frank", "frank@example.com");
    let c = signed_in(&s, "erin", "test").await;
    let html = home(&c, &s).await;
    // Profile: the sign-up attributes, by label, with a phone number in national form.
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/account/profile",
        &[
            ("name", "Erin Example"),
            ("phone_number", "+81 90 1234 5678"),
        ],
    )
    .await;
    assert_eq!(r.status(), 302);
    assert!(location(&r).contains("notice=acct_profile_saved"));
    let html = home(&c, &s).await;
    assert!(html.contains("value=\"Erin Example\""), "{html}");
    assert!(html.contains("+819012345678"), "{html}");
    // A bad phone number: the page again with the problem, nothing saved.
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/account/profile",
        &[("name", "Erin Two"), ("phone_number", "12")],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(!home(&c, &s).await.contains("Erin Two"));

    // An address another user holds verified is refused at once.
    let html = home(&c, &s).await;
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/account/profile",
        &[("name", "Erin Example"), ("email", "FRANK@example.com")],
    )
    .await;
    assert_eq!(r.status(), 409);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Another account already uses")
    );

    // A new address waits for its code; the old one stays until then.
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/account/profile",
        &[("name", "Erin Example"), ("email", "erin@new.example")],
    )
    .await;
    assert_eq!(r.status(), 302);
    assert!(location(&r).contains("notice=acct_email_code_sent"));
    let html = home(&c, &s).await;
    assert!(html.contains("<strong>erin@example.com</strong>"), "{html}");
    let (ok, out, _) = s.cli(&["users", "show", "erin"]);
    assert!(ok && out.contains("erin@example.com") && !out.contains("erin@new.example"));
    // A wrong code: refused, the address unchanged.
    let code = s.code_for("erin", "email_change");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/account/verify-email",
        &[("code", wrong)],
    )
    .await;
    assert_eq!(r.status(), 400);
    // The right code: the new address, verified; sign-in by it works, by the old one not.
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/account/verify-email",
        &[("code", &code)],
    )
    .await;
    assert_eq!(r.status(), 302);
    assert!(location(&r).contains("notice=acct_email_changed"));
    let (_, out, _) = s.cli(&["users", "show", "erin"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["attributes"]["email"], "erin@new.example", "{v}");
    assert_eq!(v["attributes"]["email_verified"], true, "{v}");
    let other = browser();
    let r = sign_in(
        &other,
        &s,
        &s.url("/oauth2/pool/login"),
        "erin@new.example",
        PASSWORD,
    )
    .await;
    assert_eq!(r.status(), 200);
    let other = browser();
    let r = sign_in(
        &other,
        &s,
        &s.url("/oauth2/pool/login"),
        "erin@example.com",
        PASSWORD,
    )
    .await;
    assert_ne!(r.status(), 200);

    // The code cannot be used twice, and frank cannot take erin's new address either.
    let f = signed_in(&s, "frank", "test").await;
    let html = home(&f, &s).await;
    let r = submit_form(
        &f,
        &s.base,
        &html,
        "/account/profile",
        &[("email", "erin@new.example")],
    )
    .await;
    assert_eq!(r.status(), 409);
}
on_both!(profile_email, profile_and_email_change);

async fn sessions_are_listed_and_ended_only_by_their_owner(backend: Backend) {
    let s = Server::start(backend, EXTRA).await;
    create_user(&s, "gina", "gina@example.com");
    create_user(&s, "hank", "hank@example.com");
    let a = signed_in(&s, "gina", "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0").await;
    let b = signed_in_to_app(&s, "gina").await;
    let h = signed_in(&s, "hank", "test").await;
    let html = home(&a, &s).await;
    assert!(html.contains("Firefox · Linux"), "{html}");
    assert!(
        html.contains("This device") && html.contains("127.0.0.1"),
        "{html}"
    );
    let ids = session_ids(&html);
    assert_eq!(ids.len(), 2, "{html}");

    // hank cannot end gina's sessions (IDOR): 403, and gina's browser B stays signed in.
    let hank_html = home(&h, &s).await;
    for sid in &ids {
        let (action, csrf) = form(&hank_html, &s.base, "/account/sessions/end");
        let r = h
            .post(action)
            .form(&[("csrf_token", csrf.as_str()), ("session", sid.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    assert_eq!(proxy_status(&b, &s).await, 200);
    assert!(!is_signed_out(&b, &s).await);

    // gina ends browser B's session from A: B's next requests — the pool's and the app's — are
    // signed out; A stays.
    let b_html = home(&b, &s).await;
    let b_sid = b_html
        .split("This device")
        .nth(1)
        .and_then(|tail| session_ids(tail).first().cloned())
        .expect("B's own session in B's list");
    let (action, csrf) = form(&html, &s.base, "/account/sessions/end");
    let r = a
        .post(action)
        .form(&[("csrf_token", csrf.as_str()), ("session", b_sid.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(location(&r).contains("notice=acct_session_ended"));
    assert!(is_signed_out(&b, &s).await);
    assert_eq!(proxy_status(&b, &s).await, 401);
    assert!(!is_signed_out(&a, &s).await);

    // "Sign out all other devices": two more browsers end, A and hank stay.
    let c1 = signed_in_to_app(&s, "gina").await;
    let c2 = signed_in(&s, "gina", "test").await;
    let html = home(&a, &s).await;
    assert_eq!(session_ids(&html).len(), 3);
    let r = submit_form(&a, &s.base, &html, "/account/sessions/end-others", &[]).await;
    assert_eq!(r.status(), 302);
    assert!(is_signed_out(&c1, &s).await && is_signed_out(&c2, &s).await);
    assert_eq!(proxy_status(&c1, &s).await, 401);
    assert!(!is_signed_out(&a, &s).await && !is_signed_out(&h, &s).await);
    assert_eq!(session_ids(&home(&a, &s).await).len(), 1);
}
on_both!(sessions, sessions_are_listed_and_ended_only_by_their_owner);

async fn rd_back_to_the_app_is_checked(backend: Backend) {
    let s = Server::start(backend, EXTRA).await;
    create_user(&s, "ivy", "ivy@example.com");
    let c = signed_in(&s, "ivy", "test").await;
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/account?rd=%2Fapp%3Fx%3D1")).await;
    let back = format!("href=\"{}/app?x=1\"", s.base);
    assert!(unescape(&html).contains(&back), "{html}");
    // Kept for the next account page.
    assert!(unescape(&home(&c, &s).await).contains(&back));
    for evil in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let c = signed_in(&s, "ivy", "test").await;
        let url = format!(
            "/oauth2/pool/account?rd={}",
            url::form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>()
        );
        let (status, html) = get_page(&c, &s.url(&url)).await;
        assert_eq!(status, 200);
        // The language switch links to this same page with its query (the refused `rd`
        // included, checked again there); no other link may carry it.
        let html = match (
            html.find("<nav class=\"lang-switch\""),
            html.rfind("</nav>"),
        ) {
            (Some(a), Some(b)) if a < b => format!("{}{}", &html[..a], &html[b..]),
            _ => html,
        };
        assert!(!unescape(&html).contains("evil.example"), "{evil}: {html}");
        assert!(!html.contains("javascript:"), "{evil}");
    }
}
on_both!(rd, rd_back_to_the_app_is_checked);

async fn the_last_way_to_sign_in_cannot_be_unlinked(backend: Backend) {
    let s = Server::start(
        backend,
        &format!(
            "{EXTRA}[[pool.identity_providers]]\nname = \"social\"\ndisplay_name = \"Social\"\n\
             issuer = \"http://127.0.0.1:9\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"
        ),
    )
    .await;
    create_user(&s, "jack", "jack@example.com");
    let sub = sub_of(&s, "jack");
    let db = s.database().await;
    sqlx::query("INSERT INTO federated_identities (provider, provider_sub, sub, created_at) VALUES ('social', 'j-1', $1, 0)")
        .bind(&sub)
        .execute(&db)
        .await
        .unwrap();
    let c = signed_in(&s, "jack", "test").await;
    // With a password, the link may go (after confirming).
    let html = home(&c, &s).await;
    assert!(html.contains("Social"), "{html}");
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/account/providers/unlink",
        &[("provider", "social")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let confirm = r.text().await.unwrap();
    assert!(confirm.contains("Unlink Social?"), "{confirm}");
    // Someone else's provider name: refused.
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/account/providers/unlink",
        &[("provider", "other")],
    )
    .await;
    assert_eq!(r.status(), 403);

    // Without a password (a provider-only user), the only link is the last way in: refused.
    sqlx::query("UPDATE users SET password_hash = '' WHERE sub = $1")
        .bind(&sub)
        .execute(&db)
        .await
        .unwrap();
    let r = confirmed(
        &c,
        &s,
        &confirm,
        "/account/providers/unlink",
        &[("provider", "social")],
    )
    .await;
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("last way to sign in"));
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM federated_identities WHERE sub = $1")
        .bind(&sub)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(n, 1);
    // Nor may it delete the account without a fresh provider sign-in.
    let html = home(&c, &s).await;
    assert!(html.contains("Sign in again with Social"), "{html}");
    let r = confirmed(&c, &s, &html, "/account/delete", &[]).await;
    assert_eq!(r.status(), 403);
    assert!(s.cli(&["users", "show", "jack"]).0);
}
on_both!(unlink_last, the_last_way_to_sign_in_cannot_be_unlinked);

async fn deleting_the_account_ends_every_session_and_token(backend: Backend) {
    let s = Server::start(backend, EXTRA).await;
    create_user(&s, "kate", "kate@example.com");
    create_user(&s, "liam", "liam@example.com");
    let app = signed_in_to_app(&s, "kate").await;
    let c = signed_in(&s, "kate", "test").await;
    let l = signed_in(&s, "liam", "test").await;
    // A refresh token of another client, from kate's pool session.
    let r = c
        .get(s.url("/oauth2/pool/authorize?response_type=code&client_id=app&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=openid&state=st&nonce=nn"))
        .send()
        .await
        .unwrap();
    let loc = url::Url::parse(&location(&r)).unwrap();
    let code = loc
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let (status, t) = token(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{t}");
    let refresh = t["refresh_token"].as_str().unwrap().to_string();

    // Asked to confirm first; a wrong password deletes nothing.
    let html = home(&c, &s).await;
    let r = submit_form(&c, &s.base, &html, "/account/delete", &[]).await;
    assert_eq!(r.status(), 200);
    let confirm = r.text().await.unwrap();
    assert!(confirm.contains("name=\"password\""), "{confirm}");
    let r = confirmed(
        &c,
        &s,
        &confirm,
        "/account/delete",
        &[("password", "wrong-password-1")],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(s.cli(&["users", "show", "kate"]).0);
    // With the password: gone.
    let r = confirmed(
        &c,
        &s,
        &confirm,
        "/account/delete",
        &[("password", PASSWORD)],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Your account was deleted"));
    assert!(!s.cli(&["users", "show", "kate"]).0, "kate is gone");
    // The deletion is in the audit log, by kate, after she is gone.
    let (ok, out, err) = s.cli(&["audit", "--json"]);
    assert!(ok, "{err}");
    let log: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert!(
        log.iter()
            .any(|e| e["action"] == "delete_account" && e["target"] == "kate"),
        "{out}"
    );
    // Old cookies and tokens are refused everywhere.
    assert!(is_signed_out(&c, &s).await && is_signed_out(&app, &s).await);
    assert_eq!(proxy_status(&app, &s).await, 401);
    let (status, t) = token(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ],
    )
    .await;
    assert_eq!(status, 400, "{t}");
    // Other users are untouched.
    assert!(!is_signed_out(&l, &s).await);
}
on_both!(delete, deleting_the_account_ends_every_session_and_token);

async fn japanese_pages(backend: Backend) {
    let s = Server::start(backend, EXTRA).await;
    create_user(&s, "mia", "mia@example.com");
    let c = browser_lang("ja");
    let r = sign_in(&c, &s, &s.url("/oauth2/pool/login"), "mia", PASSWORD).await;
    assert_eq!(r.status(), 200);
    let (status, html) = get_page(&c, &s.url("/oauth2/pool/account")).await;
    assert_eq!(status, 200);
    for ja in [
        "アカウント",
        "プロフィール",
        "サインイン中の端末",
        "アカウントを削除",
    ] {
        assert!(html.contains(ja), "{ja}: {html}");
    }
}
on_both!(japanese, japanese_pages);

/// The pool session of a pool whose routes sign in through it lasts as long as the proxy's
/// session (`session.timeout`, 7 days by default) though `pool.session_timeout` is 1 hour: a
/// user signed in to the app is still signed in on the account and factor pages.
async fn the_pool_session_lasts_as_long_as_the_apps(backend: Backend) {
    let s = Server::start(backend, "session_timeout = \"1h\"\n").await;
    create_user(&s, "nora", "nora@example.com");
    let c = browser();
    let r = sign_in(&c, &s, &s.url("/oauth2/pool/login"), "nora", PASSWORD).await;
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("portcullis_pool_session="))
        .expect("a pool session cookie")
        .to_string();
    assert!(cookie.contains("Max-Age=604800"), "{cookie}");
    let db = s.database().await;
    let (auth, exp): (i64, i64) = sqlx::query_as("SELECT auth_time, expires_at FROM web_sessions")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(exp - auth, 7 * 86400);
}
on_both!(lifetime, the_pool_session_lasts_as_long_as_the_apps);

/// A user without a password (signed in through a provider) sets one with a code sent to their
/// verified address — never through "forgot password" — and then signs in with it; a user who
/// has a password cannot use this way.
async fn a_password_is_set_only_with_a_code_to_the_verified_address(backend: Backend) {
    let s = Server::start(backend, EXTRA).await;
    create_user(&s, "olga", "olga@example.com");
    create_user(&s, "pete", "pete@example.com");
    let sub = sub_of(&s, "olga");
    let c = signed_in(&s, "olga", "test").await;
    let p = signed_in(&s, "pete", "test").await;
    let db = s.database().await;
    sqlx::query("UPDATE users SET password_hash = '' WHERE sub = $1")
        .bind(&sub)
        .execute(&db)
        .await
        .unwrap();
    let html = home(&c, &s).await;
    assert!(html.contains("/account/password/set"), "{html}");
    // Without a code: refused, no password.
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/account/password/set",
        &[("code", "123456"), ("new_password", "Another-Horse-8")],
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = submit_form(&c, &s.base, &html, "/account/password/code", &[]).await;
    assert_eq!(r.status(), 302);
    let code = s.code_for("olga", "set_password");
    // A weak password: every rule named, the code kept for the next try.
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/account/password/set",
        &[("code", &code), ("new_password", "short")],
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/account/password/set",
        &[("code", &code), ("new_password", "Another-Horse-8")],
    )
    .await;
    assert_eq!(r.status(), 302);
    assert!(location(&r).contains("notice=acct_password_set"));
    let fresh = browser();
    let r = sign_in(
        &fresh,
        &s,
        &s.url("/oauth2/pool/login"),
        "olga",
        "Another-Horse-8",
    )
    .await;
    assert_eq!(r.status(), 200);
    // Someone with a password cannot set one here (change password asks for the current one).
    let html = home(&p, &s).await;
    assert!(!html.contains("/account/password/set"));
    let (action, csrf) = form(&html, &s.base, "/account/profile");
    let action = action.replace("/account/profile", "/account/password/code");
    let r = p
        .post(action)
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}
on_both!(
    set_password,
    a_password_is_set_only_with_a_code_to_the_verified_address
);
