//! The pool's emails and SMS texts: one template per purpose and language, overridable by a
//! file of the same name in `pool.ui.templates_dir`, checked when the configuration loads.
//!
//! - `mail_<purpose>.<lang>.txt`: the plain-text email; its first line is `Subject: …`, then a
//!   blank line, then the body.
//! - `mail_layout.html`: the HTML part of every email, built from the text's paragraphs (the
//!   paragraph that is exactly the link becomes a button).
//! - `sms_<purpose>.<lang>.txt`: the short text message.
//!
//! Purposes: `signup`, `invitation`, `reset`, `email_change`, `new_device`, `mfa_changed`;
//! languages `en` and `ja`. Templates are minijinja; an unknown variable is an error at load,
//! and the templates that carry a code must show `{{ code }}` and `{{ link }}`.

use std::path::Path;

use minijinja::{Environment, UndefinedBehavior};

use super::i18n::Lang;
use super::smtp::Mail;

/// Why an email is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Signup,
    Invitation,
    Reset,
    EmailChange,
    NewDevice,
    MfaChanged,
}

impl Purpose {
    pub const ALL: [Purpose; 6] = [
        Purpose::Signup,
        Purpose::Invitation,
        Purpose::Reset,
        Purpose::EmailChange,
        Purpose::NewDevice,
        Purpose::MfaChanged,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Purpose::Signup => "signup",
            Purpose::Invitation => "invitation",
            Purpose::Reset => "reset",
            Purpose::EmailChange => "email_change",
            Purpose::NewDevice => "new_device",
            Purpose::MfaChanged => "mfa_changed",
        }
    }

    /// The variables its templates receive (besides `title`, `username` and `lang`).
    pub fn variables(self) -> &'static [&'static str] {
        match self {
            Purpose::Signup | Purpose::Invitation | Purpose::Reset => &["code", "link", "expiry"],
            Purpose::EmailChange => &["code", "link", "expiry", "email"],
            Purpose::NewDevice => &["device", "address", "time", "link"],
            Purpose::MfaChanged => &["change", "time", "link"],
        }
    }

    fn carries_code(self) -> bool {
        self.variables().contains(&"code")
    }

    /// The words of the HTML button.
    fn link_label(self, lang: Lang) -> &'static str {
        match (self, lang) {
            (Purpose::Signup, Lang::En) => "Confirm my account",
            (Purpose::Signup, Lang::Ja) => "アカウントを確認する",
            (Purpose::Invitation, Lang::En) => "Choose my password",
            (Purpose::Invitation, Lang::Ja) => "パスワードを設定する",
            (Purpose::Reset, Lang::En) => "Reset my password",
            (Purpose::Reset, Lang::Ja) => "パスワードを再設定する",
            (Purpose::EmailChange, Lang::En) => "Confirm this address",
            (Purpose::EmailChange, Lang::Ja) => "このアドレスを確認する",
            (Purpose::NewDevice | Purpose::MfaChanged, Lang::En) => "Open my account",
            (Purpose::NewDevice | Purpose::MfaChanged, Lang::Ja) => "アカウントを開く",
        }
    }
}

macro_rules! builtin {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("templates/", $name)))),*]
    };
}

/// The built-in templates, by file name.
pub const TEMPLATES: &[(&str, &str)] = builtin![
    "mail_layout.html",
    "mail_signup.en.txt",
    "mail_signup.ja.txt",
    "mail_invitation.en.txt",
    "mail_invitation.ja.txt",
    "mail_reset.en.txt",
    "mail_reset.ja.txt",
    "mail_email_change.en.txt",
    "mail_email_change.ja.txt",
    "mail_new_device.en.txt",
    "mail_new_device.ja.txt",
    "mail_mfa_changed.en.txt",
    "mail_mfa_changed.ja.txt",
    "sms_signup.en.txt",
    "sms_signup.ja.txt",
    "sms_invitation.en.txt",
    "sms_invitation.ja.txt",
    "sms_reset.en.txt",
    "sms_reset.ja.txt",
    "sms_email_change.en.txt",
    "sms_email_change.ja.txt",
    "sms_new_device.en.txt",
    "sms_new_device.ja.txt",
    "sms_mfa_changed.en.txt",
    "sms_mfa_changed.ja.txt",
];

/// The loaded templates (built-in, or overridden from `templates_dir`).
#[derive(Debug)]
pub struct Mailer {
    env: Environment<'static>,
}

