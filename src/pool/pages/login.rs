//! The sign-in page. Order of checks on submit: CSRF; per-address throttle; lockout of the
//! canonical user name (so case, width and Unicode variants share one counter) — both counted
//! *before* anything is verified, so concurrent attempts see each other, and given back when
//! the password was right; one Argon2 verification under the process-wide hashing limit (503
//! with `Retry-After` beyond it) — against a dummy hash for unknown users, so message and timing match a wrong
//! password (no user enumeration); then the user's status decides where they go next.

use http::{Response, StatusCode};

use super::{Page, redirect};
use crate::http::body::Body;
use crate::pool::config::LockoutPolicy;
use crate::pool::i18n::{self, t};
use crate::pool::lockout::{lock_duration, remaining_ms, retry_seconds};
use crate::pool::store::{Reservation, Reserve, Store, StoreError, UserStatus};
use crate::pool::{Pool, Ready, Req, delivery, hashing, now, now_ms, password, username};

/// `GET /login`: a browser already signed in to the pool sees who it is signed in as, with
/// "continue" and "switch account" (`switch=1` shows the form anyway). When an authorization
/// request asks for a new sign-in (`prompt=login`, `max_age`, a step-up), the form is shown
/// with the signed-in user's name filled in.
pub async fn open(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    let signed_in = match req.param("switch") {
        "1" => None,
        _ => pool.session_user(ready, req).await.map(|(u, _)| u),
    };
    let Some(user) = signed_in else {
        return show(pool, req, None);
    };
    if req.value("req").is_empty() {
        let page = Page {
            user: user.username.clone(),
            extra: serde_json::json!({ "switch": true }),
            ..Page::default()
        };
        return pool.pages.render(
            pool,
            req,
            StatusCode::OK,
            "message.html",
            "signed_in_title",
            page,
        );
    }
    if pool.open_request(req).is_err() {
        return show(pool, req, None);
    }
    let mut page = Page {
        req: req.value("req").to_string(),
        message: i18n::fill(
            t(req.lang, "fl_signed_in_again"),
            &[("user", &user.username)],
        ),
        ..Page::default()
    };
    let typed = req.value("username");
    page.values.insert(
        "username".into(),
        if typed.is_empty() {
            &user.username
        } else {
            typed
        }
        .to_string(),
    );
    pool.pages
        .render(pool, req, StatusCode::OK, "login.html", "sign_in", page)
}

pub fn show(pool: &Pool, req: &Req<'_>, errors: Option<Vec<String>>) -> Response<Body> {
    if pool.open_request(req).is_err() {
        return pool.pages.message(
            pool,
            req,
            StatusCode::BAD_REQUEST,
            "error_title",
            "invalid_request",
        );
    }
    let notice = match req.param("notice") {
        n @ ("confirmed" | "password_reset" | "password_set" | "password_changed") => {
            t(req.lang, n).to_string()
        }
        _ => String::new(),
    };
    let mut page = Page {
        notice,
        req: req.value("req").to_string(),
        errors: errors.unwrap_or_default(),
        ..Page::default()
    };
    page.values
        .insert("username".into(), req.value("username").to_string());
    pool.pages
        .render(pool, req, StatusCode::OK, "login.html", "sign_in", page)
}

pub fn error_page(
    pool: &Pool,
    req: &Req<'_>,
    status: StatusCode,
    message: String,
) -> Response<Body> {
    let mut page = Page {
        req: req.value("req").to_string(),
        errors: vec![message],
        ..Page::default()
    };
    page.values
        .insert("username".into(), req.field("username").to_string());
    pool.pages
        .render(pool, req, status, "login.html", "sign_in", page)
}

/// The lockout key of a user (by canonical name), shared by CLI/API unlock.
pub fn user_key(canonical: &str) -> String {
    format!("user:{canonical}")
}

fn ip_key(req: &Req<'_>) -> String {
    format!("ip:{}", req.ip)
}

/// Calls of the lazy-migration hook per client address before they back off (doubling from
/// `lockout.initial`, like a lockout; the count resets after `lockout.reset_after` without
/// calls). A migration that succeeds gives its call back.
pub const MIGRATION_PER_ADDRESS: u32 = 10;

/// Reserves one attempt on a lockout key before its secret (password, TOTP or recovery code)
/// is checked: `Ok(Ok(_))` counted, check now (and release it if right); `Ok(Err(s))` the key
/// is locked for `s` more seconds and nothing was counted.
pub async fn reserve(
    store: &Store,
    key: &str,
    threshold: u32,
    policy: &LockoutPolicy,
    now_ms: i64,
) -> Result<Result<Reservation, i64>, StoreError> {
    Ok(
        match store
            .reserve_attempt(key, threshold, policy, now_ms)
            .await?
        {
            Reserve::Reserved(r) => Ok(r),
            Reserve::Locked { failures, last } => {
                let left = remaining_ms(failures, threshold, last, now_ms, policy);
                Err(retry_seconds(left.max(1)))
            }
        },
    )
}

