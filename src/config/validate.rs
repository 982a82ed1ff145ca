//! TOML text → [`Config`]. Each section is deserialised on its own so that problems in
//! different sections are all reported; semantic checks then collect every further problem.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use url::Url;

use super::raw::*;
use super::secret::{self, Secret};
use super::*;

const TOP_LEVEL_KEYS: &[&str] = &[
    "public_url",
    "data_dir",
    "allowed_redirect_origins",
    "server",
    "session",
    "headers",
    "providers",
    "routes",
    "log",
    "pool",
    "target_groups",
    "tracing",
];

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load_str(&text, path)
}

/// Validates configuration text; `path` names the file in messages and anchors relative paths.
pub fn load_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let mut p = Problems::default();
    let file = path.display().to_string();
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            p.push("(file)", format!("not valid TOML: {}", e.message()));
            return Err(ConfigError::Invalid {
                file,
                problems: p.0,
            });
        }
    };
    let cfg = build(&table, path, &mut p);
    match cfg {
        Some(cfg) if p.is_empty() => Ok(cfg),
        _ => Err(ConfigError::Invalid {
            file,
            problems: p.0,
        }),
    }
}

fn section<T: DeserializeOwned + Default>(
    table: &toml::Table,
    key: &str,
    p: &mut Problems,
) -> Option<T> {
    match table.get(key) {
        None => Some(T::default()),
        Some(v) => typed(v.clone(), key, p),
    }
}

fn typed<T: DeserializeOwned>(v: toml::Value, path: &str, p: &mut Problems) -> Option<T> {
    match T::deserialize(v) {
        Ok(t) => Some(t),
        Err(e) => {
            p.push(path, e.message().trim().to_string());
            None
        }
    }
}

fn duration(text: Option<&str>, default: Duration, path: &str, p: &mut Problems) -> Duration {
    match text {
        None => default,
        Some(t) => match duration::parse(t) {
            Some(d) => d,
            None => {
                p.push(
                    path,
                    format!("{t:?} is not a duration (examples: 500ms, 30s, 15m, 1h, 7d)"),
                );
                default
            }
        },
    }
}

fn one_of<T: Copy>(
    text: Option<&str>,
    default: T,
    choices: &[(&str, T)],
    path: &str,
    p: &mut Problems,
) -> T {
    let Some(t) = text else { return default };
    match choices.iter().find(|(name, _)| *name == t) {
        Some((_, v)) => *v,
        None => {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            p.push(path, format!("{t:?} is not one of {}", names.join(", ")));
            default
        }
    }
}

fn socket_addr(text: &str, path: &str, p: &mut Problems) -> Option<SocketAddr> {
    match text.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.push(
                path,
                format!("{text:?} is not an address like 127.0.0.1:8080 or [::]:443"),
            );
            None
        }
    }
}

fn relative_to(base: &Path, path: &str) -> PathBuf {
    let pb = PathBuf::from(path);
    if pb.is_absolute() {
        pb
    } else {
        base.parent().map(|d| d.join(&pb)).unwrap_or(pb)
    }
}

/// The origin (`scheme://host[:port]`) of a URL, port omitted when it is the default.
/// Canonical, as redirect targets are compared: one trailing dot removed.
pub fn origin_of(url: &Url) -> String {
    crate::http::host::canonical_origin(url)
}

