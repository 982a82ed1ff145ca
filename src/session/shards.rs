//! ALB-style cookie shards: a sealed session is base64url-encoded and split over `NAME-0`,
//! `NAME-1`, … (at most [`MAX_SHARDS`]), each whole `Set-Cookie` line at most
//! [`MAX_COOKIE_BYTES`]. Reading concatenates the shards in index order; any gap, reorder or
//! truncation makes the value fail to open, which is "no session".

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, header};

pub const MAX_SHARDS: usize = 4;
pub const MAX_COOKIE_BYTES: usize = 4000;

/// The session would need more than four shards.
#[derive(Debug, thiserror::Error)]
#[error(
    "the session needs {needed} bytes of cookies, more than {MAX_SHARDS} cookies of {MAX_COOKIE_BYTES} bytes can hold"
)]
pub struct TooLarge {
    pub needed: usize,
}

/// Cookie names and attributes, computed once at start-up.
#[derive(Debug, Clone)]
pub struct CookieJar {
    name: String,
    shard_names: Vec<String>,
    login_prefix: String,
    attrs: String,
    clear_values: Vec<HeaderValue>,
}

/// Iterates `(name, value)` over every `Cookie` header, as text (pairs that are not UTF-8 are
/// skipped).
pub fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    cookie_pairs(headers)
        .filter_map(|(n, v)| Some((std::str::from_utf8(n).ok()?, std::str::from_utf8(v).ok()?)))
}

/// Iterates `(name, value)` over every `Cookie` header as bytes: one `memchr` pass, no
/// validation (a session cookie is long, and this runs on every request).
pub fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| Pairs(v.as_bytes()))
}

struct Pairs<'a>(&'a [u8]);

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.0.is_empty() {
            let end = memchr::memchr(b';', self.0).unwrap_or(self.0.len());
            let pair = self.0[..end].trim_ascii();
            self.0 = &self.0[(end + 1).min(self.0.len())..];
            if let Some(eq) = memchr::memchr(b'=', pair) {
                return Some((pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()));
            }
        }
        None
    }
}