/// After a failed attempt was counted by [`reserve`]: for how many seconds the key is now
/// locked (`None`: not locked).
pub fn locked_after(r: &Reservation, threshold: u32, policy: &LockoutPolicy) -> Option<i64> {
    let lock = lock_duration(r.failures, threshold, policy);
    (!lock.is_zero()).then(|| retry_seconds(lock.as_millis() as i64))
}

/// Counts a failed second-factor step against the client address (the user's key is counted
/// by [`reserve`] before the code is checked).
pub async fn count_address_failure(
    store: &Store,
    req: &Req<'_>,
    policy: &LockoutPolicy,
    now_ms: i64,
) {
    if policy.ip_max_attempts > 0 {
        let reset_before = now_ms - policy.reset_after.as_millis() as i64;
        let _ = store
            .record_failure(&ip_key(req), now_ms, reset_before)
            .await;
    }
}

/// "Too many failed sign-in attempts. Try again in 1 second." (or minutes, hours)
pub fn locked(req: &Req<'_>, seconds: i64) -> String {
    i18n::fill(
        t(req.lang, "locked"),
        &[("s", &i18n::duration_words(req.lang, seconds))],
    )
}

/// 503 with `Retry-After`: the process-wide password-hashing limit is full.
pub fn busy(pool: &Pool, req: &Req<'_>) -> Response<Body> {
    tracing::warn!(
        request_id = req.rid,
        "pool.event" = "hashing_busy",
        "password hashing at capacity: request refused"
    );
    let mut r = pool.pages.message(
        pool,
        req,
        StatusCode::SERVICE_UNAVAILABLE,
        "error_title",
        "busy",
    );
    hashing::retry_later(&mut r);
    r
}

