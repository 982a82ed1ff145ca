//! The pool as an OpenID Provider with Back-Channel Logout 1.0 (docs/src/proxy/backchannel-logout.md): ID tokens carry the
//! pool session's `sid`; discovery advertises it; when a pool session ends — hosted sign-out,
//! `pool users sign-out`, `disable`, `reset-password`, `delete` — every `[[pool.clients]]` with a
//! `backchannel_logout_uri` that got tokens for the user receives a logout token, verified
//! here against the pool's JWKS and §2.4. Delivery is retried and never slows the user's page.

mod pool_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pool_support::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
const SECRET: &str = "app-secret-0123456789";

/// One logout request a receiver got: its form body's `logout_token`.
#[derive(Clone, Debug)]
struct Received {
    token: String,
    content_type: String,
}

/// How a receiver answers.
#[derive(Clone, Copy)]
enum Mode {
    /// 503 to the first `n` requests, then 200.
    FailFirst(usize),
    /// Accepts connections and never answers.
    Silent,
}

/// A back-channel logout URI on a free loopback port.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(mode: Mode) -> Receiver {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/backchannel-logout", l.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let seen = got.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    continue;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    if let Mode::Silent = mode {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        drop(s);
                        return;
                    }
                    let Some((head, body)) = read_request(&mut s).await else {
                        return;
                    };
                    let content_type = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-type")
                                .then(|| v.trim().to_string())
                        })
                        .unwrap_or_default();
                    let token = url::form_urlencoded::parse(&body)
                        .find(|(k, _)| k == "logout_token")
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default();
                    let n = {
                        let mut g = seen.lock();
                        g.push(Received {
                            token,
                            content_type,
                        });
                        g.len()
                    };
                    let status = match mode {
                        Mode::FailFirst(k) if n <= k => "503 Service Unavailable",
                        _ => "200 OK",
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\ncache-control: no-store\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        Receiver { url, got }
    }

    fn tokens(&self) -> Vec<Received> {
        self.got.lock().clone()
    }

    /// Waits until at least `n` requests arrived (at most 10 s); returns them all.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.got.lock().len() < n {
            assert!(
                Instant::now() < deadline,
                "expected {n} logout requests, got {:?}",
                self.tokens()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.tokens()
    }
}

async fn read_request(s: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some((head, buf[head_end..head_end + len].to_vec()))
}

fn clients(app_uri: &str, unused_uri: &str) -> String {
    format!(
        r#"
[[pool.clients]]
client_id = "app"
client_secret = "{SECRET}"
redirect_uris = ["http://127.0.0.1:9/cb"]
backchannel_logout_uri = "{app_uri}"
[[pool.clients]]
client_id = "unused"
client_secret = "{SECRET}"
redirect_uris = ["http://127.0.0.1:9/cb"]
backchannel_logout_uri = "{unused_uri}"
"#
    )
}

/// Verifies a JWS against the pool's JWKS (RS256 or ES256, by `kid`); returns header and claims.
async fn verified(s: &Server, jwt: &str) -> (Value, Value) {
    verified_jws(s, jwt).await
}

/// Checks a logout token per Back-Channel Logout 1.0 §2.4 for `aud` and `sub`; returns its `sid`.
async fn check_logout_token(s: &Server, r: &Received, sub: &str) -> String {
    assert_eq!(r.content_type, "application/x-www-form-urlencoded");
    let (header, c) = verified(s, &r.token).await;
    assert_eq!(header["typ"], "logout+jwt", "{header}");
    assert_eq!(c["iss"], s.url("/oauth2/pool"), "{c}");
    assert_eq!(c["aud"], "app", "{c}");
    assert_eq!(c["sub"], sub, "{c}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
    assert!((now - 60..=now + 5).contains(&iat), "{c}");
    assert!(exp > now && exp <= iat + 600, "{c}");
    assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()), "{c}");
    assert_eq!(c["events"], serde_json::json!({ EVENT: {} }), "{c}");
    assert!(c.get("nonce").is_none(), "a logout token has no nonce: {c}");
    c["sid"].as_str().expect("sid").to_string()
}

/// A browser signed in to the pool as `user`.
async fn browser_signed_in(s: &Server, user: &str) -> reqwest::Client {
    let c = browser();
    let r = sign_in(&c, s, &s.url("/oauth2/pool/login"), user, PASSWORD).await;
    assert_eq!(r.status(), 200, "sign-in failed");
    c
}

