//! Passwords: the configured policy (reporting every unmet rule) and Argon2id hashing. Hashing
//! runs on the blocking pool; a fixed dummy hash is verified for unknown users so a failed
//! sign-in costs the same whether or not the user exists.
//!
//! Imported users (docs/src/pool/import-export.md) may carry a hash made elsewhere, in PHC string form: Argon2
//! (`$argon2id$`, also `$argon2i$`/`$argon2d$`), bcrypt (`$2b$`, `$2a$`, `$2y$`), scrypt
//! (`$scrypt$`, passlib's and RustCrypto's form) and PBKDF2 (`$pbkdf2-sha256$`, also `-sha512`
//! and `-sha1`, in passlib's form `$pbkdf2-sha256$ROUNDS$SALT$HASH` with its "adapted base64",
//! or RustCrypto's `$pbkdf2-sha256$i=ROUNDS,l=LEN$SALT$HASH`). Such a hash is verified once and
//! replaced by the pool's own Argon2id on that sign-in ([`needs_rehash`]). Cost parameters are
//! capped ([`imported_hash_problem`]) near what real systems use, so verifying any stored hash
//! costs at most about a second of one core and 64 MiB.

use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;

use super::config::PasswordPolicy;
use super::hashing::{self, Busy};

pub const MAX_LEN: usize = 256;

/// One rule a password failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    MinLength(usize),
    MaxLength,
    Lowercase,
    Uppercase,
    Digit,
    Symbol,
}

/// Every rule the password does not meet (empty: acceptable).
pub fn unmet_rules(password: &str, policy: &PasswordPolicy) -> Vec<Rule> {
    let mut out = Vec::new();
    let len = password.chars().count();
    if len < policy.min_length {
        out.push(Rule::MinLength(policy.min_length));
    }
    if len > MAX_LEN {
        out.push(Rule::MaxLength);
    }
    if policy.require_lowercase && !password.chars().any(char::is_lowercase) {
        out.push(Rule::Lowercase);
    }
    if policy.require_uppercase && !password.chars().any(char::is_uppercase) {
        out.push(Rule::Uppercase);
    }
    if policy.require_digits && !password.chars().any(|c| c.is_ascii_digit()) {
        out.push(Rule::Digit);
    }
    if policy.require_symbols
        && !password
            .chars()
            .any(|c| !c.is_alphanumeric() && !c.is_whitespace())
    {
        out.push(Rule::Symbol);
    }
    out
}

/// Why a password could not be hashed or verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The process-wide hashing limit is full ([`super::hashing`]): answer 503 with
    /// `Retry-After`.
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error("password hashing failed")]
    Failed,
}

/// Argon2id (the crate's default variant and parameters: 19 MiB, 2 passes), under the
/// process-wide hashing limit.
pub async fn hash(password: &str) -> Result<String, HashError> {
    let pw = password.to_string();
    hashing::run(move || hash_now(&pw)).await?
}

/// Hashes on the calling thread (Argon2id with the crate's default parameters, a random
/// 16-byte salt, 32-byte output, in PHC form). Outside the limit only for the one dummy hash
/// made when the pool opens its database.
pub fn hash_now(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| HashError::Failed)?;
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; 32];
    argon2_into(&argon, &params, password.as_bytes(), &salt, &mut out)
        .map_err(|_| HashError::Failed)?;
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        b64.encode(salt),
        b64.encode(out)
    ))
}

thread_local! {
    /// This thread's Argon2 memory, kept from one hash to the next (the hashing threads live
    /// on): allocating and freeing 19 MiB per hash let the allocator keep hundreds of MiB
    /// resident under a flood of sign-ins.
    static ARGON2_MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Argon2 into `out`, in this thread's kept memory. Memory beyond the pool's own parameters
/// (an imported hash, at most 64 MiB) is given back afterwards.
fn argon2_into(
    argon: &Argon2<'_>,
    params: &Params,
    pw: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let need = params.block_count();
    let own = Params::default().block_count();
    ARGON2_MEMORY.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() < need {
            m.resize(need, Block::default());
        }
        let r = argon.hash_password_into_with_memory(pw, salt, out, &mut m[..need]);
        if m.len() > own {
            m.truncate(own);
            m.shrink_to_fit();
        }
        r
    })
}

/// Verifies a password against an Argon2 hash in PHC form (any variant and version), in the
/// kept memory; a hash that does not parse simply fails.
fn argon2_verify(pw: &[u8], stored: &str) -> bool {
    let Ok(h) = PasswordHash::new(stored) else {
        return false;
    };
    let (Ok(alg), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(h.algorithm.as_str()),
        Params::try_from(&h),
        h.salt.as_ref(),
        h.hash.as_ref(),
    ) else {
        return false;
    };
    let version = match h.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let expected = expected.as_bytes();
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(alg, version, params.clone());
    argon2_into(&argon, &params, pw, salt, &mut out).is_ok() && crate::pool::ct_eq(&out, expected)
}

