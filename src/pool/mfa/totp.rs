//! TOTP (RFC 6238 over RFC 4226 HOTP): HMAC-SHA-1, 6 digits, 30-second steps, accepted one
//! step either side of now. Pure functions over Unix seconds so the window is tested without a
//! clock. "Accepted once" is the store's job: it remembers the last step used per user and only
//! moves forward (`Store::advance_totp_step`), so a code — or any code from an older step —
//! cannot be replayed.

use ring::hmac;

/// Seconds per step (RFC 6238 §4: X = 30).
pub const STEP: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Steps accepted on either side of the current one (clock drift, RFC 6238 §5.2).
pub const SKEW: i64 = 1;
/// Secret length: 160 bits, the HMAC-SHA-1 block of RFC 4226 §4 (R6).
pub const SECRET_LEN: usize = 20;

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding (what authenticator apps expect in `otpauth://` URIs).
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes unpadded upper-case RFC 4648 base32 (spaces are not allowed; strip them first).
pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buf = (buf << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

/// A new random secret.
pub fn new_secret() -> [u8; SECRET_LEN] {
    let mut s = [0u8; SECRET_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut s)
        .expect("system RNG available");
    s
}

/// The time step of a Unix time.
pub fn step_at(unix: i64) -> i64 {
    unix.div_euclid(STEP)
}

/// The HOTP value of one counter (RFC 4226 §5.3, dynamic truncation).
pub fn hotp(secret: &[u8], counter: u64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &counter.to_be_bytes());
    let d = mac.as_ref();
    let off = (d[d.len() - 1] & 0x0f) as usize;
    let bin = (u32::from(d[off]) & 0x7f) << 24
        | u32::from(d[off + 1]) << 16
        | u32::from(d[off + 2]) << 8
        | u32::from(d[off + 3]);
    bin % 10u32.pow(DIGITS)
}

/// The code shown by an authenticator for a step, zero-padded.
pub fn code_at_step(secret: &[u8], step: i64) -> String {
    format!(
        "{:0width$}",
        hotp(secret, step.max(0) as u64),
        width = DIGITS as usize
    )
}

/// A typed code in canonical form: exactly six digits after removing spaces, else `None`.
pub fn normalise(typed: &str) -> Option<String> {
    let s: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    (s.len() == DIGITS as usize && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

/// The step whose code matches, searching now ±[`SKEW`] (the closest step first).
/// The caller must still check the step is newer than the last one used.
pub fn matching_step(secret: &[u8], code: &str, unix: i64) -> Option<i64> {
    let code = normalise(code)?;
    let now = step_at(unix);
    [now, now - SKEW, now + SKEW]
        .into_iter()
        .find(|&s| crate::pool::ct_eq(code_at_step(secret, s).as_bytes(), code.as_bytes()))
}

/// The `otpauth://` URI that authenticator apps read from the QR code (Key Uri Format).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
        enc(issuer),
        enc(account),
        base32(secret),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows (8 digits there; the last 6 digits here).
    #[test]
    fn rfc6238_test_vectors() {
        let secret = b"12345678901234567890";
        let table = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (t, eight) in table {
            assert_eq!(code_at_step(secret, step_at(t)), eight[2..], "t={t}");
        }
    }

    #[test]
    fn window_is_one_step_either_side() {
        let secret = b"12345678901234567890";
        let t = 1_111_111_111;
        let now = step_at(t);
        let table = [
            (now, Some(now)),
            (now - 1, Some(now - 1)),
            (now + 1, Some(now + 1)),
            (now - 2, None),
            (now + 2, None),
        ];
        for (step, want) in table {
            let code = code_at_step(secret, step);
            assert_eq!(
                matching_step(secret, &code, t),
                want,
                "step offset {}",
                step - now
            );
        }
        assert_eq!(matching_step(secret, "12345", t), None);
        assert_eq!(matching_step(secret, "abcdef", t), None);
        let spaced = code_at_step(secret, now);
        let spaced = format!("{} {}", &spaced[..3], &spaced[3..]);
        assert_eq!(matching_step(secret, &spaced, t), Some(now));
    }

    #[test]
    fn base32_round_trips() {
        for len in [0, 1, 5, 19, 20] {
            let raw: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base32_decode(&base32(&raw)).unwrap(), raw);
        }
        assert_eq!(base32_decode("abc"), None);
    }

    #[test]
    fn base32_rfc4648_vectors() {
        let table: [(&[u8], &str); 6] = [
            (b"", ""),
            (b"f", "MY"),
            (b"fo", "MZXQ"),
            (b"foo", "MZXW6"),
            (b"foob", "MZXW6YQ"),
            (b"fooba", "MZXW6YTB"),
        ];
        for (raw, want) in table {
            assert_eq!(base32(raw), want);
        }
        assert_eq!(base32(&[0u8; SECRET_LEN]).len(), 32);
    }
}
