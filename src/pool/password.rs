//! Passwords: the configured policy (reporting every unmet rule) and Argon2id hashing. Hashing
//! runs on the blocking pool; a fixed dummy hash is verified for unknown users so a failed
//! sign-in costs the same whether or not the user exists.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use super::config::PasswordPolicy;

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

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashError;

/// Argon2id (the crate's default variant and parameters: 19 MiB, 2 passes).
pub async fn hash(password: &str) -> Result<String, HashError> {
    let pw = password.to_string();
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(pw.as_bytes())
            .map(|h| h.to_string())
            .map_err(|_| HashError)
    })
    .await
    .map_err(|_| HashError)?
}

/// Verifies in constant work; a malformed stored hash simply fails.
pub async fn verify(password: &str, stored: &str) -> bool {
    let pw = password.to_string();
    let stored = stored.to_string();
    tokio::task::spawn_blocking(move || match PasswordHash::new(&stored) {
        Ok(h) => Argon2::default().verify_password(pw.as_bytes(), &h).is_ok(),
        Err(_) => false,
    })
    .await
    .unwrap_or(false)
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

    #[tokio::test]
    async fn hashes_with_argon2id_and_verifies() {
        let h = hash("Correct horse 1").await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("Correct horse 1", &h).await);
        assert!(!verify("correct horse 1", &h).await);
        assert!(!verify("x", "not a hash").await);
    }
}
