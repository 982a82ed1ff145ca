//! User attributes: the standard OIDC claims (OIDC Core §5.1) plus `custom:*`. Input is
//! validated all at once — every missing or invalid attribute is reported, each by name — and
//! normalised for storage (email trimmed, phone numbers as E.164 via libphonenumber's metadata).

use phonenumber::country::Id as Region;
use phonenumber::{Mode, PhoneNumber};
use serde_json::{Map, Value};

/// Attributes a user may set (email_verified / phone_number_verified are set by the pool).
pub const STANDARD: &[&str] = &[
    "email",
    "phone_number",
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "profile",
    "picture",
    "website",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "address",
];

const MAX_VALUE: usize = 2048;

pub fn is_standard_attribute(name: &str) -> bool {
    STANDARD.contains(&name)
}

/// `custom:` followed by 1–20 letters, digits or underscores (Cognito's rule).
pub fn is_custom_name(name: &str) -> bool {
    match name.strip_prefix("custom:") {
        Some(rest) => {
            (1..=20).contains(&rest.len())
                && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// What is wrong with one attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeProblem {
    Missing,
    NotEmail {
        value: String,
    },
    NotPhone {
        value: String,
        international: String,
        national: String,
        region: String,
    },
    NotDate {
        value: String,
    },
    NotUrl {
        value: String,
    },
    TooLong,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeError {
    pub name: String,
    pub problem: AttributeProblem,
}

/// The expected form of a phone number for a region, from libphonenumber's example mobile number:
/// (`+81 90 1234 5678`, `090-1234-5678`).
pub fn phone_example(region: Region) -> (String, String) {
    let example = phonenumber::metadata::DATABASE
        .by_id(region.as_ref())
        .and_then(|m| m.descriptors().mobile().or(Some(m.descriptors().general())))
        .and_then(|d| d.example())
        .and_then(|n| phonenumber::parse(Some(region), n).ok());
    match example {
        Some(n) => (
            n.format()
                .mode(Mode::International)
                .to_string()
                .replace('-', " "),
            n.format().mode(Mode::National).to_string(),
        ),
        None => ("+1 201 555 0123".into(), "(201) 555-0123".into()),
    }
}

/// Parses a phone number typed in national form (for `region`) or international form.
pub fn parse_phone(input: &str, region: Region) -> Result<String, AttributeProblem> {
    let bad = || {
        let (international, national) = phone_example(region);
        AttributeProblem::NotPhone {
            value: input.to_string(),
            international,
            national,
            region: region.as_ref().to_string(),
        }
    };
    let trimmed = input.trim();
    // Accept the `00` international prefix as well as `+`.
    let parsed: Option<PhoneNumber> = phonenumber::parse(Some(region), trimmed).ok();
    match parsed {
        Some(n) if phonenumber::is_valid(&n) => Ok(n.format().mode(Mode::E164).to_string()),
        _ => Err(bad()),
    }
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    match (num(0..4), num(5..7), num(8..10)) {
        (Some(_), Some(m), Some(d)) => (1..=12).contains(&m) && (1..=31).contains(&d),
        _ => false,
    }
}

/// Validates submitted attributes. `required` must all be present; only standard and
/// `custom:` attributes are accepted. Returns the normalised attributes or every problem.
pub fn validate(
    input: &[(String, String)],
    required: &[String],
    region: Region,
) -> Result<Map<String, Value>, Vec<AttributeError>> {
    let mut out = Map::new();
    let mut errors = Vec::new();
    let mut err = |name: &str, problem| {
        errors.push(AttributeError {
            name: name.to_string(),
            problem,
        })
    };
    for (name, value) in input {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        if !is_standard_attribute(name) && !is_custom_name(name) {
            err(name, AttributeProblem::Unknown);
            continue;
        }
        if value.chars().count() > MAX_VALUE || value.chars().any(|c| c.is_control() && c != '\n') {
            err(name, AttributeProblem::TooLong);
            continue;
        }
        let normalised = match name.as_str() {
            "email" => {
                if email_address::EmailAddress::is_valid(value)
                    && !value.contains(char::is_whitespace)
                {
                    Ok(value.to_string())
                } else {
                    Err(AttributeProblem::NotEmail {
                        value: value.to_string(),
                    })
                }
            }
            "phone_number" => parse_phone(value, region),
            "birthdate" => {
                if is_date(value) {
                    Ok(value.to_string())
                } else {
                    Err(AttributeProblem::NotDate {
                        value: value.to_string(),
                    })
                }
            }
            "profile" | "picture" | "website" => match url::Url::parse(value) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(value.to_string()),
                _ => Err(AttributeProblem::NotUrl {
                    value: value.to_string(),
                }),
            },
            _ => Ok(value.to_string()),
        };
        match normalised {
            Ok(v) => {
                out.insert(name.clone(), Value::String(v));
            }
            Err(p) => err(name, p),
        }
    }
    for r in required {
        let given = input.iter().any(|(n, v)| n == r && !v.trim().is_empty());
        if !given {
            err(r, AttributeProblem::Missing);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn phone_numbers_national_and_international_become_e164() {
        let table = [
            ("090-1234-5678", Region::JP, Ok("+819012345678")),
            ("+81 90 1234 5678", Region::US, Ok("+819012345678")),
            ("(201) 555-0123", Region::US, Ok("+12015550123")),
            ("07400 123456", Region::GB, Ok("+447400123456")),
            ("12345", Region::JP, Err(())),
            ("call me", Region::US, Err(())),
        ];
        for (input, region, want) in table {
            let got = parse_phone(input, region).map_err(|_| ());
            assert_eq!(
                got.as_deref().map_err(|_| ()),
                want,
                "{input} in {region:?}"
            );
        }
    }

    #[test]
    fn bad_phone_shows_the_expected_form() {
        let Err(AttributeProblem::NotPhone {
            international,
            national,
            ..
        }) = parse_phone("12", Region::JP)
        else {
            panic!("12 is not a phone number");
        };
        assert_eq!(international, "+81 90 1234 5678");
        assert_eq!(national, "090-1234-5678");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let required = vec![
            "email".to_string(),
            "name".to_string(),
            "custom:team".to_string(),
        ];
        let errors = validate(
            &pairs(&[
                ("email", "not-an-email"),
                ("phone_number", "555"),
                ("birthdate", "23/04/1990"),
                ("shoe", "44"),
            ]),
            &required,
            Region::US,
        )
        .unwrap_err();
        let names: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "email",
                "phone_number",
                "birthdate",
                "shoe",
                "name",
                "custom:team"
            ]
        );
    }

    #[test]
    fn valid_attributes_are_normalised() {
        let got = validate(
            &pairs(&[
                ("email", " a@example.com "),
                ("phone_number", "+1 201-555-0123"),
                ("custom:team", "blue"),
            ]),
            &["email".to_string()],
            Region::US,
        )
        .unwrap();
        assert_eq!(got["email"], "a@example.com");
        assert_eq!(got["phone_number"], "+12015550123");
        assert_eq!(got["custom:team"], "blue");
        assert!(is_custom_name("custom:a_1"));
        assert!(!is_custom_name("custom:"));
        assert!(!is_custom_name("custom:has space"));
    }
}
