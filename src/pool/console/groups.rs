//! Groups in the console: list, create, delete, a group's members, add and remove members.

use http::{Response, StatusCode};
use serde_json::json;

use super::Console;
use crate::http::body::Body;
use crate::pool::admin::AdminError;
use crate::pool::pages::Page;

use super::enc;

/// `GET /admin/groups`.
pub async fn list(c: &Console<'_>) -> Response<Body> {
    page(c, StatusCode::OK, Vec::new()).await
}

async fn page(c: &Console<'_>, status: StatusCode, errors: Vec<String>) -> Response<Body> {
    let groups = match c.ops().groups().await {
        Ok(g) => g,
        Err(e) => return c.failed(e),
    };
    let rows: Vec<_> = groups
        .iter()
        .map(|(g, members)| {
            json!({
                "name": g,
                "href": c.url(&format!("/group?g={}", enc(g))),
                "members": members.len(),
            })
        })
        .collect();
    let mut p = Page {
        errors,
        notice: c.flash(),
        ..Page::default()
    };
    p.values
        .insert("group".into(), c.req.field("group").to_string());
    c.render(
        status,
        "admin_groups.html",
        "console_groups",
        p,
        json!({"groups": rows, "admin_group": c.pool.cfg.admin_group}),
    )
}

/// `POST /admin/groups/new` with `group`.
pub async fn create(c: &Console<'_>) -> Response<Body> {
    let group = c.req.field("group").trim();
    match c.ops().create_group(group).await {
        Ok(()) => {
            tracing::info!(by = %c.me.sub, request_id = c.req.rid, "pool.event" = "console_action", action = "create-group", "admin console action");
            c.done(
                &format!("/group?g={}", enc(group)),
                "console_done_group_created",
            )
        }
        Err(AdminError::Invalid(list)) => page(c, StatusCode::BAD_REQUEST, list).await,
        Err(AdminError::Exists(m)) => page(c, StatusCode::CONFLICT, vec![m]).await,
        Err(e) => c.failed(e),
    }
}

/// `GET /admin/group?g=NAME`.
pub async fn show(c: &Console<'_>) -> Response<Body> {
    group_page(c, c.req.param("g"), StatusCode::OK, Vec::new()).await
}

async fn group_page(
    c: &Console<'_>,
    name: &str,
    status: StatusCode,
    errors: Vec<String>,
) -> Response<Body> {
    let groups = match c.ops().groups().await {
        Ok(g) => g,
        Err(e) => return c.failed(e),
    };
    let Some((group, members)) = groups.into_iter().find(|(g, _)| g == name) else {
        return crate::error::RequestError::NotFound.render(c.req.rid, false);
    };
    let p = Page {
        errors,
        notice: c.flash(),
        ..Page::default()
    };
    c.render(
        status,
        "admin_group.html",
        "console_groups",
        p,
        json!({
            "group": group,
            "members": members
                .iter()
                .map(|m| json!({"name": m, "href": c.url(&format!("/user?u={}", enc(m)))}))
                .collect::<Vec<_>>(),
        }),
    )
}

/// `POST /admin/group/{add|remove|delete}` with `g` (and `u`).
pub async fn act(c: &Console<'_>, action: &str) -> Response<Body> {
    let ops = c.ops();
    let group = c.req.field("g");
    let user = c.req.field("u").trim();
    let back = format!("/group?g={}", enc(group));
    let result = match action {
        "add" => ops
            .add_to_group(user, group)
            .await
            .map(|_| "console_done_group_added"),
        "remove" => ops
            .remove_from_group(user, group)
            .await
            .map(|_| "console_done_group_removed"),
        "delete" if c.req.field("confirm") != "yes" => {
            return super::confirm::ask(
                c,
                "/group/delete",
                "console_confirm_delete_group",
                &[("g", group)],
                &[("g", group)],
                &back,
            );
        }
        "delete" => ops
            .delete_group(group)
            .await
            .map(|_| "console_done_group_deleted"),
        _ => return crate::error::RequestError::NotFound.render(c.req.rid, false),
    };
    match result {
        Ok(notice) => {
            tracing::info!(action, by = %c.me.sub, request_id = c.req.rid, "pool.event" = "console_action", "admin console action");
            if action == "delete" {
                c.done("/groups", notice)
            } else {
                c.done(&back, notice)
            }
        }
        Err(AdminError::Invalid(list)) => group_page(c, group, StatusCode::BAD_REQUEST, list).await,
        Err(AdminError::NoSuchUser(n)) => {
            let msg = AdminError::NoSuchUser(n).to_string();
            group_page(c, group, StatusCode::NOT_FOUND, vec![msg]).await
        }
        Err(e) => c.failed(e),
    }
}
