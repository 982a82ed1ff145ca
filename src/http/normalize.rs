//! Request-path normalisation (docs/src/reference/http-paths.md): the path a route is matched against is exactly the
//! path the upstream receives, so the two can never disagree (path-confusion attacks such as
//! `/public/../admin`, `/%61dmin`, `//admin`, Tomcat's `..;/`).
//!
//! Rules, applied once: percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2,
//! so `%2e` counts as a dot); other escapes are kept, upper-cased; empty segments (`//`) are
//! merged; dot segments are resolved (RFC 3986 §5.2.4), never above the root; a dot segment
//! carrying `;` parameters (`..;x`) is rejected. A raw `\` or control byte is rejected.
//!
//! An encoded `/` or `\` (`%2F`, `%5C`, any case, also behind any number of `%25`, like
//! `%252F`) is rejected by default: many upstreams (nginx, Python's `http.server`, IIS) decode
//! it and resolve dot segments again, so `/public/..%2Fadmin` would be matched as a path under
//! `/public/` and served as `/admin` (the audit's authorization bypass). With
//! `server.insecure_allow_encoded_slashes` such escapes are kept as they came and never split
//! or join a segment here.

use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum PathError {
    #[error("a dot-segment with parameters (like `..;x`) is not allowed in a path")]
    DotSegmentWithParams,
    #[error("the path contains a character that is not allowed (a backslash or control byte)")]
    ForbiddenByte,
    #[error("the path is not absolute")]
    NotAbsolute,
    #[error("the path contains a malformed percent-escape")]
    BadEscape,
    #[error(
        "the path contains an encoded slash or backslash (%2F, %5C); see server.insecure_allow_encoded_slashes"
    )]
    EncodedSlash,
}

/// What to do with `%2F` / `%5C` in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodedSlashes {
    /// 400 (the default).
    Reject,
    /// Forward as they came (`server.insecure_allow_encoded_slashes`).
    InsecureKeep,
}

/// Returns `None` when `path` is already normal (the common case: no allocation), or the
/// normalised path.
pub fn normalize(path: &str, slashes: EncodedSlashes) -> Result<Option<String>, PathError> {
    if !path.starts_with('/') {
        if path == "*" {
            return Ok(None);
        }
        return Err(PathError::NotAbsolute);
    }
    if is_plain(path.as_bytes()) {
        return Ok(None);
    }
    if slashes == EncodedSlashes::Reject && has_encoded_slash(path.as_bytes()) {
        return Err(PathError::EncodedSlash);
    }
    let mut out: Vec<String> = Vec::new();
    let trailing_slash = path.ends_with('/');
    let mut last_was_dot = false;
    for raw in path[1..].split('/') {
        if raw.is_empty() {
            last_was_dot = false;
            continue;
        }
        let seg = decode_unreserved(raw)?;
        let (head, has_params) = match seg.find(';') {
            Some(i) => (&seg[..i], true),
            None => (seg.as_str(), false),
        };
        if head == "." || head == ".." {
            if has_params {
                return Err(PathError::DotSegmentWithParams);
            }
            if head == ".." {
                out.pop();
            }
            last_was_dot = true;
            continue;
        }
        last_was_dot = false;
        out.push(seg);
    }
    let mut result = String::with_capacity(path.len());
    for seg in &out {
        result.push('/');
        result.push_str(seg);
    }
    if (trailing_slash || last_was_dot) && !result.is_empty() {
        result.push('/');
    }
    if result.is_empty() {
        result.push('/');
    }
    if result == path {
        Ok(None)
    } else {
        Ok(Some(result))
    }
}

/// Fast check: nothing here could change under normalisation.
fn is_plain(p: &[u8]) -> bool {
    let mut prev = 0u8;
    for (i, &b) in p.iter().enumerate() {
        match b {
            b'%' | b'\\' | b';' => return false,
            0..=0x1f | 0x7f => return false,
            b'/' if prev == b'/' => return false,
            b'.' if prev == b'/' => {
                // `/.` starts a dot segment only when followed by `/`, `.` or the end.
                match p.get(i + 1) {
                    None | Some(b'/') | Some(b'.') => return false,
                    _ => {}
                }
            }
            _ => {}
        }
        prev = b;
    }
    true
}

