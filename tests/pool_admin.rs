//! Administration over the admin listener's JSON API (bearer `pool.admin_token`), readiness
//! including the database, and durability: `kill -9` in the middle of sign-ups loses no user
//! whose confirmation was answered.

mod pool_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_support::*;
use serde_json::{Value, json};

async fn api(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = reqwest::Client::new().request(method, format!("{}{path}", s.admin));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn admin_api_manages_users(backend: Backend) {
    use reqwest::Method;
    let s = Server::start(backend, "").await;
    let t = Some(ADMIN_TOKEN);
    assert_eq!(api(&s, Method::GET, "/pool/users", None, None).await.0, 401);
    assert_eq!(
        api(
            &s,
            Method::GET,
            "/pool/users",
            Some("wrong-token-wrong-token"),
            None
        )
        .await
        .0,
        // docs/src/reference/configuration.md: no token 401, a wrong one 403.
        403
    );

    let (st, created) = api(&s, Method::POST, "/pool/users", t, Some(json!({"username": "Jack", "attributes": {"email": "jack@example.com"}, "groups": ["ops"]}))).await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(created["status"], "FORCE_CHANGE_PASSWORD");
    assert_eq!(created["username"], "jack");
    assert!(
        created["temporary_password"]
            .as_str()
            .is_some_and(|p| p.len() >= 16)
    );
    assert!(
        created.get("password_hash").is_none(),
        "hashes never leave the server"
    );
    let (st, bad) = api(
        &s,
        Method::POST,
        "/pool/users",
        t,
        Some(json!({"username": "x y", "password": "short"})),
    )
    .await;
    assert_eq!(st, 400);
    assert!(bad["problems"].as_array().unwrap().len() >= 3, "{bad}");
    let (st, _) = api(
        &s,
        Method::POST,
        "/pool/users",
        t,
        Some(json!({"username": "JACK", "attributes": {"email": "other@example.com"}})),
    )
    .await;
    assert_eq!(st, 409, "a case variant is the same user");

    let (st, list) = api(&s, Method::GET, "/pool/users", t, None).await;
    assert_eq!(st, 200);
    assert_eq!(list["users"].as_array().unwrap().len(), 1);
    let (st, u) = api(
        &s,
        Method::POST,
        "/pool/users/jack/set-password",
        t,
        Some(json!({"password": PASSWORD, "permanent": true})),
    )
    .await;
    assert_eq!((st, u["status"].as_str()), (200, Some("CONFIRMED")));
    let (_, u) = api(&s, Method::PUT, "/pool/groups/admins/users/JACK", t, None).await;
    assert_eq!(u["groups"], json!(["admins", "ops"]));
    let (_, u) = api(&s, Method::DELETE, "/pool/groups/ops/users/jack", t, None).await;
    assert_eq!(u["groups"], json!(["admins"]));
    let (_, g) = api(&s, Method::GET, "/pool/groups", t, None).await;
    assert_eq!(
        g["groups"],
        json!([{"group": "admins", "members": ["jack"]}])
    );

    // Disabled users cannot sign in (told only after the right password); enable restores.
    let c = browser();
    let login = s.url("/oauth2/pool/login");
    let (_, u) = api(&s, Method::POST, "/pool/users/jack/disable", t, None).await;
    assert_eq!(u["status"], "DISABLED");
    let r = sign_in(&c, &s, &login, "jack", PASSWORD).await;
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("This account is disabled.")
    );
    assert_eq!(
        sign_in(&c, &s, &login, "jack", "Wrong-Password-1")
            .await
            .status(),
        401
    );
    api(&s, Method::POST, "/pool/users/jack/enable", t, None).await;
    assert_eq!(
        sign_in(&c, &s, &login, "jack", PASSWORD).await.status(),
        200
    );

    // Reset: the user must pick a new password with a code.
    let (_, u) = api(&s, Method::POST, "/pool/users/jack/reset-password", t, None).await;
    assert_eq!(u["status"], "RESET_REQUIRED");
    let r = sign_in(&browser(), &s, &login, "jack", PASSWORD).await;
    assert!(location(&r).contains("/oauth2/pool/reset-password?username=jack"));
    s.code_for("jack", "reset");

    let (st, _) = api(&s, Method::POST, "/pool/users/jack/unlock", t, None).await;
    assert_eq!(st, 200);
    let (st, _) = api(&s, Method::POST, "/pool/users/jack/sign-out", t, None).await;
    assert_eq!(st, 200);
    assert_eq!(
        api(&s, Method::DELETE, "/pool/users/jack", t, None).await.0,
        200
    );
    assert_eq!(
        api(&s, Method::GET, "/pool/users/jack", t, None).await.0,
        404
    );

    let ready = reqwest::get(format!("{}/readyz", s.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(ready.contains("pool database: ok"), "{ready}");
}
on_both!(admin_api, admin_api_manages_users);

/// One browser signs up and confirms; `Some(name)` once the confirmation was answered.
async fn sign_up_and_confirm(s: Arc<ServerInfo>, name: String) -> Option<String> {
    let c = browser();
    let page = c
        .get(format!("{}/oauth2/pool/signup", s.base))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let (action, csrf) = form(&page, &s.base, "/signup");
    let email = format!("{name}@example.com");
    let r = c
        .post(action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", name.as_str()),
            ("email", email.as_str()),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .ok()?;
    if r.status() != 302 {
        return None;
    }
    let confirm_url = absolute(&s.base, r.headers().get("location")?.to_str().ok()?);
    let page = c.get(confirm_url).send().await.ok()?.text().await.ok()?;
    let (action, csrf) = form(&page, &s.base, "/confirm");
    let code = code_in(&s.log, &name)?;
    let r = c
        .post(action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", name.as_str()),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .ok()?;
    (r.status() == 302).then_some(name)
}

struct ServerInfo {
    base: String,
    log: std::path::PathBuf,
}

fn code_in(log: &std::path::Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["username"] == name && v["fields"]["purpose"] == "signup")
        .find_map(|v| v["fields"]["code"].as_str().map(str::to_string))
}

async fn kill_9_during_sign_ups_loses_no_confirmed_user(backend: Backend) {
    let mut s = Server::start(backend, "").await;
    let info = Arc::new(ServerInfo {
        base: s.base.clone(),
        log: s.log.clone(),
    });
    let confirmed = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..24 {
        let info = info.clone();
        let confirmed = confirmed.clone();
        tasks.push(tokio::spawn(async move {
            if let Some(name) = sign_up_and_confirm(info, format!("user{i:02}")).await {
                confirmed.lock().unwrap().push(name);
            }
        }));
    }
    // Kill while sign-ups are still in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while confirmed.lock().unwrap().len() < 6 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let answered = confirmed.lock().unwrap().clone();
    assert!(
        answered.len() >= 6,
        "too few confirmations before the kill: {answered:?}"
    );
    s.spawn().await;
    let (ok, out, err) = s.cli(&["users", "list"]);
    assert!(ok, "{err}");
    for name in &answered {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{name}\t")))
            .unwrap_or_else(|| panic!("{name} lost after kill -9:\n{out}"));
        assert!(line.contains("\tCONFIRMED\t"), "{line}");
    }
    // And they can sign in on the restarted server.
    let r = sign_in(
        &browser(),
        &s,
        &s.url("/oauth2/pool/login"),
        &answered[0],
        PASSWORD,
    )
    .await;
    assert_eq!(r.status(), 200);
}
on_both!(kill_9, kill_9_during_sign_ups_loses_no_confirmed_user);
