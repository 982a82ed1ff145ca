//! One-time codes: six random digits, 24 h for sign-up confirmation and 1 h for password reset,
//! stored hashed with a limited number of attempts (`store::security`). Delivery is `log` —
//! the code is written to the server log, a deliberate, clearly labelled development exception
//! to "no secrets in logs" — or `smtp`, to the user's email address.

use ring::rand::{SecureRandom, SystemRandom};

use super::config::{Delivery, PoolConfig};
use super::i18n::{self, Lang};
use super::smtp;
use super::store::{Store, StoreError, User};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Signup,
    Reset,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Signup => "signup",
            Purpose::Reset => "reset",
        }
    }

    pub fn lifetime_secs(self) -> i64 {
        match self {
            Purpose::Signup => 24 * 3600,
            Purpose::Reset => 3600,
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

/// Creates a fresh code for (user, purpose), stores it and delivers it.
pub async fn issue(
    cfg: &PoolConfig,
    store: &Store,
    user: &User,
    purpose: Purpose,
    lang: Lang,
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
    if let Some(to) = user.email() {
        let sent = store
            .record_failure(&address_key(to), now_ms, now_ms - 3_600_000)
            .await?;
        if sent > SENDS_PER_ADDRESS_PER_HOUR {
            return Err(DeliveryError::TooManyToAddress(user.username.clone()));
        }
    }
    let code = generate_code();
    store
        .put_code(
            &user.sub,
            purpose.as_str(),
            &code,
            now + purpose.lifetime_secs(),
        )
        .await?;
    match &cfg.delivery {
        Delivery::Log => {
            // Development only (pool.delivery = "log"): the code is deliberately logged.
            tracing::warn!(
                target: "portcullis::pool::delivery",
                delivery = "log",
                username = %crate::pool::audit::printable(&user.username),
                purpose = purpose.as_str(),
                code = %code,
                "DEVELOPMENT ONLY one-time code (pool.delivery = \"log\"; use \"smtp\" in production)"
            );
            Ok(())
        }
        Delivery::Smtp(smtp_cfg) => {
            let to = user
                .email()
                .ok_or_else(|| DeliveryError::NoAddress(user.username.clone()))?;
            let hours = (purpose.lifetime_secs() / 3600).to_string();
            let body = i18n::fill(
                i18n::t(lang, "mail_body"),
                &[("code", &code), ("hours", &hours)],
            );
            smtp::send(smtp_cfg, to, i18n::t(lang, "mail_subject"), &body).await?;
            tracing::info!(username = %crate::pool::audit::printable(&user.username), purpose = purpose.as_str(), "one-time code sent by email");
            Ok(())
        }
    }
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
