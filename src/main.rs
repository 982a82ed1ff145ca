//! `portcullis`: CLI → configuration → telemetry → App → serve until SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use portcullis::cli::{Cli, Command};
use portcullis::config::{self, Config, LogFormat};
use portcullis::{EXIT_CONFIG, app::App, server};

fn init_tracing(cfg: &Config) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG").unwrap_or_else(|_| {
            // The access log (`log.access`) is written whatever `log.level` says.
            let access = if cfg.log.access {
                ",portcullis::access=info"
            } else {
                ""
            };
            tracing_subscriber::EnvFilter::new(format!("portcullis={},warn{access}", cfg.log.level))
        });
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cfg.log.format {
        LogFormat::Json => b.json().init(),
        LogFormat::Plain => b.init(),
    }
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn main() -> ExitCode {
    portcullis::install_crypto();
    let cli = Cli::parse();
    match cli.command {
        Command::Keygen { signing_key } => {
            if signing_key {
                print!(
                    "{}",
                    portcullis::signing::SigningKey::generate().private_pem()
                );
            } else {
                println!("{}", portcullis::session::keyring::generate_secret());
            }
            ExitCode::SUCCESS
        }
        Command::Pool(args) => portcullis::pool::cli::run(args),
        Command::Healthcheck { url, timeout } => {
            match portcullis::healthcheck::check(&url, std::time::Duration::from_secs(timeout)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("unhealthy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Sessions {
            command:
                portcullis::cli::SessionsCommand::Revoke {
                    provider,
                    sub,
                    config,
                },
        } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if cfg.provider_index(&provider).is_none() {
                eprintln!(
                    "error: no provider named {provider:?} in {}",
                    config.display()
                );
                return ExitCode::from(EXIT_CONFIG);
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(revoke(cfg, provider, sub))
        }
        Command::Check { config } => match load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} routes, {} providers)",
                    config.display(),
                    c.routes.len(),
                    c.providers.len()
                );
                for w in &c.warnings {
                    println!("warning: {w}");
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Serve { config } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_tracing(&cfg);
            for w in &cfg.warnings {
                tracing::warn!(key = %w.path, "{}", w.message);
            }
            // The main runtime runs the admin listener, start-up and background work; requests
            // are served by the per-core workers (`server::spawn_workers`).
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(serve(cfg, config))
        }
    }
}

/// `portcullis sessions revoke`: recorded under data_dir and, when configured, in Redis, where
/// every running replica picks it up within seconds.
async fn revoke(cfg: Config, provider: String, sub: String) -> ExitCode {
    let redis = match portcullis::app::redis(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shared = redis.is_some();
    let revocations = portcullis::app::revocations(&cfg, redis);
    let hook = portcullis::session::revocation::UserSessions::new(
        revocations,
        &provider,
        cfg.session.timeout,
    );
    match hook.end_all(&sub).await {
        Ok(()) => {
            println!(
                "revoked every session and bearer token of {sub:?} at {provider}{}",
                if shared {
                    " (shared through redis)"
                } else {
                    " (recorded under data_dir)"
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: recorded under data_dir, but not shared with other replicas: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cfg: Config, file: std::path::PathBuf) -> ExitCode {
    let listeners = match server::bind(&cfg.server.listen) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let admin = match tokio::net::TcpListener::bind(cfg.server.admin_listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, addr = %cfg.server.admin_listen, "cannot bind the admin listener");
            return ExitCode::FAILURE;
        }
    };
    let app = match App::build(cfg) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    if let Some(pool) = &app.pool
        && let Err(e) = pool.ready().await
    {
        tracing::error!(error = %e, "cannot start the user pool");
        return ExitCode::FAILURE;
    }
    for l in &listeners {
        if let Ok(a) = l.local_addr() {
            tracing::info!(addr = %a, public_url = %app.cfg.public_url, "listening");
        }
    }
    if let Ok(a) = admin.local_addr() {
        tracing::info!(addr = %a, "admin listening");
    }
    // Revocations made elsewhere (other replicas, the CLI) reach this process within seconds.
    app.shared.revocations.spawn_sync();
    let live = portcullis::live::Live::new(app, file);
    let warm = live.load();
    tokio::spawn(async move {
        warm.warm_up().await;
    });
    live.reload_on_sighup();
    tokio::spawn(server::admin::serve(live.clone(), admin));
    match server::serve(live, listeners, server::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}
