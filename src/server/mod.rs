//! Listeners: the public ones (HTTP, or HTTPS with rustls; HTTP/1.1 and HTTP/2 on each) and the
//! admin one. Connections are watched so that SIGTERM stops accepting, lets in-flight requests
//! finish (up to `server.shutdown_grace`), then exits.

pub mod admin;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::app::App;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Binds every listener now (so bind errors surface before we report ready).
pub async fn bind(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, ServeError> {
    let mut out = Vec::new();
    for a in addrs {
        out.push(
            TcpListener::bind(a)
                .await
                .map_err(|source| ServeError::Bind { addr: *a, source })?,
        );
    }
    Ok(out)
}

fn builder(app: &App) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    let max = app.cfg.server.max_header_bytes;
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(max.max(8192))
        .max_headers(200);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(max as u32)
        .max_concurrent_streams(256);
    b
}

/// Serves the public listeners until `shutdown` resolves, then drains.
pub async fn serve(
    app: Arc<App>,
    listeners: Vec<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let acceptor = match &app.cfg.server.tls {
        Some(t) => Some(tls::acceptor(&t.cert, &t.key)?),
        None => None,
    };
    let graceful = Arc::new(GracefulShutdown::new());
    let builder = Arc::new(builder(&app));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for listener in listeners {
        let app = app.clone();
        let acceptor = acceptor.clone();
        let graceful = graceful.clone();
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = stop.changed() => break,
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let watcher = graceful.watcher();
                let builder = builder.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let tls = acceptor.is_some();
                    let svc = service_fn(move |req| {
                        let app = app.clone();
                        async move { Ok::<_, Infallible>(app.handle(req, peer, tls).await) }
                    });
                    match acceptor {
                        None => {
                            let conn =
                                builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                            let _ = watcher.watch(conn.into_owned()).await;
                        }
                        Some(acc) => {
                            let Ok(Ok(tls_stream)) =
                                tokio::time::timeout(Duration::from_secs(10), acc.accept(stream))
                                    .await
                            else {
                                tracing::debug!(%peer, "TLS handshake failed");
                                return;
                            };
                            let conn = builder
                                .serve_connection_with_upgrades(TokioIo::new(tls_stream), svc);
                            let _ = watcher.watch(conn.into_owned()).await;
                        }
                    }
                });
            }
        }));
    }
    shutdown.await;
    tracing::info!("shutting down: no new connections; draining in-flight requests");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let grace = app.cfg.server.shutdown_grace;
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        return Ok(());
    };
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "drain timed out; closing remaining connections"
        );
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
