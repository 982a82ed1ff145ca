//! Back-channel logout as a relying party (src/auth/backchannel.rs): the real app's
//! `POST /oauth2/backchannel-logout` handler, with a provider whose discovery and JWKS an
//! in-process IdP serves. Modes, by the first input byte:
//! - `F`: the rest is the whole form body;
//! - `T`: the rest is the `logout_token` (form-encoded here);
//! - otherwise edits (4 bytes each, see `support/edit.rs`) to one of the genuine tokens the
//!   IdP signed: valid ones, and ones OpenID Back-Channel Logout 1.0 §2.6 refuses (a `nonce`,
//!   another `aud`, no `events`, expired, `iat` too old, no `jti`, neither `sid` nor `sub`).
//!
//! Properties: nothing panics; the answer is 200 or 400; it is 200 only for a token whose
//! signed part is byte for byte one of the valid genuine tokens, and each of those is honoured
//! once (its `jti` is remembered).
#![no_main]

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

#[path = "support/idp.rs"]
mod idp;
use idp::{CLIENT_ID, Idp, signed_part};
#[path = "support/edit.rs"]
mod edit;
use edit::edit;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

struct Fixture {
    idp: Idp,
    valid: Vec<String>,
    all: Vec<String>,
    honoured: Mutex<HashSet<String>>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let idp = Idp::start();
    let t = now();
    let base = |jti: &str| -> Value {
        json!({"iss": idp.issuer, "aud": CLIENT_ID, "iat": t, "exp": t + 3600, "jti": jti,
               "sub": "alice", "events": {EVENT: {}}})
    };
    let mut with_sid = base("v2");
    with_sid["sid"] = json!("idp-session-1");
    with_sid.as_object_mut().map(|m| m.remove("sub"));
    let valid = vec![
        idp.sign(&base("v1"), Some("logout+jwt")),
        idp.sign(&with_sid, None),
        idp.sign(
            &json!({"iss": idp.issuer, "aud": [CLIENT_ID, "other"], "iat": t, "exp": t + 60,
                         "jti": "v3", "sub": "bob", "events": {EVENT: {}}}),
            Some("logout+jwt"),
        ),
    ];
    let mut invalid = Vec::new();
    let mut bad = |f: &dyn Fn(&mut Value), jti: &str| {
        let mut c = base(jti);
        f(&mut c);
        invalid.push(idp.sign(&c, Some("logout+jwt")));
    };
    bad(&|c| c["nonce"] = json!("n"), "i1");
    bad(&|c| c["aud"] = json!("someone-else"), "i2");
    bad(
        &|c| {
            c.as_object_mut().map(|m| m.remove("events"));
        },
        "i3",
    );
    bad(
        &|c| c["events"] = json!({"http://schemas.openid.net/event/other": {}}),
        "i4",
    );
    bad(&|c| c["exp"] = json!(t - 10), "i5");
    bad(&|c| c["iat"] = json!(t - 3600), "i6");
    bad(&|c| c["iat"] = json!(t + 3600), "i7");
    bad(
        &|c| {
            c.as_object_mut().map(|m| m.remove("jti"));
        },
        "i8",
    );
    bad(
        &|c| {
            c.as_object_mut().map(|m| m.remove("sub"));
        },
        "i9",
    );
    bad(
        &|c| c["iss"] = json!("https://not-configured.example"),
        "i10",
    );
    let mut all = valid.clone();
    all.extend(invalid);
    Fixture {
        idp,
        valid,
        all,
        honoured: Mutex::new(HashSet::new()),
    }
});

fn post(token_form: &[u8]) {
    let f = &*FIXTURE;
    let resp = f
        .idp
        .rt
        .block_on(f.idp.app.auth.backchannel_logout(token_form, now()));
    let status = resp.status().as_u16();
    assert!(status == 200 || status == 400, "answered {status}");
    if status == 200 {
        let token: String = url::form_urlencoded::parse(token_form)
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.into_owned())
            .expect("a 200 came without a logout_token");
        let part = signed_part(&token).to_string();
        assert!(
            f.valid.iter().any(|v| signed_part(v) == part),
            "a token that is not a valid genuine one ended sessions: {token}"
        );
        assert!(
            f.honoured.lock().expect("lock").insert(part),
            "a logout token was honoured twice (jti replay)"
        );
    }
}

fn form_of(token: &[u8]) -> Vec<u8> {
    let mut out = b"logout_token=".to_vec();
    out.extend(url::form_urlencoded::byte_serialize(token).flat_map(str::bytes));
    out
}

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        b'F' => post(rest),
        b'T' => post(&form_of(rest)),
        m => {
            let genuine = &f.all[usize::from(m) % f.all.len()];
            post(&form_of(&edit(genuine.as_bytes().to_vec(), rest)));
        }
    }
});
