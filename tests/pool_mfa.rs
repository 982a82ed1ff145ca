//! Multi-factor sign-in through the real binary (docs/src/pool/mfa.md): enrol TOTP after signing in, sign
//! out, sign in with password + code; a used code, an older step and a used recovery code are
//! refused; `pool.mfa = "required"` forces set-up right after the password; wrong codes feed
//! the sign-in lockout, which the admin unlock lifts; `mfa-reset` removes the factor; the ID
//! token's `amr` reaches authorization (`allow_claims = { amr = "mfa" }`).

mod pool_support;

use pool_support::*;
use portcullis::pool::mfa::totp;

/// The value of a hidden form field.
fn hidden(html: &str, name: &str) -> String {
    html.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|v| v.split('"').next())
        .map(unescape)
        .unwrap_or_else(|| panic!("no hidden {name} in:\n{html}"))
}

/// The TOTP secret as the set-up page shows it (groups of four, for typing).
fn secret_on_page(html: &str) -> Vec<u8> {
    let text = html
        .split("id=\"secret\" class=\"secret\">")
        .nth(1)
        .and_then(|v| v.split('<').next())
        .unwrap_or_else(|| panic!("no secret on:\n{html}"));
    assert!(html.contains("<svg class=\"qr\""), "QR code on the page");
    totp::base32_decode(&text.replace(' ', "")).expect("base32 secret")
}

fn recovery_codes(html: &str) -> Vec<String> {
    html.split("<li><code>")
        .skip(1)
        .filter_map(|c| c.split('<').next())
        .map(str::to_string)
        .collect()
}

fn step_now() -> i64 {
    totp::step_at(portcullis::pool::now())
}

async fn get_text(c: &reqwest::Client, url: &str) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}

