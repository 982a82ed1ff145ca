//! Login CSRF and authorization-code injection at `/oauth2/idpresponse` (RFC 9700 §4.5
//! "Authorization Code Injection" and §4.7 "Cross-Site Request Forgery"; RFC 6749 §10.12;
//! OpenID Connect Core §3.1.2.1 `state`, §15.5.2 `nonce`; RFC 7636 PKCE): a callback is
//! honoured only in the browser that started that login, once; an attacker's code or state
//! planted in a victim's browser signs no one in.
//!
//! Missing, malformed and unknown `state`, and an expired login window, are pinned by
//! tests/proxy/flows.rs (`bad_state_and_expired_login_window_get_401_start_again`).

use crate::harness::*;

fn shards(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.starts_with("AWSELBAuthSessionCookie-") && !v.contains("Max-Age=0"))
        .map(str::to_string)
        .collect()
}

/// The IdP URL a fresh login in browser `c` starts at (the proxy's 302 target).
async fn begin(c: &reqwest::Client, base: &str, path: &str) -> reqwest::Url {
    let r = c
        .get(format!("{base}{path}"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    r.url().join(&location(&r)).unwrap()
}

/// Browser `c` is not signed in: the protected page sends it to sign in.
async fn anonymous(c: &reqwest::Client, base: &str) {
    let r = c
        .get(format!("{base}/x"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "the browser is signed in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_only_works_once_in_the_browser_that_started_it() {
    portcullis::install_crypto();
    let s = Stack::start().await;
    let base = &s.proxy.base;

    // The attacker signs in at the IdP as mallory and keeps the callback URL (code + state).
    let attacker = client();
    let at_idp = begin(&attacker, base, "/x").await;
    let planted = walk_to_callback(&attacker, at_idp, "mallory").await;

    // Login CSRF: the victim's browser is made to open it — with no login of its own, then
    // while its own login is pending.
    let victim = client();
    for pending in [false, true] {
        if pending {
            begin(&victim, base, "/x").await;
        }
        let r = victim
            .get(planted.clone())
            .header("accept", HTML)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            401,
            "a foreign callback was honoured (pending: {pending})"
        );
        assert!(shards(&r).is_empty());
        anonymous(&victim, base).await;
    }

    // Code injection: the attacker's code with the victim's own, valid state. The state
    // matches the victim's cookie, but the code was issued against the attacker's PKCE
    // challenge and nonce: the exchange must fail, and no session is set.
    let victim_idp = begin(&victim, base, "/x").await;
    let victim_state = victim_idp
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("a state in the authorization request");
    let stolen_code = planted
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code in the callback");
    let mut injected = planted.clone();
    injected
        .query_pairs_mut()
        .clear()
        .append_pair("code", &stolen_code)
        .append_pair("state", &victim_state);
    let r = victim
        .get(injected)
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_client_error() || r.status().is_server_error(),
        "an injected code was accepted: {}",
        r.status()
    );
    assert!(shards(&r).is_empty(), "an injected code set a session");
    anonymous(&victim, base).await;

    // The attacker's own browser: its callback was never used, but the code was spent (or
    // refused) by the injection attempt; and a callback is single-use in any case.
    let own = client();
    let at_idp = begin(&own, base, "/x").await;
    let cb_url = walk_to_callback(&own, at_idp, "alice").await;
    let r = own
        .get(cb_url.clone())
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "the genuine callback works");
    assert!(!shards(&r).is_empty());
    // Replayed in the same browser (its login cookie is gone) or another: no new session.
    let r = own
        .get(cb_url.clone())
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a callback was honoured twice");
    assert!(shards(&r).is_empty());
    let other = client();
    let r = other
        .get(cb_url)
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    anonymous(&other, base).await;
}