fn build(table: &toml::Table, path: &Path, p: &mut Problems) -> Option<Config> {
    for key in table.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            p.push(
                key.clone(),
                format!(
                    "unknown key (expected one of {})",
                    TOP_LEVEL_KEYS.join(", ")
                ),
            );
        }
    }

    // public_url
    let public_url = match table.get("public_url") {
        None => {
            p.push(
                "public_url",
                "is required (the origin users reach, e.g. https://app.example.com)",
            );
            None
        }
        Some(toml::Value::String(s)) => match Url::parse(s) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {
                if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
                    p.push(
                        "public_url",
                        format!("{s:?} must be an origin only, without a path"),
                    );
                }
                Some(u)
            }
            _ => {
                p.push(
                    "public_url",
                    format!("{s:?} is not an http:// or https:// URL"),
                );
                None
            }
        },
        Some(_) => {
            p.push("public_url", "must be a string");
            None
        }
    };

    let data_dir = match table.get("data_dir") {
        Some(toml::Value::String(s)) => relative_to(path, s),
        Some(_) => {
            p.push("data_dir", "must be a string");
            PathBuf::from("data")
        }
        None => relative_to(path, "data"),
    };

    let allowed_redirect_origins: Vec<String> = match table.get("allowed_redirect_origins") {
        None => vec![],
        Some(v) => typed::<Vec<String>>(v.clone(), "allowed_redirect_origins", p)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .filter_map(|(i, o)| match Url::parse(&o) {
                Ok(u) if u.host().is_some() && u.path() == "/" => Some(origin_of(&u)),
                _ => {
                    p.push(
                        format!("allowed_redirect_origins[{i}]"),
                        format!("{o:?} is not an origin like https://other.example.com"),
                    );
                    None
                }
            })
            .collect(),
    };

    let server = build_server(section::<RawServer>(table, "server", p), path, p);
    let session = build_session(section::<RawSession>(table, "session", p), &data_dir, p);
    let headers = build_headers(section::<RawHeaders>(table, "headers", p), path, p);
    let log = build_log(section::<RawLog>(table, "log", p), p);
    let tracing = super::tracing::build(table.get("tracing"), p);

    let mut providers = Vec::new();
    match table.get("providers") {
        None => {}
        Some(toml::Value::Table(t)) => {
            for (name, v) in t {
                let kp = format!("providers.{name}");
                if let Some(raw) = typed::<RawProvider>(v.clone(), &kp, p)
                    && let Some(prov) = build_provider(name, raw, &kp, p)
                {
                    providers.push(prov);
                }
            }
        }
        Some(_) => p.push(
            "providers",
            "must be a table of named providers ([providers.NAME])",
        ),
    }

    let pool_raw = table.get("pool");
    let mut pool = pool_raw.and_then(|v| crate::pool::config::build(v, path, &data_dir, p));
    if let (Some(pc), Some(url)) = (pool.as_mut(), &public_url) {
        crate::pool::config::finish(pc, url, p);
    }
    if pool_raw.is_some()
        && !providers
            .iter()
            .any(|pr: &ProviderConfig| pr.name == "pool")
    {
        if let Some(url) = &public_url {
            // The pool may live on its own host name (`pool.public_url`).
            let pool_url = pool
                .as_ref()
                .and_then(|pc| pc.public_url.as_ref())
                .unwrap_or(url);
            providers.push(pool_provider(pool_url));
        }
    } else if pool_raw.is_some() {
        p.push(
            "providers.pool",
            "the name \"pool\" is reserved for the built-in user pool",
        );
    }

    let target_groups = target_groups::build(table.get("target_groups"), p);
    let mut routes = Vec::new();
    match table.get("routes") {
        None => p.push("routes", "at least one [[routes]] entry is required"),
        Some(toml::Value::Array(items)) => {
            if items.is_empty() {
                p.push("routes", "at least one [[routes]] entry is required");
            }
            for (i, v) in items.iter().enumerate() {
                let kp = format!("routes[{i}]");
                if let Some(raw) = typed::<RawRoute>(v.clone(), &kp, p)
                    && let Some(r) = build_route(i, raw, &providers, &target_groups, path, &kp, p)
                {
                    routes.push(r);
                }
            }
        }
        Some(_) => p.push("routes", "must be an array of tables ([[routes]])"),
    }
    for i in 0..routes.len() {
        let r = &routes[i];
        if routes[..i].iter().any(|o| o.name == r.name) {
            // Two unnamed routes that differ only in other conditions (methods, headers, …):
            // the later one's default name gets its index.
            if r.name == default_route_name(&r.conditions) {
                routes[i].name = format!("{}#{}", routes[i].name, routes[i].index);
                continue;
            }
            p.push(
                format!("routes[{}].name", r.index),
                format!(
                    "{:?} is the name of an earlier route; route names must be unique",
                    r.name
                ),
            );
        }
    }

    let public_url = public_url?;
    let public_origin = origin_of(&public_url);
    let server = server?;
    if server.listen.contains(&server.admin_listen) {
        p.push(
            "server.admin_listen",
            "must differ from every server.listen address",
        );
    }
    Some(Config {
        file: path.to_path_buf(),
        public_url,
        public_origin,
        data_dir,
        allowed_redirect_origins,
        server,
        session: session?,
        headers: headers?,
        providers,
        warnings: crate::routing::shadow::unreachable(&routes),
        routes,
        target_groups,
        log,
        pool,
        tracing,
    })
}

/// The built-in pool is reached over OIDC like any provider (docs/src/proxy/providers.md).
fn pool_provider(public_url: &Url) -> ProviderConfig {
    let issuer = format!(
        "{}{}",
        origin_of(public_url),
        crate::http::paths::POOL_PREFIX
    );
    ProviderConfig {
        name: "pool".into(),
        display_name: "Sign in".into(),
        issuer,
        client_id: "portcullis".into(),
        // The secret is derived at start-up from the session key ring (see `App::build`).
        client_secret: None,
        // The pool releases claims per scope: ask for every standard one, so the identity
        // headers and x-amzn-oidc-data carry what the user has (phone, address too).
        scopes: ["openid", "email", "profile", "phone", "address"]
            .map(String::from)
            .to_vec(),
        extra_auth_params: vec![],
        groups_claim: "cognito:groups".into(),
        token_auth: TokenAuth::ClientSecretBasic,
        timeout: Duration::from_secs(10),
    }
}