/// Verifies a password against a stored hash of any supported kind, under the process-wide
/// hashing limit; a malformed or empty stored hash simply fails (`Ok(false)`).
pub async fn verify(password: &str, stored: &str) -> Result<bool, Busy> {
    let pw = password.to_string();
    let stored = stored.to_string();
    hashing::run(move || verify_now(pw.as_bytes(), &stored)).await
}

/// The kinds of stored hash the pool can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    Argon2,
    Bcrypt,
    Scrypt,
    Pbkdf2(Pbkdf2Digest),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pbkdf2Digest {
    Sha1,
    Sha256,
    Sha512,
}

/// The kind of a stored hash, by its PHC identifier.
pub fn kind(stored: &str) -> Option<HashKind> {
    let id = stored.strip_prefix('$')?.split('$').next()?;
    Some(match id {
        "argon2id" | "argon2i" | "argon2d" => HashKind::Argon2,
        "2a" | "2b" | "2y" => HashKind::Bcrypt,
        "scrypt" => HashKind::Scrypt,
        "pbkdf2-sha256" => HashKind::Pbkdf2(Pbkdf2Digest::Sha256),
        "pbkdf2-sha512" => HashKind::Pbkdf2(Pbkdf2Digest::Sha512),
        "pbkdf2-sha1" | "pbkdf2" => HashKind::Pbkdf2(Pbkdf2Digest::Sha1),
        _ => return None,
    })
}

fn verify_now(pw: &[u8], stored: &str) -> bool {
    match kind(stored) {
        Some(HashKind::Argon2) => argon2_verify(pw, stored),
        Some(HashKind::Bcrypt) => bcrypt::verify(pw, stored).unwrap_or(false),
        Some(HashKind::Scrypt) => match PasswordHash::new(stored) {
            Ok(h) => scrypt::Scrypt::default().verify_password(pw, &h).is_ok(),
            Err(_) => false,
        },
        Some(HashKind::Pbkdf2(digest)) => match Pbkdf2Hash::parse(stored, digest) {
            Some(h) => ring::pbkdf2::verify(h.algorithm, h.rounds, &h.salt, pw, &h.hash).is_ok(),
            None => false,
        },
        None => false,
    }
}

/// A PBKDF2 hash in passlib's or RustCrypto's PHC form.
struct Pbkdf2Hash {
    algorithm: ring::pbkdf2::Algorithm,
    rounds: std::num::NonZeroU32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

/// passlib's "adapted base64" (`.` for `+`, no padding) and PHC's unpadded standard base64 both
/// decode here.
fn ab64_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.trim_end_matches('=').replace('.', "+"))
        .ok()
}

impl Pbkdf2Hash {
    fn parse(stored: &str, digest: Pbkdf2Digest) -> Option<Pbkdf2Hash> {
        let mut parts = stored.strip_prefix('$')?.split('$').skip(1);
        let (params, salt, hash) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        // passlib: a bare round count; RustCrypto: `i=ROUNDS[,l=LEN]`.
        let rounds = match params.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let mut rounds = None;
                for kv in params.split(',') {
                    match kv.split_once('=')? {
                        ("i", n) => rounds = Some(n.parse::<u32>().ok()?),
                        ("l", _) => {}
                        _ => return None,
                    }
                }
                rounds?
            }
        };
        let hash = ab64_decode(hash)?;
        if hash.is_empty() {
            return None;
        }
        Some(Pbkdf2Hash {
            algorithm: match digest {
                Pbkdf2Digest::Sha1 => ring::pbkdf2::PBKDF2_HMAC_SHA1,
                Pbkdf2Digest::Sha256 => ring::pbkdf2::PBKDF2_HMAC_SHA256,
                Pbkdf2Digest::Sha512 => ring::pbkdf2::PBKDF2_HMAC_SHA512,
            },
            rounds: std::num::NonZeroU32::new(rounds)?,
            salt: ab64_decode(salt)?,
            hash,
        })
    }
}

/// Largest cost accepted in an imported hash, near what real systems use, so that verifying
/// any stored hash — which every sign-in attempt does, unauthenticated — costs at most about a
/// second of one core and 64 MiB (and runs under the process-wide hashing limit).
pub const MAX_PBKDF2_ROUNDS: u32 = 1_000_000;
pub const MAX_PBKDF2_SHA512_ROUNDS: u32 = 300_000;
pub const MAX_BCRYPT_COST: u32 = 13;
/// scrypt's `N · r · 128` bytes.
pub const MAX_SCRYPT_MEMORY: u64 = 64 << 20;
pub const MAX_SCRYPT_P: u64 = 2;
/// Argon2 `m` in KiB (64 MiB).
pub const MAX_ARGON2_M_COST: u32 = 64 * 1024;
pub const MAX_ARGON2_T_COST: u32 = 10;
pub const MAX_ARGON2_P_COST: u32 = 4;

