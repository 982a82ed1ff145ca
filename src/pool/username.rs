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

/// Whether a (canonical) user name lies in the namespace `{provider}_` of one of the configured
/// identity providers, compared canonically (any case or width): such names belong to the
/// provider's users, and neither self sign-up nor an administrator may take one.
pub fn reserved<'a>(canonical_name: &str, mut providers: impl Iterator<Item = &'a str>) -> bool {
    let name = canonical(canonical_name);
    providers.any(|p| {
        let prefix = format!("{}_", canonical(p));
        name.starts_with(&prefix)
    })
}

/// The pool user name of a provider's user: `{provider}_{sub}`, with the subject exactly as the
/// provider sent it when that is already its own canonical form (lower-case ASCII without `~`:
/// `corp_alice`, as before), and otherwise `{provider}_~` followed by the subject in lower-case
/// base32 (no padding), so that subjects differing only by case, width or normalisation never
/// share a name. `None` when the name would be longer than [`MAX_LEN`].
pub fn federated(provider: &str, sub: &str) -> Option<String> {
    let plain = !sub.is_empty()
        && sub
            .chars()
            .all(|c| c.is_ascii_graphic() && !c.is_ascii_uppercase() && c != '~');
    let name = if plain {
        format!("{provider}_{sub}")
    } else {
        format!("{provider}_~{}", base32_lower(sub.as_bytes()))
    };
    validate(&name).ok()
}

/// RFC 4648 base32, lower case, without padding.
fn base32_lower(bytes: &[u8]) -> String {
    super::mfa::totp::base32(bytes).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_namespaces_are_reserved_in_every_spelling() {
        let providers = ["corp", "Social"];
        for name in [
            "corp_x",
            "CORP_victim",
            "ｃｏｒｐ_y",
            "social_mallory",
            "SOCIAL_",
        ] {
            assert!(reserved(name, providers.iter().copied()), "{name}");
        }
        for name in ["corp", "corpx_y", "mycorp_y", "alice", "social-x"] {
            assert!(!reserved(name, providers.iter().copied()), "{name}");
        }
    }

    #[test]
    fn federated_names_keep_plain_subjects_and_encode_the_rest() {
        // Existing users' names stay what they were for plain subjects.
        assert_eq!(federated("corp", "alice").as_deref(), Some("corp_alice"));
        assert_eq!(
            federated("corp", "9c2bd081-aa").as_deref(),
            Some("corp_9c2bd081-aa")
        );
        // Subjects that differ only by case (or width) get different names.
        let upper = federated("corp", "Victim-2").unwrap();
        let lower = federated("corp", "victim-2").unwrap();
        let wide = federated("corp", "ｖｉｃｔｉｍ-2").unwrap();
        assert_ne!(upper, lower);
        assert_ne!(wide, lower);
        assert_ne!(wide, upper);
        assert_eq!(upper, "corp_~kzuwg5djnuwte");
        // Encoded names are canonical (a lookup finds them as they are), and a plain subject
        // cannot spell one (no `~`).
        assert_eq!(canonical(&upper), upper);
        assert_ne!(federated("corp", "~kzuwg5djnuwte").unwrap(), upper);
        // Too long: no name.
        assert_eq!(federated("corp", &"A".repeat(100)), None);
        assert_eq!(base32_lower(b"foobar"), "mzxw6ytboi");
    }

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
