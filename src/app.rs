//! The whole service, built once from the configuration. A request passes, outer → inner:
//! 1. request id, the request's one authority (400 when the target and `Host` disagree) and
//!    path normalisation (400 for path tricks) — before anything reads the host or the path;
//! 2. reserved `/oauth2/` paths — answered here, never forwarded;
//! 3. route match on the request's one canonical host + normalised path (404 when none);
//! 4. the auth gate — strips identity headers, decides, injects identity;
//! 5. the forwarder — streams to the upstream; errors rendered by `error.rs`.

use std::sync::Arc;
use std::time::Instant;

use http::request::Parts;
use http::{Request, Response, Uri};
use hyper::upgrade::OnUpgrade;

use crate::auth::oidc::OidcProvider;
use crate::auth::{Auth, Verdict, append_cookies};
use crate::config::{Config, SessionSecrets};
use crate::error::RequestError;
use crate::http::body::{Body, RequestBody};
use crate::http::host::{Host, RequestHost};
use crate::http::negotiate::is_non_navigational;
use crate::http::normalize::normalize;
use crate::http::paths;
use crate::identity_headers::DataSigner;
use crate::metrics::{Decision, Metrics};
use crate::proxy::{Forwarder, Inbound, hop};
use crate::session::keyring::KeyRing;
use crate::session::principal::{Principals, ProviderFacts};
use crate::session::redis::Redis;
use crate::session::revocation::Revocations;
use crate::session::shards::CookieJar;
use crate::session::store::SessionStore;
use crate::signing::SigningKey;

/// Why the service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    SigningKey(#[from] crate::signing::SigningKeyError),
    #[error("session secret file {path}: {source}")]
    SecretFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no session secret configured")]
    NoSecret,
    #[error(transparent)]
    Pool(#[from] crate::pool::PoolError),
    #[error("session.redis_url: {0}")]
    Redis(#[from] crate::session::redis::Unavailable),
}

/// Most header fields a request may carry, whatever its HTTP version (hyper's HTTP/1 limit).
pub const MAX_HEADER_FIELDS: usize = 100;

/// What outlives a configuration reload: connections to shared stores, the revocation list,
/// and the header-signing key (so `x-amzn-oidc-data` keeps its `kid` unless the operator
/// changes `headers.signing_key_file` or the content of that file — a rotation).
#[derive(Clone)]
pub struct Shared {
    pub redis: Option<Arc<Redis>>,
    pub revocations: Arc<Revocations>,
    signing_key: Arc<SigningKey>,
    /// The key file and the SHA-256 of the content the key was read from.
    signing_key_source: Option<(std::path::PathBuf, [u8; 32])>,
}

impl Shared {
    /// Connects nothing yet: Redis is reached lazily.
    pub fn new(cfg: &Config) -> Result<Shared, BuildError> {
        let redis = redis(cfg)?;
        let revocations = revocations(cfg, redis.clone());
        let (signing_key, signing_key_source) = match &cfg.headers.signing_key_file {
            Some(f) => {
                let (key, fingerprint) = SigningKey::load_fingerprinted(f)?;
                (key, Some((f.clone(), fingerprint)))
            }
            None => (SigningKey::generate(), None),
        };
        Ok(Shared {
            redis,
            revocations,
            signing_key: Arc::new(signing_key),
            signing_key_source,
        })
    }

    /// The shared state for a reloaded configuration: the same stores; the signing key read
    /// again from `headers.signing_key_file` and replaced when the path or the file's content
    /// changed (a rotation: the next `x-amzn-oidc-data` is signed by the new key). A file
    /// that cannot be read or parsed rejects the reload, keeping the running key.
    pub fn for_reload(&self, cfg: &Config) -> Result<Shared, BuildError> {
        let mut next = self.clone();
        match (&cfg.headers.signing_key_file, &self.signing_key_source) {
            (None, None) => {}
            (None, Some(_)) => {
                next.signing_key = Arc::new(SigningKey::generate());
                next.signing_key_source = None;
            }
            (Some(f), old) => {
                let (key, fingerprint) = SigningKey::load_fingerprinted(f)?;
                let source = Some((f.clone(), fingerprint));
                if *old != source {
                    tracing::info!(
                        file = %f.display(),
                        kid = key.kid(),
                        previous_kid = self.signing_key.kid(),
                        "header-signing key reloaded"
                    );
                    next.signing_key = Arc::new(key);
                    next.signing_key_source = source;
                }
            }
        }
        Ok(next)
    }
}

pub struct App {
    pub cfg: Arc<Config>,
    pub shared: Shared,
    pub auth: Auth,
    pub metrics: Arc<Metrics>,
    forwarders: Vec<Forwarder>,
    request_ids: RequestIds,
    /// The built-in user pool (SPEC §7), when configured.
    pub pool: Option<Arc<crate::pool::Pool>>,
}

/// One request's context: created when it arrives, filled in as it passes the layers, read
/// once at the exit (metrics, access log).
struct Ctx {
    started: Instant,
    route: Option<usize>,
    decision: Decision,
    principal: Option<Arc<crate::session::principal::Principal>>,
    /// What the access log needs from the request head (only with `log.access`).
    access: Option<AccessFacts>,
}

/// The request-head facts of an access-log line: the path without its query string.
struct AccessFacts {
    method: http::Method,
    host: Option<String>,
    path: String,
}

impl AccessFacts {
    fn of(parts: &Parts) -> AccessFacts {
        let host = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            });
        AccessFacts {
            method: parts.method.clone(),
            host,
            path: parts.uri.path().to_string(),
        }
    }
}

