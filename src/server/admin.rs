//! The admin listener (default 127.0.0.1:9901, never a public address): `/healthz`,
//! `/readyz` (providers discovered, stores reachable), `/metrics` (Prometheus), and the admin
//! JSON APIs (`/sessions/…`, `/pool/…`) behind `Authorization: Bearer {server.admin_token}`
//! (no token configured: 404; none sent: 401; a wrong one: 403; `pool.admin_token` is also
//! accepted for `/pool/…`).

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;

use crate::app::App;
use crate::http::body::{self, Body};
use crate::http::paths;
use crate::live::Live;

fn plain(status: StatusCode, content_type: &'static str, text: String) -> Response<Body> {
    let mut r = Response::new(body::full(text));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut r = plain(status, "application/json", v.to_string());
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The bearer check of the admin JSON APIs; `Err` is the response to send.
fn authorize(
    app: &App,
    req: &Request<Incoming>,
    pool_api: bool,
) -> Result<(), Box<Response<Body>>> {
    let mut tokens: Vec<&crate::config::Secret> = Vec::new();
    if let Some(t) = &app.cfg.server.admin_token {
        tokens.push(t);
    }
    if pool_api && let Some(t) = app.pool.as_ref().and_then(|p| p.cfg.admin_token.as_ref()) {
        tokens.push(t);
    }
    if tokens.is_empty() {
        return Err(Box::new(json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "disabled", "message": "the admin API is off: set server.admin_token"}),
        )));
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else {
        let mut r = json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "unauthorized", "message": "Authorization: Bearer <server.admin_token> required"}),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"portcullis-admin\""),
        );
        return Err(Box::new(r));
    };
    if tokens
        .iter()
        .any(|t| crate::pool::ct_eq(given.as_bytes(), t.expose().as_bytes()))
    {
        Ok(())
    } else {
        Err(Box::new(json(
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": "forbidden", "message": "the bearer token is not valid"}),
        )))
    }
}

/// `POST /sessions/revoke` `{"provider": "...", "sub": "..."}`: ends every session of the user.
async fn sessions_api(app: &App, req: Request<Incoming>) -> Response<Body> {
    use http_body_util::BodyExt;
    if req.uri().path() != paths::ADMIN_SESSIONS_REVOKE {
        return json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "not_found"}),
        );
    }
    if req.method() != http::Method::POST {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({"error": "method_not_allowed", "message": "use POST"}),
        );
    }
    let body = match http_body_util::Limited::new(req.into_body(), 16 * 1024)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "invalid_request", "message": "the body is missing or larger than 16 KiB"}),
            );
        }
    };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).filter(|s| !s.is_empty());
    let (Some(provider), Some(sub)) = (field("provider"), field("sub")) else {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "invalid_request", "message": "JSON with non-empty \"provider\" and \"sub\" strings required"}),
        );
    };
    if app.cfg.provider_index(provider).is_none() {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "invalid_request", "message": format!("no provider named {provider:?} is configured")}),
        );
    }
    match app
        .auth
        .store
        .revoke_subject(provider, sub, app.cfg.session.timeout)
        .await
    {
        Ok(()) => {
            tracing::info!(
                provider,
                "auth.decision" = "revoke",
                "every session of a user revoked (admin API)"
            );
            json(
                StatusCode::OK,
                serde_json::json!({"revoked": true, "provider": provider, "sub": sub}),
            )
        }
        Err(e) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "session_store_unavailable", "message": format!("revoked on this replica only: {e}")}),
        ),
    }
}

/// Every route of the admin listener's [`handle`] (kept equal to its `match` by the unit test
/// below): the probes and metrics answer anyone who can reach the listener; `/sessions/…` and
/// `/pool/…` need the admin token before anything else is read.
#[doc(hidden)]
pub const ROUTES: &[crate::surface::Route] = {
    use crate::surface::Route as R;
    &[
        R::exact("*", paths::HEALTHZ),
        R::exact("*", paths::READYZ),
        R::exact("*", paths::METRICS),
        R::prefix("*", paths::ADMIN_SESSIONS_PREFIX),
        R::prefix("*", paths::ADMIN_POOL_PREFIX),
    ]
};

