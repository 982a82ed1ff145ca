//! Shared harness for the pool's integration tests: starts the real `portcullis` binary on free
//! loopback ports with a temporary data directory (SQLite), or a fresh PostgreSQL database when
//! `PORTCULLIS_TEST_POSTGRES_URL` is set; an echo upstream that returns the headers it got;
//! a cookie-keeping HTTP client that never follows redirects; helpers to read the JSON log.
#![allow(dead_code)]

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::redirect::Policy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
pub const PASSWORD: &str = "Correct-Horse-7";
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test body on SQLite, and again on PostgreSQL when the environment provides one.
#[macro_export]
macro_rules! on_both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body(super::pool_support::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if std::env::var("PORTCULLIS_TEST_POSTGRES_URL").is_err() {
                    // scripts/test.sh always starts PostgreSQL; only a bare `cargo test` outside CI
                    // may skip this variant.
                    assert!(
                        std::env::var("CI").is_err(),
                        "CI must run the PostgreSQL variant (scripts/test.sh sets PORTCULLIS_TEST_POSTGRES_URL)"
                    );
                    eprintln!("PORTCULLIS_TEST_POSTGRES_URL not set: PostgreSQL variant skipped");
                    return;
                }
                super::$body(super::pool_support::Backend::Postgres).await;
            }
        }
    };
}

#[path = "../common/ports.rs"]
mod ports;
pub use ports::free_port;

#[path = "../common/cleanup.rs"]
mod cleanup;