/// A request id as ASCII hex.
struct RequestId([u8; 16]);

impl RequestId {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

/// Request ids: a random per-process prefix, the worker, and that worker's counter — unique,
/// cheap (no atomic shared between cores), not secret.
struct RequestIds {
    prefix: u32,
}

thread_local! {
    static REQUEST_COUNTER: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

impl RequestIds {
    /// 16 hex digits, formatted on the stack: 24 bits of prefix, 8 of worker, 32 of counter.
    fn next(&self) -> RequestId {
        let n = REQUEST_COUNTER.with(|c| {
            let n = c.get();
            c.set(n.wrapping_add(1));
            n
        });
        let worker = (crate::worker::index() & 0xff) as u64;
        let v = (u64::from(self.prefix >> 8) << 40) | (worker << 32) | u64::from(n);
        let mut buf = [0u8; 16];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = b"0123456789abcdef"[((v >> (60 - 4 * i)) & 0xf) as usize];
        }
        RequestId(buf)
    }
}

/// Loads the configured secrets, or the generated development secret (created on first use).
pub fn session_secrets(cfg: &Config) -> Result<Vec<crate::config::Secret>, BuildError> {
    match &cfg.session.secrets {
        SessionSecrets::Configured(list) if !list.is_empty() => Ok(list.clone()),
        SessionSecrets::Configured(_) => Err(BuildError::NoSecret),
        SessionSecrets::Generated(path) => {
            let err = |source| BuildError::SecretFile {
                path: path.display().to_string(),
                source,
            };
            let secret = match std::fs::read_to_string(path) {
                Ok(s) if s.trim().len() >= 32 => s.trim().to_string(),
                _ => {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir).map_err(err)?;
                    }
                    let s = crate::session::keyring::generate_secret();
                    write_private(path, &s).map_err(err)?;
                    s
                }
            };
            tracing::warn!(
                file = %path.display(),
                "no session.secrets configured: using a generated secret kept in this file. Production must set session.secrets (see `portcullis keygen`)"
            );
            Ok(vec![crate::config::Secret::new(secret)])
        }
    }
}

fn write_private(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(content.as_bytes())
}

/// The Redis connection, when `session.redis_url` / `redis_cluster_urls` is set. Its
/// connections are made on the runtime this is called from (the main one).
pub fn redis(cfg: &Config) -> Result<Option<Arc<Redis>>, BuildError> {
    let Some(target) = &cfg.session.redis else {
        return Ok(None);
    };
    let home = tokio::runtime::Handle::try_current()
        .map_err(|_| crate::session::redis::Unavailable("no async runtime".into()))?;
    Ok(Some(Redis::new(target, cfg.session.redis_timeout, home)?))
}

/// The revocation list: under `data_dir`, shared through Redis when configured.
pub fn revocations(cfg: &Config, redis: Option<Arc<Redis>>) -> Arc<Revocations> {
    Revocations::new(Some(cfg.data_dir.join("revocations.jsonl")), redis)
}

