//! The whole service, built once from the configuration. A request passes, outer → inner:
//! 1. request id, the request's one authority (400 when the target and `Host` disagree) and
//!    path normalisation (400 for path tricks) — before anything reads the host or the path;
//! 2. reserved `/oauth2/` paths — answered here, never forwarded;
//! 3. route match on the request's one canonical host + normalised path (404 when none);
//! 4. the auth gate — strips identity headers, decides, injects identity;
//! 5. the forwarder — streams to the upstream; errors rendered by `error.rs`.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::request::Parts;
use http::{Request, Response, Uri};
use hyper::upgrade::OnUpgrade;

use crate::auth::oidc::OidcProvider;
use crate::auth::{Auth, Verdict, append_cookies};
use crate::config::{Config, SessionSecrets};
use crate::error::RequestError;
use crate::http::body::{Body, RequestBody};
use crate::http::context::{RequestContext, RequestIds};
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
use crate::trace::Trace;
use crate::trace::otlp::{self, RequestSpan};

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
    #[error(transparent)]
    Tracing(#[from] otlp::StartError),
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
    /// Target health and counters, kept across reloads.
    pub targets: Arc<crate::proxy::balancer::Registry>,
    /// The OTLP span exporter (`[tracing]`), kept across reloads that do not change it.
    pub otlp: Option<Arc<otlp::Exporter>>,
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
        let otlp = match &cfg.tracing {
            Some(t) => Some(Arc::new(otlp::Exporter::start(t)?)),
            None => None,
        };
        Ok(Shared {
            redis,
            revocations,
            signing_key: Arc::new(signing_key),
            signing_key_source,
            targets: Arc::default(),
            otlp,
        })
    }

    /// The shared state for a reloaded configuration: the same stores; the signing key read
    /// again from `headers.signing_key_file` and replaced when the path or the file's content
    /// changed (a rotation: the next `x-amzn-oidc-data` is signed by the new key). A file
    /// that cannot be read or parsed rejects the reload, keeping the running key.
    pub fn for_reload(&self, cfg: &Config) -> Result<Shared, BuildError> {
        let mut next = self.clone();
        if next.otlp.as_ref().map(|x| &x.config) != cfg.tracing.as_ref() {
            next.otlp = match &cfg.tracing {
                Some(t) => Some(Arc::new(otlp::Exporter::start(t)?)),
                None => None,
            };
        }
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
    /// One per route; `None` for a route that answers by itself (redirect, fixed response).
    forwarders: Vec<Option<Forwarder>>,
    /// The target groups of this configuration (health, counters).
    pub groups: crate::proxy::balancer::Groups,
    /// Each route's upstream as a span names it (scheme and authority; no credentials).
    upstream_targets: Vec<Option<String>>,
    request_ids: RequestIds,
    /// The built-in user pool (docs/src/pool/index.md), when configured.
    pub pool: Option<Arc<crate::pool::Pool>>,
}

