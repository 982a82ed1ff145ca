//! Rules that can never match: a later rule every request of which an earlier rule always
//! takes (first match wins). Reported by `portcullis check` and logged at start-up as
//! warnings, not errors: such a rule is dead but harmless, and a configuration that served
//! yesterday must still start after an upgrade. Only certain cases are reported — an earlier
//! rule without method, header, query or source conditions whose hosts and path cover the
//! later rule's — so a warning is never a false alarm; a catch-all at the end is fine.

use super::wildcard::{Pattern, has_wildcard};
use crate::config::{Conditions, Problem, RouteConfig};

/// One warning per route that an earlier route always takes.
pub fn unreachable(routes: &[RouteConfig]) -> Vec<Problem> {
    let mut out = Vec::new();
    for (j, later) in routes.iter().enumerate() {
        if let Some(earlier) = routes[..j]
            .iter()
            .find(|e| covers(&e.conditions, &later.conditions))
        {
            out.push(Problem {
                path: format!("routes[{}]", later.index),
                message: format!(
                    "can never match: routes[{}] ({:?}) comes first and matches every request this route would",
                    earlier.index, earlier.name
                ),
            });
        }
    }
    out
}

/// `a` matches every request `b` matches.
fn covers(a: &Conditions, b: &Conditions) -> bool {
    !a.has_request_conditions() && hosts_cover(&a.hosts, &b.hosts) && path_covers(a, b)
}

fn hosts_cover(a: &[String], b: &[String]) -> bool {
    if a.is_empty() {
        return true;
    }
    // `b` matches any host, which `a`'s list cannot cover (short of a bare `*`).
    if b.is_empty() {
        return a.iter().any(|p| p.bytes().all(|c| c == b'*'));
    }
    b.iter().all(|h| {
        a.iter().any(|p| {
            if has_wildcard(h) {
                p == h || p.bytes().all(|c| c == b'*')
            } else {
                Pattern::new(p, true).matches(h)
            }
        })
    })
}

fn path_covers(a: &Conditions, b: &Conditions) -> bool {
    // What every path `b` matches starts with.
    let b_head = match &b.path_pattern {
        None => b.path.as_str(),
        Some(p) => &p[..p.find(['*', '?']).unwrap_or(p.len())],
    };
    match &a.path_pattern {
        None => b_head.starts_with(a.path.as_str()),
        Some(p) if p == b.path_pattern.as_deref().unwrap_or("") => true,
        Some(p) => {
            // `a` is `LITERAL*`: every path starting with LITERAL.
            let Some(lit) = p.strip_suffix('*') else {
                return false;
            };
            !has_wildcard(lit) && b_head.starts_with(lit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Conditions;

    fn c(hosts: &[&str], path: &str, pattern: Option<&str>) -> Conditions {
        Conditions {
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            path: path.into(),
            path_pattern: pattern.map(Into::into),
            ..Conditions::default()
        }
    }

    #[test]
    fn certain_shadows_only() {
        let yes = [
            (c(&[], "/", None), c(&["a.test"], "/x/", None)),
            (c(&[], "/api/", None), c(&[], "/api/v1/", None)),
            (c(&["*.test"], "/", None), c(&["a.test"], "/", None)),
            (
                c(&["a.test", "b.test"], "/", None),
                c(&["b.test"], "/x", None),
            ),
            (c(&[], "/img/", None), c(&[], "/", Some("/img/*.png"))),
            (c(&[], "/", Some("/img/*")), c(&[], "/img/a/", None)),
        ];
        for (a, b) in yes {
            assert!(covers(&a, &b), "{a:?} should cover {b:?}");
        }
        let mut methods = c(&[], "/", None);
        methods.methods = vec![http::Method::GET];
        let no = [
            (c(&["a.test"], "/", None), c(&[], "/", None)),
            (c(&[], "/api/v1/", None), c(&[], "/api/", None)),
            (c(&["a.test"], "/", None), c(&["*.test"], "/", None)),
            (methods, c(&[], "/x/", None)),
            (c(&[], "/", Some("/img/*.png")), c(&[], "/img/", None)),
            (c(&[], "/API/", None), c(&[], "/api/", None)),
        ];
        for (a, b) in no {
            assert!(!covers(&a, &b), "{a:?} must not cover {b:?}");
        }
    }
}