/// `%2F` or `%5C` (any case), also after decoding any number of `%25` (`%252F`, `%25252f`).
fn has_encoded_slash(p: &[u8]) -> bool {
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'%', &p[i..]) {
        let mut j = i + off + 1;
        while p.get(j) == Some(&b'2') && p.get(j + 1) == Some(&b'5') {
            j += 2;
        }
        if let (Some(h), Some(l)) = (p.get(j), p.get(j + 1)) {
            let l = l.to_ascii_uppercase();
            if (*h == b'2' && l == b'F') || (*h == b'5' && l == b'C') {
                return true;
            }
        }
        i += off + 1;
    }
    false
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_unreserved(seg: &str) -> Result<String, PathError> {
    let b = seg.as_bytes();
    let mut out = String::with_capacity(seg.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' || c < 0x20 || c == 0x7f {
            return Err(PathError::ForbiddenByte);
        }
        if c == b'%' {
            let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::BadEscape);
            };
            let v = h * 16 + l;
            if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                out.push(v as char);
            } else {
                out.push('%');
                out.push(b[i + 1].to_ascii_uppercase() as char);
                out.push(b[i + 2].to_ascii_uppercase() as char);
            }
            i += 3;
            continue;
        }
        // Anything else is copied as the character it starts: `http` accepts raw UTF-8 in a
        // path, and copying its bytes one by one as chars would re-encode each of them.
        let ch = seg[i..]
            .chars()
            .next()
            .unwrap_or(char::REPLACEMENT_CHARACTER);
        out.push(ch);
        i += ch.len_utf8();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_table() {
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("/", Ok("/")),
            ("/a/b", Ok("/a/b")),
            ("/a/./b", Ok("/a/b")),
            ("/a/../b", Ok("/b")),
            ("/../../etc/passwd", Ok("/etc/passwd")),
            ("/public/../admin", Ok("/admin")),
            ("/public/%2e%2e/admin", Ok("/admin")),
            ("/public/%2E%2e/admin", Ok("/admin")),
            ("/public/.%2e/admin", Ok("/admin")),
            ("/%61dmin/x", Ok("/admin/x")),
            ("//admin", Ok("/admin")),
            ("/a//b/", Ok("/a/b/")),
            ("/a/b/..", Ok("/a/")),
            ("/a/b/.", Ok("/a/b/")),
            ("/a%2fb", Err(PathError::EncodedSlash)),
            ("/a%2F..%2Fb", Err(PathError::EncodedSlash)),
            ("/a/%5c../b", Err(PathError::EncodedSlash)),
            ("/a/..;x/b", Err(PathError::DotSegmentWithParams)),
            ("/a/.;/b", Err(PathError::DotSegmentWithParams)),
            ("/a/%2e%2e;x/b", Err(PathError::DotSegmentWithParams)),
            ("/a;x/b", Ok("/a;x/b")),
            ("/a\\b", Err(PathError::ForbiddenByte)),
            ("/a%zz", Err(PathError::BadEscape)),
            ("/.well-known/x", Ok("/.well-known/x")),
            ("/a/.hidden", Ok("/a/.hidden")),
            // Found by fuzz/fuzz_targets/path_normalize.rs: raw UTF-8 survives unchanged.
            ("/a/..\u{65d}", Ok("/a/..\u{65d}")),
            ("/caf\u{e9}/./x%2e", Ok("/caf\u{e9}/x.")),
            ("/\u{e9}/../\u{1f600}", Ok("/\u{1f600}")),
        ];
        for (input, want) in cases {
            let got = normalize(input, EncodedSlashes::Reject)
                .map(|o| o.unwrap_or_else(|| input.to_string()));
            assert_eq!(
                got.as_deref().map_err(|e| e.clone()),
                want.as_ref().map(|s| *s).map_err(|e| e.clone()),
                "{input}"
            );
        }
    }

    /// The audit's bypass (issue 9, item 1): `/public/..%2Fadmin` matched under `/public/`,
    /// served as `/admin` by a decoding upstream. Every spelling is a 400 by default.
    #[test]
    fn encoded_slash_bypass_is_rejected_by_default() {
        for p in [
            "/public/..%2Fadmin/panel",
            "/public/..%2fadmin/panel",
            "/public/%2e%2e%2fadmin/panel",
            "/public/..%5Cadmin/panel",
            "/public/..%5cadmin/panel",
            "/public/..%252Fadmin/panel",
            "/public/..%25252fadmin/panel",
            "/public%2F..%2Fadmin/panel",
            "/public/%252e%252e%252fadmin",
        ] {
            assert_eq!(
                normalize(p, EncodedSlashes::Reject),
                Err(PathError::EncodedSlash),
                "{p}"
            );
        }
        // Other escapes, and `%25` not followed by a slash, still pass.
        assert_eq!(normalize("/a%20b", EncodedSlashes::Reject), Ok(None));
        assert_eq!(normalize("/a%252", EncodedSlashes::Reject), Ok(None));
        assert_eq!(normalize("/a%25", EncodedSlashes::Reject), Ok(None));
    }

    #[test]
    fn encoded_slashes_kept_when_the_operator_opts_out() {
        let keep = EncodedSlashes::InsecureKeep;
        assert_eq!(normalize("/a%2fb", keep), Ok(Some("/a%2Fb".into())));
        assert_eq!(normalize("/a%2F..%2Fb", keep), Ok(None));
        assert_eq!(normalize("/a/%5c../b", keep), Ok(Some("/a/%5C../b".into())));
        assert_eq!(
            normalize("/a/..;x/b", keep),
            Err(PathError::DotSegmentWithParams)
        );
    }
}
