//! The `[pool]` table (docs/src/reference/configuration.md) → a typed, immutable [`PoolConfig`]. Every problem is pushed
//! into the shared [`Problems`] list with its key path (`pool.lockout.max`, `pool.clients[0]…`);
//! unknown keys are errors; secrets are resolved here and never printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod federation;
pub(crate) mod raw;
pub use federation::IdentityProviderConfig;
use raw::*;
use url::Url;

use super::attributes::{is_custom_name, is_standard_attribute};
use crate::config::{Problems, Secret, duration, secret};

#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub require_lowercase: bool,
    pub require_uppercase: bool,
    pub require_digits: bool,
    pub require_symbols: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min_length: 8,
            require_lowercase: true,
            require_uppercase: true,
            require_digits: true,
            require_symbols: false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
    /// Failed sign-ins from one client address before it is throttled the same way (0: off).
    pub ip_max_attempts: u32,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            max_attempts: 5,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(15 * 60),
            reset_after: Duration::from_secs(15 * 60),
            ip_max_attempts: 50,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct TokenLifetimes {
    pub id: Duration,
    pub access: Duration,
    pub refresh: Duration,
    pub code: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    None,
    StartTls,
    Implicit,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    pub tls: SmtpTls,
}

#[derive(Debug, Clone)]
pub enum Delivery {
    /// Development: the code is written to the server log (clearly labelled).
    Log,
    Smtp(SmtpConfig),
}

#[derive(Debug, Clone, Default)]
pub struct UiConfig {
    pub title: String,
    pub logo: Option<PathBuf>,
    pub css: Option<PathBuf>,
    pub templates_dir: Option<PathBuf>,
    /// The emails and SMS texts (built-in, or overridden from `templates_dir`).
    pub mail: std::sync::Arc<crate::pool::mail::Mailer>,
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub client_id: String,
    /// `None`: a public client, which must use PKCE S256.
    pub client_secret: Option<Secret>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// `grant_types`: default `authorization_code` and `refresh_token`.
    pub grant_types: Vec<GrantType>,
    /// `scopes`: what a `client_credentials` token may carry, and what user tokens may carry
    /// beyond the standard `openid email profile phone address offline_access`.
    pub scopes: Vec<String>,
    /// `audience`: the `aud` of a `client_credentials` client's access tokens.
    pub audience: Option<String>,
    /// OIDC Back-Channel Logout: where logout tokens are POSTed when a user's session ends.
    pub backchannel_logout_uri: Option<Url>,
}

/// The OAuth 2.0 grants a `[[pool.clients]]` entry may use at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub const ALL: [(&'static str, GrantType); 3] = [
        ("authorization_code", GrantType::AuthorizationCode),
        ("refresh_token", GrantType::RefreshToken),
        ("client_credentials", GrantType::ClientCredentials),
    ];

    pub fn parse(s: &str) -> Option<GrantType> {
        GrantType::ALL
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, g)| *g)
    }
}

