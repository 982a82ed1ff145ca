//! Canonical user names: NFKC-normalised, then case-folded, then NFKC again (so full-width,
//! compatibility and case variants of a name are one user and share one lockout counter).
//! The canonical form is what is stored, looked up, and used as the lockout key.

use unicode_normalization::UnicodeNormalization;

/// Longest accepted user name, in characters (Cognito's limit).
pub const MAX_LEN: usize = 128;

/// Why a user name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("enter a user name")]
    Empty,
    #[error("the user name is longer than 128 characters")]
    TooLong,
    #[error("the user name may not contain spaces or control characters")]
    BadCharacter,
}

/// The canonical form used for identity and lockout; never fails (sign-in uses it on any input).
pub fn canonical(input: &str) -> String {
    let nfkc: String = input.trim().nfkc().collect();
    let folded = nfkc.to_lowercase();
    folded.nfkc().collect()
}

/// Validates a new user name and returns its canonical form.
pub fn validate(input: &str) -> Result<String, UsernameError> {
    let c = canonical(input);
    if c.is_empty() {
        return Err(UsernameError::Empty);
    }
    if c.chars().count() > MAX_LEN {
        return Err(UsernameError::TooLong);
    }
    if c.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        return Err(UsernameError::BadCharacter);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_share_one_canonical_form() {
        let cases = [
            ("Alice", "alice"),
            ("ALICE", "alice"),
            ("\u{ff21}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}", "alice"), // full-width Ａｌｉｃｅ
            ("  alice ", "alice"),
            ("Ǆemal", "džemal"), // NFKC decomposes the digraph
            ("ﬁnn", "finn"),     // compatibility ligature
            ("Ａ\u{0301}", "á"),
        ];
        for (input, want) in cases {
            assert_eq!(canonical(input), want, "{input:?}");
        }
    }

    #[test]
    fn refuses_empty_long_and_spaced_names() {
        assert_eq!(validate("   "), Err(UsernameError::Empty));
        assert_eq!(validate(&"a".repeat(129)), Err(UsernameError::TooLong));
        assert_eq!(validate("a b"), Err(UsernameError::BadCharacter));
        assert_eq!(validate("a\u{0007}"), Err(UsernameError::BadCharacter));
        assert_eq!(validate("Bob"), Ok("bob".into()));
    }
}
