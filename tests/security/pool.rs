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

/// `VmRSS` (KiB) and `Threads` of a process, from `/proc/PID/status`.
fn rss_and_threads(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("Threads:"))
}

/// One sign-in with a wrong password for `name`, posted to the form's `action`.
async fn bad_sign_in(
    c: &reqwest::Client,
    action: &str,
    csrf: &str,
    name: &str,
) -> reqwest::Response {
    c.post(action)
        .form(&[
            ("csrf_token", csrf),
            ("username", name),
            ("password", "Wrong-Password-1"),
        ])
        .send()
        .await
        .unwrap()
}

/// Unauthenticated password-hashing flood (CWE-770, CWE-400; OWASP ASVS V2.2.1; the review's
/// F4): 100 sign-ins with unknown names written at once from one address. The per-address
/// limit is reserved before each hash is verified, so no more than `ip_max_attempts` are
/// verified (the rest answer 429, or 503 with `Retry-After` when the process-wide hashing
/// limit is full), and the process's memory and threads stay bounded.
async fn concurrent_sign_ins_cannot_pass_the_address_limit(backend: Backend) {
    let s = Server::start(backend, "lockout = { ip_max_attempts = 10 }").await;
    let c = browser();
    let login = s.url("/oauth2/pool/login");
    let page = c.get(&login).send().await.unwrap().text().await.unwrap();
    let (action, csrf) = form(&page, &s.base, "/login");
    let pid = s.pid();
    let peak = std::sync::Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let (rss, threads) = rss_and_threads(pid);
                let mut p = peak.lock().unwrap();
                *p = (p.0.max(rss), p.1.max(threads));
                drop(p);
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        })
    };
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (c, action, csrf) = (c.clone(), action.clone(), csrf.clone());
        tasks.push(tokio::spawn(async move {
            let r = bad_sign_in(&c, &action, &csrf, &format!("nobody-{i}")).await;
            let retry_after = r.headers().contains_key("retry-after");
            (r.status().as_u16(), retry_after)
        }));
    }
    let mut counts = std::collections::BTreeMap::new();
    for t in tasks {
        let (status, retry_after) = t.await.unwrap();
        if status == 503 {
            assert!(retry_after, "a 503 without Retry-After");
        }
        *counts.entry(status).or_insert(0) += 1;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let (peak_rss, peak_threads) = *peak.lock().unwrap();
    eprintln!(
        "answers {counts:?}; peak RSS {} MiB, peak threads {peak_threads}",
        peak_rss / 1024
    );
    let verified = counts.get(&401).copied().unwrap_or(0);
    assert!(
        verified <= 10,
        "{verified} of 100 concurrent sign-ins were verified although ip_max_attempts = 10: {counts:?}"
    );
    assert_eq!(
        counts
            .keys()
            .filter(|k| ![401, 429, 503].contains(k))
            .count(),
        0,
        "unexpected answers: {counts:?}"
    );
    assert!(
        peak_rss < 400 * 1024,
        "peak RSS {} MiB under 100 concurrent sign-ins",
        peak_rss / 1024
    );
    assert!(peak_threads < 64, "peak threads {peak_threads}");
}
on_both!(
    sign_in_flood,
    concurrent_sign_ins_cannot_pass_the_address_limit
);