/// What a request became, filled in as it passes the layers and read once at the exit
/// (metrics, access log, span); what it was when it arrived is its [`RequestContext`].
struct Ctx {
    route: Option<usize>,
    decision: Decision,
    principal: Option<Arc<crate::session::principal::Principal>>,
    /// What the access log and the span need from the request head (only with `log.access`
    /// or `[tracing]`).
    access: Option<AccessFacts>,
    /// The request's span (only with `[tracing]`).
    span: Option<RequestSpan>,
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
        let groups = crate::proxy::balancer::Groups::new(
            &cfg.target_groups,
            &shared.targets,
            cfg.server.workers,
        );
        let sealer =
            crate::proxy::balancer::sticky::Sealer::new(keyring.clone(), cfg.secure_cookies());
        let forwarders = cfg
            .routes
            .iter()
            .map(|r| match &r.action {
                crate::config::Action::Forward(u) => {
                    Some(Forwarder::new(r, u, cfg.server.workers, &groups, &sealer))
                }
                _ => None,
            })
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
        let upstream_targets = cfg
            .routes
            .iter()
            .map(|r| upstream_target(&cfg, r))
            .collect();
        Ok(App {
            cfg,
            shared,
            auth,
            metrics,
            forwarders,
            groups,
            upstream_targets,
            request_ids: RequestIds::random(),
            pool,
        })
    }

    /// Starts this configuration's background work: the target groups' health checks (their
    /// `https://` checks trust what the first route forwarding to the group trusts).
    pub fn start_health_checks(&self) {
        self.groups.start(|gi| {
            let f = self.cfg.routes.iter().find_map(|r| match &r.action {
                crate::config::Action::Forward(crate::config::Upstream::Groups(f))
                    if f.groups.iter().any(|(g, _)| *g == gi) =>
                {
                    Some(f)
                }
                _ => None,
            });
            crate::proxy::tls_config(
                f.is_some_and(|f| f.insecure_skip_verify),
                f.and_then(|f| f.ca_file.as_deref()),
            )
        });
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
    /// where it is counted and (with `log.access`) logged and (with `[tracing]`) its span ended.
    pub async fn handle(&self, req: Request<RequestBody>, inbound: &Inbound) -> Response<Body> {
        let (parts, body) = req.into_parts();
        // One clock reading per request: session times and latencies come from it.
        let started = Instant::now();
        let wall = SystemTime::now();
        let client = inbound.peer.ip();
        let trusted_peer = self.auth.is_trusted(client);
        let unix = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut trace = Trace::begin(&parts.headers, trusted_peer, unix);
        let span = self
            .shared
            .otlp
            .as_ref()
            .map(|x| x.start_span(&mut trace, wall));
        let rq = RequestContext {
            id: self.request_ids.next(),
            client,
            trusted_peer,
            json: is_non_navigational(&parts.headers),
            started,
            wall,
            trace,
        };
        let mut ctx = Ctx {
            route: None,
            decision: Decision::Internal,
            principal: None,
            access: (self.cfg.log.access || span.is_some()).then(|| AccessFacts::of(&parts)),
            span,
        };
        // Responses we generate carry the id (`X-Request-Id`, set by the error renderer);
        // proxied responses are the upstream's own.
        let hint = crate::error::LangHint::of(&parts);
        let mut resp = self.route(&rq, &mut ctx, parts, body, inbound).await;
        crate::error::localize(&mut resp, &hint, self.cfg.secure_cookies());
        let status = resp.status().as_u16();
        self.metrics.request(ctx.route, ctx.decision, status);
        if let Some(facts) = &ctx.access {
            if self.cfg.log.access {
                self.access_log(&rq, &ctx, facts, &resp);
            }
            if let Some(span) = ctx.span.take() {
                span.end(otlp::Outcome {
                    method: facts.method.as_str(),
                    route: ctx.route.map(|i| self.cfg.routes[i].name.as_str()),
                    host: facts.host.as_deref(),
                    path: &facts.path,
                    client: rq.client,
                    decision: ctx.decision.as_str(),
                    upstream: ctx.route.and_then(|i| self.upstream_targets[i].as_deref()),
                    status,
                    request_id: rq.id(),
                });
            }
        }
        resp
    }

    /// One line per request: never a token, a cookie or the query string.
    fn access_log(
        &self,
        rq: &RequestContext,
        ctx: &Ctx,
        facts: &AccessFacts,
        resp: &Response<Body>,
    ) {
        let route = ctx.route.map(|i| self.cfg.routes[i].name.as_str());
        let bytes = http_body::Body::size_hint(resp.body()).exact();
        let sub = ctx.principal.as_ref().map(|p| p.session.sub.as_str());
        tracing::info!(
            target: "portcullis::access",
            request_id = rq.id(),
            client = %rq.client,
            method = %facts.method,
            host = facts.host.as_deref().unwrap_or(""),
            path = %facts.path,
            status = resp.status().as_u16(),
            bytes,
            duration_ms = rq.started.elapsed().as_secs_f64() * 1000.0,
            route,
            "auth.decision" = ctx.decision.as_str(),
            sub,
            trace_id = rq.trace.amzn_str(),
            traceparent = rq.trace.traceparent_str(),
            "access"
        );
    }

    async fn route(
        &self,
        rq: &RequestContext,
        ctx: &mut Ctx,
        mut parts: Parts,
        body: RequestBody,
        inbound: &Inbound,
    ) -> Response<Body> {
        let rid = rq.id();
        let peer = inbound.peer;
        let started = rq.started;
        // HTTP/1 heads over the limit never get here (hyper answers 431); HTTP/2 and HTTP/3
        // header blocks are bounded in bytes only, so the field count is enforced here.
        if parts.headers.len() > MAX_HEADER_FIELDS {
            return rq.render(RequestError::HeadersTooLarge);
        }
        // One authority per request: the target's (absolute-form, HTTP/2 `:authority`) and
        // `Host` must agree, canonically; computed once and kept in the request's extensions.
        // The upstream's `Host` is the canonical host the route is matched on.
        let request_host = match RequestHost::of(&parts, inbound.tls) {
            Ok(h) => h,
            Err(e) => return rq.render(RequestError::BadRequest(e.to_string())),
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
                        return rq.render(RequestError::BadRequest("malformed path".into()));
                    }
                }
            }
            Err(e) => return rq.render(RequestError::BadRequest(e.to_string())),
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
                Some(mut e) => {
                    ctx.route = e.route;
                    ctx.decision = e.decision;
                    // Forward auth: the proxy in front can pass the trace on to the app.
                    if parts.uri.path() == paths::AUTH {
                        rq.trace.on_response(e.response.headers_mut());
                    }
                    e.response
                }
                None => rq.render(RequestError::NotFound),
            };
        }

        // A trusted proxy's `X-Forwarded-Host` goes upstream as it came: it must name the host
        // the route is matched on (one authority per request), or the request is refused.
        let trusted = rq.trusted_peer;
        if trusted && let Err(e) = forwarded_host_agrees(&parts) {
            return rq.render(RequestError::BadRequest(e.to_string()));
        }

        // 3. Route.
        let own = parts.extensions.get::<RequestHost>();
        let host = own.and_then(|h| h.host.as_ref()).map(Host::name);
        let facts = crate::routing::Request {
            host,
            path: parts.uri.path(),
            query: parts.uri.query(),
            method: &parts.method,
            headers: &parts.headers,
            peer: peer.ip(),
        };
        let Some(route) = self.auth.routes.find(&facts) else {
            return rq.render(RequestError::NoRoute);
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

        // 5. The route's action: forward (whether the peer is a trusted proxy was read from
        // the running config) with the request's trace headers, whatever the client sent; or
        // its own redirect or fixed response.
        let json = rq.json;
        let mut resp = match (&route.action, &self.forwarders[route_index]) {
            (crate::config::Action::Forward(_), Some(forwarder)) => {
                rq.trace.apply(&mut parts.headers);
                let resp = match forwarder
                    .forward(parts, body, inbound, trusted, upgrade, started)
                    .await
                {
                    Ok(r) => r,
                    Err(e) => e.render(rid, json),
                };
                self.metrics
                    .upstream_latency(route_index, started.elapsed());
                resp
            }
            (crate::config::Action::Redirect(r), _) => {
                match crate::routing::action::redirect(r, &redirect_origin(&parts, &self.auth.cfg))
                {
                    Ok(resp) => resp,
                    Err(e) => e.render(rid, json),
                }
            }
            (crate::config::Action::FixedResponse(f), _) => crate::routing::action::fixed(f),
            (crate::config::Action::Forward(_), None) => {
                RequestError::Internal("the route has no forwarder".into()).render(rid, json)
            }
        };
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
}

