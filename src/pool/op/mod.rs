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
        "scopes_supported": super::clients::USER_SCOPES,
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "email", "email_verified", "phone_number",
            "phone_number_verified", "address", "name", "given_name", "family_name", "middle_name", "nickname",
            "preferred_username", "profile", "picture", "website", "gender", "birthdate", "zoneinfo", "locale",
            "groups", "cognito:groups", "cognito:username", "amr", "sid", "at_hash"
        ],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "require_request_uri_registration": false,
        "prompt_values_supported": ["none", "login"],
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

pub async fn jwks(ready: &Ready) -> Response<Body> {
    ready.keys.refresh(&ready.store).await;
    let mut r = json_response(StatusCode::OK, &ready.keys.jwks());
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// The scope that releases a user attribute (OIDC Core 5.4): `email`, `phone` and `address`
/// for theirs; `profile` for every other standard attribute and for `custom:*` attributes.
fn scope_of_attribute(name: &str) -> &'static str {
    match name {
        "email" | "email_verified" => "email",
        "phone_number" | "phone_number_verified" => "phone",
        "address" => "address",
        _ => "profile",
    }
}

/// OIDC Core 5.1.1: `address` is a JSON object. A stored plain string is its `formatted`
/// member; a stored object keeps only the members 5.1.1 defines.
fn address_claim(v: &Value) -> Value {
    const MEMBERS: [&str; 6] = [
        "formatted",
        "street_address",
        "locality",
        "region",
        "postal_code",
        "country",
    ];
    let obj = match v {
        Value::Object(m) => Some(m.clone()),
        Value::String(s) if s.trim_start().starts_with('{') => {
            serde_json::from_str::<Map<String, Value>>(s).ok()
        }
        _ => None,
    };
    match (obj, v) {
        (Some(m), _) => Value::Object(
            m.into_iter()
                .filter(|(k, v)| MEMBERS.contains(&k.as_str()) && v.is_string())
                .collect(),
        ),
        (None, Value::String(s)) => json!({ "formatted": s }),
        (None, other) => json!({ "formatted": other.to_string() }),
    }
}

/// The user's claims as the ID token and userinfo carry them for `scope` (OIDC Core 5.4):
/// `sub` and the groups always (`groups`, `cognito:groups`, `cognito:username`: authorization
/// data the access token carries too, as Cognito's do); each attribute only with its scope.
pub fn user_claims(user: &User, scope: &str) -> Map<String, Value> {
    claims_for(
        &user.sub,
        &user.username,
        &user.attributes,
        &user.groups,
        scope,
    )
}

fn claims_for(
    sub: &str,
    username: &str,
    attributes: &Map<String, Value>,
    user_groups: &[String],
    scope: &str,
) -> Map<String, Value> {
    let scopes: Vec<&str> = scope.split_ascii_whitespace().collect();
    let mut c = Map::new();
    c.insert("sub".into(), Value::String(sub.to_string()));
    for (k, v) in attributes {
        if !scopes.contains(&scope_of_attribute(k)) {
            continue;
        }
        let v = if k == "address" {
            address_claim(v)
        } else {
            v.clone()
        };
        c.insert(k.clone(), v);
    }
    if c.contains_key("email") && !c.contains_key("email_verified") {
        c.insert("email_verified".into(), Value::Bool(false));
    }
    if c.contains_key("phone_number") && !c.contains_key("phone_number_verified") {
        c.insert("phone_number_verified".into(), Value::Bool(false));
    }
    if scopes.contains(&"profile") {
        c.entry("preferred_username")
            .or_insert_with(|| Value::String(username.to_string()));
    }
    c.insert(
        "cognito:username".into(),
        Value::String(username.to_string()),
    );
    let groups = Value::Array(user_groups.iter().cloned().map(Value::String).collect());
    c.insert("cognito:groups".into(), groups.clone());
    c.insert("groups".into(), groups);
    c
}

/// What a token response is issued for.
pub struct Grant<'a> {
    pub client_id: &'a str,
    /// The scope of the access token (and the claims released); already checked against the
    /// client's allowed scopes.
    pub scope: &'a str,
    /// The scope the refresh token keeps (RFC 6749 §6: a narrowed refresh keeps the grant).
    pub refresh_scope: &'a str,
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
    let mut id = user_claims(user, scope);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes() -> Map<String, Value> {
        let mut attributes = Map::new();
        for (k, v) in [
            ("email", json!("a@example.com")),
            ("email_verified", json!(true)),
            ("name", json!("A")),
            ("phone_number", json!("+819012345678")),
            ("address", json!("1 Rabbit Hole")),
            ("custom:team", json!("x")),
        ] {
            attributes.insert(k.into(), v);
        }
        attributes
    }

    #[test]
    fn claims_are_released_per_scope() {
        let a = attributes();
        let groups = vec!["g".to_string()];
        let claims = |scope: &str| claims_for("s", "alice", &a, &groups, scope);
        let keys = |scope: &str| {
            let mut k: Vec<String> = claims(scope).keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(
            keys("openid"),
            ["cognito:groups", "cognito:username", "groups", "sub"]
        );
        assert!(keys("openid email").contains(&"email_verified".to_string()));
        assert!(!keys("openid email").contains(&"name".to_string()));
        let p = keys("openid profile");
        assert!(p.contains(&"name".into()) && p.contains(&"custom:team".into()));
        assert!(p.contains(&"preferred_username".into()) && !p.contains(&"email".into()));
        let ph = claims("openid phone");
        assert_eq!(ph["phone_number_verified"], json!(false));
        assert_eq!(
            claims("openid address")["address"],
            json!({"formatted": "1 Rabbit Hole"})
        );
        assert_eq!(
            address_claim(&json!(r#"{"locality":"Oxford","x":"y","country":"UK"}"#)),
            json!({"locality": "Oxford", "country": "UK"})
        );
    }
}
