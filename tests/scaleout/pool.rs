//! The built-in pool across replicas (docs/src/pool/index.md storage, §8, §11): Portcullis as a registered
//! pool client loses its sessions on every replica when the pool disables the user
//! (back-channel logout into one replica, shared through Redis); two replicas on one
//! PostgreSQL pool database share users and lockout counters; PostgreSQL down → pool pages
//! 503, proxied sessions keep working, and the pool comes back by itself.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::redis::{Options, Redis};
use crate::replicas::within;

// The pool tests' helpers (sign-in form, fresh PostgreSQL database); they bring their own
// copy of the free-port helper, which the proxy harness also has.
#[allow(clippy::duplicate_mod)]
#[path = "../pool_support/mod.rs"]
mod pool_support;

const APP_SECRET: &str = "app-secret-0123456789abcdef";
const PASSWORD: &str = pool_support::PASSWORD;

fn config_file(p: &Proxy) -> PathBuf {
    p.log_path().parent().unwrap().join("portcullis.toml")
}

/// `portcullis pool ARGS --config FILE`; panics with its output when it fails.
fn pool_cli(config: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(bin())
        .arg("pool")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pool {args:?} failed: {text}");
    text
}

fn add_user(config: &std::path::Path, name: &str) {
    pool_cli(
        config,
        &[
            "users",
            "add",
            name,
            "--password",
            PASSWORD,
            "--permanent",
            "--attribute",
            &format!("email={name}@example.com"),
        ],
    );
}

/// Submits the pool's sign-in form found at `url` (a GET answering 200).
async fn submit_login(
    c: &reqwest::Client,
    url: &reqwest::Url,
    user: &str,
    password: &str,
) -> reqwest::Response {
    let origin = url.origin().ascii_serialization();
    pool_support::sign_in_at(c, &origin, url.as_str(), user, password).await
}

