//! Bearer access tokens (src/auth/bearer.rs): the real app answering `GET /api/x` on an
//! `accept_bearer` route with `Authorization: Bearer <token>`, its provider's discovery and
//! JWKS served by an in-process IdP. Modes, by the first input byte:
//! - `H`: the rest is the whole `Authorization` header value;
//! - `R`: the rest is the token;
//! - otherwise edits (4 bytes each, see `support/edit.rs`) to one of the genuine tokens the
//!   IdP signed: valid access tokens, and ones the route must refuse (another `aud`, expired,
//!   `nbf` ahead, no `sub`, an ID token's `token_use`, no `exp`, an issuer that is not the
//!   route's provider).
//!
//! Properties: nothing panics; the answer is 200 (the file behind the route), 401 or 403;
//! it is 200 only for a token whose signed part is byte for byte one of the valid genuine
//! tokens.
#![no_main]

use std::net::SocketAddr;
use std::sync::LazyLock;

use http::{Request, header};
use libfuzzer_sys::fuzz_target;
use portcullis::http::body::RequestBody;
use portcullis::proxy::Inbound;
use serde_json::{Value, json};

#[path = "support/idp.rs"]
mod idp;
use idp::{AUDIENCE, Idp, signed_part};
#[path = "support/edit.rs"]
mod edit;
use edit::edit;

struct Fixture {
    idp: Idp,
    valid: Vec<String>,
    all: Vec<String>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The status of `GET /api/x` with this `Authorization` value (`None`: not a header value).
fn ask(f: &Fixture, authorization: &[u8]) -> Option<u16> {
    let value = http::HeaderValue::from_bytes(authorization).ok()?;
    let req = Request::builder()
        .uri("/api/x")
        .header(header::HOST, "127.0.0.1:9")
        .header(header::AUTHORIZATION, value)
        .body(RequestBody::Empty)
        .ok()?;
    let inbound = Inbound::new(SocketAddr::from(([127, 0, 0, 1], 40000)), false);
    let resp = f.idp.rt.block_on(f.idp.app.handle(req, &inbound));
    Some(resp.status().as_u16())
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let idp = Idp::start();
    let t = now();
    let base = || -> Value {
        json!({"iss": idp.issuer, "sub": "alice", "aud": AUDIENCE, "iat": t, "exp": t + 3600,
               "scope": "orders/read", "client_id": "app"})
    };
    let mut by_client_id = base();
    by_client_id.as_object_mut().map(|m| m.remove("aud"));
    by_client_id["client_id"] = json!(AUDIENCE);
    let valid = vec![
        idp.sign(&base(), Some("at+jwt")),
        idp.sign(&by_client_id, None),
        idp.sign(
            &json!({"iss": idp.issuer, "sub": "bob", "aud": ["x", AUDIENCE], "iat": t, "exp": t + 60}),
            Some("JWT"),
        ),
    ];
    let mut invalid = Vec::new();
    let mut bad = |f: &dyn Fn(&mut Value)| {
        let mut c = base();
        f(&mut c);
        invalid.push(idp.sign(&c, Some("at+jwt")));
    };
    bad(&|c| c["aud"] = json!("api://other"));
    bad(&|c| c["exp"] = json!(t - 3600));
    bad(&|c| c["nbf"] = json!(t + 3600));
    bad(&|c| {
        c.as_object_mut().map(|m| m.remove("sub"));
    });
    bad(&|c| {
        c.as_object_mut().map(|m| m.remove("exp"));
    });
    bad(&|c| c["token_use"] = json!("id"));
    // No `iat` (RFC 9068 requires it): a revocation could not be ordered against it.
    bad(&|c| {
        c.as_object_mut().map(|m| m.remove("iat"));
    });
    bad(&|c| c["iss"] = json!("https://not-this-provider.example"));
    bad(&|c| {
        c.as_object_mut().map(|m| m.remove("aud"));
        c["client_id"] = json!("api://other");
    });
    bad(&|c| c["events"] = json!({"http://schemas.openid.net/event/backchannel-logout": {}}));
    // An ID token (untyped, `nonce`, `aud` = the client) and a logout token (`typ:
    // logout+jwt`, `events`), both signed by the provider, are not access tokens.
    let mut id_token = base();
    id_token["nonce"] = json!("n");
    invalid.push(idp.sign(&id_token, Some("JWT")));
    invalid.push(idp.sign(&id_token, None));
    let mut logout = base();
    logout["events"] = json!({"http://schemas.openid.net/event/backchannel-logout": {}});
    logout["jti"] = json!("logout-1");
    invalid.push(idp.sign(&logout, Some("logout+jwt")));
    let mut all = valid.clone();
    all.extend(invalid.iter().cloned());
    let f = Fixture { idp, valid, all };
    // The genuine ones are decided as they should be, or the property tests nothing.
    for v in &f.valid {
        assert_eq!(
            ask(&f, format!("Bearer {v}").as_bytes()),
            Some(200),
            "genuine token refused"
        );
    }
    for i in &invalid {
        assert_eq!(
            ask(&f, format!("Bearer {i}").as_bytes()),
            Some(401),
            "bad token accepted"
        );
    }
    f
});

fn check(authorization: &[u8]) {
    let f = &*FIXTURE;
    let Some(status) = ask(f, authorization) else {
        return;
    };
    assert!(
        matches!(status, 200 | 401 | 403),
        "answered {status} for {:?}",
        String::from_utf8_lossy(authorization)
    );
    if status == 200 {
        let text = String::from_utf8_lossy(authorization);
        let token = text.split_once(' ').map_or("", |(_, t)| t.trim());
        let part = signed_part(token);
        assert!(
            f.valid.iter().any(|v| signed_part(v) == part),
            "a token that is not a valid genuine one was accepted: {text}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        b'H' => check(rest),
        b'R' => {
            let mut h = b"Bearer ".to_vec();
            h.extend_from_slice(rest);
            check(&h);
        }
        m => {
            let genuine = &f.all[usize::from(m) % f.all.len()];
            let mut h = b"Bearer ".to_vec();
            h.extend(edit(genuine.as_bytes().to_vec(), rest));
            check(&h);
        }
    }
});
