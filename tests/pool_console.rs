//! The admin console (docs/src/pool/administration.md) through the real binary: only members of `pool.admin_group`
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
    assert_eq!(r.status(), 302, "Post/Redirect/Get");
    let (_, html) = get_page(&c, &absolute(&s.base, &location(&r))).await;
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
    assert_eq!(r.status(), 302);
    let (_, html) = get_page(&c, &absolute(&s.base, &location(&r))).await;
    assert!(html.contains("invitation code was sent"), "{html}");
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
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/user/disable",
        &[("u", "carol"), ("confirm", "yes")],
    )
    .await;
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
    assert_eq!(r.status(), 200, "a confirmation step, no delete");
    assert!(r.text().await.unwrap().contains("Delete the user carol"));
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
    submit_form(
        &c,
        &s.base,
        &html,
        "/group/delete",
        &[("g", "auditors"), ("confirm", "yes")],
    )
    .await;
    let (_, out, _) = s.cli(&["users", "show", "carol"]);
    assert!(!out.contains("auditors"), "{out}");

    // Every action above is in the audit log, by this admin, in the console and on the CLI.
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/audit?target=carol")).await;
    for action in ["unlock_user", "disable_user", "enable_user"] {
        assert!(html.contains(action), "{action} in {html}");
    }
    assert!(html.contains("console (root)"), "{html}");
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

// ----- The console at scale: pages, sort, filters, export, confirmations, history. -----

const SCALE: &str =
    "admin_console = true\nlockout = { max_attempts = 3, initial = \"60s\", max = \"15m\" }";

/// The user names listed on a users page, in order.
fn listed(html: &str) -> Vec<String> {
    unescape(html)
        .split("/admin/user?u=")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect()
}

/// The href of the link with `rel`, if the page has one.
fn rel_link(s: &Server, html: &str, rel: &str) -> Option<String> {
    let at = html.split(&format!("rel=\"{rel}\" href=\"")).nth(1)?;
    Some(absolute(&s.base, &unescape(at.split('"').next()?)))
}