fn build_server(raw: Option<RawServer>, path: &Path, p: &mut Problems) -> Option<ServerConfig> {
    let raw = raw?;
    let listen: Vec<SocketAddr> = raw
        .listen
        .unwrap_or_else(|| vec!["0.0.0.0:8080".into()])
        .iter()
        .enumerate()
        .filter_map(|(i, s)| socket_addr(s, &format!("server.listen[{i}]"), p))
        .collect();
    let tls = match (raw.tls_cert, raw.tls_key) {
        (None, None) => None,
        (Some(c), Some(k)) => {
            let (c, k) = (relative_to(path, &c), relative_to(path, &k));
            for (key, f) in [("server.tls_cert", &c), ("server.tls_key", &k)] {
                if !f.is_file() {
                    p.push(key, format!("{} is not a readable file", f.display()));
                }
            }
            Some(TlsFiles { cert: c, key: k })
        }
        (Some(_), None) => {
            p.push("server.tls_key", "is required when server.tls_cert is set");
            None
        }
        (None, Some(_)) => {
            p.push("server.tls_cert", "is required when server.tls_key is set");
            None
        }
    };
    let admin_listen = socket_addr(
        raw.admin_listen.as_deref().unwrap_or("127.0.0.1:9901"),
        "server.admin_listen",
        p,
    );
    let trusted_proxies = raw
        .trusted_proxies
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s.parse::<IpNet>() {
            Ok(n) => Some(n),
            Err(_) => match s.parse::<IpAddr>() {
                Ok(a) => Some(IpNet::from(a)),
                Err(_) => {
                    p.push(
                        format!("server.trusted_proxies[{i}]"),
                        format!("{s:?} is not an address or CIDR like 10.0.0.0/8"),
                    );
                    None
                }
            },
        })
        .collect();
    let max_header_bytes = raw.max_header_bytes.unwrap_or(32 * 1024);
    if !(1024..=1024 * 1024).contains(&max_header_bytes) {
        p.push(
            "server.max_header_bytes",
            "must be between 1024 and 1048576",
        );
    }
    let workers = raw.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if !(1..=256).contains(&workers) {
        p.push("server.workers", "must be between 1 and 256");
    }
    let shutdown_grace = duration(
        raw.shutdown_grace.as_deref(),
        Duration::from_secs(30),
        "server.shutdown_grace",
        p,
    );
    let header_read_timeout = duration(
        raw.header_read_timeout.as_deref(),
        Duration::from_secs(30),
        "server.header_read_timeout",
        p,
    );
    if header_read_timeout < Duration::from_secs(1)
        || header_read_timeout > Duration::from_secs(3600)
    {
        p.push("server.header_read_timeout", "must be between 1s and 1h");
    }
    let admin_token =
        match secret::resolve(raw.admin_token.as_deref(), raw.admin_token_file.as_deref()) {
            Ok(Some(t)) if t.expose().len() < 16 => {
                p.push(
                    "server.admin_token",
                    "<redacted> must be at least 16 characters",
                );
                None
            }
            Ok(t) => t,
            Err(e) => {
                p.push("server.admin_token", e.to_string());
                None
            }
        };
    Some(ServerConfig {
        listen,
        tls,
        admin_listen: admin_listen?,
        trusted_proxies,
        max_header_bytes,
        shutdown_grace,
        header_read_timeout,
        workers,
        insecure_allow_encoded_slashes: raw.insecure_allow_encoded_slashes.unwrap_or(false),
        admin_token,
    })
}

