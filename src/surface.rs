//! The routes each request dispatcher answers, declared as a `ROUTES` table next to its
//! `match` (the proxy's reserved paths, the pool, the pool's console, the admin listener).
//! The tables change nothing about how a request is answered: they exist so that a test can
//! request every route without a session and hold the answers against SECURITY.md's
//! "Unauthenticated surface" table, and each dispatcher's unit test checks that its table and
//! its `match` name the same paths ([`arms`] reads the `match` from the source file).

/// One route of a dispatcher.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The methods it answers, space-separated (`GET` includes `HEAD`); `*`: any method.
    pub methods: &'static str,
    /// The path as matched, relative to the dispatcher's base (the pool's issuer path, the
    /// console's `{issuer}/admin`).
    pub path: &'static str,
    /// `path` is a prefix: anything below it is routed here.
    pub prefix: bool,
}

impl Route {
    pub const fn exact(methods: &'static str, path: &'static str) -> Route {
        Route {
            methods,
            path,
            prefix: false,
        }
    }

    pub const fn prefix(methods: &'static str, path: &'static str) -> Route {
        Route {
            methods,
            path,
            prefix: true,
        }
    }
}

/// One arm of a dispatcher's `match`, as read from its source: the path tokens of its
/// pattern (a string literal's text, or a `paths::NAME` constant's name), whether each is a
/// prefix (`starts_with`), and the methods its guard names (`get`/`post`; `*` for none).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Arm {
    pub token: String,
    pub prefix: bool,
    pub methods: String,
}

/// Reads the arms of the `match` that starts on the first line containing `marker` in
/// `source`: every line at the match's own brace depth that starts a pattern with a string
/// literal, a `paths::` constant or a guarded binding (`p if …`). The catch-all `_` is skipped.
#[cfg(test)]
pub(crate) fn arms(source: &str, marker: &str) -> Vec<Arm> {
    let mut lines = source.lines().skip_while(|l| !l.contains(marker));
    assert!(lines.next().is_some(), "no line contains {marker:?}");
    let mut depth = 1i32;
    let mut out = Vec::new();
    for line in lines {
        let t = line.trim_start();
        if depth == 1
            && let Some((pattern, _)) = t.split_once("=>")
            && (t.starts_with('"') || t.starts_with("paths::") || t.starts_with("p if "))
        {
            let (pat, guard) = match pattern.find(" if ") {
                Some(i) if !t.starts_with("p if ") => (&pattern[..i], &pattern[i..]),
                _ => (pattern, pattern),
            };
            let words: Vec<&str> = guard
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .collect();
            let methods = match (words.contains(&"get"), words.contains(&"post")) {
                (true, true) => "GET POST",
                (true, false) => "GET",
                (false, true) => "POST",
                (false, false) => "*",
            };
            for (token, prefix) in tokens(pat) {
                out.push(Arm {
                    token,
                    prefix,
                    methods: methods.to_string(),
                });
            }
        }
        for c in line.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
        }
        if depth <= 0 {
            break;
        }
    }
    out.sort();
    out
}

/// The string literals and `paths::NAME` constants of a pattern, each with whether it is
/// the argument of `starts_with`.
#[cfg(test)]
fn tokens(pattern: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut rest = pattern;
    loop {
        let lit = rest.find('"');
        let cst = rest.find("paths::");
        let (at, is_lit) = match (lit, cst) {
            (Some(a), Some(b)) if a < b => (a, true),
            (Some(a), None) => (a, true),
            (_, Some(b)) => (b, false),
            (None, None) => break,
        };
        let prefix = rest[..at].ends_with("starts_with(");
        if is_lit {
            let body = &rest[at + 1..];
            let end = body.find('"').unwrap_or(body.len());
            out.push((body[..end].to_string(), prefix));
            rest = body.get(end + 1..).unwrap_or("");
        } else {
            let body = &rest[at..];
            let end = body
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != ':')
                .unwrap_or(body.len());
            out.push((body[..end].to_string(), prefix));
            rest = &body[end..];
        }
    }
    out
}

/// The arms a `ROUTES` table declares, in the form [`arms`] reads them: `path_token` gives
/// the token the `match` uses for a path (a literal's text, or a constant's name).
#[cfg(test)]
pub(crate) fn declared(routes: &[Route], path_token: impl Fn(&str) -> String) -> Vec<Arm> {
    let mut out: Vec<Arm> = routes
        .iter()
        .map(|r| Arm {
            token: path_token(r.path),
            prefix: r.prefix,
            methods: r.methods.to_string(),
        })
        .collect();
    out.sort();
    out
}

/// The token [`arms`] reads for a path: the name of the constant in `names` that holds it,
/// else the path itself (a literal).
#[cfg(test)]
pub(crate) fn token_in<'a>(names: &'a [(&str, &str)]) -> impl Fn(&str) -> String + 'a {
    move |p| {
        names
            .iter()
            .find(|(_, v)| *v == p)
            .map(|(n, _)| n.to_string())
            .unwrap_or_else(|| p.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_literal_constant_prefix_and_guarded_arms() {
        let src = r#"
        fn f() {
            match sub {
                "/a" if get => one(),
                "/b" | "/c" if get || post => {
                    two({ 1 })
                }
                paths::START => three(),
                p if p.starts_with(paths::KEYS) => four(),
                p if post && p.starts_with("/user/") => five(),
                "/d" if post && self.cfg.flag => six(),
                _ => none(),
            }
            match other {
                "/not-this" => x(),
            }
        }"#;
        let got: Vec<(String, bool, String)> = arms(src, "match sub {")
            .into_iter()
            .map(|a| (a.token, a.prefix, a.methods))
            .collect();
        let want = [
            ("/a", false, "GET"),
            ("/b", false, "GET POST"),
            ("/c", false, "GET POST"),
            ("/d", false, "POST"),
            ("/user/", true, "POST"),
            ("paths::KEYS", true, "*"),
            ("paths::START", false, "*"),
        ];
        let want: Vec<(String, bool, String)> = want
            .iter()
            .map(|(t, p, m)| (t.to_string(), *p, m.to_string()))
            .collect();
        assert_eq!(got, want);
    }
}
