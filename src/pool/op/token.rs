//! `POST {issuer}/token`: `authorization_code`, `refresh_token` and (for machine clients,
//! docs/src/proxy/bearer-tokens.md) `client_credentials` grants, each only for clients whose `grant_types` name it. Client
//! authentication by `client_secret_basic` or `client_secret_post` (exactly one), or none for
//! public clients, which must prove PKCE. A replayed code revokes its whole token family
//! (RFC 6749 §4.1.2); refresh tokens rotate and a replayed one revokes the family
//! (OAuth 2.0 Security BCP §4.14.2). Answers are JSON with `Cache-Control: no-store`.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use super::super::clients::{Client, granted};
use super::super::config::GrantType;
use super::super::store::User;
use super::super::store::{RefreshUse, UserStatus};
use super::super::{Pool, Ready, Req, now};
use super::{Grant, json_response, mint};
use crate::http::body::Body;

fn error(status: StatusCode, code: &str, description: &str) -> Response<Body> {
    let mut r = json_response(
        status,
        &json!({"error": code, "error_description": description}),
    );
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"portcullis-pool\""),
        );
    }
    r
}

fn invalid_grant(description: &str) -> Response<Body> {
    error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

/// RFC 6749 §5.2 `invalid_scope`; the refused scope is logged (sanitised), not echoed.
fn invalid_scope(req: &Req<'_>, client: &Client, bad: &str) -> Response<Body> {
    tracing::info!(request_id = req.rid, client_id = %client.client_id, scope = %crate::error::sanitize_code(bad), "pool.event" = "invalid_scope", "token: scope refused");
    error(
        StatusCode::BAD_REQUEST,
        "invalid_scope",
        "a requested scope is not one this client may be granted",
    )
}

/// RFC 6749 §2.3.1: id and secret are form-urlencoded inside the Basic credentials.
fn basic_credentials(req: &Req<'_>) -> Option<Result<(String, String), ()>> {
    let h = req
        .parts
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let b64 = h
        .strip_prefix("Basic ")
        .or_else(|| h.strip_prefix("basic "))?;
    let decoded = match STANDARD
        .decode(b64.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    {
        Some(d) => d,
        None => return Some(Err(())),
    };
    let Some((id, secret)) = decoded.split_once(':') else {
        return Some(Err(()));
    };
    let dec = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
    };
    match (dec(id), dec(secret)) {
        (Ok(i), Ok(s)) => Some(Ok((i, s))),
        _ => Some(Err(())),
    }
}

/// Authenticates the client; `Err` is the response to send.
fn authenticate<'p>(pool: &'p Pool, req: &Req<'_>) -> Result<&'p Client, Box<Response<Body>>> {
    let bad = || {
        Box::new(error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        ))
    };
    let form_secret = req.field("client_secret");
    let (client_id, secret) = match basic_credentials(req) {
        Some(Ok((id, s))) => {
            if !form_secret.is_empty() {
                return Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "use one client authentication method",
                )));
            }
            if !req.field("client_id").is_empty() && req.field("client_id") != id {
                return Err(bad());
            }
            (id, Some(s))
        }
        Some(Err(())) => return Err(bad()),
        None => (
            req.field("client_id").to_string(),
            (!form_secret.is_empty()).then(|| form_secret.to_string()),
        ),
    };
    let client = pool.clients.get(&client_id).ok_or_else(bad)?;
    match (&secret, client.is_public()) {
        (Some(s), false) if client.secret_matches(s) => Ok(client),
        (None, true) => Ok(client),
        _ => Err(bad()),
    }
}

fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    if !(43..=128).contains(&verifier.len()) {
        return false;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    let computed = URL_SAFE_NO_PAD.encode(digest.as_ref());
    crate::pool::ct_eq(computed.as_bytes(), challenge.as_bytes())
}

fn db_error(req: &Req<'_>, e: &dyn std::fmt::Display) -> Response<Body> {
    tracing::error!(error = %e, request_id = req.rid, "pool database error at the token endpoint");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "try again later",
    )
}

pub async fn token(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    let client = match authenticate(pool, req) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    // A rotation made elsewhere reaches this replica before it signs.
    ready.keys.refresh(&ready.store).await;
    let grant_type = req.field("grant_type");
    if let Some(g) = GrantType::parse(grant_type)
        && !client.may_use(g)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "this client may not use this grant_type",
        );
    }
    match grant_type {
        "authorization_code" => code_grant(pool, ready, req, client).await,
        "refresh_token" => refresh_grant(pool, ready, req, client).await,
        "client_credentials" => client_credentials_grant(pool, ready, req, client),
        "" => error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is required",
        ),
        _ => error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only authorization_code, refresh_token and client_credentials",
        ),
    }
}

