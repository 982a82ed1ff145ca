//! Form messages as a person reads them: each problem belongs to a field, is shown next to it
//! (and linked from the list at the top of the page), is named by the field's label in the
//! page's language — never by the internal form key — and the list follows the form's order.
//! Server-side checks report every problem at once; the pages' forms carry `novalidate` so
//! that browser-only validation cannot hold them back one bubble at a time.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::pool::attributes::{AttributeError, AttributeProblem};
use crate::pool::i18n::{self, Lang, t};
use crate::pool::password::Rule;

/// One problem with one field.
#[derive(Debug, Clone, Serialize)]
pub struct FieldError {
    /// The form key (`email`, `new_password`, …): the input's `id`, never shown.
    pub field: String,
    /// The field's label, as the page shows it.
    pub label: String,
    pub message: String,
}

/// The problems of a submitted form, in the form's order once [`FormErrors::in_order`] ran.
#[derive(Debug, Clone, Default)]
pub struct FormErrors {
    items: Vec<FieldError>,
}

/// A line of the list at the top of a page: a field's problem (linked to the field) or a
/// message about the whole form.
#[derive(Debug, Serialize)]
pub struct SummaryLine {
    pub field: String,
    pub label: String,
    pub message: String,
}

impl FormErrors {
    pub fn add(&mut self, field: &str, label: impl Into<String>, message: impl Into<String>) {
        self.items.push(FieldError {
            field: field.to_string(),
            label: label.into(),
            message: message.into(),
        });
    }

    /// A problem of `field`, labelled with the page's label for it.
    pub fn push(&mut self, lang: Lang, field: &str, message: impl Into<String>) {
        self.add(field, label(lang, field), message);
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn items(&self) -> &[FieldError] {
        &self.items
    }

    /// Sorts the problems into the order of the form's fields (`order`; fields not named keep
    /// their place after the named ones).
    pub fn in_order(mut self, order: &[&str]) -> FormErrors {
        let pos = |f: &str| order.iter().position(|o| *o == f).unwrap_or(order.len());
        self.items.sort_by_key(|e| pos(&e.field));
        self
    }

    /// Field → its messages (joined), for the message under each input.
    pub fn by_field(&self) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = BTreeMap::new();
        for e in &self.items {
            m.entry(e.field.clone())
                .and_modify(|s| {
                    s.push(' ');
                    s.push_str(&e.message);
                })
                .or_insert_with(|| e.message.clone());
        }
        m
    }

    /// The list at the top: messages about the whole form first, then each field's.
    pub fn summary(&self, general: &[String]) -> Vec<SummaryLine> {
        general
            .iter()
            .map(|m| SummaryLine {
                field: String::new(),
                label: String::new(),
                message: m.clone(),
            })
            .chain(self.items.iter().map(|e| SummaryLine {
                field: e.field.clone(),
                label: e.label.clone(),
                message: e.message.clone(),
            }))
            .collect()
    }
}

/// The label the pages show for a form key.
pub fn label(lang: Lang, field: &str) -> String {
    match field {
        "username" | "password" | "new_password" | "code" | "current_password" => {
            t(lang, field).to_string()
        }
        _ => i18n::attribute_label(lang, field),
    }
}

/// A region's name for "… for a number in {region}" (its code when not listed).
fn region_name(lang: Lang, code: &str) -> String {
    i18n::all(lang)
        .get(format!("fl_region_{code}").as_str())
        .map_or_else(|| code.to_string(), |s| s.to_string())
}

/// An attribute's problem, without the attribute's name (the field shows it).
pub fn attribute_message(lang: Lang, e: &AttributeError) -> String {
    let v = |key: &str, value: &str| i18n::fill(t(lang, key), &[("value", value)]);
    match &e.problem {
        AttributeProblem::Missing => t(lang, "fl_required").to_string(),
        AttributeProblem::NotEmail { value } => v("fl_email", value),
        AttributeProblem::NotPhone {
            value,
            international,
            national,
            region,
        } => i18n::fill(
            t(lang, "fl_phone"),
            &[
                ("value", value),
                ("international", international),
                ("national", national),
                ("region", &region_name(lang, region)),
            ],
        ),
        AttributeProblem::NotDate { value } => v("fl_date", value),
        AttributeProblem::NotUrl { value } => v("fl_url", value),
        AttributeProblem::TooLong => t(lang, "fl_long").to_string(),
        AttributeProblem::Unknown => t(lang, "fl_unknown").to_string(),
    }
}

/// A password's unmet rules, without the field's name.
pub fn password_message(lang: Lang, rules: &[Rule]) -> String {
    i18n::fill(
        t(lang, "fl_password"),
        &[("rules", &i18n::rule_list(lang, rules))],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_order_labels_and_summary() {
        let mut e = FormErrors::default();
        e.push(Lang::En, "password", "weak");
        e.push(Lang::En, "phone_number", "bad");
        e.push(Lang::En, "username", "taken");
        let e = e.in_order(&["username", "email", "phone_number", "password"]);
        let fields: Vec<&str> = e.items().iter().map(|i| i.field.as_str()).collect();
        assert_eq!(fields, ["username", "phone_number", "password"]);
        assert_eq!(e.items()[1].label, "Phone number");
        let s = e.summary(&["general".into()]);
        assert_eq!(s[0].message, "general");
        assert_eq!(s[1].label, "User name");
        assert_eq!(e.by_field()["password"], "weak");
    }

    #[test]
    fn password_message_has_no_key() {
        let en = password_message(Lang::En, &[Rule::Uppercase, Rule::Digit]);
        assert_eq!(
            en,
            "Does not meet these rules: an uppercase letter; a digit."
        );
        let ja = password_message(Lang::Ja, &[Rule::Digit]);
        assert!(!ja.contains("password"), "{ja}");
        assert!(ja.contains("数字を含む"), "{ja}");
    }

    #[test]
    fn region_is_named() {
        assert_eq!(region_name(Lang::Ja, "JP"), "日本");
        assert_eq!(region_name(Lang::En, "JP"), "Japan");
        assert_eq!(region_name(Lang::En, "ZZ"), "ZZ");
    }
}
