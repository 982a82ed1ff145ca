//! The authorization-code flow: start (state, nonce, PKCE S256 verifier sealed into a
//! login-in-progress cookie named after the state, so several tabs can sign in at once), the
//! callback at `/oauth2/idpresponse` (state check, 15-minute window, code exchange, ID token
//! validation, userinfo, session cookie), and sign-out (every shard cleared, RP-initiated
//! logout when the IdP has an `end_session_endpoint`).

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use url::form_urlencoded;

use super::Auth;
use super::oidc::OidcError;
use super::redirect::safe_target;
use crate::error::RequestError;
use crate::http::body::{self, Body};
use crate::http::paths;
use crate::metrics::LoginOutcome;
use crate::session::shards::cookies;
use crate::session::store::SaveError;
use crate::session::{Session, now_unix};

const LOGIN_PURPOSE: &[u8] = b"portcullis-login";

/// What the login-in-progress cookie carries (sealed).
#[derive(Serialize, Deserialize)]
struct PendingLogin {
    state: String,
    nonce: String,
    verifier: String,
    provider: String,
    rd: String,
    created: i64,
}

fn pct(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `/oauth2/start?rd=…[&provider=…]`.
pub fn start_url(rd: &str, provider: Option<&str>) -> String {
    let mut u = format!("{}?rd={}", paths::START, pct(rd));
    if let Some(p) = provider {
        u.push_str("&provider=");
        u.push_str(&pct(p));
    }
    u
}

/// `location` as a valid URI reference (RFC 3986 §4.1): every byte that may not appear in one
/// (space, `"`, `<`, `>`, `\\`, `^`, `` ` ``, `{`, `|`, `}`, controls, non-ASCII) is
/// percent-encoded; existing escapes are kept. A client-supplied `rd=/"><script>` thus comes
/// back as `/%22%3E%3Cscript%3E` (docs/src/reference/http-paths.md; issue 9, item 5).
pub fn uri_reference(location: &str) -> std::borrow::Cow<'_, str> {
    fn allowed(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b)
    }
    let bytes = location.as_bytes();
    // A `%` is kept only as the start of a well-formed escape.
    let escape_at = |i: usize| {
        bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    };
    let ok = |i: usize, b: u8| allowed(b) || (b == b'%' && escape_at(i));
    if bytes.iter().enumerate().all(|(i, &b)| ok(i, b)) {
        return std::borrow::Cow::Borrowed(location);
    }
    let mut out = String::with_capacity(location.len() + 16);
    for (i, &b) in bytes.iter().enumerate() {
        if ok(i, b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A 302 with `Cache-Control: no-store` and cookies.
pub fn redirect(location: &str, cookies: &[HeaderValue]) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::FOUND;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&uri_reference(location)) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    crate::error::security_headers(h);
    for c in cookies {
        h.append(header::SET_COOKIE, c.clone());
    }
    r
}

pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn idp_failure(e: OidcError) -> RequestError {
    RequestError::IdpUnavailable(e.to_string())
}

impl Auth {
    fn login_cookie_name(&self, state: &str) -> String {
        format!(
            "{}{}",
            self.store.jar().login_prefix(),
            &state[..state.len().min(16)]
        )
    }

    /// Begins a sign-in with provider `index`, returning to `rd` (already validated).
    pub async fn start_login(
        &self,
        index: usize,
        rd: &str,
    ) -> Result<Response<Body>, RequestError> {
        self.start_login_prompt(index, rd, None, None).await
    }

