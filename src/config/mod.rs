//! Configuration: the TOML schema (`raw`) is turned into an immutable, typed [`Config`] by
//! [`load`], which reports every problem at once, each with its key path. Validation reads
//! files it must check but writes nothing; secrets never appear in a message.

pub mod duration;
#[doc(hidden)]
pub mod keys;
pub mod raw;
pub mod rules;
pub mod secret;
pub mod target_groups;
pub mod tracing;
mod validate;
pub(crate) use validate::build_provider;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

pub use rules::{Action, Conditions, FixedResponse, Redirect};
pub use secret::Secret;
pub use validate::{load, load_str};

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

/// Every problem found; collected, then reported together.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_problems(.file, .problems))]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

fn render_problems(file: &str, problems: &[Problem]) -> String {
    let mut s = format!(
        "config error: {} problem{} in {}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        file
    );
    for p in problems {
        s.push_str(&format!("\n  {}: {}", p.path, p.message));
    }
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnauthenticated {
    Authenticate,
    Deny,
    Allow,
}

impl OnUnauthenticated {
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnauthenticated::Authenticate => "authenticate",
            OnUnauthenticated::Deny => "deny",
            OnUnauthenticated::Allow => "allow",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtFormat {
    Alb,
    Standard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAuth {
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub tls: Option<TlsFiles>,
    pub admin_listen: SocketAddr,
    pub trusted_proxies: Vec<IpNet>,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
    /// Time a client has to send a complete request head, idle keep-alive time included.
    pub header_read_timeout: Duration,
    /// Request worker threads (one single-threaded runtime each); default: one per CPU.
    pub workers: usize,
    /// Forward `%2F` / `%5C` in paths instead of answering 400 (docs/src/reference/http-paths.md; unsafe when the
    /// upstream decodes them).
    pub insecure_allow_encoded_slashes: bool,
    /// Bearer token for the admin JSON APIs (`/sessions/…`, `/pool/…`).
    pub admin_token: Option<Secret>,
}

/// Where the session secrets come from.
#[derive(Debug, Clone)]
pub enum SessionSecrets {
    /// Configured: the first seals, all open.
    Configured(Vec<Secret>),
    /// Not configured: generated once and kept in this file (development only; warned about).
    Generated(PathBuf),
}

/// Where sessions live (`session.store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The sealed session itself in the cookie shards (default).
    Cookie,
    /// An opaque ticket in the cookie; the sealed session in Redis.
    Redis,
}

/// How to reach Redis (`session.redis_url` or `session.redis_cluster_urls`). The URLs may
/// carry a password, so they are secrets: never printed.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    Standalone(Secret),
    Cluster(Vec<Secret>),
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub cookie_name: String,
    pub timeout: Duration,
    pub secrets: SessionSecrets,
    pub login_window: Duration,
    /// Refresh the access token this long before it expires.
    pub refresh_margin: Duration,
    pub store: StoreKind,
    /// Redis: the server-side store, shared revocations and the refresh lock.
    pub redis: Option<RedisTarget>,
    /// Longest a single Redis call may take before the request fails closed (503).
    pub redis_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct HeadersConfig {
    pub jwt_format: JwtFormat,
    pub signer: String,
    pub signing_key_file: Option<PathBuf>,
    pub forwarded_user: bool,
    pub access_token: bool,
    /// Send `X-Forwarded-Email` even for an address the IdP marked `email_verified: false`.
    pub insecure_forward_unverified_email: bool,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub display_name: String,
    /// Exactly as configured: OIDC compares issuers as strings (no added trailing slash).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub scopes: Vec<String>,
    pub extra_auth_params: Vec<(String, String)>,
    pub groups_claim: String,
    pub token_auth: TokenAuth,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum Upstream {
    /// `http://` or `https://`: scheme + authority, and a base path prefixed to every request.
    Http {
        base: Url,
        insecure_skip_verify: bool,
        ca_file: Option<PathBuf>,
    },
    /// `file:///dir`: a static directory.
    File(PathBuf),
    /// `target_group = "NAME"` or `forward = [...]`: target groups with weights.
    Groups(target_groups::ForwardConfig),
}

/// A claim requirement: the claim must equal one of the values (or, for an array claim,
/// contain one of them).
#[derive(Debug, Clone)]
pub struct ClaimRule {
    pub claim: String,
    pub any_of: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default)]
pub struct Authorization {
    pub emails: Vec<String>,
    pub email_domains: Vec<String>,
    pub groups: Vec<String>,
    pub claims: Vec<ClaimRule>,
}

impl Authorization {
    pub fn is_empty(&self) -> bool {
        self.emails.is_empty()
            && self.email_domains.is_empty()
            && self.groups.is_empty()
            && self.claims.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub index: usize,
    /// Stable name for logs and metrics (`name`, default `{host}{path}`).
    pub name: String,
    /// When the route is chosen (host, path, and ALB's further conditions).
    pub conditions: Conditions,
    /// What it does with a request that passed authentication.
    pub action: Action,
    /// `cors_preflight = "allow"`: a CORS preflight goes upstream without a session.
    pub cors_preflight: bool,
    pub on_unauthenticated: OnUnauthenticated,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// Indexes into [`Config::providers`]; more than one shows a chooser page.
    pub providers: Vec<usize>,
    pub authorization: Authorization,
    /// `accept_bearer = true`: `Authorization: Bearer` access tokens (docs/src/proxy/bearer-tokens.md).
    pub bearer: Option<BearerRule>,
}

/// What a bearer token must carry on an `accept_bearer` route.
#[derive(Debug, Clone)]
pub struct BearerRule {
    /// `bearer_audience`: the token's `aud` (or `client_id`) must be one of these.
    pub audience: Vec<String>,
    /// `allow_scopes`: every one must be granted.
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
    /// One access-log line per request (`log.access`).
    pub access: bool,
}

/// The validated, immutable configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub public_url: Url,
    /// `scheme://host[:port]` of `public_url`, for redirect checks and cookie `Secure`.
    pub public_origin: String,
    pub data_dir: PathBuf,
    pub allowed_redirect_origins: Vec<String>,
    pub server: ServerConfig,
    pub session: SessionConfig,
    pub headers: HeadersConfig,
    pub providers: Vec<ProviderConfig>,
    pub routes: Vec<RouteConfig>,
    /// `[target_groups.NAME]`, by name.
    pub target_groups: Vec<target_groups::TargetGroupConfig>,
    pub log: LogConfig,
    /// The built-in user pool, when `[pool]` is present.
    pub pool: Option<crate::pool::PoolConfig>,
    /// What is valid but surely not meant (a route an earlier one always takes): printed by
    /// `check`, logged at start-up.
    pub warnings: Vec<Problem>,
    /// OTLP span export, when `[tracing]` is present.
    pub tracing: Option<tracing::TracingConfig>,
}

impl Config {
    /// Cookies carry `Secure` whenever users reach us over https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// How paths with `%2F` / `%5C` are treated (docs/src/reference/http-paths.md).
    pub fn encoded_slashes(&self) -> crate::http::normalize::EncodedSlashes {
        if self.server.insecure_allow_encoded_slashes {
            crate::http::normalize::EncodedSlashes::InsecureKeep
        } else {
            crate::http::normalize::EncodedSlashes::Reject
        }
    }

    pub fn provider_index(&self, name: &str) -> Option<usize> {
        self.providers.iter().position(|p| p.name == name)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
