//! The built-in pool's user access tokens on a bearer route end when the pool ends the user's
//! sessions (invariant "revocation covers every credential", review F5): `disable`,
//! `sign-out`, `reset-password`, `delete` (the CLI, another process), and the hosted sign-out
//! of one pool session (the tokens issued in that session only). The pool's own ID tokens and
//! back-channel logout tokens (review F11) are refused on the same route. One real process.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const APP_SECRET: &str = "app-secret-0123456789abcdef";
const CB: &str = "http://127.0.0.1:9/cb";

/// A back-channel logout URI on a free loopback port: keeps every `logout_token` it gets.
async fn logout_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/bcl", l.local_addr().unwrap());
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = got.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        if let Some((_, t)) = url::form_urlencoded::parse(body.as_bytes())
                            .find(|(k, _)| k == "logout_token")
                        {
                            seen.lock().push(t.into_owned());
                        }
                        break;
                    }
                }
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    });
    (url, got)
}

fn config(port: u16, admin: u16, echo: &str, dir: &std::path::Path, bcl: &str) -> String {
    format!(
        r#"
public_url = "http://127.0.0.1:{port}"

[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"

[session]
secrets = ["{SECRET}"]

[[routes]]
path = "/user-api/"
upstream = "{echo}"
provider = "pool"
on_unauthenticated = "deny"
accept_bearer = true
bearer_audience = ["app"]

[[routes]]
path = "/"
upstream = "{echo}"
provider = "pool"

[pool]
database = "sqlite://{db}"

[[pool.clients]]
client_id = "app"
client_secret = "{APP_SECRET}"
redirect_uris = ["{CB}"]
backchannel_logout_uri = "{bcl}"
"#,
        db = dir.join("pool.db").display()
    )
}

fn cli(config: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new(bin())
        .arg("pool")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A browser signed in to the pool as `user`.
async fn signed_in(base: &str, user: &str) -> reqwest::Client {
    let c = pool_support::browser();
    let login = format!("{base}/oauth2/pool/login");
    let r = pool_support::sign_in_at(&c, base, &login, user, pool_support::PASSWORD).await;
    assert_eq!(r.status(), 200, "pool sign-in failed");
    c
}

/// The code flow for `app` in the browser's pool session: the user's access token.
async fn access_token(base: &str, c: &reqwest::Client) -> String {
    token_pair(base, c).await.0
}

/// The code flow for `app` in the browser's pool session: the access token and the ID token.
async fn token_pair(base: &str, c: &reqwest::Client) -> (String, String) {
    let r = c
        .get(format!(
            "{base}/oauth2/pool/authorize?response_type=code&client_id=app&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=openid&state=st"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = reqwest::Url::parse(&location(&r)).unwrap();
    let code = loc
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in {loc}"));
    let t: Value = reqwest::Client::new()
        .post(format!("{base}/oauth2/pool/token"))
        .basic_auth("app", Some(APP_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", CB),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        t["access_token"]
            .as_str()
            .expect("access_token")
            .to_string(),
        t["id_token"].as_str().expect("id_token").to_string(),
    )
}

async fn refused_within_5s(base: &str, token: &str, case: &str) {
    super::revocation::refused_within_5s(base, "/user-api/x", token, case).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_ending_a_users_sessions_ends_their_access_tokens() {
    portcullis::install_crypto();
    let (port, admin) = Proxy::ports();
    let echo = Echo::start().await;
    let dir = temp_dir("bearer-pool-users");
    let (bcl, logout_tokens) = logout_receiver().await;
    let proxy = Proxy::start(port, admin, &config(port, admin, &echo.url(), &dir, &bcl)).await;
    let base = proxy.base.as_str();
    let file = proxy.log_path().parent().unwrap().join("portcullis.toml");
    let users = ["alice", "bob", "carol", "dave", "erin"];
    for u in users {
        cli(
            &file,
            &[
                "users",
                "add",
                u,
                "--password",
                pool_support::PASSWORD,
                "--permanent",
                "--attribute",
                &format!("email={u}@example.com"),
            ],
        );
    }
    let mut tokens = Vec::new();
    for u in users {
        let c = signed_in(base, u).await;
        let t = access_token(base, &c).await;
        assert_eq!(claims_of(&t)["username"], u);
        let seen = echoed(get(base, "/user-api/x", &t).await).await;
        assert_eq!(
            header(&seen, "x-amzn-oidc-identity"),
            claims_of(&t)["sub"].as_str()
        );
        // Twice: the second answer comes from the verified-token cache.
        assert_eq!(get(base, "/user-api/x", &t).await.status(), 200);
        tokens.push((c, t));
    }
    // erin has a second pool session (another browser) with its own tokens.
    let (erin2, erin2_id) = token_pair(base, &signed_in(base, "erin").await).await;
    // The pool's ID token (aud = app, the route's bearer_audience) is not an access token.
    assert_refused(
        get(base, "/user-api/x", &erin2_id).await,
        401,
        "invalid_token",
        "the pool's ID token",
    )
    .await;

    cli(&file, &["users", "disable", "alice"]);
    refused_within_5s(base, &tokens[0].1, "pool users disable").await;
    cli(&file, &["users", "sign-out", "bob"]);
    refused_within_5s(base, &tokens[1].1, "pool users sign-out").await;
    cli(&file, &["users", "reset-password", "carol"]);
    refused_within_5s(base, &tokens[2].1, "pool users reset-password").await;
    cli(&file, &["users", "delete", "dave"]);
    refused_within_5s(base, &tokens[3].1, "pool users delete").await;
    // The hosted sign-out of one pool session: its tokens end, the other session's do not.
    let r = tokens[4]
        .0
        .get(format!("{base}/oauth2/pool/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    refused_within_5s(base, &tokens[4].1, "hosted sign-out of that pool session").await;
    assert_eq!(
        get(base, "/user-api/x", &erin2).await.status(),
        200,
        "another pool session's token is untouched"
    );

    // The pool's own logout tokens (aud = app, typ logout+jwt) were sent to app's URI; not one
    // of them is an access token, for the reason that it is a logout token.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while logout_tokens.lock().len() < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "logout tokens sent: {}",
            logout_tokens.lock().len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let sent = logout_tokens.lock().clone();
    for t in &sent {
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(t.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["typ"], "logout+jwt");
        assert_eq!(claims_of(t)["aud"], "app");
        assert_refused(
            get(base, "/user-api/x", t).await,
            401,
            "invalid_token",
            "the pool's logout token",
        )
        .await;
    }
    let refused_as_logout = proxy
        .logs()
        .matches("not an access token (the JOSE typ names another kind of token)")
        .count();
    assert!(refused_as_logout >= sent.len(), "{}", proxy.logs());
}
