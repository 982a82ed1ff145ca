//! Lazy migration (`pool.migration`, docs/src/pool/import-export.md) against a small local HTTP service standing in
//! for the old system: it accepts (the user is created and signed in, later sign-ins are local),
//! refuses, answers garbage, vouches for unacceptable attributes, or hangs past the timeout —
//! each of those an ordinary failed sign-in; the password never reaches the log.

mod pool_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool_support::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOOK_SECRET: &str = "hook-secret-for-tests-42";
const OLD_PASSWORD: &str = "Old-System-Pass-1";

/// What the old system received: (authorization header, JSON body).
type Calls = Arc<Mutex<Vec<(String, Value)>>>;

/// The old system: answers by user name.
async fn old_system() -> (std::net::SocketAddr, Calls) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let calls: Calls = Arc::default();
    let seen = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            break (head.to_string(), body.to_string());
                        }
                    }
                };
                let auth = head
                    .lines()
                    .find_map(|l| {
                        l.split_once(':')
                            .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                            .map(|(_, v)| v.trim().to_string())
                    })
                    .unwrap_or_default();
                let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                seen.lock().unwrap().push((auth.clone(), req.clone()));
                let user = req["username"].as_str().unwrap_or("");
                let right =
                    auth == format!("Bearer {HOOK_SECRET}") && req["password"] == OLD_PASSWORD;
                let (status, body) = match user {
                    "slow" => {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        (
                            200,
                            json!({"attributes": {"email": "slow@example.com"}}).to_string(),
                        )
                    }
                    "garbage" => (200, "<html>not json</html>".to_string()),
                    "noemail" => (200, json!({"attributes": {"name": "No Email"}}).to_string()),
                    "moved" => (302, String::new()),
                    _ if right => (
                        200,
                        json!({"attributes": {
                            "email": format!("{user}@old.example.com"),
                            "email_verified": "true",
                            "phone_number": "(201) 555-0123",
                            "custom:legacy_id": 4711
                        }})
                        .to_string(),
                    ),
                    _ => (401, json!({"error": "bad password"}).to_string()),
                };
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nlocation: http://127.0.0.1:1/\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (addr, calls)
}