/// `grant_types`, `scopes` and `audience` of one client (docs/src/proxy/bearer-tokens.md): a `client_credentials`
/// client needs a secret and an audience; redirect URIs only matter for the code grant.
fn client_grants(
    c: &RawClient,
    has_secret: bool,
    kp: &str,
    p: &mut Problems,
) -> (Vec<GrantType>, Vec<String>, Option<String>) {
    let mut grants = Vec::new();
    match &c.grant_types {
        None => grants = vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        Some(list) => {
            for (i, g) in list.iter().enumerate() {
                match GrantType::parse(g) {
                    Some(g) if !grants.contains(&g) => grants.push(g),
                    Some(_) => {}
                    None => p.push(
                        format!("{kp}.grant_types[{i}]"),
                        format!(
                            "{g:?} is not one of authorization_code, refresh_token, client_credentials"
                        ),
                    ),
                }
            }
            if list.is_empty() {
                p.push(format!("{kp}.grant_types"), "must name at least one grant");
            }
        }
    }
    let scopes = c.scopes.clone().unwrap_or_default();
    for (i, s) in scopes.iter().enumerate() {
        if s.is_empty()
            || !s
                .chars()
                .all(|ch| ch.is_ascii_graphic() && ch != '"' && ch != '\\')
        {
            p.push(
                format!("{kp}.scopes[{i}]"),
                format!("{s:?} is not a scope (printable ASCII, no spaces or quotes)"),
            );
        }
    }
    let audience = c.audience.clone();
    if grants.contains(&GrantType::ClientCredentials) {
        if !has_secret {
            p.push(
                format!("{kp}.client_secret"),
                "is required for the client_credentials grant",
            );
        }
        if audience.as_deref().is_none_or(str::is_empty) {
            p.push(
                format!("{kp}.audience"),
                "is required for the client_credentials grant: the aud of its access tokens",
            );
        }
    }
    if !grants.contains(&GrantType::AuthorizationCode)
        && c.redirect_uris.as_ref().is_some_and(|r| !r.is_empty())
    {
        p.push(
            format!("{kp}.redirect_uris"),
            "applies to the authorization_code grant only: add it to grant_types",
        );
    }
    if !grants.contains(&GrantType::ClientCredentials) {
        // `scopes` also bounds what user tokens may carry, so it applies to every client.
        for (key, set) in [("audience", audience.is_some())] {
            if set {
                p.push(
                    format!("{kp}.{key}"),
                    "applies to the client_credentials grant only: add it to grant_types",
                );
            }
        }
    }
    (grants, scopes, audience)
}

/// `pool.migration`: lazy migration of users from an old system (docs/src/pool/import-export.md).
#[derive(Debug, Clone)]
pub struct MigrationConfig {
    /// Where `{"username", "password"}` is POSTed for a sign-in naming an unknown user.
    pub url: Url,
    /// Sent as `Authorization: Bearer {secret}`.
    pub secret: Secret,
    /// The whole call (connect, request, response) must finish within this.
    pub timeout: Duration,
}

/// `pool.mfa` (docs/src/pool/mfa.md, Cognito's OFF / OPTIONAL / ON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MfaMode {
    /// No second factor is asked for or offered.
    #[default]
    Off,
    /// Users may set up TOTP after signing in; those who have it are asked for a code.
    Optional,
    /// Every user must have TOTP; one without it sets it up right after the password.
    Required,
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The origin the pool is reached at, when it has its own host name (default: the
    /// top-level `public_url`). The issuer is this origin + `/oauth2/pool`.
    pub public_url: Option<Url>,
    pub database: String,
    pub self_signup: bool,
    pub required_attributes: Vec<String>,
    /// Optional attributes also offered on the sign-up page.
    pub signup_attributes: Vec<String>,
    pub default_phone_region: phonenumber::country::Id,
    pub delivery: Delivery,
    pub password_policy: PasswordPolicy,
    pub lockout: LockoutPolicy,
    pub tokens: TokenLifetimes,
    pub ui: UiConfig,
    pub admin_token: Option<Secret>,
    pub session_timeout: Duration,
    pub clients: Vec<ClientConfig>,
    /// Upstream OpenID Providers offered as "Continue with …" (docs/src/pool/federation.md).
    pub identity_providers: Vec<IdentityProviderConfig>,
    /// The web admin console at `{issuer}/admin` (docs/src/pool/administration.md), for members of `admin_group`.
    pub admin_console: bool,
    pub admin_group: String,
    pub migration: Option<MigrationConfig>,
    pub mfa: MfaMode,
    /// Passkeys (WebAuthn discoverable credentials) on the hosted pages.
    pub passkeys: bool,
    /// How ID and access tokens are signed (`pool.signing_alg`, RS256 by default).
    pub signing_alg: crate::pool::jwt::SigningAlg,
    /// How long an invitation (the code sent to a user an administrator created) stays valid
    /// (`pool.invitation_ttl`, 7 days by default).
    pub invitation_ttl: Duration,
    /// The origin the links in emails are built on: `pool.public_url`, else the top-level
    /// `public_url` (filled in by [`finish`]); never a request's `Host`.
    pub origin: Option<Url>,
}

