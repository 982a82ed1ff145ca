//! Identity-header spoofing: a client must never be able to hand the upstream an identity.
//! Every identity header, in every disguise an upstream stack may fold back into it (any case;
//! `_` or `.` for `-`, as WSGI/CGI/PHP map `X_Forwarded_User` onto `HTTP_X_FORWARDED_USER`),
//! is removed on every route, on every protocol path (the lean HTTP/1.1 path, hyper's path
//! for requests with a body, HTTP/2), signed in or not; and hop-by-hop tricks cannot remove
//! the values Portcullis sets.
//!
//! Advisories: oauth2-proxy GHSA-vjrc-mh2v-45x6 / CVE-2025-64484 (underscore and case variants
//! of X-Forwarded-* bypassing header stripping); RFC 9110 §7.6.1 (a proxy removes the fields
//! named in `Connection`, which must not let a client remove the proxy's own). The plain
//! lower-case set and three disguises are pinned by tests/proxy/flows.rs
//! (`spoofed_identity_headers_are_stripped_on_every_route`).

use crate::harness::*;

const IDENTITY: [&str; 7] = [
    "x-amzn-oidc-accesstoken",
    "x-amzn-oidc-identity",
    "x-amzn-oidc-data",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
];

/// Every disguise of `name` an upstream might read as `name`.
fn disguises(name: &str) -> Vec<String> {
    let title: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-");
    let mixed: String = name
        .char_indices()
        .map(|(i, ch)| match (ch, i % 3) {
            ('-', 0) => '_',
            ('-', 1) => '.',
            (c, 2) => c.to_ascii_uppercase(),
            (c, _) => c,
        })
        .collect();
    vec![
        name.to_ascii_uppercase(),
        title.clone(),
        name.replace('-', "_"),
        name.to_ascii_uppercase().replace('-', "_"),
        name.replace('-', "."),
        title.replace('-', "_"),
        mixed,
    ]
}

fn spoofed(mut rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    for name in IDENTITY {
        rb = rb.header(name, "spoofed-plain");
        for (i, d) in disguises(name).into_iter().enumerate() {
            rb = rb.header(d, format!("spoofed-{i}"));
        }
    }
    rb
}

