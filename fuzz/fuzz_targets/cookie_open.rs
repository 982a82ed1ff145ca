//! Session cookies (src/session/shards.rs, keyring.rs): reading the shards from `Cookie`
//! headers, base64url decoding, AES-GCM opening, and stripping our cookies before forwarding.
//!
//! The input is either a raw `Cookie` header (first byte `!`), or edits (4 bytes each: op,
//! position, position, value) applied to the header of one real sealed session spread over
//! three shards: bit flips, byte changes, deletions, insertions, truncation, shard renames.
//! Properties: nothing panics; whatever opens is exactly the session that was sealed (a forged,
//! spliced, truncated or reordered cookie never opens to anything else); a value sealed for
//! the login cookie never opens as a session; after `strip` no cookie of ours is left and every
//! other cookie is kept, in order.
#![no_main]

use std::sync::LazyLock;

use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use portcullis::config::Secret;
use portcullis::session::keyring::KeyRing;
use portcullis::session::shards::{CookieJar, cookie_pairs};

const SESSION: &[u8] = b"portcullis-session";
const LOGIN: &[u8] = b"portcullis-login";

struct Fixture {
    ring: KeyRing,
    jar: CookieJar,
    plain: Vec<u8>,
    header: Vec<u8>,
    login_header: Vec<u8>,
}

fn cookie_header(set: &[HeaderValue]) -> Vec<u8> {
    let pairs: Vec<&str> = set
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next())
        .filter(|p| !p.ends_with('='))
        .collect();
    pairs.join("; ").into_bytes()
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let ring = KeyRing::new(&[
        Secret::new("fuzz-sealing-secret-0123456789abcdef".into()),
        Secret::new("fuzz-older-secret-0123456789abcdef".into()),
    ])
    .expect("two secrets");
    let jar = CookieJar::new("AWSELBAuthSessionCookie", true);
    // Big enough for three shards, so reordering and dropping shards is reachable.
    let filler = "x".repeat(7000);
    let plain = format!(
        r#"{{"sid":"s1","sub":"alice","provider":"idp","claims":{{"email":"a@example.com","pad":"{filler}"}},"created_at":1,"expires_at":4102444800}}"#
    )
    .into_bytes();
    let sealed = ring.seal(SESSION, &plain);
    let header = cookie_header(&jar.encode(&sealed, 3600).expect("three shards"));
    let login_sealed = ring.seal(LOGIN, &plain[..200]);
    let login_header = cookie_header(&jar.encode(&login_sealed, 3600).expect("one shard"));
    Fixture {
        ring,
        jar,
        plain,
        header,
        login_header,
    }
});

fn edit(mut h: Vec<u8>, ops: &[u8]) -> Vec<u8> {
    for op in ops.chunks_exact(4) {
        if h.is_empty() {
            break;
        }
        let pos = (usize::from(op[1]) << 8 | usize::from(op[2])) * 3 % h.len();
        match op[0] % 7 {
            0 => h[pos] ^= 1 << (op[3] % 8),
            1 => h[pos] = op[3],
            2 => {
                h.remove(pos);
            }
            3 => h.insert(pos, op[3]),
            4 => h.truncate(pos),
            // Renames a shard index digit (`...Cookie-1=` becomes `...Cookie-2=`).
            5 => {
                if let Some(d) = h.iter().skip(pos).position(|&b| b == b'=') {
                    let at = pos + d;
                    if at > 0 && h[at - 1].is_ascii_digit() {
                        h[at - 1] = b'0' + op[3] % 5;
                    }
                }
            }
            // Swaps the cookie pairs around one `; `.
            _ => {
                let text = String::from_utf8_lossy(&h).into_owned();
                let mut parts: Vec<&str> = text.split("; ").collect();
                let n = parts.len();
                if n > 1 {
                    parts.swap(pos % n, usize::from(op[3]) % n);
                }
                h = parts.join("; ").into_bytes();
            }
        }
    }
    h
}

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let (raw, login) = match data.split_first() {
        Some((b'!', rest)) => (rest.to_vec(), false),
        Some((b'L', rest)) => (edit(f.login_header.clone(), rest), true),
        _ => (edit(f.header.clone(), data), false),
    };
    let Ok(value) = HeaderValue::from_bytes(&raw) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::COOKIE, value);
    headers.append(header::COOKIE, HeaderValue::from_static("other=1"));
    if let Some(text) = f.jar.read(&headers)
        && let Some(sealed) = CookieJar::decode(&text)
        && let Some(plain) = f.ring.open(SESSION, &sealed)
    {
        assert!(!login, "a login cookie opened as a session");
        assert_eq!(
            plain, f.plain,
            "a tampered cookie opened to another session"
        );
        serde_json::from_slice::<portcullis::session::Session>(&plain).expect("the session parses");
    }
    // Ours, by bytes: a shard name, or anything under the login prefix (even not UTF-8).
    let ours = |n: &[u8]| {
        n.starts_with(f.jar.login_prefix().as_bytes())
            || n.strip_prefix(f.jar.name().as_bytes()).is_some_and(|rest| {
                rest.len() == 2 && rest[0] == b'-' && (b'0'..b'4').contains(&rest[1])
            })
    };
    let before: Vec<(Vec<u8>, Vec<u8>)> = cookie_pairs(&headers)
        .filter(|(n, _)| !ours(n))
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect();
    f.jar.strip(&mut headers);
    let after: Vec<(Vec<u8>, Vec<u8>)> = cookie_pairs(&headers)
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect();
    for (n, _) in &after {
        assert!(
            !ours(n),
            "our cookie {:?} went upstream",
            String::from_utf8_lossy(n)
        );
    }
    assert_eq!(before, after, "strip changed other cookies");
});