/// Rules that need the whole file: fills in the origin of emailed links, and refuses
/// passkeys on an IP address (WebAuthn needs a domain name as the relying party id).
pub fn finish(pool: &mut PoolConfig, public_url: &Url, p: &mut Problems) {
    let origin = pool
        .public_url
        .clone()
        .unwrap_or_else(|| public_url.clone());
    if pool.passkeys && matches!(origin.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_))) {
        let key = if pool.public_url.is_some() {
            "pool.public_url"
        } else {
            "public_url"
        };
        let mut fix = origin.clone();
        let _ = fix.set_host(Some("localhost"));
        p.push(
            "pool.passkeys",
            format!(
                "passkeys need a domain name, but {key} ({}) has an IP address as its host and \
                 browsers refuse WebAuthn there; use a domain name or {} in {key}, or set \
                 pool.passkeys = false",
                origin.as_str().trim_end_matches('/'),
                fix.as_str().trim_end_matches('/'),
            ),
        );
    }
    pool.origin = Some(origin);
}

fn dur(text: Option<&str>, default: Duration, path: &str, p: &mut Problems) -> Duration {
    match text {
        None => default,
        Some(t) => match duration::parse(t) {
            Some(d) if !d.is_zero() => d,
            _ => {
                p.push(
                    path,
                    format!("{t:?} is not a duration like 30s, 15m, 1h or 30d"),
                );
                default
            }
        },
    }
}

fn relative_to(config_file: &Path, path: &str) -> PathBuf {
    let pb = PathBuf::from(path);
    if pb.is_absolute() {
        pb
    } else {
        config_file.parent().map(|d| d.join(&pb)).unwrap_or(pb)
    }
}

/// Resolves a relative SQLite path against the configuration file's directory.
fn database_url(
    text: Option<&str>,
    config_file: &Path,
    data_dir: &Path,
    p: &mut Problems,
) -> String {
    let Some(text) = text else {
        return format!("sqlite://{}", data_dir.join("pool.db").display());
    };
    let text = match secret::expand_env(text) {
        Ok(t) => t,
        Err(e) => {
            p.push("pool.database", e.to_string());
            return String::new();
        }
    };
    if let Some(rest) = text
        .strip_prefix("sqlite://")
        .or_else(|| text.strip_prefix("sqlite:"))
    {
        let (file, query) = rest
            .split_once('?')
            .map(|(f, q)| (f, Some(q)))
            .unwrap_or((rest, None));
        if file.is_empty() || file == ":memory:" {
            p.push(
                "pool.database",
                "an in-memory SQLite database would lose every user at restart; give a file path",
            );
            return text;
        }
        let path = relative_to(config_file, file);
        return match query {
            Some(q) => format!("sqlite://{}?{q}", path.display()),
            None => format!("sqlite://{}", path.display()),
        };
    }
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        return text;
    }
    p.push("pool.database", "must start with sqlite:// or postgres://");
    text
}

fn resolve_secret(
    inline: Option<&str>,
    file: Option<&str>,
    path: &str,
    p: &mut Problems,
) -> Option<Secret> {
    if inline.is_some() && file.is_some() {
        p.push(path, format!("set either {path} or {path}_file, not both"));
        return None;
    }
    match secret::resolve(inline, file) {
        Ok(s) => s,
        Err(e) => {
            p.push(path, e.to_string());
            None
        }
    }
}

fn attribute_list(
    list: Option<Vec<String>>,
    default: &[&str],
    path: &str,
    p: &mut Problems,
) -> Vec<String> {
    let list = list.unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect());
    for (i, a) in list.iter().enumerate() {
        if !is_standard_attribute(a) && !is_custom_name(a) {
            p.push(format!("{path}[{i}]"), format!("{a:?} is neither a standard OIDC attribute (email, phone_number, name, given_name, family_name, …) nor custom:NAME"));
        }
    }
    list
}

