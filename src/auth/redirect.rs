//! Client-supplied redirect targets (`rd`, post-logout): a relative path, or an absolute URL on
//! our own origin or an allowed one; anything else becomes `/`. Blocks the classic open-redirect
//! forms: `//evil`, `/\evil`, `/\t/evil` (browsers drop tabs and newlines), `https:evil`.

use url::Url;

pub fn is_safe_relative(rd: &str) -> bool {
    let b = rd.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    if b.iter()
        .any(|c| c.is_ascii_control() || *c == b'\\' || *c == b' ')
    {
        return false;
    }
    !matches!(b.get(1), Some(b'/'))
}

/// The safe target for `rd` (a path-and-query or an allowed absolute URL), else `/`.
pub fn safe_target(rd: Option<&str>, public_origin: &str, allowed: &[String]) -> String {
    let Some(rd) = rd.filter(|r| !r.is_empty()) else {
        return "/".into();
    };
    if is_safe_relative(rd) {
        return rd.to_string();
    }
    if rd.bytes().any(|c| c.is_ascii_control() || c == b'\\') {
        return "/".into();
    }
    if let Ok(u) = Url::parse(rd)
        && matches!(u.scheme(), "http" | "https")
        && u.host().is_some()
        && u.username().is_empty()
        && u.password().is_none()
    {
        let origin = crate::http::host::canonical_origin(&u);
        if origin == public_origin || allowed.contains(&origin) {
            return u.to_string();
        }
    }
    "/".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let allowed = vec!["https://other.example.com".to_string()];
        let cases = [
            (Some("/app?x=1"), "/app?x=1"),
            (Some("//evil.com"), "/"),
            (Some("/\\evil.com"), "/"),
            (Some("/\t/evil.com"), "/"),
            (Some("https://evil.com/"), "/"),
            (Some("https:evil.com"), "/"),
            (Some("javascript:alert(1)"), "/"),
            (
                Some("https://app.example.com/x"),
                "https://app.example.com/x",
            ),
            (
                Some("https://other.example.com/y"),
                "https://other.example.com/y",
            ),
            (Some("https://other.example.com.evil.com/"), "/"),
            // The same host in another spelling is the same origin.
            (
                Some("https://Other.Example.com.:443/y"),
                "https://other.example.com./y",
            ),
            (Some("https://other.example.com../y"), "/"),
            (Some("https://user@app.example.com/"), "/"),
            (Some("evil.com"), "/"),
            (None, "/"),
        ];
        for (rd, want) in cases {
            assert_eq!(
                safe_target(rd, "https://app.example.com", &allowed),
                want,
                "{rd:?}"
            );
        }
    }
}