/// Imports `n` users `u000`… (emails `u000@example.com`…) with the real `pool import`.
fn import_users(s: &Server, n: usize) {
    let mut csv = String::from("cognito:username,email,email_verified\n");
    for i in 0..n {
        csv.push_str(&format!("u{i:03},u{i:03}@example.com,true\n"));
    }
    let file = std::env::temp_dir().join(format!("pc-console-import-{}.csv", free_port()));
    write(&file, &csv);
    let (ok, out, err) = s.cli(&["users", "import", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert!(ok, "import: {out}{err}");
}

/// Walks every page forward from `first`, returning every name (in order) and the page URLs.
async fn walk(c: &reqwest::Client, s: &Server, first: &str) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut pages = vec![first.to_string()];
    let mut url = first.to_string();
    loop {
        let (status, html) = get_page(c, &url).await;
        assert_eq!(status, 200, "{url}: {html}");
        let rows = listed(&html);
        assert!(rows.len() <= 50, "50 a page at most, got {}", rows.len());
        names.extend(rows);
        match rel_link(s, &html, "next") {
            Some(next) => {
                pages.push(next.clone());
                url = next;
            }
            None => break,
        }
    }
    (names, pages)
}

async fn users_list_pages_sorts_filters_and_exports(backend: Backend) {
    let s = Server::start(backend, SCALE).await;
    add_user(&s, "root", "root@example.com", &["admins"]);
    import_users(&s, 120);
    let c = signed_in(&s, "root").await;
    let users = s.url("/oauth2/pool/admin/users");

    // By name: 50, 50, 21; every user exactly once, in order; no "previous" on the first page.
    let (status, html) = get_page(&c, &users).await;
    assert_eq!(status, 200);
    assert_eq!(listed(&html).len(), 50, "{html}");
    assert!(rel_link(&s, &html, "prev").is_none());
    let (names, pages) = walk(&c, &s, &users).await;
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert_eq!(names.len(), 121);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "ordered by user name");
    // Back from the last page gives the second page again.
    let (_, last) = get_page(&c, &pages[2]).await;
    let back = rel_link(&s, &last, "prev").expect("a previous link on the last page");
    let (_, html) = get_page(&c, &back).await;
    assert_eq!(listed(&html), names[50..100].to_vec());
    assert!(rel_link(&s, &html, "prev").is_some() && rel_link(&s, &html, "next").is_some());

    // Sorted by creation, newest first: the imported users share their second, so the tie
    // on the key is broken by sub, and still every user shows up exactly once.
    for sort in ["created", "last_sign_in", "status"] {
        for order in ["asc", "desc"] {
            let (names, _) = walk(&c, &s, &format!("{users}?sort={sort}&order={order}")).await;
            let unique: std::collections::BTreeSet<_> = names.iter().collect();
            assert_eq!((names.len(), unique.len()), (121, 121), "{sort} {order}");
        }
    }

    // Filters: a name prefix, an email prefix (taken literally: % and _ match nothing more).
    let (_, html) = get_page(&c, &format!("{users}?q=U11")).await;
    let got = listed(&html);
    assert_eq!(got.len(), 10, "{got:?}");
    assert!(got.iter().all(|n| n.starts_with("u11")));
    let (_, html) = get_page(&c, &format!("{users}?q=u005%40exa")).await;
    assert_eq!(listed(&html), vec!["u005"]);
    for literal in ["%25", "u0_5", "u%25"] {
        let (status, html) = get_page(&c, &format!("{users}?q={literal}")).await;
        assert_eq!((status, listed(&html).len()), (200, 0), "{literal}");
    }
    // Group, status, MFA.
    assert!(s.cli(&["groups", "add-user", "staff", "u001"]).0);
    let (_, html) = get_page(&c, &format!("{users}?group=staff")).await;
    assert_eq!(listed(&html), vec!["u001"]);
    assert!(s.cli(&["users", "disable", "u003"]).0);
    let (_, html) = get_page(&c, &format!("{users}?status=DISABLED")).await;
    assert_eq!(listed(&html), vec!["u003"]);
    let (_, html) = get_page(&c, &format!("{users}?mfa=on")).await;
    assert!(listed(&html).is_empty() && html.contains("No users match."));
    let (_, html) = get_page(&c, &format!("{users}?mfa=off&q=u00")).await;
    assert_eq!(listed(&html).len(), 10);
    // Locked now: three wrong passwords lock u002; only u002 is listed.
    let login = s.url("/oauth2/pool/login");
    for _ in 0..3 {
        sign_in(&browser(), &s, &login, "u002", "Wrong-Password-1").await;
    }
    let (_, html) = get_page(&c, &format!("{users}?locked=yes")).await;
    assert_eq!(listed(&html), vec!["u002"], "{html}");

    // Export: the filtered list as CSV, every cell quoted, a formula defused.
    assert!(
        s.cli(&["groups", "add-user", "=HYPERLINK(\"http://evil\")", "u004"])
            .0
    );
    let r = c.get(format!("{users}.csv?q=u00")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 11, "header and ten users: {csv}");
    assert!(lines[0].starts_with("username,email,status"));
    assert!(
        lines[1].starts_with("\"u000\",\"u000@example.com\""),
        "{csv}"
    );
    assert!(
        csv.contains("\"'=HYPERLINK(\"\"http://evil\"\")\""),
        "a formula cell starts with ': {csv}"
    );
    assert!(!csv.contains(",\"=HYPERLINK"), "{csv}");
    let (_, all) = get_page(&c, &format!("{users}.csv")).await;
    assert_eq!(all.lines().count(), 122);

    // Parameters the list does not know: 400 with a plain message, never a database error.
    let cursor_for_name = rel_link(&s, &get_page(&c, &users).await.1, "next")
        .unwrap()
        .split("after=")
        .nth(1)
        .unwrap()
        .to_string();
    for (query, says) in [
        ("status=CONFIRMED'%20OR%201=1--", "status: one of"),
        ("sort=username;DROP%20TABLE%20users", "sort: one of"),
        ("sort=created%20DESC", "sort: one of"),
        ("order=sideways", "order: asc or desc"),
        ("mfa=maybe", "mfa: on or off"),
        ("locked=1", "locked: yes"),
        ("provider=nosuch", "provider: one of"),
        ("after=%27%20OR%201%3D1", "after: not a cursor"),
        ("after=AAAA", "after: not a cursor"),
        ("before=!!!", "before: not a cursor"),
        (
            &format!("sort=created&after={cursor_for_name}"),
            "after: not a cursor",
        ),
        (&format!("q={}", "x".repeat(300)), "q: at most"),
        ("q=a%00b", "q: at most"),
    ] {
        for path in ["/oauth2/pool/admin/users", "/oauth2/pool/admin/users.csv"] {
            let (status, html) = get_page(&c, &format!("{}?{query}", s.url(path))).await;
            assert_eq!(status, 400, "{path}?{query}: {html}");
            let html = unescape(&html);
            assert!(html.contains(says), "{query}: {html}");
            for leak in ["SQL", "syntax", "sqlx", "database"] {
                assert!(!html.contains(leak), "{query} leaks {leak}: {html}");
            }
        }
    }
    // The database is still whole.
    let (_, again) = get_page(&c, &format!("{users}.csv")).await;
    assert_eq!(again.lines().count(), 122);

    // No admin session: sign-in first; a non-admin: 403; the export included.
    let r = browser().get(format!("{users}.csv")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    add_user(&s, "bob", "bob@example.com", &[]);
    let bob = signed_in(&s, "bob").await;
    let (status, body) = get_page(&bob, &format!("{users}.csv")).await;
    assert_eq!(status, 403);
    assert!(!body.contains("u000@example.com"));
}
on_both!(at_scale, users_list_pages_sorts_filters_and_exports);

async fn forms_redirect_and_destructive_actions_ask_first(backend: Backend) {
    let s = Server::start(backend, SCALE).await;
    add_user(&s, "root", "root@example.com", &["admins"]);
    add_user(&s, "carol", "carol@example.com", &[]);
    let c = signed_in(&s, "root").await;

    // Create: a redirect to the user's page, the generated password shown there once.
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/users/new")).await;
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/users/new",
        &[
            ("username", "dora"),
            ("email", "dora@example.com"),
            ("mode", "temporary"),
            ("temporary_password", ""),
        ],
    )
    .await;
    assert_eq!(r.status(), 302);
    let page = absolute(&s.base, &location(&r));
    assert!(page.ends_with("/admin/user?u=dora"), "{page}");
    let (_, html) = get_page(&c, &page).await;
    assert!(html.contains("Temporary password (shown once)"), "{html}");
    let (status, html) = get_page(&c, &page).await;
    assert_eq!(status, 200);
    assert!(
        !html.contains("Temporary password (shown once)"),
        "shown once: {html}"
    );

    // Delete asks first: the POST alone deletes nothing and shows the question.
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/user?u=carol")).await;
    assert!(
        !html.contains("/user/unlock"),
        "no Unlock for a user who is not locked"
    );
    let r = submit_form(&c, &s.base, &html, "/user/delete", &[("u", "carol")]).await;
    assert_eq!(r.status(), 200);
    let ask = r.text().await.unwrap();
    assert!(ask.contains("Delete the user carol"), "{ask}");
    assert!(s.cli(&["users", "show", "carol"]).0, "not deleted yet");
    // The confirmation form needs its CSRF token too.
    let (action, _) = form(&ask, &s.base, "/user/delete");
    let r = c
        .post(&action)
        .form(&[("u", "carol"), ("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        s.cli(&["users", "show", "carol"]).0,
        "not deleted without the token"
    );
    assert!(ask.contains("name=\"confirm\" value=\"yes\""), "{ask}");
    let r = submit_form(
        &c,
        &s.base,
        &ask,
        "/user/delete",
        &[("u", "carol"), ("confirm", "yes")],
    )
    .await;
    assert_eq!(r.status(), 302);
    assert!(
        !s.cli(&["users", "show", "carol"]).0,
        "deleted once confirmed"
    );

    // A group that does not exist: asked first, created only when confirmed.
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/user?u=dora")).await;
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/user/add-group",
        &[("u", "dora"), ("group", "adminz")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let ask = unescape(&r.text().await.unwrap());
    assert!(ask.contains("There is no group “adminz”"), "{ask}");
    let (_, out, _) = s.cli(&["groups", "list"]);
    assert!(!out.contains("adminz"), "{out}");
    let r = submit_form(
        &c,
        &s.base,
        &ask,
        "/user/add-group",
        &[("u", "dora"), ("group", "adminz"), ("confirm", "yes")],
    )
    .await;
    assert_eq!(r.status(), 302);
    let (_, out, _) = s.cli(&["users", "show", "dora"]);
    assert!(out.contains("adminz"), "{out}");
    // An existing group is joined at once.
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/user?u=dora")).await;
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/user/add-group",
        &[("u", "dora"), ("group", "admins")],
    )
    .await;
    assert_eq!(r.status(), 302);

    // The user's page: factors, lock state with Unlock only while locked, own history.
    let login = s.url("/oauth2/pool/login");
    add_user(&s, "erin", "erin@example.com", &[]);
    sign_in(&browser(), &s, &login, "erin", PASSWORD).await;
    for _ in 0..3 {
        sign_in(&browser(), &s, &login, "erin", "Wrong-Password-1").await;
    }
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/user?u=erin")).await;
    assert!(html.contains("/user/unlock"), "Unlock while locked");
    assert!(
        html.contains("Authenticator app (TOTP): <strong>Off</strong>"),
        "{html}"
    );
    assert!(html.contains("No passkeys."));
    let history = html
        .split("<section class=\"history\">")
        .nth(1)
        .expect("a history section");
    for label in ["Signed in", "Sign-in failed", "Locked out", "Created user"] {
        assert!(history.contains(label), "{label} in the history: {html}");
    }
    assert!(
        html.contains("cli ("),
        "the CLI actor as cli (name): {html}"
    );
    // In Japanese: statuses, actions and the verified flags read in Japanese.
    let ja = browser_lang("ja");
    sign_in(&ja, &s, &login, "root", PASSWORD).await;
    let (_, html) = get_page(&ja, &s.url("/oauth2/pool/admin/user?u=erin")).await;
    for text in [
        "サインイン失敗",
        "ロックアウト",
        "確認済み",
        "メールアドレス確認済み",
    ] {
        assert!(html.contains(text), "{text}: {html}");
    }
    assert!(
        !html.contains(">CONFIRMED<") && !html.contains(">email_verified<"),
        "{html}"
    );
}
on_both!(
    prg_and_confirmations,
    forms_redirect_and_destructive_actions_ask_first
);