/// Code flow for the `app` client with the browser's pool session; returns the ID token's
/// claims, after checking that a refreshed ID token names the same pool session.
async fn tokens_for_app(s: &Server, c: &reqwest::Client) -> Value {
    let r = c
        .get(s.url("/oauth2/pool/authorize?response_type=code&client_id=app&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=openid&state=st&nonce=nn"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = url::Url::parse(&location(&r)).unwrap();
    let code = loc
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in {loc}"));
    let token = |form: Vec<(&'static str, String)>| async move {
        reqwest::Client::new()
            .post(s.url("/oauth2/pool/token"))
            .basic_auth("app", Some(SECRET))
            .form(&form)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let t = token(vec![
        ("grant_type", "authorization_code".into()),
        ("code", code),
        ("redirect_uri", "http://127.0.0.1:9/cb".into()),
    ])
    .await;
    let (_, claims) = verified(s, t["id_token"].as_str().expect("id_token")).await;
    let refresh = t["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_string();
    let refreshed = token(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh),
    ])
    .await;
    let (_, again) = verified(s, refreshed["id_token"].as_str().expect("id_token")).await;
    assert_eq!(
        again["sid"], claims["sid"],
        "a refreshed ID token names the same session"
    );
    claims
}

fn sub_of(s: &Server, user: &str) -> String {
    let (ok, out, err) = s.cli(&["users", "show", user]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["sub"].as_str().unwrap().to_string()
}

/// Every way a pool session ends sends the `app` client a valid logout token naming the
/// session(s) it had; the `unused` client, which never got tokens for the user, gets nothing.
async fn every_way_a_session_ends_sends_logout_tokens(backend: Backend) {
    let app = Receiver::start(Mode::FailFirst(0)).await;
    let unused = Receiver::start(Mode::FailFirst(0)).await;
    let s = Server::start(backend, &clients(&app.url, &unused.url)).await;
    let disco: Value = reqwest::get(s.url("/oauth2/pool/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(disco["backchannel_logout_supported"], true);
    assert_eq!(disco["backchannel_logout_session_supported"], true);
    create_user(&s, "alice", "alice@example.com");
    let sub = sub_of(&s, "alice");

    // Hosted sign-out of one of two pool sessions: a token for that session only.
    let b1 = browser_signed_in(&s, "alice").await;
    let b2 = browser_signed_in(&s, "alice").await;
    let id1 = tokens_for_app(&s, &b1).await;
    let id2 = tokens_for_app(&s, &b2).await;
    let (sid1, sid2) = (id1["sid"].as_str().unwrap(), id2["sid"].as_str().unwrap());
    assert_ne!(sid1, sid2, "each pool session has its own sid");
    assert_eq!(sid1.len(), 32);
    // A second authorization in the same pool session names the same sid.
    assert_eq!(tokens_for_app(&s, &b1).await["sid"], sid1);
    let r = b1.get(s.url("/oauth2/pool/logout")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let got = app.wait_for(1).await;
    assert_eq!(check_logout_token(&s, &got[0], &sub).await, sid1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.tokens().len(), 1, "one token for one session");

    // `users sign-out`: the remaining session (the CLI waits for delivery before exiting).
    let (ok, _, err) = s.cli(&["users", "sign-out", "alice"]);
    assert!(ok, "{err}");
    let got = app.tokens();
    assert!(got.len() >= 2, "no logout token after users sign-out");
    let mut sids = Vec::new();
    for r in &got[1..] {
        sids.push(check_logout_token(&s, r, &sub).await);
    }
    assert!(sids.iter().any(|x| x == sid2), "{sids:?}");
    let mut jtis: Vec<String> = Vec::new();
    for r in &got {
        jtis.push(
            verified(&s, &r.token).await.1["jti"]
                .as_str()
                .unwrap()
                .into(),
        );
    }
    jtis.sort();
    jtis.dedup();
    assert_eq!(jtis.len(), got.len(), "every logout token has its own jti");

    // `disable`, an admin password reset, then `delete`: each ends a fresh session.
    let restore: [&[&str]; 3] = [
        &["users", "enable", "alice"],
        &[
            "users",
            "set-password",
            "alice",
            "--password",
            PASSWORD,
            "--permanent",
        ],
        &[],
    ];
    for (cmd, restore) in ["disable", "reset-password", "delete"]
        .into_iter()
        .zip(restore)
    {
        let before = app.tokens().len();
        let b = browser_signed_in(&s, "alice").await;
        let sid = tokens_for_app(&s, &b).await["sid"]
            .as_str()
            .unwrap()
            .to_string();
        let (ok, _, err) = s.cli(&["users", cmd, "alice"]);
        assert!(ok, "{cmd}: {err}");
        let got = app.tokens();
        assert_eq!(got.len(), before + 1, "{cmd}: one logout token");
        assert_eq!(
            check_logout_token(&s, &got[before], &sub).await,
            sid,
            "{cmd}"
        );
        if !restore.is_empty() {
            let (ok, _, err) = s.cli(restore);
            assert!(ok, "{err}");
        }
    }
    assert!(
        unused.tokens().is_empty(),
        "a client without a session got a token"
    );
    let log = s.log_text();
    for r in app.tokens() {
        assert!(!log.contains(&r.token), "a logout token was logged");
    }
}
on_both!(
    every_way_a_session_ends,
    every_way_a_session_ends_sends_logout_tokens
);

/// A receiver that answers 503 twice gets the token on the third attempt, within the time the
/// CLI waits; each attempt carries a fresh token (a retry is never a replay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_the_token_on_retry() {
    let app = Receiver::start(Mode::FailFirst(2)).await;
    let s = Server::start(Backend::Sqlite, &clients(&app.url, &app.url)).await;
    create_user(&s, "bob", "bob@example.com");
    let sub = sub_of(&s, "bob");
    let b = browser_signed_in(&s, "bob").await;
    let sid = tokens_for_app(&s, &b).await["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let start = Instant::now();
    let (ok, _, err) = s.cli(&["users", "sign-out", "bob"]);
    assert!(ok, "{err}");
    assert!(
        !err.contains("not delivered"),
        "the CLI gave up too early: {err}"
    );
    let got = app.tokens();
    assert_eq!(got.len(), 3, "two failures and one success: {got:?}");
    assert!(start.elapsed() < Duration::from_secs(6));
    let mut jtis = Vec::new();
    for r in &got {
        assert_eq!(check_logout_token(&s, r, &sub).await, sid);
        jtis.push(verified(&s, &r.token).await.1["jti"].clone());
    }
    assert!(jtis[0] != jtis[1] && jtis[1] != jtis[2], "{jtis:?}");
}

/// A receiver that never answers does not hold up the user's sign-out page; the CLI waits for
/// it only a bounded time and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_does_not_slow_sign_out() {
    let app = Receiver::start(Mode::Silent).await;
    let s = Server::start(Backend::Sqlite, &clients(&app.url, &app.url)).await;
    create_user(&s, "dave", "dave@example.com");
    let b = browser_signed_in(&s, "dave").await;
    tokens_for_app(&s, &b).await;
    let start = Instant::now();
    let r = b.get(s.url("/oauth2/pool/logout")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "the sign-out page took {took:?}"
    );

    let b = browser_signed_in(&s, "dave").await;
    tokens_for_app(&s, &b).await;
    let start = Instant::now();
    let (ok, _, err) = s.cli(&["users", "sign-out", "dave"]);
    let took = start.elapsed();
    assert!(ok, "the sign-out itself succeeded: {err}");
    assert!(
        took < Duration::from_secs(9),
        "the CLI waited {took:?} for a dead receiver"
    );
    assert!(err.contains("not delivered"), "{err}");
}

/// Signing out at the pool's own end-session endpoint (not through the proxy) ends the proxy's
/// sessions made from that pool session, and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_sign_out_ends_the_proxys_sessions_of_that_pool_session() {
    let s = Server::start(Backend::Sqlite, "").await;
    create_user(&s, "erin", "erin@example.com");
    let through_proxy = || async {
        let c = browser();
        let r = c.get(s.url("/app")).send().await.unwrap();
        assert_eq!(r.status(), 302);
        let (login, _) = follow(&c, &s.base, absolute(&s.base, &location(&r))).await;
        let login_url = login.url().to_string();
        assert!(login_url.contains("/oauth2/pool/login"), "{login_url}");
        let r = sign_in(&c, &s, &login_url, "erin", PASSWORD).await;
        assert_eq!(r.status(), 302, "sign-in failed");
        let (r, _) = follow(&c, &s.base, location(&r)).await;
        assert_eq!(r.status(), 200, "signed in through the proxy");
        c
    };
    let (one, other) = (through_proxy().await, through_proxy().await);
    let r = one.get(s.url("/oauth2/pool/logout")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let status = |c: reqwest::Client| {
        let url = s.url("/app");
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(one.clone()).await != 302 {
        assert!(
            Instant::now() < deadline,
            "the proxy session outlived its pool session"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status(other).await,
        200,
        "another pool session is untouched"
    );
}