/// RFC 6749 §4.4: a confidential client's own access token. `scope` is optional (all the
/// client's scopes when absent); each requested scope must be one of the client's `scopes`.
/// A JWT access token with `aud` = the client's `audience`; no refresh token, no ID token.
fn client_credentials_grant(
    pool: &Pool,
    ready: &Ready,
    req: &Req<'_>,
    client: &Client,
) -> Response<Body> {
    let Some(audience) = client.audience.as_deref().filter(|_| !client.is_public()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "this client may not use this grant_type",
        );
    };
    let requested = match granted(req.field("scope"), |s| client.machine_scope_allowed(s)) {
        Ok(list) => list,
        Err(bad) => return invalid_scope(req, client, bad),
    };
    let scope = if requested.is_empty() {
        client.scopes.join(" ")
    } else {
        requested.join(" ")
    };
    let t = now();
    let lifetime = pool.cfg.tokens.access.as_secs();
    let access = ready.keys.sign(&json!({
        "iss": pool.issuer,
        "sub": client.client_id,
        "client_id": client.client_id,
        "aud": audience,
        "scope": scope,
        "token_use": "access",
        "iat": t,
        "exp": t + lifetime as i64,
        "jti": uuid::Uuid::new_v4().to_string(),
    }));
    tracing::info!(request_id = req.rid, client_id = %client.client_id, "pool.event" = "client_credentials", "access token issued to a machine client");
    json_response(
        StatusCode::OK,
        &json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": scope,
        }),
    )
}

async fn code_grant(pool: &Pool, ready: &Ready, req: &Req<'_>, client: &Client) -> Response<Body> {
    let store = &ready.store;
    let code = req.field("code");
    let (c, first_use) = match store.take_code(code).await {
        Ok(Some(x)) => x,
        Ok(None) => return invalid_grant("unknown authorization code"),
        Err(e) => return db_error(req, &e),
    };
    if !first_use {
        // A replayed code: whoever holds it may have stolen it, so revoke what it issued.
        if let Err(e) = store.revoke_family(&c.family).await {
            return db_error(req, &e);
        }
        tracing::warn!(request_id = req.rid, client_id = %c.client_id, "pool.event" = "code_replayed", "authorization code reused: its tokens are revoked");
        return invalid_grant("authorization code already used");
    }
    let t = now();
    if c.client_id != client.client_id {
        return invalid_grant("the code was issued to another client");
    }
    if c.expires_at <= t {
        return invalid_grant("authorization code expired");
    }
    if req.field("redirect_uri") != c.redirect_uri {
        return invalid_grant("redirect_uri differs from the authorization request");
    }
    let verifier = req.field("code_verifier");
    match &c.code_challenge {
        Some(ch) if !pkce_matches(verifier, ch) => {
            return invalid_grant("PKCE verification failed");
        }
        Some(_) => {}
        // A verifier for a code issued without a challenge is a downgrade attempt (BCP §4.8.2).
        None if !verifier.is_empty() => {
            return invalid_grant("code_verifier sent but no code_challenge was");
        }
        None if client.is_public() => return invalid_grant("PKCE is required"),
        None => {}
    }
    // The scope was checked at authorize; checked again against the client's list as it is
    // now (a code from before a configuration change grants no more than the list allows).
    let scope = match granted(&c.scope, |s| client.user_scope_allowed(s)) {
        Ok(list) => list.join(" "),
        Err(bad) => return invalid_scope(req, client, bad),
    };
    let user = match store.user_by_sub(&c.sub).await {
        Ok(Some(u)) if u.status == UserStatus::Confirmed => u,
        Ok(_) => return invalid_grant("the user cannot sign in"),
        Err(e) => return db_error(req, &e),
    };
    // RFC 8176: how the user signed in, as recorded when the family began.
    let amr = match store.family_amr(&c.family).await {
        Ok(a) => a.unwrap_or_else(|| crate::pool::mfa::amr(crate::pool::mfa::PWD)),
        Err(e) => return db_error(req, &e),
    };
    let grant = Grant {
        amr: &amr,
        client_id: &client.client_id,
        scope: &scope,
        refresh_scope: &scope,
        family: &c.family,
        auth_time: c.auth_time,
        nonce: c.nonce.as_deref(),
        now: t,
    };
    respond(pool, ready, req, &user, &grant).await
}

