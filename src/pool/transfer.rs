//! Moving users in and out (docs/src/pool/import-export.md): Cognito's user-import CSV, read and written.
//!
//! The header row names the columns: Cognito's (`cognito:username`, the standard attributes,
//! `email_verified`, `phone_number_verified`, `cognito:mfa_enabled`, `updated_at`), `custom:*`
//! attributes, and two of ours: `password_hash` (a PHC string, see [`super::password`]) and
//! `status` (a Cognito user status, so a disabled user stays disabled across export → import).
//!
//! Import checks every row the way sign-up and admin create do (user name, required and valid
//! attributes, phone numbers to E.164), plus duplicates within the file and against the pool,
//! and reports every problem at once with its line (the header is line 1) and column. Nothing
//! is imported unless every row is valid — the users are created in one transaction — or, with
//! `skip_invalid`, exactly the valid rows are. A user with a hash signs in with the old password
//! (re-hashed to Argon2id then); without one the user is RESET_REQUIRED and chooses a password
//! through "Forgot password?".
//!
//! Invariant: no problem message repeats a password hash.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde_json::{Map, Value};

use super::admin::{Admin, AdminError};
use super::attributes::{self, AttributeProblem};
use super::audit::Outcome;
use super::config::PoolConfig;
use super::i18n::{self, Lang};
use super::store::{NewUser, User, UserStatus};
use super::{now, password, username};

/// Cognito's CSV header (`aws cognito-idp get-csv-header`), in its order.
pub const COGNITO_COLUMNS: &[&str] = &[
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "profile",
    "picture",
    "website",
    "email",
    "email_verified",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "phone_number",
    "phone_number_verified",
    "address",
    "updated_at",
    "cognito:mfa_enabled",
    "cognito:username",
];

const USERNAME: &str = "cognito:username";
const PASSWORD_HASH: &str = "password_hash";
const STATUS: &str = "status";

/// One problem in an import file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Line of the file where the row starts (the header is line 1).
    pub line: u64,
    /// 1-based column number and its header name, when the problem is in one cell.
    pub column: Option<(usize, String)>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some((n, name)) => write!(
                f,
                "line {}, column {n} ({name}): {}",
                self.line, self.message
            ),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Data rows in the file.
    pub rows: usize,
    /// Users created.
    pub imported: usize,
    /// Every problem found (empty: the whole file was imported).
    pub problems: Vec<Problem>,
    /// Lines of the rows that were not imported because of a problem.
    pub invalid_lines: Vec<u64>,
}

/// The checked file: the users of the valid rows, and every problem.
struct Plan {
    rows: usize,
    users: Vec<NewUser>,
    problems: Vec<Problem>,
    invalid_lines: Vec<u64>,
}

fn known_column(name: &str) -> bool {
    COGNITO_COLUMNS.contains(&name)
        || attributes::is_standard_attribute(name)
        || attributes::is_custom_name(name)
        || name == PASSWORD_HASH
        || name == STATUS
}

/// Drops a message's own `name: ` prefix (the column already names it).
fn without_prefix(message: String, name: &str) -> String {
    message
        .strip_prefix(&format!("{name}: "))
        .map(str::to_string)
        .unwrap_or(message)
}

