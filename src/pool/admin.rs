//! Administration, shared by `portcullis pool …` and the admin JSON API: create (with a
//! temporary password → FORCE_CHANGE_PASSWORD), list, show, delete, set password, reset
//! password (RESET_REQUIRED + a code), disable, enable, unlock, global sign-out, groups.
//! Users are named by user name (any case/width variant) or email address.
//!
//! Every operation that changes something is recorded here, at this one point, in the audit
//! log ([`super::audit`]) with the [`Actor`] the caller names — whatever the outcome.

use serde_json::Value;

use super::audit::{self, Actor, Outcome};
use super::config::PoolConfig;
use super::i18n::{self, Lang};
use super::pages::login::user_key;
use super::store::{NewUser, Store, StoreError, User, UserStatus};
use super::{attributes, delivery, now, password, username};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("{0}")]
    Exists(String),
    #[error(transparent)]
    Store(StoreError),
    #[error("cannot deliver the code: {0}")]
    Delivery(String),
    /// The process-wide password-hashing limit is full; try again shortly.
    #[error("password hashing is at capacity; try again shortly")]
    Busy,
}

impl From<password::HashError> for AdminError {
    fn from(e: password::HashError) -> Self {
        match e {
            password::HashError::Busy(_) => AdminError::Busy,
            password::HashError::Failed => {
                AdminError::Invalid(vec!["password hashing failed".into()])
            }
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Exists(what) => {
                AdminError::Exists(format!("a user with this {what} already exists"))
            }
            other => AdminError::Store(other),
        }
    }
}

pub struct Admin<'a> {
    pub cfg: &'a PoolConfig,
    pub store: &'a Store,
    /// Who acts: recorded with every change in the audit log.
    pub actor: Actor,
}

impl AdminError {
    /// A short, stable class for the audit log and API answers.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::NoSuchUser(_) => "no_such_user",
            AdminError::Invalid(_) => "invalid",
            AdminError::Exists(_) => "exists",
            AdminError::Store(_) => "database",
            AdminError::Delivery(_) => "delivery",
            AdminError::Busy => "busy",
        }
    }
}

