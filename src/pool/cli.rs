//! `portcullis pool … --config FILE`: administer the pool directly in its database (no server
//! needed; the lockout and sessions it clears are the ones every replica reads). Output is
//! JSON for single users, one line per user for lists. Exit codes: 0 ok, 1 failed, 64 config.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::admin::{Admin, AdminError};
use super::store::{Store, User};

#[derive(Debug, Args)]
pub struct PoolArgs {
    /// The configuration file (its [pool] table names the database).
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: PoolCommand,
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage group membership.
    #[command(subcommand)]
    Groups(GroupsCommand),
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; without --password a temporary password is generated and printed.
    Add {
        username: String,
        /// The (temporary, unless --permanent) password.
        #[arg(long)]
        password: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// The password is final: the user is CONFIRMED instead of FORCE_CHANGE_PASSWORD.
        #[arg(long)]
        permanent: bool,
        /// An attribute, e.g. --attribute email=a@example.com (repeatable).
        #[arg(long = "attribute", short = 'a', value_name = "NAME=VALUE")]
        attributes: Vec<String>,
        /// A group to add the user to (repeatable).
        #[arg(long = "group", short = 'g')]
        groups: Vec<String>,
    },
    /// List users.
    List,
    /// Show one user.
    Show { username: String },
    /// Delete a user and their sessions and tokens.
    Delete { username: String },
    /// Set a password (temporary unless --permanent).
    SetPassword {
        username: String,
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        permanent: bool,
    },
    /// Require a new password, chosen with a code that is sent now.
    ResetPassword { username: String },
    /// Disable sign-in and end every session.
    Disable { username: String },
    /// Enable a disabled user.
    Enable { username: String },
    /// Clear the sign-in lockout.
    Unlock { username: String },
    /// Global sign-out: revoke refresh tokens and pool sessions.
    SignOut { username: String },
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Add a user to a group.
    AddUser { group: String, username: String },
    /// Remove a user from a group.
    RemoveUser { group: String, username: String },
    /// List groups and their members.
    List,
}

fn password(given: Option<String>, stdin: bool) -> Result<Option<String>, String> {
    if stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        return Ok(Some(s.trim_end_matches(['\n', '\r']).to_string()));
    }
    Ok(given)
}

fn show(u: &User) -> String {
    serde_json::to_string_pretty(u).unwrap_or_default()
}

/// Runs a pool command; prints results to stdout and problems to stderr.
pub fn run(args: PoolArgs) -> ExitCode {
    let Some(path) = args.config else {
        eprintln!("--config FILE is required");
        return ExitCode::from(crate::EXIT_CONFIG);
    };
    let cfg = match crate::config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let Some(pool_cfg) = cfg.pool.clone() else {
        eprintln!("{}: there is no [pool] table", path.display());
        return ExitCode::from(crate::EXIT_CONFIG);
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        // Users signed out or disabled here lose their proxy sessions on every replica too.
        let redis = match crate::app::redis(&cfg) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let hook = std::sync::Arc::new(crate::session::revocation::UserSessions::new(
            crate::app::revocations(&cfg, redis),
            "pool",
            cfg.session.timeout,
        ));
        // …and the clients with a back-channel logout URI get a logout token.
        let issuer = super::issuer_url(&cfg, &pool_cfg);
        let backchannel =
            super::backchannel::Backchannel::new(issuer.as_str().trim_end_matches('/'), &pool_cfg);
        let store = match Store::open(&pool_cfg.database).await {
            Ok(s) => s
                .with_proxy_sessions(Some(hook))
                .with_backchannel(backchannel.clone()),
            Err(e) => {
                eprintln!("cannot open the pool database: {e}");
                return ExitCode::FAILURE;
            }
        };
        let admin = Admin {
            cfg: &pool_cfg,
            store: &store,
        };
        let result = execute(&admin, args.command).await;
        // This process ends with the command: give logout tokens a few seconds to arrive.
        if let Some(bc) = &backchannel
            && !bc.settle(super::backchannel::CLI_WAIT).await
        {
            eprintln!(
                "warning: some logout tokens were not delivered within {} s",
                super::backchannel::CLI_WAIT.as_secs()
            );
        }
        match result {
            Ok(out) => {
                if !out.is_empty() {
                    println!("{out}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn execute(admin: &Admin<'_>, cmd: PoolCommand) -> Result<String, AdminError> {
    let bad = |m: String| AdminError::Invalid(vec![m]);
    Ok(match cmd {
        PoolCommand::Users(u) => match u {
            UsersCommand::Add {
                username,
                password: pw,
                password_stdin,
                permanent,
                attributes,
                groups,
            } => {
                let pw = password(pw, password_stdin).map_err(bad)?;
                let mut attrs = Vec::new();
                for a in attributes {
                    let (k, v) = a
                        .split_once('=')
                        .ok_or_else(|| bad(format!("--attribute {a:?}: expected NAME=VALUE")))?;
                    attrs.push((k.to_string(), v.to_string()));
                }
                let (user, generated) = admin
                    .add_user(&username, pw.as_deref(), permanent, &attrs, &groups)
                    .await?;
                let mut v = serde_json::to_value(&user).unwrap_or_default();
                if let Some(g) = generated {
                    v["temporary_password"] = json!(g);
                }
                serde_json::to_string_pretty(&v).unwrap_or_default()
            }
            UsersCommand::List => admin
                .list()
                .await?
                .iter()
                .map(|u| {
                    format!(
                        "{}\t{}\t{}\t{}",
                        u.username,
                        u.status.as_str(),
                        u.email().unwrap_or("-"),
                        u.sub
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            UsersCommand::Show { username } => show(&admin.find(&username).await?),
            UsersCommand::Delete { username } => {
                admin.delete(&username).await?;
                format!("deleted {username}")
            }
            UsersCommand::SetPassword {
                username,
                password: pw,
                password_stdin,
                permanent,
            } => {
                let pw = password(pw, password_stdin)
                    .map_err(bad)?
                    .ok_or_else(|| bad("--password or --password-stdin is required".into()))?;
                show(&admin.set_password(&username, &pw, permanent).await?)
            }
            UsersCommand::ResetPassword { username } => {
                show(&admin.reset_password(&username).await?)
            }
            UsersCommand::Disable { username } => show(&admin.disable(&username).await?),
            UsersCommand::Enable { username } => show(&admin.enable(&username).await?),
            UsersCommand::Unlock { username } => {
                let was = admin.unlock(&username).await?;
                format!(
                    "{username}: {}",
                    if was { "unlocked" } else { "was not locked" }
                )
            }
            UsersCommand::SignOut { username } => {
                admin.sign_out(&username).await?;
                format!("{username}: signed out everywhere")
            }
        },
        PoolCommand::Groups(g) => match g {
            GroupsCommand::AddUser { group, username } => {
                show(&admin.add_to_group(&username, &group).await?)
            }
            GroupsCommand::RemoveUser { group, username } => {
                show(&admin.remove_from_group(&username, &group).await?)
            }
            GroupsCommand::List => admin
                .groups()
                .await?
                .iter()
                .map(|(g, members)| format!("{g}\t{}", members.join(",")))
                .collect::<Vec<_>>()
                .join("\n"),
        },
    })
}
