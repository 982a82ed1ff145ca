//! The users list at scale: 50 a page, read with a keyset cursor (never OFFSET), sortable by
//! user name, creation, last sign-in or status, filtered by a user-name / email prefix,
//! status, group, "locked now", MFA on/off and federated provider, and exported as CSV.
//!
//! Every parameter is checked before the database is asked: an unknown status, sort, order,
//! MFA value or provider, an over-long text or a cursor that is not one of ours is a 400 with
//! a plain message, never a database error.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use super::{Console, texts, time};
use crate::http::body::Body;
use crate::pool::admin::AdminError;
use crate::pool::audit::{self, Outcome};
use crate::pool::i18n::{self, t};
use crate::pool::pages::Page;
use crate::pool::store::{Filter, Listed, Position, Sort, UserStatus};

/// Users on one page.
pub const PAGE: i64 = 50;
/// At most this many rows in one CSV export (a bigger list: narrow the filter).
pub const EXPORT_MAX: usize = 250_000;
/// At most this many lockout keys examined for "locked now".
const LOCK_SCAN: i64 = 10_000;
/// Longest accepted text parameter (a search prefix, a group name).
const TEXT_MAX: usize = 256;

pub const STATUSES: [UserStatus; 5] = [
    UserStatus::Unconfirmed,
    UserStatus::Confirmed,
    UserStatus::ForceChangePassword,
    UserStatus::ResetRequired,
    UserStatus::Disabled,
];

/// A status as the reader reads it (`CONFIRMED` → "Confirmed" / "確認済み").
pub fn status_label(lang: i18n::Lang, status: &str) -> String {
    texts::get(lang, &format!("console_status_{status}"))
        .map(str::to_string)
        .unwrap_or_else(|| status.to_string())
}

/// A list request, checked.
struct Query {
    filter: Filter,
    sort: Sort,
    descending: bool,
    after: Option<Position>,
    before: Option<Position>,
    /// Whether "locked now" was asked (the names are computed into `filter.only`).
    locked: bool,
}

fn bad(msg: String) -> AdminError {
    AdminError::Invalid(vec![msg])
}

fn text_param(c: &Console<'_>, name: &str) -> Result<Option<String>, AdminError> {
    let v = c.req.param(name).trim();
    if v.chars().count() > TEXT_MAX || v.chars().any(char::is_control) {
        return Err(bad(format!(
            "{name}: at most {TEXT_MAX} characters, no control characters"
        )));
    }
    Ok((!v.is_empty()).then(|| v.to_string()))
}

/// `sort|key|sub`, base64url: where a page starts or ends.
fn cursor(sort: Sort, p: &Position) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}\u{1f}{}\u{1f}{}", sort.as_str(), p.key, p.sub))
}

fn parse_cursor(name: &str, text: &str, sort: Sort) -> Result<Option<Position>, AdminError> {
    if text.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        bad(format!(
            "{name}: not a cursor of this list (start again from the first page)"
        ))
    };
    let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
    let raw = String::from_utf8(raw).map_err(|_| invalid())?;
    let mut parts = raw.split('\u{1f}');
    let (Some(s), Some(key), Some(sub), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    if s != sort.as_str()
        || sub.is_empty()
        || (matches!(sort, Sort::Created | Sort::LastSignIn) && key.parse::<i64>().is_err())
    {
        return Err(invalid());
    }
    Ok(Some(Position {
        key: key.to_string(),
        sub: sub.to_string(),
    }))
}

fn key_of(sort: Sort, row: &Listed) -> Position {
    let key = match sort {
        Sort::Username => row.user.username.clone(),
        Sort::Created => row.user.created_at.to_string(),
        Sort::LastSignIn => row.last_sign_in.unwrap_or(0).to_string(),
        Sort::Status => row.user.status.as_str().to_string(),
    };
    Position {
        key,
        sub: row.user.sub.clone(),
    }
}

async fn parse(c: &Console<'_>) -> Result<Query, AdminError> {
    let mut filter = Filter {
        prefix: text_param(c, "q")?.unwrap_or_default().to_lowercase(),
        group: text_param(c, "group")?,
        ..Filter::default()
    };
    let status = c.req.param("status");
    if !status.is_empty() {
        if !STATUSES.iter().any(|s| s.as_str() == status) {
            return Err(bad(format!(
                "status: one of {}",
                STATUSES.map(|s| s.as_str()).join(", ")
            )));
        }
        filter.status = Some(status.to_string());
    }
    filter.mfa = match c.req.param("mfa") {
        "" => None,
        "on" => Some(true),
        "off" => Some(false),
        _ => return Err(bad("mfa: on or off".into())),
    };
    let provider = c.req.param("provider");
    if !provider.is_empty() {
        let known: Vec<&str> = providers(c);
        if !known.contains(&provider) {
            return Err(bad(format!(
                "provider: one of the configured providers ({})",
                known.join(", ")
            )));
        }
        filter.provider = Some(provider.to_string());
    }
    let locked = match c.req.param("locked") {
        "" => false,
        "yes" => true,
        _ => return Err(bad("locked: yes, or leave it out".into())),
    };
    let sort = match c.req.param("sort") {
        "" => Sort::Username,
        s => Sort::parse(s).ok_or_else(|| {
            bad(format!(
                "sort: one of {}",
                Sort::ALL.map(|s| s.as_str()).join(", ")
            ))
        })?,
    };
    let descending = match c.req.param("order") {
        "" | "asc" => false,
        "desc" => true,
        _ => return Err(bad("order: asc or desc".into())),
    };
    let after = parse_cursor("after", c.req.param("after"), sort)?;
    let before = parse_cursor("before", c.req.param("before"), sort)?;
    if after.is_some() && before.is_some() {
        return Err(bad("after and before: one or the other".into()));
    }
    if locked {
        filter.only = Some(locked_now(c).await?);
    }
    Ok(Query {
        filter,
        sort,
        descending,
        after,
        before,
        locked,
    })
}

