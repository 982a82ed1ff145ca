//! The one place request-path errors become responses. Every error is classified by who is at
//! fault (client 4xx, IdP 502/561, upstream 502/504, internal 500), rendered as a small HTML
//! page for browsers or JSON for scripts, with a request id and never an internal detail.
//! The `match` is exhaustive on purpose: a new variant cannot silently become a 500.

use http::{HeaderValue, Response, StatusCode, header};

use crate::http::body::{self, Body};
use crate::lang::Lang;

#[derive(Debug, Clone, thiserror::Error)]
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
        self.shown_in(Lang::En)
    }

    /// What the page says, in `lang`.
    fn shown_in(&self, lang: Lang) -> Shown {
        use RequestError::*;
        let ja = lang == Lang::Ja;
        let tr = |en: &'static str, j: &'static str| if ja { j } else { en };
        let s = |status, title, message: &str, code| Shown {
            status,
            title,
            message: message.to_string(),
            link: None,
            code,
        };
        let link = |url: &String, en, j| Some((url.clone(), tr(en, j)));
        match self {
            BadRequest(why) => s(StatusCode::BAD_REQUEST, tr("Bad request", "不正なリクエスト"), why, "bad_request"),
            NoRoute | NotFound => s(StatusCode::NOT_FOUND, tr("Not found", "見つかりません"), tr("Nothing is served at this address.", "このアドレスには何もありません。"), "not_found"),
            MethodNotAllowed => s(StatusCode::METHOD_NOT_ALLOWED, tr("Method not allowed", "許可されていないメソッド"), tr("This method is not allowed here.", "ここではこのメソッドは使えません。"), "method_not_allowed"),
            Unauthenticated { login_url } => Shown {
                status: StatusCode::UNAUTHORIZED,
                title: tr("Sign-in required", "サインインが必要です"),
                message: tr("You need to sign in to see this page.", "このページを見るにはサインインしてください。").into(),
                link: link(login_url, "Sign in", "サインイン"),
                code: "unauthenticated",
            },
            Denied => s(StatusCode::UNAUTHORIZED, tr("Sign-in required", "サインインが必要です"), tr("This address needs a signed-in session.", "このアドレスにはサインインが必要です。"), "unauthenticated"),
            Forbidden { required } => Shown {
                status: StatusCode::FORBIDDEN,
                title: tr("Access denied", "アクセスできません"),
                message: if ja {
                    format!("サインイン済みですが、このページには {required} が必要です。")
                } else {
                    format!("You are signed in, but this page requires {required}.")
                },
                link: None,
                code: "forbidden",
            },
            StepUp { required, login_url } => Shown {
                status: StatusCode::FORBIDDEN,
                title: tr("Stronger sign-in required", "より強いサインインが必要です"),
                message: if ja {
                    format!("サインイン済みですが、このページには {required} が必要です。二要素認証でもう一度サインインしてください（まだ設定していない場合は、先にアカウントで設定してください）。")
                } else {
                    format!("You are signed in, but this page requires {required}. Sign in again with a second factor (set one up in your account first if you have none).")
                },
                link: link(login_url, "Sign in again", "もう一度サインイン"),
                code: "step_up_required",
            },
            LoginExpired { restart } => Shown {
                status: StatusCode::UNAUTHORIZED,
                title: tr("Sign-in expired", "サインインの期限切れ"),
                message: tr("This sign-in took too long, or was not started from this browser. Please start again.", "サインインに時間がかかりすぎたか、このブラウザーで開始されたものではありません。もう一度やり直してください。").into(),
                link: link(restart, "Start again", "やり直す"),
                code: "login_expired",
            },
            IdpError { code, restart } => Shown {
                status: StatusCode::from_u16(IDP_ERROR_STATUS).expect("561 is a valid status code"),
                title: tr("Sign-in failed", "サインインに失敗しました"),
                message: if ja {
                    format!("ID プロバイダーがエラー「{}」を返しました。", sanitize_code(code))
                } else {
                    format!("The identity provider answered with the error \u{201c}{}\u{201d}.", sanitize_code(code))
                },
                link: link(restart, "Start again", "やり直す"),
                code: "idp_error",
            },
            IdpUnavailable(_) => s(StatusCode::BAD_GATEWAY, tr("Sign-in unavailable", "サインインできません"), tr("The identity provider could not be reached or gave an invalid answer. Please try again later.", "ID プロバイダーに接続できないか、不正な応答がありました。しばらくしてからもう一度お試しください。"), "idp_unavailable"),
            SessionTooLarge => s(StatusCode::INTERNAL_SERVER_ERROR, tr("Session too large", "セッションが大きすぎます"), tr("Your identity (claims and tokens) is larger than four 4 KB cookies can hold, so the session could not be stored. Ask the administrator to reduce the claims or scopes requested, or to use the server-side session store (session.store = \"redis\").", "ID 情報（クレームとトークン）が 4 KB のクッキー 4 個に収まらないため、セッションを保存できませんでした。要求するクレームやスコープを減らすか、サーバー側のセッションストア（session.store = \"redis\"）を使うよう管理者に依頼してください。"), "session_too_large"),
            UpstreamUnreachable(_) => s(StatusCode::BAD_GATEWAY, tr("Bad gateway", "アプリケーションに接続できません"), tr("The application behind this proxy could not be reached.", "このプロキシの背後にあるアプリケーションに接続できませんでした。"), "upstream_unreachable"),
            UpstreamTimeout => s(StatusCode::GATEWAY_TIMEOUT, tr("Gateway timeout", "アプリケーションが応答しません"), tr("The application behind this proxy did not answer in time.", "このプロキシの背後にあるアプリケーションが時間内に応答しませんでした。"), "upstream_timeout"),
            HeadersTooLarge => s(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, tr("Request headers too large", "リクエストヘッダーが大きすぎます"), tr("The request carries too many or too large header fields.", "リクエストのヘッダーが多すぎるか大きすぎます。"), "headers_too_large"),
            SessionStoreUnavailable(_) => s(StatusCode::SERVICE_UNAVAILABLE, tr("Service unavailable", "サービスを利用できません"), tr("Sessions cannot be checked right now. Please try again in a moment.", "現在セッションを確認できません。少し待ってからもう一度お試しください。"), "session_store_unavailable"),
            Internal(_) => s(StatusCode::INTERNAL_SERVER_ERROR, tr("Internal error", "内部エラー"), tr("Something went wrong on our side.", "こちら側で問題が発生しました。"), "internal"),
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
            (
                "text/html; charset=utf-8",
                self.html(Lang::En, request_id, None),
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
        if !json {
            // Redrawn in the reader's language, with the switch, by [`localize`].
            resp.extensions_mut().insert(ErrorPage {
                error: self.clone(),
                request_id: request_id.to_string(),
            });
        }
        resp
    }

    /// The HTML page in `lang`; `path` (the request's path and query) gives the switch.
    fn html(&self, lang: Lang, request_id: &str, path: Option<&str>) -> String {
        let shown = self.shown_in(lang);
        let link = shown
            .link
            .as_ref()
            .map(|(u, t)| {
                format!(
                    "<p><a class=\"button\" href=\"{}\">{}</a></p>",
                    escape(u),
                    t
                )
            })
            .unwrap_or_default();
        let switch = path
            .map(|p| {
                let (path, query) = p.split_once('?').map_or((p, None), |(a, b)| (a, Some(b)));
                let links: Vec<String> = crate::lang::switch_links(path, query, lang)
                    .into_iter()
                    .map(|l| {
                        if l.current {
                            format!(
                                "<span lang=\"{}\" aria-current=\"true\">{}</span>",
                                l.code, l.label
                            )
                        } else {
                            format!(
                                "<a href=\"{}\" lang=\"{}\" hreflang=\"{}\">{}</a>",
                                escape(&l.href),
                                l.code,
                                l.code,
                                l.label
                            )
                        }
                    })
                    .collect();
                format!(
                    "<nav class=\"lang-switch\" aria-label=\"Language / 言語\">{}</nav>",
                    links.join(" · ")
                )
            })
            .unwrap_or_default();
        let rid = if lang == Lang::Ja {
            "リクエスト ID"
        } else {
            "Request id"
        };
        page_in(
            lang,
            shown.title,
            &format!(
                "<p>{}</p>{link}<p class=\"rid\">{rid}: {}</p>{switch}",
                escape(&shown.message),
                escape(request_id)
            ),
        )
    }
}

/// An HTML error page waiting for its language (an extension of the response, taken off by
/// [`localize`]); JSON answers never carry one.
#[derive(Clone)]
struct ErrorPage {
    error: RequestError,
    request_id: String,
}

/// `Cookie` fields looked at for the language cookie (HTTP/2 may send one field per cookie).
const HINT_COOKIE_FIELDS: usize = 8;

/// What a request says about its reader's language, kept by the app before routing (cheap
/// reference-counted clones of a few header values, no allocation; nothing is parsed unless
/// an error page is drawn).
#[derive(Default)]
pub struct LangHint {
    path_and_query: Option<http::uri::PathAndQuery>,
    cookies: [Option<HeaderValue>; HINT_COOKIE_FIELDS],
    accept_language: Option<HeaderValue>,
}

impl LangHint {
    pub fn of(parts: &http::request::Parts) -> LangHint {
        LangHint {
            path_and_query: parts.uri.path_and_query().cloned(),
            cookies: {
                let mut c: [Option<HeaderValue>; HINT_COOKIE_FIELDS] = Default::default();
                for (slot, v) in c.iter_mut().zip(parts.headers.get_all(header::COOKIE)) {
                    *slot = Some(v.clone());
                }
                c
            },
            accept_language: parts.headers.get(header::ACCEPT_LANGUAGE).cloned(),
        }
    }
}

/// Redraws an error page in the reader's language (the switch `?lang=`, its cookie, else
/// `Accept-Language`), with the language switch; a switch sets the cookie. Other responses
/// pass untouched.
pub fn localize(resp: &mut Response<Body>, hint: &LangHint, secure: bool) {
    let Some(p) = resp.extensions_mut().remove::<ErrorPage>() else {
        return;
    };
    let pq = hint.path_and_query.as_ref();
    let query = pq.and_then(|p| p.query());
    let lang = Lang::choose(
        query,
        hint.cookies
            .iter()
            .flatten()
            .filter_map(|v| v.to_str().ok())
            .find_map(Lang::in_cookie_header),
        hint.accept_language.as_ref().and_then(|v| v.to_str().ok()),
    );
    let html = p.error.html(lang, &p.request_id, pq.map(|p| p.as_str()));
    *resp.body_mut() = body::full(html);
    let h = resp.headers_mut();
    h.remove(header::CONTENT_LENGTH);
    if let Some(l) = Lang::in_query(query)
        && let Ok(v) = HeaderValue::from_str(&crate::lang::lang_cookie(l, secure))
    {
        h.append(header::SET_COOKIE, v);
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

/// The pool's style sheet: the proxy's own pages look like the pool's (inline, as the
/// pages' policy allows only inline style).
const POOL_CSS: &str = include_str!("pool/templates/pool.css");

/// The page frame shared by our own pages (the pool's card and style), in English.
pub fn page(title: &str, inner: &str) -> String {
    page_in(Lang::En, title, inner)
}

/// The page frame in `lang`.
pub fn page_in(lang: Lang, title: &str, inner: &str) -> String {
    format!(
        "<!doctype html><html lang=\"{l}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"referrer\" content=\"no-referrer\"><title>{t}</title><style>{POOL_CSS}.rid{{color:#777;font-size:.85em}}a.button{{display:block;text-align:center;margin-top:1.2rem;padding:.7rem;border-radius:6px;background:var(--accent);color:#fff;text-decoration:none;font-weight:600}}</style></head><body class=\"page-error\"><main class=\"card\"><h1>{t}</h1>{inner}</main></body></html>",
        l = lang.code(),
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