async fn refresh_grant(
    pool: &Pool,
    ready: &Ready,
    req: &Req<'_>,
    client: &Client,
) -> Response<Body> {
    let store = &ready.store;
    let t = now();
    // RFC 6749 §6: a refresh may ask for less, never for more. Checked before the token is
    // used, so a refused request leaves it valid.
    let allowed_now = |stored: &str| -> Vec<String> {
        stored
            .split_ascii_whitespace()
            .filter(|s| client.user_scope_allowed(s))
            .map(str::to_string)
            .collect()
    };
    match store.refresh_scope(req.field("refresh_token")).await {
        Ok(Some(stored)) => {
            let kept = allowed_now(&stored);
            if let Err(bad) = granted(req.field("scope"), |s| kept.iter().any(|k| k == s)) {
                return invalid_scope(req, client, bad);
            }
        }
        Ok(None) => {}
        Err(e) => return db_error(req, &e),
    }
    let (family, client_id, sub, scope, auth_time) =
        match store.use_refresh(req.field("refresh_token"), t).await {
            Ok(RefreshUse::Fresh {
                family,
                client_id,
                sub,
                scope,
                auth_time,
            }) => (family, client_id, sub, scope, auth_time),
            Ok(RefreshUse::Replayed) => {
                tracing::warn!(
                    request_id = req.rid,
                    "pool.event" = "refresh_replayed",
                    "refresh token reused: its family is revoked"
                );
                return invalid_grant("refresh token already used");
            }
            Ok(RefreshUse::Invalid) => {
                return invalid_grant("refresh token invalid, expired or revoked");
            }
            Err(e) => return db_error(req, &e),
        };
    if client_id != client.client_id {
        return invalid_grant("the refresh token was issued to another client");
    }
    // The grant keeps only what the client may still be granted (a token from before a scope
    // was allowed, or from before scopes were checked, loses the rest). RFC 6749 §6: a refresh
    // may ask for less, never for more.
    let kept = allowed_now(&scope);
    let asked = match granted(req.field("scope"), |s| kept.iter().any(|k| k == s)) {
        Ok(list) => list,
        Err(bad) => return invalid_scope(req, client, bad),
    };
    let refresh_scope = kept.join(" ");
    let scope = if asked.is_empty() {
        refresh_scope.clone()
    } else {
        asked.join(" ")
    };
    let user = match store.user_by_sub(&sub).await {
        Ok(Some(u)) if u.status == UserStatus::Confirmed => u,
        Ok(_) => {
            let _ = store.revoke_family(&family).await;
            return invalid_grant("the user cannot sign in");
        }
        Err(e) => return db_error(req, &e),
    };
    // RFC 8176: how the user signed in, as recorded when the family began.
    let amr = match store.family_amr(&family).await {
        Ok(a) => a.unwrap_or_else(|| crate::pool::mfa::amr(crate::pool::mfa::PWD)),
        Err(e) => return db_error(req, &e),
    };
    let grant = Grant {
        amr: &amr,
        client_id: &client.client_id,
        scope: &scope,
        refresh_scope: &refresh_scope,
        family: &family,
        auth_time,
        nonce: None,
        now: t,
    };
    respond(pool, ready, req, &user, &grant).await
}

async fn respond(
    pool: &Pool,
    ready: &Ready,
    req: &Req<'_>,
    user: &User,
    g: &Grant<'_>,
) -> Response<Body> {
    let (id_token, access_token) = mint(pool, ready, user, g);
    let (family, scope, auth_time, t) = (g.family, g.scope, g.auth_time, g.now);
    let refresh = crate::session::keyring::hex(&{
        let mut b = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
            .expect("system RNG available");
        b
    });
    let expires = t + pool.cfg.tokens.refresh.as_secs() as i64;
    if let Err(e) = ready
        .store
        .insert_refresh(&refresh, family, g.refresh_scope, auth_time, expires)
        .await
    {
        return db_error(req, &e);
    }
    json_response(
        StatusCode::OK,
        &json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": pool.cfg.tokens.access.as_secs(),
            "id_token": id_token,
            "refresh_token": refresh,
            "scope": scope,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        assert!(!pkce_matches(
            "short",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }
}