/// Posts the set-up form of `page` with the code of `step`.
async fn submit_setup(
    c: &reqwest::Client,
    s: &Server,
    page: &str,
    secret: &[u8],
    step: i64,
) -> reqwest::Response {
    let (action, csrf) = form(page, &s.base, "/mfa/setup");
    let code = totp::code_at_step(secret, step);
    c.post(action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("enrolment", hidden(page, "enrolment").as_str()),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .unwrap()
}

/// Posts a code on the challenge page at `url`.
async fn submit_code(c: &reqwest::Client, s: &Server, url: &str, code: &str) -> reqwest::Response {
    let page = get_text(c, url).await;
    let (action, csrf) = form(&page, &s.base, "/mfa");
    c.post(action)
        .form(&[("csrf_token", csrf.as_str()), ("code", code)])
        .send()
        .await
        .unwrap()
}

/// The proxy's view of the signed-in user: the ID token claims.
async fn claims(c: &reqwest::Client, s: &Server) -> serde_json::Value {
    session_claims(c, s).await
}

/// A call to the admin API with the bearer token.
async fn admin_api(s: &Server, method: reqwest::Method, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(method, format!("{}{path}", s.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
}

async fn sign_out(c: &reqwest::Client, s: &Server) {
    let r = c.get(s.url("/oauth2/sign_out?rd=/")).send().await.unwrap();
    follow(c, &s.base, location(&r)).await;
}

/// Starts at a protected URL and signs in with the password; the pool's answer.
async fn password_step(
    c: &reqwest::Client,
    s: &Server,
    path: &str,
    name: &str,
) -> reqwest::Response {
    let (r, _) = follow(c, &s.base, s.url(path)).await;
    let login_url = r.url().to_string();
    sign_in(c, s, &login_url, name, PASSWORD).await
}

/// Adds a route in front of the catch-all that only admits MFA sessions, and restarts.
async fn add_step_up_route(s: &mut Server) {
    s.kill9();
    let text = std::fs::read_to_string(&s.config).unwrap();
    let upstream = text
        .split("upstream = \"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap()
        .to_string();
    let route = format!(
        "[[routes]]\npath = \"/admin\"\nupstream = \"{upstream}\"\nprovider = \"pool\"\nallow_claims = {{ amr = \"mfa\" }}\n"
    );
    let text = text.replacen("[[routes]]\n", &format!("{route}[[routes]]\n"), 1);
    std::fs::write(&s.config, text).unwrap();
    s.spawn().await;
}

/// What a database dump holds cannot generate codes or sign in: the TOTP secret is sealed
/// with the key ring, recovery codes are hashes.
async fn at_rest_nothing_usable(s: &Server, secret: &[u8], codes: &[String]) {
    use sqlx::Row;
    let db = s.database().await;
    let sealed: String = sqlx::query("SELECT secret_sealed FROM mfa_totp")
        .fetch_one(&db)
        .await
        .unwrap()
        .try_get("secret_sealed")
        .unwrap();
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    for plain in [totp::base32(secret), hex] {
        assert!(!sealed.contains(&plain), "TOTP secret stored in the clear");
    }
    assert!(
        sealed.len() > 40,
        "sealed (nonce, ciphertext, tag): {sealed}"
    );
    let rows = sqlx::query("SELECT code_hash FROM mfa_recovery")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 10);
    for r in rows {
        let h: String = r.try_get("code_hash").unwrap();
        assert_eq!(h.len(), 64, "SHA-256 hex");
        assert!(codes.iter().all(|c| !h.contains(&c.replace('-', ""))));
    }
    db.close().await;
}

async fn enrol_sign_out_sign_in_with_code(backend: Backend) {
    let mut s = Server::start(backend, "mfa = \"optional\"").await;
    add_step_up_route(&mut s).await;
    create_user(&s, "olga", "olga@example.com");
    let c = browser();

    // `optional` and no factor yet: the password is enough, and amr says so.
    let r = password_step(&c, &s, "/hello", "olga").await;
    assert!(
        location(&r).contains("/oauth2/idpresponse?code="),
        "{}",
        location(&r)
    );
    let (r, _) = follow(&c, &s.base, location(&r)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(claims(&c, &s).await["amr"], serde_json::json!(["pwd"]));
    // Step-up route: a password-only session is refused.
    let r = c.get(s.url("/admin/panel")).send().await.unwrap();
    assert_eq!(r.status(), 403, "password-only session on an amr=mfa route");
    // …with a way to step up: sign in again (prompt=login, no single sign-on) and come back.
    let page = r.text().await.unwrap();
    let link = page
        .split("href=\"")
        .nth(1)
        .and_then(|h| h.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    assert!(
        link.starts_with("/oauth2/start?rd=%2Fadmin%2Fpanel") && link.contains("&prompt=login"),
        "{link}"
    );
    let start = c.get(s.url(&link)).send().await.unwrap();
    assert_eq!(start.status(), 302);
    let to_pool = location(&start);
    assert!(to_pool.contains("prompt=login"), "{to_pool}");
    let mut again = c.get(&to_pool).send().await.unwrap();
    for _ in 0..3 {
        if again.status() != 302 {
            break;
        }
        let next = location(&again);
        assert!(
            !next.contains("code="),
            "prompt=login must not sign in silently: {next}"
        );
        let next = if next.starts_with('/') {
            s.url(&next)
        } else {
            next
        };
        again = c.get(&next).send().await.unwrap();
    }
    assert_eq!(
        again.status(),
        200,
        "prompt=login shows the sign-in page instead of single sign-on"
    );
    assert!(again.text().await.unwrap().contains("name=\"password\""));

    // Enrol from the page reachable after sign-in.
    let signed_in = get_text(&c, &s.url("/oauth2/pool/mfa/setup")).await;
    let secret = secret_on_page(&signed_in);
    assert!(!signed_in.contains("<script"), "set-up needs no script");
    let wrong = submit_setup(&c, &s, &signed_in, &secret, step_now() + 5).await;
    assert_eq!(wrong.status(), 422);
    assert!(wrong.text().await.unwrap().contains("does not match"));
    let enrolled_step = step_now();
    let r = submit_setup(&c, &s, &signed_in, &secret, enrolled_step).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let codes = recovery_codes(&html);
    assert_eq!(codes.len(), 10, "{html}");
    // Shown once: the page now only says it is on.
    let again = get_text(&c, &s.url("/oauth2/pool/mfa/setup")).await;
    assert!(
        again.contains("is on") && again.contains("Unused recovery codes: 10"),
        "{again}"
    );
    assert!(!again.contains(&codes[0]));
    at_rest_nothing_usable(&s, &secret, &codes).await;
    let (ok, out, err) = s.cli(&["users", "show", "olga"]);
    assert!(ok, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["mfa"]["totp"], true, "{out}");
    assert_eq!(shown["mfa"]["recovery_codes_left"], 10);

    sign_out(&c, &s).await;
    // Now the password leads to the challenge, with no session yet.
    let r = password_step(&c, &s, "/admin/panel", "olga").await;
    let challenge = absolute(&s.base, &location(&r));
    assert!(challenge.contains("/oauth2/pool/mfa?req="), "{challenge}");
    assert_eq!(
        c.get(s.url("/oauth2/pool/mfa/setup"))
            .send()
            .await
            .unwrap()
            .status(),
        302,
        "set-up cannot replace the challenge"
    );
    // The code used at enrolment, and an older step, are refused.
    let used = submit_code(
        &c,
        &s,
        &challenge,
        &totp::code_at_step(&secret, enrolled_step),
    )
    .await;
    assert_eq!(used.status(), 401);
    assert!(used.text().await.unwrap().contains("already used"));
    let old = submit_code(
        &c,
        &s,
        &challenge,
        &totp::code_at_step(&secret, enrolled_step - 1),
    )
    .await;
    assert_eq!(old.status(), 401);
    // The next step is within ±1 and new: accepted.
    let next = (enrolled_step + 1).max(step_now());
    let r = submit_code(&c, &s, &challenge, &totp::code_at_step(&secret, next)).await;
    assert_eq!(r.status(), 302);
    let (r, hops) = follow(&c, &s.base, location(&r)).await;
    assert_eq!(r.status(), 200, "{hops:?}");
    assert_eq!(hops.last().unwrap(), &s.url("/admin/panel"));
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["path"], "/admin/panel");
    assert_eq!(
        claims(&c, &s).await["amr"],
        serde_json::json!(["pwd", "otp", "mfa"])
    );

    // New recovery codes (confirmed with a recovery code; a wrong code is refused first).
    let manage = |code: &str, action: &str| {
        let (c, s, code, action) = (c.clone(), &s, code.to_string(), action.to_string());
        async move {
            let page = get_text(&c, &s.url("/oauth2/pool/mfa/setup")).await;
            let (url, csrf) = form(&page, &s.base, "/mfa/manage");
            c.post(url)
                .form(&[
                    ("csrf_token", csrf.as_str()),
                    ("code", &code),
                    ("action", &action),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(manage("123456", "recovery").await.status(), 401);
    let r = manage(&codes[5], "recovery").await;
    assert_eq!(r.status(), 200);
    let old_codes = codes;
    let codes = recovery_codes(&r.text().await.unwrap());
    assert_eq!(codes.len(), 10);

    // A recovery code signs in once, then it is refused; the replaced ones never again.
    sign_out(&c, &s).await;
    let r = password_step(&c, &s, "/hello", "olga").await;
    let challenge = absolute(&s.base, &location(&r));
    let r = submit_code(&c, &s, &challenge, &old_codes[4]).await;
    assert_eq!(r.status(), 401, "replaced recovery code");
    let r = password_step(&c, &s, "/hello", "olga").await;
    let challenge = absolute(&s.base, &location(&r));
    let r = submit_code(&c, &s, &challenge, &codes[3].to_uppercase()).await;
    assert_eq!(r.status(), 302, "recovery code accepted");
    follow(&c, &s.base, location(&r)).await;
    sign_out(&c, &s).await;
    let r = password_step(&c, &s, "/hello", "olga").await;
    let challenge = absolute(&s.base, &location(&r));
    let r = submit_code(&c, &s, &challenge, &codes[3]).await;
    assert_eq!(r.status(), 401, "recovery code used twice");
    let r = submit_code(&c, &s, &challenge, &codes[4]).await;
    assert_eq!(r.status(), 302);
    follow(&c, &s.base, location(&r)).await;

    // `optional`: the user may turn TOTP off, with a code.
    let r = manage(&codes[6], "off").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Two-step verification is off")
    );
    let (_, out, _) = s.cli(&["users", "show", "olga"]);
    assert!(out.contains("\"totp\": false"), "{out}");

    // Nothing secret in the log.
    let log = s.log_text();
    for code in &codes {
        assert!(!log.contains(code.as_str()), "recovery code in the log");
    }
    assert!(
        !log.contains(&totp::base32(&secret)),
        "TOTP secret in the log"
    );
}
on_both!(enrol_and_sign_in, enrol_sign_out_sign_in_with_code);

async fn required_forces_enrolment(backend: Backend) {
    let s = Server::start(backend, "mfa = \"required\"").await;
    create_user(&s, "rita", "rita@example.com");
    let c = browser_lang("ja");
    let r = password_step(&c, &s, "/hello", "rita").await;
    let setup = absolute(&s.base, &location(&r));
    assert!(setup.contains("/oauth2/pool/mfa/setup?req="), "{setup}");
    // Not signed in yet: the protected page still sends us to sign in.
    let page = get_text(&c, &setup).await;
    assert!(page.contains("2段階認証"), "Japanese page: {page}");
    let secret = secret_on_page(&page);
    let r = submit_setup(&c, &s, &page, &secret, step_now()).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert_eq!(recovery_codes(&html).len(), 10);
    let (action, csrf) = form(&html, &s.base, "/mfa/continue");
    let r = c
        .post(action)
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(location(&r).contains("/oauth2/idpresponse?code="));
    let (r, _) = follow(&c, &s.base, location(&r)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        claims(&c, &s).await["amr"],
        serde_json::json!(["pwd", "otp", "mfa"])
    );

    // `required`: it cannot be turned off.
    let page = get_text(&c, &s.url("/oauth2/pool/mfa/setup")).await;
    assert!(!page.contains("value=\"off\""), "{page}");
    let (url, csrf) = form(&page, &s.base, "/mfa/manage");
    let r = c
        .post(url)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("code", "000000"),
            ("action", "off"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The challenge page without a password first: told to sign in again.
    let other = browser();
    let r = other.get(s.url("/oauth2/pool/mfa")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("Sign in again"));
}
on_both!(required, required_forces_enrolment);

async fn wrong_codes_lock_out_unlock_and_mfa_reset(backend: Backend) {
    let s = Server::start(
        backend,
        "mfa = \"optional\"\nlockout = { max_attempts = 3, initial = \"60s\" }",
    )
    .await;
    create_user(&s, "lena", "lena@example.com");
    let c = browser();
    let r = password_step(&c, &s, "/hello", "lena").await;
    follow(&c, &s.base, location(&r)).await;
    let page = get_text(&c, &s.url("/oauth2/pool/mfa/setup")).await;
    let secret = secret_on_page(&page);
    let step = step_now();
    assert_eq!(
        submit_setup(&c, &s, &page, &secret, step).await.status(),
        200
    );
    sign_out(&c, &s).await;

    let r = password_step(&c, &s, "/hello", "lena").await;
    let challenge = absolute(&s.base, &location(&r));
    for _ in 0..2 {
        assert_eq!(
            submit_code(&c, &s, &challenge, "000000").await.status(),
            401
        );
    }
    // The right password again does not reset the count: only a complete sign-in does
    // (else every right password would buy a fresh set of code guesses).
    let r = password_step(&c, &s, "/hello", "lena").await;
    let challenge = absolute(&s.base, &location(&r));
    let r = submit_code(&c, &s, &challenge, "999999").await;
    assert_eq!(r.status(), 429, "third wrong code locks");
    assert!(r.text().await.unwrap().contains("Try again in"));
    // Locked: even the right code, and the password, wait.
    let good = totp::code_at_step(&secret, (step + 1).max(step_now()));
    assert_eq!(submit_code(&c, &s, &challenge, &good).await.status(), 429);
    let other = browser();
    let r = password_step(&other, &s, "/hello", "lena").await;
    assert_eq!(r.status(), 429, "the same lockout as wrong passwords");

    // The admin unlock lifts it (API), and the right code then works.
    let r = admin_api(&s, reqwest::Method::POST, "/pool/users/lena/unlock").await;
    assert_eq!(r.status(), 200);
    let r = submit_code(&c, &s, &challenge, &good).await;
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
    follow(&c, &s.base, location(&r)).await;

    // mfa-reset (API and CLI): the factor is gone; sign-in is back to the password alone.
    let shown: serde_json::Value = admin_api(&s, reqwest::Method::GET, "/pool/users/lena")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["mfa"]["totp"], true, "{shown}");
    let r: serde_json::Value = admin_api(&s, reqwest::Method::POST, "/pool/users/lena/mfa-reset")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["totp_removed"], true);
    let (ok, out, _) = s.cli(&["users", "mfa-reset", "LENA"]);
    assert!(ok && out.contains("had no TOTP"), "{out}");
    let (_, out, _) = s.cli(&["users", "show", "lena"]);
    assert!(out.contains("\"totp\": false"), "{out}");
    // Removing a passkey the user does not have says so, with the command that lists them.
    let r = admin_api(
        &s,
        reqwest::Method::DELETE,
        "/pool/users/lena/passkeys/nope",
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("pool users passkeys lena"));
    let (ok, _, err) = s.cli(&["users", "remove-passkey", "lena", "nope"]);
    assert!(!ok && err.contains("has no passkey"), "{err}");
    sign_out(&c, &s).await;
    let r = password_step(&c, &s, "/hello", "lena").await;
    assert!(location(&r).contains("/oauth2/idpresponse?code="));
}
on_both!(lockout_and_reset, wrong_codes_lock_out_unlock_and_mfa_reset);

/// Without `pool.mfa` and `pool.passkeys` the pages do not exist and the password is enough.
async fn off_by_default(backend: Backend) {
    let s = Server::start(backend, "").await;
    create_user(&s, "otto", "otto@example.com");
    let c = browser();
    let r = password_step(&c, &s, "/hello", "otto").await;
    assert!(location(&r).contains("/oauth2/idpresponse?code="));
    follow(&c, &s.base, location(&r)).await;
    assert_eq!(claims(&c, &s).await["amr"], serde_json::json!(["pwd"]));
    for path in [
        "/oauth2/pool/mfa/setup",
        "/oauth2/pool/passkeys",
        "/oauth2/pool/assets/passkeys.js",
    ] {
        let status = c.get(s.url(path)).send().await.unwrap().status();
        assert_eq!(status, 404, "{path}");
    }
    let login = get_text(&c, &s.url("/oauth2/pool/login")).await;
    assert!(
        !login.contains("<script") && !login.contains("passkey"),
        "{login}"
    );
}
on_both!(off, off_by_default);

/// Switching to `required` is not bypassed by a pool session that signed in with a password
/// only: single sign-on from it stops, and the user signs in again (and sets up TOTP).
async fn required_is_not_bypassed_by_an_older_session(backend: Backend) {
    let mut s = Server::start(backend, "mfa = \"optional\"").await;
    create_user(&s, "saul", "saul@example.com");
    let c = browser();
    let r = password_step(&c, &s, "/hello", "saul").await;
    follow(&c, &s.base, location(&r)).await;
    let authorize = s.url(&format!(
        "/oauth2/pool/authorize?client_id=portcullis&response_type=code&scope=openid&state=s1&redirect_uri={}",
        url::form_urlencoded::byte_serialize(s.url("/oauth2/idpresponse").as_bytes())
            .collect::<String>()
    ));
    let r = c.get(&authorize).send().await.unwrap();
    assert!(
        location(&r).contains("/oauth2/idpresponse?code="),
        "SSO while optional"
    );
    s.kill9();
    let text = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("mfa = \"optional\"", "mfa = \"required\"");
    std::fs::write(&s.config, text).unwrap();
    s.spawn().await;
    let r = c.get(&authorize).send().await.unwrap();
    assert!(
        location(&r).contains("/oauth2/pool/login?req="),
        "a password-only session no longer signs in: {}",
        location(&r)
    );
}
on_both!(
    required_after_optional,
    required_is_not_bypassed_by_an_older_session
);

/// Unauthenticated passkey challenges (the review's F10; CWE-400, CWE-770): `POST
/// /passkeys/login/options` needs no session, only the CSRF pair, so it may not write a row
/// per call. 2000 sequential calls from one browser leave the challenge table bounded (the
/// challenge travels sealed in the browser's cookie; only an answered one is remembered, until
/// it expires, to keep it single-use).
async fn passkey_options_write_nothing(backend: Backend) {
    use sqlx::Row;
    let s = Server::start(backend, "passkeys = true").await;
    let c = browser();
    let page = get_text(&c, &s.url("/oauth2/pool/login")).await;
    let csrf = hidden(&page, "csrf_token");
    let options = s.url("/oauth2/pool/passkeys/login/options");
    for i in 0..2000 {
        let r = c
            .post(&options)
            .form(&[("csrf_token", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "call {i}");
        if i == 0 {
            let v: serde_json::Value = r.json().await.unwrap();
            assert!(
                v["challenge"].as_str().is_some_and(|c| c.len() >= 43),
                "{v}"
            );
        }
    }
    let db = s.database().await;
    let rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM mfa_challenges")
        .fetch_one(&db)
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert!(
        rows <= 10,
        "2000 unauthenticated options calls left {rows} challenge rows"
    );
}
on_both!(passkey_options_flood, passkey_options_write_nothing);

/// Second-factor guesses in a burst (the review's I1; CWE-307, CWE-362): 60 wrong codes
/// written at once by one browser between password and code are counted before any is
/// checked, so no more than `max_attempts` are evaluated (401); the rest are refused as
/// locked (429), as a sequence would be.
async fn a_burst_of_wrong_codes_passes_no_more_than_the_lockout(backend: Backend) {
    let s = Server::start(
        backend,
        "mfa = \"optional\"\nlockout = { max_attempts = 5, initial = \"60s\" }",
    )
    .await;
    create_user(&s, "bea", "bea@example.com");
    let c = browser();
    let r = password_step(&c, &s, "/hello", "bea").await;
    follow(&c, &s.base, location(&r)).await;
    let page = get_text(&c, &s.url("/oauth2/pool/mfa/setup")).await;
    let secret = secret_on_page(&page);
    assert_eq!(
        submit_setup(&c, &s, &page, &secret, step_now())
            .await
            .status(),
        200
    );
    sign_out(&c, &s).await;
    let r = password_step(&c, &s, "/hello", "bea").await;
    let challenge = absolute(&s.base, &location(&r));
    let page = get_text(&c, &challenge).await;
    let (action, csrf) = form(&page, &s.base, "/mfa");
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (c, action, csrf) = (c.clone(), action.clone(), csrf.clone());
        tasks.push(tokio::spawn(async move {
            let code = format!("{:06}", 100_000 + i);
            c.post(action)
                .form(&[("csrf_token", csrf.as_str()), ("code", code.as_str())])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut counts = std::collections::BTreeMap::new();
    for t in tasks {
        *counts.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    let evaluated = counts.get(&401).copied().unwrap_or(0) + counts.get(&302).copied().unwrap_or(0);
    assert!(
        evaluated <= 5,
        "{evaluated} of 60 concurrent codes were checked with max_attempts = 5: {counts:?}"
    );
    assert_eq!(
        counts.keys().filter(|k| ![401, 429].contains(k)).count(),
        0,
        "unexpected answers: {counts:?}"
    );
}
on_both!(
    code_burst,
    a_burst_of_wrong_codes_passes_no_more_than_the_lockout
);

/// Signs `name` in through the app with the password only, opens the step-up route (403)
/// and follows its "sign in again" link; (the sign-in page's URL, its HTML, the link).
async fn step_up_sign_in_page(
    c: &reqwest::Client,
    s: &Server,
    name: &str,
) -> (String, String, String) {
    let r = password_step(c, s, "/hello", name).await;
    follow(c, &s.base, location(&r)).await;
    let r = c.get(s.url("/admin/panel")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    let link = page
        .split("href=\"")
        .nth(1)
        .and_then(|h| h.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    let (login, _) = follow(c, &s.base, s.url(&link)).await;
    let login_url = login.url().to_string();
    (login_url, login.text().await.unwrap(), link)
}

/// A step-up (a route that requires `amr = "mfa"`) for a user with no second factor yet: the
/// 403's link asks the pool for a second factor (`acr_values=mfa`); the sign-in page has the
/// user's name filled in; after the password the user sets up TOTP and lands on the page —
/// never round the 403 again.
async fn step_up_without_a_factor_sets_one_up_then_shows_the_page(backend: Backend) {
    let mut s = Server::start(backend, "mfa = \"optional\"").await;
    add_step_up_route(&mut s).await;
    create_user(&s, "paul", "paul@example.com");
    let c = browser();
    let (login_url, html, link) = step_up_sign_in_page(&c, &s, "paul").await;
    assert!(link.contains("acr_values=mfa"), "{link}");
    assert!(
        html.contains("name=\"username\" autocomplete=\"username\" value=\"paul\""),
        "step-up prefills the user name: {html}"
    );
    let r = sign_in(&c, &s, &login_url, "paul", PASSWORD).await;
    let setup_url = absolute(&s.base, &location(&r));
    assert!(
        setup_url.contains("/oauth2/pool/mfa/setup?req="),
        "no factor yet: set one up, carrying the request ({setup_url})"
    );
    let setup = get_text(&c, &setup_url).await;
    assert!(
        setup.contains("This page needs two-step verification"),
        "{setup}"
    );
    let secret = secret_on_page(&setup);
    let r = submit_setup(&c, &s, &setup, &secret, step_now()).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let r = submit_form(&c, &s.base, &html, "/mfa/continue", &[]).await;
    let (r, hops) = follow(&c, &s.base, location(&r)).await;
    assert_eq!(hops.last().unwrap(), &s.url("/admin/panel"), "{hops:?}");
    assert_eq!(r.status(), 200, "the page, not the 403 again");
    assert_eq!(
        claims(&c, &s).await["amr"],
        serde_json::json!(["pwd", "otp", "mfa"])
    );
}
on_both!(
    step_up_setup,
    step_up_without_a_factor_sets_one_up_then_shows_the_page
);

/// With `pool.mfa = "off"` the pool says it cannot give the second factor, instead of handing
/// out a code that sends the browser round the same 403.
async fn step_up_with_mfa_off_says_so(backend: Backend) {
    let mut s = Server::start(backend, "").await;
    add_step_up_route(&mut s).await;
    create_user(&s, "rita", "rita@example.com");
    let c = browser();
    let (login_url, _, _) = step_up_sign_in_page(&c, &s, "rita").await;
    let r = sign_in(&c, &s, &login_url, "rita", PASSWORD).await;
    assert_eq!(r.status(), 403);
    let html = r.text().await.unwrap();
    assert!(html.contains("which this site does not offer"), "{html}");
    // `/oauth2/start` passes on no other `acr_values` (nor markup in one).
    for bad in ["%3Cscript%3Ealert(1)%3C/script%3E", "mfa%20phr", "MFA", ""] {
        let r = c
            .get(s.url(&format!("/oauth2/start?rd=/admin&acr_values={bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "acr_values={bad}");
        assert!(!r.text().await.unwrap().contains("<script>"));
    }
}
on_both!(step_up_mfa_off, step_up_with_mfa_off_says_so);
