//! Audit entries as the reader reads them: the action and the failure reason are codes,
//! rendered here in the page's language (a row written before codes keeps its text), the
//! actor as `cli (root)` / `console (ann)` / the user's name, parameters as `name: value`.

use serde_json::{Value, json};

use super::{text, time};
use crate::pool::audit::{self, Entry};
use crate::pool::i18n::{Lang, t};

/// The label of an action code (`create_user` → "Created user"); an unknown one as it is.
pub fn action_label(lang: Lang, action: &str) -> String {
    text(lang, &format!("audit_{}", action.replace(['.', '-'], "_")))
        .map(str::to_string)
        .unwrap_or_else(|| action.to_string())
}

/// A failure reason: a known code in words (keeping the code), anything else as stored.
fn reason(lang: Lang, r: &str) -> String {
    match text(lang, &format!("audit_reason_{r}")) {
        Some(words) => format!("{r} ({words})"),
        None => r.to_string(),
    }
}

fn params(v: &Value) -> String {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                let shown = match v {
                    Value::String(s) => s.clone(),
                    Value::Array(a) => a
                        .iter()
                        .map(|x| {
                            x.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| x.to_string())
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                    other => other.to_string(),
                };
                format!("{k}: {shown}")
            })
            .collect::<Vec<_>>()
            .join("; "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One entry for a template (every text HTML-escaped by the template; control characters
/// shown as escapes too).
pub fn row(lang: Lang, e: &Entry) -> Value {
    let outcome = match e.outcome.as_str() {
        "ok" => t(lang, "console_outcome_ok").to_string(),
        "failed" => t(lang, "console_outcome_failed").to_string(),
        other => other.to_string(),
    };
    json!({
        "time": time(e.at_us.div_euclid(1_000_000)),
        "actor": audit::printable(&audit::describe_actor(&e.actor)),
        "action": action_label(lang, &e.action),
        "code": e.action,
        "target": audit::printable(&e.target),
        "outcome": e.outcome,
        "outcome_label": outcome,
        "reason": audit::printable(&reason(lang, &e.reason)),
        "params": audit::printable(&params(&e.params)),
    })
}
