//! The proxy's own pages (here a 502 and a 401 deny) look like the pool's, speak the reader's
//! language (the switch `?lang=`, its cookie, else `Accept-Language`), carry the language
//! switch, and leave JSON answers as they were.

use crate::harness::*;

/// A proxy whose only route goes to a port nothing listens on: every request is a 502.
async fn dead_upstream_proxy() -> Proxy {
    let dead = format!("http://127.0.0.1:{}", free_port());
    allow_proxy(&dead, "", "").await
}

async fn page(
    c: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    let mut r = c.get(url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("portcullis_lang="))
        .map(str::to_string);
    (r.status().as_u16(), cookie, r.text().await.unwrap())
}

#[tokio::test]
async fn a_502_page_speaks_the_readers_language_and_switches() {
    let p = dead_upstream_proxy().await;
    let c = bare_client();
    let url = format!("{}/app/page?x=1", p.base);

    // Accept-Language: Japanese, in the pool's look (its card and style), with the switch.
    let (status, cookie, html) = page(&c, &url, &[("accept-language", "ja,en;q=0.5")]).await;
    assert_eq!(status, 502);
    assert!(cookie.is_none());
    assert!(html.contains("<html lang=\"ja\">"), "{html}");
    assert!(html.contains("アプリケーションに接続できません"), "{html}");
    assert!(
        html.contains("class=\"card\"") && html.contains("--accent"),
        "{html}"
    );
    assert!(
        html.contains("href=\"/app/page?x=1&amp;lang=en\""),
        "the switch keeps the address: {html}"
    );

    // The switch: English although the browser prefers Japanese, and remembered.
    let (status, cookie, html) =
        page(&c, &format!("{url}&lang=en"), &[("accept-language", "ja")]).await;
    assert_eq!(status, 502);
    assert!(
        html.contains("<html lang=\"en\">") && html.contains("Bad gateway"),
        "{html}"
    );
    let cookie = cookie.expect("the switch sets the language cookie");
    assert!(
        cookie.contains("Path=/") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let (_, _, html) = page(
        &c,
        &url,
        &[
            ("accept-language", "ja"),
            ("cookie", "a=1; portcullis_lang=en"),
        ],
    )
    .await;
    assert!(
        html.contains("<html lang=\"en\">"),
        "the cookie beats Accept-Language"
    );

    // Junk in the cookie or the switch: ignored (Accept-Language decides), no cookie set.
    for (q, cookie_in) in [
        ("&lang=de", "portcullis_lang=%3Cscript%3E"),
        ("&lang=ja%0d%0aSet-Cookie:%20x=1", "portcullis_lang=xx"),
    ] {
        let (status, cookie, html) = page(
            &c,
            &format!("{url}{q}"),
            &[("accept-language", "ja"), ("cookie", cookie_in)],
        )
        .await;
        assert_eq!(status, 502);
        assert!(cookie.is_none(), "{q}");
        assert!(html.contains("<html lang=\"ja\">"), "{q}: {html}");
        assert!(
            !html.contains("<script") && !html.contains("x=1\r\n"),
            "{html}"
        );
    }

    // Scripts get the same JSON as before: no page, no cookie.
    let r = c
        .get(format!("{url}&lang=ja"))
        .header("accept", "application/json")
        .header("accept-language", "ja")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.headers().get("set-cookie").is_none());
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "upstream_unreachable");
    assert_eq!(
        v["message"],
        "The application behind this proxy could not be reached."
    );
}

#[tokio::test]
async fn a_denied_page_is_localized_too() {
    let echo = Echo::start().await;
    let p = host_routes_proxy(&echo.url(), "").await;
    let c = bare_client();
    let r = c
        .get(format!("{}/", p.base))
        .header("host", "admin.test")
        .header("accept-language", "ja")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("サインインが必要です") && html.contains("lang-switch"),
        "{html}"
    );
}
