//! The admin listener (default 127.0.0.1:9901, never a public address): `/healthz`,
//! `/readyz` (providers discovered, stores reachable) and `/metrics` (Prometheus).

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

fn plain(status: StatusCode, content_type: &'static str, text: String) -> Response<Body> {
    let mut r = Response::new(body::full(text));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
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
            if let Some(pool) = &app.pool {
                let ok = pool.database_ok().await;
                ready &= ok;
                lines.push_str(&format!(
                    "pool database: {}\n",
                    if ok { "ok" } else { "unreachable" }
                ));
            }
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
            app.metrics.render(),
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
pub async fn serve(app: Arc<App>, listener: TcpListener) {
    let builder = Arc::new(Builder::new(TokioExecutor::new()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(app, req).await) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
