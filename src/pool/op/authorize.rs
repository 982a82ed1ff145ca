//! `GET {issuer}/authorize`: the authorization-code flow only. An unknown client or a
//! redirect URI that is not registered *exactly* gets an error page and never a redirect
//! (RFC 6749 §4.1.2.1 — an open redirector otherwise); every other error is returned to the
//! client's redirect URI. Public clients must send a PKCE S256 challenge (RFC 7636, BCP §2.1.1).

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

fn valid_challenge(c: &str) -> bool {
    (43..=128).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

pub async fn authorize(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    let client_id = req.param("client_id");
    let Some(client) = pool.clients.get(client_id) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "invalid_request: unknown client_id\n",
        );
    };
    let redirect_uri = req.param("redirect_uri");
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
    let state = req.param("state");
    if req.param("response_type") != "code" {
        return client_error(
            pool,
            redirect_uri,
            state,
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    let scope = req.param("scope");
    if !scope.split(' ').any(|s| s == "openid") {
        return client_error(
            pool,
            redirect_uri,
            state,
            "invalid_scope",
            "the openid scope is required",
        );
    }
    let challenge = req.param("code_challenge");
    let method = req.param("code_challenge_method");
    if !challenge.is_empty() && method != "S256" {
        return client_error(
            pool,
            redirect_uri,
            state,
            "invalid_request",
            "code_challenge_method must be S256",
        );
    }
    if challenge.is_empty() && !method.is_empty() {
        return client_error(
            pool,
            redirect_uri,
            state,
            "invalid_request",
            "code_challenge is missing",
        );
    }
    if !challenge.is_empty() && !valid_challenge(challenge) {
        return client_error(
            pool,
            redirect_uri,
            state,
            "invalid_request",
            "code_challenge is malformed",
        );
    }
    if client.is_public() && challenge.is_empty() {
        return client_error(
            pool,
            redirect_uri,
            state,
            "invalid_request",
            "public clients must use PKCE with S256",
        );
    }
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let areq = AuthRequest {
        client_id: client_id.to_string(),
        redirect_uri: redirect_uri.to_string(),
        state: opt(state),
        nonce: opt(req.param("nonce")),
        scope: scope.to_string(),
        code_challenge: opt(challenge),
        exp: now() + 3600,
    };
    let prompt = req.param("prompt");
    if !prompt.split(' ').any(|p| p == "login")
        && let Some((user, auth_time)) = pool.session_user(ready, req).await
    {
        let amr = crate::pool::mfa::session_amr(ready, req).await;
        // A session from before `mfa = "required"` (password only) does not answer for it.
        if crate::pool::mfa::session_suffices(pool, &amr) {
            return issue_code(pool, ready, req, &areq, &user, auth_time, &amr, Vec::new()).await;
        }
    }
    if prompt.split(' ').any(|p| p == "none") {
        return client_error(
            pool,
            redirect_uri,
            state,
            "login_required",
            "the user is not signed in",
        );
    }
    let mut to = format!(
        "{}/login?req={}",
        pool.base,
        super::super::pages::login::enc(&pool.seal_request(&areq))
    );
    let hint = req.param("login_hint");
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
