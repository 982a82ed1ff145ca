//! One-time codes and the emails that carry them: six random digits, 24 h for sign-up
//! confirmation, 1 h for password reset, `pool.invitation_ttl` (7 days) for an invitation,
//! stored hashed with a limited number of attempts (`store::security`). Delivery is `log` —
//! the code is written to the server log, a deliberate, clearly labelled development exception
//! to "no secrets in logs" — or `smtp`, to the user's email address, with the message of its
//! purpose ([`super::mail`]): the site name, a link that opens the page with the code filled
//! in (built on the configured public URL, never a request's `Host`), the code, and the expiry
//! in words. Notices without a code (a sign-in from a new device, second factors changed) go
//! the same way.

use std::net::IpAddr;

use ring::rand::{SecureRandom, SystemRandom};

use super::config::{Delivery, PoolConfig};
use super::i18n::{self, Lang};
use super::mail;
use super::smtp;
use super::store::{Store, StoreError, User};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Signup,
    Reset,
    /// A user an administrator created chooses a password (on the reset page, so the code is
    /// stored as a reset code), for `pool.invitation_ttl`.
    Invitation,
}

impl Purpose {
    /// The code's kind in the store (what the page that takes it checks).
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Signup => "signup",
            Purpose::Reset | Purpose::Invitation => "reset",
        }
    }

    pub fn lifetime_secs(self, cfg: &PoolConfig) -> i64 {
        match self {
            Purpose::Signup => 24 * 3600,
            Purpose::Reset => 3600,
            Purpose::Invitation => i64::try_from(cfg.invitation_ttl.as_secs()).unwrap_or(i64::MAX),
        }
    }

    fn mail(self) -> mail::Purpose {
        match self {
            Purpose::Signup => mail::Purpose::Signup,
            Purpose::Reset => mail::Purpose::Reset,
            Purpose::Invitation => mail::Purpose::Invitation,
        }
    }

    /// The page that takes the code.
    fn page(self) -> &'static str {
        match self {
            Purpose::Signup => "/confirm",
            Purpose::Reset | Purpose::Invitation => "/reset-password",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Smtp(#[from] smtp::SmtpError),
    #[error("user {0} has no email address to send a code to")]
    NoAddress(String),
    #[error("too many codes sent to user {0} in the last hour; not sending another")]
    TooMany(String),
    #[error(
        "too many codes sent to the email address of user {0} in the last hour; not sending another"
    )]
    TooManyToAddress(String),
    #[error("the pool has no public URL to build the links in its emails on")]
    NoOrigin,
    #[error("email template: {0}")]
    Template(String),
}

/// Codes sent per user per hour, at most (sign-up, resend, forgot password together): a
/// stranger cannot turn the pool into a mail cannon aimed at someone's inbox.
pub const SENDS_PER_HOUR: u32 = 10;

/// Codes sent per destination address per hour, at most, whichever users name it (in the
/// pool's store, so shared by replicas): sign-ups under many names with one victim's address
/// cannot flood that inbox. Beyond it nothing is sent and the page answers as usual.
pub const SENDS_PER_ADDRESS_PER_HOUR: u32 = 10;

/// The counter key of a destination address: a digest of the lowercased address, so the
/// counters table holds no addresses.
fn address_key(addr: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, addr.trim().to_lowercase().as_bytes());
    let hex: String = d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sendto:{hex}")
}

/// Six uniformly random digits (rejection sampling, no modulo bias).
pub fn generate_code() -> String {
    let rng = SystemRandom::new();
    loop {
        let mut b = [0u8; 4];
        rng.fill(&mut b).expect("system RNG available");
        let n = u32::from_be_bytes(b);
        if n < 4_294_000_000 {
            return format!("{:06}", n % 1_000_000);
        }
    }
}

/// The language of a message to `user`: their `locale` attribute when it is one we have,
/// else `fallback` (the page's language, or English for an administrator's action).
pub fn user_lang(user: &User, fallback: Lang) -> Lang {
    match user
        .attributes
        .get("locale")
        .and_then(|v| v.as_str())
        .map(|l| l.to_ascii_lowercase())
    {
        Some(l) if l.starts_with("ja") => Lang::Ja,
        Some(l) if l.starts_with("en") => Lang::En,
        _ => fallback,
    }
}

