//! `portcullis pool … --config FILE`: administer the pool directly in its database (no server
//! needed; the lockout and sessions it clears are the ones every replica reads). Output is
//! JSON for single users, one line per user for lists. Exit codes: 0 ok, 1 failed, 64 config.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::admin::{Admin, AdminError};
use super::audit::{self, Actor};
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
    /// The pool's token signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Show the audit log of administrative actions, oldest first.
    Audit {
        /// Only entries from this long ago until now, e.g. 90m, 24h, 7d.
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// At most this many (the most recent) entries.
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        /// One JSON array instead of tab-separated lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the signing keys: kid, algorithm, status (signing / retired) and, for a retired
    /// key, when it leaves the JWKS.
    List,
    /// Rotate: a new key signs from now on (every replica within 10 s); the old one stays in
    /// the JWKS until every token it signed has expired.
    Rotate,
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
    /// Import users from a Cognito user-import CSV (with an optional password_hash column).
    /// Exit status 65 when the file has problems (then nothing is imported, unless
    /// --skip-invalid).
    Import {
        file: PathBuf,
        /// Import the valid rows and list the others, instead of importing nothing.
        #[arg(long)]
        skip_invalid: bool,
    },
    /// Write every user as a Cognito user-import CSV to standard output.
    Export {
        /// Add the password_hash column (PHC strings): handle the file like a password list.
        #[arg(long)]
        with_password_hashes: bool,
    },
    /// Remove the user's TOTP authenticator and recovery codes.
    MfaReset { username: String },
    /// List the user's passkeys.
    Passkeys { username: String },
    /// Remove one of the user's passkeys (its id from `users passkeys`).
    RemovePasskey { username: String, id: String },
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Add a user to a group.
    AddUser { group: String, username: String },
    /// Remove a user from a group.
    RemoveUser { group: String, username: String },
    /// List groups and their members.
    List,
    /// Create an empty group (as the admin console does).
    Create { group: String },
    /// Delete a group and every membership in it.
    Delete { group: String },
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

/// Sends the audit log's structured events (and warnings) to stderr, in the configured log
/// format, so the CLI's admin actions reach the same log pipeline as the server's.
fn init_audit_events(cfg: &crate::config::Config) {
    let filter = tracing_subscriber::EnvFilter::new("portcullis::audit=info,warn");
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    let _ = match cfg.log.format {
        crate::config::LogFormat::Json => b.json().try_init(),
        crate::config::LogFormat::Plain => b.try_init(),
    };
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
    init_audit_events(&cfg);
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
            actor: Actor::cli_user(),
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
                if !out.stdout.is_empty() {
                    println!("{}", out.stdout.trim_end_matches('\n'));
                }
                if !out.stderr.is_empty() {
                    eprintln!("{}", out.stderr.trim_end_matches('\n'));
                }
                ExitCode::from(out.exit)
            }
            Err(e) => {
                let text = e.to_string();
                for (i, line) in text.lines().enumerate() {
                    let lead = if i == 0 { "error: " } else { "" };
                    eprintln!("{lead}{}", audit::printable(line));
                }
                ExitCode::FAILURE
            }
        }
    })
}

/// What a command prints, and its exit status.
struct Output {
    stdout: String,
    stderr: String,
    exit: u8,
}

impl From<String> for Output {
    fn from(stdout: String) -> Output {
        Output {
            stdout,
            stderr: String::new(),
            exit: 0,
        }
    }
}

/// `sysexits.h` EX_DATAERR: the input file has problems.
const EXIT_DATA: u8 = 65;

async fn import(
    admin: &Admin<'_>,
    file: &std::path::Path,
    skip_invalid: bool,
) -> Result<Output, AdminError> {
    let data = std::fs::read(file)
        .map_err(|e| AdminError::Invalid(vec![format!("cannot read {}: {e}", file.display())]))?;
    let name = file.display().to_string();
    let report = admin.import_users(&name, &data, skip_invalid).await?;
    let stderr: String = report
        .problems
        .iter()
        .map(|p| {
            format!(
                "{}: {}\n",
                audit::printable(&name),
                audit::printable(&p.to_string())
            )
        })
        .collect();
    let stdout = if report.problems.is_empty() {
        format!("imported {} users", report.imported)
    } else if skip_invalid {
        let lines: Vec<String> = report.invalid_lines.iter().map(u64::to_string).collect();
        format!(
            "imported {} users; skipped {} invalid rows (lines {})",
            report.imported,
            report.invalid_lines.len(),
            lines.join(", ")
        )
    } else {
        format!(
            "nothing imported: {} problems in {} of {} rows (--skip-invalid imports the {} valid rows)",
            report.problems.len(),
            report.invalid_lines.len(),
            report.rows,
            report.rows - report.invalid_lines.len()
        )
    };
    Ok(Output {
        stdout,
        stderr,
        exit: if report.problems.is_empty() {
            0
        } else {
            EXIT_DATA
        },
    })
}