fn is_cookie_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn build_session(
    raw: Option<RawSession>,
    data_dir: &Path,
    p: &mut Problems,
) -> Option<SessionConfig> {
    let raw = raw?;
    let cookie_name = raw
        .cookie_name
        .unwrap_or_else(|| "AWSELBAuthSessionCookie".into());
    if !is_cookie_token(&cookie_name) {
        p.push(
            "session.cookie_name",
            format!("{cookie_name:?} is not a valid cookie name"),
        );
    }
    let timeout = duration(
        raw.timeout.as_deref(),
        Duration::from_secs(7 * 86400),
        "session.timeout",
        p,
    );
    if timeout.is_zero() {
        p.push("session.timeout", "must be longer than 0s");
    }
    let login_window = duration(
        raw.login_window.as_deref(),
        Duration::from_secs(15 * 60),
        "session.login_window",
        p,
    );
    let refresh_margin = duration(
        raw.refresh_margin.as_deref(),
        Duration::from_secs(0),
        "session.refresh_margin",
        p,
    );
    let store = match raw.store.as_deref() {
        None | Some("cookie") => StoreKind::Cookie,
        Some("redis") => StoreKind::Redis,
        Some(other) => {
            p.push(
                "session.store",
                format!("{other:?} is not one of cookie, redis"),
            );
            StoreKind::Cookie
        }
    };
    let redis_url = |key: &str, s: &str, p: &mut Problems| -> Option<Secret> {
        match secret::resolve(Some(s), None) {
            Ok(Some(sec)) => {
                match url::Url::parse(sec.expose()) {
                    Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host().is_some() => {
                        return Some(sec);
                    }
                    _ => p.push(
                        key,
                        "<redacted> is not a URL like redis://host:6379/0 or rediss://user:password@host:6380",
                    ),
                }
                None
            }
            Ok(None) => None,
            Err(e) => {
                p.push(key, e.to_string());
                None
            }
        }
    };
    let redis = match (raw.redis_url.as_deref(), raw.redis_cluster_urls.as_deref()) {
        (Some(_), Some(_)) => {
            p.push(
                "session.redis_cluster_urls",
                "set either session.redis_url or session.redis_cluster_urls, not both",
            );
            None
        }
        (Some(u), None) => redis_url("session.redis_url", u, p).map(RedisTarget::Standalone),
        (None, Some([])) => {
            p.push(
                "session.redis_cluster_urls",
                "must list at least one seed node",
            );
            None
        }
        (None, Some(list)) => {
            let nodes: Vec<Secret> = list
                .iter()
                .enumerate()
                .filter_map(|(i, u)| redis_url(&format!("session.redis_cluster_urls[{i}]"), u, p))
                .collect();
            (nodes.len() == list.len()).then_some(RedisTarget::Cluster(nodes))
        }
        (None, None) => None,
    };
    if store == StoreKind::Redis && raw.redis_url.is_none() && raw.redis_cluster_urls.is_none() {
        p.push(
            "session.store",
            "\"redis\" needs session.redis_url or session.redis_cluster_urls",
        );
    }
    let redis_timeout = duration(
        raw.redis_timeout.as_deref(),
        Duration::from_secs(2),
        "session.redis_timeout",
        p,
    );
    if redis_timeout.is_zero() || redis_timeout > Duration::from_secs(60) {
        p.push("session.redis_timeout", "must be between 1ms and 60s");
    }
    let secrets = match (raw.secrets, raw.secrets_file) {
        (Some(_), Some(_)) => {
            p.push(
                "session.secrets_file",
                "set either session.secrets or session.secrets_file, not both",
            );
            SessionSecrets::Configured(vec![])
        }
        (Some(list), None) => {
            if list.is_empty() {
                p.push("session.secrets", "must list at least one secret");
            }
            let mut out = Vec::new();
            for (i, s) in list.iter().enumerate() {
                match secret::resolve(Some(s), None) {
                    Ok(Some(sec)) => {
                        if sec.expose().len() < 32 {
                            p.push(
                                format!("session.secrets[{i}]"),
                                "<redacted> is shorter than 32 bytes (`portcullis keygen` prints a good one)",
                            );
                        }
                        out.push(sec);
                    }
                    Ok(None) => {}
                    Err(e) => p.push(format!("session.secrets[{i}]"), e.to_string()),
                }
            }
            SessionSecrets::Configured(out)
        }
        (None, Some(file)) => match secret::resolve(None, Some(&file)) {
            Ok(Some(sec)) => {
                let list: Vec<Secret> = sec
                    .expose()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| Secret::new(l.to_string()))
                    .collect();
                if list.iter().any(|s| s.expose().len() < 32) {
                    p.push(
                        "session.secrets_file",
                        "every secret (one per line) must be at least 32 bytes",
                    );
                }
                SessionSecrets::Configured(list)
            }
            Ok(None) => SessionSecrets::Configured(vec![]),
            Err(e) => {
                p.push("session.secrets_file", e.to_string());
                SessionSecrets::Configured(vec![])
            }
        },
        (None, None) => SessionSecrets::Generated(data_dir.join("session-secret")),
    };
    Some(SessionConfig {
        cookie_name,
        timeout,
        secrets,
        login_window,
        refresh_margin,
        store,
        redis,
        redis_timeout,
    })
}

fn build_headers(raw: Option<RawHeaders>, path: &Path, p: &mut Problems) -> Option<HeadersConfig> {
    let raw = raw?;
    let jwt_format = one_of(
        raw.jwt_format.as_deref(),
        JwtFormat::Alb,
        &[("alb", JwtFormat::Alb), ("standard", JwtFormat::Standard)],
        "headers.jwt_format",
        p,
    );
    let signer = raw.signer.unwrap_or_else(|| "portcullis".into());
    let signing_key_file = raw.signing_key_file.map(|f| {
        let f = relative_to(path, &f);
        if !f.is_file() {
            p.push(
                "headers.signing_key_file",
                format!("{} is not a readable file", f.display()),
            );
        }
        f
    });
    Some(HeadersConfig {
        jwt_format,
        signer,
        signing_key_file,
        forwarded_user: raw.forwarded_user.unwrap_or(true),
        access_token: raw.access_token.unwrap_or(true),
        insecure_forward_unverified_email: raw.insecure_forward_unverified_email.unwrap_or(false),
    })
}

