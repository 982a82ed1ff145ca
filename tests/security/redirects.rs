//! Open redirects (RFC 9700 §4.11, OAuth 2.0 Security BCP "Open Redirection"; CWE-601;
//! oauth2-proxy CVE-2020-4037 and CVE-2021-21291 class): every client-supplied redirect
//! target (`rd` on sign-out and on `/oauth2/start`, kept through the login) resolves, as a
//! browser resolves it, to Portcullis's own origin or an allowed one. And every `Location` is
//! a valid URI reference: markup comes back percent-encoded (docs/src/reference/http-paths.md).
//!
//! The classic forms (`//evil`, `/\evil`, `https://evil`, `https:evil`, `javascript:`, an
//! allowed origin) on sign-out, and `//evil` through a login, are pinned by
//! tests/proxy/hardening.rs (`open_redirects_are_replaced_by_slash`); here, the encoded,
//! disguised and look-alike variants.

use crate::harness::*;

const ALLOWED: &str = "http://allowed.example.com";

/// Where a browser on `base` goes for `location`: it must be `base` or the allowed origin.
fn assert_home(base: &str, location: &str, rd: &str) {
    assert!(
        !location.bytes().any(|b| b.is_ascii_control() || b == b' '),
        "rd={rd:?}: control byte or space in Location {location:?}"
    );
    let here = url::Url::parse(base).unwrap();
    let to = here
        .join(location)
        .unwrap_or_else(|e| panic!("rd={rd:?}: Location {location:?} is not a URI ({e})"));
    let origin = to.origin().ascii_serialization();
    assert!(
        origin == here.origin().ascii_serialization() || origin == ALLOWED,
        "rd={rd:?}: Location {location:?} leads to {origin}"
    );
    assert!(
        to.username().is_empty() && to.password().is_none(),
        "rd={rd:?}"
    );
}

/// The `Location` header as bytes read leniently (a raw non-ASCII byte must not panic here).
fn loc(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// `GET {path}?rd=…` with `rd` form-encoded.
async fn with_rd(c: &reqwest::Client, base: &str, path: &str, rd: &str) -> reqwest::Response {
    let enc: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
    c.get(format!("{base}{path}?rd={enc}"))
        .send()
        .await
        .unwrap()
}

const HOSTILE: &[&str] = &[
    "///evil.com",
    "////evil.com/",
    "\\/evil.com",
    "/\\/evil.com",
    "/%5Cevil.com",
    "/%2F%2Fevil.com",
    "%2F%2Fevil.com",
    "%2f%2fevil.com",
    "/%2Fevil.com",
    "/\t/evil.com",
    "/\r\n/evil.com",
    "/ /evil.com",
    " //evil.com",
    "/\u{ff0f}evil.com",
    "\u{ff0f}\u{ff0f}evil.com",
    "https:/evil.com",
    "https:\\\\evil.com",
    "http://evil.com\\@allowed.example.com/",
    "http://allowed.example.com@evil.com/",
    "http://allowed.example.com.evil.com/",
    "http://allowed.example.com:8080/",
    "https://allowed.example.com/",
    "//allowed.example.com@evil.com",
    "http://evil.com#http://allowed.example.com/",
    "data:text/html,<script>alert(1)</script>",
    "JaVaScRiPt:alert(1)",
    "/x\r\nSet-Cookie: injected=1",
    "/.//evil.com",
    "/..//evil.com",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_and_disguised_redirect_targets_stay_home() {
    portcullis::install_crypto();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    let c = client();
    for rd in HOSTILE {
        let r = with_rd(&c, base, "/oauth2/sign_out", rd).await;
        assert_eq!(r.status(), 302, "rd={rd:?}");
        assert!(
            r.headers()
                .get_all("set-cookie")
                .iter()
                .all(|v| !v.to_str().unwrap_or("").starts_with("injected")),
            "rd={rd:?}: a header was injected"
        );
        assert_home(base, &loc(&r), rd);
    }
    // Case and default-port variants of the allowed origin still count as it.
    for rd in [
        "HTTP://ALLOWED.EXAMPLE.COM/back",
        "http://allowed.example.com:80/back",
    ] {
        let r = with_rd(&c, base, "/oauth2/sign_out", rd).await;
        assert_eq!(loc(&r), "http://allowed.example.com/back", "rd={rd:?}");
    }
    // Through a whole login: the target is kept sealed and checked again at the end.
    for rd in [
        "/%2F%2Fevil.com",
        "/\\/evil.com",
        "http://allowed.example.com@evil.com/",
    ] {
        let c = client();
        let start = with_rd(&c, base, "/oauth2/start", rd).await;
        let cb = complete_login(&c, start, "alice").await;
        assert_eq!(cb.status(), 302, "rd={rd:?}");
        assert_home(base, &loc(&cb), rd);
    }
}

/// docs/src/reference/http-paths.md and RFC 3986 §2: characters not allowed in a URI stay percent-encoded in
/// `Location`, so a target carrying markup cannot break out of an HTML attribute where a
/// browser or app echoes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_in_a_redirect_target_comes_back_percent_encoded() {
    portcullis::install_crypto();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    let rd = "/\"><script>alert(1)</script>";
    let r = with_rd(&client(), base, "/oauth2/sign_out", rd).await;
    assert_eq!(loc(&r), "/%22%3E%3Cscript%3Ealert(1)%3C/script%3E");
    let c = client();
    let start = with_rd(&c, base, "/oauth2/start", rd).await;
    let cb = complete_login(&c, start, "alice").await;
    assert_eq!(loc(&cb), "/%22%3E%3Cscript%3Ealert(1)%3C/script%3E");
}