fn temp_dir(tag: &str) -> PathBuf {
    let n: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let d = std::env::temp_dir().join(format!("pc-pool-{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    cleanup::remove_at_test_end(d.clone());
    d
}

/// A fresh database on the PostgreSQL server named by the environment.
pub async fn postgres_database() -> String {
    use sqlx::Connection;
    let base = std::env::var("PORTCULLIS_TEST_POSTGRES_URL").expect("PORTCULLIS_TEST_POSTGRES_URL");
    let mut conn = sqlx::postgres::PgConnection::connect(&base)
        .await
        .expect("connect to PostgreSQL");
    let name = format!(
        "pc_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let mut u = url::Url::parse(&base).unwrap();
    u.set_path(&format!("/{name}"));
    u.to_string()
}

/// An upstream that answers every request with the request's headers as JSON.
pub async fn echo_upstream() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&buf).to_string();
                let mut headers = serde_json::Map::new();
                for line in text.lines().skip(1) {
                    if let Some((k, v)) = line.split_once(':') {
                        headers.insert(
                            k.trim().to_ascii_lowercase(),
                            serde_json::Value::String(v.trim().to_string()),
                        );
                    }
                }
                let body = serde_json::json!({"path": text.split(' ').nth(1).unwrap_or(""), "headers": headers}).to_string();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

pub struct Server {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub base: String,
    pub admin: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// Starts a proxy whose only route (authenticated by the pool) goes to an echo upstream.
    /// `pool_extra` is appended inside `[pool]` (more keys, then possibly `[[pool.clients]]`).
    pub async fn start(backend: Backend, pool_extra: &str) -> Server {
        Server::start_with(backend, pool_extra, false).await
    }

    /// Like [`Server::start`]; with `pool_host`, the server also listens on 127.0.0.2 (same
    /// port) and the pool lives there (`pool.public_url`), as on its own host name.
    pub async fn start_with(backend: Backend, pool_extra: &str, pool_host: bool) -> Server {
        Server::start_on(backend, pool_extra, pool_host, free_port()).await
    }

    /// Like [`Server::start_with`], on a port chosen beforehand (for an IdP that must know the
    /// pool's callback URL before the pool starts).
    pub async fn start_on(
        backend: Backend,
        pool_extra: &str,
        pool_host: bool,
        port: u16,
    ) -> Server {
        portcullis::install_crypto();
        let dir = temp_dir("srv");
        let upstream = echo_upstream().await;
        let database = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.join("pool.db").display()),
            Backend::Postgres => postgres_database().await,
        };
        let admin_port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let (listen, pool_url) = if pool_host {
            (
                format!("\"127.0.0.1:{port}\", \"127.0.0.2:{port}\""),
                format!("public_url = \"http://127.0.0.2:{port}\"\n"),
            )
        } else {
            (format!("\"127.0.0.1:{port}\""), String::new())
        };
        let config = dir.join("portcullis.toml");
        // Passkeys need a domain name (WebAuthn refuses IP addresses, and so does `check`):
        // the same listener, named localhost.
        let public = if pool_extra.contains("passkeys = true") {
            base.replace("127.0.0.1", "localhost")
        } else {
            base.clone()
        };
        let text = format!(
            "public_url = \"{public}\"\n[server]\nlisten = [{listen}]\nadmin_listen = \"127.0.0.1:{admin_port}\"\n\
             [session]\nsecrets = [\"test-secret-test-secret-test-secret-0\"]\n[log]\nformat = \"json\"\nlevel = \"info\"\n\
             [[routes]]\npath = \"/\"\nupstream = \"http://{upstream}\"\nprovider = \"pool\"\n\
             [pool]\n{pool_url}database = \"{database}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n{pool_extra}\n"
        );
        std::fs::write(&config, text).unwrap();
        let mut s = Server {
            log: dir.join("server.log"),
            dir,
            config,
            base,
            admin: format!("http://127.0.0.1:{admin_port}"),
            child: None,
        };
        s.spawn().await;
        s
    }

    /// (Re)starts the process, appending to the same log, and waits until it is ready.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start portcullis");
        self.child = Some(child);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.admin)).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server did not become ready; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The server process's id (to sample its `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every one-time code logged for a user and purpose (`delivery = "log"`), oldest first.
    pub fn codes(&self, username: &str, purpose: &str) -> Vec<String> {
        let f = std::fs::File::open(&self.log).unwrap();
        std::io::BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
            .filter(|v| {
                let f = &v["fields"];
                f["delivery"] == "log" && f["username"] == username && f["purpose"] == purpose
            })
            .filter_map(|v| v["fields"]["code"].as_str().map(str::to_string))
            .collect()
    }

    /// The `n`th code (1-based) for a user, waiting for it: some codes are sent in the
    /// background so that page timing reveals nothing.
    pub fn nth_code(&self, username: &str, purpose: &str, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let codes = self.codes(username, purpose);
            if codes.len() >= n {
                return codes[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {purpose} code #{n} for {username}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first code logged for a user and purpose.
    pub fn code_for(&self, username: &str, purpose: &str) -> String {
        self.nth_code(username, purpose, 1)
    }

    /// A connection pool to this server's database (to look at or prepare rows directly).
    pub async fn database(&self) -> sqlx::AnyPool {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let url = text
            .split("database = \"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap();
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(url).await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Runs `portcullis pool …` against this server's configuration.
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(BIN)
            .arg("pool")
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run the CLI");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A browser-like client: keeps cookies, never follows redirects.
pub fn browser() -> reqwest::Client {
    browser_lang("en")
}

pub fn browser_lang(lang: &str) -> reqwest::Client {
    portcullis::install_crypto();
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        "accept",
        "text/html,application/xhtml+xml,*/*;q=0.8".parse().unwrap(),
    );
    h.insert("accept-language", lang.parse().unwrap());
    reqwest::Client::builder()
        .redirect(Policy::none())
        .cookie_provider(Arc::new(reqwest::cookie::Jar::default()))
        .default_headers(h)
        .build()
        .unwrap()
}

pub fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The first `<form method="post">` whose action contains `action_part`: (absolute action, csrf).
pub fn form(html: &str, base: &str, action_part: &str) -> (String, String) {
    let mut rest = html;
    while let Some(i) = rest.find("<form") {
        let tag_end = rest[i..].find('>').map(|e| i + e).unwrap();
        let tag = unescape(&rest[i..tag_end]);
        let body_end = rest[tag_end..]
            .find("</form>")
            .map(|e| tag_end + e)
            .unwrap_or(rest.len());
        if let Some(a) = tag
            .split("action=\"")
            .nth(1)
            .and_then(|a| a.split('"').next())
            && a.contains(action_part)
        {
            let form_body = &rest[tag_end..body_end];
            let csrf = form_body
                .split("name=\"csrf_token\" value=\"")
                .nth(1)
                .and_then(|v| v.split('"').next())
                .unwrap_or("")
                .to_string();
            return (format!("{base}{a}"), csrf);
        }
        rest = &rest[body_end..];
    }
    panic!("no form with action containing {action_part:?} in:\n{html}");
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no Location on {}", r.status()))
}

pub fn absolute(base: &str, loc: &str) -> String {
    if loc.starts_with("http") {
        loc.to_string()
    } else {
        format!("{base}{loc}")
    }
}

/// Follows redirects by hand until a non-redirect answer; returns it and the hops taken.
pub async fn follow(
    c: &reqwest::Client,
    base: &str,
    mut url: String,
) -> (reqwest::Response, Vec<String>) {
    let mut hops = Vec::new();
    for _ in 0..10 {
        let r = c.get(&url).send().await.unwrap();
        if !r.status().is_redirection() {
            return (r, hops);
        }
        // Relative to the URL just fetched, as a browser resolves it.
        url = url::Url::parse(&url)
            .and_then(|u| u.join(&location(&r)))
            .map(|u| u.to_string())
            .unwrap_or_else(|_| absolute(base, &location(&r)));
        hops.push(url.clone());
    }
    panic!("too many redirects: {hops:?}");
}

/// GETs a page: (status, body).
pub async fn get_page(c: &reqwest::Client, url: &str) -> (u16, String) {
    let r = c.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Posts the form of `html` whose action contains `part`, with its CSRF token and `fields`.
pub async fn submit_form(
    c: &reqwest::Client,
    base: &str,
    html: &str,
    part: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let (action, csrf) = form(html, base, part);
    let mut all = vec![("csrf_token", csrf.as_str())];
    all.extend_from_slice(fields);
    c.post(&action).form(&all).send().await.unwrap()
}

/// Signs up through the hosted pages from the sign-in page at `login_url`; returns the confirm page URL.
pub async fn sign_up(
    c: &reqwest::Client,
    s: &Server,
    login_html: &str,
    username: &str,
    email: &str,
) -> String {
    let (_, _) = form(login_html, &s.base, "/login");
    let signup_href = unescape(
        login_html
            .split("href=\"")
            .find(|h| unescape(h).contains("/signup"))
            .unwrap()
            .split('"')
            .next()
            .unwrap(),
    );
    let page = c
        .get(absolute(&s.base, &signup_href))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (action, csrf) = form(&page, &s.base, "/signup");
    let r = c
        .post(action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", username),
            ("email", email),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        302,
        "sign-up failed: {}",
        r.text().await.unwrap()
    );
    absolute(&s.base, &location(&r))
}

/// Confirms with the logged code from the confirm page; returns the login URL it sends us to.
pub async fn confirm(c: &reqwest::Client, s: &Server, confirm_url: &str, username: &str) -> String {
    let page = c
        .get(confirm_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (action, csrf) = form(&page, &s.base, "/confirm");
    let code = s.code_for(username, "signup");
    let r = c
        .post(action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", username),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        302,
        "confirm failed: {}",
        r.text().await.unwrap()
    );
    absolute(&s.base, &location(&r))
}

/// Submits the sign-in form on `login_url`.
pub async fn sign_in(
    c: &reqwest::Client,
    s: &Server,
    login_url: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    sign_in_at(c, &s.base, login_url, username, password).await
}

/// Submits the sign-in form on `login_url`, served from `origin` (any server with a pool).
pub async fn sign_in_at(
    c: &reqwest::Client,
    origin: &str,
    login_url: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    let page = c.get(login_url).send().await.unwrap().text().await.unwrap();
    let (action, csrf) = form(&page, origin, "/login");
    c.post(action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

/// The claims of the proxy's session of this browser (what `allow_claims` rules see).
pub async fn session_claims(c: &reqwest::Client, s: &Server) -> serde_json::Value {
    let info: serde_json::Value = c
        .get(s.url("/oauth2/userinfo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    info["claims"].clone()
}

/// Creates a confirmed user with [`PASSWORD`] through the CLI.
pub fn create_user(s: &Server, username: &str, email: &str) {
    let (ok, out, err) = s.cli(&[
        "users",
        "add",
        username,
        "--password",
        PASSWORD,
        "--permanent",
        "--attribute",
        &format!("email={email}"),
        "--attribute",
        "email_verified=true",
    ]);
    assert!(ok, "users add failed: {out}{err}");
}

pub fn write(path: &Path, text: &str) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Verifies a JWS against the pool's JWKS (RS256 or ES256, by `kid`); returns header and claims.
pub async fn verified_jws(s: &Server, jwt: &str) -> (serde_json::Value, serde_json::Value) {
    let jwks: serde_json::Value = reqwest::get(s.url("/oauth2/pool/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    use base64::Engine;
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {jwt}");
    let header = jws_part(parts[0]);
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("kid {} not in the JWKS", header["kid"]));
    let b = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    let input = format!("{}.{}", parts[0], parts[1]);
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap();
    match header["alg"].as_str().unwrap() {
        "RS256" => ring::signature::RsaPublicKeyComponents {
            n: b(&key["n"]),
            e: b(&key["e"]),
        }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            input.as_bytes(),
            &sig,
        )
        .expect("RS256 signature verifies with the JWKS"),
        "ES256" => {
            let mut point = vec![4u8];
            point.extend(b(&key["x"]));
            point.extend(b(&key["y"]));
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_FIXED,
                &point,
            )
            .verify(input.as_bytes(), &sig)
            .expect("ES256 signature verifies with the JWKS")
        }
        other => panic!("unexpected alg {other}"),
    }
    (header, jws_part(parts[1]))
}

/// One base64url part of a compact JWS, as JSON.
pub fn jws_part(part: &str) -> serde_json::Value {
    use base64::Engine;
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// A page's text as a person reads it: tags removed, entities decoded, spaces collapsed.
pub fn visible_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for ch in html.chars() {
        match ch {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    unescape(&out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
