//! The full browser-less sign-in through nginx and through Caddy; identity headers reaching
//! the app; a client's spoofed identity headers never reaching it (issue 9, item 2); the
//! route rules applied by the one decision; `X-Forwarded-Uri` believed only from
//! `server.trusted_proxies`.

use serde_json::{Value, json};

use crate::harness::*;
use crate::servers::{Server, caddy_recipe, nginx_recipe};

fn setup() {
    portcullis::install_crypto();
}

/// Portcullis for forward auth behind a proxy at `front`.
fn config(port: u16, admin: u16, front: &str, issuer: &str, echo: &str, trusted: bool) -> String {
    let trusted = if trusted {
        "trusted_proxies = [\"127.0.0.1/32\"]"
    } else {
        ""
    };
    format!(
        r#"
public_url = "{front}"

[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
{trusted}

[session]
secrets = ["{SECRET}"]

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
path = "/admin/"
upstream = "{echo}"
allow_groups = ["admins"]

[[routes]]
path = "/"
upstream = "{echo}"
"#
    )
}

struct Front {
    _idp: Idp,
    _echo: Echo,
    front: Server,
    _portcullis: Proxy,
}

async fn start(make: fn(u16, &str) -> Server) -> Front {
    setup();
    let (port, admin) = Proxy::ports();
    let echo = Echo::start().await;
    let front = make(port, &echo.url());
    let idp = Idp::start(json!([Idp::client_for(&front.base(), json!({}))]), 3600);
    let cfg = config(port, admin, &front.base(), &idp.issuer, &echo.url(), true);
    let portcullis = Proxy::start(port, admin, &cfg).await;
    Front {
        _idp: idp,
        _echo: echo,
        front,
        _portcullis: portcullis,
    }
}

const SPOOF: [(&str, &str); 7] = [
    ("x-amzn-oidc-identity", "root"),
    ("x-amzn-oidc-data", "forged.jwt.value"),
    ("x-amzn-oidc-accesstoken", "forged-token"),
    ("X-Forwarded-User", "root"),
    ("X-Forwarded-Email", "root@evil.example"),
    ("X-Forwarded-Groups", "admins"),
    ("X-Forwarded-Preferred-Username", "root"),
];

async fn get_spoofed(c: &reqwest::Client, url: String) -> reqwest::Response {
    let mut rb = c.get(url).header("accept", HTML);
    for (k, v) in SPOOF {
        rb = rb.header(k, v);
    }
    rb.send().await.unwrap()
}

/// Signs in through the front proxy as `user`, starting at `path`.
async fn sign_in(f: &Front, c: &reqwest::Client, path: &str, user: &str) {
    let r = c
        .get(format!("{}{path}", f.front.base()))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        302,
        "an unauthenticated browser is sent to sign in"
    );
    let start = r.url().join(&location(&r)).unwrap();
    assert_eq!(start.path(), "/oauth2/start");
    let to_idp = c.get(start).header("accept", HTML).send().await.unwrap();
    let cb = complete_login(c, to_idp, user).await;
    assert_eq!(cb.status(), 302, "callback through the front proxy");
    assert_eq!(location(&cb), path);
}

async fn journey(f: Front) {
    let c = client();
    // Before signing in: the allow route serves, without any identity — even spoofed.
    let v = echoed(get_spoofed(&c, format!("{}/public/x", f.front.base())).await).await;
    for (k, _) in SPOOF {
        assert_eq!(
            header(&v, &k.to_ascii_lowercase()),
            None,
            "{k} reached the app on an allow route"
        );
    }
    sign_in(&f, &c, "/app?x=1", "alice").await;
    // Signed in: the app sees Portcullis's identity, never the client's copies.
    let v = echoed(get_spoofed(&c, format!("{}/app?x=1", f.front.base())).await).await;
    assert_eq!(header(&v, "x-amzn-oidc-identity"), Some("alice"));
    assert_eq!(header(&v, "x-forwarded-user"), Some("alice"));
    assert_eq!(header(&v, "x-forwarded-email"), Some("alice@example.com"));
    assert_eq!(header(&v, "x-forwarded-groups"), Some("admins,staff"));
    assert_eq!(header(&v, "x-forwarded-preferred-username"), Some("alice"));
    let data = header(&v, "x-amzn-oidc-data").unwrap();
    assert_ne!(data, "forged.jwt.value");
    assert_eq!(data.split('.').count(), 3);
    assert_ne!(header(&v, "x-amzn-oidc-accesstoken"), Some("forged-token"));
    for (k, _) in SPOOF {
        let all = v["headers"][k.to_ascii_lowercase()]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0);
        assert!(all <= 1, "{k} arrived twice");
    }
    // The route's rules: alice is an admin.
    let v = echoed(
        c.get(format!("{}/admin/x", f.front.base()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(header(&v, "x-amzn-oidc-identity"), Some("alice"));
    // bob is not: 403 through the proxy.
    let c2 = client();
    sign_in(&f, &c2, "/app", "bob").await;
    let r = c2
        .get(format!("{}/admin/x", f.front.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A client cannot call the check itself through the proxy to mint identity headers.
    let r = get_spoofed(&client(), format!("{}/oauth2/auth", f.front.base())).await;
    assert!(r.status() != 200 || r.headers().get("x-amzn-oidc-identity").is_none());
    // Sign-out through the proxy: the next request must sign in again.
    let r = c
        .get(format!("{}/oauth2/sign_out", f.front.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let r = c
        .get(format!("{}/app", f.front.base()))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.url().join(&location(&r)).unwrap().path(), "/oauth2/start");
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_auth_request_recipe_end_to_end() {
    journey(start(nginx_recipe).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_forward_auth_recipe_end_to_end() {
    journey(start(caddy_recipe).await).await;
}

/// `X-Forwarded-Uri` / `-Host` from a peer that is not a trusted proxy are ignored: the check
/// is made for Portcullis's own host and `/` (here a sign-in route → 401), whatever the
/// client claims (the oauth2-proxy 2026 `X-Forwarded-Uri` advisory's class).
#[tokio::test(flavor = "multi_thread")]
async fn forwarded_uri_is_believed_only_from_trusted_proxies() {
    setup();
    let echo = Echo::start().await;
    let (port, admin) = Proxy::ports();
    let cfg = config(
        port,
        admin,
        &format!("http://127.0.0.1:{port}"),
        "http://127.0.0.1:9",
        &echo.url(),
        false,
    );
    let p = Proxy::start(port, admin, &cfg).await;
    let r = reqwest::Client::new()
        .get(format!("{}/oauth2/auth", p.base))
        .header("x-forwarded-uri", "/public/anything")
        .header("x-forwarded-host", "127.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "an untrusted peer's X-Forwarded-Uri was believed"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "unauthenticated");
    // The same from a trusted peer decides for /public/: 200.
    let (port2, admin2) = Proxy::ports();
    let cfg = config(
        port2,
        admin2,
        &format!("http://127.0.0.1:{port2}"),
        "http://127.0.0.1:9",
        &echo.url(),
        true,
    );
    let p2 = Proxy::start(port2, admin2, &cfg).await;
    let r = reqwest::Client::new()
        .get(format!("{}/oauth2/auth", p2.base))
        .header("x-forwarded-uri", "/public/anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Forward-auth decisions are logged and counted like inline ones.
    let m = reqwest::get(format!("{}/metrics", p2.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("route=\"/public/\",decision=\"public\""), "{m}");
    assert!(p2.logs().contains("forward_auth"));
}
