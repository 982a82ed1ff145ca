//! The confirmation step of a destructive console action: the action's POST without
//! `confirm=yes` answers this page (what is about to happen, a button that sends the same form
//! again with `confirm=yes`, and a way back). It needs no script, and a reload of it does
//! nothing.

use http::{Response, StatusCode};
use serde_json::json;

use super::Console;
use crate::http::body::Body;
use crate::pool::i18n::{self, t};
use crate::pool::pages::Page;

/// Asks before `action` (a path under `/admin`): `question` (a text key, filled with `params`),
/// the form's `fields` sent again, and `back` (a path under `/admin`) to cancel.
pub fn ask(
    c: &Console<'_>,
    action: &str,
    question: &str,
    params: &[(&str, &str)],
    fields: &[(&str, &str)],
    back: &str,
) -> Response<Body> {
    let text = i18n::fill(t(c.req.lang, question), params);
    let data = json!({
        "question": text,
        "action": c.url(action),
        "fields": fields.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
        "back": c.url(back),
    });
    c.render(
        StatusCode::OK,
        "admin_confirm.html",
        "console_confirm_title",
        Page::default(),
        data,
    )
}
