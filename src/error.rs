//! The one place request-path errors become responses. Every error is classified by who is at
//! fault (client 4xx, IdP 502/561, upstream 502/504, internal 500), rendered as a small HTML
//! page for browsers or JSON for scripts, with a request id and never an internal detail.
//! The `match` is exhaustive on purpose: a new variant cannot silently become a 500.

use http::{HeaderValue, Response, StatusCode, header};

use crate::http::body::{self, Body};

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("no route matches this request")]
    NoRoute,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("sign-in required")]
    Unauthenticated { login_url: String },
    #[error("access denied: sign-in required")]
    Denied,
    #[error("not authorized")]
    Forbidden { required: String },
    #[error("a stronger sign-in is required")]
    StepUp { required: String, login_url: String },
    #[error("the sign-in took too long or was not started here")]
    LoginExpired { restart: String },
    #[error("the identity provider returned an error: {code}")]
    IdpError { code: String, restart: String },
    #[error("identity provider unavailable: {0}")]
    IdpUnavailable(String),
    #[error("the session is too large for cookies")]
    SessionTooLarge,
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    #[error("upstream timed out")]
    UpstreamTimeout,
    #[error("request header fields too large")]
    HeadersTooLarge,
    #[error("the session store is unavailable: {0}")]
    SessionStoreUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// RFC 6750 §3.1 `invalid_token`: the reason names the check that failed.
    #[error("invalid bearer token: {0}")]
    InvalidToken(&'static str),
    /// RFC 6750 §3.1 `insufficient_scope`: `scope` lists what the route requires.
    #[error("the bearer token lacks a required scope")]
    InsufficientScope { scope: String },
}

/// ALB's status for an error returned by the IdP at the callback.
pub const IDP_ERROR_STATUS: u16 = 561;

struct Shown {
    status: StatusCode,
    title: &'static str,
    message: String,
    link: Option<(String, &'static str)>,
    code: &'static str,
}

fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Keeps an IdP-supplied error code to a safe, short token.
pub fn sanitize_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == '.')
        .take(64)
        .collect()
}

