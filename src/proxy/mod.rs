//! Forwarding to a route's upstream: `http(s)://` through a pooled hyper client, or a static
//! `file://` directory. Bodies stream in both directions, never buffered; WebSocket (and any
//! HTTP/1.1) upgrades are spliced through; hop-by-hop headers go; `X-Forwarded-*` are set.
//! Upstream connect failure → 502, no response headers within the route timeout → 504.

pub mod balancer;
pub mod h1;
pub mod hop;
pub mod static_files;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, header};
use http_body::Body as _;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::config::{RouteConfig, Upstream};
use crate::error::RequestError;
use crate::http::body::{self, Body, RequestBody};
use crate::http::headers::*;
use static_files::StaticDir;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

pub struct HttpUpstream {
    /// One pool per request worker (see `worker::index`): bodies, upgrades, TLS.
    clients: Vec<HttpsClient>,
    /// The lean in-task client for plain `http://` upstreams (requests without a body).
    lean: Option<Arc<h1::H1Pool>>,
    scheme: Scheme,
    authority: Authority,
    /// Base path without a trailing slash ("" for none), prefixed to every request path.
    base_path: String,
    timeout: Duration,
}

pub enum Forwarder {
    Http(Box<HttpUpstream>),
    File(StaticDir),
    /// `target_group` / `forward`: targets chosen per request.
    Groups(Box<balancer::Balanced>),
}

/// Facts about the inbound connection the forwarded headers are derived from, computed once
/// per connection.
pub struct Inbound {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The peer's address as an `X-Forwarded-For` entry.
    peer_value: HeaderValue,
}

impl Inbound {
    pub fn new(peer: SocketAddr, tls: bool) -> Inbound {
        let peer_value = HeaderValue::from_str(&peer.ip().to_string())
            .expect("an IP address is a valid header value");
        Inbound {
            peer,
            tls,
            peer_value,
        }
    }
}

pub(crate) fn tls_config(
    insecure: bool,
    ca_file: Option<&std::path::Path>,
) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let cfg = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = crate::auth::http_client::root_store();
        if let Some(f) = ca_file {
            crate::auth::http_client::add_pem_file(&mut roots, f);
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    // ALPN is set by hyper-rustls from `enable_http1`.
    cfg
}

