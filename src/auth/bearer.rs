//! Bearer access tokens on `accept_bearer` routes (docs/src/proxy/bearer-tokens.md, RFC 6750). A request that carries
//! `Authorization: Bearer <JWT>` on such a route is decided by the token alone: the signature
//! against the JWKS of the route's provider whose issuer the token names (asymmetric algorithms
//! only, through [`OidcProvider::verify_jwt`]), `exp`/`nbf` with 60 s of leeway, `aud` one of
//! `bearer_audience` (or, without `aud`, `client_id` one of them, as Cognito's access tokens),
//! every `allow_scopes` granted, then the route's other `allow_*` rules on the token's claims.
//!
//! Only access tokens are taken (security invariant "a token is used only for what it is"): a
//! JOSE `typ` of `at+jwt` (RFC 9068), or an untyped (`JWT`) token without `nonce`, `at_hash`
//! and `events` whose `token_use`, if any, is `access`. ID tokens — also those of IdPs that
//! set no `token_use` — and logout tokens (`typ: logout+jwt`) are 401 `invalid_token`.
//!
//! Revocation covers bearer tokens as it covers sessions: a token whose user (provider and
//! `sub`) was revoked after its `iat`, or whose IdP session (`sid`; for the built-in pool's
//! tokens, the session named by `origin_jti`) was ended after its `iat`, is refused. The
//! check is in memory and runs again whenever the revocation list's generation moves.
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
use crate::session::revocation::Credential;
use crate::worker::PerWorker;

/// Clock skew tolerated on `exp` and `nbf` (docs/src/proxy/bearer-tokens.md).
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

/// The JOSE `typ` values of a token that may be an access token (compared case-insensitively,
/// with or without the `application/` prefix, RFC 7515 §4.1.9): `at+jwt` says so (RFC 9068);
/// `JWT` or no `typ` leaves it to the claims.
fn typ_allows(typ: Option<&str>) -> Result<bool, Refused> {
    let Some(t) = typ else { return Ok(false) };
    let t = t.to_ascii_lowercase();
    let t = t.strip_prefix("application/").unwrap_or(&t);
    match t {
        "at+jwt" => Ok(true),
        "jwt" => Ok(false),
        _ => Err(Refused::Invalid(
            "not an access token (the JOSE typ names another kind of token)",
        )),
    }
}

/// The claims of something other than an access token: an ID token (`nonce`, `at_hash`,
/// `token_use` other than `access`) or a security event such as a logout token (`events`).
/// A token typed `at+jwt` is judged by `token_use` and `events` only.
fn access_claims_ok(claims: &Map<String, Value>, typed: bool) -> Result<(), Refused> {
    if claims.contains_key("events") {
        return Err(Refused::Invalid(
            "a security event token (e.g. a logout token) is not an access token",
        ));
    }
    match claims.get("token_use") {
        None => {}
        Some(Value::String(u)) if u == "access" => {}
        Some(_) => return Err(Refused::Invalid("an ID token is not an access token")),
    }
    if !typed && (claims.contains_key("nonce") || claims.contains_key("at_hash")) {
        return Err(Refused::Invalid(
            "an ID token (nonce or at_hash) is not an access token",
        ));
    }
    Ok(())
}

