//! Regression for the audit's authorization bypass (issue 9, item 1): with `/public/` allowed
//! and `/` denied, `GET /public/..%2Fadmin/panel` reached the admin file, because Portcullis
//! matched `..%2Fadmin` as one segment under `/public/` while the upstream decoded `%2F`,
//! resolved `..` and served `/admin/panel`. docs/src/reference/http-paths.md now says: 400 by default. Checked against
//! upstreams that really decode (Python's `http.server`, nginx serving a directory), inline
//! and behind nginx `auth_request`, anonymous and signed in without the required group.

use serde_json::json;

use crate::harness::*;
use crate::servers::{ADMIN_TEXT, Server, nginx_recipe, nginx_static, python_static, site};

const PAYLOADS: [&str; 9] = [
    "/public/..%2Fadmin/panel",
    "/public/..%2fadmin/panel",
    "/public/%2e%2e%2fadmin/panel",
    "/public/%2E%2E%2Fadmin/panel",
    "/public/..%5Cadmin/panel",
    "/public/..%5cadmin/panel",
    "/public/..%252Fadmin/panel",
    "/public%2F..%2Fadmin/panel",
    "/public/..%2F..%2Fadmin/panel",
];

fn inline_config(port: u16, admin: u16, upstream: &str, extra_server: &str) -> String {
    format!(
        r#"
public_url = "http://127.0.0.1:{port}"

[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
{extra_server}

[session]
secrets = ["{SECRET}"]

[[routes]]
path = "/public/"
upstream = "{upstream}"
on_unauthenticated = "allow"

[[routes]]
path = "/"
upstream = "{upstream}"
on_unauthenticated = "deny"
"#
    )
}

async fn inline_against(upstream: &Server) {
    portcullis::install_crypto();
    // The upstream really decodes: asked directly, it serves the admin file for the payload.
    let (_, direct) = raw_get(upstream.port, "/public/..%2Fadmin/panel", "").await;
    assert!(
        direct.contains(ADMIN_TEXT),
        "the test upstream does not decode %2F: {direct}"
    );
    let (port, admin) = Proxy::ports();
    let p = Proxy::start(
        port,
        admin,
        &inline_config(port, admin, &upstream.base(), ""),
    )
    .await;
    let (status, text) = raw_get(port, "/public/index.html", "").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(raw_get(port, "/admin/panel", "").await.0, 401);
    for payload in PAYLOADS {
        let (status, text) = raw_get(port, payload, "").await;
        assert_eq!(status, 400, "{payload}: {text}");
        assert!(
            !text.contains(ADMIN_TEXT),
            "{payload} leaked the admin file"
        );
    }
    // An operator who opts out gets the old behaviour, knowingly.
    let (port2, admin2) = Proxy::ports();
    let cfg = inline_config(
        port2,
        admin2,
        &upstream.base(),
        "insecure_allow_encoded_slashes = true",
    );
    let _p2 = Proxy::start(port2, admin2, &cfg).await;
    let (status, _) = raw_get(port2, "/public/a%2Fb", "").await;
    assert_ne!(
        status, 400,
        "insecure_allow_encoded_slashes forwards encoded slashes"
    );
    drop(p);
}

#[tokio::test(flavor = "multi_thread")]
async fn encoded_slash_bypass_closed_in_front_of_python_http_server() {
    let root = site();
    inline_against(&python_static(&root)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn encoded_slash_bypass_closed_in_front_of_nginx_static() {
    let root = site();
    inline_against(&nginx_static(&root)).await;
}

/// Behind nginx `auth_request`: nginx routes on the decoded path, Portcullis checks the raw
/// `X-Forwarded-Uri` — and refuses it, so nginx never proxies the request to the app.
#[tokio::test(flavor = "multi_thread")]
async fn encoded_slash_bypass_closed_behind_nginx_auth_request() {
    portcullis::install_crypto();
    let root = site();
    let app = python_static(&root);
    let (port, admin) = Proxy::ports();
    let front = nginx_recipe(port, &app.base());
    let idp = Idp::start(json!([Idp::client_for(&front.base(), json!({}))]), 3600);
    let cfg = format!(
        r#"
public_url = "{front}"

[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
trusted_proxies = ["127.0.0.1/32"]

[session]
secrets = ["{SECRET}"]

[providers.idp]
issuer = "{issuer}"
client_id = "portcullis"
client_secret = "{CLIENT_SECRET}"

[[routes]]
path = "/public/"
upstream = "{app}"
on_unauthenticated = "allow"

[[routes]]
path = "/"
upstream = "{app}"
allow_groups = ["admins"]
"#,
        front = front.base(),
        issuer = idp.issuer,
        app = app.base(),
    );
    let _p = Proxy::start(port, admin, &cfg).await;
    let anon = bare_client();
    let r = anon
        .get(format!("{}/public/index.html", front.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = anon
        .get(format!("{}/admin/panel", front.base()))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "anonymous: sign in first");
    // bob is signed in but not an admin.
    let bob = client();
    let r = bob
        .get(format!("{}/admin/panel", front.base()))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    let start = r.url().join(&location(&r)).unwrap();
    let to_idp = bob.get(start).header("accept", HTML).send().await.unwrap();
    assert_eq!(complete_login(&bob, to_idp, "bob").await.status(), 302);
    let r = bob
        .get(format!("{}/admin/panel", front.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let cookie_header = {
        let r = bob
            .get(format!("{}/oauth2/userinfo", front.base()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        String::new()
    };
    for payload in PAYLOADS {
        let (status, text) = raw_get(front.port, payload, &cookie_header).await;
        assert_ne!(status, 200, "{payload} through nginx: {text}");
        assert!(
            !text.contains(ADMIN_TEXT),
            "{payload} leaked the admin file through nginx"
        );
        let r = bob
            .get(format!("{}{payload}", front.base()))
            .send()
            .await
            .unwrap();
        let st = r.status();
        let body = r.text().await.unwrap();
        assert!(
            !body.contains(ADMIN_TEXT),
            "{payload} leaked the admin file to a signed-in non-admin ({st})"
        );
    }
}
