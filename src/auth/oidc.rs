//! One configured OpenID Provider, as a relying party sees it: discovery (lazy, retried until it
//! succeeds), the authorization URL (PKCE S256, state, nonce), the code exchange, ID token
//! validation per OIDC Core 3.1.3.7 (by `openidconnect`: signature, iss, aud, azp, exp, iat,
//! nonce; asymmetric algorithms only; the signature is checked with `ring` first when it can be,
//! see `jws`), an unknown `kid` → one rate-limited JWKS refetch, the userinfo call, and refresh.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use openidconnect::core::*;
use openidconnect::{
    AdditionalProviderMetadata, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, TokenResponse,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use super::http_client::{HttpError, IdpClient};
use crate::config::{ProviderConfig, TokenAuth};

/// Provider metadata plus the RP-initiated logout endpoint (not in `openidconnect`'s core set).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct LogoutMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<String>,
}
impl AdditionalProviderMetadata for LogoutMetadata {}

type Metadata = ProviderMetadata<
    LogoutMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Algorithms accepted for ID tokens: asymmetric only. `none` and every HMAC are refused, so a
/// token "signed" with a public key as an HMAC secret can never verify.
const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// Refetches forced by a token the cached keys do not verify (unknown `kid`, or a known `kid`
/// whose key was rotated in place) are at most this frequent per provider.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// How long fetched keys are used when the JWKS response has no `Cache-Control: max-age`.
const JWKS_DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);
/// The longest a JWKS is cached, whatever its `max-age` says (issue 9, item 3).
const JWKS_MAX_TTL: Duration = Duration::from_secs(60 * 60);
/// The shortest, so a `max-age=0` IdP does not make every login fetch keys.
const JWKS_MIN_TTL: Duration = Duration::from_secs(30);

/// The JWKS cache lifetime a response's `Cache-Control` asks for, within our bounds.
fn jwks_ttl(headers: &http::HeaderMap) -> Duration {
    let max_age = headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|d| {
            if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
                Some(0)
            } else {
                d.strip_prefix("max-age=")?
                    .trim_matches('"')
                    .parse::<u64>()
                    .ok()
            }
        });
    match max_age {
        Some(s) => Duration::from_secs(s).clamp(JWKS_MIN_TTL, JWKS_MAX_TTL),
        None => JWKS_DEFAULT_TTL,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("identity provider unreachable: {0}")]
    Unreachable(String),
    #[error("identity provider sent an invalid response: {0}")]
    InvalidResponse(String),
    #[error("the identity provider refused the request: {error}")]
    Refused { error: String },
    #[error("the ID token is not valid: {0}")]
    InvalidIdToken(String),
}

impl From<HttpError> for OidcError {
    fn from(e: HttpError) -> Self {
        OidcError::Unreachable(e.to_string())
    }
}

struct Discovered {
    metadata: Metadata,
    client: Client,
    end_session: Option<Url>,
    /// The JWKS's keys parsed for `ring` (see `jws`), once per fetch.
    keys: Vec<super::jws::Key>,
    /// When the keys are due to be fetched again (`Cache-Control`, bounded).
    keys_expire: Instant,
}

fn ring_keys(metadata: &Metadata) -> Vec<super::jws::Key> {
    serde_json::to_value(metadata.jwks())
        .map(|v| super::jws::parse_jwks(&v))
        .unwrap_or_default()
}

/// What a successful code exchange or refresh yields.
#[derive(Debug)]
pub struct Tokens {
    pub access_token: String,
    pub access_expires_at: Option<i64>,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    /// Verified ID token claims (all of them, not only the standard ones).
    pub id_claims: Map<String, Value>,
}

pub struct OidcProvider {
    pub cfg: ProviderConfig,
    redirect_uri: RedirectUrl,
    http: IdpClient,
    state: Mutex<Option<Arc<Discovered>>>,
    discover_lock: tokio::sync::Mutex<()>,
    last_jwks_fetch: Mutex<Option<Instant>>,
}

fn client_for(cfg: &ProviderConfig, metadata: Metadata, redirect: &RedirectUrl) -> Client {
    let secret = cfg
        .client_secret
        .as_ref()
        .map(|s| ClientSecret::new(s.expose().to_string()));
    let secret = if cfg.token_auth == TokenAuth::None {
        None
    } else {
        secret
    };
    let auth_type = match cfg.token_auth {
        TokenAuth::ClientSecretPost => openidconnect::AuthType::RequestBody,
        TokenAuth::None => openidconnect::AuthType::RequestBody,
        TokenAuth::ClientSecretBasic => openidconnect::AuthType::BasicAuth,
    };
    CoreClient::from_provider_metadata(metadata, ClientId::new(cfg.client_id.clone()), secret)
        .set_redirect_uri(redirect.clone())
        .set_auth_type(auth_type)
}

