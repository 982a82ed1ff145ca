//! Command-line interface: `serve`, `check`, `keygen` (and the pool's admin commands).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("PORTCULLIS_GIT_COMMIT"), ")"),
    about = "An authenticating reverse proxy: OpenID Connect sign-in in front of any web app."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and exit (0 valid, 64 invalid).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print a fresh random session secret (or, with --signing-key, a P-256 PEM key for headers.signing_key_file).
    Keygen {
        #[arg(long)]
        signing_key: bool,
    },
    /// Administer the built-in user pool: `pool users …`, `pool groups …` (see `pool --help`).
    Pool(crate::pool::cli::PoolArgs),
    /// Exit 0 when the admin listener's /healthz answers 200, 1 otherwise (a container HEALTHCHECK).
    Healthcheck {
        /// The plain-http URL to GET (the admin listener's /healthz or /readyz).
        #[arg(long, default_value = crate::healthcheck::DEFAULT_URL)]
        url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Sessions: `sessions revoke --provider NAME --sub SUB --config FILE`.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// End every session of a user (all devices, every replica sharing data_dir or Redis).
    Revoke {
        /// The provider the user signed in with (a `[providers.NAME]`, or `pool`).
        #[arg(long)]
        provider: String,
        /// The user's `sub`.
        #[arg(long)]
        sub: String,
        #[arg(long, short)]
        config: PathBuf,
    },
}