/// Why a bearer token was refused.
pub enum Refused {
    /// 401 `invalid_token`: the reason names the check that failed (never the token).
    Invalid(&'static str),
    /// 403 `insufficient_scope`: the scopes the route requires.
    Scope(String),
    /// 403: valid, but the route's other `allow_*` rules say no.
    Forbidden(String, Arc<Principal>),
    /// 503: the shared revocation list could not be read lately (fail closed).
    Unavailable(&'static str),
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

/// The JOSE header's `alg` and `typ`, when the token is three base64url parts with a JSON
/// header.
fn header_of(token: &str) -> Option<(String, Option<String>)> {
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
    let alg = header.get("alg")?.as_str()?.to_string();
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(t)) => Some(t.clone()),
        // A typ that is not a string is not an access token's.
        Some(_) => Some(String::new()),
    };
    Some((alg, typ))
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
    // A token cannot come from the future: an `iat` beyond the leeway is refused (and one
    // within it counts as issued now, see `verified_token`), so no `iat` can place a token
    // after a revocation that it predates.
    match claims.get("iat") {
        Some(iat) if iat.as_f64().is_some_and(|i| i > (now + LEEWAY_SECS) as f64) => {
            return Err(Refused::Invalid("the token is not valid yet (iat)"));
        }
        _ => {}
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
        self.not_revoked(&verified, token)?;
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

    /// Refuses a token whose user or IdP session was revoked after it was issued. Checked again
    /// only when the revocation list's generation moved since this token was last checked.
    fn not_revoked(&self, v: &Verified, token: &str) -> Result<(), Refused> {
        let revocations = self.store.revocations();
        // With a shared list that could not be read lately, a revocation made on another
        // replica might be missing: fail closed, as for sessions.
        if !revocations.fresh() {
            return Err(Refused::Unavailable(
                "the shared revocation list could not be read from redis",
            ));
        }
        let generation = revocations.generation();
        let p = &v.principal;
        if p.checked_at() == generation {
            return Ok(());
        }
        let s = &p.session;
        let c = Credential {
            sid: "",
            provider: &s.provider,
            sub: &s.sub,
            created_ms: s.created_ms,
            idp_sid: s.idp_sid.as_deref(),
        };
        if revocations.revokes(&c) {
            self.bearer_cache.0.get().remove(token);
            return Err(Refused::Invalid(
                "the token was revoked (its user or session was signed out)",
            ));
        }
        p.mark_checked(generation);
        Ok(())
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
        let (alg, typ) = header_of(token).ok_or(Refused::Invalid("not a signed JWT"))?;
        if !ALGS.contains(&alg.as_str()) {
            return Err(Refused::Invalid(
                "the token's algorithm is not accepted (asymmetric signatures only)",
            ));
        }
        let typed = typ_allows(typ.as_deref())?;
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
        access_claims_ok(&claims, typed)?;
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(Refused::Invalid("sub is missing"))?
            .to_string();
        // Issued at `iat`, or now if that is earlier (a token without one is as old as can
        // be: every revocation of its user covers it); made from the IdP session `sid`, or for a Portcullis pool's tokens
        // (this one's or another's) the session their token family (`origin_jti`) was issued
        // in. A foreign `origin_jti` (Cognito's) names no session.
        let iat = claims
            .get("iat")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .clamp(0, now);
        let idp_sid = match claims.get("sid").and_then(Value::as_str) {
            Some(sid) if !sid.is_empty() => Some(sid.to_string()),
            _ => claims
                .get("origin_jti")
                .and_then(Value::as_str)
                .and_then(crate::pool::store::sessions::sid_of_family)
                .map(str::to_string),
        };
        let session = Session {
            sid: String::new(),
            sub,
            provider: provider.cfg.name.clone(),
            access_token: Some(token.to_string()),
            access_expires_at: Some(exp),
            refresh_token: None,
            id_token: None,
            created_at: iat,
            expires_at: exp,
            created_ms: iat.saturating_mul(1000),
            idp_sid,
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
        assert_eq!(
            header_of("eyJhbGciOiJub25lIn0.e30."),
            Some(("none".to_string(), None))
        );
        assert!(header_of("eyJhbGciOiJub25lIn0.e30").is_none());
    }

    #[test]
    fn only_access_tokens() {
        for (typ, want) in [
            (None, Some(false)),
            (Some("JWT"), Some(false)),
            (Some("jwt"), Some(false)),
            (Some("at+jwt"), Some(true)),
            (Some("application/at+JWT"), Some(true)),
            (Some("logout+jwt"), None),
            (Some("application/logout+jwt"), None),
            (Some("id_token+jwt"), None),
            (Some("secevent+jwt"), None),
            (Some(""), None),
        ] {
            assert_eq!(typ_allows(typ).ok(), want, "{typ:?}");
        }
        let ok = |c: Value, typed: bool| access_claims_ok(&map(c), typed).is_ok();
        assert!(ok(json!({"sub": "a"}), false));
        assert!(ok(json!({"token_use": "access"}), false));
        assert!(!ok(json!({"token_use": "id"}), false));
        assert!(!ok(json!({"token_use": "id"}), true));
        assert!(!ok(json!({"token_use": 1}), false));
        assert!(!ok(json!({"nonce": "n"}), false));
        assert!(!ok(json!({"at_hash": "h"}), false));
        assert!(ok(json!({"nonce": "n"}), true));
        assert!(!ok(json!({"events": {}}), false));
        assert!(!ok(json!({"events": {}}), true));
    }
}