/// Beyond the process-wide hashing limit the answer is 503 with `Retry-After`, never an
/// unbounded queue (the review's F4, second half; CWE-770): with the per-address throttle off,
/// more concurrent sign-ins than the limit's slots and queue (`2 × cores` running, `4 ×` that
/// waiting) get a plain 503 page with `Retry-After`, the rest are verified (401), and memory and
/// threads stay bounded.
async fn sign_ins_beyond_the_hashing_limit_get_503_with_retry_after(backend: Backend) {
    let s = Server::start(backend, "lockout = { ip_max_attempts = 0 }").await;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let slots = (2 * cores).clamp(2, 64);
    let n = 6 * slots + 60;
    let c = browser();
    let login = s.url("/oauth2/pool/login");
    let page = c.get(&login).send().await.unwrap().text().await.unwrap();
    let (action, csrf) = form(&page, &s.base, "/login");
    let pid = s.pid();
    let mut tasks = Vec::new();
    for i in 0..n {
        let (c, action, csrf) = (c.clone(), action.clone(), csrf.clone());
        tasks.push(tokio::spawn(async move {
            let r = bad_sign_in(&c, &action, &csrf, &format!("flood-{i}")).await;
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let html = r.text().await.unwrap_or_default();
            (status, retry_after, html)
        }));
    }
    let mut peak = (0, 0);
    let mut counts = std::collections::BTreeMap::new();
    for t in tasks {
        let (rss, threads) = rss_and_threads(pid);
        peak = (peak.0.max(rss), peak.1.max(threads));
        let (status, retry_after, html) = t.await.unwrap();
        if status == 503 {
            assert!(
                retry_after.is_some_and(|s| (1..=60).contains(&s)),
                "503 without a usable Retry-After: {retry_after:?}"
            );
            assert!(
                html.contains("busy"),
                "503 without the busy message: {html}"
            );
        }
        *counts.entry(status).or_insert(0) += 1;
    }
    eprintln!(
        "{n} concurrent sign-ins ({slots} slots): {counts:?}; peak RSS {} MiB, threads {}",
        peak.0 / 1024,
        peak.1
    );
    assert!(
        counts.get(&503).copied().unwrap_or(0) > 0,
        "{n} concurrent sign-ins, {slots} hashing slots: no 503 — nothing bounds the hashing: {counts:?}"
    );
    assert_eq!(
        counts.keys().filter(|k| ![401, 503].contains(k)).count(),
        0,
        "unexpected answers: {counts:?}"
    );
    assert!(peak.0 < 400 * 1024, "peak RSS {} MiB", peak.0 / 1024);
    assert!(peak.1 < 64, "peak threads {}", peak.1);
}
on_both!(
    hashing_limit,
    sign_ins_beyond_the_hashing_limit_get_503_with_retry_after
);

/// A trusted proxy that appends the client as `ip:port` (Azure Application Gateway does),
/// `[v6]:port`, or something that is no address at all (the review's F4, red-team variant):
/// the client's own forged entries to the left never become the throttling key. The entry the
/// proxy appended (without its port) is the key, and an entry that cannot be read makes the
/// peer the key — so at most `ip_max_attempts` sign-ins are verified for each spelling.
async fn forged_forwarded_for_cannot_rotate_the_address_limit(backend: Backend) {
    let mut s = Server::start(
        backend,
        "lockout = { ip_max_attempts = 10, initial = \"10m\" }",
    )
    .await;
    s.kill9();
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    let cfg = cfg.replacen(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
        1,
    );
    std::fs::write(&s.config, cfg).unwrap();
    s.spawn().await;
    let c = browser();
    let login = s.url("/oauth2/pool/login");
    let page = c.get(&login).send().await.unwrap().text().await.unwrap();
    let (action, csrf) = form(&page, &s.base, "/login");
    for appended in ["203.0.113.7:4711", "[2001:db8::7]:4711", "unknown"] {
        let mut counts = std::collections::BTreeMap::new();
        for i in 0..20 {
            let r = c
                .post(&action)
                .header("x-forwarded-for", format!("10.9.0.{}, {appended}", i + 1))
                .form(&[
                    ("csrf_token", csrf.as_str()),
                    ("username", &format!("nobody-{i}")),
                    ("password", "Wrong-Password-1"),
                ])
                .send()
                .await
                .unwrap();
            *counts.entry(r.status().as_u16()).or_insert(0) += 1;
        }
        let verified = counts.get(&401).copied().unwrap_or(0);
        assert!(
            verified <= 10,
            "proxy appended {appended:?}: {verified} of 20 sign-ins from one client were \
             verified (ip_max_attempts = 10); the forged entries became the key: {counts:?}"
        );
        assert_eq!(
            counts.get(&429).copied().unwrap_or(0),
            20 - verified,
            "proxy appended {appended:?}: {counts:?}"
        );
    }
}
on_both!(
    forged_forwarded_for,
    forged_forwarded_for_cannot_rotate_the_address_limit
);
