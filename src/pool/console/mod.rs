//! The web admin console (docs/src/pool/administration.md) at `{issuer}/admin`, with `pool.admin_console = true`: a
//! third front end, beside `portcullis pool …` and the admin JSON API, over the same
//! operations ([`Admin`]). Server-rendered with the hosted pages' templates, languages and
//! branding; no script; the same strict CSP.
//!
//! Invariants: every request passes one gate — a live pool web session (the admin signs in
//! through the pool itself, so with whatever the pool's sign-in requires) of a CONFIRMED
//! member of `pool.admin_group`, else a redirect to sign-in or 403; every POST is
//! CSRF-checked before anything else; nothing here reads or shows a password hash, a code or a
//! token (a temporary password the console generated is shown once, to the admin who asked).

mod audit_log;
mod confirm;
mod directory;
mod groups;
mod history;
pub mod texts;
mod users;

use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::admin::{Admin, AdminError};
use super::audit::Actor;
use super::pages::{Page, redirect};
use super::store::User;
use super::{Pool, Ready, Req};
use crate::http::body::Body;

/// Set when the console sends a browser to sign in; `finish_sign_in` then returns it here.
pub const NEXT_COOKIE: &str = "portcullis_pool_next";

pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "admin_layout.html",
        include_str!("../templates/admin_layout.html"),
    ),
    (
        "admin_users.html",
        include_str!("../templates/admin_users.html"),
    ),
    (
        "admin_user.html",
        include_str!("../templates/admin_user.html"),
    ),
    (
        "admin_user_form.html",
        include_str!("../templates/admin_user_form.html"),
    ),
    (
        "admin_groups.html",
        include_str!("../templates/admin_groups.html"),
    ),
    (
        "admin_group.html",
        include_str!("../templates/admin_group.html"),
    ),
    (
        "admin_audit.html",
        include_str!("../templates/admin_audit.html"),
    ),
    (
        "admin_confirm.html",
        include_str!("../templates/admin_confirm.html"),
    ),
];

/// A notice for the page after a redirect that a query code cannot carry (a generated
/// temporary password): sealed, bound to the admin, alive [`FLASH_SECONDS`], shown once.
pub const FLASH_COOKIE: &str = "portcullis_console_flash";
const FLASH_SECONDS: i64 = 60;

#[derive(serde::Serialize, serde::Deserialize)]
struct Flash {
    me: String,
    exp: i64,
    text: String,
}

/// A string of the console's own tables, if it has one (no fallback to another key).
pub fn text(lang: super::i18n::Lang, key: &str) -> Option<&'static str> {
    texts::get(lang, key)
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One console request, past the gate.
pub struct Console<'a> {
    pool: &'a Pool,
    ready: &'a Ready,
    req: &'a Req<'a>,
    /// The signed-in administrator.
    me: User,
}

impl<'a> Console<'a> {
    fn ops(&self) -> Admin<'a> {
        Admin {
            cfg: &self.pool.cfg,
            store: &self.ready.store,
            actor: Actor::Console(self.me.username.clone()),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/admin{path}", self.pool.base)
    }

    /// Renders a console page; `data` gets what every console page shows (who, where).
    fn render(
        &self,
        status: StatusCode,
        template: &str,
        heading: &str,
        mut page: Page,
        mut data: Value,
    ) -> Response<Body> {
        if let Value::Object(m) = &mut data {
            m.insert("me".into(), json!(self.me.username));
            m.insert("admin".into(), json!(self.url("")));
        }
        if super::pages::cookie_value(self.req, FLASH_COOKIE).is_some() {
            page.cookies.push(self.pool.cookie(FLASH_COOKIE, "", 0));
        }
        page.data = data;
        self.pool
            .pages
            .render(self.pool, self.req, status, template, heading, page)
    }

    /// After a POST: back to a console page, with a notice key (`console_done_…`).
    fn done(&self, path: &str, notice: &str) -> Response<Body> {
        let sep = if path.contains('?') { '&' } else { '?' };
        redirect(&format!("{}{sep}notice={notice}", self.url(path)), &[])
    }