/// The request as a redirect action sees it: its scheme, canonical host (else `public_url`'s),
/// port, normalised path and query.
fn redirect_origin<'a>(
    parts: &'a http::request::Parts,
    cfg: &'a crate::config::Config,
) -> crate::routing::action::Origin<'a> {
    let own = parts.extensions.get::<RequestHost>();
    let https = own.is_some_and(|h| h.https);
    let (host, port) = match own.and_then(|h| h.host.as_ref()) {
        Some(h) => (
            h.name(),
            h.as_str()[h.name().len()..]
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(crate::http::host::default_port(https)),
        ),
        None => (
            cfg.public_url.host_str().unwrap_or("localhost"),
            cfg.public_url
                .port_or_known_default()
                .unwrap_or(crate::http::host::default_port(https)),
        ),
    };
    crate::routing::action::Origin {
        https,
        host,
        port,
        path: parts.uri.path(),
        query: parts.uri.query(),
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

/// A route's upstream as a span names it: `scheme://host:port`, or the directory for `file://`
/// (`if let`, not `match`: an upstream of another kind is simply not named).
fn upstream_target(
    cfg: &crate::config::Config,
    route: &crate::config::RouteConfig,
) -> Option<String> {
    use crate::config::{Action, Upstream};
    match &route.action {
        Action::Forward(Upstream::Http { base, .. }) => {
            let host = base.host_str().unwrap_or_default();
            Some(match base.port() {
                Some(p) => format!("{}://{host}:{p}", base.scheme()),
                None => format!("{}://{host}", base.scheme()),
            })
        }
        Action::Forward(Upstream::File(dir)) => Some(format!("file://{}", dir.display())),
        // A span names the group(s); which target of a group served is in the access log.
        Action::Forward(Upstream::Groups(f)) => Some(
            f.groups
                .iter()
                .filter_map(|(g, _)| cfg.target_groups.get(*g))
                .map(|g| format!("target_group:{}", g.name))
                .collect::<Vec<_>>()
                .join(","),
        ),
        Action::Redirect(_) | Action::FixedResponse(_) => None,
    }
}