fn redirect_list(list: Option<Vec<String>>, path: &str, p: &mut Problems) -> Vec<String> {
    let mut out = Vec::new();
    for (i, u) in list.unwrap_or_default().into_iter().enumerate() {
        match Url::parse(&u) {
            Ok(parsed)
                if matches!(parsed.scheme(), "http" | "https") && parsed.fragment().is_none() =>
            {
                out.push(u)
            }
            // Native apps may use private-use schemes (RFC 8252 §7.1).
            Ok(parsed) if parsed.scheme().contains('.') => out.push(u),
            _ => p.push(
                format!("{path}[{i}]"),
                format!("{u:?} is not an absolute http(s) URL without a fragment"),
            ),
        }
    }
    out
}

fn admin_group(group: Option<String>, p: &mut Problems) -> String {
    let g = group.unwrap_or_else(|| "admins".into());
    if g.is_empty() || g.len() > 128 || g.chars().any(|c| c.is_control() || c == ',') {
        p.push("pool.admin_group", format!("{g:?} is not a group name"));
    }
    g
}

/// OIDC Back-Channel Logout 1.0 §2.2: an absolute http(s) URL, no fragment (a query is allowed).
fn backchannel_uri(raw: Option<String>, path: &str, p: &mut Problems) -> Option<Url> {
    let raw = raw?;
    match Url::parse(&raw) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.fragment().is_none()
                && u.host().is_some() =>
        {
            Some(u)
        }
        _ => {
            p.push(
                path.to_string(),
                format!("{raw:?} is not an absolute http(s) URL without a fragment"),
            );
            None
        }
    }
}

