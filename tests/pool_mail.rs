//! Emails people read, through the real binary and a real SMTP conversation with an SMTP sink
//! on loopback: the invitation carries the site name, a link built on the public URL (never on
//! the request's `Host`) that opens the page with the code filled in (opening it consumes
//! nothing), the expiry in words, plain text and HTML; the invitee's password is "set".
//! `portcullis check` refuses a `from` that cannot send and passkeys on an IP address; the
//! pool's pages switch language and ignore junk in the language cookie.

mod pool_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool_support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One message the sink received.
#[derive(Clone, Debug)]
struct Received {
    mail_from: String,
    rcpt_to: Vec<String>,
    data: String,
}

/// A minimal SMTP server (RFC 5321 happy path, AUTH PLAIN accepted) on a free loopback port.
async fn smtp_sink() -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let boxed = inbox.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let inbox = boxed.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                let _ = w.write_all(b"220 sink ESMTP\r\n").await;
                let mut msg = Received {
                    mail_from: String::new(),
                    rcpt_to: Vec::new(),
                    data: String::new(),
                };
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_string();
                    let upper = cmd.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-sink\r\n250 AUTH PLAIN LOGIN\r\n"
                    } else if upper.starts_with("AUTH") {
                        b"235 ok\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        msg.mail_from = cmd[10..].trim().to_string();
                        b"250 ok\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        msg.rcpt_to.push(cmd[8..].trim().to_string());
                        b"250 ok\r\n"
                    } else if upper == "DATA" {
                        let _ = w.write_all(b"354 go\r\n").await;
                        loop {
                            line.clear();
                            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" {
                                break;
                            }
                            msg.data.push_str(&line);
                        }
                        inbox.lock().unwrap().push(msg.clone());
                        b"250 queued\r\n"
                    } else if upper == "QUIT" {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = w.write_all(reply).await;
                }
            });
        }
    });
    (port, inbox)
}