/// Decodes the (already verified) payload of a compact JWS into a claims map.
fn jwt_payload(jwt: &str) -> Option<Map<String, Value>> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl OidcProvider {
    pub fn new(cfg: ProviderConfig, redirect_uri: &Url, http: IdpClient) -> OidcProvider {
        OidcProvider {
            cfg,
            redirect_uri: RedirectUrl::from_url(redirect_uri.clone()),
            http,
            state: Mutex::new(None),
            discover_lock: tokio::sync::Mutex::new(()),
            last_jwks_fetch: Mutex::new(None),
        }
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn is_discovered(&self) -> bool {
        self.state.lock().is_some()
    }

    async fn discovered(&self) -> Result<Arc<Discovered>, OidcError> {
        if let Some(d) = self.state.lock().clone() {
            return Ok(d);
        }
        let _guard = self.discover_lock.lock().await;
        if let Some(d) = self.state.lock().clone() {
            return Ok(d);
        }
        let issuer = IssuerUrl::new(self.cfg.issuer.clone())
            .map_err(|e| OidcError::InvalidResponse(e.to_string()))?;
        let metadata = Metadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| {
                use openidconnect::DiscoveryError as D;
                match e {
                    D::Request(inner) => OidcError::Unreachable(inner.to_string()),
                    other => OidcError::InvalidResponse(other.to_string()),
                }
            })?;
        let end_session = metadata
            .additional_metadata()
            .end_session_endpoint
            .as_deref()
            .and_then(|u| Url::parse(u).ok());
        let client = client_for(&self.cfg, metadata.clone(), &self.redirect_uri);
        let d = Arc::new(Discovered {
            keys: ring_keys(&metadata),
            keys_expire: Instant::now() + JWKS_DEFAULT_TTL,
            metadata,
            client,
            end_session,
        });
        *self.state.lock() = Some(d.clone());
        tracing::info!(provider = %self.cfg.name, issuer = %self.cfg.issuer, "provider discovered");
        Ok(d)
    }

    /// Discovers now (start-up warm-up and readiness); errors are logged, not fatal.
    pub async fn warm_up(&self) -> bool {
        match self.discovered().await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(provider = %self.cfg.name, error = %e, "provider discovery failed; will retry on use");
                false
            }
        }
    }

    /// Builds the authorization request URL.
    pub async fn authorize_url(
        &self,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<Url, OidcError> {
        let d = self.discovered().await?;
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            verifier.to_string(),
        ));
        let (state, nonce) = (state.to_string(), nonce.to_string());
        let mut req = d.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state),
            move || Nonce::new(nonce),
        );
        for s in self.cfg.scopes.iter().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(s.clone()));
        }
        for (k, v) in &self.cfg.extra_auth_params {
            req = req.add_extra_param(k.clone(), v.clone());
        }
        let (url, _, _) = req.set_pkce_challenge(challenge).url();
        Ok(url)
    }

    pub async fn end_session_endpoint(&self) -> Option<Url> {
        self.discovered()
            .await
            .ok()
            .and_then(|d| d.end_session.clone())
    }

    /// Exchanges an authorization code (with the PKCE verifier) and validates the ID token.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
        now: i64,
    ) -> Result<Tokens, OidcError> {
        let d = self.discovered().await?;
        let resp = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::InvalidResponse(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let expected = Nonce::new(nonce.to_string());
        self.tokens_from(d, resp, Some(&expected), now).await
    }

    /// Uses a refresh token; a new ID token, if any, is validated (no nonce: OIDC Core 12.2).
    pub async fn refresh(&self, refresh_token: &str, now: i64) -> Result<Tokens, OidcError> {
        let d = self.discovered().await?;
        let rt = RefreshToken::new(refresh_token.to_string());
        let resp = d
            .client
            .exchange_refresh_token(&rt)
            .map_err(|e| OidcError::InvalidResponse(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        self.tokens_from(d, resp, None, now).await
    }

    async fn tokens_from(
        &self,
        d: Arc<Discovered>,
        resp: CoreTokenResponse,
        nonce: Option<&Nonce>,
        now: i64,
    ) -> Result<Tokens, OidcError> {
        let access_token = resp.access_token().secret().clone();
        let access_expires_at = resp.expires_in().map(|e| now + e.as_secs() as i64);
        let refresh_token = resp.refresh_token().map(|r| r.secret().clone());
        let (id_token, id_claims) = match resp.id_token() {
            Some(tok) => {
                let verified = self.verify_id_token(d, tok, nonce).await?;
                (Some(tok.to_string()), verified)
            }
            None if nonce.is_some() => {
                return Err(OidcError::InvalidResponse(
                    "the token response has no id_token".into(),
                ));
            }
            None => (None, Map::new()),
        };
        Ok(Tokens {
            access_token,
            access_expires_at,
            refresh_token,
            id_token,
            id_claims,
        })
    }

    async fn verify_id_token(
        &self,
        d: Arc<Discovered>,
        tok: &CoreIdToken,
        nonce: Option<&Nonce>,
    ) -> Result<Map<String, Value>, OidcError> {
        let raw = tok.to_string();
        // Cached keys past their lifetime are fetched again first; if that fails, the old
        // keys are still tried (and a signature failure below retries once more).
        let d = if Instant::now() >= d.keys_expire {
            match self.fetch_jwks(&d).await {
                Ok(fresh) => fresh,
                Err(e) => {
                    tracing::warn!(provider = %self.cfg.name, error = %e, "JWKS refresh failed; using the cached keys");
                    d
                }
            }
        } else {
            d
        };
        let check = |d: &Discovered| -> Result<(), openidconnect::ClaimsVerificationError> {
            // The signature checked with ring when it can be (see `jws`): openidconnect then
            // checks every claim but not the signature again. Otherwise it does it all.
            let signature_checked = super::jws::verified(&raw, &d.keys);
            if signature_checked {
                tracing::debug!(provider = %self.cfg.name, "ID token signature verified with ring");
            }
            // docs/src/proxy/providers.md: an `iat` more than 60 s ahead is refused (openidconnect accepts any).
            let mut verifier = d
                .client
                .id_token_verifier()
                .set_allowed_algs(ALLOWED_ALGS)
                .set_issue_time_verifier_fn(iat_not_in_future);
            if signature_checked {
                verifier = verifier.insecure_disable_signature_check();
            }
            match nonce {
                Some(n) => tok.claims(&verifier, n).map(|_| ()),
                None => tok
                    .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                    .map(|_| ()),
            }
        };
        match check(&d) {
            Ok(()) => {}
            // Key rotation: a new `kid`, or (issue 9, item 3) a new key published under the
            // same `kid`. Either way the cached keys do not verify: fetch them again, at most
            // once per interval, and check once more.
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(first)) => {
                let d2 = self.refetch_jwks(&d).await.map_err(|e| {
                    tracing::info!(provider = %self.cfg.name, error = %e, "JWKS refetch not done");
                    OidcError::InvalidIdToken(first.to_string())
                })?;
                check(&d2).map_err(|e| OidcError::InvalidIdToken(e.to_string()))?;
            }
            Err(e) => return Err(OidcError::InvalidIdToken(e.to_string())),
        }
        jwt_payload(&raw).ok_or_else(|| OidcError::InvalidIdToken("unreadable payload".into()))
    }

    /// Verifies the signature of a JWT this provider issued (logout tokens, access tokens)
    /// against its JWKS — asymmetric algorithms only, a single matching key, the same
    /// rate-limited refetch on failure as ID tokens — and returns its claims. Claims are the
    /// caller's to check.
    pub async fn verify_jwt(&self, raw: &str) -> Result<Map<String, Value>, OidcError> {
        let d = self.discovered().await?;
        let d = if Instant::now() >= d.keys_expire {
            self.fetch_jwks(&d).await.unwrap_or(d)
        } else {
            d
        };
        if !super::jws::verified(raw, &d.keys) {
            let d2 = self.refetch_jwks(&d).await?;
            if !super::jws::verified(raw, &d2.keys) {
                return Err(OidcError::InvalidIdToken(
                    "the signature does not verify with the provider's keys".into(),
                ));
            }
        }
        jwt_payload(raw).ok_or_else(|| OidcError::InvalidIdToken("unreadable payload".into()))
    }

    /// A refetch forced by a signature the cached keys do not verify: rate limited. When
    /// another request refetched meanwhile, its keys are used instead.
    async fn refetch_jwks(&self, d: &Arc<Discovered>) -> Result<Arc<Discovered>, OidcError> {
        {
            let mut last = self.last_jwks_fetch.lock();
            if last.is_some_and(|t| t.elapsed() < JWKS_REFETCH_INTERVAL) {
                let current = self.state.lock().clone();
                return match current {
                    Some(c) if !Arc::ptr_eq(&c, d) => Ok(c),
                    _ => Err(OidcError::InvalidIdToken(
                        "the cached keys do not verify the token (JWKS refetch is rate limited)"
                            .into(),
                    )),
                };
            }
            *last = Some(Instant::now());
        }
        let nd = self.fetch_jwks(d).await?;
        tracing::info!(provider = %self.cfg.name, "JWKS refetched: the cached keys did not verify a token");
        Ok(nd)
    }

    /// Fetches the JWKS now and installs it, with the lifetime its `Cache-Control` gives.
    async fn fetch_jwks(&self, d: &Arc<Discovered>) -> Result<Arc<Discovered>, OidcError> {
        let url = d.metadata.jwks_uri().url().to_string();
        let req = self
            .http
            .reqwest()
            .get(&url)
            .header(http::header::ACCEPT, "application/json")
            .build()
            .map_err(|e| OidcError::Unreachable(e.to_string()))?;
        let resp = self.http.execute(req).await?;
        if !resp.status().is_success() {
            return Err(OidcError::InvalidResponse(format!(
                "JWKS fetch answered {}",
                resp.status()
            )));
        }
        let ttl = jwks_ttl(resp.headers());
        let jwks: CoreJsonWebKeySet = serde_json::from_slice(resp.body())
            .map_err(|e| OidcError::InvalidResponse(format!("JWKS: {e}")))?;
        let metadata = d.metadata.clone().set_jwks(jwks);
        let client = client_for(&self.cfg, metadata.clone(), &self.redirect_uri);
        let nd = Arc::new(Discovered {
            keys: ring_keys(&metadata),
            keys_expire: Instant::now() + ttl,
            metadata,
            client,
            end_session: d.end_session.clone(),
        });
        *self.state.lock() = Some(nd.clone());
        Ok(nd)
    }

    /// Calls the userinfo endpoint (as ALB does); `None` when the provider has none.
    pub async fn userinfo(
        &self,
        access_token: &str,
        expected_sub: &str,
    ) -> Result<Option<Map<String, Value>>, OidcError> {
        let d = self.discovered().await?;
        let Some(url) = d.metadata.userinfo_endpoint() else {
            return Ok(None);
        };
        let (status, body) = self
            .http
            .get_json(url.url().as_str(), Some(access_token))
            .await?;
        if !status.is_success() {
            return Err(OidcError::InvalidResponse(format!(
                "userinfo answered {status}"
            )));
        }
        let claims: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|_| OidcError::InvalidResponse("userinfo is not a JSON object".into()))?;
        // OIDC Core 5.3.2: the userinfo `sub` must match the ID token's, else the response is
        // not for this user and must not be used.
        if claims.get("sub").and_then(|v| v.as_str()) != Some(expected_sub) {
            return Err(OidcError::InvalidResponse(
                "userinfo sub does not match the ID token".into(),
            ));
        }
        Ok(Some(claims))
    }
}

