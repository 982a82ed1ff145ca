//! The admin console (SPEC §7.3) through the real binary: only members of `pool.admin_group`
//! signed in through the pool get in (others 403, strangers to sign-in and back); every form
//! needs its CSRF token; creating a user reports every missing or invalid attribute at once and
//! takes phone numbers as typed; the lockout is visible and one click clears it; disable ends
//! sign-in; groups are created, filled and deleted.

mod pool_support;

use pool_support::*;

const CONSOLE: &str = "admin_console = true\nrequired_attributes = [\"email\", \"name\", \"phone_number\"]\ndefault_phone_region = \"JP\"\nlockout = { max_attempts = 3, initial = \"60s\", max = \"15m\" }";

fn add_user(s: &Server, name: &str, email: &str, groups: &[&str]) {
    let mut args = vec![
        "users".to_string(),
        "add".into(),
        name.into(),
        "--password".into(),
        PASSWORD.into(),
        "--permanent".into(),
        "--attribute".into(),
        format!("email={email}"),
        "--attribute".into(),
        "name=Test User".into(),
        "--attribute".into(),
        "phone_number=+81 90 1234 5678".into(),
    ];
    for g in groups {
        args.push("--group".into());
        args.push(g.to_string());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = s.cli(&refs);
    assert!(ok, "users add {name}: {out}{err}");
}

/// A browser signed in to the pool as `name`.
async fn signed_in(s: &Server, name: &str) -> reqwest::Client {
    let c = browser();
    let r = sign_in(&c, s, &s.url("/oauth2/pool/login"), name, PASSWORD).await;
    assert_eq!(r.status(), 200, "sign-in of {name}");
    c
}

async fn only_admins_get_in(backend: Backend) {
    let s = Server::start(backend, CONSOLE).await;
    add_user(&s, "root", "root@example.com", &["admins"]);
    add_user(&s, "bob", "bob@example.com", &["staff"]);
    let users = s.url("/oauth2/pool/admin/users");

    // A stranger is sent to the pool's own sign-in, and comes back to the console after it.
    let c = browser();
    let r = c.get(&users).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/oauth2/pool/login");
    let r = sign_in(&c, &s, &s.url("/oauth2/pool/login"), "root", PASSWORD).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/oauth2/pool/admin");
    let (status, html) = get_page(&c, &users).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("root@example.com") && html.contains("bob@example.com"),
        "{html}"
    );
    assert!(!html.contains("<script"), "no script in the console");

    // Signed in, but not in the admin group.
    let bob = signed_in(&s, "bob").await;
    let (status, html) = get_page(&bob, &users).await;
    assert_eq!(status, 403);
    assert!(!html.contains("root@example.com"));
    // Not even a POST gets through (the gate comes before anything else).
    let (action, csrf) = form(
        &get_page(&c, &s.url("/oauth2/pool/admin/user?u=root"))
            .await
            .1,
        &s.base,
        "/user/disable",
    );
    let r = bob
        .post(&action)
        .form(&[("csrf_token", csrf.as_str()), ("u", "root")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A disabled admin's session no longer opens the console.
    let (ok, _, _) = s.cli(&["users", "disable", "root"]);
    assert!(ok);
    let r = c.get(&users).send().await.unwrap();
    assert_eq!(r.status(), 302, "back to sign-in");

    // Search by email part, status and group.
    s.cli(&["users", "enable", "root"]);
    let c = signed_in(&s, "root").await;
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/users?q=BOB%40")).await;
    assert!(html.contains("bob@example.com") && !html.contains("root@example.com"));
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/users?group=admins")).await;
    assert!(!html.contains("bob@example.com") && html.contains("root@example.com"));
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/users?status=DISABLED")).await;
    assert!(!html.contains("bob@example.com"));
}
on_both!(only_admins, only_admins_get_in);

async fn every_form_needs_its_csrf_token(backend: Backend) {
    let s = Server::start(backend, CONSOLE).await;
    add_user(&s, "root", "root@example.com", &["admins"]);
    add_user(&s, "carol", "carol@example.com", &[]);
    let c = signed_in(&s, "root").await;
    for (path, fields) in [
        ("/user/disable", vec![("u", "carol")]),
        ("/user/delete", vec![("u", "carol"), ("confirm", "yes")]),
        (
            "/users/new",
            vec![("username", "eve"), ("email", "eve@example.com")],
        ),
        ("/groups/new", vec![("group", "ops")]),
    ] {
        let url = s.url(&format!("/oauth2/pool/admin{path}"));
        let r = c.post(&url).form(&fields).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path} without csrf_token");
        let mut wrong = fields.clone();
        wrong.push(("csrf_token", "0000000000000000000000000000000000000000"));
        let r = c.post(&url).form(&wrong).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path} with a wrong csrf_token");
    }
    let (ok, out, _) = s.cli(&["users", "show", "carol"]);
    assert!(ok && out.contains("CONFIRMED"), "nothing happened: {out}");
    let (_, out, _) = s.cli(&["groups", "list"]);
    assert!(!out.contains("ops"), "{out}");
    // The CLI creates and deletes empty groups too, and the console lists them.
    let (ok, out, err) = s.cli(&["groups", "create", "ops"]);
    assert!(ok && out.contains("created group ops"), "{out}{err}");
    let (ok, _, err) = s.cli(&["groups", "create", "ops"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/groups")).await;
    assert!(html.contains(">ops</a>"), "{html}");
    let (ok, _, err) = s.cli(&["groups", "delete", "ops"]);
    assert!(ok, "{err}");
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/groups")).await;
    assert!(!html.contains(">ops</a>"), "{html}");
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/user?u=carol")).await;
    assert!(!html.contains("disabled"), "{html}");
}
on_both!(csrf, every_form_needs_its_csrf_token);

async fn create_reports_every_problem_then_succeeds(backend: Backend) {
    let s = Server::start(backend, CONSOLE).await;
    add_user(&s, "root", "root@example.com", &["admins"]);
    let c = signed_in(&s, "root").await;
    let (status, html) = get_page(&c, &s.url("/oauth2/pool/admin/users/new")).await;
    assert_eq!(status, 200);
    // Every required attribute is on the form, and the form leaves checking to the server.
    for name in ["username", "email", "name", "phone_number"] {
        assert!(
            html.contains(&format!("name=\"{name}\"")),
            "{name} on the form: {html}"
        );
    }
    assert!(html.contains("novalidate"));
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/users/new",
        &[
            ("username", "new user"),
            ("email", "not-an-email"),
            ("name", ""),
            ("phone_number", "12"),
            ("mode", "temporary"),
            ("temporary_password", "short"),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    let html = unescape(&r.text().await.unwrap());
    let errors = html
        .split("class=\"errors\"")
        .nth(1)
        .unwrap()
        .split("</div>")
        .next()
        .unwrap();
    for needle in [
        "username: may not contain spaces",
        "email: ",
        "name: ",
        "phone_number: ",
        "+81 90",
        "password",
    ] {
        assert!(errors.contains(needle), "{needle:?} missing in {errors}");
    }
    assert_eq!(errors.matches("<li>").count(), 5, "{errors}");
    // What was typed stays on the form.
    assert!(html.contains("value=\"not-an-email\""));

    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/users/new",
        &[
            ("username", "Dana"),
            ("email", "dana@example.com"),
            ("email_verified", "true"),
            ("name", "Dana Example"),
            ("phone_number", "090-1234-5678"),
            ("mode", "temporary"),
            ("temporary_password", ""),
        ],
    )
    .await;
    assert_eq!(r.status(), 201);
    let html = r.text().await.unwrap();
    assert!(html.contains("Temporary password (shown once)"), "{html}");
    assert!(html.contains("FORCE_CHANGE_PASSWORD"), "{html}");
    let (ok, out, _) = s.cli(&["users", "show", "dana"]);
    assert!(
        ok && out.contains("+819012345678") && out.contains("FORCE_CHANGE_PASSWORD"),
        "{out}"
    );

    // An invitation: no password shown, a code is sent and the user must choose a password.
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/users/new")).await;
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/users/new",
        &[
            ("username", "erin"),
            ("email", "erin@example.com"),
            ("name", "Erin"),
            ("phone_number", "+81 80 1111 2222"),
            ("mode", "invitation"),
        ],
    )
    .await;
    assert_eq!(r.status(), 201);
    assert!(r.text().await.unwrap().contains("invitation code was sent"));
    assert_eq!(s.code_for("erin", "reset").len(), 6);

    // Edit: a required attribute cannot be removed; all problems at once again.
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/user/edit?u=dana")).await;
    assert!(html.contains("value=\"+819012345678\""), "{html}");
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/user/edit",
        &[
            ("u", "dana"),
            ("email", "dana@example.com"),
            ("name", ""),
            ("phone_number", "abc"),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("name: ") && html.contains("phone_number: "),
        "{html}"
    );
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/user/edit",
        &[
            ("u", "dana"),
            ("email", "dana@example.com"),
            ("email_verified", "true"),
            ("name", "Dana Renamed"),
            ("phone_number", "03-1234-5678"),
        ],
    )
    .await;
    assert_eq!(r.status(), 302);
    let (_, out, _) = s.cli(&["users", "show", "dana"]);
    assert!(
        out.contains("Dana Renamed") && out.contains("+81312345678"),
        "{out}"
    );
}
on_both!(create, create_reports_every_problem_then_succeeds);

