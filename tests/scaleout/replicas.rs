//! Replicas that agree: a login on one is a session on all; a sign-out, a revocation or a
//! back-channel logout on one is honoured by all within 5 s (docs/src/proxy/sessions.md, §8, §11).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;
use crate::redis::{Cluster, Options, Redis};

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";

/// A replica's configuration: every replica shares `public_url` (the load balancer's address),
/// the session secret and the session settings; each has its own listener and data_dir.
fn replica_config(
    port: u16,
    admin: u16,
    public: &str,
    issuer: &str,
    echo: &str,
    session: &str,
) -> String {
    format!(
        r#"
public_url = "{public}"

[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
admin_token = "{ADMIN_TOKEN}"

[session]
secrets = ["{SECRET}"]
{session}

[log]
level = "debug"

[providers.idp]
issuer = "{issuer}"
client_id = "portcullis"
client_secret = "{CLIENT_SECRET}"

[[routes]]
path = "/public/"
upstream = "{echo}"
on_unauthenticated = "allow"

[[routes]]
path = "/api/"
upstream = "{echo}"
accept_bearer = true
bearer_audience = ["api://orders"]

[[routes]]
path = "/"
upstream = "{echo}"
"#
    )
}

struct Replicas {
    idp: Idp,
    _echo: Echo,
    nodes: Vec<Proxy>,
    configs: Vec<std::path::PathBuf>,
}

impl Replicas {
    /// `n` replicas with `session` (TOML lines under `[session]`); `env` for each process.
    async fn start(n: usize, session: &str, access_ttl: u64, env: &[(&str, &str)]) -> Replicas {
        portcullis::install_crypto();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| Proxy::ports()).collect();
        let public = format!("http://127.0.0.1:{}", ports[0].0);
        let idp = Idp::start(
            json!([Idp::client_for(
                &public,
                json!({
                    "backchannel_logout_uri": format!("{public}/oauth2/backchannel-logout"),
                    "backchannel_logout_session_required": true,
                })
            )]),
            access_ttl,
        );
        let echo = Echo::start().await;
        let mut nodes = Vec::new();
        let mut configs = Vec::new();
        for (port, admin) in ports {
            let cfg = replica_config(port, admin, &public, &idp.issuer, &echo.url(), session);
            let p = Proxy::start_with_env(port, admin, &cfg, env).await;
            configs.push(config_path(&p));
            nodes.push(p);
        }
        Replicas {
            idp,
            _echo: echo,
            nodes,
            configs,
        }
    }

    fn url(&self, i: usize, path: &str) -> String {
        format!("{}{path}", self.nodes[i].base)
    }

    async fn idp_stats(&self) -> Value {
        reqwest::get(format!("{}/__test/stats", self.idp.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// The config file the harness wrote for a proxy (beside its log).
fn config_path(p: &Proxy) -> std::path::PathBuf {
    let log = p.log_path();
    log.parent().unwrap().join("portcullis.toml")
}

/// Polls until `check` is true, at most `within`; returns how long it took.
pub(crate) async fn within<F, Fut>(within: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Signs in as `user` through replica 0; returns the session cookie header.
async fn sign_in(r: &Replicas, c: &reqwest::Client, user: &str) -> String {
    let cb = login(c, &r.nodes[0], "/", user).await;
    assert_eq!(cb.status(), 302, "login failed");
    let cookie = session_cookie(&cb);
    assert!(!cookie.is_empty());
    cookie
}

fn assert_no_token_in(dump: &str, what: &[&str]) {
    for w in what {
        assert!(!dump.contains(w), "the Redis data reveals {w:?}");
    }
}

/// Login on A is a session on B; the cookie is a small ticket; Redis holds nothing readable;
/// sign-out on A makes a replayed cookie "no session" on B. Standalone Redis.
#[tokio::test(flavor = "multi_thread")]
async fn redis_store_login_on_a_use_on_b_sign_out_sticks() {
    let redis = Redis::start(Options::default());
    let session = format!("store = \"redis\"\nredis_url = \"{}\"", redis.url);
    let r = Replicas::start(2, &session, 3600, &[]).await;
    let c = client();
    let cb = login(&c, &r.nodes[0], "/", "alice").await;
    assert_eq!(cb.status(), 302);
    let set: Vec<String> = cb
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .filter(|v| v.starts_with("AWSELBAuthSessionCookie-0="))
        .collect();
    assert_eq!(set.len(), 1, "{set:?}");
    assert!(
        set[0].len() < 200,
        "the ticket cookie is {} bytes: {}",
        set[0].len(),
        set[0]
    );
    let cookie = session_cookie(&cb);
    // A login on A is a session on B.
    let v = echoed(
        bare_client()
            .get(r.url(1, "/app"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(header(&v, "x-amzn-oidc-identity"), Some("alice"));
    let access = header(&v, "x-amzn-oidc-accesstoken").unwrap().to_string();
    // A Redis dump reveals no token, no claim and no ticket.
    let keys = redis.cli(&["--scan"]).unwrap();
    let mut dump = keys.clone();
    for k in keys.lines() {
        dump.push_str(&redis.cli(&["GET", k]).unwrap_or_default());
    }
    let ticket = cookie.split('=').nth(1).unwrap().to_string();
    assert_no_token_in(&dump, &[&access, "alice@example.com", &ticket]);
    assert!(dump.contains("portcullis:session:"), "{keys}");
    // Sign out on A; the copied cookie replayed on B is no session (within 5 s).
    let out = c.get(r.url(0, "/oauth2/sign_out")).send().await.unwrap();
    assert_eq!(out.status(), 302);
    let gone = within(Duration::from_secs(5), || async {
        status_with(&r.nodes[1].base, "/app", &cookie).await == 302
    })
    .await;
    assert!(
        gone.is_some(),
        "a signed-out session still works on replica B"
    );
    assert_eq!(status_with(&r.nodes[0].base, "/app", &cookie).await, 302);
    // Every worker of every replica, within the 5 s docs/src/deploying/scale-out.md allows.
    let ui = within(Duration::from_secs(5), || async {
        bare_client()
            .get(r.url(1, "/oauth2/userinfo"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status()
            == 401
    })
    .await;
    assert!(
        ui.is_some(),
        "userinfo still answers for a signed-out session"
    );
}

/// The cookie store with Redis for revocations: sign-out, `sessions revoke` (CLI), the admin
/// API and its token rules.
#[tokio::test(flavor = "multi_thread")]
async fn cookie_store_revocations_are_shared_through_redis() {
    let redis = Redis::start(Options::default());
    let session = format!("redis_url = \"{}\"", redis.url);
    let r = Replicas::start(2, &session, 3600, &[]).await;
    // Sign-out on A → replay on B is no session.
    let c = client();
    let cookie = sign_in(&r, &c, "alice").await;
    assert_eq!(status_with(&r.nodes[1].base, "/app", &cookie).await, 200);
    c.get(r.url(0, "/oauth2/sign_out")).send().await.unwrap();
    assert!(
        within(Duration::from_secs(5), || async {
            status_with(&r.nodes[1].base, "/app", &cookie).await == 302
        })
        .await
        .is_some(),
        "sign-out on A not honoured on B"
    );

    // `portcullis sessions revoke` ends every session of the user, on every replica.
    let (c1, c2) = (client(), client());
    let phone = sign_in(&r, &c1, "bob").await;
    let laptop = sign_in(&r, &c2, "bob").await;
    let other = sign_in(&r, &client(), "alice").await;
    for ck in [&phone, &laptop, &other] {
        assert_eq!(status_with(&r.nodes[1].base, "/app", ck).await, 200);
    }
    let out = std::process::Command::new(bin())
        .args([
            "sessions",
            "revoke",
            "--provider",
            "idp",
            "--sub",
            "bob",
            "--config",
        ])
        .arg(&r.configs[1])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for ck in [&phone, &laptop] {
        for node in &r.nodes {
            assert!(
                within(Duration::from_secs(5), || async {
                    status_with(&node.base, "/app", ck).await == 302
                })
                .await
                .is_some(),
                "a revoked session of bob still works"
            );
        }
    }
    assert_eq!(
        status_with(&r.nodes[0].base, "/app", &other).await,
        200,
        "alice was not revoked"
    );
    // bob signs in again afterwards: the new session is good.
    let again = sign_in(&r, &client(), "bob").await;
    assert_eq!(status_with(&r.nodes[1].base, "/app", &again).await, 200);

    // The admin API: no token 401, a wrong one 403, the right one revokes.
    let api = format!("{}/sessions/revoke", r.nodes[1].admin);
    let body = json!({"provider": "idp", "sub": "alice"});
    let http = reqwest::Client::new();
    assert_eq!(
        http.post(&api).json(&body).send().await.unwrap().status(),
        401
    );
    assert_eq!(
        http.post(&api)
            .bearer_auth("wrong-token-wrong-token")
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let bad = http
        .post(&api)
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"sub": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let ok = http
        .post(&api)
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(
        within(Duration::from_secs(5), || async {
            status_with(&r.nodes[0].base, "/app", &other).await == 302
        })
        .await
        .is_some(),
        "admin API revocation not honoured on A"
    );
}

/// Many parallel requests on two replicas when the access token has expired: all succeed and
/// the IdP sees exactly one refresh (docs/src/deploying/scale-out.md), with either store.
#[tokio::test(flavor = "multi_thread")]
async fn refresh_once_across_replicas_cookie_store() {
    refresh_once(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_once_across_replicas_redis_store() {
    refresh_once(true).await;
}

async fn refresh_once(redis_store: bool) {
    let redis = Redis::start(Options::default());
    let session = format!(
        "{}redis_url = \"{}\"",
        if redis_store {
            "store = \"redis\"\n"
        } else {
            ""
        },
        redis.url
    );
    let r = Replicas::start(2, &session, 3, &[]).await;
    let c = client();
    let cookie = sign_in(&r, &c, "alice").await;
    assert_eq!(status_with(&r.nodes[1].base, "/app", &cookie).await, 200);
    let before = r.idp_stats().await["refresh_grants"].as_u64().unwrap();
    // Let the 3 s access token expire, then hit both replicas at once.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let base = r.nodes[i % 2].base.clone();
        let cookie = cookie.clone();
        tasks.push(tokio::spawn(async move {
            let resp = bare_client()
                .get(format!("{base}/app"))
                .header("cookie", cookie)
                .header("accept", HTML)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let token = resp
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| header(&v, "x-amzn-oidc-accesstoken").map(str::to_string));
            (status, token)
        }));
    }
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        let (status, token) = t.await.unwrap();
        assert_eq!(status, 200, "a request at access-token expiry failed");
        tokens.insert(token.unwrap());
    }
    let after = r.idp_stats().await["refresh_grants"].as_u64().unwrap();
    assert_eq!(
        after - before,
        1,
        "the IdP saw {} refreshes",
        after - before
    );
    assert_eq!(
        tokens.len(),
        1,
        "every request used the one refreshed access token"
    );
}

/// Redis killed: requests that need it fail closed with 503 (`session_store_unavailable`),
/// `/readyz` says why; Redis back: service resumes by itself.
#[tokio::test(flavor = "multi_thread")]
async fn redis_down_fails_closed_and_recovers() {
    let mut redis = Redis::start(Options::default());
    let session = format!(
        "store = \"redis\"\nredis_url = \"{}\"\nredis_timeout = \"500ms\"",
        redis.url
    );
    let r = Replicas::start(2, &session, 3600, &[]).await;
    let c = client();
    let cookie = sign_in(&r, &c, "alice").await;
    assert_eq!(status_with(&r.nodes[0].base, "/app", &cookie).await, 200);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let token = r
        .idp
        .sign(
            json!({"typ": "at+jwt"}),
            json!({"iss": r.idp.issuer, "sub": "alice", "aud": "api://orders", "iat": now,
                   "exp": now + 600, "jti": rand_id()}),
        )
        .await;
    assert_eq!(bearer_status(&r.nodes[0].base, &token).await, 200);
    redis.kill();
    // B never saw this ticket: it needs Redis now.
    let resp = bare_client()
        .get(r.url(1, "/app"))
        .header("cookie", &cookie)
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"], "session_store_unavailable");
    let page = status_with(&r.nodes[1].base, "/app", &cookie).await;
    assert_eq!(page, 503);
    // A knows the session, but after 5 s without the shared revocation list it fails closed.
    assert!(
        within(Duration::from_secs(10), || async {
            status_with(&r.nodes[0].base, "/app", &cookie).await == 503
        })
        .await
        .is_some(),
        "a replica kept honouring sessions without its revocation list"
    );
    let ready = reqwest::get(format!("{}/readyz", r.nodes[0].admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("redis: unreachable"));
    // A bearer token, cached as verified, fails closed too once the list is stale (5 s): a
    // revocation might be missed. (The session check above can fail sooner — on a worker that
    // never saw the ticket it needs Redis at once — so wait for staleness here as well.)
    assert!(
        within(Duration::from_secs(10), || async {
            bearer_status(&r.nodes[0].base, &token).await == 503
        })
        .await
        .is_some(),
        "a replica kept honouring bearer tokens without its revocation list"
    );
    // Public routes do not need a session store.
    assert_eq!(status_with(&r.nodes[0].base, "/public/x", "").await, 200);
    // Redis returns (with its data): both replicas serve the session again, unaided.
    redis.restart();
    for node in &r.nodes {
        assert!(
            within(Duration::from_secs(10), || async {
                status_with(&node.base, "/app", &cookie).await == 200
            })
            .await
            .is_some(),
            "service did not resume after Redis came back"
        );
    }
    assert_eq!(bearer_status(&r.nodes[0].base, &token).await, 200);
    let ready = reqwest::get(format!("{}/readyz", r.nodes[1].admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

/// `rediss://` with an ACL user and a database number; Redis Cluster with seed nodes.
#[tokio::test(flavor = "multi_thread")]
async fn redis_tls_with_acl_user() {
    let redis = Redis::start(Options {
        tls: true,
        acl_password: Some("acl-password-123"),
        db: 2,
    });
    let ca = redis.ca_file.clone().unwrap();
    let session = format!("store = \"redis\"\nredis_url = \"{}\"", redis.url);
    let ca_env = ca.display().to_string();
    let r = Replicas::start(2, &session, 3600, &[("SSL_CERT_FILE", ca_env.as_str())]).await;
    let c = client();
    let cookie = sign_in(&r, &c, "alice").await;
    assert_eq!(status_with(&r.nodes[1].base, "/app", &cookie).await, 200);
    let keys = redis.cli(&["-n", "2", "--scan"]).unwrap();
    assert!(
        keys.contains("portcullis:session:"),
        "the session is in database 2: {keys:?}"
    );
    c.get(r.url(0, "/oauth2/sign_out")).send().await.unwrap();
    assert!(
        within(Duration::from_secs(5), || async {
            status_with(&r.nodes[1].base, "/app", &cookie).await == 302
        })
        .await
        .is_some()
    );
    assert!(Path::new(&ca).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_cluster_store() {
    let cluster = Cluster::start();
    let urls: Vec<String> = cluster.urls.iter().map(|u| format!("\"{u}\"")).collect();
    let session = format!(
        "store = \"redis\"\nredis_cluster_urls = [{}]",
        urls.join(", ")
    );
    let r = Replicas::start(3, &session, 3600, &[]).await;
    let c = client();
    let cookie = sign_in(&r, &c, "alice").await;
    let v = echoed(
        bare_client()
            .get(r.url(2, "/app"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(header(&v, "x-amzn-oidc-identity"), Some("alice"));
    let access = header(&v, "x-amzn-oidc-accesstoken").unwrap().to_string();
    assert_no_token_in(&cluster.dump(), &[&access, "alice@example.com"]);
    c.get(r.url(1, "/oauth2/sign_out")).send().await.unwrap();
    for i in [0, 2] {
        assert!(
            within(Duration::from_secs(5), || async {
                status_with(&r.nodes[i].base, "/app", &cookie).await == 302
            })
            .await
            .is_some(),
            "sign-out on B not honoured on replica {i}"
        );
    }
}

/// The real IdP ends its session (RP-initiated logout at the IdP, as another app would do it):
/// its back-channel logout token ends the proxy sessions made from that IdP session, on
/// every replica.
#[tokio::test(flavor = "multi_thread")]
async fn backchannel_logout_from_the_idp_ends_sessions_everywhere() {
    let redis = Redis::start(Options::default());
    let session = format!("redis_url = \"{}\"", redis.url);
    let r = Replicas::start(2, &session, 3600, &[]).await;
    let c = client();
    let cookie = sign_in(&r, &c, "alice").await;
    assert_eq!(status_with(&r.nodes[1].base, "/app", &cookie).await, 200);
    // Log out at the IdP with the browser's IdP session (not through Portcullis).
    let end = c
        .get(format!("{}/session/end", r.idp.issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(end.status(), 200);
    let html = end.text().await.unwrap();
    let action = html
        .split("action=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let xsrf = html
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let confirm = c
        .post(action)
        .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")])
        .send()
        .await
        .unwrap();
    assert!(confirm.status().is_redirection() || confirm.status().is_success());
    let stats = r.idp_stats().await;
    assert_eq!(stats["backchannel_logouts"], 1, "{stats}");
    for node in &r.nodes {
        assert!(
            within(Duration::from_secs(5), || async {
                status_with(&node.base, "/app", &cookie).await == 302
            })
            .await
            .is_some(),
            "back-channel logout not honoured"
        );
    }
}

/// Logout tokens that break a rule of OIDC Back-Channel Logout §2.6 get 400; a replay of a
/// good one on another replica too (the jti cache is shared).
#[tokio::test(flavor = "multi_thread")]
async fn forged_and_replayed_logout_tokens_are_refused() {
    let redis = Redis::start(Options::default());
    let session = format!("redis_url = \"{}\"", redis.url);
    let r = Replicas::start(2, &session, 3600, &[]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let good = |jti: &str| {
        json!({
            "iss": r.idp.issuer, "aud": "portcullis", "iat": now, "exp": now + 120, "jti": jti,
            "sub": "nobody",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        })
    };
    let sign = |header: Value, claims: Value| r.idp.sign(header, claims);
    let post = |node: usize, token: String| {
        let url = r.url(node, "/oauth2/backchannel-logout");
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .form(&[("logout_token", token)])
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.headers()
                    .get("cache-control")
                    .and_then(|v| v.to_str().ok()),
                Some("no-store")
            );
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    let with = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = good(&format!("jti-{}", rand_id()));
        f(c.as_object_mut().unwrap());
        c
    };
    // A good one: 200; the same token again, on the other replica: 400 (replay).
    let t = sign(json!({}), good("jti-once")).await;
    assert_eq!(post(0, t.clone()).await.0, 200);
    let (status, body) = post(1, t).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
    let cases: Vec<(&str, Value)> = vec![
        (
            "nonce",
            with(&|c| {
                c.insert("nonce".into(), json!("n"));
            }),
        ),
        (
            "wrong aud",
            with(&|c| {
                c.insert("aud".into(), json!("someone-else"));
            }),
        ),
        (
            "no events",
            with(&|c| {
                c.remove("events");
            }),
        ),
        (
            "wrong event",
            with(&|c| {
                c.insert("events".into(), json!({"urn:other": {}}));
            }),
        ),
        (
            "no sid or sub",
            with(&|c| {
                c.remove("sub");
            }),
        ),
        (
            "no jti",
            with(&|c| {
                c.remove("jti");
            }),
        ),
        (
            "no iat",
            with(&|c| {
                c.remove("iat");
            }),
        ),
        (
            "iat too old",
            with(&|c| {
                c.insert("iat".into(), json!(now - 3600));
            }),
        ),
        (
            "iat in the future",
            with(&|c| {
                c.insert("iat".into(), json!(now + 600));
            }),
        ),
        (
            "no exp",
            with(&|c| {
                c.remove("exp");
            }),
        ),
        (
            "expired",
            with(&|c| {
                c.insert("exp".into(), json!(now - 1));
            }),
        ),
        (
            "unknown iss",
            with(&|c| {
                c.insert("iss".into(), json!("https://evil.example.com"));
            }),
        ),
    ];
    for (name, claims) in cases {
        let t = sign(json!({}), claims).await;
        assert_eq!(post(0, t).await.0, 400, "{name}");
    }
    // Forged signatures: a tampered payload, alg none, HS256 with the public key.
    let t = sign(json!({}), good(&format!("jti-{}", rand_id()))).await;
    let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let mut forged = good(&format!("jti-{}", rand_id()));
    forged["sub"] = json!("alice");
    parts[1] = b64(&forged);
    assert_eq!(post(0, parts.join(".")).await.0, 400, "tampered payload");
    let none = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&forged));
    assert_eq!(post(0, none).await.0, 400, "alg none");
    let hs = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "HS256", "kid": "x"})),
        b64(&forged),
        parts[2]
    );
    assert_eq!(post(0, hs).await.0, 400, "HS256");
    assert_eq!(post(0, "not-a-jwt".into()).await.0, 400);
    let empty = reqwest::Client::new()
        .post(r.url(0, "/oauth2/backchannel-logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 400);
    let get = reqwest::get(r.url(0, "/oauth2/backchannel-logout"))
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
}

fn rand_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A bearer request's status on `base` (no cookie).
async fn bearer_status(base: &str, token: &str) -> u16 {
    bare_client()
        .get(format!("{base}/api/orders"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Revocation covers bearer tokens on every replica (review F5): a user revoked on A (admin
/// API) has their access token refused on B within 5 s, although B had it cached as verified;
/// a replica started afterwards refuses it from the start (the list read whole from Redis);
/// another user's token is untouched.
#[tokio::test(flavor = "multi_thread")]
async fn revoking_a_user_on_one_replica_ends_their_bearer_tokens_on_all() {
    let redis = Redis::start(Options::default());
    let session = format!("redis_url = \"{}\"", redis.url);
    let r = Replicas::start(2, &session, 3600, &[]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = |sub: &str| {
        json!({"iss": r.idp.issuer, "sub": sub, "aud": "api://orders", "iat": now,
               "exp": now + 600, "jti": format!("{sub}-{}", rand_id())})
    };
    let bob = r.idp.sign(json!({"typ": "at+jwt"}), claims("bob")).await;
    let alice = r.idp.sign(json!({"typ": "at+jwt"}), claims("alice")).await;
    for n in &r.nodes {
        for t in [&bob, &alice] {
            assert_eq!(bearer_status(&n.base, t).await, 200);
            assert_eq!(bearer_status(&n.base, t).await, 200);
        }
    }
    let ok = reqwest::Client::new()
        .post(format!("{}/sessions/revoke", r.nodes[0].admin))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"provider": "idp", "sub": "bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let took = within(Duration::from_secs(5), || async {
        bearer_status(&r.nodes[1].base, &bob).await == 401
    })
    .await;
    assert!(
        took.is_some(),
        "bob's token still works on B 5 s after the revocation on A"
    );
    assert_eq!(bearer_status(&r.nodes[0].base, &bob).await, 401);
    assert_eq!(bearer_status(&r.nodes[1].base, &alice).await, 200);
    // What Redis keeps: the live entries in a hash, every change in a stream, expiries in a
    // sorted set. An expired entry left in the hash by an earlier version (not in the expiry
    // set) is deleted by the next replica that reads the hash whole.
    let fields = redis.cli(&["HLEN", "portcullis:revocations"]).unwrap();
    assert_eq!(
        fields.trim(),
        "2",
        "two entries: bob, and the session lifetime in effect"
    );
    let log = redis
        .cli(&["XLEN", "{portcullis:revocations}:log"])
        .unwrap();
    assert!(log.trim().parse::<u32>().unwrap() >= 1, "{log}");
    let legacy = r#"{"kind":"session","sid":"old","until":1}"#;
    redis
        .cli(&["HSET", "portcullis:revocations", "legacy-old", legacy])
        .unwrap();
    // A replica that starts afterwards (its own empty data_dir) reads the list from Redis.
    let (port, admin) = Proxy::ports();
    let cfg = replica_config(
        port,
        admin,
        &format!("http://127.0.0.1:{}", r.nodes[0].port),
        &r.idp.issuer,
        &r._echo.url(),
        &session,
    );
    let late = Proxy::start(port, admin, &cfg).await;
    assert_eq!(bearer_status(&late.base, &bob).await, 401);
    assert_eq!(bearer_status(&late.base, &alice).await, 200);
    let gone = within(Duration::from_secs(5), || async {
        redis
            .cli(&["HEXISTS", "portcullis:revocations", "legacy-old"])
            .is_some_and(|v| v.trim() == "0")
    })
    .await;
    assert!(
        gone.is_some(),
        "the expired legacy entry is still in the hash"
    );
}