/// A link to a pool page on the configured origin, with its query.
pub fn link(cfg: &PoolConfig, page: &str, query: &[(&str, &str)]) -> Result<String, DeliveryError> {
    let mut u = cfg.origin.clone().ok_or(DeliveryError::NoOrigin)?;
    u.set_path(&format!("{}{page}", crate::http::paths::POOL_PREFIX));
    u.set_fragment(None);
    if query.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(query);
    }
    Ok(u.to_string())
}

/// The email of a code: the purpose's template with the link, the code and the expiry.
pub fn code_mail(
    cfg: &PoolConfig,
    user: &User,
    purpose: Purpose,
    lang: Lang,
    code: &str,
) -> Result<smtp::Mail, DeliveryError> {
    let mut query = vec![("username", user.username.as_str()), ("code", code)];
    if purpose == Purpose::Invitation {
        query.push(("invited", "1"));
    }
    let link = link(cfg, purpose.page(), &query)?;
    let expiry = i18n::duration_words(lang, purpose.lifetime_secs(cfg));
    cfg.ui
        .mail
        .email(
            purpose.mail(),
            lang,
            &cfg.ui.title,
            &user.username,
            &[("code", code), ("link", &link), ("expiry", &expiry)],
        )
        .map_err(DeliveryError::Template)
}

/// Counts a send against the per-user and per-address hourly limits.
async fn count_send(
    store: &Store,
    user: &User,
    to: Option<&str>,
    now: i64,
) -> Result<(), DeliveryError> {
    let now_ms = now.saturating_mul(1000);
    let send_key = format!("send:{}", user.sub);
    let sent = store
        .record_failure(&send_key, now_ms, now_ms - 3_600_000)
        .await?;
    if sent > SENDS_PER_HOUR {
        return Err(DeliveryError::TooMany(user.username.clone()));
    }
    if let Some(to) = to {
        let sent = store
            .record_failure(&address_key(to), now_ms, now_ms - 3_600_000)
            .await?;
        if sent > SENDS_PER_ADDRESS_PER_HOUR {
            return Err(DeliveryError::TooManyToAddress(user.username.clone()));
        }
    }
    Ok(())
}

/// Development only (`pool.delivery = "log"`): the code is deliberately logged.
fn log_code(user: &User, kind: &str, message: mail::Purpose, code: &str) {
    tracing::warn!(
        target: "portcullis::pool::delivery",
        delivery = "log",
        username = %crate::pool::audit::printable(&user.username),
        purpose = kind,
        message = message.name(),
        code = %code,
        "DEVELOPMENT ONLY one-time code (pool.delivery = \"log\"; use \"smtp\" in production)"
    );
}

/// Creates a fresh code for (user, purpose), stores it and delivers it.
pub async fn issue(
    cfg: &PoolConfig,
    store: &Store,
    user: &User,
    purpose: Purpose,
    lang: Lang,
    now: i64,
) -> Result<(), DeliveryError> {
    count_send(store, user, user.email(), now).await?;
    let code = generate_code();
    store
        .put_code(
            &user.sub,
            purpose.as_str(),
            &code,
            now + purpose.lifetime_secs(cfg),
        )
        .await?;
    match &cfg.delivery {
        Delivery::Log => {
            log_code(user, purpose.as_str(), purpose.mail(), &code);
            Ok(())
        }
        Delivery::Smtp(smtp_cfg) => {
            let to = user
                .email()
                .ok_or_else(|| DeliveryError::NoAddress(user.username.clone()))?;
            let mail = code_mail(cfg, user, purpose, user_lang(user, lang), &code)?;
            smtp::send(smtp_cfg, to, &mail).await?;
            tracing::info!(username = %crate::pool::audit::printable(&user.username), purpose = purpose.mail().name(), "one-time code sent by email");
            Ok(())
        }
    }
}

