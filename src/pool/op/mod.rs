//! The OpenID Provider endpoints under the issuer: discovery, JWKS, authorize, token, userinfo
//! and end-session (OIDC Core 1.0, Discovery 1.0, RP-Initiated Logout 1.0, RFC 6749, RFC 7636).
//! Tokens are RS256 (default) or ES256 JWTs; claims include `email_verified` (boolean), `groups`,
//! `cognito:groups` and `cognito:username`, as Cognito's do.

mod authorize;
mod session;
mod token;

pub use authorize::{authorize, issue_code};
pub use session::{end_session, userinfo};
pub use token::token;

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value, json};

use super::store::User;
use super::{Pool, Ready};
use crate::http::body::{self, Body};

pub fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(body::full(v.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

pub fn discovery(pool: &Pool) -> Response<Body> {
    let i = &pool.issuer;
    let doc = json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "userinfo_endpoint": format!("{i}/userinfo"),
        "jwks_uri": format!("{i}/jwks.json"),
        "end_session_endpoint": format!("{i}/logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [pool.cfg.signing_alg.name()],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "email", "profile", "phone", "offline_access"],
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "email", "email_verified", "phone_number",
            "phone_number_verified", "name", "given_name", "family_name", "preferred_username", "groups",
            "cognito:groups", "cognito:username", "amr", "sid"
        ],
        "authorization_response_iss_parameter_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "ui_locales_supported": ["en", "ja"],
    });
    let mut r = json_response(StatusCode::OK, &doc);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

pub fn jwks(ready: &Ready) -> Response<Body> {
    let mut r = json_response(StatusCode::OK, &ready.keys.jwks());
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// The user's claims as the ID token and userinfo carry them.
pub fn user_claims(user: &User) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("sub".into(), Value::String(user.sub.clone()));
    for (k, v) in &user.attributes {
        c.insert(k.clone(), v.clone());
    }
    if c.contains_key("email") && !c.contains_key("email_verified") {
        c.insert("email_verified".into(), Value::Bool(false));
    }
    c.entry("preferred_username")
        .or_insert_with(|| Value::String(user.username.clone()));
    c.insert(
        "cognito:username".into(),
        Value::String(user.username.clone()),
    );
    let groups = Value::Array(user.groups.iter().cloned().map(Value::String).collect());
    c.insert("cognito:groups".into(), groups.clone());
    c.insert("groups".into(), groups);
    c
}

/// What a token response is issued for.
pub struct Grant<'a> {
    pub client_id: &'a str,
    pub scope: &'a str,
    /// The token family (from the authorization code); `origin_jti` of access tokens.
    pub family: &'a str,
    pub auth_time: i64,
    /// Only on the code grant (OIDC Core §12.2: refreshed ID tokens carry no nonce).
    pub nonce: Option<&'a str>,
    pub now: i64,
    /// How the user signed in (RFC 8176), e.g. `["pwd", "otp", "mfa"]`.
    pub amr: &'a [String],
}

/// Builds and signs the ID token and the access token (with `origin_jti` = the family).
pub fn mint(pool: &Pool, ready: &Ready, user: &User, g: &Grant<'_>) -> (String, String) {
    let (client_id, scope, family, auth_time, nonce, now) =
        (g.client_id, g.scope, g.family, g.auth_time, g.nonce, g.now);
    let mut id = user_claims(user);
    id.insert("iss".into(), json!(pool.issuer));
    id.insert("aud".into(), json!(client_id));
    id.insert("iat".into(), json!(now));
    id.insert(
        "exp".into(),
        json!(now + pool.cfg.tokens.id.as_secs() as i64),
    );
    id.insert("auth_time".into(), json!(auth_time));
    id.insert("token_use".into(), json!("id"));
    id.insert("amr".into(), json!(g.amr));
    if let Some(n) = nonce {
        id.insert("nonce".into(), json!(n));
    }
    // Back-Channel Logout 1.0 §2.1: the pool session the tokens were issued in.
    if let Some(sid) = super::store::sessions::sid_of_family(family) {
        id.insert("sid".into(), json!(sid));
    }
    let access = json!({
        "iss": pool.issuer,
        "sub": user.sub,
        "client_id": client_id,
        "scope": scope,
        "token_use": "access",
        "username": user.username,
        "cognito:groups": user.groups,
        "auth_time": auth_time,
        "iat": now,
        "exp": now + pool.cfg.tokens.access.as_secs() as i64,
        "jti": uuid::Uuid::new_v4().to_string(),
        "origin_jti": family,
    });
    let access = ready.keys.sign(&access);
    // OIDC Core 3.1.3.6: binds the ID token to the access token issued with it.
    id.insert("at_hash".into(), json!(super::jwt::left_half_hash(&access)));
    (ready.keys.sign(&Value::Object(id)), access)
}
