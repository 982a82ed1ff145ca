//! The serde schema of the TOML file: every table denies unknown keys, so a misspelt key is an
//! error, never a silent default. Values stay close to the text here; `super::validate` turns
//! them into typed values and reports every problem at once.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Vec<String>>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub admin_listen: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub max_header_bytes: Option<usize>,
    pub shutdown_grace: Option<String>,
    pub header_read_timeout: Option<String>,
    pub workers: Option<usize>,
    pub insecure_allow_encoded_slashes: Option<bool>,
    pub admin_token: Option<String>,
    pub admin_token_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    pub cookie_name: Option<String>,
    pub timeout: Option<String>,
    pub secrets: Option<Vec<String>>,
    pub secrets_file: Option<String>,
    pub store: Option<String>,
    pub redis_url: Option<String>,
    pub redis_cluster_urls: Option<Vec<String>>,
    pub redis_timeout: Option<String>,
    pub login_window: Option<String>,
    pub refresh_margin: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    pub jwt_format: Option<String>,
    pub signer: Option<String>,
    pub signing_key_file: Option<String>,
    pub forwarded_user: Option<bool>,
    pub access_token: Option<bool>,
    pub insecure_forward_unverified_email: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub extra_auth_params: Option<BTreeMap<String, String>>,
    pub groups_claim: Option<String>,
    pub token_auth: Option<String>,
    pub display_name: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<String>,
    pub path: Option<String>,
    pub host: Option<super::rules::OneOrMany>,
    pub upstream: Option<String>,
    pub on_unauthenticated: Option<String>,
    pub connect_timeout: Option<String>,
    pub timeout: Option<String>,
    pub provider: Option<String>,
    pub providers: Option<Vec<String>>,
    pub allow_groups: Option<Vec<String>>,
    pub allow_emails: Option<Vec<String>>,
    pub allow_email_domains: Option<Vec<String>>,
    pub allow_claims: Option<BTreeMap<String, toml::Value>>,
    pub accept_bearer: Option<bool>,
    pub bearer_audience: Option<Vec<String>>,
    pub allow_scopes: Option<Vec<String>>,
    pub insecure_skip_upstream_tls_verify: Option<bool>,
    pub upstream_ca_file: Option<String>,
    pub target_group: Option<String>,
    pub forward: Option<Vec<super::target_groups::RawForward>>,
    pub forward_stickiness: Option<String>,
    // Listener-rule keys (see `super::rules`).
    pub path_pattern: Option<String>,
    pub methods: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, super::rules::OneOrMany>>,
    pub query: Option<BTreeMap<String, super::rules::OneOrMany>>,
    pub source_ips: Option<Vec<String>>,
    pub redirect: Option<super::rules::RawRedirect>,
    pub fixed_response: Option<super::rules::RawFixedResponse>,
    pub cors_preflight: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
    pub access: Option<bool>,
}
