//! Stickiness cookies, sealed with the session key ring (AES-256-GCM, the cookie's name as
//! associated data): `AWSALB-<group>` names the target a client stays on, `AWSALBTG-<route>`
//! the group of a weighted `forward`. The value holds an expiry and the choice; a cookie that
//! does not open, has expired, or names something no longer configured is ignored (a new choice
//! is made and a new cookie set) — never an error.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http::HeaderMap;
use http::HeaderValue;

use crate::session::keyring::KeyRing;
use crate::session::shards::cookie_pairs;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
/// Longest cookie value opened (a URL and an expiry, sealed).
const MAX_VALUE: usize = 1024;

/// Seals and opens stickiness cookies.
#[derive(Clone)]
pub struct Sealer {
    keyring: Arc<KeyRing>,
    /// `; Path=/; HttpOnly; SameSite=Lax[; Secure]`.
    attrs: &'static str,
}

impl Sealer {
    pub fn new(keyring: Arc<KeyRing>, secure: bool) -> Sealer {
        Sealer {
            keyring,
            attrs: if secure {
                "; Path=/; HttpOnly; SameSite=Lax; Secure"
            } else {
                "; Path=/; HttpOnly; SameSite=Lax"
            },
        }
    }

    /// The choice a client's cookie `name` carries, with the seconds it has left; `None` when
    /// absent, tampered with or expired.
    pub fn read(&self, headers: &HeaderMap, name: &str, now: i64) -> Option<(String, i64)> {
        let (_, v) = cookie_pairs(headers).find(|(n, _)| *n == name.as_bytes())?;
        if v.len() > MAX_VALUE {
            return None;
        }
        let sealed = B64.decode(v).ok()?;
        let plain = self.keyring.open(name.as_bytes(), &sealed)?;
        let text = String::from_utf8(plain).ok()?;
        let (expiry, choice) = text.split_once('\n')?;
        let left = expiry.parse::<i64>().ok()? - now;
        (left > 0).then(|| (choice.to_string(), left))
    }

    /// A `Set-Cookie` value pinning `choice` under `name` for `duration`.
    pub fn set_cookie(
        &self,
        name: &str,
        choice: &str,
        duration: Duration,
        now: i64,
    ) -> Option<HeaderValue> {
        let secs = duration.as_secs().max(1);
        let plain = format!("{}\n{choice}", now + secs as i64);
        let sealed = self.keyring.seal(name.as_bytes(), plain.as_bytes());
        let value = format!(
            "{name}={}; Max-Age={secs}{}",
            B64.encode(sealed),
            self.attrs
        );
        HeaderValue::from_str(&value).ok()
    }
}

/// Whether a pin with `left` seconds of `duration` should be renewed (past half its life).
pub fn needs_renewal(left: i64, duration: Duration) -> bool {
    left.saturating_mul(2) < duration.as_secs() as i64
}