/// Whatever identity the upstream got came from Portcullis, not from the client.
fn assert_clean(v: &serde_json::Value, context: &str) {
    let headers = v["headers"].as_object().expect("echoed headers");
    for (name, values) in headers {
        assert!(
            !values.to_string().contains("spoofed"),
            "{context}: a client-sent value reached the upstream in {name}: {values}"
        );
        let folded = name.to_ascii_lowercase().replace(['_', '.'], "-");
        if IDENTITY.contains(&folded.as_str()) {
            assert_eq!(
                name, &folded,
                "{context}: a disguised identity header reached the upstream"
            );
            assert_eq!(
                values.as_array().map(Vec::len),
                Some(1),
                "{context}: {name} more than once"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_identity_header_in_every_disguise_is_removed_on_every_path() {
    portcullis::install_crypto();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    // Anonymous, allow route: the lean HTTP/1.1 path (no body) ...
    let v = echoed(
        spoofed(client().get(format!("{base}/public/x")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_clean(&v, "anonymous GET");
    for name in IDENTITY {
        assert!(header(&v, name).is_none(), "anonymous request got {name}");
    }
    // ... hyper's path (a body) ...
    let v = echoed(
        spoofed(client().post(format!("{base}/public/x")))
            .body("payload")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_clean(&v, "anonymous POST");
    // ... and HTTP/2.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = spoofed(h2.get(format!("{base}/public/x")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_clean(&echoed(r).await, "anonymous HTTP/2");

    // Signed in as bob: the upstream gets bob, whatever the client claims.
    let c = client();
    login(&c, &s.proxy, "/", "bob").await;
    for path in ["/x", "/public/x", "/api/x"] {
        let v = echoed(
            spoofed(c.get(format!("{base}{path}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_clean(&v, path);
        assert_eq!(header(&v, "x-amzn-oidc-identity"), Some("bob"), "{path}");
        assert_eq!(header(&v, "x-forwarded-user"), Some("bob"), "{path}");
        assert_eq!(header(&v, "x-forwarded-email"), Some("bob@other.org"));
        assert_eq!(header(&v, "x-forwarded-groups"), Some("staff"));
    }
    let v = echoed(
        spoofed(c.post(format!("{base}/x")))
            .body("payload")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_clean(&v, "signed-in POST");
    assert_eq!(header(&v, "x-amzn-oidc-identity"), Some("bob"));
}

/// RFC 9110 §7.6.1: `Connection` names hop-by-hop fields for the proxy to drop. Naming the
/// identity headers there must not strip the values Portcullis sets (which would turn a
/// signed-in request anonymous upstream, or let a spoof through a later hop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_header_cannot_remove_the_identity_portcullis_sets() {
    portcullis::install_crypto();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    let c = client();
    login(&c, &s.proxy, "/", "alice").await;
    let hop = format!("keep-alive, {}", IDENTITY.join(", "));
    let v = echoed(
        c.get(format!("{base}/x"))
            .header("connection", hop)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(header(&v, "x-amzn-oidc-identity"), Some("alice"));
    assert_eq!(header(&v, "x-forwarded-user"), Some("alice"));
    assert_eq!(header(&v, "x-forwarded-groups"), Some("admins,staff"));
    assert!(header(&v, "x-amzn-oidc-data").is_some_and(|d| d.split('.').count() == 3));
}

/// oauth2-proxy CVE-2026-40574: an email claim with two `@` (`eve@evil.test@example.com`)
/// must not pass an email-domain rule for `example.com`; nor may markup in claims reach any
/// page Portcullis renders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_with_two_at_signs_does_not_pass_a_domain_rule() {
    portcullis::install_crypto();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    let c = client();
    let cb = login(&c, &s.proxy, "/corp/x", "eve").await;
    assert_eq!(cb.status(), 302);
    let r = c
        .get(format!("{base}/corp/x"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a two-@ email passed allow_email_domains");
    let page = r.text().await.unwrap();
    assert!(
        !page.contains("<script>alert(1)") && !page.contains("<img src=x"),
        "{page}"
    );
    // The same user with a well-formed address in the domain passes (the rule works).
    let c = client();
    login(&c, &s.proxy, "/corp/x", "alice").await;
    let r = c.get(format!("{base}/corp/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// The 2026-12-07 review's F6: an email the IdP says is not verified (`email_verified: false`,
/// the test IdP's `mallory`) is not identity. `X-Forwarded-Email` — inline and in forward
/// auth's answer — is left out for it (oauth2-proxy refuses such users by default), and sent
/// for a verified address; `headers.insecure_forward_unverified_email = true` sends it anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_email_is_not_forwarded_as_identity() {
    portcullis::install_crypto();
    let s = Stack::start().await;
    let base = &s.proxy.base;
    let mallory = client();
    login(&mallory, &s.proxy, "/", "mallory").await;
    let v = echoed(mallory.get(format!("{base}/x")).send().await.unwrap()).await;
    assert_eq!(header(&v, "x-forwarded-user"), Some("mallory"), "{v}");
    assert_eq!(
        header(&v, "x-forwarded-email"),
        None,
        "an unverified email reached the upstream as identity: {v}"
    );
    let r = mallory
        .get(format!("{base}/oauth2/auth"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-forwarded-user"], "mallory");
    assert!(
        r.headers().get("x-forwarded-email").is_none(),
        "/oauth2/auth answered an unverified email: {:?}",
        r.headers()
    );
    // A verified address is still sent.
    let alice = client();
    login(&alice, &s.proxy, "/", "alice").await;
    let v = echoed(alice.get(format!("{base}/x")).send().await.unwrap()).await;
    assert_eq!(header(&v, "x-forwarded-email"), Some("alice@example.com"));
    drop(s);

    // The opt-out.
    let s = Stack::start_with(
        3600,
        "\n[headers]\ninsecure_forward_unverified_email = true\n",
        serde_json::json!({}),
    )
    .await;
    let mallory = client();
    login(&mallory, &s.proxy, "/", "mallory").await;
    let v = echoed(
        mallory
            .get(format!("{}/x", s.proxy.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        header(&v, "x-forwarded-email"),
        Some("mallory@example.com"),
        "{v}"
    );
}
