//! The audit log (docs/src/pool/administration.md): every admin action from the CLI and the admin JSON API is
//! recorded with its actor and outcome, shown by `portcullis pool audit [--since] [--json]` and
//! `GET /pool/audit`, emitted as a structured log event — and never holds a password.

mod pool_support;

use pool_support::*;
use serde_json::{Value, json};

async fn api(s: &Server, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .request(method, format!("{}{path}", s.admin))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn audit_json(s: &Server, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["audit", "--json"];
    args.extend_from_slice(extra);
    let (ok, out, err) = s.cli(&args);
    assert!(ok, "pool audit failed: {err}");
    serde_json::from_str::<Vec<Value>>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

async fn every_admin_action_is_audited(backend: Backend) {
    use reqwest::Method;
    let s = Server::start(backend, "").await;
    let secret_pw = "Audit-Secret-Pw-9";

    // CLI actions (actor cli:<os user>).
    let (ok, out, err) = s.cli(&[
        "users",
        "add",
        "Ann",
        "--password",
        secret_pw,
        "--attribute",
        "email=ann@example.com",
    ]);
    assert!(ok, "{out}{err}");
    // The CLI emits the audit event as a structured log line on stderr.
    assert!(
        err.contains("create_user"),
        "no audit event on stderr: {err}"
    );
    assert!(!err.contains(secret_pw));
    for args in [
        vec![
            "users",
            "set-password",
            "ann",
            "--password",
            "Another-Secret-8",
            "--permanent",
        ],
        vec!["users", "disable", "ann"],
        vec!["users", "enable", "ann"],
        vec!["users", "unlock", "ann"],
        vec!["users", "sign-out", "ann"],
        vec!["users", "reset-password", "ann"],
        vec!["groups", "add-user", "ops", "ann"],
        vec!["groups", "remove-user", "ops", "ann"],
    ] {
        let (ok, out, err) = s.cli(&args);
        assert!(ok, "{args:?}: {out}{err}");
    }
    let (ok, _, _) = s.cli(&["users", "delete", "nobody"]);
    assert!(!ok, "deleting an unknown user fails");

    // API actions (actor api).
    let (st, v) = api(
        &s,
        Method::POST,
        "/pool/users",
        Some(json!({"username": "bob", "password": "Bob-Secret-77", "attributes": {"email": "bob@example.com"}})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        api(&s, Method::POST, "/pool/users/bob/disable", None)
            .await
            .0,
        200
    );
    assert_eq!(
        api(&s, Method::PUT, "/pool/groups/admins/users/bob", None)
            .await
            .0,
        200
    );
    assert_eq!(
        api(&s, Method::DELETE, "/pool/users/bob", None).await.0,
        200
    );
    let (st, _) = api(
        &s,
        Method::POST,
        "/pool/users",
        Some(json!({"username": "bad name", "password": "x"})),
    )
    .await;
    assert_eq!(st, 400);

    let entries = audit_json(&s, &[]);
    let seen: Vec<(String, String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let cli_actor = seen[0].0.clone();
    assert!(cli_actor.starts_with("cli:"), "{seen:?}");
    let want: Vec<(&str, &str, &str, &str)> = vec![
        (&cli_actor, "create_user", "ann", "ok"),
        (&cli_actor, "set_password", "ann", "ok"),
        (&cli_actor, "disable_user", "ann", "ok"),
        (&cli_actor, "enable_user", "ann", "ok"),
        (&cli_actor, "unlock_user", "ann", "ok"),
        (&cli_actor, "sign_out_user", "ann", "ok"),
        (&cli_actor, "reset_password", "ann", "ok"),
        (&cli_actor, "add_to_group", "ann (group ops)", "ok"),
        (&cli_actor, "remove_from_group", "ann (group ops)", "ok"),
        (&cli_actor, "delete_user", "nobody", "failed"),
        ("api", "create_user", "bob", "ok"),
        ("api", "disable_user", "bob", "ok"),
        ("api", "add_to_group", "bob (group admins)", "ok"),
        ("api", "delete_user", "bob", "ok"),
        ("api", "create_user", "bad name", "failed"),
    ];
    let got: Vec<(&str, &str, &str, &str)> = seen
        .iter()
        .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.as_str()))
        .collect();
    assert_eq!(got, want, "oldest first, one entry per action");
    assert!(
        entries[9]["reason"]
            .as_str()
            .unwrap()
            .starts_with("no_such_user"),
        "{}",
        entries[9]
    );
    for e in &entries {
        assert!(e["time"].as_str().unwrap().ends_with('Z'), "{e}");
    }

    // No password reaches the log, the database's audit table or the server log.
    let all = serde_json::to_string(&entries).unwrap() + &s.log_text();
    for pw in [secret_pw, "Another-Secret-8", "Bob-Secret-77"] {
        assert!(!all.contains(pw), "{pw} leaked");
    }
    // The server emitted the API's events as structured log lines.
    let api_events: Vec<Value> = s
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["audit.actor"] == "api")
        .collect();
    assert_eq!(api_events.len(), 5, "{api_events:?}");
    assert_eq!(api_events[0]["fields"]["audit.action"], "create_user");

    // --since and the text form.
    assert_eq!(audit_json(&s, &["--since", "1h"]).len(), entries.len());
    let (ok, text, _) = s.cli(&["audit", "--since", "10m"]);
    assert!(ok);
    let first = text.lines().next().unwrap();
    assert_eq!(first.split('\t').nth(2), Some("create_user"), "{text}");
    let (ok, _, err) = s.cli(&["audit", "--since", "yesterday"]);
    assert!(!ok && err.contains("--since"), "{err}");

    // The API's view: newest first, limited.
    let (st, v) = api(&s, Method::GET, "/pool/audit?since=1h&limit=2", None).await;
    assert_eq!(st, 200, "{v}");
    let list = v["entries"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["action"], "create_user");
    assert_eq!(list[0]["outcome"], "failed");
    assert_eq!(
        api(&s, Method::GET, "/pool/audit?since=soon", None).await.0,
        400
    );
}
on_both!(
    every_admin_action_is_audited_test,
    every_admin_action_is_audited
);

/// Audit-log injection (the review's F12; CWE-117, CWE-150): an admin acting on a crafted name
/// with a newline, tabs and an ANSI escape cannot forge a line or hide text in `pool audit`'s
/// text output, nor in the structured log; control characters come out escaped (`\n`,
/// `\t`, `\u{1b}`), one entry per line, five tab-separated fields each.
async fn control_characters_in_targets_are_escaped(backend: Backend) {
    let s = Server::start(backend, "").await;
    let crafted = "ghost%0A2026-12-07T19%3A00%3A00.000000Z%09console%3Aalice%09delete_user%09bob%09ok%1B%5B8m";
    let (status, _) = api(
        &s,
        reqwest::Method::POST,
        &format!("/pool/users/{crafted}/disable"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (ok, out, err) = s.cli(&["audit"]);
    assert!(ok, "{err}");
    assert!(
        !out.contains('\u{1b}'),
        "an escape sequence reached the terminal: {out:?}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one entry, one line: {out:?}");
    assert_eq!(
        lines[0].split('\t').count(),
        5,
        "time, actor, action, target, outcome, reason: {out:?}"
    );
    assert!(
        lines[0].contains("ghost\\n2026-12-07t19:00:00.000000z\\tconsole:alice"),
        "the target is shown escaped: {out:?}"
    );
    // The JSON keeps the exact text.
    let entries = audit_json(&s, &[]);
    assert!(
        entries[0]["target"]
            .as_str()
            .unwrap()
            .contains("ok\u{1b}[8m"),
        "{entries:?}"
    );
    // The server's log line escapes it too (the JSON log is escaped by construction; a text
    // log must not carry the raw characters either).
    assert!(
        !s.log_text().contains('\u{1b}'),
        "raw ESC in the server log"
    );
}
on_both!(
    control_characters,
    control_characters_in_targets_are_escaped
);

/// The same for C1 controls (U+009B CSI, U+0085 NEL) and bidirectional overrides and isolates
/// (U+202E, U+2066): neither `pool audit`'s text output nor the server log carries them raw.
async fn c1_controls_and_bidi_overrides_are_escaped(backend: Backend) {
    let s = Server::start(backend, "").await;
    let crafted = "ghost%C2%9B8m%C2%85forged%E2%80%AEdesrever%E2%81%A6x";
    let (status, _) = api(
        &s,
        reqwest::Method::POST,
        &format!("/pool/users/{crafted}/disable"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (ok, out, err) = s.cli(&["audit"]);
    assert!(ok, "{err}");
    assert!(out.contains("ghost"), "the entry is listed: {out:?}");
    let bad = ['\u{9b}', '\u{85}', '\u{202e}', '\u{2066}'];
    let raw_in_out: Vec<_> = bad.iter().filter(|c| out.contains(**c)).collect();
    assert!(
        raw_in_out.is_empty(),
        "pool audit printed raw {raw_in_out:?}: {out:?}"
    );
    assert_eq!(out.lines().count(), 1, "one entry, one line: {out:?}");
    let log = s.log_text();
    assert!(log.contains("ghost"), "the event is logged");
    let raw_in_log: Vec<_> = bad.iter().filter(|c| log.contains(**c)).collect();
    assert!(
        raw_in_log.is_empty(),
        "the server log carries raw {raw_in_log:?}"
    );
}
on_both!(c1_and_bidi, c1_controls_and_bidi_overrides_are_escaped);

/// Records are language-neutral and cover users' own events: a create refused in a Japanese
/// console is stored as the code `invalid` with the field names, read back in English and in
/// Japanese; sign-in, its failures and the lockout are in the log with the user's `sub`; the
/// CLI names itself `cli (user)`, refuses to unlock a name nobody has, and `users show` tells
/// the lock state with readable times.
async fn records_are_codes_and_cover_user_events(backend: Backend) {
    let s = Server::start(
        backend,
        "admin_console = true\nlockout = { max_attempts = 3, initial = \"60s\", max = \"15m\" }",
    )
    .await;
    for (name, groups) in [("root", vec!["--group", "admins"]), ("kim", vec![])] {
        let mut args = vec![
            "users",
            "add",
            name,
            "--password",
            PASSWORD,
            "--permanent",
            "--attribute",
        ];
        let email = format!("email={name}@example.com");
        args.push(&email);
        args.extend(groups);
        let (ok, out, err) = s.cli(&args);
        assert!(ok, "{out}{err}");
    }
    let login = s.url("/oauth2/pool/login");
    let ja = browser_lang("ja");
    let r = sign_in(&ja, &s, &login, "root", PASSWORD).await;
    assert_eq!(r.status(), 200);
    let (_, html) = get_page(&ja, &s.url("/oauth2/pool/admin/users/new")).await;
    let r = submit_form(
        &ja,
        &s.base,
        &html,
        "/users/new",
        &[("username", "bad name"), ("email", "")],
    )
    .await;
    assert_eq!(r.status(), 400);
    // kim: one sign-in, then three failures (the third locks).
    assert_eq!(
        sign_in(&browser(), &s, &login, "kim", PASSWORD)
            .await
            .status(),
        200
    );
    for _ in 0..3 {
        sign_in(&browser(), &s, &login, "kim", "Wrong-Password-1").await;
    }

    // A name nobody has is recorded the same way (the same write, so the same time).
    sign_in(&browser(), &s, &login, "ghost", "Wrong-Password-1").await;
    let entries = audit_json(&s, &[]);
    let ghost = entries
        .iter()
        .find(|e| e["target"] == "ghost")
        .unwrap_or_else(|| panic!("{entries:?}"));
    assert_eq!(
        (ghost["action"].as_str(), ghost["actor"].as_str()),
        (Some("sign_in_failed"), Some("anonymous"))
    );
    assert!(ghost.get("subject").is_none(), "{ghost}");
    let refused = entries
        .iter()
        .find(|e| e["action"] == "create_user" && e["outcome"] == "failed")
        .unwrap_or_else(|| panic!("{entries:?}"));
    assert_eq!(
        refused["reason"], "invalid",
        "a code, not the admin's words"
    );
    assert!(
        refused["params"]["fields"]
            .as_array()
            .is_some_and(|f| f.contains(&json!("username"))),
        "{refused}"
    );
    let stored = serde_json::to_string(&entries).unwrap();
    assert!(
        !stored.contains("必須"),
        "no Japanese in the records: {stored}"
    );
    let kim: Vec<&Value> = entries.iter().filter(|e| e["target"] == "kim").collect();
    let actions: Vec<&str> = kim.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "create_user",
            "sign_in",
            "sign_in_failed",
            "sign_in_failed",
            "lockout"
        ],
        "{kim:?}"
    );
    let sign_in_entry = kim[1];
    assert_eq!(sign_in_entry["actor"], "user:kim");
    assert!(
        sign_in_entry["subject"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(sign_in_entry["params"]["amr"], json!(["pwd"]));
    assert_eq!(kim[4]["actor"], "anonymous");
    assert_eq!(kim[4]["params"]["failures"], 3);

    // Rendered in the reader's language.
    let (_, html) = get_page(&ja, &s.url("/oauth2/pool/admin/audit")).await;
    for text in [
        "ユーザーを作成",
        "入力が正しくありません",
        "サインイン失敗",
        "ロックアウト",
        "失敗",
    ] {
        assert!(html.contains(text), "{text}: {html}");
    }
    let en = browser();
    sign_in(&en, &s, &login, "root", PASSWORD).await;
    let (_, html) = get_page(&en, &s.url("/oauth2/pool/admin/audit")).await;
    for text in [
        "Created user",
        "invalid (invalid input)",
        "Locked out",
        "cli (",
    ] {
        assert!(html.contains(text), "{text}: {html}");
    }

    // The CLI: a typo in unlock fails (and is logged as failed); show tells the lock state.
    let (ok, out, err) = s.cli(&["users", "unlock", "nosuch"]);
    assert!(!ok, "unlock of nobody exits non-zero: {out}");
    assert!(err.contains("nosuch"), "{err}");
    let last = audit_json(&s, &[]).pop().unwrap();
    assert_eq!(
        (last["action"].as_str(), last["outcome"].as_str()),
        (Some("unlock_user"), Some("failed"))
    );
    let (ok, out, err) = s.cli(&["users", "show", "kim"]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["lockout"]["locked"], true, "{out}");
    assert_eq!(v["lockout"]["failures"], 3);
    assert!(
        v["lockout"]["locked_until"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(v["created"].as_str().unwrap().ends_with('Z'), "{out}");
    assert!(v["last_sign_in"].as_str().is_some(), "{out}");
    let (ok, out, _) = s.cli(&["audit"]);
    assert!(ok && out.contains("\tcli ("), "{out}");
}
on_both!(
    codes_and_user_events,
    records_are_codes_and_cover_user_events
);
