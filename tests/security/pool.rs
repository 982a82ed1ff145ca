//! The built-in pool's pages: clickjacking and lockout bypass by name variants.
//!
//! Already pinned elsewhere (see SECURITY.md): CSRF on every form, with tokens bound to their
//! browser (tests/pool_pages.rs `every_form_requires_the_csrf_token`); XSS through reflected
//! and stored values (`reflected_and_stored_values_are_escaped`); enumeration by message and
//! timing (`unknown_users_are_indistinguishable`); lockout by case, full-width and e-mail
//! spellings (`lockout_is_shared_by_name_variants_and_admin_unlock_lifts_it`); code brute
//! force (`codes_allow_only_a_few_attempts`); reset-code reuse
//! (`forgot_password_reset_then_sign_in`); code and refresh-token replay (tests/pool_op.rs).

use crate::on_both;
use crate::pool_support::{self, *};

/// Clickjacking (RFC 9700 §4.16; CWE-1021; RFC 7034): no sign-in page may be framed by
/// another site — CSP `frame-ancestors 'none'` (or `X-Frame-Options: DENY`) on every HTML page
/// of the pool.
async fn no_pool_page_can_be_framed(backend: Backend) {
    let s = Server::start(backend, "").await;
    let c = browser();
    for path in [
        "/oauth2/pool/login",
        "/oauth2/pool/signup",
        "/oauth2/pool/forgot-password",
        "/oauth2/pool/confirm?username=x",
        "/oauth2/pool/reset-password?username=x",
    ] {
        let r = c.get(s.url(path)).send().await.unwrap();
        let status = r.status();
        let csp = r
            .headers()
            .get("content-security-policy")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let xfo = r
            .headers()
            .get("x-frame-options")
            .map(|v| v.to_str().unwrap().to_ascii_uppercase())
            .unwrap_or_default();
        assert!(
            csp.contains("frame-ancestors 'none'") || xfo == "DENY",
            "{path} ({status}) can be framed: csp={csp:?} x-frame-options={xfo:?}"
        );
    }
}
on_both!(clickjacking, no_pool_page_can_be_framed);

/// Lockout bypass by name variants (OWASP ASVS V2.2.1; the Unicode-normalisation class of
/// CVE-2019-19844, Django's password-reset account confusion): compatibility ligatures,
/// surrounding spaces and mixed full-width case are the same user, and count against one
/// lockout; the right password through yet another spelling is then refused too.
async fn ligature_and_padded_variants_share_the_lockout(backend: Backend) {
    let s = Server::start(backend, "lockout = { initial = \"1m\" }").await;
    create_user(&s, "office", "office@example.com");
    let c = browser();
    let login = s.url("/oauth2/pool/login");
    // Each spelling signs in as the user (so each is a way in that must share the counter).
    for v in [
        "o\u{fb03}ce",
        " OFFICE ",
        "\u{ff4f}\u{ff46}\u{ff46}\u{ff49}\u{ff43}\u{ff45}",
    ] {
        let r = sign_in(&browser(), &s, &login, v, PASSWORD).await;
        assert_eq!(r.status(), 200, "{v:?} does not sign in as office");
    }
    let variants = [
        "o\u{fb03}ce",
        " office",
        "OFFICE\u{3000}",
        "\u{ff2f}\u{ff26}\u{ff26}\u{ff29}\u{ff23}\u{ff25}",
        "O\u{fb03}CE",
    ];
    for (i, v) in variants.iter().enumerate() {
        let r = sign_in(&c, &s, &login, v, "Wrong-Password-1").await;
        let want = if i < 4 { 401 } else { 429 };
        assert_eq!(r.status(), want, "failure {i} through {v:?}");
    }
    let r = sign_in(&c, &s, &login, "\u{ff4f}ffice", PASSWORD).await;
    assert_eq!(
        r.status(),
        429,
        "the right password through another spelling got in"
    );
}
on_both!(
    lockout_variants,
    ligature_and_padded_variants_share_the_lockout
);
