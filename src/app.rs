//! The whole service, built once from the configuration. A request passes, outer → inner:
//! 1. request id and path normalisation (400 for path tricks) — before anything reads the path;
//! 2. reserved `/oauth2/` paths — answered here, never forwarded;
//! 3. route match on host + normalised path (404 when none);
//! 4. the auth gate — strips identity headers, decides, injects identity;
//! 5. the forwarder — streams to the upstream; errors rendered by `error.rs`.

use std::net::SocketAddr;
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

pub struct App {
    pub cfg: Arc<Config>,
    pub auth: Auth,
    pub metrics: Arc<Metrics>,
    forwarders: Vec<Forwarder>,
    request_ids: RequestIds,
    /// The built-in user pool (SPEC §7), when configured.
    pub pool: Option<Arc<crate::pool::Pool>>,
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

fn build_store(cfg: &Config, keyring: Arc<KeyRing>) -> Result<SessionStore, BuildError> {
    let redis = redis(cfg)?;
    let revocations = revocations(cfg, redis.clone());
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
    Ok(SessionStore::new(
        cfg.session.store,
        keyring,
        CookieJar::new(&cfg.session.cookie_name, cfg.secure_cookies()),
        principals,
        revocations,
        redis,
        cfg.server.workers,
    ))
}

impl App {
    pub fn build(cfg: Config) -> Result<App, BuildError> {
        let cfg = Arc::new(cfg);
        let secrets = session_secrets(&cfg)?;
        let keyring = Arc::new(KeyRing::new(&secrets).map_err(|_| BuildError::NoSecret)?);
        let key = match &cfg.headers.signing_key_file {
            Some(f) => SigningKey::load(f)?,
            None => SigningKey::generate(),
        };
        let signer = DataSigner {
            key: Arc::new(key),
            format: cfg.headers.jwt_format,
            signer: cfg.headers.signer.clone(),
            forwarded_user: cfg.headers.forwarded_user,
            access_token: cfg.headers.access_token,
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
        let pool = match &cfg.pool {
            Some(pc) => Some(Arc::new(crate::pool::Pool::new(
                &cfg,
                pc.clone(),
                &secrets,
            )?)),
            None => None,
        };
        let store = Arc::new(build_store(&cfg, keyring.clone())?);
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

    /// What the forwarder needs to know about a new inbound connection (once per connection).
    pub fn inbound(&self, peer: SocketAddr, tls: bool) -> Inbound {
        Inbound::new(peer, tls, self.auth.is_trusted(peer.ip()))
    }

    /// Handles one request from the public listener.
    pub async fn handle(&self, req: Request<RequestBody>, inbound: &Inbound) -> Response<Body> {
        let rid = self.request_ids.next();
        let (parts, body) = req.into_parts();
        // Responses we generate carry the id (`X-Request-Id`, set by the error renderer);
        // proxied responses are the upstream's own.
        self.route(parts, body, inbound, rid.as_str()).await
    }

    async fn route(
        &self,
        mut parts: Parts,
        body: RequestBody,
        inbound: &Inbound,
        rid: &str,
    ) -> Response<Body> {
        let peer = inbound.peer;
        // One clock reading per request: session times and the upstream latency come from it.
        let started = Instant::now();
        // HTTP/1 heads over the limit never get here (hyper answers 431); HTTP/2 and HTTP/3
        // header blocks are bounded in bytes only, so the field count is enforced here.
        if parts.headers.len() > MAX_HEADER_FIELDS {
            return self.reject(RequestError::HeadersTooLarge, &parts, rid);
        }
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
            let resp = pool.handle(&parts, body, peer.ip(), rid).await;
            self.metrics
                .request(None, Decision::Internal, resp.status().as_u16());
            return resp;
        }
        if parts.uri.path().starts_with(paths::RESERVED_PREFIX) {
            let (resp, route, decision) = match self
                .auth
                .endpoint(&parts, parts.uri.path(), peer.ip(), rid)
                .await
            {
                Some(e) => (e.response, e.route, e.decision),
                None => (
                    RequestError::NotFound.render(rid, is_non_navigational(&parts.headers)),
                    None,
                    Decision::Internal,
                ),
            };
            self.metrics
                .request(route, decision, resp.status().as_u16());
            return resp;
        }

        // 3. Route.
        let host = parts.uri.authority().map(|a| a.as_str()).or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        let Some(route) = self.auth.routes.find(host, parts.uri.path()) else {
            return self.reject(RequestError::NoRoute, &parts, rid);
        };
        let route_index = route.index;

        // 4. The auth gate.
        let upgrade = if hop::wants_upgrade(&parts.headers) {
            parts.extensions.remove::<OnUpgrade>()
        } else {
            None
        };
        // Hop-by-hop headers go before the gate adds identity, so that a client cannot make us
        // drop a header we set by naming it in `Connection`.
        hop::remove(&mut parts.headers, upgrade.is_some());
        let (set_cookie, decision) = match self.auth.gate(route, &mut parts, rid, started).await {
            Verdict::Respond { response, decision } => {
                self.metrics
                    .request(Some(route_index), decision, response.status().as_u16());
                return response;
            }
            Verdict::Forward {
                set_cookie,
                decision,
                ..
            } => (set_cookie, decision),
        };

        // 5. Forward.
        let json = is_non_navigational(&parts.headers);
        let mut resp = match self.forwarders[route_index]
            .forward(parts, body, inbound, upgrade, started)
            .await
        {
            Ok(r) => r,
            Err(e) => e.render(rid, json),
        };
        self.metrics
            .upstream_latency(route_index, started.elapsed());
        append_cookies(&mut resp, &set_cookie);
        self.metrics
            .request(Some(route_index), decision, resp.status().as_u16());
        resp
    }

    fn reject(&self, e: RequestError, parts: &Parts, rid: &str) -> Response<Body> {
        let resp = e.render(rid, is_non_navigational(&parts.headers));
        self.metrics
            .request(None, Decision::Internal, resp.status().as_u16());
        resp
    }
}
