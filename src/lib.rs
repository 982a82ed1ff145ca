//! Portcullis: an authenticating reverse proxy. See README.md for what it does and
//! SECURITY.md for what it guarantees. `main.rs` is a thin shell over [`run`].

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod healthcheck;
pub mod http;
pub mod identity_headers;
pub mod lang;
pub mod live;
pub mod metrics;
pub mod pool;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod session;
pub mod signing;
#[doc(hidden)]
pub mod surface;
pub mod trace;
pub mod worker;

/// Exit code for an invalid configuration (EX_USAGE … EX_DATAERR family: 64, as the configuration reference says).
pub const EXIT_CONFIG: u8 = 64;

/// Installs the ring crypto provider for rustls once per process.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