    /// After a POST: back to a console page with a notice that is not a fixed text (sealed
    /// into [`FLASH_COOKIE`] for the next page only).
    fn done_with(&self, path: &str, text: &str) -> Response<Body> {
        let flash = Flash {
            me: self.me.sub.clone(),
            exp: super::now() + FLASH_SECONDS,
            text: text.to_string(),
        };
        let json = serde_json::to_vec(&flash).unwrap_or_default();
        let sealed = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(self.pool.sealer.seal(b"console-flash", &json))
        };
        let cookie = self.pool.cookie(FLASH_COOKIE, &sealed, FLASH_SECONDS);
        redirect(&self.url(path), &[cookie])
    }

    /// The notice named by `?notice=`, when it is one of ours.
    fn notice(&self) -> String {
        let key = self.req.param("notice");
        if key.starts_with("console_done_") && texts::EN.iter().any(|(k, _)| *k == key) {
            super::i18n::t(self.req.lang, key).to_string()
        } else {
            String::new()
        }
    }

    /// The notice of this page: the sealed one a POST left for this admin, else `?notice=`.
    fn flash(&self) -> String {
        use base64::Engine;
        let sealed = super::pages::cookie_value(self.req, FLASH_COOKIE)
            .and_then(|v| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(v)
                    .ok()
            })
            .and_then(|b| self.pool.sealer.open(b"console-flash", &b))
            .and_then(|p| serde_json::from_slice::<Flash>(&p).ok())
            .filter(|f| f.me == self.me.sub && f.exp >= super::now());
        match sealed {
            Some(f) => f.text,
            None => self.notice(),
        }
    }

    /// A failed operation as a page: its messages, with the status that fits.
    fn failed(&self, e: AdminError) -> Response<Body> {
        let (status, errors) = match e {
            AdminError::NoSuchUser(_) => (StatusCode::NOT_FOUND, vec![e.to_string()]),
            AdminError::Invalid(list) => (StatusCode::BAD_REQUEST, list),
            AdminError::Exists(m) => (StatusCode::CONFLICT, vec![m]),
            AdminError::Delivery(_) => (StatusCode::BAD_GATEWAY, vec![e.to_string()]),
            AdminError::Busy => {
                let mut r = self.render(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "admin_layout.html",
                    "error_title",
                    Page {
                        errors: vec![super::i18n::t(self.req.lang, "busy").to_string()],
                        ..Page::default()
                    },
                    json!({}),
                );
                super::hashing::retry_later(&mut r);
                return r;
            }
            AdminError::Store(inner) => {
                tracing::error!(error = %inner, request_id = self.req.rid, "pool database error in the admin console");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    vec![super::i18n::t(self.req.lang, "unavailable").to_string()],
                )
            }
        };
        let page = Page {
            errors,
            ..Page::default()
        };
        self.render(status, "admin_layout.html", "error_title", page, json!({}))
    }
}

/// Formats a Unix time for the console: `2026-12-04 20:31:05 UTC` (as the audit log writes it).
pub fn time(t: i64) -> String {
    let full = super::audit::rfc3339_us(t.saturating_mul(1_000_000));
    format!(
        "{} UTC",
        full.split('.').next().unwrap_or(&full).replace('T', " ")
    )
}

/// Every route of the console's [`handle`], relative to `{issuer}/admin` (kept equal to its
/// `match` by the unit test below). All of them need a signed-in member of `admin_group`.
#[doc(hidden)]
pub const ROUTES: &[crate::surface::Route] = {
    use crate::surface::Route as R;
    &[
        R::exact("GET", ""),
        R::exact("GET", "/"),
        R::exact("GET", "/users"),
        R::exact("GET", "/users.csv"),
        R::exact("GET", "/users/new"),
        R::exact("POST", "/users/new"),
        R::exact("GET", "/user"),
        R::exact("GET", "/user/edit"),
        R::exact("POST", "/user/edit"),
        R::exact("GET", "/groups"),
        R::exact("POST", "/groups/new"),
        R::exact("GET", "/group"),
        R::exact("GET", "/audit"),
        R::prefix("POST", "/user/"),
        R::prefix("POST", "/group/"),
    ]
};

/// Everything under `{issuer}/admin`.
pub async fn handle(pool: &Pool, ready: &Ready, req: &Req<'_>, sub: &str) -> Response<Body> {
    let Some((me, _)) = pool.session_user(ready, req).await else {
        // Sign in through the pool's own pages, then come back (see `finish_sign_in`).
        let next = pool.cookie(NEXT_COOKIE, "admin", 900);
        return redirect(&format!("{}/login", pool.base), &[next]);
    };
    if !me.groups.iter().any(|g| *g == pool.cfg.admin_group) {
        tracing::info!(sub = %me.sub, request_id = req.rid, "pool.event" = "console_refused", "admin console refused: not in the admin group");
        return pool.pages.message(
            pool,
            req,
            StatusCode::FORBIDDEN,
            "console_title",
            "console_forbidden",
        );
    }
    let post = req.parts.method == Method::POST;
    if post && !pool.csrf_ok(req) {
        return pool.csrf_failed(req);
    }
    let get = matches!(req.parts.method, Method::GET | Method::HEAD);
    let c = Console {
        pool,
        ready,
        req,
        me,
    };
    let path = sub.strip_prefix("/admin").unwrap_or(sub);
    match path {
        "" | "/" if get => redirect(&c.url("/users"), &[]),
        "/users" if get => directory::list(&c).await,
        "/users.csv" if get => directory::export(&c).await,
        "/users/new" if get => users::new_form(&c, StatusCode::OK, Vec::new()),
        "/users/new" if post => users::create(&c).await,
        "/user" if get => users::show(&c).await,
        "/user/edit" if get => users::edit_form(&c).await,
        "/user/edit" if post => users::edit(&c).await,
        "/groups" if get => groups::list(&c).await,
        "/groups/new" if post => groups::create(&c).await,
        "/group" if get => groups::show(&c).await,
        "/audit" if get => audit_log::list(&c).await,
        p if post && p.starts_with("/user/") => users::act(&c, &p["/user/".len()..]).await,
        p if post && p.starts_with("/group/") => groups::act(&c, &p["/group/".len()..]).await,
        _ => crate::error::RequestError::NotFound.render(req.rid, false),
    }
}

#[cfg(test)]
mod route_table {
    use crate::surface::{arms, declared};

    #[test]
    fn routes_name_exactly_the_arms_of_the_dispatcher() {
        let want = arms(include_str!("mod.rs"), "    match path {");
        assert_eq!(declared(super::ROUTES, str::to_string), want);
    }
}