/// `insecure_skip_upstream_tls_verify`: accepts any upstream certificate (still checks the
/// handshake signature). Only for upstreams on a trusted network.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl HttpUpstream {
    /// One upstream base URL (`scheme://authority[/base]`) with its client pools.
    pub fn new(
        base: &url::Url,
        tls: &rustls::ClientConfig,
        connect_timeout: Duration,
        timeout: Duration,
        workers: usize,
    ) -> HttpUpstream {
        let clients = (0..=workers)
            .map(|_| {
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_connect_timeout(Some(connect_timeout));
                http.set_nodelay(true);
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls.clone())
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(http);
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .pool_max_idle_per_host(256)
                    .build(https)
            })
            .collect();
        let scheme = if base.scheme() == "https" {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let host = base.host_str().unwrap_or("localhost");
        let authority = match base.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let authority = Authority::try_from(authority.as_str())
            .expect("validated upstream URL has an authority");
        let lean = (scheme == Scheme::HTTP).then(|| {
            Arc::new(h1::H1Pool::new(
                host,
                base.port_or_known_default().unwrap_or(80),
                connect_timeout,
                workers,
            ))
        });
        HttpUpstream {
            clients,
            lean,
            scheme,
            authority,
            base_path: base.path().trim_end_matches('/').to_string(),
            timeout,
        }
    }

    /// Sends a prepared request (forwarded headers set). `retry`: the request has no body and
    /// no upgrade and may be sent again elsewhere: when the connection is refused, the error
    /// comes back with the request head, `Err((_, Some(parts)))`.
    pub async fn send(
        &self,
        mut parts: Parts,
        body: RequestBody,
        upgrade: Option<hyper::upgrade::OnUpgrade>,
        started: std::time::Instant,
        retry: bool,
    ) -> Result<Response<Body>, (RequestError, Option<Parts>)> {
        let up = self;
        let keep_upgrade = upgrade.is_some();
        let worker = crate::worker::index();
        if let Some(lean) = &up.lean
            && !keep_upgrade
            && body.is_end_stream()
            && lean.serves(worker)
        {
            let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let target = if up.base_path.is_empty() {
                std::borrow::Cow::Borrowed(pq)
            } else {
                std::borrow::Cow::Owned(format!("{}{}", up.base_path, pq))
            };
            let sent = lean.request(worker, &parts.method, &target, &parts.headers, started);
            let deadline = tokio::time::Instant::from_std(started + up.timeout);
            let resp = match tokio::time::timeout_at(deadline, sent).await {
                Err(_) => return Err((RequestError::UpstreamTimeout, None)),
                Ok(Err(e @ h1::H1Error::Connect(_))) if retry => {
                    return Err((
                        RequestError::UpstreamUnreachable(e.to_string()),
                        Some(parts),
                    ));
                }
                Ok(Err(e)) => return Err((RequestError::UpstreamUnreachable(e.to_string()), None)),
                Ok(Ok(r)) => r,
            };
            let (mut rparts, rbody) = resp.into_parts();
            hop::remove(&mut rparts.headers, false);
            return Ok(Response::from_parts(rparts, body::upstream(rbody)));
        }
        // Only a request that may go elsewhere keeps a copy of its head (no body, no upgrade).
        let spare = retry.then(|| {
            let mut copy = Request::new(()).into_parts().0;
            copy.method = parts.method.clone();
            copy.uri = parts.uri.clone();
            copy.version = parts.version;
            copy.headers = parts.headers.clone();
            copy
        });
        // Without a base path the (already normalised) path-and-query is reused as is: a
        // refcount bump, no copy.
        let pq = match (up.base_path.is_empty(), parts.uri.path_and_query()) {
            (true, Some(pq)) => pq.clone(),
            (_, pq) => {
                let pq = pq.map(|p| p.as_str()).unwrap_or("/");
                PathAndQuery::try_from(format!("{}{}", up.base_path, pq))
                    .map_err(|e| (RequestError::BadRequest(e.to_string()), None))?
            }
        };
        parts.uri = Uri::builder()
            .scheme(up.scheme.clone())
            .authority(up.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|e| (RequestError::BadRequest(e.to_string()), None))?;
        parts.version = http::Version::HTTP_11;
        let client_body = ClientBody::new(body);
        let client_failed = client_body.failed.clone();
        let req = Request::from_parts(parts, body::stream(client_body));
        let client = &up.clients[crate::worker::index().min(up.clients.len() - 1)];
        let resp = match tokio::time::timeout(up.timeout, client.request(req)).await {
            Err(_) => return Err((RequestError::UpstreamTimeout, None)),
            // The client's own body broke (a malformed chunk, a cut connection): its fault,
            // not the upstream's (issue 9, item 5: this was a 502).
            Ok(Err(_)) if client_failed.load(std::sync::atomic::Ordering::Relaxed) => {
                return Err((
                    RequestError::BadRequest(
                        "the request body is malformed or was cut short".into(),
                    ),
                    None,
                ));
            }
            Ok(Err(e)) => {
                let spare = if e.is_connect() { spare } else { None };
                return Err((RequestError::UpstreamUnreachable(error_chain(&e)), spare));
            }
            Ok(Ok(r)) => r,
        };
        let (mut rparts, rbody) = resp.into_parts();
        if rparts.status == http::StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = upgrade else {
                return Err((
                    RequestError::UpstreamUnreachable("unexpected 101 from upstream".into()),
                    None,
                ));
            };
            let resp = Response::from_parts(rparts.clone(), rbody);
            let upstream_upgrade = hyper::upgrade::on(resp);
            tokio::spawn(async move {
                let (Ok(client), Ok(server)) = (client_upgrade.await, upstream_upgrade.await)
                else {
                    tracing::debug!("upgrade did not complete");
                    return;
                };
                let mut client = TokioIo::new(client);
                let mut server = TokioIo::new(server);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
            return Ok(Response::from_parts(rparts, body::empty()));
        }
        hop::remove(&mut rparts.headers, false);
        Ok(Response::from_parts(rparts, body::stream(rbody)))
    }
}