    /// [`Self::start_login`], optionally with `prompt` for the IdP (`login`: a step-up) and
    /// `acr_values` (`mfa`: the step-up needs a second factor).
    pub async fn start_login_prompt(
        &self,
        index: usize,
        rd: &str,
        prompt: Option<&str>,
        acr: Option<&str>,
    ) -> Result<Response<Body>, RequestError> {
        let provider = &self.providers[index];
        let state = self.keyring.random_hex(16);
        let nonce = self.keyring.random_hex(16);
        let verifier = self.keyring.random_hex(32);
        let mut url = provider
            .authorize_url(&state, &nonce, &verifier)
            .await
            .map_err(idp_failure)?;
        if let Some(p) = prompt {
            let others: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != "prompt")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            url.query_pairs_mut()
                .clear()
                .extend_pairs(others)
                .append_pair("prompt", p);
        }
        if let Some(a) = acr {
            url.query_pairs_mut().append_pair("acr_values", a);
        }
        let now = now_unix();
        let pending = PendingLogin {
            state: state.clone(),
            nonce,
            verifier,
            provider: provider.name().to_string(),
            rd: rd.to_string(),
            created: now,
        };
        let sealed = self.keyring.seal(
            LOGIN_PURPOSE,
            &serde_json::to_vec(&pending).expect("serialisable"),
        );
        use base64::Engine;
        let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed);
        let cookie = format!(
            "{}={value}; Max-Age={}; Path={}; HttpOnly; SameSite=Lax{}",
            self.login_cookie_name(&state),
            self.cfg.session.login_window.as_secs(),
            paths::RESERVED_PREFIX,
            if self.cfg.secure_cookies() {
                "; Secure"
            } else {
                ""
            }
        );
        let cookie =
            HeaderValue::from_str(&cookie).map_err(|e| RequestError::Internal(e.to_string()))?;
        Ok(redirect(url.as_str(), &[cookie]))
    }

    fn clear_login_cookie(&self, name: &str) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{name}=; Max-Age=0; Path={}; HttpOnly; SameSite=Lax{}",
            paths::RESERVED_PREFIX,
            if self.cfg.secure_cookies() {
                "; Secure"
            } else {
                ""
            }
        ))
        .expect("cookie name built from a hex state")
    }

    /// `GET /oauth2/idpresponse`.
    pub async fn callback(
        &self,
        query: Option<&str>,
        headers: &HeaderMap,
        request_id: &str,
    ) -> Response<Body> {
        let restart = start_url("/", None);
        let expired = |restart: String| RequestError::LoginExpired { restart };
        let state = query_param(query, "state")
            .filter(|s| s.len() >= 16 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some(state) = state else {
            self.metrics.login(LoginOutcome::Expired);
            return expired(restart).render(request_id, false);
        };
        let name = self.login_cookie_name(&state);
        let pending = cookies(headers)
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| crate::session::shards::CookieJar::decode(v))
            .and_then(|sealed| self.keyring.open(LOGIN_PURPOSE, &sealed))
            .and_then(|plain| serde_json::from_slice::<PendingLogin>(&plain).ok());
        let clear = self.clear_login_cookie(&name);
        let with_clear = |e: RequestError| (e, clear.clone());
        let result = async {
            let Some(pending) = pending else { return Err(with_clear(expired(restart.clone()))) };
            let restart = start_url(&pending.rd, Some(&pending.provider));
            let now = now_unix();
            // Constant-time comparison is unnecessary: the state came sealed from our own cookie
            // (unforgeable); this check binds the callback to that cookie.
            if pending.state != state || now - pending.created > self.cfg.session.login_window.as_secs() as i64 {
                self.metrics.login(LoginOutcome::Expired);
                return Err(with_clear(expired(restart)));
            }
            if let Some(err) = query_param(query, "error") {
                self.metrics.login(LoginOutcome::IdpError);
                return Err(with_clear(RequestError::IdpError { code: err, restart }));
            }
            let Some(code) = query_param(query, "code") else {
                self.metrics.login(LoginOutcome::Failed);
                return Err(with_clear(RequestError::BadRequest("the callback has no code".into())));
            };
            let Some(index) = self.providers.iter().position(|p| p.name() == pending.provider) else {
                return Err(with_clear(expired(restart)));
            };
            let provider = &self.providers[index];
            let tokens = provider
                .exchange(&code, &pending.verifier, &pending.nonce, now)
                .await
                .map_err(|e| {
                    self.metrics.login(LoginOutcome::Failed);
                    with_clear(idp_failure(e))
                })?;
            let mut claims = tokens.id_claims;
            let sub = claims.get("sub").and_then(|v| v.as_str()).unwrap_or_default().to_string();
            match provider.userinfo(&tokens.access_token, &sub).await {
                Ok(Some(info)) => {
                    for (k, v) in info {
                        claims.insert(k, v);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    self.metrics.login(LoginOutcome::Failed);
                    return Err(with_clear(idp_failure(e)));
                }
            }
            let idp_sid = claims.get("sid").and_then(|v| v.as_str()).map(str::to_string);
            let mut session = Session {
                sid: self.keyring.random_hex(16),
                sub,
                provider: pending.provider.clone(),
                claims,
                access_token: Some(tokens.access_token),
                access_expires_at: tokens.access_expires_at,
                refresh_token: tokens.refresh_token,
                id_token: tokens.id_token,
                created_at: now,
                expires_at: now + self.cfg.session.timeout.as_secs() as i64,
                created_ms: crate::session::now_unix_ms(),
                idp_sid,
            };
            let saved = match self.store.save(&session, now, None).await {
                Ok(v) => Ok(v),
                // The ID token is kept only as the logout hint (optional in RP-initiated
                // logout); drop it before giving up on a session that does not fit.
                Err(SaveError::TooLarge(_)) if session.id_token.is_some() => {
                    session.id_token = None;
                    self.store.save(&session, now, None).await
                }
                Err(e) => Err(e),
            };
            let (mut set, _) = saved.map_err(|e| {
                self.metrics.login(LoginOutcome::Failed);
                match e {
                    SaveError::Unavailable(e) => {
                        with_clear(RequestError::SessionStoreUnavailable(e.to_string()))
                    }
                    e => {
                        tracing::warn!(provider = provider.name(), error = %e, "session too large for cookies");
                        with_clear(RequestError::SessionTooLarge)
                    }
                }
            })?;
            set.push(clear.clone());
            self.metrics.login(LoginOutcome::Success);
            tracing::info!(provider = provider.name(), "auth.decision" = "login", "sign-in completed");
            let target = safe_target(Some(&pending.rd), &self.cfg.public_origin, &self.cfg.allowed_redirect_origins);
            Ok(redirect(&target, &set))
        }
        .await;
        match result {
            Ok(r) => r,
            Err((e, clear)) => {
                let mut r = e.render(request_id, false);
                r.headers_mut().append(header::SET_COOKIE, clear);
                r
            }
        }
    }

    /// `GET|POST /oauth2/sign_out?rd=…`.
    pub async fn sign_out(&self, query: Option<&str>, headers: &HeaderMap) -> Response<Body> {
        let rd = safe_target(
            query_param(query, "rd").as_deref(),
            &self.cfg.public_origin,
            &self.cfg.allowed_redirect_origins,
        );
        // A store that cannot answer still gets the cookies cleared; the sign-out of a
        // session it could not find cannot be recorded, and says so in the log.
        let state = match self.session(headers, now_unix()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "sign-out: the session store is unavailable; cookies cleared only");
                super::SessionState::default()
            }
        };
        if let Some(loaded) = &state.loaded
            && let Err(e) = self.store.sign_out(loaded).await
        {
            tracing::warn!(error = %e, "sign-out recorded here but could not be shared through redis");
        }
        let mut set: Vec<HeaderValue> = self.store.clear().to_vec();
        for (n, _) in cookies(headers) {
            if n.starts_with(self.store.jar().login_prefix()) {
                set.push(self.clear_login_cookie(n));
            }
        }
        let mut location = rd.clone();
        if let Some(opened) = state.principal {
            let provider = &self.providers[opened.provider];
            if let Some(mut end) = provider.end_session_endpoint().await {
                let post_logout = if rd.starts_with('/') {
                    format!("{}{}", self.cfg.public_origin, rd)
                } else {
                    rd.clone()
                };
                {
                    let mut q = end.query_pairs_mut();
                    if let Some(idt) = &opened.session.id_token {
                        q.append_pair("id_token_hint", idt);
                    }
                    q.append_pair("client_id", &provider.cfg.client_id);
                    q.append_pair("post_logout_redirect_uri", &post_logout);
                }
                location = end.to_string();
            }
            tracing::info!(
                provider = provider.name(),
                "auth.decision" = "sign_out",
                "signed out"
            );
        }
        redirect(&location, &set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 9, item 5): `rd=/"><script>` came back unencoded in `Location`.
    #[test]
    fn location_is_a_valid_uri_reference() {
        assert_eq!(uri_reference("/a/b?c=d&e=%20"), "/a/b?c=d&e=%20");
        assert_eq!(uri_reference("/\"><script>"), "/%22%3E%3Cscript%3E");
        assert_eq!(uri_reference("/x y|{}^`"), "/x%20y%7C%7B%7D%5E%60");
        assert_eq!(uri_reference("/%zz%4"), "/%25zz%254");
        assert_eq!(uri_reference("/日本"), "/%E6%97%A5%E6%9C%AC");
    }
}
