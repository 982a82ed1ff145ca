//! Hop-by-hop headers (RFC 9110 §7.6.1): removed in both directions, including every header
//! that `Connection` nominates — otherwise a client can make the proxy drop (or an upstream
//! keep) headers it should not. `Upgrade` survives only for an upgrade we pass through.

use http::{HeaderMap, HeaderName, header};

use crate::http::headers::{KEEP_ALIVE, PROXY_CONNECTION};

// A `static`, not a `const`: a `const` array of `HeaderName` would be built and dropped at every use.
static FIXED: [HeaderName; 8] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers. With `keep_upgrade`, `Upgrade` and `Connection: upgrade` stay.
/// Runs on every request and response, so it is one pass over the names (standard names
/// compare as integers) and hashes only for headers that are present; it does not allocate:
/// nominated names are looked up as `&str` (parsed on the stack by `http`).
pub fn remove(headers: &mut HeaderMap, keep_upgrade: bool) {
    let mut present = [false; 8];
    let mut upgrade = false;
    let mut any = false;
    for name in headers.keys() {
        if let Some(i) = FIXED.iter().position(|f| f == name) {
            present[i] = true;
            any = true;
        } else if name == header::UPGRADE {
            upgrade = true;
        }
    }
    if !any && !upgrade && !keep_upgrade {
        return;
    }
    // A clone of the value is a reference count, so the map can be changed while reading it.
    if present[0]
        && let Some(conn) = headers.get(header::CONNECTION).cloned()
    {
        for token in conn.as_bytes().split(|b| *b == b',') {
            let token = token.trim_ascii();
            if token.is_empty() || (keep_upgrade && token.eq_ignore_ascii_case(b"upgrade")) {
                continue;
            }
            if let Ok(name) = std::str::from_utf8(token) {
                headers.remove(name);
            }
        }
    }
    for (n, here) in FIXED.iter().zip(present) {
        if here {
            headers.remove(n);
        }
    }
    if keep_upgrade {
        headers.insert(
            header::CONNECTION,
            http::HeaderValue::from_static("upgrade"),
        );
    } else if upgrade {
        headers.remove(header::UPGRADE);
    }
}

/// Whether a request asks for a protocol upgrade (WebSocket).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn removes_nominated_and_fixed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Secret, x-amzn-oidc-data"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-normal", HeaderValue::from_static("1"));
        remove(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-normal"));
    }

    #[test]
    fn keeps_upgrade_when_asked() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(wants_upgrade(&h));
        remove(&mut h, true);
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
    }
}