fn build_log(raw: Option<RawLog>, p: &mut Problems) -> LogConfig {
    let raw = raw.unwrap_or_default();
    let format = one_of(
        raw.format.as_deref(),
        LogFormat::Plain,
        &[("plain", LogFormat::Plain), ("json", LogFormat::Json)],
        "log.format",
        p,
    );
    let level = raw.level.unwrap_or_else(|| "info".into());
    if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
        p.push(
            "log.level",
            format!("{level:?} is not one of error, warn, info, debug, trace"),
        );
    }
    LogConfig {
        format,
        level,
        access: raw.access.unwrap_or(false),
    }
}

/// Also used for the pool's `[[pool.identity_providers]]` (the same relying-party settings).
pub(crate) fn build_provider(
    name: &str,
    raw: RawProvider,
    kp: &str,
    p: &mut Problems,
) -> Option<ProviderConfig> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        p.push(kp, "provider names may use only letters, digits, - and _");
    }
    let issuer = match raw.issuer.as_deref().map(secret::expand_env) {
        None => {
            p.push(format!("{kp}.issuer"), "is required");
            None
        }
        Some(Err(e)) => {
            p.push(format!("{kp}.issuer"), e.to_string());
            None
        }
        Some(Ok(s)) => match Url::parse(&s) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                Some(s.clone())
            }
            _ => {
                p.push(
                    format!("{kp}.issuer"),
                    format!("{s:?} is not an http(s) URL"),
                );
                None
            }
        },
    };
    let client_id = match raw.client_id.as_deref().map(secret::expand_env) {
        Some(Ok(id)) if !id.is_empty() => Some(id),
        Some(Err(e)) => {
            p.push(format!("{kp}.client_id"), e.to_string());
            None
        }
        _ => {
            p.push(format!("{kp}.client_id"), "is required");
            None
        }
    };
    let token_auth = one_of(
        raw.token_auth.as_deref(),
        TokenAuth::ClientSecretBasic,
        &[
            ("client_secret_basic", TokenAuth::ClientSecretBasic),
            ("client_secret_post", TokenAuth::ClientSecretPost),
            ("none", TokenAuth::None),
        ],
        &format!("{kp}.token_auth"),
        p,
    );
    if raw.client_secret.is_some() && raw.client_secret_file.is_some() {
        p.push(
            format!("{kp}.client_secret_file"),
            "set client_secret or client_secret_file, not both",
        );
    }
    let client_secret = match secret::resolve(
        raw.client_secret.as_deref(),
        raw.client_secret_file.as_deref(),
    ) {
        Ok(s) => s,
        Err(e) => {
            p.push(format!("{kp}.client_secret"), e.to_string());
            None
        }
    };
    if client_secret.is_none()
        && token_auth != TokenAuth::None
        && raw.client_secret.is_none()
        && raw.client_secret_file.is_none()
    {
        p.push(
            format!("{kp}.client_secret"),
            "is required unless token_auth = \"none\" (a public client using PKCE only)",
        );
    }
    let scopes = raw
        .scopes
        .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
    if !scopes.iter().any(|s| s == "openid") {
        p.push(format!("{kp}.scopes"), "must include \"openid\"");
    }
    let reserved = [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    ];
    let extra_auth_params: Vec<(String, String)> = raw
        .extra_auth_params
        .unwrap_or_default()
        .into_iter()
        .collect();
    for (k, _) in &extra_auth_params {
        if reserved.contains(&k.as_str()) {
            p.push(
                format!("{kp}.extra_auth_params.{k}"),
                "is set by Portcullis itself and cannot be overridden",
            );
        }
    }
    let timeout = duration(
        raw.timeout.as_deref(),
        Duration::from_secs(10),
        &format!("{kp}.timeout"),
        p,
    );
    Some(ProviderConfig {
        name: name.to_string(),
        display_name: raw.display_name.unwrap_or_else(|| name.to_string()),
        issuer: issuer?,
        client_id: client_id?,
        client_secret,
        scopes,
        extra_auth_params,
        groups_claim: raw.groups_claim.unwrap_or_else(|| "groups".into()),
        token_auth,
        timeout,
    })
}

fn claim_values(v: &toml::Value) -> Option<Vec<serde_json::Value>> {
    fn one(v: &toml::Value) -> Option<serde_json::Value> {
        match v {
            toml::Value::String(s) => Some(serde_json::Value::String(s.clone())),
            toml::Value::Boolean(b) => Some(serde_json::Value::Bool(*b)),
            toml::Value::Integer(i) => Some(serde_json::Value::from(*i)),
            _ => None,
        }
    }
    match v {
        toml::Value::Array(items) if !items.is_empty() => items.iter().map(one).collect(),
        other => one(other).map(|x| vec![x]),
    }
}

