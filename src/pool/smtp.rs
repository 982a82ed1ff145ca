//! Email through `lettre`: one SMTP connection per message, with STARTTLS, implicit TLS or
//! none (rustls, webpki roots), optional authentication, and a timeout on every step. The
//! message is `multipart/alternative` (plain text and HTML). Neither the password nor the
//! message body is ever logged.
//!
//! The sender address (`pool.smtp.from`) is parsed by [`sender`] — the same function at
//! `portcullis check` and when sending — so a `from` that check accepts is one that sends.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::{SmtpConfig, SmtpTls};

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("SMTP: {0}")]
    Transport(#[from] lettre::transport::smtp::Error),
    #[error("cannot build the message: {0}")]
    Message(#[from] lettre::error::Error),
    #[error("{0}")]
    BadAddress(String),
}

/// How long each SMTP step (connect, every reply) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// One email: subject, plain text, and the same content in HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Parses `pool.smtp.from`: `no-reply@example.com` or `Example <no-reply@example.com>`.
/// The error names the fix.
pub fn sender(from: &str) -> Result<Mailbox, String> {
    if from.chars().any(char::is_control) {
        return Err(format!(
            "{from:?} contains a control character; write an address like \
             no-reply@example.com or \"Example <no-reply@example.com>\""
        ));
    }
    from.parse::<Mailbox>().map_err(|e| {
        format!(
            "{from:?} is not a sender address that can be sent from ({e}); write an address \
             like no-reply@example.com or \"Example <no-reply@example.com>\" (a display name \
             with a comma or other special characters must be in double quotes)"
        )
    })
}

/// A recipient: a bare address (a user's stored email). Control characters, angle brackets
/// and anything else that is not one address are refused.
fn recipient(to: &str) -> Result<Mailbox, SmtpError> {
    if to
        .chars()
        .any(|c| c.is_control() || matches!(c, '<' | '>' | ','))
    {
        return Err(SmtpError::BadAddress(
            "the recipient is not a single email address".into(),
        ));
    }
    to.parse::<lettre::Address>()
        .map(|a| Mailbox::new(None, a))
        .map_err(|_| SmtpError::BadAddress("the recipient is not an email address".into()))
}

/// The message as sent (headers encoded by lettre: a subject or name with CR/LF or non-ASCII
/// text is encoded, never copied raw into the header block).
pub fn message(from: &Mailbox, to: &str, mail: &Mail) -> Result<Message, SmtpError> {
    Ok(Message::builder()
        .from(from.clone())
        .to(recipient(to)?)
        .subject(mail.subject.as_str())
        .multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        ))?)
}

fn transport(cfg: &SmtpConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, SmtpError> {
    let tls = match cfg.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::StartTls => Tls::Required(TlsParameters::new(cfg.host.clone())?),
        SmtpTls::Implicit => Tls::Wrapper(TlsParameters::new(cfg.host.clone())?),
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.as_str())
        .port(cfg.port)
        .tls(tls)
        .hello_name(ClientId::Domain("portcullis".into()))
        .timeout(Some(STEP_TIMEOUT));
    if let (Some(user), Some(pass)) = (&cfg.username, &cfg.password) {
        b = b.credentials(Credentials::new(user.clone(), pass.expose().to_string()));
    }
    Ok(b.build())
}

/// Sends one message.
pub async fn send(cfg: &SmtpConfig, to: &str, mail: &Mail) -> Result<(), SmtpError> {
    let from = sender(&cfg.from).map_err(SmtpError::BadAddress)?;
    let msg = message(&from, to, mail)?;
    transport(cfg)?.send(msg).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(subject: &str) -> Mail {
        Mail {
            subject: subject.into(),
            text: "コード: 123456\n.\n".into(),
            html: "<p>コード: 123456</p>".into(),
        }
    }

    #[test]
    fn a_display_name_sender_parses_and_a_broken_one_names_the_fix() {
        let m = sender("Example Shop <no-reply@example.com>").unwrap();
        assert_eq!(m.email.to_string(), "no-reply@example.com");
        assert_eq!(m.name.as_deref(), Some("Example Shop"));
        assert!(sender("no-reply@example.com").is_ok());
        for bad in [
            "Example Shop no-reply@example.com",
            "Shop, Inc. <no-reply@example.com>",
            "no-reply",
            "Ex <a@b.com>\r\nBcc: x@evil.test",
        ] {
            let e = sender(bad).unwrap_err();
            assert!(e.contains("no-reply@example.com"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn header_injection_in_subject_or_recipient_stays_out_of_the_headers() {
        let from = sender("Shop <no-reply@example.com>").unwrap();
        let m = message(&from, "b@example.com", &mail("Hi\r\nBcc: x@evil.test")).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(!raw.contains("\r\nBcc:"), "{raw}");
        assert!(raw.contains("multipart/alternative"));
        for to in [
            "b@example.com\r\nBcc: x@evil.test",
            "a@example.com, x@evil.test",
            "Eve <x@evil.test>",
        ] {
            assert!(message(&from, to, &mail("s")).is_err(), "{to:?}");
        }
    }

    #[test]
    fn non_ascii_subject_is_encoded() {
        let from = sender("no-reply@example.com").unwrap();
        let m = message(&from, "b@example.com", &mail("確認コード")).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("Subject: =?utf-8?"), "{raw}");
    }
}
