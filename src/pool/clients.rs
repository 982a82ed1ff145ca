//! The pool's registered clients: the proxy itself (`portcullis`, its secret derived from the
//! session secrets, redirect URI exactly `{public_url}/oauth2/idpresponse`, post-logout to any
//! URL on the public origin) and every `[[pool.clients]]` entry. Redirect URIs are compared
//! exactly (OAuth 2.0 Security BCP §4.1: no prefix or pattern matching).

use super::config::{ClientConfig, GrantType};
use crate::config::Secret;

#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub secret: Option<Secret>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// For the built-in client: any post-logout URL on this origin.
    pub post_logout_origin: Option<String>,
    /// The grants it may use at the token endpoint.
    pub grant_types: Vec<GrantType>,
    /// `[[pool.clients]].scopes`: what its `client_credentials` tokens may carry, and what its
    /// users' tokens may carry beyond [`USER_SCOPES`].
    pub scopes: Vec<String>,
    /// The `aud` of its `client_credentials` access tokens.
    pub audience: Option<String>,
    /// OIDC Back-Channel Logout: where this client receives logout tokens.
    pub backchannel_logout_uri: Option<url::Url>,
}

/// The scopes any client may ask for on a user's behalf (OIDC Core 5.4 and 11).
pub const USER_SCOPES: &[&str] = &[
    "openid",
    "email",
    "profile",
    "phone",
    "address",
    "offline_access",
];

/// The scopes of a request, each once, in the order asked; `Err` names the first one that
/// `allowed` refuses.
pub fn granted(requested: &str, allowed: impl Fn(&str) -> bool) -> Result<Vec<&str>, &str> {
    let mut out: Vec<&str> = Vec::new();
    for s in requested.split_ascii_whitespace() {
        if !allowed(s) {
            return Err(s);
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

impl Client {
    /// Whether a user's token from this client may carry `scope`: a standard scope or one of
    /// the client's own. Scopes are granted, never copied from the request.
    pub fn user_scope_allowed(&self, scope: &str) -> bool {
        USER_SCOPES.contains(&scope) || self.scopes.iter().any(|c| c == scope)
    }

    /// Whether the client's own (`client_credentials`) token may carry `scope`.
    pub fn machine_scope_allowed(&self, scope: &str) -> bool {
        self.scopes.iter().any(|c| c == scope)
    }

    pub fn is_public(&self) -> bool {
        self.secret.is_none()
    }

    pub fn may_use(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    pub fn redirect_allowed(&self, uri: &str) -> bool {
        self.may_use(GrantType::AuthorizationCode) && self.redirect_uris.iter().any(|u| u == uri)
    }

    pub fn post_logout_allowed(&self, uri: &str) -> bool {
        if self.post_logout_redirect_uris.iter().any(|u| u == uri) {
            return true;
        }
        match (&self.post_logout_origin, url::Url::parse(uri)) {
            (Some(origin), Ok(u)) => u.origin().ascii_serialization() == *origin,
            _ => false,
        }
    }

    /// Constant-time secret check; a public client has no secret to check.
    pub fn secret_matches(&self, given: &str) -> bool {
        match &self.secret {
            Some(s) => crate::pool::ct_eq(s.expose().as_bytes(), given.as_bytes()),
            None => false,
        }
    }
}

pub struct Clients {
    list: Vec<Client>,
}

impl Clients {
    pub fn new(
        configured: &[ClientConfig],
        builtin_secret: Option<Secret>,
        callback: String,
        public_origin: String,
    ) -> Clients {
        let mut list = vec![Client {
            client_id: "portcullis".into(),
            secret: builtin_secret,
            redirect_uris: vec![callback],
            post_logout_redirect_uris: vec![],
            post_logout_origin: Some(public_origin),
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: vec![],
            audience: None,
            backchannel_logout_uri: None,
        }];
        list.extend(configured.iter().map(|c| Client {
            client_id: c.client_id.clone(),
            secret: c.client_secret.clone(),
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            post_logout_origin: None,
            grant_types: c.grant_types.clone(),
            scopes: c.scopes.clone(),
            audience: c.audience.clone(),
            backchannel_logout_uri: c.backchannel_logout_uri.clone(),
        }));
        Clients { list }
    }

    pub fn get(&self, client_id: &str) -> Option<&Client> {
        self.list.iter().find(|c| c.client_id == client_id)
    }

    /// Origins that hosted forms may redirect to after a POST (CSP `form-action`).
    pub fn redirect_origins(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .list
            .iter()
            .flat_map(|c| {
                c.redirect_uris
                    .iter()
                    .chain(c.post_logout_redirect_uris.iter())
            })
            .filter_map(|u| url::Url::parse(u).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .map(|u| u.origin().ascii_serialization())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_match_exactly() {
        let clients = Clients::new(
            &[],
            Some(Secret::new("s".into())),
            "https://app.example.com/oauth2/idpresponse".into(),
            "https://app.example.com".into(),
        );
        let c = clients.get("portcullis").unwrap();
        assert!(c.redirect_allowed("https://app.example.com/oauth2/idpresponse"));
        for bad in [
            "https://app.example.com/oauth2/idpresponse/",
            "https://app.example.com/oauth2/idpresponse?x=1",
            "https://app.example.com.evil.test/oauth2/idpresponse",
            "http://app.example.com/oauth2/idpresponse",
        ] {
            assert!(!c.redirect_allowed(bad), "{bad}");
        }
        assert!(c.post_logout_allowed("https://app.example.com/anything?x=1"));
        assert!(!c.post_logout_allowed("https://evil.test/"));
        assert!(c.secret_matches("s") && !c.secret_matches("t"));
    }

    #[test]
    fn user_scopes_are_the_standard_ones_plus_the_clients() {
        let clients = Clients::new(
            &[],
            None,
            "https://app.example.com/oauth2/idpresponse".into(),
            "https://app.example.com".into(),
        );
        let mut c = clients.get("portcullis").unwrap().clone();
        c.scopes = vec!["orders/read".into()];
        let ok = |s: &str| c.user_scope_allowed(s);
        assert_eq!(
            granted("openid  email openid orders/read", ok),
            Ok(vec!["openid", "email", "orders/read"])
        );
        assert_eq!(granted("openid orders/write", ok), Err("orders/write"));
        assert_eq!(granted("openid admin:all", ok), Err("admin:all"));
        assert!(!c.machine_scope_allowed("openid") && c.machine_scope_allowed("orders/read"));
    }
}