async fn execute(admin: &Admin<'_>, cmd: PoolCommand) -> Result<Output, AdminError> {
    let bad = |m: String| AdminError::Invalid(vec![m]);
    Ok(Output::from(match cmd {
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
                        audit::printable(&u.username),
                        u.status.as_str(),
                        audit::printable(u.email().unwrap_or("-")),
                        u.sub
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            UsersCommand::Show { username } => {
                let mut v = admin.show(&username).await?;
                let u = admin.find(&username).await?;
                let (failures, left) = admin.lockout(&u).await?;
                let last = admin.store.last_sign_in(&u.sub).await?;
                let at = |secs: i64| audit::rfc3339_us(secs.saturating_mul(1_000_000));
                // Times as people read them (UTC), beside the epoch seconds scripts read.
                v["created"] = serde_json::json!(at(u.created_at));
                v["updated"] = serde_json::json!(at(u.updated_at));
                v["last_sign_in"] = serde_json::json!(last.map(at));
                v["lockout"] = serde_json::json!({
                    "failures": failures,
                    "locked": left > 0,
                    "locked_until": (left > 0).then(|| {
                        audit::rfc3339_us(super::now_ms().saturating_add(left).saturating_mul(1_000))
                    }),
                });
                serde_json::to_string_pretty(&v).unwrap_or_default()
            }
            UsersCommand::Delete { username } => {
                admin.delete(&username).await?;
                format!("deleted {}", audit::printable(&username))
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
                    "{}: {}",
                    audit::printable(&username),
                    if was { "unlocked" } else { "was not locked" }
                )
            }
            UsersCommand::SignOut { username } => {
                admin.sign_out(&username).await?;
                format!("{}: signed out everywhere", audit::printable(&username))
            }
            UsersCommand::Import { file, skip_invalid } => {
                return import(admin, &file, skip_invalid).await;
            }
            UsersCommand::Export {
                with_password_hashes,
            } => String::from_utf8(admin.export_users(with_password_hashes).await?)
                .map_err(|_| bad("the export is not UTF-8".into()))?,
            UsersCommand::MfaReset { username } => {
                let had = admin.mfa_reset(&username).await?;
                format!(
                    "{}: {}",
                    audit::printable(&username),
                    if had {
                        "TOTP and recovery codes removed"
                    } else {
                        "had no TOTP authenticator"
                    }
                )
            }
            UsersCommand::Passkeys { username } => admin
                .passkeys(&username)
                .await?
                .iter()
                .map(|p| {
                    format!(
                        "{}\t{}\t{}",
                        audit::printable(&p.id),
                        audit::printable(&p.name),
                        p.created_at
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            UsersCommand::RemovePasskey { username, id } => {
                admin.remove_passkey(&username, &id).await?;
                format!(
                    "{}: passkey {} removed",
                    audit::printable(&username),
                    audit::printable(&id)
                )
            }
        },
        PoolCommand::Audit { since, limit, json } => {
            let since = match since {
                Some(text) => Some(audit::ago(&text).ok_or_else(|| {
                    bad(format!(
                        "--since {text:?}: expected a duration such as 90m, 24h or 7d"
                    ))
                })?),
                None => None,
            };
            let mut entries = audit::list(admin.store, since, limit.max(0)).await?;
            entries.reverse();
            if json {
                serde_json::to_string_pretty(&entries).unwrap_or_default()
            } else {
                entries
                    .iter()
                    .map(|e| {
                        let p = audit::printable;
                        let outcome = if e.reason.is_empty() {
                            p(&e.outcome).into_owned()
                        } else {
                            format!("{} ({})", p(&e.outcome), p(&e.reason))
                        };
                        format!(
                            "{}\t{}\t{}\t{}\t{outcome}",
                            p(&e.time),
                            p(&audit::describe_actor(&e.actor)),
                            p(&e.action),
                            p(&e.target)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        PoolCommand::Keys(k) => {
            let t = super::now();
            let keys = match k {
                KeysCommand::Rotate => super::jwt::rotate_audited(admin, t).await?.1,
                KeysCommand::List => {
                    super::jwt::list(admin.store, admin.cfg.signing_alg, t).await?
                }
            };
            keys.iter()
                .map(|k| {
                    let until = k
                        .expires_at
                        .map(|e| format!("\tuntil {}", audit::rfc3339_us(e * 1_000_000)))
                        .unwrap_or_default();
                    format!("{}\t{}\t{}{until}", k.kid, k.alg, k.status)
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
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
                .map(|(g, members)| {
                    format!(
                        "{}\t{}",
                        audit::printable(g),
                        audit::printable(&members.join(","))
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            GroupsCommand::Create { group } => {
                admin.create_group(&group).await?;
                format!("created group {}", audit::printable(&group))
            }
            GroupsCommand::Delete { group } => {
                admin.delete_group(&group).await?;
                format!("deleted group {}", audit::printable(&group))
            }
        },
    }))
}
