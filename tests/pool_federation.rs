//! Federation inside the pool (docs/src/pool/federation.md) against the real `oidc-provider` test IdP (tests/idp)
//! as the pool's upstream provider: "Continue with …" → IdP login → back in the pool → the
//! proxied app sees the federated user `{name}_{sub}` with its `identities`; required
//! attributes the IdP did not give are asked for on one page; `link_by_email` links only a
//! verified email; a disabled federated user stays out; forged callbacks (no or foreign state,
//! a wrong nonce in the ID token) are refused.

mod pool_support;

// The proxy tests' harness, for its test IdP; it loads tests/common/ports.rs as pool_support does.
#[path = "proxy/harness.rs"]
#[allow(dead_code, clippy::duplicate_mod)]
mod harness;

use base64::Engine;
use pool_support::*;
use serde_json::{Value, json};

const FED_SECRET: &str = "federation-client-secret-0123";

struct Setup {
    idp: harness::Idp,
    s: Server,
}

/// The IdP (clients "pool-link" and "pool-nolink", both sending users back to the pool's
/// callback) and the pool with two providers over it.
async fn setup(backend: Backend, extra: &str) -> Setup {
    setup_with(backend, extra, false).await
}

/// IdP accounts for the takeover, squatting and `amr` cases (`IDP_ACCOUNTS` of the test IdP).
fn more_accounts() -> Value {
    json!({
        // Two people claiming one address: only the victim's provider verified it.
        "mallory1": {"sub": "mallory1", "email": "victim@corp.example", "email_verified": false, "name": "Mallory"},
        "victim1": {"sub": "victim1", "email": "victim@corp.example", "email_verified": true, "name": "Victim"},
        // No address, but the flag: whatever is typed on the attribute page must not inherit it.
        "noemail": {"sub": "noemail", "email_verified": true, "name": "No Email"},
        // Subjects a squatter can predict, or that differ only by case.
        "Victim-2": {"sub": "Victim-2", "email": "victim2@corp.example", "email_verified": true},
        "victim3": {"sub": "victim3", "email": "victim3@corp.example", "email_verified": true},
        "Case-1": {"sub": "Case-1", "email": "upper@case.example", "email_verified": true},
        "case-1": {"sub": "case-1", "email": "lower@case.example", "email_verified": true},
        // A provider that says how its user signed in (with a password there too: the pool's
        // `amr` never says `pwd` for a federated sign-in).
        "strong": {"sub": "strong", "email": "strong@corp.example", "email_verified": true, "login_amr": ["pwd", "hwk", "mfa"]},
    })
}

/// [`setup`]; with `social`, a third provider "social" (no `link_by_email`) whose mapping
/// passes the email but not `email_verified` (an operator's custom `attribute_mapping`).
async fn setup_with(backend: Backend, extra: &str, social: bool) -> Setup {
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/oauth2/pool/federation/callback");
    let client = |id: &str| {
        json!({
            "client_id": id,
            "client_secret": FED_SECRET,
            "redirect_uris": [callback],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        })
    };
    let accounts = more_accounts().to_string();
    let idp = harness::Idp::start_with_env(
        json!([client("pool-link"), client("pool-nolink")]),
        3600,
        &[("IDP_ACCOUNTS", accounts.as_str())],
    );
    let social = if social {
        format!(
            "[[pool.identity_providers]]\nname = \"social\"\ndisplay_name = \"Social\"\nissuer = \"{i}\"\n\
             client_id = \"pool-nolink\"\nclient_secret = \"{FED_SECRET}\"\n\
             attribute_mapping = {{ email = \"email\", name = \"name\" }}\n",
            i = idp.issuer
        )
    } else {
        String::new()
    };
    let pool_extra = format!(
        "{extra}\n{social}\
         [[pool.identity_providers]]\nname = \"corp\"\ndisplay_name = \"Corp SSO\"\nissuer = \"{i}\"\n\
         client_id = \"pool-link\"\nclient_secret = \"{FED_SECRET}\"\nlink_by_email = true\n\
         attribute_mapping = {{ email = \"email\", email_verified = \"email_verified\", name = \"name\" }}\n\
         [[pool.identity_providers]]\nname = \"other\"\ndisplay_name = \"Other\"\nissuer = \"{i}\"\n\
         client_id = \"pool-nolink\"\nclient_secret = \"{FED_SECRET}\"\n",
        i = idp.issuer
    );
    let s = Server::start_on(backend, &pool_extra, false, port).await;
    Setup { idp, s }
}

