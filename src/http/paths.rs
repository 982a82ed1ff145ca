//! Every reserved path Portcullis answers itself, declared once (docs/src/reference/http-paths.md).

pub const RESERVED_PREFIX: &str = "/oauth2/";
pub const CALLBACK: &str = "/oauth2/idpresponse";
pub const START: &str = "/oauth2/start";
pub const SIGN_OUT: &str = "/oauth2/sign_out";
pub const USERINFO: &str = "/oauth2/userinfo";
pub const AUTH: &str = "/oauth2/auth";
pub const PUBLIC_KEYS_PREFIX: &str = "/oauth2/public-keys/";
pub const JWKS: &str = "/oauth2/jwks.json";
pub const CHOOSE: &str = "/oauth2/choose";
pub const POOL_PREFIX: &str = "/oauth2/pool";

pub const HEALTHZ: &str = "/healthz";
pub const READYZ: &str = "/readyz";
pub const METRICS: &str = "/metrics";
pub const BACKCHANNEL_LOGOUT: &str = "/oauth2/backchannel-logout";
/// Admin API: revoke every session of a user (`{"provider", "sub"}`).
pub const ADMIN_SESSIONS_REVOKE: &str = "/sessions/revoke";
pub const ADMIN_SESSIONS_PREFIX: &str = "/sessions/";
pub const ADMIN_POOL_PREFIX: &str = "/pool/";
