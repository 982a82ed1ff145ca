//! Bearer access tokens on `accept_bearer` routes (SPEC §12, RFC 6750). A request that carries
//! `Authorization: Bearer <JWT>` on such a route is decided by the token alone: the signature
//! against the JWKS of the route's provider whose issuer the token names (asymmetric algorithms
//! only, through [`OidcProvider::verify_jwt`]), `exp`/`nbf` with 60 s of leeway, `aud` one of
//! `bearer_audience` (or, without `aud`, `client_id` one of them, as Cognito's access tokens),
//! every `allow_scopes` granted, then the route's other `allow_*` rules on the token's claims.
//!
//! A token whose signature verified is cached per worker by its exact text until its `exp`, so
//! a repeated token costs a lookup; the claim checks, which depend on the route and the clock,
//! run on every request. Tokens are never logged.
//!
//! [`OidcProvider::verify_jwt`]: super::oidc::OidcProvider::verify_jwt

use std::sync::Arc;

use http::HeaderMap;
use serde_json::{Map, Value};

use super::backchannel::{aud_contains, unverified_claims};
use super::oidc::OidcError;
use super::{Auth, authorize};
use crate::config::{BearerRule, RouteConfig};
use crate::identity_headers::Identity;
use crate::session::Session;
use crate::session::cache::SessionCache;
use crate::session::principal::Principal;
use crate::worker::PerWorker;

/// Clock skew tolerated on `exp` and `nbf` (SPEC §12).
pub const LEEWAY_SECS: i64 = 60;
/// Verified tokens kept in memory, over all workers.
const CACHE_CAPACITY: usize = 16_384;
/// JWS algorithms a bearer token may use: asymmetric only (`none` and HMAC never).
const ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// A token whose signature and issuer were verified: its claims, made into a principal once.
pub struct Verified {
    pub principal: Arc<Principal>,
    exp: i64,
}

