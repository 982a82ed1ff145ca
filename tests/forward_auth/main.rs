//! Forward auth behind real proxies (issues 9 and 11): the README's nginx `auth_request` and
//! Caddy `forward_auth` recipes (deploy/forward-auth/), run as written — only the addresses
//! are substituted — with the real `oidc-provider` IdP and an echo app; and the audit's
//! encoded-slash bypass (issue 9, item 1) against upstreams that decode `%2F` (Python's
//! `http.server`, nginx serving a directory), inline and behind nginx.

#[allow(dead_code)]
#[path = "../proxy/harness.rs"]
mod harness;
mod journeys;
mod path_confusion;
mod servers;