/// The value of a hidden form field.
fn hidden(html: &str, name: &str) -> String {
    html.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        .to_string()
}

fn href_of(html: &str, needle: &str) -> String {
    let i = html
        .find(needle)
        .unwrap_or_else(|| panic!("no {needle} in {html}"));
    let start = html[..i].rfind("href=\"").unwrap() + 6;
    let end = start + html[start..].find('"').unwrap();
    unescape(&html[start..end])
}

/// Walks from `url` through the IdP's login as `user` until a URL starting with `stop`
/// (not fetched), or a page that is not a redirect (returned as `Err`).
async fn walk(
    c: &reqwest::Client,
    mut url: String,
    user: &str,
    stop: &str,
) -> Result<String, reqwest::Response> {
    for _ in 0..15 {
        if url.starts_with(stop) {
            return Ok(url);
        }
        let r = c.get(&url).send().await.unwrap();
        let here = url::Url::parse(&url).unwrap();
        if r.status() == 200 && here.path().starts_with("/interaction/") {
            let post = here.join(&format!("{}/login", here.path())).unwrap();
            let r2 = c
                .post(post.clone())
                .form(&[("login", user)])
                .send()
                .await
                .unwrap();
            assert!(
                r2.status().is_redirection(),
                "IdP login failed: {}",
                r2.status()
            );
            url = post.join(&location(&r2)).unwrap().to_string();
            continue;
        }
        if !r.status().is_redirection() {
            return Err(r);
        }
        url = here.join(&location(&r)).unwrap().to_string();
    }
    panic!("too many redirects");
}

/// From an app URL through "Continue with {label}" and the IdP as `user`, back to the pool's
/// callback; returns the callback's response.
async fn continue_with(
    c: &reqwest::Client,
    s: &Server,
    label: &str,
    user: &str,
) -> reqwest::Response {
    let (r, _) = follow(c, &s.base, s.url("/app")).await;
    let html = r.text().await.unwrap();
    assert!(
        html.contains(label),
        "the sign-in page offers {label}: {html}"
    );
    let start = absolute(&s.base, &href_of(&html, label));
    assert!(
        start.contains("/oauth2/pool/federation/start?provider="),
        "{start}"
    );
    let callback = walk(c, start, user, &s.url("/oauth2/pool/federation/callback"))
        .await
        .unwrap_or_else(|r| panic!("no callback: {}", r.status()));
    c.get(&callback).send().await.unwrap()
}

