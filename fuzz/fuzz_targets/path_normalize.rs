//! The request-path normaliser (src/http/normalize.rs, docs/src/reference/http-paths.md). Properties, for any text:
//! - a normalised path is final: normalising it again changes nothing (the fast "already
//!   normal" check and the slow path agree);
//! - a path reported normal, or produced, is absolute, has no empty segment, no dot segment
//!   (plain or percent-encoded), no backslash or control byte, no escape of an unreserved
//!   character and no lower-case escape;
//! - by default (encoded slashes refused, issue 9 item 1), an upstream that percent-decodes the
//!   path once and then resolves dot segments (Python's `http.server`, nginx serving files)
//!   sees the path Portcullis matched its route on. With
//!   `server.insecure_allow_encoded_slashes` the first two properties still hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::http::normalize::{EncodedSlashes, normalize};

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn check_normal(p: &str, input: &str) {
    assert!(p.starts_with('/'), "{input:?} -> {p:?}: not absolute");
    let b = p.as_bytes();
    assert!(
        !b.iter().any(|&c| c == b'\\' || c < 0x20 || c == 0x7f),
        "{input:?} -> {p:?}: forbidden byte"
    );
    for (i, w) in b.windows(3).enumerate() {
        if w[0] == b'%' {
            let v = u8::from_str_radix(std::str::from_utf8(&w[1..]).unwrap_or("zz"), 16);
            let v = v.unwrap_or_else(|_| panic!("{input:?} -> {p:?}: bad escape at {i}"));
            assert!(!is_unreserved(v), "{input:?} -> {p:?}: encoded unreserved");
            assert!(
                !w[1..].iter().any(u8::is_ascii_lowercase),
                "{input:?} -> {p:?}: lower-case escape"
            );
        }
    }
    let body = &p[1..];
    if body.is_empty() {
        return;
    }
    let segs: Vec<&str> = body.split('/').collect();
    for (i, s) in segs.iter().enumerate() {
        assert!(
            !s.is_empty() || i == segs.len() - 1,
            "{input:?} -> {p:?}: empty segment"
        );
        let head = s.split(';').next().unwrap_or("");
        assert!(
            head != "." && head != "..",
            "{input:?} -> {p:?}: dot segment"
        );
    }
}

/// What an upstream that decodes once and resolves dot segments serves.
fn upstream_view(p: &str) -> String {
    let mut decoded = Vec::new();
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            decoded.push(v);
            i += 3;
            continue;
        }
        decoded.push(b[i]);
        i += 1;
    }
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for s in decoded.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// Portcullis's own reading of a normal path, decoded the same way (segments kept apart).
fn matched_view(p: &str) -> String {
    let segs: Vec<String> = p
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            upstream_view(&format!("/{s}"))
                .trim_start_matches('/')
                .to_string()
        })
        .collect();
    format!("/{}", segs.join("/"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    for slashes in [EncodedSlashes::Reject, EncodedSlashes::InsecureKeep] {
        let normal = match normalize(input, slashes) {
            Err(_) => continue,
            Ok(None) if input == "*" => continue,
            Ok(None) => input.to_string(),
            Ok(Some(out)) => {
                assert_eq!(
                    normalize(&out, slashes),
                    Ok(None),
                    "{input:?} -> {out:?} is not final ({slashes:?})"
                );
                out
            }
        };
        check_normal(&normal, input);
        if slashes == EncodedSlashes::Reject {
            assert_eq!(
                upstream_view(&normal),
                matched_view(&normal),
                "{input:?} -> {normal:?}: a decoding upstream sees another path"
            );
        }
    }
});
