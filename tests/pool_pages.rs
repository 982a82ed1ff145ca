//! The hosted pages' defences and messages: CSRF on every form, escaping of reflected and
//! stored values, every attribute/phone/password problem reported at once, no user
//! enumeration by message or timing, lockout shared by case/width variants of a name with
//! admin unlock, the forced change of a temporary password, and forgot → reset → sign in.

mod pool_support;

use std::time::Instant;

use pool_support::*;

const FORMS: &[&str] = &[
    "/login",
    "/signup",
    "/confirm",
    "/resend-code",
    "/forgot-password",
    "/reset-password",
    "/change-password",
];

async fn every_form_requires_the_csrf_token(backend: Backend) {
    let s = Server::start(backend, "").await;
    create_user(&s, "dave", "dave@example.com");
    let c = browser();
    // Get a CSRF cookie and a valid token from a real page.
    let page = c
        .get(s.url("/oauth2/pool/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (_, token) = form(&page, &s.base, "/login");
    assert_eq!(token.len(), 40);
    for path in FORMS {
        let url = s.url(&format!("/oauth2/pool{path}"));
        let fields = [
            ("username", "dave"),
            ("password", PASSWORD),
            ("code", "123456"),
            ("new_password", "Another-Pass-9"),
            ("email", "x@example.com"),
        ];
        // Missing token, a wrong token, and a right token from a browser without the cookie.
        let missing = c.post(&url).form(&fields).send().await.unwrap();
        assert_eq!(missing.status(), 403, "{path} without csrf_token");
        let mut wrong: Vec<(&str, &str)> = fields.to_vec();
        wrong.push(("csrf_token", "0000000000000000000000000000000000000000"));
        assert_eq!(
            c.post(&url).form(&wrong).send().await.unwrap().status(),
            403,
            "{path} with a wrong csrf_token"
        );
        let mut stolen: Vec<(&str, &str)> = fields.to_vec();
        stolen.push(("csrf_token", &token));
        let other = browser();
        assert_eq!(
            other
                .post(&url)
                .form(&stolen)
                .send()
                .await
                .unwrap()
                .status(),
            403,
            "{path}: a token is bound to its cookie"
        );
    }
    // Nothing happened: dave can still sign in with his password.
    let r = sign_in(&c, &s, &s.url("/oauth2/pool/login"), "dave", PASSWORD).await;
    assert_eq!(r.status(), 200);
}
on_both!(csrf, every_form_requires_the_csrf_token);

async fn reflected_and_stored_values_are_escaped(backend: Backend) {
    let s = Server::start(backend, "signup_attributes = [\"name\"]").await;
    let c = browser();
    let evil = "<script>alert(1)</script>\"'";
    let page = c
        .get(s.url("/oauth2/pool/signup"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (action, csrf) = form(&page, &s.base, "/signup");
    let r = c
        .post(&action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", evil),
            ("email", evil),
            ("name", evil),
            ("password", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(
        !html.contains("<script>alert(1)"),
        "reflected value not escaped:\n{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "{html}"
    );
    // A stored name with markup, shown back on the signed-in page.
    let (ok, out, err) = s.cli(&[
        "users",
        "add",
        "<b>bold</b>",
        "--password",
        PASSWORD,
        "--permanent",
        "--attribute",
        "email=b@example.com",
    ]);
    assert!(ok, "{out}{err}");
    let r = sign_in(
        &c,
        &s,
        &s.url("/oauth2/pool/login"),
        "<b>bold</b>",
        PASSWORD,
    )
    .await;
    let html = r.text().await.unwrap();
    assert!(
        html.contains("&lt;b&gt;bold&lt;&#x2f;b&gt;") && !html.contains("<b>bold"),
        "{html}"
    );
    // The query string is escaped too.
    let r = c
        .get(s.url("/oauth2/pool/confirm?username=%22%3E%3Cscript%3Ex()%3C/script%3E"))
        .send()
        .await
        .unwrap();
    assert!(!r.text().await.unwrap().contains("<script>x()"));
}
on_both!(escaping, reflected_and_stored_values_are_escaped);

async fn every_attribute_and_phone_problem_is_reported_by_name(backend: Backend) {
    let s = Server::start(
        backend,
        "required_attributes = [\"email\", \"phone_number\", \"name\", \"custom:team\"]\nsignup_attributes = [\"birthdate\", \"website\"]\ndefault_phone_region = \"JP\"",
    )
    .await;
    let c = browser();
    let page = c
        .get(s.url("/oauth2/pool/signup"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for field in [
        "name=\"email\"",
        "name=\"phone_number\"",
        "name=\"name\"",
        "name=\"custom:team\"",
        "name=\"birthdate\"",
        "name=\"website\"",
    ] {
        assert!(page.contains(field), "sign-up form lacks {field}");
    }
    let (action, csrf) = form(&page, &s.base, "/signup");
    let r = c
        .post(&action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "has space"),
            ("email", "not-an-email"),
            ("phone_number", "12345"),
            ("birthdate", "23/04/1990"),
            ("website", "javascript:alert(1)"),
            ("password", "short"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let html = unescape(&r.text().await.unwrap());
    // Each problem by the field's label (custom attributes by their name), in form order.
    let expected = [
        "User name: May not contain spaces or control characters.",
        "Email: “not-an-email” is not an email address like name@example.com.",
        "Phone number: “12345” is not a valid phone number. Enter it like +81 90 1234 5678, or 090-1234-5678 for a number in Japan.",
        "Full name: Required.",
        "custom:team: Required.",
        "Date of birth (YYYY-MM-DD): “23/04/1990” is not a date in the form YYYY-MM-DD, like 1990-04-23.",
        "website: “javascript:alert(1)” is not a web address starting with https://.",
        "Password: Does not meet these rules: at least 8 characters; an uppercase letter; a digit.",
    ];
    let text = visible_text(&html);
    let mut at = 0;
    for e in expected {
        let found = text[at..]
            .find(e)
            .unwrap_or_else(|| panic!("missing (or out of form order) {e:?} in\n{text}"));
        at += found + e.len();
    }
    // A national-form number is accepted and stored as E.164.
    let (action, csrf) = form(&html, &s.base, "/signup");
    let r = c
        .post(&action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "hanako"),
            ("email", "hanako@example.jp"),
            ("phone_number", "090-1234-5678"),
            ("name", "Hanako"),
            ("custom:team", "blue"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let (ok, out, _) = s.cli(&["users", "show", "hanako"]);
    assert!(
        ok && out.contains("\"phone_number\": \"+819012345678\"") && out.contains("UNCONFIRMED"),
        "{out}"
    );
    // Admin create enforces the same required attributes, all at once.
    let (ok, _, err) = s.cli(&["users", "add", "taro", "--attribute", "phone_number=+1 555"]);
    assert!(!ok);
    for e in [
        "email: required.",
        "name: required.",
        "custom:team: required.",
        "phone_number: “+1 555” is not a valid phone number.",
    ] {
        assert!(err.contains(e), "admin create lacks {e:?}: {err}");
    }
}
on_both!(
    attributes,
    every_attribute_and_phone_problem_is_reported_by_name
);

/// Failed sign-ins for an unknown user look and take the same as a wrong password.
async fn unknown_users_are_indistinguishable(backend: Backend) {
    let s = Server::start(
        backend,
        "lockout = { max_attempts = 1000, ip_max_attempts = 0 }",
    )
    .await;
    create_user(&s, "erin", "erin@example.com");
    let c = browser();
    let login = s.url("/oauth2/pool/login");
    let page = c.get(&login).send().await.unwrap().text().await.unwrap();
    let (action, csrf) = form(&page, &s.base, "/login");
    let attempt = |name: &'static str| {
        let c = c.clone();
        let action = action.clone();
        let csrf = csrf.clone();
        async move {
            let t = Instant::now();
            let r = c
                .post(&action)
                .form(&[
                    ("csrf_token", csrf.as_str()),
                    ("username", name),
                    ("password", "Wrong-Password-1"),
                ])
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body = r.text().await.unwrap().replace(name, "NAME");
            (status, body, t.elapsed().as_secs_f64())
        }
    };
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    let (_, body_known, _) = attempt("erin").await;
    let (_, body_unknown, _) = attempt("nosuchuser").await;
    assert_eq!(body_known, body_unknown, "the pages differ");
    for _ in 0..25 {
        let (sk, _, tk) = attempt("erin").await;
        let (su, _, tu) = attempt("nosuchuser").await;
        assert_eq!(
            (sk, su),
            (
                reqwest::StatusCode::UNAUTHORIZED,
                reqwest::StatusCode::UNAUTHORIZED
            )
        );
        known.push(tk);
        unknown.push(tu);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (mk, mu) = (median(&mut known), median(&mut unknown));
    // Both pay one Argon2 verification; a skipped hash would make unknown users several
    // times faster. Allow 35% (or 15 ms) of scheduling noise on a shared 2-core machine.
    let diff = (mk - mu).abs();
    assert!(
        diff < (mk.max(mu) * 0.35).max(0.015),
        "median known {mk:.4}s vs unknown {mu:.4}s"
    );
    // Sign-in by email and the forgot-password page give nothing away either.
    let (_, by_email, _) = attempt("erin@example.com").await;
    assert_eq!(by_email.replace("erin@example.com", "NAME"), body_known);
}
on_both!(enumeration, unknown_users_are_indistinguishable);

async fn lockout_is_shared_by_name_variants_and_admin_unlock_lifts_it(backend: Backend) {
    let s = Server::start(backend, "lockout = { initial = \"1m\" }").await;
    create_user(&s, "frank", "frank@example.com");
    let c = browser();
    let login = s.url("/oauth2/pool/login");
    // Five failures through five spellings of one name: case, full width, email.
    let variants = [
        "frank",
        "FRANK",
        "Ｆｒａｎｋ",
        "frank@example.com",
        "ＦＲＡＮＫ",
    ];
    for (i, v) in variants.iter().enumerate() {
        let r = sign_in(&c, &s, &login, v, "Wrong-Password-1").await;
        let status = r.status();
        let html = r.text().await.unwrap();
        if i < 4 {
            assert_eq!(status, 401, "attempt {i}");
            assert!(html.contains("Incorrect user name or password."));
        } else {
            assert_eq!(status, 429, "the fifth failure locks");
            assert!(
                html.contains("Too many failed sign-in attempts. Try again in 1 minute."),
                "{html}"
            );
        }
    }
    // Locked: even the right password is refused, and the page says when to retry.
    let r = sign_in(&c, &s, &login, "frank", PASSWORD).await;
    assert_eq!(r.status(), 429);
    assert!(r.text().await.unwrap().contains("Try again in"));
    // An unknown name locks the same way (no enumeration through lockout).
    for _ in 0..5 {
        sign_in(&c, &s, &login, "ghost", "Wrong-Password-1").await;
    }
    assert_eq!(
        sign_in(&c, &s, &login, "ghost", "Wrong-Password-1")
            .await
            .status(),
        429
    );
    // Admin unlock (by another spelling) lifts it at once.
    let (ok, out, err) = s.cli(&["users", "unlock", "FRANK"]);
    assert!(ok && out.contains("unlocked"), "{out}{err}");
    let r = sign_in(&c, &s, &login, "Frank", PASSWORD).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}
on_both!(
    lockout,
    lockout_is_shared_by_name_variants_and_admin_unlock_lifts_it
);

async fn temporary_password_forces_a_change(backend: Backend) {
    let s = Server::start(backend, "").await;
    let (ok, out, err) = s.cli(&[
        "users",
        "add",
        "gina",
        "--attribute",
        "email=gina@example.com",
        // An address the admin vouches for: only a verified one is forwarded as identity.
        "--attribute",
        "email_verified=true",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "FORCE_CHANGE_PASSWORD");
    let temp = v["temporary_password"].as_str().unwrap().to_string();
    let c = browser();
    let (r, _) = follow(&c, &s.base, s.url("/app")).await;
    let login_url = r.url().to_string();
    let r = sign_in(&c, &s, &login_url, "gina", &temp).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Choose a new password") && html.contains("name=\"challenge\""),
        "{html}"
    );
    let (action, csrf) = form(&html, &s.base, "/change-password");
    let challenge = unescape(
        html.split("name=\"challenge\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap(),
    );
    // The policy applies to the new password.
    let r = c
        .post(&action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("challenge", challenge.as_str()),
            ("new_password", "weak"),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        visible_text(&r.text().await.unwrap()).contains("New password: Does not meet these rules")
    );
    let r = c
        .post(&action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("challenge", challenge.as_str()),
            ("new_password", "Brand-New-Pass-1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let (r, _) = follow(&c, &s.base, absolute(&s.base, &location(&r))).await;
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["x-forwarded-email"], "gina@example.com");
    let (_, out, _) = s.cli(&["users", "show", "gina"]);
    assert!(out.contains("\"status\": \"CONFIRMED\""));
}
on_both!(forced_change, temporary_password_forces_a_change);

async fn forgot_password_reset_then_sign_in(backend: Backend) {
    let s = Server::start(backend, "").await;
    create_user(&s, "hank", "hank@example.com");
    let c = browser();
    let page = c
        .get(s.url("/oauth2/pool/forgot-password"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (action, csrf) = form(&page, &s.base, "/forgot-password");
    // Known and unknown accounts get the same answer.
    let known = c
        .post(&action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "hank@example.com"),
        ])
        .send()
        .await
        .unwrap();
    let unknown = c
        .post(&action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "nobody@example.com"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(known.status(), unknown.status());
    let reset_url = absolute(&s.base, &location(&known));
    assert_eq!(
        location(&unknown).replace("nobody", "hank"),
        location(&known)
    );
    let page = c
        .get(&reset_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("If the account exists, we sent a code"));
    let (action, csrf) = form(&page, &s.base, "/reset-password");
    let code = s.code_for("hank", "reset");
    let bad = c
        .post(&action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "hank"),
            ("code", "000000"),
            ("new_password", "Reset-Pass-22"),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("The code is not correct or has expired.")
    );
    let r = c
        .post(&action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "hank"),
            ("code", code.as_str()),
            ("new_password", "Reset-Pass-22"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    // The code is single-use.
    let again = c
        .post(&action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "hank"),
            ("code", code.as_str()),
            ("new_password", "Reset-Pass-33"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
    assert_eq!(
        sign_in(&c, &s, &s.url("/oauth2/pool/login"), "hank", PASSWORD)
            .await
            .status(),
        401
    );
    assert_eq!(
        sign_in(
            &c,
            &s,
            &s.url("/oauth2/pool/login"),
            "hank",
            "Reset-Pass-22"
        )
        .await
        .status(),
        200
    );
}
on_both!(forgot_reset, forgot_password_reset_then_sign_in);

async fn codes_allow_only_a_few_attempts(backend: Backend) {
    let s = Server::start(backend, "").await;
    let c = browser();
    let (r, _) = follow(&c, &s.base, s.url("/")).await;
    let html = r.text().await.unwrap();
    let confirm_url = sign_up(&c, &s, &html, "ivy", "ivy@example.com").await;
    let page = c
        .get(&confirm_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (action, csrf) = form(&page, &s.base, "/confirm");
    let code = s.code_for("ivy", "signup");
    let wrong = if code == "111111" { "222222" } else { "111111" };
    for _ in 0..5 {
        c.post(&action)
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("username", "ivy"),
                ("code", wrong),
            ])
            .send()
            .await
            .unwrap();
    }
    // After five wrong guesses even the right code is refused; a new one must be requested.
    let r = c
        .post(&action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "ivy"),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Too many wrong codes. Request a new code.")
    );
    let (resend, csrf2) = form(&page, &s.base, "/resend-code");
    c.post(&resend)
        .form(&[("csrf_token", csrf2.as_str()), ("username", "ivy")])
        .send()
        .await
        .unwrap();
    let fresh = s.nth_code("ivy", "signup", 2);
    let r = c
        .post(&action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "ivy"),
            ("code", fresh.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);

    // Codes cannot be used to flood an inbox: at most 10 sends per user per hour.
    let page = c
        .get(s.url("/oauth2/pool/forgot-password"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (forgot, csrf3) = form(&page, &s.base, "/forgot-password");
    for _ in 0..12 {
        let r = c
            .post(&forgot)
            .form(&[("csrf_token", csrf3.as_str()), ("username", "ivy")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "the page answers the same either way");
    }
    // Reset codes go out in the background: wait for the eighth, then make sure no more follow.
    s.nth_code("ivy", "reset", 8);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let sent = s.codes("ivy", "signup").len() + s.codes("ivy", "reset").len();
    assert_eq!(
        sent, 10,
        "two sign-up codes and eight reset codes, then nothing"
    );
}
on_both!(code_attempts, codes_allow_only_a_few_attempts);

/// Signs up `username` with `email` on the hosted page; returns the answer's status.
async fn sign_up_as(s: &Server, c: &reqwest::Client, username: &str, email: &str) -> u16 {
    let (_, page) = get_page(c, &s.url("/oauth2/pool/signup")).await;
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
    r.status().as_u16()
}

// F9/F15: an unconfirmed sign-up's address holds nothing; the owner of the address (who gets
// the code) confirms, and the address is then one user's: the other sign-up can no longer
// take it, and sign-in by that address finds the owner.
async fn unverified_addresses_hold_nothing(backend: Backend) {
    let s = Server::start(backend, "").await;
    let squatter = browser();
    assert_eq!(
        sign_up_as(&s, &squatter, "squatter", "owner@example.com").await,
        302
    );
    let owner = browser();
    assert_eq!(
        sign_up_as(&s, &owner, "owner", "Owner@example.com").await,
        302,
        "an unconfirmed sign-up's address blocked its owner"
    );
    let confirm_url = s.url("/oauth2/pool/confirm?username=owner");
    confirm(&owner, &s, &confirm_url, "owner").await;
    // The squatter's code (if it could get it) no longer verifies the address.
    let (_, page) = get_page(&squatter, &s.url("/oauth2/pool/confirm?username=squatter")).await;
    let (action, csrf) = form(&page, &s.base, "/confirm");
    let code = s.code_for("squatter", "signup");
    let r = squatter
        .post(action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "squatter"),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("already exists"));
    // A third sign-up with the verified address is refused at once.
    assert_eq!(
        sign_up_as(&s, &browser(), "third", "owner@example.com").await,
        409
    );
    // Sign-in by the address is the owner's.
    let r = sign_in(
        &browser(),
        &s,
        &s.url("/oauth2/pool/login"),
        "OWNER@example.com",
        PASSWORD,
    )
    .await;
    assert_eq!(r.status(), 200);
    let (_, out, _) = s.cli(&["users", "show", "squatter"]);
    assert!(out.contains("UNCONFIRMED"), "{out}");
}
on_both!(unverified_addresses, unverified_addresses_hold_nothing);

/// Unauthenticated work is bounded (the red-team's inbox flood): sign-ups under many names
/// with one victim's address send that address at most 10 codes an hour, whatever the names
/// (each page answers as usual, so the bound reveals nothing); and one client address gets at
/// most 30 sign-ups an hour, then 429.
async fn sign_ups_cannot_flood_an_inbox_or_the_pool(backend: Backend) {
    let s = Server::start(backend, "").await;
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..14 {
        let st = sign_up_as(
            &s,
            &browser(),
            &format!("inbox-flood-{i}"),
            "Inbox-Victim@example.com",
        )
        .await;
        *statuses.entry(st).or_insert(0) += 1;
    }
    assert!(
        statuses.keys().all(|st| *st < 400),
        "every sign-up answers as usual: {statuses:?}"
    );
    // Codes are written as they are sent; give any background send a moment.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let sent: usize = (0..14)
        .map(|i| s.codes(&format!("inbox-flood-{i}"), "signup").len())
        .sum();
    assert!(
        sent <= 10,
        "{sent} codes sent to one address by 14 sign-ups ({statuses:?})"
    );
    assert!(sent >= 1, "the first sign-ups get their code");
    // The same client, other addresses: 30 sign-ups an hour, then 429.
    let mut i = 14;
    let refused = loop {
        let st = sign_up_as(
            &s,
            &browser(),
            &format!("many-{i}"),
            &format!("many-{i}@example.com"),
        )
        .await;
        if st == 429 {
            break i;
        }
        assert!(
            i < 40,
            "{} sign-ups from one client address, none refused (last {st})",
            i + 1
        );
        i += 1;
    };
    assert_eq!(refused, 30, "the 31st sign-up from one address is refused");
}
on_both!(sign_up_flood, sign_ups_cannot_flood_an_inbox_or_the_pool);

/// A browser signed in (through the app) as `name`, with [`PASSWORD`].
async fn signed_in(s: &Server, name: &str) -> reqwest::Client {
    let c = browser();
    let (r, _) = follow(&c, &s.base, s.url("/hello")).await;
    let r = sign_in(&c, s, r.url().as_str(), name, PASSWORD).await;
    follow(&c, &s.base, location(&r)).await;
    c
}

/// Sign-up with every field wrong: every problem at once, next to its field (`aria-invalid`,
/// the message under the input), named by the field's label in the page's language, never by
/// the form key; the form does not leave validation to the browser (`novalidate`).
async fn sign_up_problems_sit_at_their_fields_by_label(backend: Backend) {
    let s = Server::start(
        backend,
        "required_attributes = [\"email\"]\nsignup_attributes = [\"name\", \"phone_number\"]\ndefault_phone_region = \"JP\"",
    )
    .await;
    create_user(&s, "taken", "taken@example.com");
    for (lang, labels, region) in [
        (
            "en",
            ["User name", "Email", "Phone number", "Password"],
            "Japan",
        ),
        (
            "ja",
            ["ユーザー名", "メールアドレス", "電話番号", "パスワード"],
            "日本",
        ),
    ] {
        let c = browser_lang(lang);
        let (_, page) = get_page(&c, &s.url("/oauth2/pool/signup")).await;
        assert!(
            page.contains("/signup\" novalidate>"),
            "the sign-up form leaves validation to the server: {page}"
        );
        let fields = [
            ("username", "taken"),
            ("email", "not-an-email"),
            ("phone_number", "12345"),
            ("password", "weak"),
        ];
        let r = submit_form(&c, &s.base, &page, "/signup", &fields).await;
        assert_eq!(r.status(), 400, "{lang}");
        let html = r.text().await.unwrap();
        let text = visible_text(&html);
        for (key, _) in fields {
            assert!(
                !text.contains(&format!("{key}:")),
                "{lang}: internal key {key} shown: {text}"
            );
        }
        // The list at the top: one line per field, by label, in form order; the user name
        // already taken is reported in the same round as the rest.
        let list = html
            .split("<div class=\"errors\" role=\"alert\">")
            .nth(1)
            .and_then(|l| l.split("</div>").next())
            .unwrap_or_else(|| panic!("{lang}: no error list: {html}"));
        let list = visible_text(list);
        let mut at = 0;
        for l in labels {
            let found = list[at..]
                .find(l)
                .unwrap_or_else(|| panic!("{lang}: {l} missing or out of order in {list}"));
            at += found + l.len();
        }
        assert!(list.contains(region), "{lang}: region named: {list}");
        // Next to each field: marked invalid, with its message right under it.
        for (f, _) in fields {
            assert!(
                html.contains(&format!("aria-describedby=\"{f}-error\"")),
                "{lang}: {f} not marked"
            );
            let after_input = html
                .split(&format!("id=\"{f}\""))
                .nth(1)
                .and_then(|rest| rest.split("<label").next())
                .unwrap();
            assert!(
                after_input.contains(&format!("class=\"field-error\" id=\"{f}-error\"")),
                "{lang}: {f}'s message is not next to it: {after_input}"
            );
        }
    }
}
on_both!(
    field_messages,
    sign_up_problems_sit_at_their_fields_by_label
);

/// Change password: a wrong current password is called that (not "incorrect user name or
/// password"), at the current-password field. Reset: a password-rule error keeps the code
/// typed, and names the new-password field by its label.
async fn password_pages_name_their_fields(backend: Backend) {
    let s = Server::start(backend, "").await;
    create_user(&s, "carol", "carol@example.com");
    let c = signed_in(&s, "carol").await;
    let (_, page) = get_page(&c, &s.url("/oauth2/pool/change-password")).await;
    let r = submit_form(
        &c,
        &s.base,
        &page,
        "/change-password",
        &[
            ("password", "Not-The-Password-1"),
            ("new_password", "Another-Pass-9"),
        ],
    )
    .await;
    let text = visible_text(&r.text().await.unwrap());
    assert!(
        text.contains("Current password: Incorrect current password."),
        "{text}"
    );
    assert!(!text.contains("Incorrect user name or password"), "{text}");

    let (_, page) = get_page(&c, &s.url("/oauth2/pool/forgot-password")).await;
    let r = submit_form(
        &c,
        &s.base,
        &page,
        "/forgot-password",
        &[("username", "carol")],
    )
    .await;
    let (_, page) = get_page(&c, &absolute(&s.base, &location(&r))).await;
    let code = s.code_for("carol", "reset");
    let r = submit_form(
        &c,
        &s.base,
        &page,
        "/reset-password",
        &[
            ("username", "carol"),
            ("code", code.as_str()),
            ("new_password", "weak"),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(
        html.contains(&format!("value=\"{code}\"")),
        "the code typed is kept after a password-rule error: {html}"
    );
    let text = visible_text(&html);
    assert!(
        text.contains("New password: Does not meet these rules"),
        "{text}"
    );
    assert!(!text.contains("new_password:"), "{text}");
}
on_both!(password_fields, password_pages_name_their_fields);

/// A signed-in browser that opens /login sees who it is, with "continue" (to the app) and
/// "switch account" (the form).
async fn signed_in_login_offers_continue_and_switch(backend: Backend) {
    let s = Server::start(backend, "").await;
    create_user(&s, "dora", "dora@example.com");
    let c = signed_in(&s, "dora").await;
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/login")).await;
    let text = visible_text(&html);
    assert!(text.contains("You are signed in as dora"), "{text}");
    let html = unescape(&html);
    assert!(
        html.contains(&format!("href=\"{}/\"", s.base)),
        "continue to the app: {html}"
    );
    assert!(html.contains("/oauth2/pool/login?switch=1"), "{html}");
    assert!(!html.contains("name=\"password\""), "{html}");
    let (_, switch) = get_page(&c, &s.url("/oauth2/pool/login?switch=1")).await;
    assert!(switch.contains("name=\"password\""), "{switch}");
}
on_both!(signed_in_login, signed_in_login_offers_continue_and_switch);
