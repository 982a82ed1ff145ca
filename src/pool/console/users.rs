//! A user in the console: their page (attributes, status, groups, linked providers, last
//! sign-in, lockout with unlock while locked, TOTP and passkeys with reset / remove, their own
//! event history), create (temporary password or invitation code; every required attribute is
//! always on the form; every problem at once; phone numbers as typed), edit attributes, and
//! the actions — destructive ones after a confirmation step, every one answered by a redirect.

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::{Console, time};
use crate::http::body::Body;
use crate::pool::admin::AdminError;
use crate::pool::attributes::STANDARD;
use crate::pool::i18n::{self, t};
use crate::pool::lockout::retry_seconds;
use crate::pool::pages::signup::field_for;
use crate::pool::pages::{Field, Page};
use crate::pool::store::{User, UserStatus};

use super::directory::status_label;
use super::{confirm, enc, history};

/// Entries of a user's own history shown on their page.
const HISTORY: i64 = 50;

/// Attributes offered on the forms: every required one (always), the sign-up ones, the
/// common ones, then whatever else the user already has.
fn form_attributes(c: &Console<'_>, user: Option<&User>) -> Vec<String> {
    let cfg = &c.pool.cfg;
    let mut names: Vec<String> = cfg.required_attributes.clone();
    let common = ["email", "phone_number", "name", "given_name", "family_name"];
    for a in cfg
        .signup_attributes
        .iter()
        .map(String::as_str)
        .chain(common)
    {
        if !names.iter().any(|n| n == a) {
            names.push(a.to_string());
        }
    }
    if let Some(u) = user {
        for k in u.attributes.keys() {
            let editable = STANDARD.contains(&k.as_str()) || k.starts_with("custom:");
            if editable && !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    names
}

fn fields(c: &Console<'_>, names: &[String], value: impl Fn(&str) -> String) -> Vec<Field> {
    names
        .iter()
        .map(|n| {
            let mut f = field_for(n, c.req.lang, c.pool.cfg.required_attributes.contains(n));
            f.value = value(n);
            f
        })
        .collect()
}

/// The attribute fields of a submitted form (blank ones left out), plus the verified flags.
fn submitted(c: &Console<'_>, names: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = names
        .iter()
        .map(|n| (n.clone(), c.req.field(n).trim().to_string()))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    for flag in ["email_verified", "phone_number_verified"] {
        let on = c.req.field(flag) == "true";
        out.push((flag.to_string(), on.to_string()));
    }
    out
}

/// `GET /admin/user?u=NAME`.
pub async fn show(c: &Console<'_>) -> Response<Body> {
    let page = Page {
        notice: c.flash(),
        ..Page::default()
    };
    user_page(c, c.req.param("u"), StatusCode::OK, page).await
}

/// A user's page, with `page`'s notice or errors on top.
async fn user_page(c: &Console<'_>, name: &str, status: StatusCode, page: Page) -> Response<Body> {
    let ops = c.ops();
    let user = match ops.find(name).await {
        Ok(u) => u,
        Err(e) => return c.failed(e),
    };
    let lang = c.req.lang;
    let (failures, left) = match ops.lockout(&user).await {
        Ok(l) => l,
        Err(e) => return c.failed(e),
    };
    let lockout = if left > 0 {
        i18n::fill(
            t(lang, "console_locked"),
            &[
                ("s", &retry_seconds(left).to_string()),
                ("n", &failures.to_string()),
            ],
        )
    } else if failures > 0 {
        i18n::fill(t(lang, "console_failures"), &[("n", &failures.to_string())])
    } else {
        t(lang, "console_not_locked").to_string()
    };
    let last = match c.ready.store.last_sign_in(&user.sub).await {
        Ok(Some(at)) => time(at),
        Ok(None) => t(lang, "console_never").to_string(),
        Err(e) => return c.failed(e.into()),
    };
    let all_groups = match ops.groups().await {
        Ok(g) => g,
        Err(e) => return c.failed(e),
    };
    let attributes: Vec<Value> = user
        .attributes
        .iter()
        .filter(|(k, _)| *k != "identities")
        .map(|(k, v)| {
            let shown = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let label = super::text(lang, &format!("console_attr_{k}"))
                .map(str::to_string)
                .unwrap_or_else(|| i18n::attribute_label(lang, k));
            json!({"name": k, "label": label, "value": shown})
        })
        .collect();
    let identities = user
        .attributes
        .get("identities")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    let totp = match c.ready.store.totp_secret(&user.sub).await {
        Ok(s) => s.is_some(),
        Err(e) => return c.failed(e.into()),
    };
    let codes_left = match c.ready.store.recovery_codes_left(&user.sub).await {
        Ok(n) => n,
        Err(e) => return c.failed(e.into()),
    };
    let passkeys: Vec<Value> = match c.ready.store.passkeys_of(&user.sub).await {
        Ok(list) => list
            .iter()
            .map(|p| {
                json!({
                    "id": p.id,
                    "name": p.name,
                    "created": time(p.created_at),
                    "last_used": if p.last_used_at > 0 { time(p.last_used_at) } else { t(lang, "console_never").to_string() },
                })
            })
            .collect(),
        Err(e) => return c.failed(e.into()),
    };
    let events: Vec<Value> =
        match crate::pool::audit::of_user(&c.ready.store, &user.sub, &user.username, HISTORY).await
        {
            Ok(list) => list.iter().map(|e| history::row(lang, e)).collect(),
            Err(e) => return c.failed(e.into()),
        };
    let data = json!({
        "user": {
            "username": user.username,
            "sub": user.sub,
            "status": user.status.as_str(),
            "status_label": status_label(lang, user.status.as_str()),
            "disabled": user.status == UserStatus::Disabled,
            "groups": user.groups,
            "created": time(user.created_at),
            "updated": time(user.updated_at),
            "last_sign_in": last,
        },
        "user_q": enc(&user.username),
        "attributes": attributes,
        "identities": identities,
        "lockout": {"text": lockout, "locked": left > 0, "failures": failures},
        "mfa": {
            "totp": totp,
            "codes_left": i18n::fill(t(lang, "console_codes_left"), &[("n", &codes_left.to_string())]),
            "passkeys": passkeys,
        },
        "events": events,
        "other_groups": all_groups
            .iter()
            .map(|(g, _)| g)
            .filter(|g| !user.groups.contains(g))
            .collect::<Vec<_>>(),
    });
    c.render(status, "admin_user.html", "console_user", page, data)
}

/// `GET /admin/users/new`, and the same form again with every problem of a submit.
pub fn new_form(c: &Console<'_>, status: StatusCode, errors: Vec<String>) -> Response<Body> {
    let names = form_attributes(c, None);
    let mut page = Page {
        errors,
        fields: fields(c, &names, |n| c.req.field(n).to_string()),
        ..Page::default()
    };
    page.values
        .insert("username".into(), c.req.field("username").to_string());
    let data = json!({
        "create": true,
        "mode": if c.req.field("mode") == "invitation" { "invitation" } else { "temporary" },
        "email_verified": c.req.field("email_verified") == "true",
        "phone_number_verified": c.req.field("phone_number_verified") == "true",
    });
    c.render(
        status,
        "admin_user_form.html",
        "console_new_user",
        page,
        data,
    )
}

/// `POST /admin/users/new`.
pub async fn create(c: &Console<'_>) -> Response<Body> {
    let names = form_attributes(c, None);
    let attrs = submitted(c, &names);
    let invitation = c.req.field("mode") == "invitation";
    let typed = c.req.field("temporary_password");
    let password = (!invitation && !typed.is_empty()).then_some(typed);
    let ops = c.ops();
    let username = c.req.field("username");
    let (user, generated) = match ops
        .add_user_in(c.req.lang, username, password, false, &attrs, &[])
        .await
    {
        Ok(r) => r,
        Err(AdminError::Invalid(list)) => return new_form(c, StatusCode::BAD_REQUEST, list),
        Err(AdminError::Exists(m)) => return new_form(c, StatusCode::CONFLICT, vec![m]),
        Err(e) => return c.failed(e),
    };
    tracing::info!(sub = %user.sub, by = %c.me.sub, request_id = c.req.rid, "pool.event" = "console_create", "user created in the admin console");
    let lang = c.req.lang;
    let page = format!("/user?u={}", enc(&user.username));
    // Post/Redirect/Get: a reload of the user's page never creates the user again.
    if invitation {
        // The user chooses a password with the code sent now (as after a reset).
        if let Err(e) = ops.invite(&user.username).await {
            return c.failed(e);
        }
        c.done(&page, "console_done_invited")
    } else if let Some(p) = generated {
        // Shown once: sealed into a one-minute cookie for the next page only.
        c.done_with(
            &page,
            &i18n::fill(t(lang, "console_created_temporary"), &[("p", &p)]),
        )
    } else {
        c.done(&page, "console_done_created")
    }
}

/// `GET /admin/user/edit?u=NAME`.
pub async fn edit_form(c: &Console<'_>) -> Response<Body> {
    match c.ops().find(c.req.param("u")).await {
        Ok(u) => edit_page(c, &u, StatusCode::OK, Vec::new(), true),
        Err(e) => c.failed(e),
    }
}

fn edit_page(
    c: &Console<'_>,
    u: &User,
    status: StatusCode,
    errors: Vec<String>,
    from_user: bool,
) -> Response<Body> {
    let names = form_attributes(c, Some(u));
    let stored = |n: &str| match u.attributes.get(n) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let flag = |f: &str| {
        if from_user {
            u.attributes.get(f) == Some(&Value::Bool(true))
        } else {
            c.req.field(f) == "true"
        }
    };
    let page = Page {
        errors,
        fields: fields(c, &names, |n| {
            if from_user {
                stored(n)
            } else {
                c.req.field(n).to_string()
            }
        }),
        ..Page::default()
    };
    let data = json!({
        "create": false,
        "username": u.username,
        "email_verified": flag("email_verified"),
        "phone_number_verified": flag("phone_number_verified"),
    });
    c.render(
        status,
        "admin_user_form.html",
        "console_edit_attributes",
        page,
        data,
    )
}

/// `POST /admin/user/edit`.
pub async fn edit(c: &Console<'_>) -> Response<Body> {
    let ops = c.ops();
    let u = match ops.find(c.req.field("u")).await {
        Ok(u) => u,
        Err(e) => return c.failed(e),
    };
    let attrs = submitted(c, &form_attributes(c, Some(&u)));
    match ops.set_attributes(c.req.lang, &u.username, &attrs).await {
        Ok(u) => c.done(
            &format!("/user?u={}", enc(&u.username)),
            "console_done_saved",
        ),
        Err(AdminError::Invalid(list)) => edit_page(c, &u, StatusCode::BAD_REQUEST, list, false),
        Err(e) => c.failed(e),
    }
}

/// Actions that change a user beyond undoing with one click: asked first (see `confirm`).
fn question(action: &str) -> Option<&'static str> {
    Some(match action {
        "delete" => "console_confirm_delete",
        "disable" => "console_confirm_disable",
        "sign-out" => "console_confirm_sign_out",
        "reset-password" => "console_confirm_reset_password",
        "reset-mfa" => "console_confirm_reset_mfa",
        "remove-passkey" => "console_confirm_remove_passkey",
        _ => return None,
    })
}

/// `POST /admin/user/{unlock|disable|enable|reset-password|sign-out|delete|add-group|
/// remove-group|reset-mfa|remove-passkey}` with `u` (and `group`, `id`, `confirm`).
pub async fn act(c: &Console<'_>, action: &str) -> Response<Body> {
    let ops = c.ops();
    let name = c.req.field("u");
    let group = c.req.field("group").trim();
    let id = c.req.field("id");
    let back = format!("/user?u={}", enc(&crate::pool::username::canonical(name)));
    let confirmed = c.req.field("confirm") == "yes";
    if let Some(q) = question(action)
        && !confirmed
    {
        let label = c
            .ready
            .store
            .passkeys_of(&ops.find(name).await.map(|u| u.sub).unwrap_or_default())
            .await
            .ok()
            .and_then(|l| l.into_iter().find(|p| p.id == id))
            .map(|p| p.name)
            .unwrap_or_else(|| id.to_string());
        return confirm::ask(
            c,
            &format!("/user/{action}"),
            q,
            &[("u", name), ("passkey", &label)],
            &[("u", name), ("id", id)],
            &back,
        );
    }
    if action == "add-group" && !confirmed && !group.is_empty() {
        match ops.groups().await {
            Ok(all) if !all.iter().any(|(g, _)| g == group) => {
                return confirm::ask(
                    c,
                    "/user/add-group",
                    "console_confirm_new_group",
                    &[("u", name), ("group", group)],
                    &[("u", name), ("group", group)],
                    &back,
                );
            }
            Ok(_) => {}
            Err(e) => return c.failed(e),
        }
    }
    let result = match action {
        "unlock" => ops.unlock(name).await.map(|was| {
            if was {
                "console_done_unlocked"
            } else {
                "console_done_not_locked"
            }
        }),
        "disable" => ops.disable(name).await.map(|_| "console_done_disabled"),
        "enable" => ops.enable(name).await.map(|_| "console_done_enabled"),
        "reset-password" => ops.reset_password(name).await.map(|_| "console_done_reset"),
        "sign-out" => ops.sign_out(name).await.map(|_| "console_done_signed_out"),
        "add-group" => ops
            .add_to_group(name, group)
            .await
            .map(|_| "console_done_group_added"),
        "remove-group" => ops
            .remove_from_group(name, group)
            .await
            .map(|_| "console_done_group_removed"),
        "reset-mfa" => ops.mfa_reset(name).await.map(|_| "console_done_mfa_reset"),
        "remove-passkey" => ops
            .remove_passkey(name, id)
            .await
            .map(|_| "console_done_passkey_removed"),
        "delete" => ops.delete(name).await.map(|_| "console_done_deleted"),
        _ => return crate::error::RequestError::NotFound.render(c.req.rid, false),
    };
    match result {
        Ok(notice) => {
            tracing::info!(action, by = %c.me.sub, request_id = c.req.rid, "pool.event" = "console_action", "admin console action");
            if action == "delete" {
                c.done("/users", notice)
            } else {
                c.done(&back, notice)
            }
        }
        Err(AdminError::NoSuchUser(n)) => c.failed(AdminError::NoSuchUser(n)),
        Err(e) => {
            let (status, errors) = match e {
                AdminError::Invalid(list) => (StatusCode::BAD_REQUEST, list),
                AdminError::Exists(m) => (StatusCode::CONFLICT, vec![m]),
                AdminError::Delivery(m) => (StatusCode::BAD_GATEWAY, vec![m]),
                other => return c.failed(other),
            };
            let page = Page {
                errors,
                ..Page::default()
            };
            user_page(c, name, status, page).await
        }
    }
}