fn providers<'a>(c: &'a Console<'_>) -> Vec<&'a str> {
    c.pool
        .cfg
        .identity_providers
        .iter()
        .map(|p| p.provider.name.as_str())
        .collect()
}

/// The canonical names of the users locked out right now.
async fn locked_now(c: &Console<'_>) -> Result<Vec<String>, AdminError> {
    let p = &c.pool.cfg.lockout;
    let now = crate::pool::now_ms();
    let since = now.saturating_sub(p.max.as_millis() as i64);
    let keys = c
        .ready
        .store
        .lock_candidates(p.max_attempts, since, LOCK_SCAN)
        .await?;
    Ok(keys
        .into_iter()
        .filter(|(_, failures, last)| {
            crate::pool::lockout::remaining_ms(*failures, p.max_attempts, *last, now, p) > 0
        })
        .map(|(name, _, _)| name)
        .collect())
}

/// The list's query string without its cursor (for sort links, pages and the export).
fn query_string(q: &Query, sort: Sort, descending: bool) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    if !q.filter.prefix.is_empty() {
        s.append_pair("q", &q.filter.prefix);
    }
    if let Some(v) = &q.filter.status {
        s.append_pair("status", v);
    }
    if let Some(v) = &q.filter.group {
        s.append_pair("group", v);
    }
    if let Some(v) = q.filter.mfa {
        s.append_pair("mfa", if v { "on" } else { "off" });
    }
    if let Some(v) = &q.filter.provider {
        s.append_pair("provider", v);
    }
    if q.locked {
        s.append_pair("locked", "yes");
    }
    if sort != Sort::Username {
        s.append_pair("sort", sort.as_str());
    }
    if descending {
        s.append_pair("order", "desc");
    }
    s.finish()
}

/// `GET /admin/users`.
pub async fn list(c: &Console<'_>) -> Response<Body> {
    let q = match parse(c).await {
        Ok(q) => q,
        Err(e) => return c.failed(e),
    };
    let store = &c.ready.store;
    let back = q.before.is_some();
    let from = q.before.as_ref().or(q.after.as_ref());
    let mut rows = match store
        .list_page(&q.filter, q.sort, q.descending, from, back, PAGE + 1)
        .await
    {
        Ok(r) => r,
        Err(e) => return c.failed(e.into()),
    };
    let more = rows.len() as i64 > PAGE;
    if more {
        if back {
            rows.remove(0);
        } else {
            rows.truncate(PAGE as usize);
        }
    }
    // Going forward there is a page before whenever we came from a cursor; going back, when
    // the read found more than a page.
    let (has_prev, has_next) = if back {
        (more, true)
    } else {
        (from.is_some(), more)
    };
    let lang = c.req.lang;
    let base = query_string(&q, q.sort, q.descending);
    let link = |dir: &str, p: &Position| {
        let sep = if base.is_empty() { "" } else { "&" };
        c.url(&format!("/users?{base}{sep}{dir}={}", cursor(q.sort, p)))
    };
    let prev = match rows.first() {
        Some(r) if has_prev => link("before", &key_of(q.sort, r)),
        _ => String::new(),
    };
    let next = match rows.last() {
        Some(r) if has_next => link("after", &key_of(q.sort, r)),
        _ => String::new(),
    };
    let sorts: Vec<Value> = Sort::ALL
        .iter()
        .map(|s| {
            // A header sorts by its column; clicked again, it turns the order round.
            let desc = *s == q.sort && !q.descending;
            let qs = query_string(&q, *s, desc);
            json!({
                "key": s.as_str(),
                "href": c.url(&format!("/users?{qs}")),
                "current": *s == q.sort,
                "arrow": if *s == q.sort { if q.descending { "↓" } else { "↑" } } else { "" },
            })
        })
        .collect();
    let users: Vec<Value> = rows
        .iter()
        .map(|r| {
            let u = &r.user;
            json!({
                "href": c.url(&format!("/user?u={}", super::enc(&u.username))),
                "username": u.username,
                "email": u.email().unwrap_or(""),
                "status": u.status.as_str(),
                "status_label": status_label(lang, u.status.as_str()),
                "groups": u.groups,
                "mfa": r.mfa,
                "created": time(u.created_at),
                "last_sign_in": r.last_sign_in.map(time).unwrap_or_else(|| t(lang, "console_never").to_string()),
            })
        })
        .collect();
    let groups = match c.ops().groups().await {
        Ok(g) => g.into_iter().map(|(g, _)| g).collect::<Vec<_>>(),
        Err(e) => return c.failed(e),
    };
    let sep = if base.is_empty() { "" } else { "?" };
    let data = json!({
        "users": users,
        "q": q.filter.prefix,
        "status": q.filter.status.clone().unwrap_or_default(),
        "group": q.filter.group.clone().unwrap_or_default(),
        "mfa": match q.filter.mfa { Some(true) => "on", Some(false) => "off", None => "" },
        "provider": q.filter.provider.clone().unwrap_or_default(),
        "locked": q.locked,
        "statuses": STATUSES.iter().map(|s| json!({"value": s.as_str(), "label": status_label(lang, s.as_str())})).collect::<Vec<_>>(),
        "groups": groups,
        "providers": providers(c),
        "sorts": sorts,
        "prev": prev,
        "next": next,
        "export": c.url(&format!("/users.csv{sep}{base}")),
    });
    let page = Page {
        notice: c.flash(),
        ..Page::default()
    };
    c.render(
        StatusCode::OK,
        "admin_users.html",
        "console_users",
        page,
        data,
    )
}