impl Default for Mailer {
    fn default() -> Self {
        // The built-ins are checked by a unit test; should they ever fail to load, sending
        // fails with a logged error rather than the process stopping.
        Mailer::load(None).unwrap_or_else(|_| Mailer {
            env: Environment::new(),
        })
    }
}

/// Replaces control characters (CR, LF, …) in a value by spaces: a user name cannot add
/// lines to a message or its subject.
fn one_line(v: &str) -> String {
    v.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

impl Mailer {
    /// Loads the templates, each overridden by a file of the same name in `dir`, and renders
    /// every one with sample values: an unknown variable, a missing `Subject:` line or a
    /// template with a code that does not show it is an error naming the file.
    pub fn load(dir: Option<&Path>) -> Result<Mailer, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        for (name, src) in TEMPLATES {
            let path = dir.map(|d| d.join(name)).filter(|p| p.is_file());
            let source = match &path {
                Some(p) => {
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?
                }
                None => src.to_string(),
            };
            env.add_template_owned(name.to_string(), source)
                .map_err(|e| format!("{name}: {e}"))?;
        }
        let m = Mailer { env };
        for purpose in Purpose::ALL {
            for lang in [Lang::En, Lang::Ja] {
                m.check(purpose, lang)?;
            }
        }
        Ok(m)
    }

    fn check(&self, purpose: Purpose, lang: Lang) -> Result<(), String> {
        let sample: Vec<(&str, &str)> = purpose
            .variables()
            .iter()
            .map(|v| {
                (
                    *v,
                    match *v {
                        "code" => "918273",
                        "link" => "https://login.example.com/oauth2/pool/x?code=918273",
                        _ => "sample",
                    },
                )
            })
            .collect();
        let mail = self.email(purpose, lang, "Example", "alice", &sample)?;
        let sms = self.sms(purpose, lang, "Example", "alice", &sample)?;
        let text_name = format!("mail_{}.{}.txt", purpose.name(), lang.code());
        if purpose.carries_code() {
            if !mail.text.contains("918273") || !mail.text.contains("/oauth2/pool/x") {
                return Err(format!(
                    "{text_name}: must show {{{{ code }}}} and {{{{ link }}}} (the person \
                     needs them to finish)"
                ));
            }
            if !sms.contains("918273") {
                return Err(format!(
                    "sms_{}.{}.txt: must show {{{{ code }}}}",
                    purpose.name(),
                    lang.code()
                ));
            }
        }
        Ok(())
    }

    /// Renders one template; `vars` names what it may use, for the error message (values are
    /// never part of an error: they hold codes).
    fn render(&self, name: &str, vars: &str, ctx: minijinja::Value) -> Result<String, String> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| {
                let mut msg = format!("{name}: {e}");
                if e.kind() == minijinja::ErrorKind::UndefinedError {
                    msg.push_str(&format!(" (the variables it can use: {vars})"));
                }
                msg
            })
    }

    /// Renders a message template with its context (the keys name what it may use).
    fn render_with(
        &self,
        name: &str,
        ctx: &std::collections::BTreeMap<String, String>,
    ) -> Result<String, String> {
        let keys = ctx
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        self.render(name, &keys, minijinja::Value::from_serialize(ctx))
    }

    fn context(
        purpose: Purpose,
        lang: Lang,
        title: &str,
        username: &str,
        vars: &[(&str, &str)],
    ) -> std::collections::BTreeMap<String, String> {
        let mut ctx: std::collections::BTreeMap<String, String> = vars
            .iter()
            .filter(|(k, _)| purpose.variables().contains(k))
            .map(|(k, v)| (k.to_string(), one_line(v)))
            .collect();
        ctx.insert("title".into(), one_line(title));
        ctx.insert("username".into(), one_line(username));
        ctx.insert("lang".into(), lang.code().into());
        ctx
    }

    /// The email of a purpose in a language: subject, plain text and HTML.
    pub fn email(
        &self,
        purpose: Purpose,
        lang: Lang,
        title: &str,
        username: &str,
        vars: &[(&str, &str)],
    ) -> Result<Mail, String> {
        let name = format!("mail_{}.{}.txt", purpose.name(), lang.code());
        let ctx = Self::context(purpose, lang, title, username, vars);
        let rendered = self.render_with(&name, &ctx)?;
        let (first, body) = rendered.split_once('\n').unwrap_or((&rendered, ""));
        let subject = first
            .strip_prefix("Subject:")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{name}: the first line must be \"Subject: …\""))?
            .to_string();
        let text = body.trim_start_matches(['\r', '\n']).to_string();
        let paragraphs: Vec<String> = text
            .split("\n\n")
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        let html = self.render(
            "mail_layout.html",
            "lang, title, subject, paragraphs, link, link_label",
            minijinja::context! {
                lang => lang.code(),
                title => ctx.get("title"),
                subject => &subject,
                paragraphs => paragraphs,
                link => ctx.get("link").cloned().unwrap_or_default(),
                link_label => purpose.link_label(lang),
            },
        )?;
        Ok(Mail {
            subject,
            text,
            html,
        })
    }

    /// The text message of a purpose in a language.
    pub fn sms(
        &self,
        purpose: Purpose,
        lang: Lang,
        title: &str,
        username: &str,
        vars: &[(&str, &str)],
    ) -> Result<String, String> {
        let name = format!("sms_{}.{}.txt", purpose.name(), lang.code());
        let ctx = Self::context(purpose, lang, title, username, vars);
        Ok(self.render_with(&name, &ctx)?.trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_template_loads_and_renders() {
        let m = Mailer::load(None).unwrap();
        let vars = [
            ("code", "123456"),
            (
                "link",
                "https://id.example.com/oauth2/pool/confirm?code=123456",
            ),
            ("expiry", "7 days"),
        ];
        let mail = m
            .email(Purpose::Invitation, Lang::En, "Acme", "bob", &vars)
            .unwrap();
        assert_eq!(mail.subject, "You are invited to Acme");
        assert!(mail.text.contains("valid for 7 days") && mail.text.contains("123456"));
        // minijinja escapes `/` too (`&#x2f;`), which every HTML reader decodes.
        let href = "https://id.example.com/oauth2/pool/confirm?code=123456".replace('/', "&#x2f;");
        assert!(
            mail.html.contains(&format!("href=\"{href}\"")),
            "{}",
            mail.html
        );
        let ja = m
            .email(Purpose::Invitation, Lang::Ja, "Acme", "bob", &vars)
            .unwrap();
        assert!(ja.subject.contains("招待"));
        assert!(
            m.sms(Purpose::Signup, Lang::En, "Acme", "bob", &vars)
                .unwrap()
                .len()
                < 160
        );
    }

    #[test]
    fn control_characters_in_values_do_not_reach_the_subject_or_add_lines() {
        let m = Mailer::load(None).unwrap();
        let mail = m
            .email(
                Purpose::Signup,
                Lang::En,
                "Acme\r\nBcc: x@evil.test",
                "eve\nSubject: hi",
                &[("code", "1"), ("link", "l"), ("expiry", "1 day")],
            )
            .unwrap();
        assert!(!mail.subject.contains('\n') && !mail.subject.contains('\r'));
        assert!(!mail.text.contains("\nSubject: hi"));
        assert!(!mail.html.contains("<script"));
    }

    #[test]
    fn an_override_with_an_unknown_variable_or_no_code_is_refused_at_load() {
        let dir = std::env::temp_dir().join(format!("portcullis-mail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("mail_invitation.en.txt");
        std::fs::write(
            &f,
            "Subject: Hi {{ title }}\n\nYour code: {{ kode }} {{ link }}\n",
        )
        .unwrap();
        let e = Mailer::load(Some(&dir)).unwrap_err();
        assert!(
            e.contains("mail_invitation.en.txt") && e.contains("code"),
            "{e}"
        );
        std::fs::write(&f, "Subject: Hi {{ title }}\n\nWelcome!\n").unwrap();
        let e = Mailer::load(Some(&dir)).unwrap_err();
        assert!(e.contains("must show"), "{e}");
        std::fs::write(&f, "Hi {{ title }}\n\n{{ code }} {{ link }}\n").unwrap();
        let e = Mailer::load(Some(&dir)).unwrap_err();
        assert!(e.contains("Subject:"), "{e}");
        std::fs::write(
            &f,
            "Subject: Welcome to {{ title }}\n\n{{ code }}\n\n{{ link }}\n",
        )
        .unwrap();
        let m = Mailer::load(Some(&dir)).unwrap();
        let mail = m
            .email(
                Purpose::Invitation,
                Lang::En,
                "Acme",
                "bob",
                &[("code", "42"), ("link", "L")],
            )
            .unwrap();
        assert_eq!(mail.subject, "Welcome to Acme");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
