//! Test harness: starts the real `portcullis` binary, the real `oidc-provider` test IdP
//! (tests/idp, npm), and an in-process echo upstream that reports what it received.
//! Every server listens on a free loopback port; every child is killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123456789";
pub const CLIENT_SECRET: &str = "s3cret-client-secret";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

#[path = "../common/ports.rs"]
mod ports;
pub use ports::free_port;

#[path = "../common/cleanup.rs"]
mod cleanup;

/// A fresh folder under the system temp dir, removed when the calling test ends.
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("portcullis-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    cleanup::remove_at_test_end(d.clone());
    d
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The real `oidc-provider` (npm), started from tests/idp.
pub struct Idp {
    child: Child,
    pub issuer: String,
}

impl Idp {
    /// `clients`: oidc-provider client metadata; `access_ttl`: access-token lifetime in seconds.
    pub fn start(clients: Value, access_ttl: u64) -> Idp {
        Idp::start_with_env(clients, access_ttl, &[])
    }

    /// Like [`Idp::start`], with more environment for the IdP (e.g. `IDP_RESOURCE_SERVERS`).
    pub fn start_with_env(clients: Value, access_ttl: u64, env: &[(&str, &str)]) -> Idp {
        // A Node start that has not reported ready in 30 s is killed and retried on a fresh
        // port (seen rarely on this 2-core machine: a silent hang, no error); three tries.
        for attempt in 1..=3 {
            match Idp::try_start(&clients, access_ttl, env) {
                Ok(idp) => return idp,
                Err(why) if attempt < 3 => eprintln!("test IdP start {attempt}: {why}; retrying"),
                Err(why) => panic!("test IdP did not start after 3 tries: {why}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn try_start(clients: &Value, access_ttl: u64, env: &[(&str, &str)]) -> Result<Idp, String> {
        let port = free_port();
        let issuer = format!("http://localhost:{port}");
        let mut child = Command::new("node")
            .arg(repo().join("tests/idp/server.mjs"))
            .env("IDP_PORT", port.to_string())
            .env("IDP_ISSUER", &issuer)
            .env("IDP_CLIENTS", clients.to_string())
            .env("IDP_ACCESS_TOKEN_TTL", access_ttl.to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node is installed (scripts/test.sh installs the test IdP)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("IDP_READY") {
                    let _ = tx.send(());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(()) => Ok(Idp { child, issuer }),
            Err(e) => {
                let status = child.try_wait().ok().flatten();
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "no IDP_READY on port {port} ({e:?}, exit status {status:?})"
                ))
            }
        }
    }

    /// A client registration for a proxy at `base`.
    pub fn client_for(base: &str, extra: Value) -> Value {
        let mut c = json!({
            "client_id": "portcullis",
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [format!("{base}/oauth2/idpresponse")],
            "post_logout_redirect_uris": [format!("{base}/"), format!("{base}/bye")],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        });
        if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        c
    }

    /// A JWT signed by the IdP's current RSA key (`/__test/sign`), with this header and claims.
    #[allow(dead_code)] // used by the scale-out and bearer tests
    pub async fn sign(&self, header: Value, claims: Value) -> String {
        let v: Value = reqwest::Client::new()
            .post(format!("{}/__test/sign", self.issuer))
            .json(&json!({"header": header, "claims": claims}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["jwt"].as_str().unwrap().to_string()
    }

    pub async fn set_down(&self, down: bool) {
        let url = format!(
            "{}/__test/{}",
            self.issuer,
            if down { "down" } else { "up" }
        );
        let r = reqwest::Client::new().post(url).send().await.unwrap();
        assert!(r.status().is_success());
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An upstream that answers every request with JSON describing it, and speaks WebSocket echo.
pub struct Echo {
    pub addr: SocketAddr,
}

type EchoBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// Released by a request to `/release`: lets `/stream` send its last chunk. A proxy that
/// buffered the response would deadlock the streaming test instead of passing it.
static RELEASE: std::sync::LazyLock<tokio::sync::Notify> =
    std::sync::LazyLock::new(tokio::sync::Notify::new);

async fn echo_handle(req: Request<Incoming>) -> Result<Response<EchoBody>, hyper::Error> {
    let path = req.uri().path().to_string();
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    if path.ends_with("/release") {
        RELEASE.notify_one();
        return Ok(Response::new(
            Full::new(Bytes::from_static(b"released")).boxed(),
        ));
    }
    if path.ends_with("/stream") {
        let (tx, rx) = tokio::sync::mpsc::channel::<
            Result<hyper::body::Frame<Bytes>, std::convert::Infallible>,
        >(4);
        tokio::spawn(async move {
            let _ = tx
                .send(Ok(hyper::body::Frame::data(Bytes::from_static(
                    b"first-chunk\n",
                ))))
                .await;
            RELEASE.notified().await;
            let _ = tx
                .send(Ok(hyper::body::Frame::data(Bytes::from_static(
                    b"last-chunk\n",
                ))))
                .await;
        });
        let stream = tokio_stream_from(rx);
        return Ok(Response::new(BodyExt::boxed(
            http_body_util::StreamBody::new(stream),
        )));
    }
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        let e = headers
            .entry(k.as_str().to_string())
            .or_insert_with(|| json!([]));
        e.as_array_mut()
            .unwrap()
            .push(json!(String::from_utf8_lossy(v.as_bytes())));
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let body = req.into_body().collect().await?.to_bytes();
    let v = json!({"method": method, "uri": uri, "path": path, "headers": headers, "body_len": body.len()});
    let mut resp = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp.headers_mut()
        .insert("connection", "x-upstream-private".parse().unwrap());
    resp.headers_mut()
        .insert("x-upstream-private", "must-not-leak".parse().unwrap());
    Ok(resp)
}

impl Echo {
    pub async fn start() -> Echo {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    // Peek: WebSocket upgrades go to tungstenite, everything else to hyper.
                    let mut buf = [0u8; 2048];
                    let n = stream.peek(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                    if head.contains("upgrade: websocket") {
                        if let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await {
                            while let Some(Ok(msg)) = ws.next().await {
                                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err()
                                {
                                    break;
                                }
                            }
                        }
                        return;
                    }
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service_fn(echo_handle))
                        .await;
                });
            }
        });
        Echo { addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The real binary, started with a config file in a temp dir; stderr captured to a file.
pub struct Proxy {
    child: Child,
    pub base: String,
    pub admin: String,
    pub port: u16,
    log: PathBuf,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

impl Proxy {
    /// Reserves ports; `make_config(base, port, admin_port)` returns the TOML.
    pub fn ports() -> (u16, u16) {
        (free_port(), free_port())
    }

    pub async fn start(port: u16, admin_port: u16, config: &str) -> Proxy {
        Self::start_with_env(port, admin_port, config, &[]).await
    }

    pub async fn start_with_env(
        port: u16,
        admin_port: u16,
        config: &str,
        env: &[(&str, &str)],
    ) -> Proxy {
        let dir = temp_dir("proxy");
        let cfg = dir.join("portcullis.toml");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.join("stderr.log");
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let p = Proxy {
            child,
            base: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/healthz", p.admin)).await
                && r.status() == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "portcullis did not become healthy: {}",
                p.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    #[allow(dead_code)] // used by the scale-out tests
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser-like client that never follows redirects and keeps cookies per host.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

pub const HTML: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn absolute(base: &reqwest::Url, loc: &str) -> reqwest::Url {
    base.join(loc).unwrap()
}

/// Walks an IdP sign-in as `user`, from the IdP URL a proxy redirected to, up to (not
/// including) the proxy's callback; returns the callback URL with its code and state.
pub async fn walk_to_callback(
    c: &reqwest::Client,
    mut url: reqwest::Url,
    user: &str,
) -> reqwest::Url {
    for _ in 0..12 {
        if url.path() == "/oauth2/idpresponse" {
            return url;
        }
        let r = c
            .get(url.clone())
            .header("accept", HTML)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status == 200 && url.path().starts_with("/interaction/") {
            let post = absolute(&url, &format!("{}/login", url.path()));
            let r2 = c
                .post(post.clone())
                .form(&[("login", user)])
                .send()
                .await
                .unwrap();
            assert!(
                r2.status().is_redirection(),
                "interaction login failed: {}",
                r2.status()
            );
            url = absolute(&post, &location(&r2));
            continue;
        }
        assert!(
            r.status().is_redirection(),
            "unexpected {status} at {url}: {}",
            r.text().await.unwrap_or_default()
        );
        url = absolute(&url, &location(&r));
    }
    panic!("login did not reach the callback");
}

/// Follows an IdP sign-in from a proxy redirect (`start`, a 302 to the IdP) as `user`, up to
/// and including the callback on the proxy. Returns the callback's response.
pub async fn complete_login(
    c: &reqwest::Client,
    start: reqwest::Response,
    user: &str,
) -> reqwest::Response {
    assert_eq!(start.status(), 302, "expected a redirect to the IdP");
    let url = absolute(start.url(), &location(&start));
    let callback = walk_to_callback(c, url, user).await;
    c.get(callback).header("accept", HTML).send().await.unwrap()
}

/// Signs in through `path` and returns the callback response (302 back to `path`).
pub async fn login(
    c: &reqwest::Client,
    proxy: &Proxy,
    path: &str,
    user: &str,
) -> reqwest::Response {
    let r = c
        .get(format!("{}{path}", proxy.base))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    complete_login(c, r, user).await
}

/// Status of `path` on `base` with exactly this Cookie header (no jar), as a browser asks.
#[allow(dead_code)] // used by the scale-out and bearer tests
pub async fn status_with(base: &str, path: &str, cookie: &str) -> u16 {
    bare_client()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .header("accept", HTML)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// What the echo upstream saw.
pub async fn echoed(r: reqwest::Response) -> Value {
    assert_eq!(r.status(), 200, "expected the upstream's answer");
    r.json().await.unwrap()
}

pub fn header<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v["headers"][name]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|s| s.as_str())
}

/// The standard test configuration: routes for every mode in front of `echo`.
pub fn config(
    port: u16,
    admin: u16,
    issuer: &str,
    echo: &str,
    extra_session: &str,
    static_dir: &Path,
) -> String {
    format!(
        r#"
public_url = "http://127.0.0.1:{port}"
allowed_redirect_origins = ["http://allowed.example.com"]

[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
max_header_bytes = 16384

[session]
secrets = ["{SECRET}"]
{extra_session}

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
on_unauthenticated = "deny"

[[routes]]
path = "/admin/"
upstream = "{echo}"
allow_groups = ["admins"]

[[routes]]
path = "/corp/"
upstream = "{echo}"
allow_email_domains = ["example.com"]

[[routes]]
path = "/static/"
upstream = "file://{static_dir}"
on_unauthenticated = "allow"

[[routes]]
path = "/down/"
upstream = "http://127.0.0.1:1"
on_unauthenticated = "allow"

[[routes]]
path = "/slow/"
upstream = "{echo}"
on_unauthenticated = "allow"
timeout = "1s"

[[routes]]
path = "/"
upstream = "{echo}"
"#,
        static_dir = static_dir.display()
    )
}

/// Everything a typical test needs, wired together.
pub struct Stack {
    pub idp: Idp,
    pub echo: Echo,
    pub proxy: Proxy,
    pub static_dir: PathBuf,
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with(3600, "", json!({})).await
    }

    pub async fn start_with(access_ttl: u64, extra_session: &str, client_extra: Value) -> Stack {
        let (port, admin) = Proxy::ports();
        let base = format!("http://127.0.0.1:{port}");
        let idp = Idp::start(json!([Idp::client_for(&base, client_extra)]), access_ttl);
        let echo = Echo::start().await;
        let static_dir = temp_dir("static");
        std::fs::create_dir_all(static_dir.join("static/css")).unwrap();
        std::fs::write(static_dir.join("static/index.html"), "<h1>static home</h1>").unwrap();
        std::fs::write(static_dir.join("static/css/site.css"), "body{color:red}").unwrap();
        let cfg = config(
            port,
            admin,
            &idp.issuer,
            &echo.url(),
            extra_session,
            &static_dir,
        );
        let proxy = Proxy::start(port, admin, &cfg).await;
        Stack {
            idp,
            echo,
            proxy,
            static_dir,
        }
    }
}

/// Sends a request line exactly as written (no client-side path normalisation) and returns
/// the status and the whole response text.
pub async fn raw_get(port: u16, path: &str, extra_headers: &str) -> (u16, String) {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/html\r\nConnection: close\r\n{extra_headers}\r\n"
    );
    raw_exchange(port, &req).await
}

/// Writes `request` (a whole request, as bytes on the wire) on a fresh connection and reads
/// until the server closes it; returns the status and the whole response text.
pub async fn raw_exchange(port: u16, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The `name=value` pairs of the session shards a response sets, joined for a Cookie header.
pub fn session_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .filter(|p| p.starts_with("AWSELBAuthSessionCookie-") && !p.ends_with('='))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A client without a cookie store (cookies are sent by hand).
pub fn bare_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The real binary with one request worker (so that every request shares one upstream
/// connection pool) and one public `allow` route to `upstream`: no IdP involved.
/// `server_extra`: more `[server]` keys; `route_extra`: more keys for the route.
pub async fn allow_proxy(upstream: &str, server_extra: &str, route_extra: &str) -> Proxy {
    let (port, admin) = Proxy::ports();
    let cfg = format!(
        r#"
public_url = "http://127.0.0.1:{port}"

[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
workers = 1
{server_extra}

[session]
secrets = ["allow-proxy-test-secret-0123456789abcdef"]

[log]
level = "debug"

[[routes]]
path = "/"
upstream = "{upstream}"
on_unauthenticated = "allow"
{route_extra}
"#
    );
    Proxy::start(port, admin, &cfg).await
}

/// The review's host-routing set-up (HDR-12): `www.test` allows anonymous users, `admin.test`
/// denies them, everything else is allowed — all to `upstream`, through [`allow_proxy`].
pub async fn host_routes_proxy(upstream: &str, server_extra: &str) -> Proxy {
    let routes = format!(
        r#"host = "www.test"

[[routes]]
host = "admin.test"
path = "/"
upstream = "{upstream}"
on_unauthenticated = "deny"

[[routes]]
path = "/"
upstream = "{upstream}"
on_unauthenticated = "allow"
"#
    );
    allow_proxy(upstream, server_extra, &routes).await
}

/// Clients that keep sending `GET url` (each on its own keep-alive connection) until stopped,
/// for at most 20 s: the load a reload must not disturb.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    loaders: Vec<tokio::task::JoinHandle<(u32, Vec<String>)>>,
}

impl Load {
    pub fn start(clients: usize, url: &str) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let loaders = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                let url = url.to_string();
                tokio::spawn(async move {
                    let c = reqwest::Client::new();
                    let (mut ok, mut failed) = (0u32, Vec::new());
                    let deadline = Instant::now() + Duration::from_secs(20);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        match c.get(&url).send().await {
                            Ok(r) if r.status() == 200 => ok += 1,
                            Ok(r) => failed.push(r.status().to_string()),
                            Err(e) => failed.push(e.to_string()),
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        Load { stop, loaders }
    }

    /// Stops the clients: the requests answered 200, and every failure.
    pub async fn stop(self) -> (u32, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut total, mut failures) = (0, Vec::new());
        for l in self.loaders {
            let (ok, failed) = l.await.unwrap();
            total += ok;
            failures.extend(failed);
        }
        (total, failures)
    }
}
