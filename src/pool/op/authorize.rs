//! `GET` / `POST {issuer}/authorize`: the authorization-code flow only. An unknown client or a
//! redirect URI that is not registered *exactly* gets an error page and never a redirect
//! (RFC 6749 §4.1.2.1 — an open redirector otherwise); every other error is returned to the
//! client's redirect URI. Public clients must send a PKCE S256 challenge (RFC 7636, BCP §2.1.1).
//! Scopes are granted per client (standard ones plus `[[pool.clients]].scopes`), anything else
//! is `invalid_scope`; `max_age` and `prompt=login` make the user sign in again; request objects
//! (`request`, `request_uri`) are refused as unsupported, never silently ignored.

use http::{Response, StatusCode};

use super::super::pages::{AuthRequest, plain, redirect};
use super::super::store::{StoredCode, User};
use super::super::{Pool, Ready, Req, now};
use crate::http::body::Body;

fn to_client(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut u = match url::Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => return redirect_uri.to_string(),
    };
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    u.to_string()
}

fn client_error(
    pool: &Pool,
    redirect_uri: &str,
    state: &str,
    error: &str,
    description: &str,
) -> Response<Body> {
    let mut params = vec![("error", error), ("error_description", description)];
    if !state.is_empty() {
        params.push(("state", state));
    }
    params.push(("iss", pool.issuer.as_str()));
    redirect(&to_client(redirect_uri, &params), &[])
}

/// The parameters the authorization endpoint reads.
const AUTH_PARAMS: [&str; 15] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "prompt",
    "max_age",
    "code_challenge",
    "code_challenge_method",
    "request",
    "request_uri",
    "registration",
    "login_hint",
    "acr_values",
];

/// The `acr_values` (OIDC Core 3.1.2.1, space-separated) that ask for a second factor.
pub const MFA_ACR: [&str; 2] = [
    "mfa",
    "http://schemas.openid.net/pape/policies/2007/06/multi-factor",
];

