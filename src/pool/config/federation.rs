//! `[[pool.identity_providers]]` (docs/src/pool/federation.md) → [`IdentityProviderConfig`]: the relying-party
//! settings are validated by the same code as the proxy's `[providers.NAME]`
//! ([`crate::config::build_provider`]); this adds the pool's own keys (`name`,
//! `attribute_mapping`, `link_by_email`).

use std::collections::BTreeMap;

use super::raw::RawIdentityProvider;
use crate::config::raw::RawProvider;
use crate::config::{Problems, ProviderConfig, build_provider};
use crate::pool::attributes::{is_custom_name, is_standard_attribute};

/// Pool attributes a provider claim may fill besides the standard and `custom:` ones.
const VERIFIED_FLAGS: [&str; 2] = ["email_verified", "phone_number_verified"];

#[derive(Debug, Clone)]
pub struct IdentityProviderConfig {
    /// Relying-party settings; `provider.name` is the `name` key, `provider.display_name` the
    /// button's label.
    pub provider: ProviderConfig,
    /// pool attribute → provider claim.
    pub attribute_mapping: BTreeMap<String, String>,
    pub link_by_email: bool,
}

/// The mapping used when `attribute_mapping` is not set.
fn default_mapping() -> BTreeMap<String, String> {
    [
        "email",
        "email_verified",
        "name",
        "given_name",
        "family_name",
    ]
    .iter()
    .map(|a| (a.to_string(), a.to_string()))
    .collect()
}

pub(super) fn build(
    list: Vec<RawIdentityProvider>,
    p: &mut Problems,
) -> Vec<IdentityProviderConfig> {
    let mut out: Vec<IdentityProviderConfig> = Vec::new();
    for (i, raw) in list.into_iter().enumerate() {
        let kp = format!("pool.identity_providers[{i}]");
        let name = raw.name.unwrap_or_default();
        if name.is_empty() {
            p.push(format!("{kp}.name"), "is required");
        } else if out.iter().any(|o| o.provider.name == name) {
            p.push(
                format!("{kp}.name"),
                format!("{name:?} is used by another identity provider"),
            );
        }
        let mapping = raw.attribute_mapping.unwrap_or_else(default_mapping);
        for (attr, claim) in &mapping {
            if !is_standard_attribute(attr)
                && !is_custom_name(attr)
                && !VERIFIED_FLAGS.contains(&attr.as_str())
            {
                p.push(
                    format!("{kp}.attribute_mapping.{attr}"),
                    "is not a pool attribute (a standard OIDC attribute, email_verified, phone_number_verified or custom:NAME)",
                );
            }
            if claim.trim().is_empty() {
                p.push(
                    format!("{kp}.attribute_mapping.{attr}"),
                    "names no provider claim",
                );
            }
        }
        let rp = RawProvider {
            issuer: raw.issuer,
            client_id: raw.client_id,
            client_secret: raw.client_secret,
            client_secret_file: raw.client_secret_file,
            scopes: raw.scopes,
            extra_auth_params: raw.extra_auth_params,
            groups_claim: None,
            token_auth: raw.token_auth,
            display_name: raw.display_name,
            timeout: raw.timeout,
        };
        // `build_provider` also reports a name with other characters than [A-Za-z0-9_-].
        if let Some(provider) = build_provider(&name, rp, &kp, p) {
            out.push(IdentityProviderConfig {
                provider,
                attribute_mapping: mapping,
                link_by_email: raw.link_by_email.unwrap_or(false),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Problems;

    fn problems(text: &str) -> (Option<crate::pool::PoolConfig>, String) {
        let v = toml::Value::Table(toml::from_str(text).unwrap());
        let mut p = Problems::default();
        let c = super::super::build(
            &v,
            Path::new("/etc/p.toml"),
            Path::new("/var/lib/p"),
            &mut p,
        );
        let text =
            p.0.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("\n");
        (c, text)
    }

    #[test]
    fn identity_providers_are_checked_like_providers_and_every_problem_reported() {
        let (_, text) = problems(
            "[[identity_providers]]\nname = \"bad name\"\nclient_id = \"x\"\n\
             attribute_mapping = { shoe_size = \"shoe\", email = \"\" }\n\
             [[identity_providers]]\nname = \"g\"\nissuer = \"https://accounts.google.com\"\nclient_id = \"x\"\nclient_secret = \"s\"\n\
             [[identity_providers]]\nname = \"g\"\nissuer = \"https://accounts.google.com\"\nclient_id = \"x\"\nclient_secret = \"s\"\n",
        );
        for key in [
            "pool.identity_providers[0]: provider names",
            "pool.identity_providers[0].issuer",
            "pool.identity_providers[0].client_secret",
            "pool.identity_providers[0].attribute_mapping.shoe_size",
            "pool.identity_providers[0].attribute_mapping.email",
            "pool.identity_providers[2].name",
        ] {
            assert!(text.contains(key), "missing {key} in {text}");
        }
        let (_, unknown) = problems("[[identity_providers]]\nname = \"g\"\ngroups_claim = \"x\"\n");
        assert!(unknown.contains("groups_claim"), "{unknown}");
        let (_, group) = problems("admin_group = \"\"\n");
        assert!(group.contains("pool.admin_group"), "{group}");
    }

    #[test]
    fn defaults() {
        let (c, text) = problems(
            "[[identity_providers]]\nname = \"google\"\nissuer = \"https://accounts.google.com\"\nclient_id = \"x\"\nclient_secret = \"s\"\n",
        );
        assert!(text.is_empty(), "{text}");
        let c = c.unwrap();
        let idp = &c.identity_providers[0];
        assert_eq!(idp.provider.display_name, "google");
        assert!(!idp.link_by_email);
        assert_eq!(
            idp.attribute_mapping.get("email").map(String::as_str),
            Some("email")
        );
        assert!(!c.admin_console);
        assert_eq!(c.admin_group, "admins");
    }
}