fn build_route(
    index: usize,
    raw: RawRoute,
    providers: &[ProviderConfig],
    groups: &[target_groups::TargetGroupConfig],
    path: &Path,
    kp: &str,
    p: &mut Problems,
) -> Option<RouteConfig> {
    let on_unauthenticated = one_of(
        raw.on_unauthenticated.as_deref(),
        OnUnauthenticated::Authenticate,
        &[
            ("authenticate", OnUnauthenticated::Authenticate),
            ("deny", OnUnauthenticated::Deny),
            ("allow", OnUnauthenticated::Allow),
        ],
        &format!("{kp}.on_unauthenticated"),
        p,
    );
    let named_groups = raw.target_group.is_some() || raw.forward.is_some();
    let forward = target_groups::route_forward(
        raw.target_group,
        raw.forward,
        raw.forward_stickiness,
        groups,
        kp,
        p,
    );
    let upstream = match raw.upstream.as_deref() {
        Some(_) if named_groups => {
            p.push(
                format!("{kp}.upstream"),
                "set upstream (one target) or target_group / forward, not both",
            );
            Some(None)
        }
        None if named_groups => Some(forward.map(|mut f| {
            f.insecure_skip_verify = raw.insecure_skip_upstream_tls_verify.unwrap_or(false);
            f.ca_file = raw
                .upstream_ca_file
                .as_deref()
                .map(|f| relative_to(path, f));
            if let Some(f) = &f.ca_file
                && !f.is_file()
            {
                p.push(
                    format!("{kp}.upstream_ca_file"),
                    format!("{} is not a readable file", f.display()),
                );
            }
            Upstream::Groups(f)
        })),
        None => None,
        Some(u) if u.starts_with("file://") => Some({
            // `file:///abs/dir`, or `file://./rel/dir` relative to the config file.
            let raw_path = percent_encoding::percent_decode_str(&u[7..])
                .decode_utf8_lossy()
                .to_string();
            let dir = relative_to(path, &raw_path);
            if dir.is_dir() {
                Some(Upstream::File(dir))
            } else {
                p.push(
                    format!("{kp}.upstream"),
                    format!("{u:?} is not an existing directory"),
                );
                None
            }
        }),
        Some(u) => Some(match Url::parse(u) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                if url.query().is_some() || url.fragment().is_some() {
                    p.push(
                        format!("{kp}.upstream"),
                        "must not have a query or fragment",
                    );
                }
                let ca_file = raw
                    .upstream_ca_file
                    .as_deref()
                    .map(|f| relative_to(path, f));
                if let Some(f) = &ca_file
                    && !f.is_file()
                {
                    p.push(
                        format!("{kp}.upstream_ca_file"),
                        format!("{} is not a readable file", f.display()),
                    );
                }
                Some(Upstream::Http {
                    base: url,
                    insecure_skip_verify: raw.insecure_skip_upstream_tls_verify.unwrap_or(false),
                    ca_file,
                })
            }
            _ => {
                p.push(
                    format!("{kp}.upstream"),
                    format!("{u:?} is not an http://, https:// or file:/// URL"),
                );
                None
            }
        }),
    };
    let (conditions, action, cors_preflight) = rules::build_rule(
        rules::RawRule {
            host: raw.host,
            path: raw.path,
            path_pattern: raw.path_pattern,
            methods: raw.methods,
            headers: raw.headers,
            query: raw.query,
            source_ips: raw.source_ips,
            redirect: raw.redirect,
            fixed_response: raw.fixed_response,
            cors_preflight: raw.cors_preflight,
        },
        upstream,
        kp,
        p,
    );
    let connect_timeout = duration(
        raw.connect_timeout.as_deref(),
        Duration::from_secs(5),
        &format!("{kp}.connect_timeout"),
        p,
    );
    let timeout = duration(
        raw.timeout.as_deref(),
        Duration::from_secs(60),
        &format!("{kp}.timeout"),
        p,
    );

    let mut names: Vec<String> = Vec::new();
    if let Some(n) = raw.provider {
        names.push(n);
    }
    if let Some(list) = raw.providers {
        if !names.is_empty() {
            p.push(
                format!("{kp}.providers"),
                "set provider or providers, not both",
            );
        }
        names.extend(list);
    }
    let mut route_providers = Vec::new();
    for n in &names {
        match providers.iter().position(|pr| &pr.name == n) {
            Some(i) => route_providers.push(i),
            None => p.push(
                format!("{kp}.provider"),
                format!("{n:?} is not a configured provider"),
            ),
        }
    }
    if route_providers.is_empty()
        && names.is_empty()
        && on_unauthenticated == OnUnauthenticated::Authenticate
    {
        match providers.len() {
            1 => route_providers.push(0),
            0 => p.push(
                kp,
                "authenticates but no [providers.NAME] or [pool] is configured",
            ),
            _ => p.push(
                format!("{kp}.provider"),
                "several providers are configured: name one (provider) or several (providers)",
            ),
        }
    }

    let mut authorization = Authorization {
        emails: raw
            .allow_emails
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.to_ascii_lowercase())
            .collect(),
        email_domains: raw
            .allow_email_domains
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
            .collect(),
        groups: raw.allow_groups.unwrap_or_default(),
        claims: vec![],
    };
    for (claim, v) in raw.allow_claims.unwrap_or_default() {
        match claim_values(&v) {
            Some(any_of) => authorization
                .claims
                .push(crate::config::ClaimRule { claim, any_of }),
            None => p.push(
                format!("{kp}.allow_claims.{claim}"),
                "must be a string, boolean, integer, or a non-empty array of them",
            ),
        }
    }
    if on_unauthenticated == OnUnauthenticated::Allow && !authorization.is_empty() {
        p.push(
            kp,
            "allow_* rules have no effect on an on_unauthenticated = \"allow\" route; use authenticate or deny",
        );
    }
    // A bearer route checks tokens against its provider's keys: the only one, when unnamed.
    if raw.accept_bearer == Some(true) && names.is_empty() && providers.len() == 1 {
        route_providers = vec![0];
    }
    let bearer = bearer_rule(
        raw.accept_bearer,
        raw.bearer_audience,
        raw.allow_scopes,
        on_unauthenticated,
        route_providers.is_empty(),
        kp,
        p,
    );
    let name = match raw.name {
        Some(n)
            if n.is_empty() || n.len() > 64 || n.chars().any(|c| c.is_control() || c == '"') =>
        {
            p.push(
                format!("{kp}.name"),
                format!("{n:?} must be 1 to 64 printable characters, without quotes"),
            );
            n
        }
        Some(n) => n,
        None => default_route_name(&conditions),
    };
    Some(RouteConfig {
        index,
        name,
        conditions,
        action: action?,
        cors_preflight,
        on_unauthenticated,
        connect_timeout,
        timeout,
        providers: route_providers,
        authorization,
        bearer,
    })
}