/// Follows the pool's answer back through the proxy to the app; returns the echoed request.
async fn to_app(c: &reqwest::Client, s: &Server, r: reqwest::Response) -> Value {
    assert_eq!(r.status(), 302, "signed in: {}", r.text().await.unwrap());
    let (r, _) = follow(c, &s.base, absolute(&s.base, &location(&r))).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn oidc_data(echo: &Value) -> Value {
    let jwt = echo["headers"]["x-amzn-oidc-data"].as_str().unwrap();
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn continue_with_creates_updates_and_disables(backend: Backend) {
    let Setup { idp: _idp, s } = setup(backend, "admin_console = true").await;
    let c = browser();
    let r = continue_with(&c, &s, "Continue with Corp SSO", "alice").await;
    let echo = to_app(&c, &s, r).await;
    let h = &echo["headers"];
    assert_eq!(h["x-forwarded-email"], "alice@example.com");
    assert_eq!(h["x-forwarded-preferred-username"], "corp_alice");
    let claims = oidc_data(&echo);
    assert_eq!(claims["cognito:username"], "corp_alice");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["name"], "Alice Example");
    assert_eq!(claims["identities"][0]["providerName"], "corp");
    assert_eq!(claims["identities"][0]["userId"], "alice");
    let sub = h["x-amzn-oidc-identity"].as_str().unwrap().to_string();

    // An administrator changes her name in the console (the identities stay)...
    let (ok, out, err) = s.cli(&["users", "show", "corp_alice"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("CONFIRMED"), "{out}");
    create_user(&s, "root", "root@example.com");
    let (ok, _, err) = s.cli(&["groups", "add-user", "admins", "root"]);
    assert!(ok, "{err}");
    let admin = browser();
    let r = sign_in(&admin, &s, &s.url("/oauth2/pool/login"), "root", PASSWORD).await;
    assert_eq!(r.status(), 200);
    let html = admin
        .get(s.url("/oauth2/pool/admin/user/edit?u=corp_alice"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (action, csrf) = form(&html, &s.base, "/user/edit");
    let r = admin
        .post(&action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("u", "corp_alice"),
            ("email", "alice@example.com"),
            ("email_verified", "true"),
            ("name", "Renamed By Admin"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let (_, out, _) = s.cli(&["users", "show", "corp_alice"]);
    assert!(
        out.contains("Renamed By Admin") && out.contains("providerName"),
        "{out}"
    );

    // ...and a later sign-in (fresh browser) is the same user, the mapped name refreshed.
    let c2 = browser();
    let r = continue_with(&c2, &s, "Continue with Corp SSO", "alice").await;
    let echo = to_app(&c2, &s, r).await;
    assert_eq!(echo["headers"]["x-amzn-oidc-identity"], sub.as_str());
    let claims = oidc_data(&echo);
    assert_eq!(claims["identities"].as_array().unwrap().len(), 1);
    assert_eq!(claims["name"], "Alice Example");

    // Disabled: the provider still signs alice in, the pool does not.
    let (ok, out, err) = s.cli(&["users", "disable", "corp_alice"]);
    assert!(ok, "{out}{err}");
    let c3 = browser();
    let r = continue_with(&c3, &s, "Continue with Corp SSO", "alice").await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("disabled"));
    assert!(s.log_text().contains("federation_user_created"));
}
on_both!(
    creates_updates_disables,
    continue_with_creates_updates_and_disables
);

async fn missing_required_attributes_are_asked_on_one_page(backend: Backend) {
    // bob's IdP account has no name; the pool requires one, and a phone number.
    let Setup { idp: _idp, s } = setup(
        backend,
        "required_attributes = [\"email\", \"name\", \"phone_number\"]\ndefault_phone_region = \"JP\"",
    )
    .await;
    let c = browser();
    let r = continue_with(&c, &s, "Continue with Corp SSO", "bob").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("name=\"name\"") && html.contains("name=\"phone_number\""),
        "{html}"
    );
    assert!(
        html.contains("bob@other.org"),
        "what the IdP gave is shown: {html}"
    );
    let challenge = hidden(&html, "challenge");
    // Nothing filled in, and a bad email: every problem at once.
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/federation/complete",
        &[
            ("challenge", challenge.as_str()),
            ("email", "not-an-email"),
            ("name", ""),
            ("phone_number", "12"),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    for needle in ["email", "name", "phone_number", "+81 90"] {
        assert!(html.contains(needle), "{needle} in {html}");
    }
    let (action, csrf) = form(&html, &s.base, "/federation/complete");
    let challenge = hidden(&html, "challenge");
    // The page, stolen into another browser with its own valid CSRF token, is refused there:
    // it is bound to the login cookie of the browser that signed in at the provider.
    let thief = browser();
    let (_, page) = get_page(&thief, &s.url("/oauth2/pool/login")).await;
    let (_, thief_csrf) = form(&page, &s.base, "/login");
    let r = thief
        .post(&action)
        .form(&[
            ("csrf_token", thief_csrf.as_str()),
            ("challenge", challenge.as_str()),
            ("email", "bob@other.org"),
            ("name", "Mallory"),
            ("phone_number", "090-1234-5678"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A phone number as typed, in national form.
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/federation/complete",
        &[
            ("challenge", challenge.as_str()),
            ("email", "bob@other.org"),
            ("name", "Bob Other"),
            ("phone_number", "090-1234-5678"),
        ],
    )
    .await;
    let echo = to_app(&c, &s, r).await;
    let claims = oidc_data(&echo);
    assert_eq!(claims["cognito:username"], "corp_bob");
    assert_eq!(claims["name"], "Bob Other");
    assert_eq!(claims["phone_number"], "+819012345678");
    // A forged or replayed attribute page without the CSRF cookie is refused.
    let other = browser();
    let r = other
        .post(&action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("challenge", challenge.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}
on_both!(
    asks_required_attributes,
    missing_required_attributes_are_asked_on_one_page
);

async fn link_by_email_needs_a_verified_email(backend: Backend) {
    let Setup { idp: _idp, s } = setup(backend, "").await;
    create_user(&s, "alice-local", "alice@example.com");
    create_user(&s, "mal-local", "mallory@example.com");

    // "corp" links by email, and the IdP says alice's email is verified: the existing user.
    let c = browser();
    let r = continue_with(&c, &s, "Continue with Corp SSO", "alice").await;
    let echo = to_app(&c, &s, r).await;
    let claims = oidc_data(&echo);
    assert_eq!(claims["cognito:username"], "alice-local");
    assert_eq!(claims["identities"][0]["providerName"], "corp");
    // Her password still works.
    let (r, _) = follow(&browser(), &s.base, s.url("/oauth2/pool/login")).await;
    assert_eq!(r.status(), 200);
    let r = sign_in(
        &browser(),
        &s,
        &s.url("/oauth2/pool/login"),
        "alice-local",
        PASSWORD,
    )
    .await;
    assert_eq!(r.status(), 200, "password sign-in of the linked user");

    // mallory's email is not verified at the IdP: no link, and no second user with her email.
    let c = browser();
    let r = continue_with(&c, &s, "Continue with Corp SSO", "mallory").await;
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("already exists"));
    let (_, out, _) = s.cli(&["users", "list"]);
    assert!(!out.contains("corp_mallory"), "{out}");

    // "other" does not link by email, verified or not.
    let c = browser();
    let r = continue_with(&c, &s, "Continue with Other", "alice").await;
    assert_eq!(r.status(), 409);
    let (_, out, _) = s.cli(&["users", "list"]);
    assert!(!out.contains("other_alice"), "{out}");
}
on_both!(link_by_email, link_by_email_needs_a_verified_email);

async fn forged_callbacks_are_refused(backend: Backend) {
    let Setup { idp: _idp, s } = setup(backend, "").await;
    let cb = s.url("/oauth2/pool/federation/callback");
    // The sign-up page offers the same buttons as the sign-in page.
    let (r, _) = follow(&browser(), &s.base, s.url("/oauth2/pool/signup")).await;
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Continue with Corp SSO") && html.contains("Continue with Other"),
        "{html}"
    );

    // No state, a state this browser never started, and a garbage state.
    let c = browser();
    for q in [
        "?code=x",
        "?code=x&state=00112233445566778899aabbccddeeff",
        "?code=x&state=zz",
    ] {
        let r = c.get(format!("{cb}{q}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{q}");
        assert!(r.text().await.unwrap().contains("start again"));
    }

    // A real callback replayed in another browser (no login cookie there) is refused.
    let (r, _) = follow(&c, &s.base, s.url("/app")).await;
    let html = r.text().await.unwrap();
    let start = absolute(&s.base, &href_of(&html, "Continue with Corp SSO"));
    let callback = walk(&c, start, "alice", &cb)
        .await
        .unwrap_or_else(|_| panic!());
    let thief = browser();
    assert_eq!(thief.get(&callback).send().await.unwrap().status(), 401);
    // ...and in the right browser, but with the state changed.
    let mut forged = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            // The last hex digit changed: the cookie (named by the first 16) is still found.
            let v = if k == "state" {
                let last = if v.ends_with('0') { '1' } else { '0' };
                format!("{}{last}", &v[..v.len() - 1])
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let r = c.get(forged.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // A wrong nonce: the authorization request is altered on its way to the IdP, so the ID
    // token carries a nonce that is not the one sealed in the login cookie (OIDC Core 3.1.3.7).
    let c = browser();
    let (r, _) = follow(&c, &s.base, s.url("/app")).await;
    let html = r.text().await.unwrap();
    let start = absolute(&s.base, &href_of(&html, "Continue with Corp SSO"));
    let r = c.get(&start).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let mut auth = url::Url::parse(&location(&r)).unwrap();
    assert!(auth.as_str().starts_with(&_idp.issuer), "{auth}");
    let pairs: Vec<(String, String)> = auth
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "nonce" {
                "forged-nonce".to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    for k in ["code_challenge_method", "state", "code_challenge"] {
        assert!(pairs.iter().any(|(n, _)| n == k), "{k} sent");
    }
    auth.query_pairs_mut().clear().extend_pairs(pairs);
    let callback = walk(&c, auth.to_string(), "alice", &cb)
        .await
        .unwrap_or_else(|_| panic!());
    let r = c.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(
        !r.headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().starts_with("portcullis_pool_session=")),
        "no pool session after a refused callback"
    );
    let (_, out, _) = s.cli(&["users", "list"]);
    assert!(!out.contains("corp_alice"), "{out}");

    // The IdP says no (the user aborts): ALB's 561 with the IdP's error code.
    let c = browser();
    let (r, _) = follow(&c, &s.base, s.url("/app")).await;
    let html = r.text().await.unwrap();
    let start = absolute(&s.base, &href_of(&html, "Continue with Corp SSO"));
    let r = c.get(&start).send().await.unwrap();
    let mut url = url::Url::parse(&location(&r)).unwrap();
    let mut r = c.get(url.clone()).send().await.unwrap();
    while r.status().is_redirection() {
        url = url.join(&location(&r)).unwrap();
        r = c.get(url.clone()).send().await.unwrap();
    }
    let abort = url.join(&format!("{}/abort", url.path())).unwrap();
    let r = c.post(abort.clone()).send().await.unwrap();
    let callback = walk(
        &c,
        abort.join(&location(&r)).unwrap().to_string(),
        "alice",
        &cb,
    )
    .await
    .unwrap_or_else(|_| panic!());
    let r = c.get(&callback).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 561);
    assert!(r.text().await.unwrap().contains("access_denied"));
}
on_both!(forged_callbacks, forged_callbacks_are_refused);

/// The pool user a browser is signed in as, through the app: (sub, claims of x-amzn-oidc-data).
async fn signed_in_as(c: &reqwest::Client, s: &Server, r: reqwest::Response) -> (String, Value) {
    let echo = to_app(c, s, r).await;
    let claims = oidc_data(&echo);
    (claims["sub"].as_str().unwrap().to_string(), claims)
}

// F1: a provider user with an unverified address, then the address's owner through a second
// provider with `link_by_email`: two accounts, never one.
async fn link_by_email_never_joins_an_unverified_address(backend: Backend) {
    let Setup { idp: _idp, s } = setup_with(backend, "", true).await;
    // Mallory, through "social", claims the victim's address; nobody verified it.
    let m = browser();
    let r = continue_with(&m, &s, "Continue with Social", "mallory1").await;
    let (mal_sub, mal) = signed_in_as(&m, &s, r).await;
    assert_eq!(mal["email_verified"], false, "{mal}");
    // The victim, through "corp" (links by email; her address verified there).
    let v = browser();
    let r = continue_with(&v, &s, "Continue with Corp SSO", "victim1").await;
    let (vic_sub, vic) = signed_in_as(&v, &s, r).await;
    assert_ne!(
        vic_sub, mal_sub,
        "the victim was signed in to Mallory's account: {vic}"
    );
    assert_eq!(vic["cognito:username"], "corp_victim1");
    assert_eq!(vic["email_verified"], true);
    assert_eq!(vic["identities"].as_array().unwrap().len(), 1, "{vic}");
    // Mallory signs in again: her own account, still unverified, no corp identity.
    let m2 = browser();
    let r = continue_with(&m2, &s, "Continue with Social", "mallory1").await;
    let (again, mal2) = signed_in_as(&m2, &s, r).await;
    assert_eq!(again, mal_sub);
    assert_eq!(mal2["email_verified"], false, "{mal2}");
    assert_eq!(mal2["identities"].as_array().unwrap().len(), 1, "{mal2}");
    // The victim's verified sign-in again: still her account.
    let v2 = browser();
    let r = continue_with(&v2, &s, "Continue with Corp SSO", "victim1").await;
    let (vic_again, _) = signed_in_as(&v2, &s, r).await;
    assert_eq!(vic_again, vic_sub);
    assert!(!s.log_text().contains("federation_linked"));
}
on_both!(
    link_by_email_unverified_holder,
    link_by_email_never_joins_an_unverified_address
);

// F7: an address typed on the attribute page is unverified, whatever the provider's flag says.
async fn typed_address_is_never_verified(backend: Backend) {
    let Setup { idp: _idp, s } = setup(backend, "").await;
    let c = browser();
    let r = continue_with(&c, &s, "Continue with Corp SSO", "noemail").await;
    assert_eq!(r.status(), 200, "the attribute page");
    let html = r.text().await.unwrap();
    let challenge = hidden(&html, "challenge");
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/federation/complete",
        &[
            ("challenge", challenge.as_str()),
            ("email", "cfo@corp.example"),
        ],
    )
    .await;
    let (_, claims) = signed_in_as(&c, &s, r).await;
    assert_eq!(claims["email"], "cfo@corp.example");
    assert_eq!(
        claims["email_verified"], false,
        "a typed address inherited the provider's flag: {claims}"
    );
    // A later sign-in (the provider still has no address) does not verify it either.
    let c2 = browser();
    let r = continue_with(&c2, &s, "Continue with Corp SSO", "noemail").await;
    let (_, claims) = signed_in_as(&c2, &s, r).await;
    assert_eq!(claims["email_verified"], false, "{claims}");
}
on_both!(typed_address, typed_address_is_never_verified);

/// Signs up through the hosted page and never confirms; returns the sign-up's status and body.
async fn squat(s: &Server, username: &str, email: &str) -> (u16, String) {
    let c = browser();
    let (_, page) = get_page(&c, &s.url("/oauth2/pool/signup")).await;
    let (action, csrf) = form(&page, &s.base, "/signup");
    let r = c
        .post(action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", username),
            ("email", email),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

// F9: a provider's namespace `{name}_` is not for self sign-up or admin create, in any case.
async fn provider_namespaces_are_reserved(backend: Backend) {
    let Setup { idp: _idp, s } = setup_with(backend, "", true).await;
    // A provider's namespace is not for self sign-up, in any case or width.
    for name in ["CORP_victim-2", "corp_Victim-2", "Social_x", "ｏｔｈｅｒ_y"] {
        let (status, body) = squat(&s, name, "squatter@example.com").await;
        assert_eq!(status, 400, "sign-up as {name}: {body}");
    }
    let (ok, out, err) = s.cli(&[
        "users",
        "add",
        "corp_Victim-2",
        "--password",
        PASSWORD,
        "--permanent",
    ]);
    assert!(!ok, "admin create in a provider's namespace: {out}{err}");
    let c = browser();
    let r = continue_with(&c, &s, "Continue with Corp SSO", "Victim-2").await;
    let (_, claims) = signed_in_as(&c, &s, r).await;
    assert_eq!(claims["identities"][0]["userId"], "Victim-2");
}
on_both!(name_squatting, provider_namespaces_are_reserved);

// F9: a never-confirmed sign-up with the victim's address: her verified sign-in makes her own
// account (not a refusal, not a link to the squatter's).
async fn unconfirmed_sign_up_holds_no_address(backend: Backend) {
    let Setup { idp: _idp, s } = setup(backend, "").await;
    let (status, body) = squat(&s, "squatter3", "victim3@corp.example").await;
    assert_eq!(status, 302, "{body}");
    let c = browser();
    let r = continue_with(&c, &s, "Continue with Corp SSO", "victim3").await;
    let (_, claims) = signed_in_as(&c, &s, r).await;
    assert_eq!(claims["cognito:username"], "corp_victim3", "{claims}");
    assert_eq!(claims["email_verified"], true);
    let (_, out, _) = s.cli(&["users", "show", "squatter3"]);
    assert!(
        out.contains("UNCONFIRMED") && !out.contains("providerName"),
        "{out}"
    );
}
on_both!(email_squatting, unconfirmed_sign_up_holds_no_address);

// F9: subjects that differ only by case are two users (the name keeps the subject's case).
async fn subjects_differing_by_case_are_two_users(backend: Backend) {
    let Setup { idp: _idp, s } = setup(backend, "").await;
    let a = browser();
    let r = continue_with(&a, &s, "Continue with Other", "Case-1").await;
    let (upper, _) = signed_in_as(&a, &s, r).await;
    let b = browser();
    let r = continue_with(&b, &s, "Continue with Other", "case-1").await;
    let (lower, claims) = signed_in_as(&b, &s, r).await;
    assert_ne!(upper, lower);
    assert_eq!(claims["cognito:username"], "other_case-1");
}
on_both!(case_squatting, subjects_differing_by_case_are_two_users);

// B5: "forgot password" gives a federated-only user no local password.
async fn forgot_password_gives_federated_users_no_password(backend: Backend) {
    let Setup { idp: _idp, s } = setup(backend, "").await;
    let c = browser();
    let r = continue_with(&c, &s, "Continue with Corp SSO", "bob").await;
    let _ = signed_in_as(&c, &s, r).await;
    create_user(&s, "hank", "hank@example.com");
    let c = browser();
    let (_, page) = get_page(&c, &s.url("/oauth2/pool/forgot-password")).await;
    let (action, csrf) = form(&page, &s.base, "/forgot-password");
    let mut answers = Vec::new();
    for who in [
        "bob@other.org",
        "corp_bob",
        "hank@example.com",
        "nobody@example.com",
    ] {
        let r = c
            .post(&action)
            .form(&[("csrf_token", csrf.as_str()), ("username", who)])
            .send()
            .await
            .unwrap();
        answers.push((
            r.status().as_u16(),
            location(&r).replace(&enc_form(who), "WHO"),
        ));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    // The local user gets a code (so the log is where codes show up)...
    let _ = s.code_for("hank", "reset");
    std::thread::sleep(std::time::Duration::from_millis(500));
    // ...the federated-only user none.
    assert!(
        s.codes("corp_bob", "reset").is_empty(),
        "a reset code was issued to a federated-only user"
    );
    // A reset with any code for it is refused, and no password signs it in.
    let (_, page) = get_page(&c, &s.url("/oauth2/pool/reset-password")).await;
    let (reset, csrf) = form(&page, &s.base, "/reset-password");
    let r = c
        .post(&reset)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "corp_bob"),
            ("code", "000000"),
            ("new_password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = sign_in(
        &browser(),
        &s,
        &s.url("/oauth2/pool/login"),
        "corp_bob",
        PASSWORD,
    )
    .await;
    assert_eq!(r.status(), 401);
}
on_both!(
    forgot_password_federated,
    forgot_password_gives_federated_users_no_password
);

/// How `form_urlencoded` spells a value in a query string.
fn enc_form(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

// B6: a federated sign-in's `amr` is `fed` (plus the provider's own), never `pwd`.
async fn federated_amr_is_fed(backend: Backend) {
    let Setup { idp: _idp, s } = setup(backend, "").await;
    let c = browser();
    let r = continue_with(&c, &s, "Continue with Corp SSO", "alice").await;
    // The pool's ID token (as the app receives it) and the proxy's session (what route rules
    // on `amr` see).
    let (_, id_token) = signed_in_as(&c, &s, r).await;
    assert_eq!(id_token["amr"], json!(["fed"]), "{id_token}");
    let claims = session_claims(&c, &s).await;
    assert_eq!(claims["amr"], json!(["fed"]), "{claims}");
    let c = browser();
    let r = continue_with(&c, &s, "Continue with Corp SSO", "strong").await;
    let _ = signed_in_as(&c, &s, r).await;
    let claims = session_claims(&c, &s).await;
    // The provider said `pwd`, `hwk`, `mfa`: its `pwd` is dropped.
    assert_eq!(claims["amr"], json!(["fed", "hwk", "mfa"]), "{claims}");
    // A password sign-in is still `pwd`.
    create_user(&s, "hank", "hank@example.com");
    let c = browser();
    let (r, _) = follow(&c, &s.base, s.url("/app")).await;
    let login = r.url().to_string();
    let r = sign_in(&c, &s, &login, "hank", PASSWORD).await;
    let _ = signed_in_as(&c, &s, r).await;
    let claims = session_claims(&c, &s).await;
    assert_eq!(claims["amr"], json!(["pwd"]), "{claims}");
}
on_both!(federated_amr, federated_amr_is_fed);

// B6 with a second factor: the TOTP code completes a provider's sign-in, so `amr` is `fed`,
// `otp`, `mfa` (the second-factor pages must not call the first factor `pwd`).
async fn federated_amr_with_a_second_factor(backend: Backend) {
    use portcullis::pool::mfa::totp;
    let Setup { idp: _idp, s } = setup(backend, "mfa = \"required\"").await;
    let c = browser();
    let r = continue_with(&c, &s, "Continue with Corp SSO", "alice").await;
    assert_eq!(r.status(), 302);
    let setup_url = absolute(&s.base, &location(&r));
    assert!(setup_url.contains("/mfa/setup"), "{setup_url}");
    let (_, page) = get_page(&c, &setup_url).await;
    let secret = page
        .split("id=\"secret\" class=\"secret\">")
        .nth(1)
        .and_then(|v| v.split('<').next())
        .and_then(|v| totp::base32_decode(&v.replace(' ', "")))
        .unwrap_or_else(|| panic!("no secret on {page}"));
    let code = totp::code_at_step(&secret, totp::step_at(portcullis::pool::now()));
    let enrolment = unescape(&hidden(&page, "enrolment"));
    let r = submit_form(
        &c,
        &s.base,
        &page,
        "/mfa/setup",
        &[("enrolment", enrolment.as_str()), ("code", code.as_str())],
    )
    .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let r = submit_form(&c, &s.base, &html, "/mfa/continue", &[]).await;
    let (_, id_token) = signed_in_as(&c, &s, r).await;
    assert_eq!(id_token["amr"], json!(["fed", "otp", "mfa"]), "{id_token}");
    let claims = session_claims(&c, &s).await;
    assert_eq!(claims["amr"], json!(["fed", "otp", "mfa"]), "{claims}");
}
on_both!(federated_amr_mfa, federated_amr_with_a_second_factor);

// F9: a link to a never-confirmed sign-up, as an older version left it (it linked by an
// address nobody verified), is no link: the provider's user gets its own account.
async fn a_link_to_an_unconfirmed_sign_up_is_dropped(backend: Backend) {
    use sqlx::Row;
    let Setup { idp: _idp, s } = setup(backend, "").await;
    let (status, body) = squat(&s, "squatter4", "bob@other.org").await;
    assert_eq!(status, 302, "{body}");
    let (_, out, _) = s.cli(&["users", "show", "squatter4"]);
    let shown: Value = serde_json::from_str(&out).unwrap();
    let squatter_sub = shown["sub"].as_str().unwrap().to_string();
    let db = s.database().await;
    sqlx::query(
        "INSERT INTO federated_identities (provider, provider_sub, sub, created_at) VALUES ('corp', 'bob', $1, 1)",
    )
    .bind(&squatter_sub)
    .execute(&db)
    .await
    .unwrap();
    let c = browser();
    let r = continue_with(&c, &s, "Continue with Corp SSO", "bob").await;
    let (sub, claims) = signed_in_as(&c, &s, r).await;
    assert_ne!(sub, squatter_sub);
    assert_eq!(claims["cognito:username"], "corp_bob", "{claims}");
    let row = sqlx::query(
        "SELECT sub FROM federated_identities WHERE provider = 'corp' AND provider_sub = 'bob'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(row.try_get::<String, _>("sub").unwrap(), sub);
}
on_both!(
    stale_unconfirmed_link,
    a_link_to_an_unconfirmed_sign_up_is_dropped
);

/// The federation conflict page is titled for what it is (not "Something went wrong"), and
/// its "Sign in" link keeps the app's request: signing in there ends on the app.
async fn conflict_page_keeps_the_way_back_to_the_app(backend: Backend) {
    let Setup { idp: _idp, s } = setup(backend, "").await;
    create_user(&s, "mal-local", "mallory@example.com");
    let c = browser();
    let r = continue_with(&c, &s, "Continue with Corp SSO", "mallory").await;
    assert_eq!(r.status(), 409);
    let html = r.text().await.unwrap();
    let text = visible_text(&html);
    assert!(text.contains("You already have an account"), "{text}");
    assert!(!text.contains("Something went wrong"), "{text}");
    let login = absolute(&s.base, &href_of(&html, ">Sign in<"));
    assert!(login.contains("/oauth2/pool/login?req="), "{login}");
    let r = sign_in(&c, &s, &login, "mal-local", PASSWORD).await;
    let (r, hops) = follow(&c, &s.base, absolute(&s.base, &location(&r))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(hops.last().unwrap(), &s.url("/app"), "{hops:?}");
}
on_both!(conflict_page, conflict_page_keeps_the_way_back_to_the_app);
