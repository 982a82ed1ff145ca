//! The serde schema of the `[pool]` table: every table denies unknown keys, so a misspelt key
//! is an error, never a silent default. `super` turns it into the typed [`super::PoolConfig`].

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    pub(super) public_url: Option<String>,
    pub(super) database: Option<String>,
    pub(super) self_signup: Option<bool>,
    pub(super) required_attributes: Option<Vec<String>>,
    pub(super) signup_attributes: Option<Vec<String>>,
    pub(super) default_phone_region: Option<String>,
    pub(super) delivery: Option<String>,
    pub(super) smtp: Option<RawSmtp>,
    pub(super) password_policy: Option<RawPasswordPolicy>,
    pub(super) lockout: Option<RawLockout>,
    pub(super) tokens: Option<RawTokens>,
    pub(super) ui: Option<RawUi>,
    pub(super) admin_token: Option<String>,
    pub(super) admin_token_file: Option<String>,
    pub(super) session_timeout: Option<String>,
    pub(super) clients: Option<Vec<RawClient>>,
    pub(super) identity_providers: Option<Vec<RawIdentityProvider>>,
    pub(super) admin_console: Option<bool>,
    pub(super) admin_group: Option<String>,
    pub(super) migration: Option<RawMigration>,
    pub(super) mfa: Option<String>,
    pub(super) passkeys: Option<bool>,
    pub(super) signing_alg: Option<String>,
    pub(super) invitation_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMigration {
    pub(super) url: Option<String>,
    pub(super) secret: Option<String>,
    pub(super) secret_file: Option<String>,
    pub(super) timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmtp {
    pub(super) host: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<String>,
    pub(super) from: Option<String>,
    pub(super) tls: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPasswordPolicy {
    pub(super) min_length: Option<usize>,
    pub(super) require_lowercase: Option<bool>,
    pub(super) require_uppercase: Option<bool>,
    pub(super) require_digits: Option<bool>,
    pub(super) require_symbols: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLockout {
    pub(super) max_attempts: Option<u32>,
    pub(super) initial: Option<String>,
    pub(super) max: Option<String>,
    pub(super) reset_after: Option<String>,
    pub(super) ip_max_attempts: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokens {
    pub(super) id: Option<String>,
    pub(super) access: Option<String>,
    pub(super) refresh: Option<String>,
    pub(super) code: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUi {
    pub(super) title: Option<String>,
    pub(super) logo: Option<String>,
    pub(super) css: Option<String>,
    pub(super) templates_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<String>,
    pub(super) client_secret_file: Option<String>,
    pub(super) redirect_uris: Option<Vec<String>>,
    pub(super) post_logout_redirect_uris: Option<Vec<String>>,
    pub(super) grant_types: Option<Vec<String>>,
    pub(super) scopes: Option<Vec<String>>,
    pub(super) audience: Option<String>,
    pub(super) backchannel_logout_uri: Option<String>,
}

/// `[[pool.identity_providers]]`: an upstream OpenID Provider of the pool ("Continue with …").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentityProvider {
    pub(super) name: Option<String>,
    pub(super) display_name: Option<String>,
    pub(super) issuer: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<String>,
    pub(super) client_secret_file: Option<String>,
    pub(super) scopes: Option<Vec<String>>,
    pub(super) extra_auth_params: Option<std::collections::BTreeMap<String, String>>,
    pub(super) token_auth: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) attribute_mapping: Option<std::collections::BTreeMap<String, String>>,
    pub(super) link_by_email: Option<bool>,
}