/// A replica's configuration: `[server]`, `[session]` (plus `session` lines), one route to
/// `echo` (plus `route` lines), then `rest`.
fn replica_toml(
    port: u16,
    admin: u16,
    public: &str,
    echo: &str,
    (session, route, rest): (&str, &str, &str),
) -> String {
    format!(
        r#"
public_url = "{public}"
[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
[session]
secrets = ["{SECRET}"]
{session}
[[routes]]
path = "/"
upstream = "{echo}"
{route}
{rest}
"#
    )
}

/// From a proxy URL that needs a session, through the pool's sign-in page, to the proxy's
/// callback; returns the callback's response (302 with the session cookie).
async fn sign_in_through_pool(c: &reqwest::Client, start: &str, user: &str) -> reqwest::Response {
    let mut url = reqwest::Url::parse(start).unwrap();
    for _ in 0..10 {
        if url.path() == "/oauth2/pool/login" {
            let r = submit_login(c, &url, user, PASSWORD).await;
            assert_eq!(r.status(), 302, "pool sign-in failed");
            url = url.join(&location(&r)).unwrap();
            continue;
        }
        let r = c
            .get(url.clone())
            .header("accept", HTML)
            .send()
            .await
            .unwrap();
        if url.path() == "/oauth2/idpresponse" {
            return r;
        }
        assert!(
            r.status().is_redirection(),
            "unexpected {} at {url}",
            r.status()
        );
        url = url.join(&location(&r)).unwrap();
    }
    panic!("sign-in did not reach the callback");
}

/// Portcullis as a `[[pool.clients]]` client of a pool on its own host: two replicas sharing
/// Redis; `pool users disable` (CLI, on the pool's host) sends a logout token to the
/// registered URI on one replica, and the session ends on both within 5 s.
#[tokio::test(flavor = "multi_thread")]
async fn pool_disable_ends_a_pool_clients_sessions_on_every_replica() {
    portcullis::install_crypto();
    let redis = Redis::start(Options::default());
    let echo = Echo::start().await;
    let ports: Vec<(u16, u16)> = (0..2).map(|_| Proxy::ports()).collect();
    let public = format!("http://127.0.0.1:{}", ports[0].0);
    // The pool's own host: 127.0.0.2, so browser cookies stay apart from the replicas'.
    let (pp, pa) = Proxy::ports();
    let pool_origin = format!("http://127.0.0.2:{pp}");
    let data = temp_dir("pool-op");
    let pool_cfg = format!(
        r#"
public_url = "{pool_origin}"
[server]
listen = ["127.0.0.2:{pp}"]
admin_listen = "127.0.0.1:{pa}"
[session]
secrets = ["{SECRET}-pool"]
[[routes]]
path = "/"
upstream = "{echo}"
provider = "pool"
[pool]
database = "sqlite://{db}"
[[pool.clients]]
client_id = "app"
client_secret = "{APP_SECRET}"
redirect_uris = ["{public}/oauth2/idpresponse"]
backchannel_logout_uri = "{public}/oauth2/backchannel-logout"
"#,
        echo = echo.url(),
        db = data.join("pool.db").display(),
    );
    let pool = Proxy::start(pp, pa, &pool_cfg).await;
    let mut nodes = Vec::new();
    for (port, admin) in &ports {
        let session = format!("redis_url = \"{}\"", redis.url);
        let provider = format!(
            "[providers.corp]\nissuer = \"{pool_origin}/oauth2/pool\"\nclient_id = \"app\"\nclient_secret = \"{APP_SECRET}\""
        );
        let cfg = replica_toml(
            *port,
            *admin,
            &public,
            &echo.url(),
            (&session, "", &provider),
        );
        nodes.push(Proxy::start(*port, *admin, &cfg).await);
    }
    add_user(&config_file(&pool), "alice");
    let c = client();
    let cb = sign_in_through_pool(&c, &format!("{}/app", nodes[0].base), "alice").await;
    assert_eq!(cb.status(), 302, "callback failed");
    let cookie = session_cookie(&cb);
    assert!(!cookie.is_empty());
    for n in &nodes {
        assert_eq!(status_with(&n.base, "/app", &cookie).await, 200);
    }
    let start = Instant::now();
    pool_cli(&config_file(&pool), &["users", "disable", "alice"]);
    for n in &nodes {
        let took = within(Duration::from_secs(5), || async {
            status_with(&n.base, "/app", &cookie).await == 302
        })
        .await;
        assert!(
            took.is_some(),
            "session still valid on {} after disable; pool log:\n{}\nreplica log:\n{}",
            n.base,
            pool.logs(),
            n.logs()
        );
    }
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(
        nodes[0].logs().contains("backchannel_logout"),
        "the session ended through back-channel logout"
    );
}

/// The shared PostgreSQL server of the test run: a fresh database on it, or `None` outside CI
/// when none is configured (CI must have one).
async fn shared_postgres() -> Option<String> {
    if std::env::var("PORTCULLIS_TEST_POSTGRES_URL").is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the PostgreSQL tests (scripts/test.sh sets PORTCULLIS_TEST_POSTGRES_URL)"
        );
        eprintln!("PORTCULLIS_TEST_POSTGRES_URL not set: PostgreSQL test skipped");
        return None;
    }
    Some(pool_support::postgres_database().await)
}

/// A proxy whose only route is authenticated by the built-in pool on `database`.
async fn pool_replica(port: u16, admin: u16, public: &str, database: &str, echo: &str) -> Proxy {
    let pool = format!(
        "[pool]\ndatabase = \"{database}\"\nlockout = {{ initial = \"1m\", ip_max_attempts = 0 }}"
    );
    let cfg = replica_toml(
        port,
        admin,
        public,
        echo,
        ("", "provider = \"pool\"", &pool),
    );
    Proxy::start(port, admin, &cfg).await
}