/// Counters quiet this long are removed (at most once a minute per process, by a sign-in):
/// longer than any window they count in — the lockout's `reset_after` and the code
/// deliveries' hour.
async fn purge_quiet_attempts(store: &Store, policy: &LockoutPolicy, now_ms: i64) {
    static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let last = LAST.load(std::sync::atomic::Ordering::Relaxed);
    if now_ms - last < 60_000
        || LAST
            .compare_exchange(
                last,
                now_ms,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_err()
    {
        return;
    }
    let window = (policy.reset_after.as_millis() as i64).max(3_600_000);
    match store.purge_quiet_attempts(now_ms - window).await {
        Ok(n) if n > 0 => tracing::debug!(removed = n, "quiet sign-in counters removed"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot remove quiet sign-in counters"),
    }
}

/// Undoes reservations whose attempt did not fail (a right password, or no verification).
async fn release(store: &Store, held: &[(&str, Reservation)]) {
    for (key, r) in held {
        if let Err(e) = store.release_attempt(key, r).await {
            tracing::warn!(error = %e, "cannot release a sign-in attempt reservation");
        }
    }
}

pub async fn submit(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    if !pool.csrf_ok(req) {
        return pool.csrf_failed(req);
    }
    let Ok(areq) = pool.open_request(req) else {
        return pool.pages.message(
            pool,
            req,
            StatusCode::BAD_REQUEST,
            "error_title",
            "invalid_request",
        );
    };
    let policy = pool.cfg.lockout;
    let store = &ready.store;
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, request_id = req.rid, "pool database error during sign-in");
        let mut r = pool.pages.message(
            pool,
            req,
            StatusCode::SERVICE_UNAVAILABLE,
            "error_title",
            "unavailable",
        );
        // Under a flood this is the database's connection pool running dry: come back soon.
        hashing::retry_later(&mut r);
        r
    };
    let t0 = now_ms();
    purge_quiet_attempts(store, &policy, t0).await;

    // Per-address throttling: many failures from one client address slow it down. The
    // attempt is counted now, before anything is verified, so a burst of concurrent sign-ins
    // sees its own attempts; a right password gives it back.
    let ip = ip_key(req);
    let ip_held = if policy.ip_max_attempts > 0 {
        match reserve(store, &ip, policy.ip_max_attempts, &policy, t0).await {
            Ok(Ok(r)) => Some(r),
            Ok(Err(s)) => {
                return error_page(
                    pool,
                    req,
                    StatusCode::TOO_MANY_REQUESTS,
                    i18n::fill(
                        t(req.lang, "throttled"),
                        &[("s", &i18n::duration_words(req.lang, s))],
                    ),
                );
            }
            Err(e) => return unavailable(&e),
        }
    } else {
        None
    };
    let ip_only: Vec<(&str, Reservation)> = ip_held.iter().map(|r| (ip.as_str(), *r)).collect();

    let raw = req.field("username");
    let canonical = username::canonical(raw);
    let user = match store.user_by_login(&canonical, raw).await {
        Ok(u) => u,
        Err(e) => {
            release(store, &ip_only).await;
            return unavailable(&e);
        }
    };
    // Known users are keyed by their canonical name even when they typed their email.
    let key = user_key(
        user.as_ref()
            .map(|u| u.username.as_str())
            .unwrap_or(&canonical),
    );
    let user_held = match reserve(store, &key, policy.max_attempts, &policy, t0).await {
        Ok(Ok(r)) => r,
        Ok(Err(s)) => {
            release(store, &ip_only).await;
            return error_page(pool, req, StatusCode::TOO_MANY_REQUESTS, locked(req, s));
        }
        Err(e) => {
            release(store, &ip_only).await;
            return unavailable(&e);
        }
    };
    let mut held = ip_only.clone();
    held.push((key.as_str(), user_held));

    let pw = req.field("password");
    let mut user = user;
    let verified = match &user {
        // Imported users without a hash (RESET_REQUIRED) cost the same as everyone else.
        Some(u) if !u.password_hash.is_empty() => password::verify(pw, &u.password_hash).await,
        _ => password::verify(pw, &ready.dummy_hash).await.map(|_| false),
    };
    let Ok(mut ok) = verified else {
        release(store, &held).await;
        return busy(pool, req);
    };
    if user.is_none()
        && let Some(hook) = &pool.migration
    {
        // Lazy migration (docs/src/pool/import-export.md): the failure, whatever its cause, is an ordinary one.
        // The hook gets at most MIGRATION_PER_ADDRESS calls per client address (then backs
        // off like a lockout), whatever the address throttle says: each call sends a
        // password to the old system and waits for it.
        let hook_key = format!("migrate:{}", req.ip);
        match reserve(store, &hook_key, MIGRATION_PER_ADDRESS, &policy, t0).await {
            Ok(Ok(slot)) => match hook.migrate(&pool.cfg, store, raw, pw).await {
                Ok(u) => {
                    tracing::info!(request_id = req.rid, sub = %u.sub, "pool.event" = "user_migrated", "user migrated from the old system");
                    release(store, &[(hook_key.as_str(), slot)]).await;
                    user = Some(u);
                    ok = true;
                }
                Err(e) => {
                    tracing::info!(request_id = req.rid, "pool.event" = "migration_failed", reason = %crate::pool::audit::printable(&e.to_string()), "lazy migration did not create a user");
                }
            },
            Ok(Err(_)) => {
                tracing::info!(
                    request_id = req.rid,
                    "pool.event" = "migration_throttled",
                    "too many migration attempts from this address: the hook was not called"
                );
            }
            Err(e) => {
                release(store, &held).await;
                return unavailable(&e);
            }
        }
    }
    if !ok {
        // The reservations stand: they are this failure's count.
        let failures = user_held.failures;
        tracing::info!(
            request_id = req.rid,
            "pool.event" = "sign_in_failed",
            failures,
            "sign-in failed"
        );
        let lock = locked_after(&user_held, policy.max_attempts, &policy);
        // Recorded for any name, known or not: the same write either way.
        let (name, sub) = user.as_ref().map_or((canonical.as_str(), ""), |u| {
            (u.username.as_str(), u.sub.as_str())
        });
        crate::pool::audit::sign_in_failed(store, name, sub, failures, lock.is_some(), req.ip)
            .await;
        if let Some(s) = lock {
            return error_page(pool, req, StatusCode::TOO_MANY_REQUESTS, locked(req, s));
        }
        // The same words for every name, invited or not (an invitee knows no password, so
        // nothing secret was shown): the hint to the invitation email reveals nothing.
        return error_page(
            pool,
            req,
            StatusCode::UNAUTHORIZED,
            t(req.lang, "bad_credentials_invited").to_string(),
        );
    }
    // The password was right: the address's attempt is given back.
    release(store, &ip_only).await;
    let Some(user) = user else {
        return error_page(
            pool,
            req,
            StatusCode::UNAUTHORIZED,
            t(req.lang, "bad_credentials").to_string(),
        );
    };
    // With a second factor still to come the count stands as it was before this attempt until
    // the factor is shown (in `create_session`); clearing it here would let each right
    // password buy new code guesses.
    if pool.cfg.mfa == crate::pool::config::MfaMode::Off {
        let _ = store.clear_attempts(&key).await;
    } else {
        release(store, &[(key.as_str(), user_held)]).await;
    }
    // An imported hash (bcrypt, scrypt, PBKDF2, other Argon2 parameters) is replaced by the
    // pool's own now that the password is known to be right.
    if password::needs_rehash(&user.password_hash) {
        match password::hash(pw).await {
            Ok(h) => {
                if let Err(e) = store.set_password(&user.sub, &h, user.status, now()).await {
                    tracing::error!(error = %e, request_id = req.rid, "cannot store the re-hashed password");
                }
            }
            Err(e) => {
                // Busy included: the old hash still works; it is replaced at a later sign-in.
                tracing::warn!(error = %e, request_id = req.rid, "cannot re-hash the password now")
            }
        }
    }

    // The password was right: only now may the page reveal the account's status.
    let q = req.value("req");
    let carry = |path: &str, extra: &str| {
        let mut s = format!(
            "{}{path}?username={}{extra}",
            pool.base,
            enc(&user.username)
        );
        if !q.is_empty() {
            s.push_str(&format!("&req={}", enc(q)));
        }
        s
    };
    match user.status {
        UserStatus::Confirmed => pool.finish_sign_in(ready, req, &user, areq).await,
        UserStatus::Disabled => error_page(
            pool,
            req,
            StatusCode::FORBIDDEN,
            t(req.lang, "disabled").to_string(),
        ),
        UserStatus::Unconfirmed => redirect(&carry("/confirm", "&notice=needs_confirm"), &[]),
        UserStatus::ResetRequired => {
            if let Err(e) = delivery::issue(
                &pool.cfg,
                store,
                &user,
                delivery::Purpose::Reset,
                req.lang,
                now(),
            )
            .await
            {
                tracing::error!(error = %e, request_id = req.rid, "cannot deliver a reset code");
            }
            redirect(&carry("/reset-password", "&notice=must_reset"), &[])
        }
        UserStatus::ForceChangePassword => {
            let page = Page {
                challenge: pool.seal_challenge(&user.sub),
                req: q.to_string(),
                ..Page::default()
            };
            pool.pages.render(
                pool,
                req,
                StatusCode::OK,
                "change_password.html",
                "change_title",
                page,
            )
        }
    }
}