async fn handle(live: Arc<Live>, mut req: Request<Incoming>) -> Response<Body> {
    let app = live.load();
    let path = req.uri().path().to_string();
    if path.starts_with(paths::ADMIN_SESSIONS_PREFIX) {
        return match authorize(&app, &req, false) {
            Ok(()) => sessions_api(&app, req).await,
            Err(r) => *r,
        };
    }
    if path.starts_with(paths::ADMIN_POOL_PREFIX) {
        if app.pool.is_none() {
            return plain(
                StatusCode::NOT_FOUND,
                "text/plain",
                "no [pool] is configured\n".into(),
            );
        }
        if let Err(r) = authorize(&app, &req, true) {
            return *r;
        }
        req.extensions_mut().insert(crate::http::AdminAuthorized);
    }
    match path.as_str() {
        paths::HEALTHZ => plain(StatusCode::OK, "text/plain", "ok\n".into()),
        paths::READYZ => {
            // Try discovery for any provider not yet discovered, so readiness recovers on its own.
            app.warm_up().await;
            let mut lines = String::new();
            let mut ready = true;
            for (name, ok) in app.providers_ready() {
                ready &= ok;
                lines.push_str(&format!(
                    "provider {name}: {}\n",
                    if ok { "ok" } else { "not discovered" }
                ));
            }
            if let Some(ok) = app.auth.store.ready().await {
                ready &= ok;
                lines.push_str(&format!(
                    "redis: {}\n",
                    if ok { "ok" } else { "unreachable" }
                ));
            }
            if let Some(pool) = &app.pool {
                let ok = pool.database_ok().await;
                ready &= ok;
                lines.push_str(&format!(
                    "pool database: {}\n",
                    if ok { "ok" } else { "unreachable" }
                ));
            }
            let (group_lines, groups_ok) = app.groups.readiness();
            ready &= groups_ok;
            lines.push_str(&group_lines);
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            plain(status, "text/plain", lines)
        }
        paths::METRICS => plain(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            app.metrics.render() + &app.groups.render_metrics() + &live.render_metrics(),
        ),
        p if p.starts_with("/pool/") => match &app.pool {
            Some(pool) => pool.admin_api(req).await,
            None => plain(
                StatusCode::NOT_FOUND,
                "text/plain",
                "no [pool] is configured\n".into(),
            ),
        },
        _ => plain(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Serves the admin listener until the process exits.
pub async fn serve(live: Arc<Live>, listener: TcpListener) {
    let builder = Arc::new(Builder::new(TokioExecutor::new()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let live = live.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let live = live.clone();
                async move { Ok::<_, Infallible>(handle(live, req).await) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

#[cfg(test)]
mod route_table {
    use crate::http::paths;
    use crate::surface::{Arm, arms, declared, token_in};

    #[test]
    fn routes_name_exactly_the_arms_of_the_dispatcher() {
        let names = [
            ("paths::HEALTHZ", paths::HEALTHZ),
            ("paths::READYZ", paths::READYZ),
            ("paths::METRICS", paths::METRICS),
            ("paths::ADMIN_SESSIONS_PREFIX", paths::ADMIN_SESSIONS_PREFIX),
        ];
        let token = token_in(&names);
        let src = include_str!("admin.rs");
        let mut want = arms(src, "    match path.as_str() {");
        // The sessions API is answered (behind the token) before the `match`.
        assert!(src.contains("if path.starts_with(paths::ADMIN_SESSIONS_PREFIX) {"));
        want.push(Arm {
            token: "paths::ADMIN_SESSIONS_PREFIX".into(),
            prefix: true,
            methods: "*".into(),
        });
        want.sort();
        assert_eq!(declared(super::ROUTES, token), want);
    }
}