impl CookieJar {
    pub fn new(name: &str, secure: bool) -> CookieJar {
        let attrs = format!(
            "; Path=/; HttpOnly; SameSite=Lax{}",
            if secure { "; Secure" } else { "" }
        );
        let shard_names: Vec<String> = (0..MAX_SHARDS).map(|i| format!("{name}-{i}")).collect();
        let clear_values = shard_names
            .iter()
            .map(|n| {
                HeaderValue::from_str(&format!(
                    "{n}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT{attrs}"
                ))
                .expect("cookie names are validated tokens")
            })
            .collect();
        CookieJar {
            name: name.to_string(),
            shard_names,
            login_prefix: format!("{name}-login-"),
            attrs,
            clear_values,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn login_prefix(&self) -> &str {
        &self.login_prefix
    }

    pub fn attrs(&self) -> &str {
        &self.attrs
    }

    /// The concatenated shard text, or `None` when shard 0 is absent.
    pub fn read<'a>(&self, headers: &'a HeaderMap) -> Option<std::borrow::Cow<'a, [u8]>> {
        let mut parts: [Option<&'a [u8]>; MAX_SHARDS] = [None; MAX_SHARDS];
        for (n, v) in cookie_pairs(headers) {
            if let Some(rest) = n.strip_prefix(self.name.as_bytes())
                && let [b'-', d] = rest
                && let Some(i) = d.checked_sub(b'0')
                && (i as usize) < MAX_SHARDS
            {
                if parts[i as usize].is_some() {
                    // Duplicate shard names: ambiguous, so no session.
                    return None;
                }
                // Validated where it matters: base64url decoding, or byte equality with a
                // cookie that was.
                parts[i as usize] = Some(v);
            }
        }
        let first = parts[0]?;
        if parts[1].is_none() {
            return Some(std::borrow::Cow::Borrowed(first));
        }
        let mut s = Vec::with_capacity(first.len() * 2);
        for p in parts.iter() {
            match p {
                Some(v) => s.extend_from_slice(v),
                None => break,
            }
        }
        Some(std::borrow::Cow::Owned(s))
    }

    /// Decodes shard text into sealed bytes.
    pub fn decode(text: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        URL_SAFE_NO_PAD.decode(text).ok()
    }

    /// `Set-Cookie` values for a sealed session: its shards, then deletions for unused shard
    /// names so a stale shard from a larger session cannot linger.
    pub fn encode(&self, sealed: &[u8], max_age_secs: i64) -> Result<Vec<HeaderValue>, TooLarge> {
        self.encode_raw(sealed, max_age_secs)
    }

    /// `Set-Cookie` values carrying any bytes (base64url) in the shards: a sealed session, or
    /// the Redis store's ticket (one short shard).
    pub fn encode_raw(
        &self,
        bytes: &[u8],
        max_age_secs: i64,
    ) -> Result<Vec<HeaderValue>, TooLarge> {
        let text = URL_SAFE_NO_PAD.encode(bytes);
        let overhead = self.shard_names[0].len() + 1 + "; Max-Age=".len() + 12 + self.attrs.len();
        let chunk = MAX_COOKIE_BYTES - overhead;
        let needed = text.len().div_ceil(chunk).max(1);
        if needed > MAX_SHARDS {
            return Err(TooLarge { needed: text.len() });
        }
        let mut out = Vec::with_capacity(MAX_SHARDS);
        for (i, name) in self.shard_names.iter().enumerate() {
            if i < needed {
                let part = &text[i * chunk..((i + 1) * chunk).min(text.len())];
                let line = format!(
                    "{name}={part}; Max-Age={}{}",
                    max_age_secs.max(0),
                    self.attrs
                );
                debug_assert!(line.len() <= MAX_COOKIE_BYTES);
                out.push(
                    HeaderValue::from_str(&line)
                        .expect("base64url and attributes are valid header text"),
                );
            } else {
                out.push(self.clear_values[i].clone());
            }
        }
        Ok(out)
    }

    /// `Set-Cookie` values that delete every shard.
    pub fn clear(&self) -> &[HeaderValue] {
        &self.clear_values
    }

    /// Whether a cookie name is ours (a session shard or a login-in-progress cookie).
    pub fn is_ours(&self, name: &str) -> bool {
        self.is_ours_bytes(name.as_bytes())
    }

    fn is_ours_bytes(&self, name: &[u8]) -> bool {
        self.shard_names.iter().any(|s| s.as_bytes() == name)
            || name.starts_with(self.login_prefix.as_bytes())
    }

    /// Removes our cookies from the `Cookie` header(s) before the request goes upstream.
    pub fn strip(&self, headers: &mut HeaderMap) {
        if !cookie_pairs(headers).any(|(n, _)| self.is_ours_bytes(n)) {
            return;
        }
        let mut kept: Vec<u8> = Vec::new();
        for (n, v) in cookie_pairs(headers) {
            if self.is_ours_bytes(n) {
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(n);
            kept.push(b'=');
            kept.extend_from_slice(v);
        }
        headers.remove(header::COOKIE);
        // The kept bytes come from valid header values joined by "; ": still valid.
        if !kept.is_empty()
            && let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(kept))
        {
            headers.insert(header::COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jar() -> CookieJar {
        CookieJar::new("S", true)
    }

    fn headers_from(set: &[HeaderValue]) -> HeaderMap {
        let mut h = HeaderMap::new();
        let pairs: Vec<String> = set
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
            .filter(|p| !p.ends_with('='))
            .collect();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&pairs.join("; ")).unwrap(),
        );
        h
    }

    #[test]
    fn shards_round_trip_for_one_to_four_shards() {
        for size in [10usize, 3500, 6000, 9000, 11000] {
            let sealed: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let set = jar().encode(&sealed, 60).unwrap();
            assert_eq!(set.len(), MAX_SHARDS);
            for v in &set {
                assert!(v.len() <= MAX_COOKIE_BYTES, "{}", v.len());
                let s = v.to_str().unwrap();
                assert!(
                    s.contains("HttpOnly") && s.contains("SameSite=Lax") && s.contains("Secure")
                );
            }
            let h = headers_from(&set);
            let text = jar().read(&h).unwrap();
            assert_eq!(CookieJar::decode(&text).unwrap(), sealed);
        }
    }

    #[test]
    fn refuses_more_than_four_shards() {
        let sealed = vec![7u8; 13000];
        assert!(jar().encode(&sealed, 60).is_err());
    }

    #[test]
    fn strips_only_our_cookies() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; S-0=x; S-1=y; S-login-ab=z; b=2"),
        );
        jar().strip(&mut h);
        assert_eq!(h.get(header::COOKIE).unwrap(), "a=1; b=2");
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("S-0=x"));
        jar().strip(&mut h);
        assert!(h.get(header::COOKIE).is_none());
    }

    #[test]
    fn duplicate_shard_is_no_session() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("S-0=x; S-0=y"));
        assert!(jar().read(&h).is_none());
    }
}