fn valid_challenge(c: &str) -> bool {
    (43..=128).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

pub async fn authorize(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    // OIDC Core 3.1.2.1: GET (query) and POST (form) alike; `value` reads the form first.
    let param = |name: &str| req.value(name);
    // RFC 6749 §3.1: no parameter more than once (in the query and the form together), so no
    // two readers can see two different requests.
    if AUTH_PARAMS.iter().any(|name| {
        req.query
            .iter()
            .chain(req.form.iter())
            .filter(|(k, _)| k == *name)
            .count()
            > 1
    }) {
        return plain(
            StatusCode::BAD_REQUEST,
            "invalid_request: a parameter is given more than once\n",
        );
    }
    let client_id = param("client_id");
    let Some(client) = pool.clients.get(client_id) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "invalid_request: unknown client_id\n",
        );
    };
    let redirect_uri = param("redirect_uri");
    if !client.redirect_allowed(redirect_uri) {
        tracing::info!(
            request_id = req.rid,
            client_id,
            "pool.event" = "redirect_uri_rejected",
            "authorize: redirect_uri not registered"
        );
        return plain(
            StatusCode::BAD_REQUEST,
            "invalid_request: redirect_uri is not registered for this client (exact match required)\n",
        );
    }
    let state = param("state");
    let fail = |error: &str, description: &str| {
        client_error(pool, redirect_uri, state, error, description)
    };
    // OIDC Core 6: request objects are not supported (discovery says so); refusing them is
    // the only safe answer, since ignoring one would ignore what it asked for.
    if !param("request").is_empty() {
        return fail(
            "request_not_supported",
            "the request parameter is not supported",
        );
    }
    if !param("request_uri").is_empty() {
        return fail(
            "request_uri_not_supported",
            "the request_uri parameter is not supported",
        );
    }
    if !param("registration").is_empty() {
        return fail(
            "registration_not_supported",
            "the registration parameter is not supported",
        );
    }
    match param("response_type") {
        "code" => {}
        "" => return fail("invalid_request", "response_type is required"),
        _ => {
            return fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            );
        }
    }
    // Scopes are granted, not asked for: each must be standard or one of the client's own.
    let scope = match super::super::clients::granted(param("scope"), |s| {
        client.user_scope_allowed(s)
    }) {
        Ok(list) if list.contains(&"openid") => list.join(" "),
        Ok(_) => return fail("invalid_scope", "the openid scope is required"),
        Err(bad) => {
            tracing::info!(request_id = req.rid, client_id, scope = %crate::error::sanitize_code(bad), "pool.event" = "invalid_scope", "authorize: scope refused");
            return fail(
                "invalid_scope",
                "a requested scope is not one this client may be granted",
            );
        }
    };
    let prompts: Vec<&str> = param("prompt").split_ascii_whitespace().collect();
    if prompts.contains(&"none") && prompts.len() > 1 {
        return fail(
            "invalid_request",
            "prompt=none cannot be combined with other values",
        );
    }
    // OIDC Core 3.1.2.1: a sign-in older than max_age seconds does not count (0: always anew).
    let max_age = match param("max_age") {
        "" => None,
        m => match m.parse::<u64>() {
            Ok(v) => Some(v.min(i64::MAX as u64) as i64),
            Err(_) => return fail("invalid_request", "max_age must be a number of seconds"),
        },
    };
    let challenge = param("code_challenge");
    let method = param("code_challenge_method");
    if !challenge.is_empty() && method != "S256" {
        return fail("invalid_request", "code_challenge_method must be S256");
    }
    if challenge.is_empty() && !method.is_empty() {
        return fail("invalid_request", "code_challenge is missing");
    }
    if !challenge.is_empty() && !valid_challenge(challenge) {
        return fail("invalid_request", "code_challenge is malformed");
    }
    if client.is_public() && challenge.is_empty() {
        return fail("invalid_request", "public clients must use PKCE with S256");
    }
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let areq = AuthRequest {
        client_id: client_id.to_string(),
        redirect_uri: redirect_uri.to_string(),
        state: opt(state),
        nonce: opt(param("nonce")),
        scope,
        code_challenge: opt(challenge),
        exp: now() + 3600,
        mfa: param("acr_values")
            .split_ascii_whitespace()
            .any(|v| MFA_ACR.contains(&v)),
    };
    if !prompts.contains(&"login")
        && let Some((user, auth_time)) = pool.session_user(ready, req).await
    {
        let fresh = match max_age {
            None => true,
            Some(0) => false,
            Some(m) => now().saturating_sub(auth_time) <= m,
        };
        let amr = crate::pool::mfa::session_amr(ready, req).await;
        // A session from before `mfa = "required"` (password only) does not answer for it.
        let second_factor = !areq.mfa || amr.iter().any(|a| a == "mfa");
        if fresh && second_factor && crate::pool::mfa::session_suffices(pool, &amr) {
            return issue_code(pool, ready, req, &areq, &user, auth_time, &amr, Vec::new()).await;
        }
    }
    if prompts.contains(&"none") {
        return fail("login_required", "the user is not signed in");
    }
    let mut to = format!(
        "{}/login?req={}",
        pool.base,
        super::super::pages::login::enc(&pool.seal_request(&areq))
    );
    let hint = param("login_hint");
    if !hint.is_empty() {
        to.push_str(&format!(
            "&username={}",
            super::super::pages::login::enc(hint)
        ));
    }
    redirect(&to, &[])
}

/// Issues a single-use code (lifetime `pool.tokens.code`) and sends the browser back. The
/// token family it starts remembers `amr`, which every ID token of the family carries.
#[allow(clippy::too_many_arguments)]
pub async fn issue_code(
    pool: &Pool,
    ready: &Ready,
    req: &Req<'_>,
    a: &AuthRequest,
    user: &User,
    auth_time: i64,
    amr: &[String],
    cookies: Vec<String>,
) -> Response<Body> {
    let code = crate::session::keyring::hex(&{
        let mut b = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
            .expect("system RNG available");
        b
    });
    let t = now();
    let stored = StoredCode {
        family: super::super::store::sessions::new_family(
            super::super::pages::session_id(req, &cookies)
                .map(super::super::store::sessions::sid_of_session)
                .as_deref(),
        ),
        client_id: a.client_id.clone(),
        redirect_uri: a.redirect_uri.clone(),
        sub: user.sub.clone(),
        scope: a.scope.clone(),
        nonce: a.nonce.clone(),
        code_challenge: a.code_challenge.clone(),
        auth_time,
        expires_at: t + pool.cfg.tokens.code.as_secs() as i64,
    };
    let inserted = match ready.store.insert_code(&code, &stored, t).await {
        Ok(()) => ready.store.set_family_amr(&stored.family, amr).await,
        Err(e) => Err(e),
    };
    if let Err(e) = inserted {
        tracing::error!(error = %e, request_id = req.rid, "cannot store an authorization code");
        return pool.pages.message(
            pool,
            req,
            StatusCode::SERVICE_UNAVAILABLE,
            "error_title",
            "unavailable",
        );
    }
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = &a.state {
        params.push(("state", s));
    }
    params.push(("iss", pool.issuer.as_str()));
    redirect(&to_client(&a.redirect_uri, &params), &cookies)
}