/// A route's name when it has none: `{hosts}{path}` (hosts joined with `,`).
fn default_route_name(c: &crate::config::Conditions) -> String {
    format!(
        "{}{}",
        c.hosts.join(","),
        c.path_pattern.as_deref().unwrap_or(&c.path)
    )
}

/// `accept_bearer`, `bearer_audience`, `allow_scopes` (docs/src/proxy/bearer-tokens.md): the audience is required with
/// `accept_bearer`, and neither list means anything without it.
fn bearer_rule(
    accept: Option<bool>,
    audience: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
    on_unauthenticated: OnUnauthenticated,
    no_provider: bool,
    kp: &str,
    p: &mut Problems,
) -> Option<crate::config::BearerRule> {
    if accept != Some(true) {
        for (key, set) in [
            ("bearer_audience", audience.is_some()),
            ("allow_scopes", scopes.is_some()),
        ] {
            if set {
                p.push(
                    format!("{kp}.{key}"),
                    "has no effect without accept_bearer = true",
                );
            }
        }
        return None;
    }
    let audience = audience.unwrap_or_default();
    if audience.is_empty() || audience.iter().any(|a| a.is_empty()) {
        p.push(
            format!("{kp}.bearer_audience"),
            "is required with accept_bearer = true: the audiences (aud) a token must be issued for",
        );
    }
    let scopes = scopes.unwrap_or_default();
    if scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
        p.push(
            format!("{kp}.allow_scopes"),
            "scopes are non-empty and have no spaces",
        );
    }
    if on_unauthenticated == OnUnauthenticated::Allow {
        p.push(
            format!("{kp}.accept_bearer"),
            "has no effect on an on_unauthenticated = \"allow\" route; use authenticate or deny",
        );
    }
    if no_provider {
        p.push(
            format!("{kp}.accept_bearer"),
            "needs the route's provider (provider or providers): tokens are checked against its keys",
        );
    }
    Some(crate::config::BearerRule { audience, scopes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match load_str(text, Path::new("t.toml")) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid { problems, .. }) => {
                problems.into_iter().map(|p| p.to_string()).collect()
            }
            Err(e) => vec![e.to_string()],
        }
    }

    const GOOD: &str = r#"
