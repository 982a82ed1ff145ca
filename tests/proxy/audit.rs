//! Regression tests for the findings of the independent audit (issue 9), each named after
//! what broke; they fail on the code before the fix.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

fn setup() {
    portcullis::install_crypto();
}

/// Item 3: an IdP that replaced its keys under the same `kid` (a restart with generated keys
/// and fixed kids) locked every user out until Portcullis restarted ("Signature verification
/// failed"). A signature failure with a known kid now triggers the rate-limited JWKS refetch.
#[tokio::test(flavor = "multi_thread")]
async fn idp_key_rotated_under_the_same_kid_does_not_lock_users_out() {
    setup();
    let s = Stack::start().await;
    let first = login(&client(), &s.proxy, "/app", "alice").await;
    assert_eq!(first.status(), 302);
    assert_eq!(location(&first), "/app");
    let r = reqwest::Client::new()
        .post(format!("{}/__test/rotate-keys-same-kid", s.idp.issuer))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    for user in ["alice", "bob"] {
        let cb = login(&client(), &s.proxy, "/app", user).await;
        assert_eq!(
            cb.status(),
            302,
            "{user}: sign-in after the IdP rotated its keys in place"
        );
        assert_eq!(location(&cb), "/app");
    }
    assert!(s.proxy.logs().contains("JWKS refetched"));
}

// Item 5's HTTP/2 header-field limit is pinned by tests/security/http2.rs
// (`more_than_100_header_fields_over_h2_get_431`).

/// Item 5: a malformed chunked request body got 502 (blamed on the upstream) instead of 400.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_chunked_request_body_gets_400_not_502() {
    setup();
    let echo = Echo::start().await;
    let p = allow_proxy(&echo.url(), "", "").await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p.port))
        .await
        .unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\nzz\r\nnot a chunk\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    assert_eq!(status, 400, "{text}");
}

/// Item 5: `rd=/"><script>` came back unencoded in `Location` (docs/src/reference/http-paths.md).
#[tokio::test(flavor = "multi_thread")]
async fn redirect_target_with_markup_comes_back_percent_encoded() {
    setup();
    let echo = Echo::start().await;
    let p = allow_proxy(&echo.url(), "", "").await;
    let (status, text) = raw_get(
        p.port,
        "/oauth2/sign_out?rd=/%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
        "",
    )
    .await;
    assert_eq!(status, 302, "{text}");
    let loc = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(loc, "/%22%3E%3Cscript%3Ealert(1)%3C/script%3E");
    // Security headers on everything Portcullis itself answers.
    assert!(
        text.to_ascii_lowercase()
            .contains("x-content-type-options: nosniff")
    );
    assert!(text.contains("frame-ancestors 'none'"));
}

/// Item 5: "every access decision is logged" was not true for public requests without a
/// session, nor for `/oauth2/auth`.
#[tokio::test(flavor = "multi_thread")]
async fn every_access_decision_is_logged_with_the_same_fields() {
    setup();
    let s = Stack::start().await;
    let c = client();
    assert_eq!(
        c.get(format!("{}/public/x", s.proxy.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = bare_client()
        .get(format!("{}/oauth2/auth", s.proxy.base))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let logs = s.proxy.logs();
    let public = logs
        .lines()
        .find(|l| l.contains("auth.decision=\"public\"") || l.contains("auth.decision=public"));
    assert!(
        public.is_some_and(|l| l.contains("route=/public/")),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("via=\"forward_auth\"") || l.contains("via=forward_auth")),
        "{logs}"
    );
    let _ = json!({});
}