/// Validates the raw `[pool]` table. `None` when it could not be read at all.
pub fn build(
    value: &toml::Value,
    config_file: &Path,
    data_dir: &Path,
    p: &mut Problems,
) -> Option<PoolConfig> {
    let raw = match RawPool::deserialize(value.clone()) {
        Ok(r) => r,
        Err(e) => {
            p.push("pool", e.message().trim().to_string());
            return None;
        }
    };
    let public_url = match raw.public_url.as_deref().map(Url::parse) {
        None => None,
        Some(Ok(u))
            if matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.path() == "/"
                && u.query().is_none() =>
        {
            Some(u)
        }
        Some(_) => {
            p.push(
                "pool.public_url",
                "must be an origin like https://login.example.com (no path)",
            );
            None
        }
    };
    let database = database_url(raw.database.as_deref(), config_file, data_dir, p);
    let required_attributes = attribute_list(
        raw.required_attributes,
        &["email"],
        "pool.required_attributes",
        p,
    );
    let signup_attributes = attribute_list(raw.signup_attributes, &[], "pool.signup_attributes", p);
    let region = raw.default_phone_region.unwrap_or_else(|| "US".into());
    let default_phone_region = match region
        .to_ascii_uppercase()
        .parse::<phonenumber::country::Id>()
    {
        Ok(id) => id,
        Err(_) => {
            p.push(
                "pool.default_phone_region",
                format!("{region:?} is not a two-letter region code like US, GB or JP"),
            );
            phonenumber::country::Id::US
        }
    };
    let delivery = match raw.delivery.as_deref().unwrap_or("log") {
        "log" => {
            if raw.smtp.is_some() {
                p.push(
                    "pool.smtp",
                    "is set but pool.delivery is \"log\"; set delivery = \"smtp\" to use it",
                );
            }
            Delivery::Log
        }
        "smtp" => match raw.smtp {
            None => {
                p.push(
                    "pool.smtp",
                    "is required when pool.delivery = \"smtp\" (host, port, from)",
                );
                Delivery::Log
            }
            Some(s) => {
                let host = s.host.unwrap_or_default();
                if host.is_empty() {
                    p.push("pool.smtp.host", "is required");
                }
                let from = s.from.unwrap_or_default();
                if let Err(e) = crate::pool::smtp::sender(&from) {
                    p.push("pool.smtp.from", e);
                }
                let tls = match s.tls.as_deref().unwrap_or("starttls") {
                    "none" => SmtpTls::None,
                    "starttls" => SmtpTls::StartTls,
                    "tls" | "implicit" => SmtpTls::Implicit,
                    other => {
                        p.push(
                            "pool.smtp.tls",
                            format!("{other:?} is not one of starttls, tls, none"),
                        );
                        SmtpTls::StartTls
                    }
                };
                let port = s.port.unwrap_or(match tls {
                    SmtpTls::Implicit => 465,
                    SmtpTls::StartTls => 587,
                    SmtpTls::None => 25,
                });
                let password = resolve_secret(
                    s.password.as_deref(),
                    s.password_file.as_deref(),
                    "pool.smtp.password",
                    p,
                );
                Delivery::Smtp(SmtpConfig {
                    host,
                    port,
                    username: s.username,
                    password,
                    from,
                    tls,
                })
            }
        },
        other => {
            p.push(
                "pool.delivery",
                format!("{other:?} is not one of log, smtp"),
            );
            Delivery::Log
        }
    };
    let pp = raw.password_policy.unwrap_or_default();
    let d = PasswordPolicy::default();
    let password_policy = PasswordPolicy {
        min_length: pp.min_length.unwrap_or(d.min_length),
        require_lowercase: pp.require_lowercase.unwrap_or(d.require_lowercase),
        require_uppercase: pp.require_uppercase.unwrap_or(d.require_uppercase),
        require_digits: pp.require_digits.unwrap_or(d.require_digits),
        require_symbols: pp.require_symbols.unwrap_or(d.require_symbols),
    };
    if !(6..=256).contains(&password_policy.min_length) {
        p.push(
            "pool.password_policy.min_length",
            format!("{} is not between 6 and 256", password_policy.min_length),
        );
    }
    let lo = raw.lockout.unwrap_or_default();
    let dl = LockoutPolicy::default();
    let lockout = LockoutPolicy {
        max_attempts: lo.max_attempts.unwrap_or(dl.max_attempts),
        initial: dur(lo.initial.as_deref(), dl.initial, "pool.lockout.initial", p),
        max: dur(lo.max.as_deref(), dl.max, "pool.lockout.max", p),
        reset_after: dur(
            lo.reset_after.as_deref(),
            dl.reset_after,
            "pool.lockout.reset_after",
            p,
        ),
        ip_max_attempts: lo.ip_max_attempts.unwrap_or(dl.ip_max_attempts),
    };
    if lockout.max_attempts == 0 {
        p.push("pool.lockout.max_attempts", "must be at least 1");
    }
    if lockout.max < lockout.initial {
        p.push(
            "pool.lockout.max",
            "must not be shorter than pool.lockout.initial",
        );
    }
    let t = raw.tokens.unwrap_or_default();
    let tokens = TokenLifetimes {
        id: dur(
            t.id.as_deref(),
            Duration::from_secs(3600),
            "pool.tokens.id",
            p,
        ),
        access: dur(
            t.access.as_deref(),
            Duration::from_secs(3600),
            "pool.tokens.access",
            p,
        ),
        refresh: dur(
            t.refresh.as_deref(),
            Duration::from_secs(30 * 86400),
            "pool.tokens.refresh",
            p,
        ),
        code: dur(
            t.code.as_deref(),
            Duration::from_secs(60),
            "pool.tokens.code",
            p,
        ),
    };
    let signing_alg = match raw.signing_alg.as_deref() {
        None | Some("RS256") => crate::pool::jwt::SigningAlg::Rs256,
        Some("ES256") => crate::pool::jwt::SigningAlg::Es256,
        Some(other) => {
            p.push(
                "pool.signing_alg",
                format!("{other:?} is not one of RS256, ES256"),
            );
            crate::pool::jwt::SigningAlg::Rs256
        }
    };
    let u = raw.ui.unwrap_or_default();
    let mut ui = UiConfig {
        title: u.title.unwrap_or_else(|| "Portcullis".into()),
        logo: u.logo.map(|l| relative_to(config_file, &l)),
        css: u.css.map(|c| relative_to(config_file, &c)),
        templates_dir: u.templates_dir.map(|t| relative_to(config_file, &t)),
        mail: Default::default(),
    };
    for (key, f) in [("pool.ui.logo", &ui.logo), ("pool.ui.css", &ui.css)] {
        if let Some(f) = f
            && !f.is_file()
        {
            p.push(key, format!("{} is not a readable file", f.display()));
        }
    }
    if let Some(dir) = &ui.templates_dir {
        if !dir.is_dir() {
            p.push(
                "pool.ui.templates_dir",
                format!("{} is not a directory", dir.display()),
            );
        } else {
            match crate::pool::mail::Mailer::load(Some(dir)) {
                Ok(m) => ui.mail = std::sync::Arc::new(m),
                Err(e) => p.push("pool.ui.templates_dir", e),
            }
        }
    }
    let admin_token = resolve_secret(
        raw.admin_token.as_deref(),
        raw.admin_token_file.as_deref(),
        "pool.admin_token",
        p,
    );
    if let Some(t) = &admin_token
        && t.expose().len() < 16
    {
        p.push("pool.admin_token", "must be at least 16 characters");
    }
    let session_timeout = dur(
        raw.session_timeout.as_deref(),
        Duration::from_secs(3600),
        "pool.session_timeout",
        p,
    );
    let mut clients = Vec::new();
    let mut seen = BTreeMap::new();
    for (i, c) in raw.clients.unwrap_or_default().into_iter().enumerate() {
        let kp = format!("pool.clients[{i}]");
        let has_secret = c.client_secret.is_some() || c.client_secret_file.is_some();
        let (grant_types, scopes, audience) = client_grants(&c, has_secret, &kp, p);
        let client_id = c.client_id.unwrap_or_default();
        if client_id.is_empty() || !client_id.chars().all(|ch| ch.is_ascii_graphic()) {
            p.push(
                format!("{kp}.client_id"),
                "is required (printable ASCII, no spaces)",
            );
        } else if client_id == "portcullis" || seen.insert(client_id.clone(), i).is_some() {
            p.push(
                format!("{kp}.client_id"),
                format!("{client_id:?} is already used (\"portcullis\" is the proxy's own client)"),
            );
        }
        let client_secret = resolve_secret(
            c.client_secret.as_deref(),
            c.client_secret_file.as_deref(),
            &format!("{kp}.client_secret"),
            p,
        );
        let redirect_uris = redirect_list(c.redirect_uris, &format!("{kp}.redirect_uris"), p);
        if redirect_uris.is_empty() && grant_types.contains(&GrantType::AuthorizationCode) {
            p.push(
                format!("{kp}.redirect_uris"),
                "at least one redirect URI is required",
            );
        }
        let post_logout_redirect_uris = redirect_list(
            c.post_logout_redirect_uris,
            &format!("{kp}.post_logout_redirect_uris"),
            p,
        );
        let backchannel_logout_uri = backchannel_uri(
            c.backchannel_logout_uri,
            &format!("{kp}.backchannel_logout_uri"),
            p,
        );
        clients.push(ClientConfig {
            client_id,
            client_secret,
            redirect_uris,
            post_logout_redirect_uris,
            grant_types,
            scopes,
            audience,
            backchannel_logout_uri,
        });
    }
    let migration = raw.migration.and_then(|m| migration(m, p));
    let mfa = match raw.mfa.as_deref().unwrap_or("off") {
        "off" => MfaMode::Off,
        "optional" => MfaMode::Optional,
        "required" => MfaMode::Required,
        other => {
            p.push(
                "pool.mfa",
                format!("{other:?} is not one of off, optional, required"),
            );
            MfaMode::Off
        }
    };
    Some(PoolConfig {
        mfa,
        passkeys: raw.passkeys.unwrap_or(false),
        public_url: public_url.clone(),
        database,
        self_signup: raw.self_signup.unwrap_or(true),
        required_attributes,
        signup_attributes,
        default_phone_region,
        delivery,
        password_policy,
        lockout,
        tokens,
        ui,
        admin_token,
        session_timeout,
        clients,
        identity_providers: federation::build(raw.identity_providers.unwrap_or_default(), p),
        admin_console: raw.admin_console.unwrap_or(false),
        admin_group: admin_group(raw.admin_group, p),
        migration,
        signing_alg,
        invitation_ttl: dur(
            raw.invitation_ttl.as_deref(),
            Duration::from_secs(7 * 86_400),
            "pool.invitation_ttl",
            p,
        ),
        origin: public_url.clone(),
    })
}

