//! Listeners: the public ones (HTTP, or HTTPS with rustls; HTTP/1.1 and HTTP/2 on each) and the
//! admin one. Connections are watched so that SIGTERM stops accepting, lets in-flight requests
//! finish (up to `server.shutdown_grace`), then exits.

pub mod admin;
pub mod h1;
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
use crate::http::body::RequestBody;
use crate::live::Live;

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

/// A listening socket with `SO_REUSEPORT`, so that every request worker can have its own
/// socket on the same address and the kernel spreads connections evenly among them.
fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Binds every listener now (so bind errors surface before we report ready).
pub fn bind(addrs: &[SocketAddr]) -> Result<Vec<std::net::TcpListener>, ServeError> {
    addrs
        .iter()
        .map(|a| reuseport_listener(*a).map_err(|source| ServeError::Bind { addr: *a, source }))
        .collect()
}

fn builder(app: &App) -> Builder<TokioExecutor> {
    // Listener settings are restart-only (see `live`): read once per worker.
    let mut b = Builder::new(TokioExecutor::new());
    let max = app.cfg.server.max_header_bytes;
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(app.cfg.server.header_read_timeout)
        .max_buf_size(max.max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(max as u32)
        .max_concurrent_streams(256);
    b
}

/// Starts `app.cfg.server.workers` request workers: one OS thread each, with its own
/// single-threaded runtime accepting on every public listener. A connection, its requests and
/// its upstream connections then stay on one thread — no work stealing, no cross-thread
/// wake-ups on the hot path (the nginx worker model). They stop accepting when `stop` turns
/// true, drain (up to `server.shutdown_grace`), and return.
pub fn spawn_workers(
    live: Arc<Live>,
    listeners: Vec<std::net::TcpListener>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<std::thread::JoinHandle<()>>, ServeError> {
    let app = live.load();
    let acceptor = match &app.cfg.server.tls {
        Some(t) => Some(tls::acceptor(&t.cert, &t.key)?),
        None => None,
    };
    let mut handles = Vec::new();
    for index in 1..=app.cfg.server.workers {
        // Worker 1 takes the sockets bound at start-up; the others bind their own on the
        // same (now concrete) addresses.
        let mut mine = Vec::new();
        for l in &listeners {
            let addr = l.local_addr().map_err(|source| ServeError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
            let sock = if index == 1 {
                l.try_clone()
            } else {
                reuseport_listener(addr)
            };
            mine.push(sock.map_err(|source| ServeError::Bind { addr, source })?);
        }
        let live = live.clone();
        let acceptor = acceptor.clone();
        let stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("portcullis-worker-{index}"))
            .spawn(move || {
                crate::worker::set_index(index);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread tokio runtime builds");
                rt.block_on(worker(live, mine, acceptor, stop));
            })
            .expect("spawning a worker thread");
        handles.push(handle);
    }
    Ok(handles)
}

async fn worker(
    live: Arc<Live>,
    listeners: Vec<std::net::TcpListener>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let app = live.load();
    let graceful = Arc::new(GracefulShutdown::new());
    let builder = Arc::new(builder(&app));
    let lean_stop = Arc::new(h1::Stop::default());
    let limits = Arc::new(h1::Limits {
        header_read_timeout: app.cfg.server.header_read_timeout,
        max_head: app.cfg.server.max_header_bytes.max(8192),
    });
    let mut tasks = Vec::new();
    for std_listener in listeners {
        let listener = match TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot register a listener");
                continue;
            }
        };
        let live = live.clone();
        let acceptor = acceptor.clone();
        let graceful = graceful.clone();
        let builder = builder.clone();
        let mut stop = stop.clone();
        let lean_stop = lean_stop.clone();
        let limits = limits.clone();
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
                let live = live.clone();
                let watcher = graceful.watcher();
                let builder = builder.clone();
                let acceptor = acceptor.clone();
                let lean_stop = lean_stop.clone();
                let limits = limits.clone();
                tokio::spawn(async move {
                    // Per connection, so that a request clones a reference count no other
                    // thread touches. The configuration is read per request (a reload applies
                    // to open connections too).
                    let inbound = crate::proxy::Inbound::new(peer, acceptor.is_some());
                    let conn = Arc::new((live, inbound));
                    let svc = {
                        let conn = conn.clone();
                        service_fn(move |req: http::Request<hyper::body::Incoming>| {
                            let conn = conn.clone();
                            async move {
                                let req = req.map(RequestBody::Incoming);
                                let app = conn.0.load();
                                Ok::<_, Infallible>(app.handle(req, &conn.1).await)
                            }
                        })
                    };
                    match acceptor {
                        None => {
                            // Plain HTTP: simple requests are served by the lean path; the
                            // first one it does not serve hands the connection to hyper. The
                            // watcher is held throughout, so a drain waits for both.
                            let mut stream = stream;
                            let prefix =
                                match h1::serve(&mut stream, &conn, &limits, &lean_stop).await {
                                    h1::Outcome::Closed => return,
                                    h1::Outcome::HandOff(prefix) => prefix,
                                };
                            let io = TokioIo::new(h1::Rewind::new(prefix, stream));
                            let conn = builder.serve_connection_with_upgrades(io, svc);
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
    for t in tasks {
        let _ = t.await;
    }
    lean_stop.trigger();
    let grace = app.cfg.server.shutdown_grace;
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        return;
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
}

/// Serves the public listeners on the request workers until `shutdown` resolves, then drains.
pub async fn serve(
    live: Arc<Live>,
    listeners: Vec<std::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let handles = spawn_workers(live, listeners, stop_rx)?;
    shutdown.await;
    tracing::info!("shutting down: no new connections; draining in-flight requests");
    let _ = stop_tx.send(true);
    let _ = tokio::task::spawn_blocking(move || {
        for h in handles {
            let _ = h.join();
        }
    })
    .await;
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
