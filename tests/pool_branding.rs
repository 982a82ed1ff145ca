//! Branding (title, logo, extra CSS, templates overridden from `pool.ui.templates_dir`, still
//! auto-escaped) and per-client-address throttling of sign-in attempts.

mod pool_support;

use pool_support::*;

const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0];

async fn branding_and_template_overrides(backend: Backend) {
    let dir = std::env::temp_dir().join(format!("pc-brand-{}-{:?}", std::process::id(), backend));
    let templates = dir.join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(dir.join("logo.png"), PNG).unwrap();
    write(&dir.join("brand.css"), ":root{--accent:#b0186b}");
    write(
        &templates.join("login.html"),
        "{% extends \"base.html\" %}{% block content %}<p id=\"acme\">ACME staff only</p>\
         <form method=\"post\" action=\"{{ base }}/login{{ q }}\"><input type=\"hidden\" name=\"csrf_token\" value=\"{{ csrf_token }}\">\
         <input name=\"username\" value=\"{{ values.username }}\"><input name=\"password\" type=\"password\">\
         <button>{{ t.sign_in }}</button></form>{% endblock %}",
    );
    let extra = format!(
        "ui = {{ title = \"ACME <Corp>\", logo = \"{}\", css = \"{}\", templates_dir = \"{}\" }}",
        dir.join("logo.png").display(),
        dir.join("brand.css").display(),
        templates.display()
    );
    let s = Server::start(backend, &extra).await;
    let c = browser();
    let html = c
        .get(s.url("/oauth2/pool/login?username=%3Cb%3Ex"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<p id=\"acme\">ACME staff only</p>"),
        "override not used:\n{html}"
    );
    assert!(html.contains("ACME &lt;Corp&gt;"), "title escaped:\n{html}");
    assert!(
        html.contains("value=\"&lt;b&gt;x\""),
        "overridden templates still escape:\n{html}"
    );
    assert!(html.contains("/assets/brand.css") && html.contains("/assets/logo"));
    let logo = c
        .get(s.url("/oauth2/pool/assets/logo"))
        .send()
        .await
        .unwrap();
    assert_eq!(logo.headers()["content-type"], "image/png");
    assert_eq!(logo.bytes().await.unwrap().as_ref(), PNG);
    let css = c
        .get(s.url("/oauth2/pool/assets/brand.css"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(css.contains("#b0186b"));
    // Pages not overridden keep the embedded default, with the brand.
    let signup = c
        .get(s.url("/oauth2/pool/signup"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(signup.contains("ACME &lt;Corp&gt;") && signup.contains("name=\"email\""));
    // And the overridden form works.
    create_user(&s, "quinn", "quinn@example.com");
    assert_eq!(
        sign_in(&c, &s, &s.url("/oauth2/pool/login"), "quinn", PASSWORD)
            .await
            .status(),
        200
    );
    let _ = std::fs::remove_dir_all(dir);
}
on_both!(branding, branding_and_template_overrides);

async fn one_address_is_throttled_across_user_names(backend: Backend) {
    let s = Server::start(
        backend,
        "lockout = { ip_max_attempts = 3, initial = \"1m\" }",
    )
    .await;
    create_user(&s, "rita", "rita@example.com");
    let c = browser();
    let login = s.url("/oauth2/pool/login");
    for name in ["a1", "b2", "c3"] {
        assert_eq!(
            sign_in(&c, &s, &login, name, "Wrong-Password-1")
                .await
                .status(),
            401
        );
    }
    // A fourth name from the same address is throttled, before any password check.
    let r = sign_in(&c, &s, &login, "rita", PASSWORD).await;
    assert_eq!(r.status(), 429);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Too many sign-in attempts from your network. Try again in 1 minute.")
    );
}
on_both!(ip_throttle, one_address_is_throttled_across_user_names);