/// One CSV cell: quoted, quotes doubled, and a cell a spreadsheet would take for a formula
/// (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) prefixed with `'`.
pub fn csv_cell(v: &str) -> String {
    let formula = v.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let mut out = String::with_capacity(v.len() + 3);
    out.push('"');
    if formula {
        out.push('\'');
    }
    out.push_str(&v.replace('"', "\"\""));
    out.push('"');
    out
}

/// `GET /admin/users.csv` with the list's filters and sort: every matching user (at most
/// [`EXPORT_MAX`]), read a thousand at a time.
pub async fn export(c: &Console<'_>) -> Response<Body> {
    let q = match parse(c).await {
        Ok(q) => q,
        Err(e) => return c.failed(e),
    };
    let store = &c.ready.store;
    let mut out = String::from("username,email,status,groups,created,last_sign_in,mfa,sub\r\n");
    let mut from: Option<Position> = None;
    let mut count = 0usize;
    loop {
        let rows = match store
            .list_page(&q.filter, q.sort, q.descending, from.as_ref(), false, 1000)
            .await
        {
            Ok(r) => r,
            Err(e) => return c.failed(e.into()),
        };
        for r in &rows {
            let u = &r.user;
            let cells = [
                u.username.clone(),
                u.email().unwrap_or("").to_string(),
                u.status.as_str().to_string(),
                u.groups.join(";"),
                audit::rfc3339_us(u.created_at.saturating_mul(1_000_000)),
                r.last_sign_in
                    .map(|t| audit::rfc3339_us(t.saturating_mul(1_000_000)))
                    .unwrap_or_default(),
                if r.mfa { "on" } else { "off" }.to_string(),
                u.sub.clone(),
            ];
            let line: Vec<String> = cells.iter().map(|v| csv_cell(v)).collect();
            out.push_str(&line.join(","));
            out.push_str("\r\n");
        }
        count += rows.len();
        if count > EXPORT_MAX {
            return c.failed(bad(format!(
                "more than {EXPORT_MAX} users match: narrow the filter to export them"
            )));
        }
        match rows.last() {
            Some(r) if rows.len() == 1000 => from = Some(key_of(q.sort, r)),
            _ => break,
        }
    }
    let _ = audit::record_full(
        store,
        &c.ops().actor,
        "export_users",
        &query_string(&q, q.sort, q.descending),
        "",
        &json!({"count": count}),
        &Outcome::Ok,
    )
    .await;
    let mut r = Response::new(crate::http::body::full(out));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"users.csv\""),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_defused_and_quotes_doubled() {
        assert_eq!(csv_cell("ann"), "\"ann\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        for lead in ["+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv_cell(lead).starts_with("\"'"), "{lead:?}");
        }
        assert_eq!(csv_cell("a,b\nc"), "\"a,b\nc\"");
    }

    #[test]
    fn cursors_round_trip_and_refuse_tampering() {
        let p = Position {
            key: "ann".into(),
            sub: "s-1".into(),
        };
        let c = cursor(Sort::Username, &p);
        assert_eq!(parse_cursor("after", &c, Sort::Username).unwrap(), Some(p));
        assert!(
            parse_cursor("after", &c, Sort::Created).is_err(),
            "another sort"
        );
        for junk in [
            "!!",
            "%27%20OR%201=1",
            "YQ",
            &URL_SAFE_NO_PAD.encode("created\u{1f}x\u{1f}s"),
        ] {
            assert!(
                parse_cursor("after", junk, Sort::Created).is_err(),
                "{junk}"
            );
        }
    }
}