/// A temporary password that satisfies any policy (all four classes, 20 characters).
pub fn temporary_password() -> String {
    let mut b = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("system RNG available");
    use base64::Engine;
    format!(
        "{}aA1!",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

fn group_name_ok(g: &str) -> bool {
    !g.is_empty() && g.len() <= 128 && !g.chars().any(|c| c.is_control() || c == ',')
}

/// Problems with `email_verified` / `phone_number_verified` inputs (only those, true|false).
fn verified_problems(verified: &[(String, String)]) -> Vec<String> {
    verified
        .iter()
        .filter(|(k, v)| {
            !matches!(k.as_str(), "email_verified" | "phone_number_verified")
                || !matches!(v.as_str(), "true" | "false")
        })
        .map(|(k, _)| format!("{k}: only email_verified / phone_number_verified = true|false"))
        .collect()
}

/// Sets each verified flag of an email or phone number the user has: true only when given so.
fn set_verified(map: &mut serde_json::Map<String, Value>, verified: &[(String, String)]) {
    for (claim, flag) in [
        ("email", "email_verified"),
        ("phone_number", "phone_number_verified"),
    ] {
        if map.contains_key(claim) {
            let v = verified.iter().any(|(k, v)| k == flag && v == "true");
            map.insert(flag.into(), Value::Bool(v));
        }
    }
}

impl Admin<'_> {
    /// Records the outcome of `action` on `target` in the audit log and passes the result on.
    /// A failure to write the log is logged (by `audit::record`) but does not change `result`:
    /// the action has already happened.
    pub async fn audited<T>(
        &self,
        action: &str,
        target: &str,
        result: Result<T, AdminError>,
    ) -> Result<T, AdminError> {
        let (outcome, params) = match &result {
            Ok(_) => (Outcome::Ok, Value::Null),
            Err(e) => (Self::outcome_of(e), Self::params_of(e)),
        };
        let _ = audit::record_full(
            self.store,
            &self.actor,
            action,
            target,
            "",
            &params,
            &outcome,
        )
        .await;
        result
    }

    /// The audit outcome of a failed action: its code only (`invalid`, `no_such_user`, …), so
    /// the log reads the same whatever language the admin used; see [`Admin::params_of`].
    pub fn outcome_of(e: &AdminError) -> Outcome {
        Outcome::Failed(e.code().into())
    }

    /// What a failed action's record keeps besides its code, language-neutral: the fields an
    /// `invalid` named (the part of each message before `:`), the name not found.
    pub fn params_of(e: &AdminError) -> Value {
        match e {
            AdminError::NoSuchUser(n) => serde_json::json!({"name": n}),
            AdminError::Invalid(list) => {
                let fields: Vec<&str> = list
                    .iter()
                    .filter_map(|m| m.split_once(':').map(|(f, _)| f.trim()))
                    .filter(|f| {
                        !f.is_empty()
                            && f.len() <= 64
                            && f.chars()
                                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'))
                    })
                    .collect();
                if fields.is_empty() {
                    Value::Null
                } else {
                    serde_json::json!({"fields": fields})
                }
            }
            _ => Value::Null,
        }
    }

    /// Records an action in the audit log; a failure to write it is logged by `audit::record`.
    pub async fn record(&self, action: &str, target: &str, outcome: &Outcome) {
        let _ = audit::record(self.store, &self.actor, action, target, outcome).await;
    }

    /// The audit target for a user named by the caller: the canonical form of the name.
    fn target(name: &str) -> String {
        username::canonical(name)
    }

    pub async fn find(&self, name: &str) -> Result<User, AdminError> {
        self.store
            .user_by_login(&username::canonical(name), name)
            .await?
            .ok_or_else(|| AdminError::NoSuchUser(name.to_string()))
    }

    /// Creates a user. Without `password` a temporary one is generated and returned.
    pub async fn add_user(
        &self,
        name: &str,
        password_in: Option<&str>,
        permanent: bool,
        attrs: &[(String, String)],
        groups: &[String],
    ) -> Result<(User, Option<String>), AdminError> {
        self.add_user_in(Lang::En, name, password_in, permanent, attrs, groups)
            .await
    }

    /// [`Admin::add_user`] with its problems worded in `lang` (the console's language).
    pub async fn add_user_in(
        &self,
        lang: Lang,
        name: &str,
        password_in: Option<&str>,
        permanent: bool,
        attrs: &[(String, String)],
        groups: &[String],
    ) -> Result<(User, Option<String>), AdminError> {
        let r = self
            .add_user_unaudited(lang, name, password_in, permanent, attrs, groups)
            .await;
        self.audited("create_user", &Self::target(name), r).await
    }

    async fn add_user_unaudited(
        &self,
        lang: Lang,
        name: &str,
        password_in: Option<&str>,
        permanent: bool,
        attrs: &[(String, String)],
        groups: &[String],
    ) -> Result<(User, Option<String>), AdminError> {
        let verified: Vec<(String, String)> = attrs
            .iter()
            .filter(|(k, _)| k.ends_with("_verified"))
            .cloned()
            .collect();
        let plain: Vec<(String, String)> = attrs
            .iter()
            .filter(|(k, _)| !k.ends_with("_verified"))
            .cloned()
            .collect();
        let generated = password_in.is_none().then(temporary_password);
        let pw = password_in
            .map(str::to_string)
            .or(generated.clone())
            .unwrap_or_default();
        let checked = attributes::validate(
            &plain,
            &self.cfg.required_attributes,
            self.cfg.default_phone_region,
        );
        let mut errors = super::pages::signup::problems_for(self.cfg, lang, name, &pw, &checked);
        errors.extend(verified_problems(&verified));
        for g in groups {
            if !group_name_ok(g) {
                errors.push(format!("group {g:?}: not a valid group name"));
            }
        }
        let (Ok(mut map), true) = (checked, errors.is_empty()) else {
            return Err(AdminError::Invalid(errors));
        };
        let Ok(canonical) = username::validate(name) else {
            return Err(AdminError::Invalid(errors));
        };
        set_verified(&mut map, &verified);
        let hash = password::hash(&pw).await?;
        let status = if permanent {
            UserStatus::Confirmed
        } else {
            UserStatus::ForceChangePassword
        };
        let sub = uuid::Uuid::new_v4().to_string();
        self.store
            .create_user(
                &NewUser {
                    sub: sub.clone(),
                    username: canonical,
                    status,
                    password_hash: hash,
                    attributes: map,
                },
                now(),
            )
            .await?;
        for g in groups {
            self.store.add_to_group(&sub, g).await?;
        }
        let user = self
            .store
            .user_by_sub(&sub)
            .await?
            .ok_or_else(|| AdminError::NoSuchUser(name.into()))?;
        tracing::info!(sub = %user.sub, "pool.event" = "admin_create", "user created by an administrator");
        Ok((user, generated))
    }

    pub async fn list(&self) -> Result<Vec<User>, AdminError> {
        Ok(self.store.list_users(10_000).await?)
    }

    pub async fn delete(&self, name: &str) -> Result<(), AdminError> {
        let r = async {
            let u = self.find(name).await?;
            self.store.delete_factors(&u.sub).await?;
            self.store.delete_user(&u.sub).await?;
            self.store.clear_attempts(&user_key(&u.username)).await?;
            Ok(())
        }
        .await;
        self.audited("delete_user", &Self::target(name), r).await
    }

    pub async fn set_password(
        &self,
        name: &str,
        pw: &str,
        permanent: bool,
    ) -> Result<User, AdminError> {
        let r = self.set_password_unaudited(name, pw, permanent).await;
        self.audited("set_password", &Self::target(name), r).await
    }

    async fn set_password_unaudited(
        &self,
        name: &str,
        pw: &str,
        permanent: bool,
    ) -> Result<User, AdminError> {
        let u = self.find(name).await?;
        let rules = password::unmet_rules(pw, &self.cfg.password_policy);
        if !rules.is_empty() {
            return Err(AdminError::Invalid(vec![i18n::password_error(
                Lang::En,
                &rules,
            )]));
        }
        let hash = password::hash(pw).await?;
        let status = if permanent {
            UserStatus::Confirmed
        } else {
            UserStatus::ForceChangePassword
        };
        self.store
            .set_password(&u.sub, &hash, status, now())
            .await?;
        self.find(name).await
    }

    /// The user must choose a new password with a code, which is sent now.
    pub async fn reset_password(&self, name: &str) -> Result<User, AdminError> {
        let r = self
            .reset_password_unaudited(name, delivery::Purpose::Reset)
            .await;
        self.audited("reset_password", &Self::target(name), r).await
    }

    /// An invitation: like a reset, but the email is the invitation and the code stays valid
    /// for `pool.invitation_ttl` (7 days by default).
    pub async fn invite(&self, name: &str) -> Result<User, AdminError> {
        let r = self
            .reset_password_unaudited(name, delivery::Purpose::Invitation)
            .await;
        self.audited("reset_password", &Self::target(name), r).await
    }

    async fn reset_password_unaudited(
        &self,
        name: &str,
        purpose: delivery::Purpose,
    ) -> Result<User, AdminError> {
        let u = self.find(name).await?;
        self.store
            .set_status(&u.sub, UserStatus::ResetRequired, now())
            .await?;
        self.store.sign_out_everywhere(&u.sub).await?;
        delivery::issue(self.cfg, self.store, &u, purpose, Lang::En, now())
            .await
            .map_err(|e| AdminError::Delivery(e.to_string()))?;
        self.find(name).await
    }

    pub async fn disable(&self, name: &str) -> Result<User, AdminError> {
        let r = async {
            let u = self.find(name).await?;
            self.store
                .set_status(&u.sub, UserStatus::Disabled, now())
                .await?;
            self.store.sign_out_everywhere(&u.sub).await?;
            self.find(name).await
        }
        .await;
        self.audited("disable_user", &Self::target(name), r).await
    }

    pub async fn enable(&self, name: &str) -> Result<User, AdminError> {
        let r = async {
            let u = self.find(name).await?;
            if u.status == UserStatus::Disabled {
                self.store
                    .set_status(&u.sub, UserStatus::Confirmed, now())
                    .await?;
            }
            self.find(name).await
        }
        .await;
        self.audited("enable_user", &Self::target(name), r).await
    }

    /// Clears the lockout of the user (every spelling of the name shares it).
    pub async fn unlock(&self, name: &str) -> Result<bool, AdminError> {
        let r = async {
            // A name no user has can be locked too (sign-in counts failures for any name);
            // clearing nothing for no user is a typo, and fails as one.
            let (key, exists) = match self.find(name).await {
                Ok(u) => (user_key(&u.username), true),
                Err(AdminError::NoSuchUser(_)) => (user_key(&username::canonical(name)), false),
                Err(e) => return Err(e),
            };
            let was = self.store.clear_attempts(&key).await?;
            if !exists && !was {
                return Err(AdminError::NoSuchUser(name.to_string()));
            }
            Ok(was)
        }
        .await;
        self.audited("unlock_user", &Self::target(name), r).await
    }

    pub async fn sign_out(&self, name: &str) -> Result<(), AdminError> {
        let r = async {
            let u = self.find(name).await?;
            self.store.sign_out_everywhere(&u.sub).await?;
            Ok(())
        }
        .await;
        self.audited("sign_out_user", &Self::target(name), r).await
    }

    pub async fn add_to_group(&self, name: &str, group: &str) -> Result<User, AdminError> {
        self.membership(name, group, true).await
    }

    pub async fn remove_from_group(&self, name: &str, group: &str) -> Result<User, AdminError> {
        self.membership(name, group, false).await
    }

    /// Adds (`add`) or removes a user's membership of a group.
    async fn membership(&self, name: &str, group: &str, add: bool) -> Result<User, AdminError> {
        let r = async {
            if add && !group_name_ok(group) {
                return Err(AdminError::Invalid(vec![format!(
                    "group {group:?}: not a valid group name"
                )]));
            }
            let u = self.find(name).await?;
            if add {
                self.store.add_to_group(&u.sub, group).await?;
            } else {
                self.store.remove_from_group(&u.sub, group).await?;
            }
            self.find(name).await
        }
        .await;
        let target = format!("{} (group {group})", Self::target(name));
        let action = if add {
            "add_to_group"
        } else {
            "remove_from_group"
        };
        self.audited(action, &target, r).await
    }

    /// Every group with its members, empty groups included.
    pub async fn groups(&self) -> Result<Vec<(String, Vec<String>)>, AdminError> {
        let mut all = self.store.list_groups().await?;
        for g in self.store.created_groups().await? {
            if !all.iter().any(|(name, _)| *name == g) {
                all.push((g, Vec::new()));
            }
        }
        all.sort();
        Ok(all)
    }

    /// Creates an empty group; an error when it exists.
    pub async fn create_group(&self, group: &str) -> Result<(), AdminError> {
        let r = async {
            if !group_name_ok(group) {
                return Err(AdminError::Invalid(vec![format!(
                    "group {group:?}: not a valid group name"
                )]));
            }
            if self.store.create_group(group, now()).await? {
                Ok(())
            } else {
                Err(AdminError::Exists(format!(
                    "group {group:?} already exists"
                )))
            }
        }
        .await;
        self.audited("create_group", group, r).await
    }

    /// Deletes a group and every membership in it.
    pub async fn delete_group(&self, group: &str) -> Result<(), AdminError> {
        let r = async {
            if self.store.delete_group(group).await? {
                Ok(())
            } else {
                Err(AdminError::Invalid(vec![format!(
                    "no group named {group:?}"
                )]))
            }
        }
        .await;
        self.audited("delete_group", group, r).await
    }

    /// Replaces a user's attributes: the required ones must all be there, every problem is
    /// reported at once (in `lang`), phone numbers are stored as E.164. `identities` stay.
    pub async fn set_attributes(
        &self,
        lang: Lang,
        name: &str,
        attrs: &[(String, String)],
    ) -> Result<User, AdminError> {
        let r = self.set_attributes_unaudited(lang, name, attrs).await;
        self.audited("set_attributes", &Self::target(name), r).await
    }

    async fn set_attributes_unaudited(
        &self,
        lang: Lang,
        name: &str,
        attrs: &[(String, String)],
    ) -> Result<User, AdminError> {
        let u = self.find(name).await?;
        let (verified, plain): (Vec<_>, Vec<_>) = attrs
            .iter()
            .cloned()
            .partition(|(k, _)| k.ends_with("_verified"));
        let mut errors = Vec::new();
        let checked = attributes::validate(
            &plain,
            &self.cfg.required_attributes,
            self.cfg.default_phone_region,
        );
        let mut map = match checked {
            Ok(m) => m,
            Err(list) => {
                errors.extend(list.iter().map(|e| i18n::attribute_error(lang, e)));
                serde_json::Map::new()
            }
        };
        errors.extend(verified_problems(&verified));
        if let Some(email) = map.get("email").and_then(Value::as_str)
            && let Some(other) = self.store.user_by_email(email).await?
            && other.sub != u.sub
        {
            errors.push(format!("email: {}", i18n::t(lang, "email_exists")));
        }
        if !errors.is_empty() {
            return Err(AdminError::Invalid(errors));
        }
        set_verified(&mut map, &verified);
        if let Some(ids) = u.attributes.get("identities") {
            map.insert("identities".into(), ids.clone());
        }
        self.store.set_attributes(&u.sub, &map, now()).await?;
        self.find(&u.username).await
    }

    /// The user's lockout: failures counted and milliseconds until the next try (0: not locked).
    pub async fn lockout(&self, user: &User) -> Result<(u32, i64), AdminError> {
        let (failures, last) = self.store.attempts(&user_key(&user.username)).await?;
        let p = &self.cfg.lockout;
        let left = super::lockout::remaining_ms(failures, p.max_attempts, last, super::now_ms(), p);
        Ok((failures, left))
    }
}

/// Second factors (docs/src/pool/mfa.md): what `users show` reports, `mfa-reset`, and passkeys.
impl Admin<'_> {
    /// The user's factors: `{"totp": bool, "recovery_codes_left": n, "passkeys": [...]}`.
    pub async fn factors(&self, u: &User) -> Result<Value, AdminError> {
        let totp = self.store.totp_secret(&u.sub).await?.is_some();
        let left = self.store.recovery_codes_left(&u.sub).await?;
        let passkeys = self.store.passkeys_of(&u.sub).await?;
        Ok(serde_json::json!({
            "totp": totp,
            "recovery_codes_left": left,
            "passkeys": passkeys,
        }))
    }

    /// The user as JSON with an `mfa` object listing their factors.
    pub async fn show(&self, name: &str) -> Result<Value, AdminError> {
        let u = self.find(name).await?;
        let mut v = serde_json::to_value(&u).unwrap_or_default();
        v["mfa"] = self.factors(&u).await?;
        Ok(v)
    }

    /// Removes TOTP and the recovery codes; with `pool.mfa = "required"` the user sets up a new
    /// authenticator at the next sign-in. Returns whether TOTP was set up.
    pub async fn mfa_reset(&self, name: &str) -> Result<bool, AdminError> {
        let r = async {
            let u = self.find(name).await?;
            let had = self.store.reset_totp(&u.sub).await?;
            tracing::info!(sub = %u.sub, "pool.event" = "admin_mfa_reset", "TOTP removed by an administrator");
            let change = super::events::FactorChange::TotpResetByAdmin;
            super::events::factors_changed(self.cfg, self.store, &u, change, Lang::En).await;
            Ok(had)
        }
        .await;
        self.audited("reset_mfa", &Self::target(name), r).await
    }

    pub async fn passkeys(&self, name: &str) -> Result<Vec<super::store::Passkey>, AdminError> {
        let u = self.find(name).await?;
        Ok(self.store.passkeys_of(&u.sub).await?)
    }

    pub async fn remove_passkey(&self, name: &str, id: &str) -> Result<(), AdminError> {
        let r = async {
            let u = self.find(name).await?;
            if !self.store.remove_passkey(&u.sub, id).await? {
                return Err(AdminError::Invalid(vec![format!(
                    "{name} has no passkey {id:?} (see `pool users passkeys {name}`)"
                )]));
            }
            tracing::info!(sub = %u.sub, "pool.event" = "admin_passkey_removed", "passkey removed by an administrator");
            let change = super::events::FactorChange::PasskeyRemovedByAdmin;
            super::events::factors_changed(self.cfg, self.store, &u, change, Lang::En).await;
            Ok(())
        }
        .await;
        self.audited("remove_passkey", &Self::target(name), r).await
    }
}