/// Two replicas on one PostgreSQL pool database: a user created through one signs in on the
/// other, and five failed sign-ins spread over both lock the account on both.
#[tokio::test(flavor = "multi_thread")]
async fn pool_on_postgres_shares_users_and_lockout_across_replicas() {
    let Some(database) = shared_postgres().await else {
        return;
    };
    portcullis::install_crypto();
    let echo = Echo::start().await;
    let ports: Vec<(u16, u16)> = (0..2).map(|_| Proxy::ports()).collect();
    let public = format!("http://127.0.0.1:{}", ports[0].0);
    let mut nodes = Vec::new();
    for (port, admin) in &ports {
        nodes.push(pool_replica(*port, *admin, &public, &database, &echo.url()).await);
    }
    add_user(&config_file(&nodes[0]), "erin");
    let login =
        |i: usize| reqwest::Url::parse(&format!("{}/oauth2/pool/login", nodes[i].base)).unwrap();
    let c = client();
    let r = submit_login(&c, &login(1), "erin", PASSWORD).await;
    assert_eq!(r.status(), 200, "created on A, signs in on B");
    assert!(r.text().await.unwrap().contains("erin"));

    add_user(&config_file(&nodes[1]), "frank");
    for i in 0..5 {
        let c = client();
        let r = submit_login(&c, &login(i % 2), "frank", "Wrong-Password-1").await;
        let expected = if i < 4 { 401 } else { 429 };
        assert_eq!(r.status(), expected, "failure {i} on replica {}", i % 2);
    }
    for i in 0..2 {
        let c = client();
        let r = submit_login(&c, &login(i), "frank", PASSWORD).await;
        assert_eq!(r.status(), 429, "locked on replica {i}");
        assert!(r.text().await.unwrap().contains("Try again in"));
    }
}

/// A PostgreSQL server of this test's own, so stopping it disturbs no other test.
struct OwnPostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

fn as_postgres(cmd: &std::path::Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(cmd);
        c
    } else {
        Command::new(cmd)
    }
}

