//! Is this request a browser navigation (gets redirects and HTML) or a script (gets 401 JSON)?
//! docs/src/proxy/routes.md: XHR marker, `Sec-Fetch-Mode` other than `navigate`, or an `Accept` that allows
//! neither `text/html` nor `*/*`.

use http::{HeaderMap, header};

use super::headers::{SEC_FETCH_MODE, X_REQUESTED_WITH};

/// True when the client is a script and must never be redirected to an IdP.
pub fn is_non_navigational(headers: &HeaderMap) -> bool {
    if let Some(v) = headers.get(X_REQUESTED_WITH)
        && v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest")
    {
        return true;
    }
    if let Some(v) = headers.get(SEC_FETCH_MODE)
        && !v.as_bytes().eq_ignore_ascii_case(b"navigate")
    {
        return true;
    }
    if let Some(accept) = headers.get(header::ACCEPT) {
        let accept = accept.to_str().unwrap_or("");
        return !accepts_html(accept);
    }
    false
}

fn accepts_html(accept: &str) -> bool {
    accept.split(',').any(|item| {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        !refused
            && (media.eq_ignore_ascii_case("text/html")
                || media == "*/*"
                || media.eq_ignore_ascii_case("text/*"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn classifies_requests() {
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[], false),
            (&[("accept", "text/html,application/xhtml+xml")], false),
            (&[("accept", "*/*")], false),
            (&[("accept", "application/json")], true),
            (&[("accept", "text/html;q=0, application/json")], true),
            (&[("x-requested-with", "XMLHttpRequest")], true),
            (&[("sec-fetch-mode", "cors")], true),
            (
                &[("sec-fetch-mode", "navigate"), ("accept", "text/html")],
                false,
            ),
        ];
        for (pairs, want) in cases {
            assert_eq!(is_non_navigational(&h(pairs)), *want, "{pairs:?}");
        }
    }
}
