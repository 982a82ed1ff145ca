//! Per-route authorization (docs/src/proxy/routes.md): every configured list must pass. Emails and domains
//! count only for a well-formed address whose `email_verified` is not false (an IdP that lets
//! users type any address must not grant a domain); group names are exact and case-sensitive.
//! A failure names what was required, never the user's own claims.

use crate::config::Authorization;
use crate::session::Session;

/// The address's domain, if the address is well formed (one `@`, non-empty local part, a
/// dotted domain of hostname characters).
fn domain_of(email: &str) -> Option<&str> {
    let (local, domain) = email.split_once('@')?;
    let ok_domain = !domain.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if local.is_empty() || local.contains(char::is_whitespace) || !ok_domain {
        return None;
    }
    Some(domain)
}

/// `Ok` when allowed, else the human description of what was required.
pub fn check(rules: &Authorization, session: &Session, groups_claim: &str) -> Result<(), String> {
    if rules.is_empty() {
        return Ok(());
    }
    let mut unmet: Vec<String> = Vec::new();
    let verified_email = session
        .email()
        .filter(|_| session.email_verified_not_false())
        .filter(|e| domain_of(e).is_some());
    if !rules.emails.is_empty() {
        let ok =
            verified_email.is_some_and(|e| rules.emails.iter().any(|a| a.eq_ignore_ascii_case(e)));
        if !ok {
            unmet.push(format!(
                "one of the allowed email addresses ({})",
                rules.emails.join(", ")
            ));
        }
    }
    if !rules.email_domains.is_empty() {
        let ok = verified_email.and_then(domain_of).is_some_and(|d| {
            rules
                .email_domains
                .iter()
                .any(|a| a.eq_ignore_ascii_case(d))
        });
        if !ok {
            unmet.push(format!(
                "a verified email address at {}",
                rules.email_domains.join(" or ")
            ));
        }
    }
    if !rules.groups.is_empty() {
        let groups = session.groups(groups_claim);
        if !rules.groups.iter().any(|g| groups.contains(&g.as_str())) {
            unmet.push(format!(
                "membership in one of the groups {}",
                rules.groups.join(", ")
            ));
        }
    }
    for rule in &rules.claims {
        let ok = match session.claims.get(&rule.claim) {
            Some(serde_json::Value::Array(items)) => items.iter().any(|v| rule.any_of.contains(v)),
            Some(v) => rule.any_of.contains(v),
            None => false,
        };
        if !ok {
            let vals: Vec<String> = rule.any_of.iter().map(|v| v.to_string()).collect();
            unmet.push(format!(
                "the claim {} to be {}",
                rule.claim,
                vals.join(" or ")
            ));
        }
    }
    if unmet.is_empty() {
        Ok(())
    } else {
        Err(unmet.join("; and "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClaimRule;
    use serde_json::json;

    fn session(claims: serde_json::Value) -> Session {
        Session {
            sid: "s".into(),
            sub: "u".into(),
            provider: "p".into(),
            claims: claims.as_object().unwrap().clone(),
            access_token: None,
            access_expires_at: None,
            refresh_token: None,
            id_token: None,
            created_at: 0,
            expires_at: i64::MAX,
            created_ms: 0,
            idp_sid: None,
        }
    }

    #[test]
    fn table() {
        let domains = Authorization {
            email_domains: vec!["example.com".into()],
            ..Default::default()
        };
        let groups = Authorization {
            groups: vec!["admins".into()],
            ..Default::default()
        };
        let claims = Authorization {
            claims: vec![ClaimRule {
                claim: "custom:tenant".into(),
                any_of: vec![json!("acme")],
            }],
            ..Default::default()
        };
        let cases = [
            (&domains, json!({"email": "a@example.com"}), true),
            (
                &domains,
                json!({"email": "a@example.com", "email_verified": false}),
                false,
            ),
            (
                &domains,
                json!({"email": "a@example.com", "email_verified": "false"}),
                false,
            ),
            (&domains, json!({"email": "a@evil.com"}), false),
            (&domains, json!({"email": "a@sub.example.com"}), false),
            (&domains, json!({"email": "a@example.com@evil.com"}), false),
            (
                &domains,
                json!({"email": "a@evil.com\n@example.com"}),
                false,
            ),
            (&domains, json!({}), false),
            (&groups, json!({"groups": ["staff", "admins"]}), true),
            (&groups, json!({"groups": ["Admins"]}), false),
            (&groups, json!({"groups": "admins"}), true),
            (&claims, json!({"custom:tenant": "acme"}), true),
            (&claims, json!({"custom:tenant": "other"}), false),
        ];
        for (rules, claims, want) in cases {
            assert_eq!(
                check(rules, &session(claims.clone()), "groups").is_ok(),
                want,
                "{claims}"
            );
        }
        let err = check(
            &groups,
            &session(json!({"groups": ["secret-group"]})),
            "groups",
        )
        .unwrap_err();
        assert!(err.contains("admins") && !err.contains("secret-group"));
    }
}