/// Longest `pool.migration.timeout`: a sign-in waits for the hook.
const MAX_MIGRATION_TIMEOUT: Duration = Duration::from_secs(30);

fn migration(m: RawMigration, p: &mut Problems) -> Option<MigrationConfig> {
    let url = match m.url.as_deref().map(secret::expand_env) {
        None => {
            p.push("pool.migration.url", "is required");
            None
        }
        Some(Err(e)) => {
            p.push("pool.migration.url", e.to_string());
            None
        }
        Some(Ok(text)) => match Url::parse(&text) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.fragment().is_none() =>
            {
                Some(u)
            }
            _ => {
                p.push(
                    "pool.migration.url",
                    format!("{text:?} is not an absolute http(s) URL"),
                );
                None
            }
        },
    };
    let secret = resolve_secret(
        m.secret.as_deref(),
        m.secret_file.as_deref(),
        "pool.migration.secret",
        p,
    );
    if secret.is_none() && m.secret.is_none() && m.secret_file.is_none() {
        p.push(
            "pool.migration.secret",
            "is required: the hook must be able to tell the pool's calls from anyone else's",
        );
    }
    let timeout = dur(
        m.timeout.as_deref(),
        Duration::from_secs(5),
        "pool.migration.timeout",
        p,
    );
    if timeout > MAX_MIGRATION_TIMEOUT {
        p.push(
            "pool.migration.timeout",
            "must be at most 30s (a sign-in waits for the hook)",
        );
    }
    Some(MigrationConfig {
        url: url?,
        secret: secret?,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (Option<PoolConfig>, Vec<String>) {
        let v: toml::Value = toml::from_str::<toml::Table>(text)
            .map(toml::Value::Table)
            .unwrap();
        let mut p = Problems::default();
        let c = build(
            &v,
            Path::new("/etc/p/portcullis.toml"),
            Path::new("/var/lib/p"),
            &mut p,
        );
        (c, p.0.into_iter().map(|x| x.to_string()).collect())
    }

    #[test]
    fn defaults_are_cognito_like() {
        let (c, problems) = check("");
        assert!(problems.is_empty(), "{problems:?}");
        let c = c.unwrap();
        assert_eq!(c.database, "sqlite:///var/lib/p/pool.db");
        assert_eq!(c.lockout.max_attempts, 5);
        assert_eq!(c.tokens.refresh, Duration::from_secs(30 * 86400));
        assert_eq!(c.required_attributes, vec!["email".to_string()]);
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let (_, problems) = check(
            "database = \"mysql://x\"\nrequired_attributes = [\"shoe_size\"]\ndefault_phone_region = \"ZZ\"\n\
             lockout = { initial = \"soon\" }\ntokens = { id = \"0s\" }\n[[clients]]\nclient_id = \"portcullis\"\nredirect_uris = [\"/relative\"]\n",
        );
        let joined = problems.join("\n");
        for key in [
            "pool.database",
            "pool.required_attributes[0]",
            "pool.default_phone_region",
            "pool.lockout.initial",
            "pool.tokens.id",
            "pool.clients[0].client_id",
            "pool.clients[0].redirect_uris[0]",
        ] {
            assert!(joined.contains(key), "missing {key} in {joined}");
        }
        let (_, mfa) = check("mfa = \"on\"");
        assert!(
            mfa[0].contains("pool.mfa") && mfa[0].contains("off, optional, required"),
            "{mfa:?}"
        );
        let (c, _) = check("mfa = \"required\"\npasskeys = true");
        let c = c.unwrap();
        assert_eq!((c.mfa, c.passkeys), (MfaMode::Required, true));
        let (_, unknown) = check("colour = \"red\"");
        assert!(unknown[0].contains("colour"), "{unknown:?}");
    }

    #[test]
    fn backchannel_logout_uri_must_be_absolute() {
        let client = |uri: &str| {
            format!(
                "[[clients]]\nclient_id = \"app\"\nredirect_uris = [\"https://app.test/cb\"]\nbackchannel_logout_uri = \"{uri}\"\n"
            )
        };
        let (c, problems) = check(&client("https://app.test/bcl?tenant=1"));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            c.unwrap().clients[0]
                .backchannel_logout_uri
                .as_ref()
                .map(|u| u.as_str()),
            Some("https://app.test/bcl?tenant=1")
        );
        for bad in [
            "/bcl",
            "ftp://app.test/bcl",
            "https://app.test/bcl#x",
            "app.test",
        ] {
            let (_, problems) = check(&client(bad));
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains("pool.clients[0].backchannel_logout_uri")),
                "{bad}: {problems:?}"
            );
        }
    }

    #[test]
    fn migration_hook_is_checked_and_its_secret_redacted() {
        let (c, problems) = check(
            "migration = { url = \"https://old.example.com/migrate\", secret = \"s3cret-value\", timeout = \"2s\" }",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let m = c.unwrap().migration.unwrap();
        assert_eq!(m.timeout, Duration::from_secs(2));
        assert_eq!(m.url.as_str(), "https://old.example.com/migrate");
        assert!(!format!("{m:?}").contains("s3cret-value"));
        let (_, problems) =
            check("migration = { url = \"ftp://x\", timeout = \"1h\", retries = 3 }");
        assert!(problems.join("\n").contains("retries"), "{problems:?}");
        let (_, problems) = check("migration = { url = \"ftp://x\", timeout = \"1h\" }");
        let joined = problems.join("\n");
        for key in [
            "pool.migration.url",
            "pool.migration.secret",
            "pool.migration.timeout",
        ] {
            assert!(joined.contains(key), "missing {key} in {joined}");
        }
    }

    #[test]
    fn relative_sqlite_paths_follow_the_config_file() {
        let (c, _) = check("database = \"sqlite://./data/pool.db\"");
        assert_eq!(c.unwrap().database, "sqlite:///etc/p/./data/pool.db");
    }

    #[test]
    fn machine_clients_need_a_secret_and_an_audience() {
        let (c, problems) = check(
            "[[clients]]\nclient_id = \"job\"\nclient_secret = \"s\"\ngrant_types = [\"client_credentials\"]\n\
             scopes = [\"orders/read\"]\naudience = \"api://orders\"\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let job = &c.unwrap().clients[0];
        assert_eq!(job.grant_types, vec![GrantType::ClientCredentials]);
        assert_eq!(job.audience.as_deref(), Some("api://orders"));
        let (_, problems) = check(
            "[[clients]]\nclient_id = \"job\"\ngrant_types = [\"client_credentials\", \"password\"]\n\
             redirect_uris = [\"https://x.example/cb\"]\n[[clients]]\nclient_id = \"web\"\nclient_secret = \"s\"\n\
             redirect_uris = [\"https://x.example/cb\"]\nscopes = [\"a\"]\naudience = \"b\"\n",
        );
        let joined = problems.join("\n");
        // `scopes` on a code-flow client bounds its user tokens: not a problem.
        assert!(!joined.contains("pool.clients[1].scopes"), "{joined}");
        for key in [
            "pool.clients[0].client_secret",
            "pool.clients[0].audience",
            "pool.clients[0].grant_types[1]",
            "pool.clients[0].redirect_uris",
            "pool.clients[1].audience",
        ] {
            assert!(joined.contains(key), "missing {key} in {joined}");
        }
    }
}
