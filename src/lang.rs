//! The languages of every page Portcullis draws itself (the pool's pages and the proxy's own
//! error pages): English and Japanese, chosen by the language switch (`?lang=`, remembered in
//! a cookie), else by `Accept-Language`. A leaf module: the proxy's pages and the pool share it.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ja,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }

    /// Every language, with its name as written in that language (the switch's labels).
    pub const ALL: [(Lang, &'static str); 2] = [(Lang::En, "English"), (Lang::Ja, "日本語")];

    /// Exactly `en` or `ja`; anything else (junk in a cookie or query) is `None`.
    pub fn parse(code: &str) -> Option<Lang> {
        Lang::ALL
            .iter()
            .find(|(l, _)| l.code() == code)
            .map(|(l, _)| *l)
    }

    /// The language of a request: `?lang=` (the switch), else the [`LANG_COOKIE`] the switch
    /// set, else `Accept-Language`. A value that is not a supported language is ignored.
    pub fn of_request(headers: &http::HeaderMap, query: Option<&str>) -> Lang {
        let cookie = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(Lang::in_cookie_header);
        Lang::choose(
            query,
            cookie,
            headers
                .get(http::header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
        )
    }

    /// The language a `Cookie` header's [`LANG_COOKIE`] names, if it names a supported one.
    pub fn in_cookie_header(header: &str) -> Option<Lang> {
        header
            .split(';')
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == LANG_COOKIE)
            .and_then(|(_, v)| Lang::parse(v.trim()))
    }

    /// The language the switch asks for in a query string (`lang=en|ja`).
    pub fn in_query(query: Option<&str>) -> Option<Lang> {
        query.and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "lang")
                .and_then(|(_, v)| Lang::parse(&v))
        })
    }

    /// The switch's choice, else the cookie's, else `Accept-Language`'s.
    pub fn choose(
        query: Option<&str>,
        cookie: Option<Lang>,
        accept_language: Option<&str>,
    ) -> Lang {
        Lang::in_query(query)
            .or(cookie)
            .unwrap_or_else(|| Lang::negotiate(accept_language))
    }

    /// Picks from an `Accept-Language` header (RFC 9110 §12.5.4).
    pub fn negotiate(header: Option<&str>) -> Lang {
        let Some(h) = header else { return Lang::En };
        let mut best = (Lang::En, 0.0f32);
        for item in h.split(',') {
            let mut parts = item.trim().split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|v| v.trim().parse::<f32>().ok())
                })
                .unwrap_or(1.0);
            let lang = match tag.split('-').next().unwrap_or("") {
                "ja" => Lang::Ja,
                "en" => Lang::En,
                _ => continue,
            };
            // Strictly greater: among equal q-values the first listed wins.
            if q > best.1 {
                best = (lang, q);
            }
        }
        best.0
    }
}

/// The cookie the language switch sets (a year, every path of the site, no secret in it).
pub const LANG_COOKIE: &str = "portcullis_lang";

/// `Set-Cookie` for a language chosen with the switch.
pub fn lang_cookie(lang: Lang, secure: bool) -> String {
    format!(
        "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax{}",
        lang.code(),
        if secure { "; Secure" } else { "" }
    )
}

/// One entry of the language switch.
#[derive(Debug, serde::Serialize)]
pub struct SwitchLink {
    pub code: &'static str,
    pub label: &'static str,
    pub href: String,
    pub current: bool,
}

/// The language switch for a page at `path?query`: the same address with `lang=` set, the
/// other query parameters kept.
pub fn switch_links(path: &str, query: Option<&str>, current: Lang) -> Vec<SwitchLink> {
    Lang::ALL
        .iter()
        .map(|(l, label)| {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
                if k != "lang" {
                    q.append_pair(&k, &v);
                }
            }
            q.append_pair("lang", l.code());
            SwitchLink {
                code: l.code(),
                label,
                href: format!("{path}?{}", q.finish()),
                current: *l == current,
            }
        })
        .collect()
}