/// Reads and checks a whole file against the pool's rules and the names already taken.
fn plan(
    data: &[u8],
    cfg: &PoolConfig,
    taken_names: &HashSet<String>,
    taken_emails: &HashSet<String>,
) -> Plan {
    let mut plan = Plan {
        rows: 0,
        users: Vec::new(),
        problems: Vec::new(),
        invalid_lines: Vec::new(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    let mut records = reader.records();
    let header: Vec<String> = match records.next() {
        Some(Ok(h)) => h
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let c = if i == 0 {
                    c.trim_start_matches('\u{feff}')
                } else {
                    c
                };
                c.trim().to_string()
            })
            .collect(),
        Some(Err(e)) => {
            plan.problems.push(Problem {
                line: 1,
                column: None,
                message: format!("the header row is not valid CSV: {e}"),
            });
            return plan;
        }
        None => {
            plan.problems.push(Problem {
                line: 1,
                column: None,
                message: "the file is empty; the first line must name the columns".into(),
            });
            return plan;
        }
    };
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, name) in header.iter().enumerate() {
        let col = Some((i + 1, name.clone()));
        if !known_column(name) {
            plan.problems.push(Problem {
                line: 1,
                column: col,
                message: "unknown column: expected cognito:username, a standard attribute, custom:NAME, email_verified, phone_number_verified, cognito:mfa_enabled, updated_at, status or password_hash".into(),
            });
        } else if index.insert(name.as_str(), i).is_some() {
            plan.problems.push(Problem {
                line: 1,
                column: col,
                message: "this column appears twice".into(),
            });
        }
    }
    if !index.contains_key(USERNAME) {
        plan.problems.push(Problem {
            line: 1,
            column: None,
            message: "there is no cognito:username column".into(),
        });
    }
    for r in &cfg.required_attributes {
        if !index.contains_key(r.as_str()) {
            plan.problems.push(Problem {
                line: 1,
                column: None,
                message: format!("there is no {r} column, and {r} is a required attribute (pool.required_attributes)"),
            });
        }
    }
    let mut names_in_file: HashMap<String, u64> = HashMap::new();
    let mut emails_in_file: HashMap<String, u64> = HashMap::new();
    for rec in records {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                plan.rows += 1;
                plan.problems.push(Problem {
                    line,
                    column: None,
                    message: format!("not valid CSV: {e}"),
                });
                plan.invalid_lines.push(line);
                continue;
            }
        };
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        plan.rows += 1;
        let before = plan.problems.len();
        let mut problem = |column: Option<&str>, message: String| {
            plan.problems.push(Problem {
                line,
                column: column.and_then(|c| index.get(c).map(|i| (i + 1, c.to_string()))),
                message,
            });
        };
        if rec.len() != header.len() {
            problem(
                None,
                format!("has {} fields, the header has {}", rec.len(), header.len()),
            );
            plan.invalid_lines.push(line);
            continue;
        }
        let cell = |name: &str| {
            index
                .get(name)
                .and_then(|i| rec.get(*i))
                .map(str::trim)
                .unwrap_or("")
        };
        // The user name, unique in the file and the pool.
        let raw_name = cell(USERNAME);
        let canonical = match username::validate(raw_name) {
            Ok(c) => Some(c),
            // A missing column was reported once, on the header.
            Err(_) if !index.contains_key(USERNAME) => None,
            Err(e) => {
                let key = match e {
                    username::UsernameError::Empty => "err_username_empty",
                    username::UsernameError::TooLong => "err_username_long",
                    username::UsernameError::BadCharacter => "err_username_char",
                };
                problem(
                    Some(USERNAME),
                    without_prefix(i18n::t(Lang::En, key).to_string(), "username"),
                );
                None
            }
        };
        if let Some(c) = &canonical
            && username::reserved(
                c,
                cfg.identity_providers
                    .iter()
                    .map(|p| p.provider.name.as_str()),
            )
        {
            problem(
                Some(USERNAME),
                without_prefix(
                    i18n::t(Lang::En, "err_username_reserved").to_string(),
                    "username",
                ),
            );
        }
        if let Some(c) = &canonical {
            if taken_names.contains(c) {
                problem(
                    Some(USERNAME),
                    format!("a user named {c:?} already exists in the pool"),
                );
            } else if let Some(first) = names_in_file.get(c) {
                problem(Some(USERNAME), format!("the same user as line {first}"));
            }
        }
        // Attributes, as on sign-up.
        let attr_input: Vec<(String, String)> = header
            .iter()
            .filter(|h| attributes::is_standard_attribute(h) || attributes::is_custom_name(h))
            .map(|h| (h.clone(), cell(h).to_string()))
            .collect();
        let checked = attributes::validate(
            &attr_input,
            &cfg.required_attributes,
            cfg.default_phone_region,
        );
        let mut map = match checked {
            Ok(m) => m,
            Err(errors) => {
                for e in errors {
                    // A missing column was reported once, on the header.
                    if e.problem == AttributeProblem::Missing
                        && !index.contains_key(e.name.as_str())
                    {
                        continue;
                    }
                    let message = without_prefix(i18n::attribute_error(Lang::En, &e), &e.name);
                    problem(Some(e.name.as_str()), message);
                }
                Map::new()
            }
        };
        if let Some(email) = map
            .get("email")
            .and_then(Value::as_str)
            .map(str::to_lowercase)
        {
            if taken_emails.contains(&email) {
                problem(
                    Some("email"),
                    "a user with this email already exists in the pool".into(),
                );
            } else if let Some(first) = emails_in_file.get(&email) {
                problem(Some("email"), format!("the same email as line {first}"));
            }
            emails_in_file.entry(email).or_insert(line);
        }
        for (flag, claim) in [
            ("email_verified", "email"),
            ("phone_number_verified", "phone_number"),
        ] {
            let v = match cell(flag).to_ascii_lowercase().as_str() {
                "" | "false" => false,
                "true" => true,
                _ => {
                    problem(Some(flag), "must be true or false".into());
                    false
                }
            };
            if map.contains_key(claim) {
                map.insert(flag.into(), Value::Bool(v));
            } else if v {
                problem(Some(flag), format!("is true but {claim} is empty"));
            }
        }
        match cell("cognito:mfa_enabled").to_ascii_lowercase().as_str() {
            "" | "false" => {}
            "true" => problem(
                Some("cognito:mfa_enabled"),
                "MFA settings cannot be imported (SMS factors are not supported); set false".into(),
            ),
            _ => problem(Some("cognito:mfa_enabled"), "must be true or false".into()),
        }
        let updated = cell("updated_at");
        if !updated.is_empty() && updated.parse::<u64>().is_err() {
            problem(
                Some("updated_at"),
                "must be a number of seconds since 1970 (or empty)".into(),
            );
        }
        let hash = cell(PASSWORD_HASH);
        if !hash.is_empty()
            && let Some(why) = password::imported_hash_problem(hash)
        {
            problem(Some(PASSWORD_HASH), why);
        }
        let status = match cell(STATUS) {
            "" => None,
            s => match UserStatus::parse(&s.to_ascii_uppercase()) {
                Some(st) => Some(st),
                None => {
                    problem(
                        Some(STATUS),
                        "must be one of CONFIRMED, UNCONFIRMED, FORCE_CHANGE_PASSWORD, RESET_REQUIRED, DISABLED".into(),
                    );
                    None
                }
            },
        };
        if let Some(c) = &canonical {
            names_in_file.entry(c.clone()).or_insert(line);
        }
        if plan.problems.len() > before {
            plan.invalid_lines.push(line);
            continue;
        }
        let Some(name) = canonical else { continue };
        // Without a hash there is no password to sign in with: the user must choose one.
        let status = match (hash.is_empty(), status) {
            (true, Some(UserStatus::Disabled)) => UserStatus::Disabled,
            (true, _) => UserStatus::ResetRequired,
            (false, s) => s.unwrap_or(UserStatus::Confirmed),
        };
        plan.users.push(NewUser {
            sub: uuid::Uuid::new_v4().to_string(),
            username: name,
            status,
            password_hash: hash.to_string(),
            attributes: map,
        });
    }
    plan.problems
        .sort_by_key(|p| (p.line, p.column.as_ref().map_or(usize::MAX, |c| c.0)));
    plan
}