impl OwnPostgres {
    /// `None` outside CI when PostgreSQL is not installed (CI must have it).
    fn init() -> Option<OwnPostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .max();
        let Some(bin) = bin else {
            assert!(
                std::env::var("CI").is_err(),
                "CI must run this test: PostgreSQL (initdb, pg_ctl) is not installed"
            );
            eprintln!("PostgreSQL not installed: test skipped");
            return None;
        };
        let dir = temp_dir("own-pg");
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let _ = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&dir)
            .status();
        let _ = Command::new("chmod").arg("755").arg(&dir).status();
        let out = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "portcullis", "--auth=trust"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = OwnPostgres {
            bin,
            data,
            port: free_port(),
        };
        pg.start();
        Some(pg)
    }

    fn url(&self) -> String {
        format!("postgres://portcullis@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) {
        let out = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-o")
            .arg(format!(
                "-h 127.0.0.1 -p {} -k {}",
                self.port,
                self.data.display()
            ))
            .arg("-l")
            .arg(self.data.join("log"))
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops at once, as a crash would (open connections are cut).
    fn stop(&self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// PostgreSQL down → pool pages answer 503 with a plain "try again" page, quickly; a proxied
/// request with a valid session keeps working; when PostgreSQL is back, so is the pool.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_down_pool_pages_503_sessions_keep_working_and_recover() {
    let Some(pg) = OwnPostgres::init() else {
        return;
    };
    portcullis::install_crypto();
    let echo = Echo::start().await;
    let (port, admin) = Proxy::ports();
    let public = format!("http://127.0.0.1:{port}");
    let node = pool_replica(port, admin, &public, &pg.url(), &echo.url()).await;
    add_user(&config_file(&node), "gina");
    let c = client();
    let cb = sign_in_through_pool(&c, &format!("{public}/app"), "gina").await;
    assert_eq!(cb.status(), 302);
    let cookie = session_cookie(&cb);
    assert_eq!(status_with(&public, "/app", &cookie).await, 200);

    pg.stop();
    let login = format!("{public}/oauth2/pool/login");
    for _ in 0..3 {
        let start = Instant::now();
        let r = bare_client()
            .get(&login)
            .header("accept", HTML)
            .send()
            .await
            .unwrap();
        let took = start.elapsed();
        assert_eq!(r.status(), 503, "pool page with PostgreSQL down");
        assert!(took < Duration::from_secs(4), "the 503 took {took:?}");
        let html = r.text().await.unwrap();
        assert!(html.contains("Please try again"), "{html}");
        assert!(!html.contains("postgres"), "internals leaked: {html}");
        assert_eq!(
            status_with(&public, "/app", &cookie).await,
            200,
            "proxied session"
        );
    }
    let ready = bare_client()
        .get(format!("{}/readyz", node.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "/readyz names the pool database");

    pg.start();
    let back = within(Duration::from_secs(15), || async {
        bare_client()
            .get(&login)
            .header("accept", HTML)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(back.is_some(), "pool did not come back: {}", node.logs());
    let r = submit_login(
        &client(),
        &reqwest::Url::parse(&login).unwrap(),
        "gina",
        PASSWORD,
    )
    .await;
    assert_eq!(r.status(), 200, "sign-in works again");
}

/// Signing-key rotation across replicas (issue 16): two replicas on one PostgreSQL pool
/// database; `POST /pool/keys/rotate` on A makes A sign with the new key at once and B within
/// its key refresh (10 s); both publish the old and the new key meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_rotated_on_one_replica_signs_on_every_replica() {
    let Some(database) = shared_postgres().await else {
        return;
    };
    portcullis::install_crypto();
    let echo = Echo::start().await;
    let ports: Vec<(u16, u16)> = (0..2).map(|_| Proxy::ports()).collect();
    let public = format!("http://127.0.0.1:{}", ports[0].0);
    let pool = format!(
        "[pool]\ndatabase = \"{database}\"\nadmin_token = \"{}\"\n\
         [[pool.clients]]\nclient_id = \"job\"\nclient_secret = \"{APP_SECRET}\"\n\
         grant_types = [\"client_credentials\"]\nscopes = [\"orders/read\"]\naudience = \"api://orders\"\n",
        pool_support::ADMIN_TOKEN
    );
    let mut nodes = Vec::new();
    for (port, admin) in &ports {
        let cfg = replica_toml(
            *port,
            *admin,
            &public,
            &echo.url(),
            ("", "provider = \"pool\"", &pool),
        );
        nodes.push(Proxy::start(*port, *admin, &cfg).await);
    }
    let kid_from = |i: usize| {
        let base = nodes[i].base.clone();
        async move {
            let t: serde_json::Value = reqwest::Client::new()
                .post(format!("{base}/oauth2/pool/token"))
                .basic_auth("job", Some(APP_SECRET))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let jwt = t["access_token"].as_str().unwrap().to_string();
            use base64::Engine;
            let h: serde_json::Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(jwt.split('.').next().unwrap())
                    .unwrap(),
            )
            .unwrap();
            h["kid"].as_str().unwrap().to_string()
        }
    };
    let old = kid_from(0).await;
    assert_eq!(kid_from(1).await, old, "one key signs on both replicas");
    let admin_a = format!("http://127.0.0.1:{}", ports[0].1);
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{admin_a}/pool/keys/rotate"))
        .bearer_auth(pool_support::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new = r["kid"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    let rotated = Instant::now();
    assert_eq!(
        kid_from(0).await,
        new,
        "the rotating replica signs with the new key at once"
    );
    loop {
        if kid_from(1).await == new {
            break;
        }
        assert!(
            rotated.elapsed() < Duration::from_secs(12),
            "replica B still signs with the old key after {:?}",
            rotated.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let jwks: serde_json::Value = reqwest::get(format!("{}/oauth2/pool/jwks.json", nodes[1].base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(
        kids.contains(&old.as_str()) && kids.contains(&new.as_str()),
        "{kids:?}"
    );
}
