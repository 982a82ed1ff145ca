//! `userinfo` (bearer access token: our signature, not expired, its family not revoked, the
//! user still enabled) and end-session (RP-Initiated Logout 1.0: ends the pool's browser
//! session, then returns to a registered post-logout URI or shows the signed-out page).

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::Value;

use super::super::pages::{Page, SESSION_COOKIE, cookie_value, redirect};
use super::super::store::UserStatus;
use super::super::{Pool, Ready, Req, now};
use super::{json_response, user_claims};
use crate::http::body::Body;

fn unauthorized(description: &'static str) -> Response<Body> {
    let mut r = json_response(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({"error": "invalid_token", "error_description": description}),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"portcullis-pool\", error=\"invalid_token\""),
    );
    r
}

pub async fn userinfo(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    let header_token = req
        .parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) =
        header_token.or_else(|| Some(req.field("access_token")).filter(|t| !t.is_empty()))
    else {
        return unauthorized("missing access token");
    };
    let Some(claims) = ready.keys.verify_fresh(&ready.store, token).await else {
        return unauthorized("invalid access token");
    };
    let valid = claims.get("token_use").and_then(Value::as_str) == Some("access")
        && claims.get("iss").and_then(Value::as_str) == Some(pool.issuer.as_str())
        && claims
            .get("exp")
            .and_then(Value::as_i64)
            .is_some_and(|e| e > now());
    if !valid {
        return unauthorized("access token expired or not an access token");
    }
    let (Some(family), Some(sub)) = (
        claims.get("origin_jti").and_then(Value::as_str),
        claims.get("sub").and_then(Value::as_str),
    ) else {
        return unauthorized("invalid access token");
    };
    match ready.store.family_active(family).await {
        Ok(true) => {}
        Ok(false) => return unauthorized("access token revoked"),
        Err(e) => {
            tracing::error!(error = %e, request_id = req.rid, "pool database error at userinfo");
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"error": "temporarily_unavailable"}),
            );
        }
    }
    match ready.store.user_by_sub(sub).await {
        Ok(Some(u)) if u.status == UserStatus::Confirmed => {
            // OIDC Core 5.4: the claims of the scopes the access token was granted.
            let scope = claims.get("scope").and_then(Value::as_str).unwrap_or("");
            json_response(StatusCode::OK, &Value::Object(user_claims(&u, scope)))
        }
        Ok(_) => unauthorized("the user cannot sign in"),
        Err(e) => {
            tracing::error!(error = %e, request_id = req.rid, "pool database error at userinfo");
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"error": "temporarily_unavailable"}),
            )
        }
    }
}

pub async fn end_session(pool: &Pool, ready: &Ready, req: &Req<'_>) -> Response<Body> {
    if let Some(id) = cookie_value(req, SESSION_COOKIE)
        && let Err(e) = ready.store.delete_web_session(id).await
    {
        tracing::error!(error = %e, request_id = req.rid, "cannot delete a pool session");
    }
    let cookies = vec![pool.cookie(SESSION_COOKIE, "", 0)];
    // The client: named, or the audience of our own (possibly expired) ID token.
    let hint_aud = ready
        .keys
        .verify_fresh(&ready.store, req.value("id_token_hint"))
        .await
        .filter(|c| c.get("iss").and_then(Value::as_str) == Some(pool.issuer.as_str()))
        .and_then(|c| c.get("aud").and_then(Value::as_str).map(str::to_string));
    let client_id = match req.value("client_id") {
        "" => hint_aud.unwrap_or_default(),
        c => c.to_string(),
    };
    // `logout_uri` is Cognito's name for the same parameter.
    let target = match req.value("post_logout_redirect_uri") {
        "" => req.value("logout_uri"),
        t => t,
    };
    if let Some(client) = pool.clients.get(&client_id)
        && !target.is_empty()
        && client.post_logout_allowed(target)
    {
        let mut to = target.to_string();
        let state = req.value("state");
        if !state.is_empty()
            && let Ok(mut u) = url::Url::parse(target)
        {
            u.query_pairs_mut().append_pair("state", state);
            to = u.to_string();
        }
        tracing::info!(
            request_id = req.rid,
            "pool.event" = "sign_out",
            "signed out of the pool"
        );
        return redirect(&to, &cookies);
    }
    let page = Page {
        message: super::super::i18n::t(req.lang, "signed_out").to_string(),
        cookies,
        ..Page::default()
    };
    pool.pages.render(
        pool,
        req,
        StatusCode::OK,
        "message.html",
        "signed_out_title",
        page,
    )
}
