//! The built-in pool's user access tokens on a bearer route end when the pool ends the user's
//! sessions (invariant "revocation covers every credential", review F5): `disable`,
//! `sign-out`, `reset-password`, `delete` (the CLI, another process), and the hosted sign-out
//! of one pool session (the tokens issued in that session only). One real process.

use super::*;

const APP_SECRET: &str = "app-secret-0123456789abcdef";
const CB: &str = "http://127.0.0.1:9/cb";

fn config(port: u16, admin: u16, echo: &str, dir: &std::path::Path) -> String {
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
    t["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
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
    let proxy = Proxy::start(port, admin, &config(port, admin, &echo.url(), &dir)).await;
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
    // erin has a second pool session (another browser) with its own token.
    let erin2 = access_token(base, &signed_in(base, "erin").await).await;

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
}