/// Largest clock skew tolerated for an ID token's `iat` (docs/src/proxy/providers.md).
const IAT_LEEWAY_SECS: i64 = 60;

fn iat_not_in_future(iat: chrono::DateTime<chrono::Utc>) -> Result<(), String> {
    let now = crate::session::now_unix();
    if iat.timestamp() > now + IAT_LEEWAY_SECS {
        Err(format!(
            "iat is {} s in the future (at most {IAT_LEEWAY_SECS} s allowed)",
            iat.timestamp() - now
        ))
    } else {
        Ok(())
    }
}

fn token_error<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, openidconnect::StandardErrorResponse<CoreErrorResponseType>>,
) -> OidcError {
    match e {
        RequestTokenError::ServerResponse(r) => OidcError::Refused {
            error: r.error().to_string(),
        },
        RequestTokenError::Request(inner) => OidcError::Unreachable(inner.to_string()),
        RequestTokenError::Parse(inner, _) => OidcError::InvalidResponse(inner.to_string()),
        RequestTokenError::Other(s) => OidcError::InvalidResponse(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 9, item 5): an ID token with `iat` one day in the future was
    /// accepted; docs/src/proxy/providers.md allows at most 60 s of skew.
    #[test]
    fn iat_a_day_ahead_is_refused_and_small_skew_is_not() {
        let at = |secs: i64| {
            chrono::DateTime::from_timestamp(crate::session::now_unix() + secs, 0).unwrap()
        };
        assert!(iat_not_in_future(at(86_400)).is_err());
        assert!(iat_not_in_future(at(120)).is_err());
        assert!(iat_not_in_future(at(30)).is_ok());
        assert!(iat_not_in_future(at(-3600)).is_ok());
    }

    #[test]
    fn jwks_lifetime_follows_cache_control_within_bounds() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert(http::header::CACHE_CONTROL, v.parse().unwrap());
            m
        };
        assert_eq!(jwks_ttl(&http::HeaderMap::new()), JWKS_DEFAULT_TTL);
        assert_eq!(
            jwks_ttl(&h("public, max-age=120")),
            Duration::from_secs(120)
        );
        assert_eq!(jwks_ttl(&h("max-age=86400")), JWKS_MAX_TTL);
        assert_eq!(jwks_ttl(&h("no-store")), JWKS_MIN_TTL);
        assert_eq!(jwks_ttl(&h("max-age=0")), JWKS_MIN_TTL);
    }
}
