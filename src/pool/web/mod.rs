//! The pool's web kit: what every hosted page handler needs, written once.
//!
//! - [`PageError`]: a failure that renders itself — the localised message page (or JSON when the
//!   request asks for JSON), its status, the pages' security headers and the request id in the
//!   log. Handlers return [`PageResult`] and use `?`; a store failure becomes "unavailable" by
//!   `From<StoreError>`, once.
//! - [`Pool::verified_form`]: the one CSRF gate of a state-changing form (the body was read
//!   with its size limit by `Pool::handle`).
//! - [`Pool::build_cookie`]: every cookie of the pool, built with the `cookie` crate.
//! - [`json`], [`redirect`], [`text`]: one responder each.

use http::{HeaderValue, Response, StatusCode, header};

use super::store::StoreError;
use super::{Pool, Req};
use crate::http::body::{self, Body};

/// What a page handler answers.
pub type PageResult = Result<Response<Body>, PageError>;

/// Why a page handler stopped early. Each renders as the pool's message page (or JSON).
#[derive(Debug)]
pub enum PageError {
    /// The form's `csrf_token` is missing or wrong: 403.
    Csrf,
    /// The database failed (the error is logged, never shown): 503.
    Unavailable(String),
    /// Password hashing is at capacity: 503 with `Retry-After`.
    Busy,
    /// No live pool session: to the sign-in page, and after it to the page `next` names
    /// (`"account"`), when given.
    SignInRequired { next: Option<&'static str> },
    /// A request the page cannot act on (forged or stale value): 400 with this message key.
    BadRequest(&'static str),
    /// Something the user may not do (another user's session, the last way to sign in): 403.
    Forbidden(&'static str),
    /// A message page of its own: status, heading key, message key.
    Message(StatusCode, &'static str, &'static str),
}

/// Turns a handler's result into the response (an error renders itself).
pub trait Answer {
    fn answer(self, pool: &Pool, req: &Req<'_>) -> Response<Body>;
}

impl Answer for PageResult {
    fn answer(self, pool: &Pool, req: &Req<'_>) -> Response<Body> {
        self.unwrap_or_else(|e| e.render(pool, req))
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> PageError {
        PageError::Unavailable(e.to_string())
    }
}

impl PageError {
    /// Status, heading key and message key.
    fn status_and_key(&self) -> (StatusCode, &'static str, &'static str) {
        let (status, key): (StatusCode, &'static str) = match self {
            PageError::Message(status, heading, key) => return (*status, heading, key),
            PageError::Csrf => (StatusCode::FORBIDDEN, "csrf"),
            PageError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            PageError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            PageError::SignInRequired { .. } => (StatusCode::UNAUTHORIZED, "sign_in_required"),
            PageError::BadRequest(k) => (StatusCode::BAD_REQUEST, *k),
            PageError::Forbidden(k) => (StatusCode::FORBIDDEN, *k),
        };
        (status, "error_title", key)
    }

    /// The response: the message page in the request's language with the pages' headers, or
    /// `{"error", "message", "request_id"}` when the request asks for JSON.
    pub fn render(self, pool: &Pool, req: &Req<'_>) -> Response<Body> {
        match &self {
            PageError::Csrf => tracing::info!(
                request_id = req.rid,
                "pool.form" = "csrf_rejected",
                "form rejected: CSRF token missing or wrong"
            ),
            PageError::Unavailable(e) => {
                tracing::error!(error = %e, request_id = req.rid, "pool database error")
            }
            PageError::Busy => tracing::warn!(
                request_id = req.rid,
                "pool.event" = "hashing_busy",
                "password hashing at capacity: request refused"
            ),
            PageError::SignInRequired { next } => {
                if !wants_json(req) {
                    let cookies: Vec<String> = next
                        .iter()
                        .map(|n| pool.build_cookie(super::console::NEXT_COOKIE, n, 900))
                        .collect();
                    return redirect(&format!("{}/login", pool.base), &cookies);
                }
            }
            PageError::BadRequest(_) | PageError::Forbidden(_) | PageError::Message(..) => {}
        }
        let (status, heading, key) = self.status_and_key();
        let mut r = if wants_json(req) {
            json(
                status,
                &serde_json::json!({
                    "error": key,
                    "message": super::i18n::t(req.lang, key),
                    "request_id": req.rid,
                }),
            )
        } else {
            pool.pages.message(pool, req, status, heading, key)
        };
        if matches!(self, PageError::Busy) {
            super::hashing::retry_later(&mut r);
        }
        r
    }
}

/// Whether the request prefers JSON to HTML (`Accept: application/json` without `text/html`).
pub fn wants_json(req: &Req<'_>) -> bool {
    let accept = req
        .parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("application/json") && !accept.contains("text/html")
}

impl Pool {
    /// The one CSRF gate: a state-changing form's `csrf_token` must be the HMAC of this
    /// browser's CSRF cookie (double submit).
    pub fn verified_form(&self, req: &Req<'_>) -> Result<(), PageError> {
        if self.csrf_ok(req) {
            Ok(())
        } else {
            Err(PageError::Csrf)
        }
    }

    /// A cookie of the pool (`Path` = the issuer path, `HttpOnly`, `SameSite=Lax`, `Secure` on
    /// https); `max_age` 0 removes it.
    pub fn build_cookie(&self, name: &str, value: &str, max_age: i64) -> String {
        cookie::Cookie::build((name.to_string(), value.to_string()))
            .path(self.base.clone())
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .max_age(cookie::time::Duration::seconds(max_age))
            .secure(self.secure)
            .build()
            .to_string()
    }
}

/// A JSON answer, never cached.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(body::full(value.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A 302 with the pages' cookies; a location that is no header value is a 400.
pub fn redirect(location: &str, cookies: &[String]) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::FOUND;
    match HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => return text(StatusCode::BAD_REQUEST, "invalid redirect\n"),
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// A plain-text answer, never cached.
pub fn text(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(body::full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn cookies_are_built_like_the_hand_written_ones() {
        let c = cookie::Cookie::build(("n", "v"))
            .path("/oauth2/pool")
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .max_age(cookie::time::Duration::seconds(60))
            .secure(true)
            .build()
            .to_string();
        for part in [
            "n=v",
            "Path=/oauth2/pool",
            "HttpOnly",
            "SameSite=Lax",
            "Max-Age=60",
            "Secure",
        ] {
            assert!(c.contains(part), "{part} missing from {c}");
        }
    }
}
