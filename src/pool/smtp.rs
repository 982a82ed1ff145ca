//! A small SMTP client (RFC 5321) for one-time codes: EHLO, optional STARTTLS or implicit TLS
//! (rustls, webpki roots), AUTH PLAIN, one message. Every step has a timeout; replies are
//! checked by code. Neither the password nor the message body is ever logged.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::config::{SmtpConfig, SmtpTls};

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("SMTP connection to {0} failed: {1}")]
    Connect(String, std::io::Error),
    #[error("SMTP I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("SMTP server answered {code} to {step}")]
    Rejected { step: &'static str, code: u16 },
    #[error("SMTP timed out during {0}")]
    Timeout(&'static str),
    #[error("invalid address or server name for SMTP")]
    BadAddress,
}

const STEP_TIMEOUT: Duration = Duration::from_secs(15);

struct Conn {
    io: BufReader<Box<dyn Stream>>,
}

impl Conn {
    async fn reply(&mut self, step: &'static str) -> Result<u16, SmtpError> {
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(STEP_TIMEOUT, self.io.read_line(&mut line))
                .await
                .map_err(|_| SmtpError::Timeout(step))??;
            if n == 0 || line.len() < 3 {
                return Err(SmtpError::Rejected { step, code: 0 });
            }
            let code: u16 = line[..3].parse().unwrap_or(0);
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(code);
            }
            if code == 0 {
                return Ok(code);
            }
        }
    }

    async fn command(
        &mut self,
        line: &str,
        step: &'static str,
        ok: &[u16],
    ) -> Result<(), SmtpError> {
        let w = self.io.get_mut();
        tokio::time::timeout(STEP_TIMEOUT, async {
            w.write_all(line.as_bytes()).await?;
            w.write_all(b"\r\n").await?;
            w.flush().await
        })
        .await
        .map_err(|_| SmtpError::Timeout(step))??;
        let code = self.reply(step).await?;
        if ok.contains(&code) {
            Ok(())
        } else {
            Err(SmtpError::Rejected { step, code })
        }
    }
}

async fn tls(stream: Box<dyn Stream>, host: &str) -> Result<Box<dyn Stream>, SmtpError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| SmtpError::BadAddress)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let s = tokio::time::timeout(STEP_TIMEOUT, connector.connect(name, stream))
        .await
        .map_err(|_| SmtpError::Timeout("TLS"))??;
    Ok(Box::new(s))
}

/// RFC 2047 encoded-word for a non-ASCII header value.
fn header_text(s: &str) -> String {
    if s.is_ascii() {
        s.to_string()
    } else {
        format!("=?UTF-8?B?{}?=", STANDARD.encode(s))
    }
}

/// The message: headers, then the body base64-encoded (UTF-8 safe, no dot-stuffing needed).
pub fn message(from: &str, to: &str, subject: &str, body: &str) -> String {
    let encoded = STANDARD.encode(body.as_bytes());
    let mut lines = String::new();
    for chunk in encoded.as_bytes().chunks(76) {
        lines.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        lines.push_str("\r\n");
    }
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{lines}",
        header_text(subject)
    )
}

/// Sends one message.
pub async fn send(cfg: &SmtpConfig, to: &str, subject: &str, body: &str) -> Result<(), SmtpError> {
    if [to, &cfg.from]
        .iter()
        .any(|a| a.contains(['\r', '\n', '<', '>']))
    {
        return Err(SmtpError::BadAddress);
    }
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let tcp = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| SmtpError::Timeout("connect"))?
        .map_err(|e| SmtpError::Connect(addr.clone(), e))?;
    let mut stream: Box<dyn Stream> = Box::new(tcp);
    if cfg.tls == SmtpTls::Implicit {
        stream = tls(stream, &cfg.host).await?;
    }
    let mut c = Conn {
        io: BufReader::new(stream),
    };
    if c.reply("greeting").await? != 220 {
        return Err(SmtpError::Rejected {
            step: "greeting",
            code: 0,
        });
    }
    c.command("EHLO portcullis", "EHLO", &[250]).await?;
    if cfg.tls == SmtpTls::StartTls {
        c.command("STARTTLS", "STARTTLS", &[220]).await?;
        let inner = c.io.into_inner();
        c = Conn {
            io: BufReader::new(tls(inner, &cfg.host).await?),
        };
        c.command("EHLO portcullis", "EHLO", &[250]).await?;
    }
    if let (Some(user), Some(pass)) = (&cfg.username, &cfg.password) {
        let token = STANDARD.encode(format!("\0{user}\0{}", pass.expose()));
        c.command(&format!("AUTH PLAIN {token}"), "AUTH", &[235])
            .await?;
    }
    c.command(&format!("MAIL FROM:<{}>", cfg.from), "MAIL FROM", &[250])
        .await?;
    c.command(&format!("RCPT TO:<{to}>"), "RCPT TO", &[250, 251])
        .await?;
    c.command("DATA", "DATA", &[354]).await?;
    let msg = message(&cfg.from, to, subject, body);
    c.command(&format!("{msg}."), "message", &[250]).await?;
    let _ = c.command("QUIT", "QUIT", &[221]).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_encodes_non_ascii_safely() {
        let m = message(
            "a@example.com",
            "b@example.com",
            "確認コード",
            "コード: 123456\n.\n",
        );
        assert!(m.contains("Subject: =?UTF-8?B?"));
        assert!(
            !m.contains("\r\n.\r\n"),
            "a lone dot line would end DATA early"
        );
        assert!(m.ends_with("\r\n"));
    }
}