/// Why a bearer token was refused.
pub enum Refused {
    /// 401 `invalid_token`: the reason names the check that failed (never the token).
    Invalid(&'static str),
    /// 403 `insufficient_scope`: the scopes the route requires.
    Scope(String),
    /// 403: valid, but the route's other `allow_*` rules say no.
    Forbidden(String, Arc<Principal>),
}

/// Per-worker caches of verified tokens.
pub struct BearerCache(PerWorker<SessionCache<Verified>>);

impl BearerCache {
    pub fn new(workers: usize) -> BearerCache {
        let each = (CACHE_CAPACITY / workers.max(1)).max(256);
        BearerCache(PerWorker::new(workers, || SessionCache::new(each)))
    }
}

/// The token of an `Authorization: Bearer` header (scheme case-insensitive, RFC 7235).
pub fn token_of(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The JOSE header's `alg`, when the token is three base64url parts with a JSON header.
fn alg_of(token: &str) -> Option<String> {
    use base64::Engine;
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .ok()?;
    let header: Value = serde_json::from_slice(&bytes).ok()?;
    header.get("alg")?.as_str().map(str::to_string)
}

/// Granted scopes: `scope` as a space-separated string, or `scp` as an array (or string).
fn granted_scopes(claims: &Map<String, Value>) -> Vec<&str> {
    fn split(v: &Value) -> Vec<&str> {
        match v {
            Value::String(s) => s.split_whitespace().collect(),
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }
    let mut out = claims.get("scope").map(split).unwrap_or_default();
    out.extend(claims.get("scp").map(split).unwrap_or_default());
    out
}

/// `aud` contains one of the audiences; a token without `aud` is judged by `client_id`.
fn audience_ok(claims: &Map<String, Value>, audience: &[String]) -> bool {
    if claims.contains_key("aud") {
        audience.iter().any(|a| aud_contains(claims, a))
    } else {
        let client_id = claims.get("client_id").and_then(Value::as_str);
        client_id.is_some_and(|c| audience.iter().any(|a| a == c))
    }
}

/// `exp` present and not passed, `nbf` (if any) reached, each with the leeway.
fn times_ok(claims: &Map<String, Value>, now: i64) -> Result<i64, Refused> {
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(Refused::Invalid("exp is missing"))?;
    if now > exp + LEEWAY_SECS {
        return Err(Refused::Invalid("the token has expired"));
    }
    match claims.get("nbf") {
        None => {}
        Some(nbf) => match nbf.as_i64() {
            Some(nbf) if nbf <= now + LEEWAY_SECS => {}
            Some(_) => return Err(Refused::Invalid("the token is not valid yet (nbf)")),
            None => return Err(Refused::Invalid("nbf is not a number")),
        },
    }
    Ok(exp)
}

impl Auth {
    /// Decides a bearer token on `route` (whose `accept_bearer` rule is `rule`).
    pub(super) async fn bearer(
        &self,
        route: &RouteConfig,
        rule: &BearerRule,
        token: &str,
        now: i64,
    ) -> Result<Arc<Principal>, Refused> {
        let verified = self.verified_token(route, token, now).await?;
        let claims = &verified.principal.session.claims;
        times_ok(claims, now)?;
        if !audience_ok(claims, &rule.audience) {
            return Err(Refused::Invalid(
                "the token is not issued for this API (aud)",
            ));
        }
        let granted = granted_scopes(claims);
        if !rule.scopes.iter().all(|s| granted.contains(&s.as_str())) {
            return Err(Refused::Scope(rule.scopes.join(" ")));
        }
        let p = &verified.principal;
        let groups_claim = &self.providers[p.provider].cfg.groups_claim;
        authorize::check(&route.authorization, &p.session, groups_claim)
            .map_err(|required| Refused::Forbidden(required, p.clone()))?;
        Ok(p.clone())
    }

    /// The token with its signature and issuer verified: from this worker's cache, or checked
    /// now against the keys of the route's provider that issued it.
    async fn verified_token(
        &self,
        route: &RouteConfig,
        token: &str,
        now: i64,
    ) -> Result<Arc<Verified>, Refused> {
        let cache = self.bearer_cache.0.get();
        if let Some(v) = cache.get(token) {
            if route.providers.contains(&v.principal.provider) && now <= v.exp + LEEWAY_SECS {
                return Ok(v);
            }
            if now > v.exp + LEEWAY_SECS {
                cache.remove(token);
            }
        }
        let alg = alg_of(token).ok_or(Refused::Invalid("not a signed JWT"))?;
        if !ALGS.contains(&alg.as_str()) {
            return Err(Refused::Invalid(
                "the token's algorithm is not accepted (asymmetric signatures only)",
            ));
        }
        let claimed = unverified_claims(token).ok_or(Refused::Invalid("unreadable claims"))?;
        let iss = claimed.get("iss").and_then(Value::as_str).unwrap_or("");
        let index = route
            .providers
            .iter()
            .copied()
            .find(|i| self.providers[*i].cfg.issuer == iss)
            .ok_or(Refused::Invalid(
                "the issuer (iss) is not this route's provider",
            ))?;
        // Expired tokens are refused before any key is fetched for them.
        times_ok(&claimed, now)?;
        let provider = &self.providers[index];
        // Fails closed: keys that cannot be fetched verify nothing (401, logged as a warning).
        let claims = provider.verify_jwt(token).await.map_err(|e| match e {
            OidcError::Unreachable(_) | OidcError::InvalidResponse(_) => {
                tracing::warn!(provider = provider.name(), error = %e, "bearer token not checked: the provider's keys could not be fetched");
                Refused::Invalid("the issuer's keys could not be fetched")
            }
            _ => {
                tracing::info!(provider = provider.name(), error = %e, "bearer token signature not verified");
                Refused::Invalid("the signature does not verify with the issuer's keys")
            }
        })?;
        if claims.get("iss").and_then(Value::as_str) != Some(provider.cfg.issuer.as_str()) {
            return Err(Refused::Invalid(
                "the issuer (iss) is not this route's provider",
            ));
        }
        let exp = times_ok(&claims, now)?;
        // An ID token is not an access token (Cognito and the pool mark theirs).
        if claims.get("token_use").and_then(Value::as_str) == Some("id") {
            return Err(Refused::Invalid("an ID token is not an access token"));
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(Refused::Invalid("sub is missing"))?
            .to_string();
        let session = Session {
            sid: String::new(),
            sub,
            provider: provider.cfg.name.clone(),
            access_token: Some(token.to_string()),
            access_expires_at: Some(exp),
            refresh_token: None,
            id_token: None,
            created_at: claims.get("iat").and_then(Value::as_i64).unwrap_or(now),
            expires_at: exp,
            created_ms: 0,
            idp_sid: None,
            claims,
        };
        let c = &provider.cfg;
        let identity = Identity::new(&session, &c.groups_claim, &c.issuer, &c.client_id);
        let v = Arc::new(Verified {
            principal: Arc::new(Principal::new(session, identity, index)),
            exp,
        });
        tracing::debug!(
            provider = provider.name(),
            "bearer token signature verified; cached until its exp"
        );
        cache.insert(token, v.clone());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn scopes_audiences_and_times() {
        let c = map(json!({"scope": "orders/read  orders/write", "scp": ["x"]}));
        assert_eq!(granted_scopes(&c), ["orders/read", "orders/write", "x"]);
        let aud = vec!["api://orders".to_string()];
        assert!(audience_ok(&map(json!({"aud": "api://orders"})), &aud));
        assert!(audience_ok(
            &map(json!({"aud": ["a", "api://orders"]})),
            &aud
        ));
        assert!(!audience_ok(
            &map(json!({"aud": "api://other", "client_id": "api://orders"})),
            &aud
        ));
        assert!(audience_ok(
            &map(json!({"client_id": "api://orders"})),
            &aud
        ));
        assert!(!audience_ok(&map(json!({})), &aud));
        let now = 1_000_000;
        assert!(times_ok(&map(json!({"exp": now - 59})), now).is_ok());
        assert!(times_ok(&map(json!({"exp": now - 61})), now).is_err());
        assert!(times_ok(&map(json!({"exp": now + 10, "nbf": now + 59})), now).is_ok());
        assert!(times_ok(&map(json!({"exp": now + 100, "nbf": now + 61})), now).is_err());
        assert!(times_ok(&map(json!({"nbf": now})), now).is_err());
    }

    #[test]
    fn bearer_header_and_alg() {
        let mut h = HeaderMap::new();
        assert!(token_of(&h).is_none());
        h.insert(http::header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(token_of(&h).is_none());
        h.insert(http::header::AUTHORIZATION, "bearer a.b.c".parse().unwrap());
        assert_eq!(token_of(&h), Some("a.b.c"));
        // {"alg":"none"}
        assert_eq!(alg_of("eyJhbGciOiJub25lIn0.e30.").as_deref(), Some("none"));
        assert!(alg_of("eyJhbGciOiJub25lIn0.e30").is_none());
    }
}