/// Sends a notice without a code (new device, second factors changed) to the user's address;
/// with `delivery = "log"` the notice is logged (it holds no secret).
async fn notify(
    cfg: &PoolConfig,
    user: &User,
    purpose: mail::Purpose,
    lang: Lang,
    vars: &[(&str, &str)],
) -> Result<(), DeliveryError> {
    let lang = user_lang(user, lang);
    let link = link(cfg, "/account", &[])?;
    let mut all = vars.to_vec();
    all.push(("link", &link));
    let mail = cfg
        .ui
        .mail
        .email(purpose, lang, &cfg.ui.title, &user.username, &all)
        .map_err(DeliveryError::Template)?;
    match &cfg.delivery {
        Delivery::Log => {
            tracing::info!(target: "portcullis::pool::delivery", delivery = "log", username = %crate::pool::audit::printable(&user.username), purpose = purpose.name(), subject = %mail.subject, "notice (pool.delivery = \"log\")");
            Ok(())
        }
        Delivery::Smtp(smtp_cfg) => {
            let to = user
                .email()
                .ok_or_else(|| DeliveryError::NoAddress(user.username.clone()))?;
            smtp::send(smtp_cfg, to, &mail).await?;
            tracing::info!(username = %crate::pool::audit::printable(&user.username), purpose = purpose.name(), "notice sent by email");
            Ok(())
        }
    }
}

/// Tells the user their second factors changed (`change` in words, e.g. "TOTP turned on").
pub async fn notify_mfa_changed(
    cfg: &PoolConfig,
    user: &User,
    change: &str,
    lang: Lang,
    now: i64,
) -> Result<(), DeliveryError> {
    let time = i18n::time_words(now);
    notify(
        cfg,
        user,
        mail::Purpose::MfaChanged,
        lang,
        &[("change", change), ("time", &time)],
    )
    .await
}

/// A device as a person names it: the browser family and the system, from `User-Agent`.
pub fn device_name(user_agent: &str) -> String {
    let ua = user_agent;
    let browser = if ua.contains("Edg/") {
        "Edge"
    } else if ua.contains("Firefox/") {
        "Firefox"
    } else if ua.contains("Chrome/") || ua.contains("Chromium/") {
        "Chrome"
    } else if ua.contains("Safari/") {
        "Safari"
    } else {
        "A browser"
    };
    let system = if ua.contains("Android") {
        "Android"
    } else if ua.contains("iPhone") || ua.contains("iPad") {
        "iOS"
    } else if ua.contains("Windows") {
        "Windows"
    } else if ua.contains("Macintosh") || ua.contains("Mac OS X") {
        "macOS"
    } else if ua.contains("Linux") || ua.contains("X11") {
        "Linux"
    } else {
        "an unknown system"
    };
    format!("{browser} on {system}")
}

/// The network of an address as a device is recognised by: the /24 of IPv4, the /48 of IPv6.
fn network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

/// How long a device stays known without a sign-in from it.
const DEVICE_MEMORY_SECS: i64 = 180 * 86_400;

/// Records a successful sign-in and, when it comes from a device (browser family + system +
/// network) not seen for this user in 180 days — and the user has signed in before — sends the
/// new-device notice. Returns whether the device was new. Call after every successful sign-in.
pub async fn sign_in_seen(
    cfg: &PoolConfig,
    store: &Store,
    user: &User,
    user_agent: &str,
    ip: IpAddr,
    lang: Lang,
    now: i64,
) -> Result<bool, DeliveryError> {
    let device = device_name(user_agent);
    let now_ms = now.saturating_mul(1000);
    let forget_before = now_ms - DEVICE_MEMORY_SECS * 1000;
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{}\n{device}\n{}", user.sub, network(ip)).as_bytes(),
    );
    let hex: String = d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let known_user = store
        .record_failure(&format!("signedin:{}", user.sub), now_ms, forget_before)
        .await?
        > 1;
    let new_device = store
        .record_failure(&format!("device:{hex}"), now_ms, forget_before)
        .await?
        == 1;
    if known_user && new_device {
        let time = i18n::time_words(now);
        let address = ip.to_string();
        notify(
            cfg,
            user,
            mail::Purpose::NewDevice,
            lang,
            &[("device", &device), ("address", &address), ("time", &time)],
        )
        .await?;
    }
    Ok(known_user && new_device)
}