fn build_store(cfg: &Config, keyring: Arc<KeyRing>, shared: &Shared) -> SessionStore {
    let redis = shared.redis.clone();
    let revocations = shared.revocations.clone();
    let principals = Principals::new(
        cfg.providers
            .iter()
            .map(|p| ProviderFacts {
                name: p.name.clone(),
                groups_claim: p.groups_claim.clone(),
                issuer: p.issuer.clone(),
                client_id: p.client_id.clone(),
            })
            .collect(),
    );
    SessionStore::new(
        cfg.session.store,
        keyring,
        CookieJar::new(&cfg.session.cookie_name, cfg.secure_cookies()),
        principals,
        revocations,
        redis,
        cfg.server.workers,
    )
    .with_timeout(cfg.session.timeout)
}

impl App {
    /// Builds the service for a configuration (connects to nothing yet).
    pub fn build(cfg: Config) -> Result<App, BuildError> {
        let shared = Shared::new(&cfg)?;
        App::build_with(cfg, shared)
    }

    /// Builds the service for a reloaded configuration, keeping what outlives a reload.
    pub fn rebuild(&self, cfg: Config) -> Result<App, BuildError> {
        let shared = self.shared.for_reload(&cfg)?;
        App::build_with(cfg, shared)
    }

    fn build_with(cfg: Config, shared: Shared) -> Result<App, BuildError> {
        let cfg = Arc::new(cfg);
        let secrets = session_secrets(&cfg)?;
        let keyring = Arc::new(KeyRing::new(&secrets).map_err(|_| BuildError::NoSecret)?);
        let signer = DataSigner {
            key: shared.signing_key.clone(),
            format: cfg.headers.jwt_format,
            signer: cfg.headers.signer.clone(),
            forwarded_user: cfg.headers.forwarded_user,
            access_token: cfg.headers.access_token,
            forward_unverified_email: cfg.headers.insecure_forward_unverified_email,
        };
        let mut callback = cfg.public_url.clone();
        callback.set_path(paths::CALLBACK);
        let providers = cfg
            .providers
            .iter()
            .map(|p| {
                let mut p = p.clone();
                if p.name == "pool" && p.client_secret.is_none() {
                    p.client_secret = KeyRing::derive_secret(&secrets, "pool-client")
                        .map(crate::config::Secret::new);
                }
                let http = crate::auth::http_client::IdpClient::new(p.timeout);
                Arc::new(OidcProvider::new(p, &callback, http))
            })
            .collect();
        let route_names = cfg.routes.iter().map(|r| r.name.clone()).collect();
        let metrics = Arc::new(Metrics::with_workers(route_names, cfg.server.workers));
        let forwarders = cfg
            .routes
            .iter()
            .map(|r| Forwarder::new(r, cfg.server.workers))
            .collect();
        let store = Arc::new(build_store(&cfg, keyring.clone(), &shared));
        let pool = match &cfg.pool {
            Some(pc) => Some(Arc::new(
                crate::pool::Pool::new(&cfg, pc.clone(), &secrets)?.with_proxy_sessions(Arc::new(
                    crate::session::revocation::UserSessions::new(
                        store.revocations().clone(),
                        "pool",
                        cfg.session.timeout,
                    ),
                )),
            )),
            None => None,
        };
        let auth = Auth::new(
            cfg.clone(),
            providers,
            keyring,
            store,
            signer,
            metrics.clone(),
        );
        let mut p = [0u8; 4];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut p)
            .expect("system RNG available");
        Ok(App {
            cfg,
            shared,
            auth,
            metrics,
            forwarders,
            request_ids: RequestIds {
                prefix: u32::from_be_bytes(p),
            },
            pool,
        })
    }

    /// Discovers every provider once (readiness); failures are retried on use.
    pub async fn warm_up(&self) -> bool {
        let mut ok = true;
        for p in &self.auth.providers {
            ok &= p.warm_up().await;
        }
        ok
    }

    pub fn providers_ready(&self) -> Vec<(String, bool)> {
        self.auth
            .providers
            .iter()
            .map(|p| (p.name().to_string(), p.is_discovered()))
            .collect()
    }

    /// Handles one request from the public listener: one context for the request, one exit
    /// where it is counted and (with `log.access`) logged.
    pub async fn handle(&self, req: Request<RequestBody>, inbound: &Inbound) -> Response<Body> {
        let rid = self.request_ids.next();
        let (parts, body) = req.into_parts();
        let mut ctx = Ctx {
            // One clock reading per request: session times and latencies come from it.
            started: Instant::now(),
            route: None,
            decision: Decision::Internal,
            principal: None,
            access: self.cfg.log.access.then(|| AccessFacts::of(&parts)),
        };
        // Responses we generate carry the id (`X-Request-Id`, set by the error renderer);
        // proxied responses are the upstream's own.
        let hint = crate::error::LangHint::of(&parts);
        let mut resp = self
            .route(&mut ctx, parts, body, inbound, rid.as_str())
            .await;
        crate::error::localize(&mut resp, &hint, self.cfg.secure_cookies());
        self.metrics
            .request(ctx.route, ctx.decision, resp.status().as_u16());
        if let Some(facts) = &ctx.access {
            self.access_log(&ctx, facts, inbound, rid.as_str(), &resp);
        }
        resp
    }

    /// One line per request (SPEC §13): never a token, a cookie or the query string.
    fn access_log(
        &self,
        ctx: &Ctx,
        facts: &AccessFacts,
        inbound: &Inbound,
        rid: &str,
        resp: &Response<Body>,
    ) {
        let route = ctx.route.map(|i| self.cfg.routes[i].name.as_str());
        let bytes = http_body::Body::size_hint(resp.body()).exact();
        let sub = ctx.principal.as_ref().map(|p| p.session.sub.as_str());
        tracing::info!(
            target: "portcullis::access",
            request_id = rid,
            client = %inbound.peer.ip(),
            method = %facts.method,
            host = facts.host.as_deref().unwrap_or(""),
            path = %facts.path,
            status = resp.status().as_u16(),
            bytes,
            duration_ms = ctx.started.elapsed().as_secs_f64() * 1000.0,
            route,
            "auth.decision" = ctx.decision.as_str(),
            sub,
            "access"
        );
    }

    async fn route(
        &self,
        ctx: &mut Ctx,
        mut parts: Parts,
        body: RequestBody,
        inbound: &Inbound,
        rid: &str,
    ) -> Response<Body> {
        let peer = inbound.peer;
        let started = ctx.started;
        // HTTP/1 heads over the limit never get here (hyper answers 431); HTTP/2 and HTTP/3
        // header blocks are bounded in bytes only, so the field count is enforced here.
        if parts.headers.len() > MAX_HEADER_FIELDS {
            return self.reject(RequestError::HeadersTooLarge, &parts, rid);
        }
        // One authority per request: the target's (absolute-form, HTTP/2 `:authority`) and
        // `Host` must agree, canonically; computed once and kept in the request's extensions.
        // The upstream's `Host` is the canonical host the route is matched on.
        let request_host = match RequestHost::of(&parts, inbound.tls) {
            Ok(h) => h,
            Err(e) => return self.reject(RequestError::BadRequest(e.to_string()), &parts, rid),
        };
        if let Some(h) = &request_host.host
            && let Ok(v) = http::HeaderValue::from_str(h.as_str())
        {
            parts.headers.insert(http::header::HOST, v);
        }
        parts.extensions.insert(request_host);
        // 1. Normalise once; the normalised path is both matched and forwarded.
        match normalize(parts.uri.path(), self.cfg.encoded_slashes()) {
            Ok(None) => {}
            Ok(Some(p)) => {
                let pq = match parts.uri.query() {
                    Some(q) => format!("{p}?{q}"),
                    None => p,
                };
                let mut up = parts.uri.clone().into_parts();
                up.path_and_query = pq.parse().ok();
                match Uri::from_parts(up) {
                    Ok(u) => parts.uri = u,
                    Err(_) => {
                        return self.reject(
                            RequestError::BadRequest("malformed path".into()),
                            &parts,
                            rid,
                        );
                    }
                }
            }
            Err(e) => return self.reject(RequestError::BadRequest(e.to_string()), &parts, rid),
        }

        // 2. Reserved paths; the built-in pool's first (it is an OpenID Provider of its own).
        if let Some(pool) = &self.pool
            && pool.owns(parts.uri.path())
        {
            return pool.handle(&parts, body, peer.ip(), rid).await;
        }
        if parts.uri.path() == paths::BACKCHANNEL_LOGOUT {
            return self.backchannel_logout(&parts, body, rid).await;
        }
        if parts.uri.path().starts_with(paths::RESERVED_PREFIX) {
            return match self
                .auth
                .endpoint(&parts, parts.uri.path(), peer.ip(), rid)
                .await
            {
                Some(e) => {
                    ctx.route = e.route;
                    ctx.decision = e.decision;
                    e.response
                }
                None => RequestError::NotFound.render(rid, is_non_navigational(&parts.headers)),
            };
        }

        // A trusted proxy's `X-Forwarded-Host` goes upstream as it came: it must name the host
        // the route is matched on (one authority per request), or the request is refused.
        let trusted = self.auth.is_trusted(peer.ip());
        if trusted && let Err(e) = forwarded_host_agrees(&parts) {
            return self.reject(RequestError::BadRequest(e.to_string()), &parts, rid);
        }

        // 3. Route.
        let host = parts
            .extensions
            .get::<RequestHost>()
            .and_then(|h| h.host.as_ref())
            .map(Host::name);
        let Some(route) = self.auth.routes.find(host, parts.uri.path()) else {
            return self.reject(RequestError::NoRoute, &parts, rid);
        };
        let route_index = route.index;
        ctx.route = Some(route_index);

        // 4. The auth gate.
        let upgrade = if hop::wants_upgrade(&parts.headers) {
            parts.extensions.remove::<OnUpgrade>()
        } else {
            None
        };
        // Hop-by-hop headers go before the gate adds identity, so that a client cannot make us
        // drop a header we set by naming it in `Connection`.
        hop::remove(&mut parts.headers, upgrade.is_some());
        let set_cookie = match self.auth.gate(route, &mut parts, rid, started).await {
            Verdict::Respond { response, decision } => {
                ctx.decision = decision;
                return response;
            }
            Verdict::Forward {
                set_cookie,
                decision,
                principal,
            } => {
                ctx.decision = decision;
                ctx.principal = principal;
                set_cookie
            }
        };

        // 5. Forward (whether the peer is a trusted proxy was read from the running config).
        let json = is_non_navigational(&parts.headers);
        let mut resp = match self.forwarders[route_index]
            .forward(parts, body, inbound, trusted, upgrade, started)
            .await
        {
            Ok(r) => r,
            Err(e) => e.render(rid, json),
        };
        self.metrics
            .upstream_latency(route_index, started.elapsed());
        append_cookies(&mut resp, &set_cookie);
        resp
    }

    /// `POST /oauth2/backchannel-logout`: the form body read under a size limit.
    async fn backchannel_logout(
        &self,
        parts: &Parts,
        body: RequestBody,
        rid: &str,
    ) -> Response<Body> {
        use http_body_util::BodyExt;
        if parts.method != http::Method::POST {
            return RequestError::MethodNotAllowed.render(rid, true);
        }
        let form = match http_body_util::Limited::new(body, crate::auth::backchannel::MAX_BODY)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return RequestError::BadRequest(
                    "the logout request body is unreadable or too large".into(),
                )
                .render(rid, true);
            }
        };
        self.auth
            .backchannel_logout(&form, crate::session::now_unix())
            .await
    }

    fn reject(&self, e: RequestError, parts: &Parts, rid: &str) -> Response<Body> {
        e.render(rid, is_non_navigational(&parts.headers))
    }
}

/// A trusted proxy's `X-Forwarded-Host` (when it sends one) names the request's own host,
/// compared canonically by name; a malformed one is refused like a malformed `Host`.
fn forwarded_host_agrees(parts: &http::request::Parts) -> Result<(), crate::http::host::HostError> {
    let own = parts.extensions.get::<RequestHost>();
    let https = own.is_some_and(|h| h.https);
    match RequestHost::forwarded(&parts.headers, https)? {
        None => Ok(()),
        Some(f) => match own.and_then(|h| h.host.as_ref()) {
            Some(h) if h.name() == f.name() => Ok(()),
            _ => Err(crate::http::host::HostError::ForwardedConflict),
        },
    }
}
