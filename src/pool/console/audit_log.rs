//! The audit log in the console: newest first, optionally since a duration ago (`24h`), or
//! only the entries about one user (`?target=NAME`).

use http::{Response, StatusCode};
use serde_json::json;

use super::Console;
use crate::http::body::Body;
use crate::pool::admin::AdminError;
use crate::pool::audit;
use crate::pool::pages::Page;

/// Entries shown at most on one page.
const LIMIT: i64 = 500;

/// `GET /admin/audit?since=24h&target=NAME`.
pub async fn list(c: &Console<'_>) -> Response<Body> {
    let since_text = c.req.param("since").trim();
    let since = match since_text {
        "" => None,
        t => match audit::ago(t) {
            Some(at) => Some(at),
            None => {
                return c.failed(AdminError::Invalid(vec![format!(
                    "since: {t:?} is not a duration like 30m, 24h or 7d"
                )]));
            }
        },
    };
    let target = crate::pool::username::canonical(c.req.param("target"));
    // About one user: read by target (indexed), not picked out of the newest entries.
    let read = if target.is_empty() {
        audit::list(&c.ready.store, since, LIMIT).await
    } else {
        audit::naming(&c.ready.store, &target, LIMIT).await
    };
    let entries = match read {
        Ok(e) => e,
        Err(e) => return c.failed(e.into()),
    };
    let from_us = since.unwrap_or(0).saturating_mul(1_000_000);
    let rows: Vec<_> = entries
        .iter()
        .filter(|e| e.at_us >= from_us)
        .map(|e| super::history::row(c.req.lang, e))
        .collect();
    let page = Page::default();
    c.render(
        StatusCode::OK,
        "admin_audit.html",
        "console_audit",
        page,
        json!({"entries": rows, "since": since_text, "target": c.req.param("target")}),
    )
}