/// Why an imported hash cannot be used (`None`: well-formed, supported and within the cost
/// caps). The message never repeats the hash.
pub fn imported_hash_problem(stored: &str) -> Option<String> {
    const SUPPORTED: &str =
        "not a supported PHC hash ($argon2id$, $2b$ bcrypt, $scrypt$, $pbkdf2-sha256$)";
    let Some(k) = kind(stored) else {
        return Some(SUPPORTED.into());
    };
    let malformed = || Some(format!("malformed {} hash", kind_name(k)));
    match k {
        HashKind::Argon2 | HashKind::Scrypt => {
            let Ok(h) = PasswordHash::new(stored) else {
                return malformed();
            };
            if h.hash.is_none() || h.salt.is_none() {
                return malformed();
            }
            let param = |name: &str| h.params.get_decimal(name).map(u64::from);
            if k == HashKind::Argon2 {
                if Params::try_from(&h).is_err() {
                    return malformed();
                }
                if param("m").unwrap_or(0) > u64::from(MAX_ARGON2_M_COST)
                    || param("t").unwrap_or(0) > u64::from(MAX_ARGON2_T_COST)
                    || param("p").unwrap_or(0) > u64::from(MAX_ARGON2_P_COST)
                {
                    return Some(format!(
                        "argon2 cost parameters too high (at most m={MAX_ARGON2_M_COST}, \
                         t={MAX_ARGON2_T_COST}, p={MAX_ARGON2_P_COST})"
                    ));
                }
            } else {
                let (Some(ln), Some(r), Some(p)) = (param("ln"), param("r"), param("p")) else {
                    return malformed();
                };
                if ln >= 32 || r == 0 || p == 0 || p > 16 {
                    return malformed();
                }
                if (1u64 << ln).saturating_mul(r).saturating_mul(128) > MAX_SCRYPT_MEMORY
                    || p > MAX_SCRYPT_P
                {
                    return Some(format!(
                        "scrypt cost parameters too high (at most {} MiB, p={MAX_SCRYPT_P})",
                        MAX_SCRYPT_MEMORY >> 20
                    ));
                }
            }
            None
        }
        HashKind::Bcrypt => {
            let cost = stored
                .get(4..6)
                .and_then(|c| c.parse::<u32>().ok())
                .filter(|_| stored.len() == 60 && stored.as_bytes().get(6) == Some(&b'$'));
            match cost {
                None => malformed(),
                Some(c) if !(4..=31).contains(&c) => malformed(),
                Some(c) if c > MAX_BCRYPT_COST => {
                    Some(format!("bcrypt cost too high (at most {MAX_BCRYPT_COST})"))
                }
                Some(_) => None,
            }
        }
        HashKind::Pbkdf2(d) => match Pbkdf2Hash::parse(stored, d) {
            None => malformed(),
            Some(h) if h.rounds.get() > pbkdf2_cap(d) => Some(format!(
                "pbkdf2 round count too high (at most {} for this digest)",
                pbkdf2_cap(d)
            )),
            Some(_) => None,
        },
    }
}

/// SHA-512 rounds cost about three times SHA-1's or SHA-256's.
fn pbkdf2_cap(d: Pbkdf2Digest) -> u32 {
    match d {
        Pbkdf2Digest::Sha1 | Pbkdf2Digest::Sha256 => MAX_PBKDF2_ROUNDS,
        Pbkdf2Digest::Sha512 => MAX_PBKDF2_SHA512_ROUNDS,
    }
}

fn kind_name(k: HashKind) -> &'static str {
    match k {
        HashKind::Argon2 => "argon2",
        HashKind::Bcrypt => "bcrypt",
        HashKind::Scrypt => "scrypt",
        HashKind::Pbkdf2(_) => "pbkdf2",
    }
}