/// Waits for the `n`th message (sending happens in the background).
async fn nth_mail(inbox: &Arc<Mutex<Vec<Received>>>, n: usize) -> Received {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(m) = inbox.lock().unwrap().get(n - 1) {
            return m.clone();
        }
        assert!(Instant::now() < deadline, "no mail #{n} arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Decodes quoted-printable (soft line breaks and `=XX`), as the text part may be sent.
fn unqp(s: &str) -> String {
    let s = s.replace("=\r\n", "");
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'='
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first `http…` link in the decoded text.
fn link_in(text: &str) -> String {
    let i = text.find("http").expect("a link in the mail");
    text[i..]
        .split(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .next()
        .unwrap()
        .to_string()
}

fn smtp_pool(port: u16, extra: &str) -> String {
    format!(
        "delivery = \"smtp\"\nadmin_console = true\ninvitation_ttl = \"3d\"\n{extra}\n\
         ui = {{ title = \"Example Shop\" }}\n\
         [pool.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         username = \"mailer\"\npassword = \"smtp-pass-123\"\n\
         from = \"Example Shop <no-reply@example.com>\"\n"
    )
}

async fn an_invitation_by_email_sets_a_password(backend: Backend) {
    let (port, inbox) = smtp_sink().await;
    let s = Server::start(backend, &smtp_pool(port, "")).await;
    let (ok, out, err) = s.cli(&[
        "users",
        "add",
        "root",
        "--password",
        PASSWORD,
        "--permanent",
        "--attribute",
        "email=root@example.com",
        "--group",
        "admins",
    ]);
    assert!(ok, "{out}{err}");
    let c = browser();
    let r = sign_in(&c, &s, &s.url("/oauth2/pool/login"), "root", PASSWORD).await;
    assert_eq!(r.status(), 200);
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/admin/users/new")).await;
    let r = submit_form(
        &c,
        &s.base,
        &html,
        "/users/new",
        &[
            ("username", "erin"),
            ("email", "erin@example.com"),
            ("mode", "invitation"),
        ],
    )
    .await;
    // Post/Redirect/Get: the console sends the browser on to the new user's page.
    assert_eq!(r.status(), 302);

    let m = nth_mail(&inbox, 1).await;
    assert_eq!(
        m.mail_from, "<no-reply@example.com>",
        "the envelope sender is the address"
    );
    assert_eq!(m.rcpt_to, ["<erin@example.com>"]);
    let headers = &m.data[..m.data.find("\r\n\r\n").unwrap()];
    assert!(
        headers.contains("Example Shop") && headers.contains("<no-reply@example.com>"),
        "{headers}"
    );
    assert!(
        headers.contains("Subject: You are invited to Example Shop"),
        "{headers}"
    );
    assert!(headers.contains("multipart/alternative"), "{headers}");
    assert!(m.data.contains("text/plain") && m.data.contains("text/html"));
    let text = unqp(&m.data);
    assert!(text.contains("valid for 3 days"), "{text}");
    let link = link_in(&text);
    let code = link.split("code=").nth(1).unwrap()[..6].to_string();
    assert!(
        text.contains(&format!("this code on the page: {code}")),
        "{text}"
    );
    assert_eq!(
        link,
        s.url(&format!(
            "/oauth2/pool/reset-password?username=erin&code={code}&invited=1"
        )),
        "the link is on the public URL"
    );
    let href = link.replace('&', "&amp;").replace('/', "&#x2f;");
    assert!(
        text.contains(&format!("href=\"{href}\"")),
        "the HTML part's button: {text}"
    );

    // Before choosing a password the invitee hears of the invitation email, with the words
    // anyone gets for a wrong password (an invitee knows no password, so nothing more).
    let invitee = browser();
    let answer = |name: &'static str| {
        let (invitee, s) = (&invitee, &s);
        async move {
            let r = sign_in(
                invitee,
                s,
                &s.url("/oauth2/pool/login"),
                name,
                "Guessing-42",
            )
            .await;
            (r.status(), visible_text(&r.text().await.unwrap()))
        }
    };
    let (status, invited) = answer("erin").await;
    assert_eq!(status, 401);
    assert!(
        invited.contains("Incorrect user name or password.")
            && invited.contains("link in your invitation email"),
        "{invited}"
    );
    assert_eq!(
        answer("nobody-here").await,
        (status, invited),
        "no account oracle"
    );

    // Opening the link (as a mail scanner would, twice) fills the code in and consumes nothing.
    for _ in 0..2 {
        let (status, page) = get_page(&invitee, &link).await;
        assert_eq!(status, 200);
        assert!(page.contains(&format!("value=\"{code}\"")), "{page}");
        assert!(
            page.contains("Choose your password") && !page.contains("Reset your password"),
            "{page}"
        );
    }
    let (_, page) = get_page(&invitee, &link).await;
    let r = submit_form(
        &invitee,
        &s.base,
        &page,
        "/reset-password",
        &[
            ("username", "erin"),
            ("code", &code),
            ("new_password", "Erin-Chose-42"),
        ],
    )
    .await;
    assert_eq!(r.status(), 302);
    let (_, page) = get_page(&invitee, &absolute(&s.base, &location(&r))).await;
    assert!(page.contains("Your password has been set."), "{page}");
    let r = sign_in(
        &invitee,
        &s,
        &s.url("/oauth2/pool/login"),
        "erin",
        "Erin-Chose-42",
    )
    .await;
    assert_eq!(
        r.status(),
        200,
        "the invitee signs in with the password they set"
    );

    // A forgotten password asked through another Host: the link still names the public URL.
    let (status, page) = get_page(&invitee, &s.url("/oauth2/pool/forgot-password")).await;
    assert_eq!(status, 200);
    let (action, csrf) = form(&page, &s.base, "/forgot-password");
    let r = invitee
        .post(&action)
        .header("host", "evil.example")
        .form(&[("csrf_token", csrf.as_str()), ("username", "erin")])
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_redirection() || r.status() == 200,
        "{}",
        r.status()
    );
    let m = nth_mail(&inbox, 2).await;
    let text = unqp(&m.data);
    assert!(
        text.contains("Reset your password at Example Shop"),
        "{text}"
    );
    assert!(
        link_in(&text).starts_with(&s.url("/oauth2/pool/reset-password?")),
        "{text}"
    );
    assert!(!text.contains("evil.example"), "{text}");
}
on_both!(invitation_by_email, an_invitation_by_email_sets_a_password);

/// `portcullis check` on a configuration: (success, stderr + stdout).
fn check(pool: &str, public_url: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!(
        "pc-pool-mailcheck-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("portcullis.toml");
    std::fs::write(
        &cfg,
        format!(
            "public_url = \"{public_url}\"\n[server]\nlisten = [\"127.0.0.1:8080\"]\n\
             [session]\nsecrets = [\"test-secret-test-secret-test-secret-0\"]\n\
             [[routes]]\npath = \"/\"\nupstream = \"http://127.0.0.1:3000\"\nprovider = \"pool\"\n\
             [pool]\ndatabase = \"sqlite://{}\"\n{pool}\n",
            dir.join("pool.db").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ),
    )
}

#[test]
fn check_refuses_a_from_that_cannot_send_and_passkeys_on_an_ip_address() {
    let smtp = |from: &str| {
        format!("delivery = \"smtp\"\n[pool.smtp]\nhost = \"mail.example.com\"\nfrom = {from:?}\n")
    };
    let (ok, out) = check(
        &smtp("Example Shop <no-reply@example.com>"),
        "https://app.example.com",
    );
    assert!(ok, "a display name is fine: {out}");
    for bad in [
        "Example Shop no-reply@example.com",
        "Shop, Inc. <no-reply@example.com>",
    ] {
        let (ok, out) = check(&smtp(bad), "https://app.example.com");
        assert!(!ok, "{bad}: {out}");
        assert!(
            out.contains("pool.smtp.from") && out.contains("\"Example <no-reply@example.com>\""),
            "{bad}: the message names the fix: {out}"
        );
    }

    let (ok, out) = check("passkeys = true", "http://127.0.0.1:8080");
    assert!(!ok, "{out}");
    assert!(
        out.contains("pool.passkeys") && out.contains("http://localhost:8080"),
        "the message names the fix: {out}"
    );
    let (ok, out) = check("passkeys = true", "http://[::1]:8080");
    assert!(!ok, "{out}");
    let (ok, out) = check("passkeys = true", "http://localhost:8080");
    assert!(ok, "{out}");
    let (ok, out) = check("passkeys = false", "http://127.0.0.1:8080");
    assert!(ok, "{out}");

    let (ok, out) = check("invitation_ttl = \"soon\"", "http://localhost:8080");
    assert!(!ok && out.contains("pool.invitation_ttl"), "{out}");
}

#[test]
fn check_refuses_a_mail_template_with_an_unknown_variable() {
    let dir = std::env::temp_dir().join(format!("pc-pool-mailtpl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("mail_reset.ja.txt"),
        "Subject: {{ title }}\n\n{{ code }} {{ link }} {{ expires_in }}\n",
    )
    .unwrap();
    let (ok, out) = check(
        &format!("ui = {{ templates_dir = \"{}\" }}", dir.display()),
        "https://app.example.com",
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!ok, "{out}");
    assert!(
        out.contains("pool.ui.templates_dir")
            && out.contains("mail_reset.ja.txt")
            && out.contains("expiry"),
        "the message names the file and the variables it may use: {out}"
    );
}

async fn the_language_switch(backend: Backend) {
    let s = Server::start(backend, "").await;
    let c = browser_lang("en");
    let r = c
        .get(s.url("/oauth2/pool/login?lang=ja"))
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("portcullis_lang="))
        .map(str::to_string);
    assert_eq!(
        cookie.as_deref().map(|c| &c[..18]),
        Some("portcullis_lang=ja")
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("<html lang=\"ja\">"), "{html}");
    assert!(
        html.contains("href=\"&#x2f;oauth2&#x2f;pool&#x2f;login?lang=en\" lang=\"en\""),
        "the switch: {html}"
    );
    // Remembered by the cookie on the next page, although the browser asks for English.
    let (_, html) = get_page(&c, &s.url("/oauth2/pool/signup")).await;
    assert!(html.contains("<html lang=\"ja\">"), "{html}");

    // Junk in the cookie: Accept-Language decides.
    let plain = reqwest::Client::new();
    for junk in [
        "portcullis_lang=xx",
        "portcullis_lang=%3Cscript%3E",
        "portcullis_lang=",
    ] {
        let html = plain
            .get(s.url("/oauth2/pool/login"))
            .header("cookie", junk)
            .header("accept-language", "en")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains("<html lang=\"en\">"), "{junk}");
    }
}
on_both!(language_switch, the_language_switch);

/// A mail's decoded text, whose subject or body must contain `needle`.
fn mail_text(m: &Received) -> String {
    unqp(&m.data)
}

async fn notices_of_new_devices_and_changed_factors(backend: Backend) {
    let (port, inbox) = smtp_sink().await;
    let s = Server::start(backend, &smtp_pool(port, "mfa = \"optional\"")).await;
    create_user(&s, "nina", "nina@example.com");
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
    let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";
    let with_ua = |ua: &str| {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(ua)
            .build()
            .unwrap()
    };
    let login = s.url("/oauth2/pool/login");
    // The first sign-in ever, then a repeat from the same device: no notice.
    for _ in 0..2 {
        let r = sign_in(&with_ua(firefox), &s, &login, "nina", PASSWORD).await;
        assert_eq!(r.status(), 200);
    }
    // Another browser: the notice, and it is the first mail (none came before it).
    let c = with_ua(chrome);
    let r = sign_in(&c, &s, &login, "nina", PASSWORD).await;
    assert_eq!(r.status(), 200);
    let m = nth_mail(&inbox, 1).await;
    assert_eq!(m.rcpt_to, ["<nina@example.com>"]);
    let text = mail_text(&m);
    assert!(text.contains("Chrome on Windows"), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");

    // TOTP set up by nina: the factors-changed notice.
    let (_, page) = get_page(&c, &s.url("/oauth2/pool/mfa/setup")).await;
    let secret = page
        .split("id=\"secret\" class=\"secret\">")
        .nth(1)
        .and_then(|v| v.split('<').next())
        .unwrap_or_else(|| panic!("no secret on:\n{page}"));
    let secret = portcullis::pool::mfa::totp::base32_decode(&secret.replace(' ', "")).unwrap();
    let enrolment = page
        .split("name=\"enrolment\" value=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .map(unescape)
        .unwrap();
    let (action, csrf) = form(&page, &s.base, "/mfa/setup");
    let step = portcullis::pool::mfa::totp::step_at(portcullis::pool::now());
    let code = portcullis::pool::mfa::totp::code_at_step(&secret, step);
    let r = c
        .post(action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("enrolment", enrolment.as_str()),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = mail_text(&nth_mail(&inbox, 2).await);
    assert!(text.contains("an authenticator app was set up"), "{text}");

    // An administrator's reset: told too, with who did it.
    let (ok, out, err) = s.cli(&["users", "mfa-reset", "nina"]);
    assert!(ok, "{out}{err}");
    let text = mail_text(&nth_mail(&inbox, 3).await);
    assert!(
        text.contains("an administrator removed your authenticator app"),
        "{text}"
    );

    // A passkey removed by an administrator: told too.
    let (ok, out, err) = s.cli(&["users", "show", "nina"]);
    assert!(ok, "{err}");
    let sub = serde_json::from_str::<serde_json::Value>(&out).unwrap()["sub"]
        .as_str()
        .unwrap()
        .to_string();
    sqlx::query(
        "INSERT INTO mfa_passkeys (credential_id, sub, public_key, sign_count, backup_eligible, \
         name, created_at, last_used_at) VALUES ('cred-1', $1, 'pk', 0, 0, 'Laptop', 0, 0)",
    )
    .bind(&sub)
    .execute(&s.database().await)
    .await
    .unwrap();
    let (ok, out, err) = s.cli(&["users", "remove-passkey", "nina", "cred-1"]);
    assert!(ok, "{out}{err}");
    let text = mail_text(&nth_mail(&inbox, 4).await);
    assert!(
        text.contains("an administrator removed a passkey"),
        "{text}"
    );
    assert_eq!(inbox.lock().unwrap().len(), 4, "one mail per event");
}
on_both!(
    new_device_and_factor_notices,
    notices_of_new_devices_and_changed_factors
);

async fn a_passkey_removed_by_its_user_is_told(backend: Backend) {
    let (port, inbox) = smtp_sink().await;
    let s = Server::start(backend, &smtp_pool(port, "passkeys = true")).await;
    create_user(&s, "otto", "otto@example.com");
    let (ok, out, err) = s.cli(&["users", "show", "otto"]);
    assert!(ok, "{err}");
    let sub = serde_json::from_str::<serde_json::Value>(&out).unwrap()["sub"]
        .as_str()
        .unwrap()
        .to_string();
    sqlx::query(
        "INSERT INTO mfa_passkeys (credential_id, sub, public_key, sign_count, backup_eligible, \
         name, created_at, last_used_at) VALUES ('cred-2', $1, 'pk', 0, 0, 'Phone', 0, 0)",
    )
    .bind(&sub)
    .execute(&s.database().await)
    .await
    .unwrap();
    let c = browser();
    let r = sign_in(&c, &s, &s.url("/oauth2/pool/login"), "otto", PASSWORD).await;
    assert_eq!(r.status(), 200);
    let (status, page) = get_page(&c, &s.url("/oauth2/pool/passkeys")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Phone"), "{page}");
    let r = submit_form(&c, &s.base, &page, "/passkeys/remove", &[("id", "cred-2")]).await;
    assert_eq!(r.status(), 302);
    // The first mail (the first sign-in sent none): the factors-changed notice.
    let m = nth_mail(&inbox, 1).await;
    assert_eq!(m.rcpt_to, ["<otto@example.com>"]);
    let text = mail_text(&m);
    assert!(text.contains("a passkey was removed"), "{text}");
    // And the audit log has it, by otto.
    let (ok, out, err) = s.cli(&["audit", "--json"]);
    assert!(ok, "{err}");
    assert!(out.contains("passkey_remove"), "{out}");
}
on_both!(
    passkey_removed_notice,
    a_passkey_removed_by_its_user_is_told
);