impl RequestError {
    fn shown(&self) -> Shown {
        use RequestError::*;
        let s = |status, title, message: &str, code| Shown {
            status,
            title,
            message: message.to_string(),
            link: None,
            code,
        };
        match self {
            BadRequest(why) => s(StatusCode::BAD_REQUEST, "Bad request", why, "bad_request"),
            NoRoute | NotFound => s(StatusCode::NOT_FOUND, "Not found", "Nothing is served at this address.", "not_found"),
            MethodNotAllowed => s(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", "This method is not allowed here.", "method_not_allowed"),
            Unauthenticated { login_url } => Shown {
                status: StatusCode::UNAUTHORIZED,
                title: "Sign-in required",
                message: "You need to sign in to see this page.".into(),
                link: Some((login_url.clone(), "Sign in")),
                code: "unauthenticated",
            },
            Denied => s(StatusCode::UNAUTHORIZED, "Sign-in required", "This address needs a signed-in session.", "unauthenticated"),
            Forbidden { required } => Shown {
                status: StatusCode::FORBIDDEN,
                title: "Access denied",
                message: format!("You are signed in, but this page requires {required}."),
                link: None,
                code: "forbidden",
            },
            StepUp { required, login_url } => Shown {
                status: StatusCode::FORBIDDEN,
                title: "Stronger sign-in required",
                message: format!("You are signed in, but this page requires {required}. Sign in again with a second factor (set one up in your account first if you have none)."),
                link: Some((login_url.clone(), "Sign in again")),
                code: "step_up_required",
            },
            LoginExpired { restart } => Shown {
                status: StatusCode::UNAUTHORIZED,
                title: "Sign-in expired",
                message: "This sign-in took too long, or was not started from this browser. Please start again.".into(),
                link: Some((restart.clone(), "Start again")),
                code: "login_expired",
            },
            IdpError { code, restart } => Shown {
                status: StatusCode::from_u16(IDP_ERROR_STATUS).expect("561 is a valid status code"),
                title: "Sign-in failed",
                message: format!("The identity provider answered with the error \u{201c}{}\u{201d}.", sanitize_code(code)),
                link: Some((restart.clone(), "Start again")),
                code: "idp_error",
            },
            IdpUnavailable(_) => s(StatusCode::BAD_GATEWAY, "Sign-in unavailable", "The identity provider could not be reached or gave an invalid answer. Please try again later.", "idp_unavailable"),
            SessionTooLarge => s(StatusCode::INTERNAL_SERVER_ERROR, "Session too large", "Your identity (claims and tokens) is larger than four 4 KB cookies can hold, so the session could not be stored. Ask the administrator to reduce the claims or scopes requested, or to use the server-side session store (session.store = \"redis\").", "session_too_large"),
            UpstreamUnreachable(_) => s(StatusCode::BAD_GATEWAY, "Bad gateway", "The application behind this proxy could not be reached.", "upstream_unreachable"),
            UpstreamTimeout => s(StatusCode::GATEWAY_TIMEOUT, "Gateway timeout", "The application behind this proxy did not answer in time.", "upstream_timeout"),
            HeadersTooLarge => s(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "Request headers too large", "The request carries too many or too large header fields.", "headers_too_large"),
            SessionStoreUnavailable(_) => s(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable", "Sessions cannot be checked right now. Please try again in a moment.", "session_store_unavailable"),
            Internal(_) => s(StatusCode::INTERNAL_SERVER_ERROR, "Internal error", "Something went wrong on our side.", "internal"),
            InvalidToken(why) => s(StatusCode::UNAUTHORIZED, "Invalid access token", &format!("The access token is not valid here: {why}."), "invalid_token"),
            InsufficientScope { scope } => s(StatusCode::FORBIDDEN, "Insufficient scope", &format!("The access token must grant the scopes: {scope}."), "insufficient_scope"),
        }
    }

    /// RFC 6750 §3: the `WWW-Authenticate` challenge of a refused bearer token.
    fn bearer_challenge(&self) -> Option<String> {
        let quoted = |s: &str| s.replace(['"', '\\'], "");
        match self {
            RequestError::InvalidToken(why) => Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                quoted(why)
            )),
            RequestError::InsufficientScope { scope } => Some(format!(
                "Bearer error=\"insufficient_scope\", scope=\"{}\"",
                quoted(scope)
            )),
            _ => None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.shown().status
    }

    /// Renders the error; logs server-side causes once with the request id.
    pub fn render(&self, request_id: &str, json: bool) -> Response<Body> {
        let shown = self.shown();
        if shown.status.is_server_error() || shown.status.as_u16() == IDP_ERROR_STATUS {
            tracing::warn!(request_id, status = shown.status.as_u16(), error = %self, "request failed");
        }
        let (content_type, body) = if json {
            let mut v = serde_json::json!({
                "error": shown.code,
                "message": shown.message,
                "request_id": request_id,
            });
            if let Some((url, _)) = &shown.link {
                v["login_url"] = serde_json::Value::String(url.clone());
            }
            ("application/json", v.to_string())
        } else {
            let link = shown
                .link
                .as_ref()
                .map(|(u, t)| format!("<p><a href=\"{}\">{}</a></p>", escape(u), t))
                .unwrap_or_default();
            (
                "text/html; charset=utf-8",
                page(
                    shown.title,
                    &format!(
                        "<p>{}</p>{link}<p class=\"rid\">Request id: {}</p>",
                        escape(&shown.message),
                        escape(request_id)
                    ),
                ),
            )
        };
        let mut resp = Response::new(body::full(body));
        *resp.status_mut() = shown.status;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        security_headers(h);
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert(crate::http::headers::X_REQUEST_ID, v);
        }
        if let Some(v) = self
            .bearer_challenge()
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

/// The headers on every response Portcullis itself generates (not on proxied ones): our pages
/// use no script, no frames and only inline style, so the policy is the narrowest that renders
/// them; `frame-ancestors 'none'` and `X-Frame-Options` stop clickjacking of sign-in pages.
pub fn security_headers(h: &mut http::HeaderMap) {
    use crate::http::headers::*;
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// The small page frame shared by our own pages.
pub fn page(title: &str, inner: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{t}</title><style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}.rid{{color:#777;font-size:.85em}}</style></head><body><h1>{t}</h1>{inner}</body></html>",
        t = escape(title)
    )
}

pub fn html_escape(s: &str) -> String {
    escape(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_by_fault() {
        let cases = [
            (RequestError::Denied, 401),
            (
                RequestError::Forbidden {
                    required: "x".into(),
                },
                403,
            ),
            (
                RequestError::IdpError {
                    code: "access_denied".into(),
                    restart: "/".into(),
                },
                561,
            ),
            (RequestError::IdpUnavailable("x".into()), 502),
            (RequestError::UpstreamUnreachable("x".into()), 502),
            (RequestError::UpstreamTimeout, 504),
            (RequestError::SessionTooLarge, 500),
            (RequestError::HeadersTooLarge, 431),
            (RequestError::SessionStoreUnavailable("x".into()), 503),
            (
                RequestError::LoginExpired {
                    restart: "/".into(),
                },
                401,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(e.status().as_u16(), status, "{e:?}");
        }
    }

    #[test]
    fn hides_internals_and_escapes() {
        let r = RequestError::Internal("secret stack detail".into()).render("rid1", true);
        assert_eq!(r.status(), 500);
        let e = RequestError::IdpError {
            code: "<script>".into(),
            restart: "/".into(),
        };
        let shown = e.shown();
        assert!(!shown.message.contains('<'));
    }
}