/// Writes users as a Cognito CSV: Cognito's columns, every `custom:*` attribute any user has,
/// `status`, and with `with_hashes` the `password_hash` column.
pub fn write_csv(users: &[User], with_hashes: bool) -> Result<Vec<u8>, csv::Error> {
    let mut custom: Vec<&str> = users
        .iter()
        .flat_map(|u| u.attributes.keys())
        .map(String::as_str)
        .filter(|k| attributes::is_custom_name(k))
        .collect();
    custom.sort_unstable();
    custom.dedup();
    let mut header: Vec<&str> = COGNITO_COLUMNS.to_vec();
    header.extend(custom.iter().copied());
    header.push(STATUS);
    if with_hashes {
        header.push(PASSWORD_HASH);
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header)?;
    for u in users {
        let row: Vec<String> = header
            .iter()
            .map(|col| match *col {
                USERNAME => u.username.clone(),
                "cognito:mfa_enabled" => "false".into(),
                "updated_at" => u.updated_at.to_string(),
                STATUS => u.status.as_str().into(),
                PASSWORD_HASH => u.password_hash.clone(),
                attr => match u.attributes.get(attr) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Bool(b)) => b.to_string(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                },
            })
            .collect();
        w.write_record(&row)?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

impl Admin<'_> {
    /// Imports a CSV file (`source` names it in the audit log). Nothing is imported when the
    /// file has a problem, unless `skip_invalid`.
    pub async fn import_users(
        &self,
        source: &str,
        data: &[u8],
        skip_invalid: bool,
    ) -> Result<ImportReport, AdminError> {
        let r = async {
            let (names, emails) = self.store.taken_names().await?;
            let plan = plan(data, self.cfg, &names, &emails);
            let mut report = ImportReport {
                rows: plan.rows,
                imported: 0,
                problems: plan.problems,
                invalid_lines: plan.invalid_lines,
            };
            if report.problems.is_empty() || skip_invalid {
                self.store.create_users(&plan.users, now()).await?;
                report.imported = plan.users.len();
            }
            Ok(report)
        }
        .await;
        let (target, outcome) = match &r {
            Ok(rep) => (
                format!(
                    "{source} ({} of {} rows imported, {} problems)",
                    rep.imported,
                    rep.rows,
                    rep.problems.len()
                ),
                if rep.imported == 0 && !rep.problems.is_empty() {
                    Outcome::Failed("invalid: nothing imported".into())
                } else {
                    Outcome::Ok
                },
            ),
            Err(e) => (source.to_string(), Admin::outcome_of(e)),
        };
        self.record("import_users", &target, &outcome).await;
        r
    }

    /// Every user as a Cognito CSV (see [`write_csv`]).
    pub async fn export_users(&self, with_hashes: bool) -> Result<Vec<u8>, AdminError> {
        let r = async {
            let users = self.store.list_users(i64::MAX).await?;
            write_csv(&users, with_hashes)
                .map_err(|e| AdminError::Invalid(vec![format!("cannot write CSV: {e}")]))
        }
        .await;
        let target = if with_hashes {
            "all users, with password hashes"
        } else {
            "all users"
        };
        self.audited("export_users", target, r).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PoolConfig {
        let v: toml::Value = toml::from_str::<toml::Table>("default_phone_region = \"JP\"")
            .map(toml::Value::Table)
            .unwrap();
        let mut p = crate::config::Problems::default();
        super::super::config::build(
            &v,
            std::path::Path::new("/tmp/x.toml"),
            std::path::Path::new("/tmp"),
            &mut p,
        )
        .unwrap()
    }

    fn check(text: &str) -> Plan {
        let taken: HashSet<String> = ["taken".to_string()].into();
        let emails: HashSet<String> = ["old@example.com".to_string()].into();
        plan(text.as_bytes(), &cfg(), &taken, &emails)
    }

    /// A name in a configured identity provider's namespace is that provider's: not imported.
    #[test]
    fn names_in_a_provider_namespace_are_refused() {
        let v: toml::Value = toml::from_str::<toml::Table>(
            "[[identity_providers]]\nname = \"corp\"\nissuer = \"https://idp.example\"\n\
             client_id = \"x\"\nclient_secret = \"s\"\n",
        )
        .map(toml::Value::Table)
        .unwrap();
        let mut problems = crate::config::Problems::default();
        let cfg = super::super::config::build(
            &v,
            std::path::Path::new("/tmp/x.toml"),
            std::path::Path::new("/tmp"),
            &mut problems,
        )
        .unwrap();
        let p = plan(
            b"cognito:username,email\nCorp_victim,v@example.com\ncorporate,c@example.com\n",
            &cfg,
            &HashSet::new(),
            &HashSet::new(),
        );
        let got: Vec<String> = p.problems.iter().map(|x| x.to_string()).collect();
        assert_eq!(p.invalid_lines, vec![2], "{got:?}");
        assert!(got[0].contains("reserved"), "{got:?}");
        assert_eq!(p.users.len(), 1);
    }

    #[test]
    fn reports_every_problem_with_line_and_column() {
        let p = check(
            "cognito:username,email,email_verified,phone_number,password_hash\n\
             ann,ann@example.com,true,090-1234-5678,\n\
             bad name,not-an-email,maybe,12,$md5$nope\n\
             \"multi\nline\",x@example.com,false,,\n\
             ANN,ann@example.com,false,,\n\
             taken,old@example.com,false,,\n",
        );
        let got: Vec<String> = p.problems.iter().map(|x| x.to_string()).collect();
        let joined = got.join("\n");
        for want in [
            "line 3, column 1 (cognito:username)",
            "line 3, column 2 (email)",
            "line 3, column 3 (email_verified)",
            "line 3, column 4 (phone_number)",
            "line 3, column 5 (password_hash): not a supported PHC hash",
            "line 4, column 1 (cognito:username)",
            "line 6, column 1 (cognito:username): the same user as line 2",
            "line 6, column 2 (email): the same email as line 2",
            "line 7, column 1 (cognito:username): a user named \"taken\" already exists",
            "line 7, column 2 (email): a user with this email already exists",
        ] {
            assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
        }
        assert!(!joined.contains("$md5$nope"), "hashes are never repeated");
        assert_eq!(p.invalid_lines, vec![3, 4, 6, 7]);
        assert_eq!(p.rows, 5);
        assert_eq!(p.users.len(), 1);
        let ann = &p.users[0];
        assert_eq!(ann.status, UserStatus::ResetRequired, "no hash");
        assert_eq!(ann.attributes["phone_number"], "+819012345678");
        assert_eq!(ann.attributes["email_verified"], true);
    }

    #[test]
    fn header_problems_are_reported_once() {
        let p = check("name,shoe_size,name\nAnn,42,Ann\n");
        let got: Vec<String> = p.problems.iter().map(|x| x.to_string()).collect();
        assert!(
            got[0].starts_with("line 1, column 2 (shoe_size): unknown column"),
            "{got:?}"
        );
        assert!(got[1].starts_with("line 1, column 3 (name): this column appears twice"));
        assert!(got[2].contains("no cognito:username column"));
        assert!(got[3].contains("no email column"), "{got:?}");
        assert_eq!(check("").problems[0].line, 1);
    }

    #[test]
    fn export_writes_what_import_reads() {
        let p = check(
            "\u{feff}cognito:username,email,custom:tenant,status,password_hash\n\
             zoe,zoe@example.com,acme,DISABLED,$2b$04$abcdefghijklmnopqrstuu5Zzn2tOxHjJ7gKVZBDPVCyRqYJxAKHG\n",
        );
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        let users: Vec<User> = p
            .users
            .iter()
            .map(|n| User {
                sub: n.sub.clone(),
                username: n.username.clone(),
                status: n.status,
                password_hash: n.password_hash.clone(),
                attributes: n.attributes.clone(),
                groups: vec![],
                created_at: 0,
                updated_at: 5,
            })
            .collect();
        assert_eq!(users[0].status, UserStatus::Disabled);
        let out = String::from_utf8(write_csv(&users, true).unwrap()).unwrap();
        let again = plan(out.as_bytes(), &cfg(), &HashSet::new(), &HashSet::new());
        assert!(again.problems.is_empty(), "{:?}\n{out}", again.problems);
        assert_eq!(again.users[0].attributes, users[0].attributes);
        assert_eq!(again.users[0].password_hash, users[0].password_hash);
        assert_eq!(again.users[0].status, UserStatus::Disabled);
        let without = String::from_utf8(write_csv(&users, false).unwrap()).unwrap();
        assert!(!without.contains("password_hash") && !without.contains("$2b$"));
    }
}

/// For the fuzz target `csv_import` only: the import's checking of a file, without a database.
#[doc(hidden)]
pub mod fuzzing {
    use std::collections::HashSet;

    use super::{PoolConfig, Problem};
    use crate::pool::store::NewUser;

    /// What [`super::plan`] found: data rows, the users of the valid rows, every problem, and
    /// the lines of the invalid rows.
    pub struct Checked {
        pub rows: usize,
        pub users: Vec<NewUser>,
        pub problems: Vec<Problem>,
        pub invalid_lines: Vec<u64>,
    }

    pub fn check(
        data: &[u8],
        cfg: &PoolConfig,
        taken_names: &HashSet<String>,
        taken_emails: &HashSet<String>,
    ) -> Checked {
        let p = super::plan(data, cfg, taken_names, taken_emails);
        Checked {
            rows: p.rows,
            users: p.users,
            problems: p.problems,
            invalid_lines: p.invalid_lines,
        }
    }
}