/// Back to the sign-in page with a notice and the user name filled in, keeping the pending
/// authorization request (`req`) so the sign-in continues where it started.
pub fn to_login_with_notice(
    pool: &Pool,
    req: &Req<'_>,
    notice: &str,
    username: &str,
) -> Response<Body> {
    let mut to = format!(
        "{}/login?notice={notice}&username={}",
        pool.base,
        enc(username)
    );
    let q = req.value("req");
    if !q.is_empty() {
        to.push_str("&req=");
        to.push_str(&enc(q));
    }
    redirect(&to, &[])
}

pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reserve-before-verify (I1, F4): each reservation counts; once the threshold is
    /// reached the key is locked and nothing more is counted; a released reservation leaves
    /// the key as it was; concurrent reservations see each other; quiet keys are purged.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reservations_count_first_and_release_restores() {
        let dir = std::env::temp_dir().join(format!(
            "pc-reserve-{}-{}",
            std::process::id(),
            crate::pool::now_ms()
        ));
        let store = Store::open(&format!("sqlite://{}", dir.join("pool.db").display()))
            .await
            .unwrap();
        let policy = LockoutPolicy::default();
        let t = 1_000_000_000;
        // A right password on a fresh key leaves no trace.
        let r = reserve(&store, "k", 3, &policy, t).await.unwrap().unwrap();
        store.release_attempt("k", &r).await.unwrap();
        assert_eq!(store.attempts("k").await.unwrap(), (0, 0));
        // Three failures lock; the fourth attempt is refused and not counted.
        for n in 1..=3 {
            let r = reserve(&store, "k", 3, &policy, t + n)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(r.failures, n as u32);
        }
        assert_eq!(
            reserve(&store, "k", 3, &policy, t + 10).await.unwrap(),
            Err(1)
        );
        assert_eq!(store.attempts("k").await.unwrap(), (3, t + 3));
        // After the lock, a right password restores the count as it was.
        let later = t + 3 + 1_000;
        let r = reserve(&store, "k", 3, &policy, later)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.failures, 4);
        store.release_attempt("k", &r).await.unwrap();
        assert_eq!(store.attempts("k").await.unwrap(), (3, t + 3));

        // A burst: 40 concurrent reservations on one key with a threshold of 5.
        let store = std::sync::Arc::new(store);
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                reserve(&store, "burst", 5, &LockoutPolicy::default(), t)
                    .await
                    .unwrap()
                    .is_ok()
            }));
        }
        let mut passed = 0;
        for task in tasks {
            passed += usize::from(task.await.unwrap());
        }
        assert_eq!(passed, 5, "a burst passed more than the threshold");

        // Quiet keys go.
        assert_eq!(store.purge_quiet_attempts(t + 5_000).await.unwrap(), 2);
        assert_eq!(store.attempts("burst").await.unwrap(), (0, 0));
        let _ = std::fs::remove_dir_all(dir);
    }
}