/// One sign-in attempt from the protected page: (status of the answer, page text or Location).
async fn attempt(s: &Server, user: &str, pw: &str) -> (u16, String) {
    let c = browser();
    let (_, hops) = follow(&c, &s.base, s.url("/app")).await;
    let r = sign_in(&c, s, hops.last().unwrap(), user, pw).await;
    let status = r.status().as_u16();
    if status == 302 {
        let to = location(&r);
        let (app, _) = follow(&c, &s.base, absolute(&s.base, &to)).await;
        let echo: Value = app.json().await.unwrap();
        return (
            status,
            echo["headers"]["x-forwarded-email"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    (status, r.text().await.unwrap())
}

/// The error message of a sign-in page (what a user sees), without the per-request CSRF token.
fn message(page: &str) -> String {
    page.split("class=\"errors\"")
        .nth(1)
        .and_then(|p| p.split("<li>").nth(1))
        .and_then(|p| p.split("</li>").next())
        .unwrap_or_else(|| panic!("no error message in {page}"))
        .to_string()
}

async fn lazy_migration(backend: Backend) {
    let (hook, calls) = old_system().await;
    let s = Server::start(
        backend,
        &format!(
            "migration = {{ url = \"http://{hook}/migrate\", secret = \"{HOOK_SECRET}\", timeout = \"1s\" }}"
        ),
    )
    .await;

    // Accepting: the user is created with the old password and signed in.
    let (status, email) = attempt(&s, "Carol", OLD_PASSWORD).await;
    assert_eq!(status, 302, "{email}\n{}", s.log_text());
    assert_eq!(email, "Carol@old.example.com");
    {
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].0, format!("Bearer {HOOK_SECRET}"));
        assert_eq!(
            calls[0].1,
            json!({"username": "Carol", "password": OLD_PASSWORD})
        );
    }
    let (ok, out, _) = s.cli(&["users", "show", "carol"]);
    assert!(ok);
    let u: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(u["status"], "CONFIRMED");
    assert_eq!(u["attributes"]["email_verified"], true);
    assert_eq!(u["attributes"]["phone_number"], "+12015550123");
    assert_eq!(u["attributes"]["custom:legacy_id"], "4711");
    // Later sign-ins are the pool's own: the hook is not asked again, right or wrong.
    assert_eq!(attempt(&s, "carol", OLD_PASSWORD).await.0, 302);
    let (status, wrong_known) = attempt(&s, "carol", "Not-The-Password-1").await;
    assert_eq!(status, 401);
    assert_eq!(calls.lock().unwrap().len(), 1);

    // Refusing, garbage, unacceptable attributes, a redirect (never followed), a timeout: each
    // is an ordinary failed sign-in with the same message as a wrong password.
    for (user, pw) in [
        ("dave", "Wrong-Old-Pass-2"),
        ("garbage", OLD_PASSWORD),
        ("noemail", OLD_PASSWORD),
        ("moved", OLD_PASSWORD),
        ("slow", OLD_PASSWORD),
    ] {
        let t0 = Instant::now();
        let (status, page) = attempt(&s, user, pw).await;
        let took = t0.elapsed();
        assert_eq!(status, 401, "{user}: {page}");
        assert_eq!(message(&page), message(&wrong_known), "{user}");
        assert!(
            took < Duration::from_secs(4),
            "{user} took {took:?}: the timeout holds"
        );
        let (ok, _, _) = s.cli(&["users", "show", user]);
        assert!(!ok, "{user} must not exist");
    }
    assert_eq!(calls.lock().unwrap().len(), 6);

    // The log says why, never with the password or the secret.
    let log = s.log_text();
    assert!(
        log.contains("user_migrated") && log.contains("migration_failed"),
        "{log}"
    );
    assert!(
        log.contains("answered 401") && log.contains("timed out"),
        "{log}"
    );
    assert!(!log.contains(OLD_PASSWORD), "password in the log");
    assert!(!log.contains(HOOK_SECRET), "hook secret in the log");
}
on_both!(migration, lazy_migration);

/// The migration hook is rate-limited per client address (the review's F14; CWE-307,
/// CWE-770): every sign-in naming an unknown user would otherwise send its password to the old
/// system and wait for it, so a credential-stuffing list from one address turns the pool into a
/// free oracle against the old system. At most 10 hook calls per address within the lockout's
/// quiet period, whatever the per-address throttle says (here turned off); beyond that the
/// sign-in is an ordinary failure without a call. A successful migration gives its call back.
async fn hook_calls_are_limited_per_address(backend: Backend) {
    let (hook, calls) = old_system().await;
    let s = Server::start(
        backend,
        &format!(
            "lockout = {{ ip_max_attempts = 0, max_attempts = 100, initial = \"1m\" }}\n\
             migration = {{ url = \"http://{hook}/migrate\", secret = \"{HOOK_SECRET}\", timeout = \"1s\" }}"
        ),
    )
    .await;
    // A right password first: it is given back.
    let (status, email) = attempt(&s, "first", OLD_PASSWORD).await;
    assert_eq!((status, email.as_str()), (302, "first@old.example.com"));
    for i in 0..25 {
        let (status, _) = attempt(&s, &format!("stuffed-{i}"), "Guess-Pass-1").await;
        assert_eq!(status, 401, "attempt {i}");
    }
    let n = calls.lock().unwrap().len();
    assert!(
        n <= 11,
        "{n} hook calls from one address (1 right + 25 wrong): the hook is not rate-limited"
    );
    // The limit is per address and per unknown-name call: a known user still signs in.
    let (status, _) = attempt(&s, "first", OLD_PASSWORD).await;
    assert_eq!(
        status, 302,
        "a migrated user is not affected by the hook's limit"
    );
}
on_both!(hook_limit, hook_calls_are_limited_per_address);
