//! Configuration parsing and validation (src/config, src/pool/config) of any text, as
//! `portcullis check` does it. Properties: nothing panics; a refusal names at least one
//! problem, each with a key path and a message; no secret value (`secrets`, `client_secret`,
//! `password`, `admin_token`, at least 16 characters) appears in the rendered error.
//!
//! Inputs naming device or kernel files are skipped (a `*_file` key pointing at `/dev/zero`
//! would read forever: the operator's config is trusted, see SECURITY.md).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use portcullis::config::{ConfigError, load_str};

fn secrets_in(v: &toml::Value, key: &str, out: &mut Vec<String>) {
    let secretish = [
        "secret",
        "secrets",
        "password",
        "admin_token",
        "client_secret",
    ]
    .iter()
    .any(|k| key == *k);
    match v {
        toml::Value::String(s) if secretish && s.len() >= 16 && !s.contains("${") => {
            out.push(s.clone())
        }
        toml::Value::Array(items) => items.iter().for_each(|i| secrets_in(i, key, out)),
        toml::Value::Table(t) => t.iter().for_each(|(k, v)| secrets_in(v, k, out)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    match load_str(text, Path::new("/nonexistent/fuzz.toml")) {
        Ok(_) => {}
        Err(ConfigError::Read { .. }) => panic!("load_str read the config file"),
        Err(e @ ConfigError::Invalid { .. }) => {
            let ConfigError::Invalid { problems, .. } = &e else {
                unreachable!()
            };
            assert!(!problems.is_empty(), "refused without a problem");
            for p in problems {
                assert!(!p.path.is_empty() && !p.message.is_empty(), "{p:?}");
            }
            let rendered = e.to_string();
            let mut secrets = Vec::new();
            if let Ok(table) = text.parse::<toml::Table>() {
                secrets_in(&toml::Value::Table(table), "", &mut secrets);
            }
            // A value written once, under a secret's key only (another key holding the same
            // text may be quoted in its own message).
            for s in secrets
                .iter()
                .filter(|s| text.matches(s.as_str()).count() == 1)
            {
                assert!(
                    !rendered.contains(s.as_str()),
                    "a secret is in the message: {rendered}"
                );
            }
        }
    }
});