/// Whether a stored hash should be replaced by the pool's own after a successful sign-in:
/// anything but Argon2id with the pool's parameters (imported hashes, older parameters).
pub fn needs_rehash(stored: &str) -> bool {
    let own = format!(
        "$argon2id$v=19$m={},t={},p={}$",
        Params::DEFAULT_M_COST,
        Params::DEFAULT_T_COST,
        Params::DEFAULT_P_COST
    );
    !stored.starts_with(&own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_unmet_rule() {
        let strict = PasswordPolicy {
            min_length: 10,
            require_lowercase: true,
            require_uppercase: true,
            require_digits: true,
            require_symbols: true,
        };
        let table: [(&str, &[Rule]); 5] = [
            (
                "",
                &[
                    Rule::MinLength(10),
                    Rule::Lowercase,
                    Rule::Uppercase,
                    Rule::Digit,
                    Rule::Symbol,
                ],
            ),
            ("abcdefghij", &[Rule::Uppercase, Rule::Digit, Rule::Symbol]),
            ("Abcdefghi1", &[Rule::Symbol]),
            ("Abcdefgh1!", &[]),
            ("ÄBCDEFGHı1!", &[]),
        ];
        for (pw, want) in table {
            assert_eq!(unmet_rules(pw, &strict), want, "{pw:?}");
        }
        let long = format!("Aa1{}", "x".repeat(300));
        assert_eq!(
            unmet_rules(&long, &PasswordPolicy::default()),
            [Rule::MaxLength]
        );
    }

    /// Hashes made by Python's passlib, bcrypt and argon2-cffi (and RustCrypto's PBKDF2 form)
    /// for "Vector-Pw-1": each verifies, is accepted for import, and asks to be re-hashed.
    #[tokio::test]
    async fn verifies_imported_hashes_of_other_implementations() {
        let table = [
            "$pbkdf2-sha256$1000$jjGmNKbUGgMAgFCK0XqvNQ$fm4jfaPluLNtIzm2Sis6PBHDc/QoSEMcm/wJ6KRbIR8",
            "$pbkdf2-sha256$i=1000,l=32$jjGmNKbUGgMAgFCK0XqvNQ$fm4jfaPluLNtIzm2Sis6PBHDc/QoSEMcm/wJ6KRbIR8",
            "$pbkdf2-sha512$1000$1DrHmFPK2RsDoBTCOAcAoA$bbYWeqj7TDJKK3q.4FMdyHjxP1VdflxhZAOurBHnfr3F4d3CpeTkeqyv864/YbwWurN3L5wI3BIrO3jRdp2iog",
            "$pbkdf2$1000$QAjh3Nvbm7O2tnZOaS1F6A$wJIZlpxiB558S79AEqjmJsofoLU",
            "$scrypt$ln=10,r=8,p=1$Z2zNWYvxfo+xFmKMMaZUqg$00xKva3yUk0Q3ia6tKw/I/CAg9TOJ6PTJArqBDfSzfI",
            "$2b$04$sbStvYBzv971vwHpcdiwpeWaIiGxO4sd3J8asgDYQN5y0voTjhSPW",
            "$argon2id$v=19$m=64,t=1,p=1$quHDiptKVBJYFpH/mq+/IQ$QMX5VgCWRircrQranu0cr1uDFqpJnzyx6yeYKt7SbM4",
        ];
        for h in table {
            assert_eq!(verify("Vector-Pw-1", h).await, Ok(true), "{h}");
            assert_eq!(verify("Vector-Pw-2", h).await, Ok(false), "{h}");
            assert_eq!(imported_hash_problem(h), None, "{h}");
            assert!(needs_rehash(h), "{h}");
        }
        let own = hash("Vector-Pw-1").await.unwrap();
        assert!(!needs_rehash(&own));
        assert_eq!(imported_hash_problem(&own), None);
    }

    #[test]
    fn refuses_unknown_malformed_and_too_costly_hashes() {
        let table = [
            ("$md5$abc", "not a supported PHC hash"),
            ("plaintext", "not a supported PHC hash"),
            ("$2b$04$short", "malformed bcrypt hash"),
            (
                "$2b$20$sbStvYBzv971vwHpcdiwpeWaIiGxO4sd3J8asgDYQN5y0voTjhSPW",
                "bcrypt cost too high",
            ),
            ("$pbkdf2-sha256$x$salt$hash", "malformed pbkdf2 hash"),
            (
                "$pbkdf2-sha256$4000000000$jjGmNKbUGgMAgFCK0XqvNQ$fm4jfaPluLNtIzm2Sis6PBHDc/QoSEMcm/wJ6KRbIR8",
                "pbkdf2 round count too high",
            ),
            (
                "$scrypt$ln=25,r=8,p=1$Z2zNWYvxfo+xFmKMMaZUqg$00xKva3yUk0Q3ia6tKw/I/CAg9TOJ6PTJArqBDfSzfI",
                "scrypt cost parameters too high",
            ),
            ("$argon2id$v=19$m=64,t=1,p=1$", "malformed argon2 hash"),
        ];
        for (h, want) in table {
            let got = imported_hash_problem(h).unwrap_or_default();
            assert!(got.starts_with(want), "{h}: {got}");
            assert!(!got.contains(h), "the hash is never repeated");
        }
    }

    #[tokio::test]
    async fn hashes_with_argon2id_and_verifies() {
        let h = hash("Correct horse 1").await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert_eq!(verify("Correct horse 1", &h).await, Ok(true));
        assert_eq!(verify("correct horse 1", &h).await, Ok(false));
        assert_eq!(verify("x", "not a hash").await, Ok(false));
    }
}