public_url = "https://app.example.com"
[session]
secrets = ["0123456789abcdef0123456789abcdef"]
[providers.corp]
issuer = "https://idp.example.com"
client_id = "pc"
client_secret = "s"
[[routes]]
upstream = "http://127.0.0.1:3000"
"#;

    #[test]
    fn bearer_routes_need_an_audience() {
        let good = format!(
            "{GOOD}accept_bearer = true\non_unauthenticated = \"deny\"\nbearer_audience = [\"api://orders\"]\nallow_scopes = [\"orders/read\"]\n"
        );
        let c = load_str(&good, Path::new("t.toml")).expect("valid");
        let rule = c.routes[0].bearer.as_ref().expect("bearer rule");
        assert_eq!(rule.audience, ["api://orders"]);
        assert_eq!(rule.scopes, ["orders/read"]);
        assert_eq!(c.routes[0].providers, vec![0]);
        let joined = problems(&format!("{GOOD}accept_bearer = true\n")).join("\n");
        assert!(
            joined.contains("routes[0].bearer_audience: is required"),
            "{joined}"
        );
        let joined = problems(&format!("{GOOD}allow_scopes = [\"x\"]\n")).join("\n");
        assert!(joined.contains("routes[0].allow_scopes"), "{joined}");
    }

    #[test]
    fn route_hosts_are_canonical_and_headers_opt_out_is_read() {
        let c = load_str(
            &format!("{GOOD}host = \"Admin.Example.COM.\"\n[headers]\ninsecure_forward_unverified_email = true\n"),
            Path::new("t.toml"),
        )
        .expect("valid");
        assert_eq!(c.routes[0].conditions.hosts, ["admin.example.com"]);
        assert_eq!(c.routes[0].name, "admin.example.com/");
        assert!(c.headers.insecure_forward_unverified_email);
        let c = load_str(GOOD, Path::new("t.toml")).expect("valid");
        assert!(!c.headers.insecure_forward_unverified_email);
        for bad in [
            "admin.example.com:8443",
            "admin..example.com",
            "user@admin",
            "",
        ] {
            let joined = problems(&format!("{GOOD}host = \"{bad}\"\n")).join("\n");
            assert!(joined.contains("routes[0].host"), "{bad:?}: {joined}");
        }
        let joined = problems(&format!(
            "{GOOD}[headers]\nforward_unverified_email = true\n"
        ))
        .join("\n");
        assert!(joined.contains("forward_unverified_email"), "{joined}");
    }

    #[test]
    fn accepts_a_minimal_file() {
        let c = load_str(GOOD, Path::new("t.toml")).expect("valid");
        assert_eq!(c.routes[0].providers, vec![0]);
        assert_eq!(c.session.cookie_name, "AWSELBAuthSessionCookie");
        assert_eq!(c.session.timeout, Duration::from_secs(604800));
        assert!(c.secure_cookies());
    }

    #[test]
    fn reports_every_problem_with_its_key_path() {
        let text = GOOD
            .replace(
                "[[routes]]",
                "[[routes]]\non_unauthenticated = \"redirect\"\ntimeout = \"soon\"",
            )
            .replace("client_id = \"pc\"", "client_id = \"pc\"\nbogus = 1")
            + "\n[server]\nlisten = [\"nope\"]\n";
        let got = problems(&text);
        let joined = got.join("\n");
        assert!(
            joined.contains(
                "routes[0].on_unauthenticated: \"redirect\" is not one of authenticate, deny, allow"
            ),
            "{joined}"
        );
        assert!(joined.contains("routes[0].timeout"), "{joined}");
        assert!(
            joined.contains("providers.corp: unknown field `bogus`"),
            "{joined}"
        );
        assert!(joined.contains("server.listen[0]"), "{joined}");
    }

    #[test]
    fn header_read_timeout_defaults_to_30s_and_is_bounded() {
        let c = load_str(GOOD, Path::new("t.toml")).expect("valid");
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(30));
        let with = |v: &str| format!("{GOOD}\n[server]\nheader_read_timeout = \"{v}\"\n");
        let c = load_str(&with("5s"), Path::new("t.toml")).expect("valid");
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(5));
        for bad in ["500ms", "2h", "soon"] {
            let joined = problems(&with(bad)).join("\n");
            assert!(
                joined.contains("server.header_read_timeout"),
                "{bad}: {joined}"
            );
        }
    }

    #[test]
    fn never_prints_secrets() {
        let text = GOOD.replace("0123456789abcdef0123456789abcdef", "tooshort-secret-value");
        let joined = problems(&text).join("\n");
        assert!(joined.contains("session.secrets[0]"), "{joined}");
        assert!(!joined.contains("tooshort-secret-value"), "{joined}");
    }

    #[test]
    fn rejects_unknown_top_level_and_missing_env() {
        let text = "routez = 1\n".to_string()
            + &GOOD.replace(
                "client_secret = \"s\"",
                "client_secret = \"${PORTCULLIS_TEST_UNSET}\"",
            );
        let joined = problems(&text).join("\n");
        assert!(joined.contains("routez: unknown key"), "{joined}");
        assert!(joined.contains("providers.corp.client_secret: environment variable PORTCULLIS_TEST_UNSET is not set"), "{joined}");
    }
}