/// Issues and delivers a code without making the caller wait, so a page's response time does
/// not reveal whether the account exists (forgot password, resend). Failures are logged.
pub fn issue_in_background(
    cfg: std::sync::Arc<PoolConfig>,
    store: Store,
    user: User,
    purpose: Purpose,
    lang: Lang,
) {
    tokio::spawn(async move {
        if let Err(e) = issue(&cfg, &store, &user, purpose, lang, super::now()).await {
            tracing::error!(error = %e, purpose = purpose.as_str(), "cannot deliver a one-time code");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool_config() -> PoolConfig {
        let v = toml::Value::Table(toml::from_str("database = \"sqlite://x.db\"").unwrap());
        let mut p = crate::config::Problems::default();
        let mut c = crate::pool::config::build(
            &v,
            std::path::Path::new("/etc/p/portcullis.toml"),
            std::path::Path::new("/var/lib/p"),
            &mut p,
        )
        .unwrap();
        let url = url::Url::parse("https://login.example.com/").unwrap();
        crate::pool::config::finish(&mut c, &url, &mut p);
        c
    }

    fn user(store_sub: &str) -> User {
        User {
            sub: store_sub.into(),
            username: "alice".into(),
            status: crate::pool::store::UserStatus::Confirmed,
            password_hash: String::new(),
            attributes: serde_json::Map::from_iter([(
                "email".to_string(),
                serde_json::Value::String("alice@example.com".into()),
            )]),
            groups: Vec::new(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[tokio::test]
    async fn a_new_device_is_noticed_once_and_never_on_the_first_sign_in() {
        let cfg = pool_config();
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";
        let home: IpAddr = "192.0.2.10".parse().unwrap();
        for store in crate::pool::store::test_stores("devices").await {
            let u = user("sub-devices");
            let seen = |ua: &'static str, ip: IpAddr, t: i64| {
                let (cfg, store, u) = (&cfg, &store, &u);
                async move {
                    sign_in_seen(cfg, store, u, ua, ip, Lang::En, t)
                        .await
                        .unwrap()
                }
            };
            assert!(!seen(firefox, home, 1_000).await, "the first sign-in ever");
            assert!(
                !seen(firefox, "192.0.2.99".parse().unwrap(), 2_000).await,
                "same /24"
            );
            assert!(seen(chrome, home, 3_000).await, "another browser");
            assert!(!seen(chrome, home, 4_000).await, "known now");
            assert!(
                seen(firefox, "198.51.100.1".parse().unwrap(), 5_000).await,
                "another network"
            );
        }
    }

    #[tokio::test]
    async fn notices_render_and_links_are_on_the_public_url() {
        let cfg = pool_config();
        let u = user("sub-email");
        notify_mfa_changed(&cfg, &u, "TOTP turned on", Lang::En, 1_002)
            .await
            .unwrap();
        let l = link(&cfg, "/confirm", &[("username", "a&b"), ("code", "1")]).unwrap();
        assert_eq!(
            l,
            "https://login.example.com/oauth2/pool/confirm?username=a%26b&code=1"
        );
    }

    #[test]
    fn devices_are_named_by_browser_and_system() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";
        assert_eq!(device_name(chrome), "Chrome on Linux");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        assert_eq!(device_name(iphone), "Safari on iOS");
        assert_eq!(network("192.0.2.77".parse().unwrap()), "192.0.2.0/24");
        assert_eq!(
            network("2001:db8:1:2::9".parse().unwrap()),
            "2001:db8:1::/48"
        );
    }

    #[test]
    fn codes_are_six_digits_and_vary() {
        let codes: std::collections::BTreeSet<String> = (0..50).map(|_| generate_code()).collect();
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 6 && c.chars().all(|d| d.is_ascii_digit()))
        );
        assert!(codes.len() > 40);
    }
}