async fn lockout_is_visible_and_one_click_clears_it(backend: Backend) {
    let s = Server::start(backend, CONSOLE).await;
    add_user(&s, "root", "root@example.com", &["admins"]);
    add_user(&s, "carol", "carol@example.com", &[]);
    let login = s.url("/oauth2/pool/login");
    let other = browser();
    for _ in 0..3 {
        sign_in(&other, &s, &login, "carol", "Wrong-Password-1").await;
    }
    let r = sign_in(&other, &s, &login, "carol", PASSWORD).await;
    assert_eq!(r.status(), 429, "locked out");

    let c = signed_in(&s, "root").await;
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/user?u=carol")).await;
    assert!(html.contains("Locked: "), "{html}");
    assert!(html.contains("3 failed sign-ins"), "{html}");
    let r = submit_form(&c, &s.base, &html, "/user/unlock", &[("u", "carol")]).await;
    assert_eq!(r.status(), 302);
    let (_, html) = get_page(&c, &absolute(&s.base, &location(&r))).await;
    assert!(
        html.contains("Unlocked.") && html.contains("Not locked."),
        "{html}"
    );
    let r = sign_in(&other, &s, &login, "carol", PASSWORD).await;
    assert_eq!(r.status(), 200, "carol signs in again");
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/user?u=carol")).await;
    assert!(!html.contains("never"), "last sign-in shown: {html}");

    // Disable: sign-in refused and her pool session gone; enable brings her back.
    let r = submit_form(&c, &s.base, &html, "/user/disable", &[("u", "carol")]).await;
    assert_eq!(r.status(), 302);
    let r = sign_in(&browser(), &s, &login, "carol", PASSWORD).await;
    assert_eq!(r.status(), 403);
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/user?u=carol")).await;
    assert!(html.contains("DISABLED"));
    submit_form(&c, &s.base, &html, "/user/enable", &[("u", "carol")]).await;
    let r = sign_in(&browser(), &s, &login, "carol", PASSWORD).await;
    assert_eq!(r.status(), 200);

    // Groups: create, add carol, remove her, delete; delete needs its confirmation box.
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/groups")).await;
    let r = submit_form(&c, &s.base, &html, "/groups/new", &[("group", "auditors")]).await;
    assert_eq!(r.status(), 302);
    let (_, html) = get_page(&c, &absolute(&s.base, &location(&r))).await;
    assert!(html.contains("Group created."), "{html}");
    submit_form(
        &c,
        &s.base,
        &html,
        "/group/add",
        // Any spelling of the name (an address finds a user only once it is verified, and
        // carol's is not).
        &[("g", "auditors"), ("u", "CAROL")],
    )
    .await;
    let (_, out, _) = s.cli(&["users", "show", "carol"]);
    assert!(out.contains("auditors"), "{out}");
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/user?u=carol")).await;
    let r = submit_form(&c, &s.base, &html, "/user/delete", &[("u", "carol")]).await;
    assert_eq!(r.status(), 400, "no confirmation box, no delete");
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/group?g=auditors")).await;
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/group/add",
        &[("g", "auditors"), ("u", "nobody")],
    )
    .await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("no user named"));
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/audit?target=nobody")).await;
    assert!(
        html.contains("failed: no_such_user"),
        "a failed action is logged too: {html}"
    );
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/group?g=auditors")).await;
    submit_form(&c, &s.base, &html, "/group/delete", &[("g", "auditors")]).await;
    let (_, out, _) = s.cli(&["users", "show", "carol"]);
    assert!(!out.contains("auditors"), "{out}");

    // Every action above is in the audit log, by this admin, in the console and on the CLI.
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/audit?target=carol")).await;
    for action in ["unlock_user", "disable_user", "enable_user"] {
        assert!(html.contains(action), "{action} in {html}");
    }
    assert!(html.contains("console:root"), "{html}");
    let (ok, out, err) = s.cli(&["audit", "--json"]);
    assert!(ok, "{err}");
    for action in [
        "create_group",
        "add_to_group",
        "delete_group",
        "unlock_user",
        "disable_user",
    ] {
        let entries: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        assert!(
            entries
                .iter()
                .any(|e| e["actor"] == "console:root" && e["action"] == action),
            "{action} by console:root in {out}"
        );
    }
}
on_both!(lockout, lockout_is_visible_and_one_click_clears_it);

async fn the_console_is_off_unless_configured(backend: Backend) {
    let s = Server::start(backend, "").await;
    create_user(&s, "root", "root@example.com");
    let (ok, out, err) = s.cli(&["groups", "add-user", "admins", "root"]);
    assert!(ok, "{out}{err}");
    let c = signed_in(&s, "root").await;
    let r = c
        .get(s.url("/oauth2/pool/admin/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
on_both!(off_by_default, the_console_is_off_unless_configured);