impl Forwarder {
    /// `workers`: request worker threads; each gets its own connection pool (index 0 serves
    /// any other thread), so an upstream connection is only ever driven by one thread.
    /// `groups`: the running target groups (for `target_group` / `forward` routes).
    pub fn new(
        route: &RouteConfig,
        upstream: &Upstream,
        workers: usize,
        groups: &balancer::Groups,
        sticky: &balancer::sticky::Sealer,
    ) -> Forwarder {
        match upstream {
            Upstream::File(dir) => Forwarder::File(StaticDir::new(dir.clone())),
            Upstream::Http {
                base,
                insecure_skip_verify,
                ca_file,
            } => {
                let tls = tls_config(*insecure_skip_verify, ca_file.as_deref());
                Forwarder::Http(Box::new(HttpUpstream::new(
                    base,
                    &tls,
                    route.connect_timeout,
                    route.timeout,
                    workers,
                )))
            }
            Upstream::Groups(f) => {
                let tls = tls_config(f.insecure_skip_verify, f.ca_file.as_deref());
                Forwarder::Groups(Box::new(balancer::Balanced::new(
                    route, f, groups, &tls, workers, sticky,
                )))
            }
        }
    }

    /// Forwards a request whose headers the auth gate has already prepared.
    pub async fn forward(
        &self,
        mut parts: Parts,
        body: crate::http::body::RequestBody,
        inbound: &Inbound,
        trusted: bool,
        upgrade: Option<hyper::upgrade::OnUpgrade>,
        started: std::time::Instant,
    ) -> Result<Response<Body>, RequestError> {
        if let Forwarder::File(dir) = self {
            return dir.serve(&parts.method, parts.uri.path()).await;
        }
        // Hop-by-hop headers were removed before the auth gate (`App::route`).
        set_forwarded(&mut parts, inbound, trusted);

        // The client's host, as ALB does — in its canonical spelling, the one the route was
        // matched on (`App::route` replaced `Host` with it); the URI only picks the connection.
        if !parts.headers.contains_key(header::HOST)
            && let Some(a) = parts.uri.authority()
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            parts.headers.insert(header::HOST, v);
        }
        match self {
            Forwarder::File(_) => Err(RequestError::NotFound),
            Forwarder::Http(up) => up
                .send(parts, body, upgrade, started, false)
                .await
                .map_err(|(e, _)| e),
            Forwarder::Groups(b) => b.forward(parts, body, upgrade, started).await,
        }
    }
}

/// The client's request body on its way upstream, remembering whether it failed, so that a
/// broken client body is answered 400 rather than blamed on the upstream.
struct ClientBody {
    inner: crate::http::body::RequestBody,
    failed: Arc<std::sync::atomic::AtomicBool>,
}

impl ClientBody {
    fn new(inner: crate::http::body::RequestBody) -> ClientBody {
        ClientBody {
            inner,
            failed: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }
}

impl http_body::Body for ClientBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Err(_))) = &polled {
            this.failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `X-Forwarded-For` is appended with the peer; `-Proto` and `-Host` are ours unless the peer
/// is a trusted proxy (`trusted`, decided per request by the running configuration) that
/// already set them.
fn set_forwarded(parts: &mut Parts, inbound: &Inbound, trusted: bool) {
    let h = &mut parts.headers;
    // Appended, as ALB does: only the right-most entry is ours and trustworthy.
    let xff = match h.get(X_FORWARDED_FOR).map(|v| v.as_bytes().trim_ascii()) {
        Some(prev) if !prev.is_empty() => {
            let peer = inbound.peer_value.as_bytes();
            let mut v = Vec::with_capacity(prev.len() + 2 + peer.len());
            v.extend_from_slice(prev);
            v.extend_from_slice(b", ");
            v.extend_from_slice(peer);
            HeaderValue::from_maybe_shared(bytes::Bytes::from(v)).ok()
        }
        _ => Some(inbound.peer_value.clone()),
    };
    if let Some(v) = xff {
        h.insert(X_FORWARDED_FOR, v);
    }
    if !(trusted && h.contains_key(X_FORWARDED_PROTO)) {
        h.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if inbound.tls { "https" } else { "http" }),
        );
    }
    if !(trusted && h.contains_key(X_FORWARDED_HOST)) {
        let host = h.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        match host {
            Some(v) => {
                h.insert(X_FORWARDED_HOST, v);
            }
            None => {
                h.remove(X_FORWARDED_HOST);
            }
        }
    }
}
