//! Security invariant "every unauthenticated endpoint is listed in SECURITY.md" (issue 16):
//! every route the dispatchers declare (their `ROUTES` tables, which their own unit tests keep
//! equal to their `match`) is requested without a session — GET and POST, a POST with a valid
//! anonymous CSRF pair so that the CSRF check is not what stops it — against the real binary
//! with the pool, its console, passkeys and the admin listener on. An answer other than 401,
//! 403, 404, 405 or a redirect to a sign-in page must have a row, for that method and path, in
//! SECURITY.md's "Unauthenticated surface" table; and every row of that table must name a
//! route that exists.

use std::collections::{BTreeMap, BTreeSet};

use portcullis::surface::Route;

use crate::on_both;
use crate::pool_support::{self, Backend, Server, browser, form, get_page};

/// The pool's issuer path in the harness (and in the table): `public_url` + `/oauth2/pool`.
const POOL: &str = "/oauth2/pool";

/// A route of the running server, as the table names it.
#[derive(Debug, Clone)]
struct Probe {
    admin: bool,
    methods: String,
    /// The path as the table writes it: prefixes end in `{…}`.
    label: String,
    /// A concrete path to request.
    path: String,
}

fn probes(kid: &str) -> Vec<Probe> {
    let mut out = Vec::new();
    let mut add = |admin: bool, base: &str, r: &Route, fill: &str| {
        let (label, path) = if r.prefix {
            (
                format!("{base}{}{{…}}", r.path),
                format!("{base}{}{fill}", r.path),
            )
        } else {
            (format!("{base}{}", r.path), format!("{base}{}", r.path))
        };
        out.push(Probe {
            admin,
            methods: r.methods.to_string(),
            label,
            path,
        });
    };
    for r in portcullis::auth::endpoints::ROUTES {
        let fill = if r.path == "/oauth2/public-keys/" {
            kid
        } else {
            "x"
        };
        add(false, "", r, fill);
    }
    for r in portcullis::pool::ROUTES {
        if r.prefix && r.path == "/admin/" {
            // The console's own routes.
            for c in portcullis::pool::CONSOLE_ROUTES {
                add(false, &format!("{POOL}/admin"), c, "alice");
            }
        } else {
            add(false, POOL, r, "x");
        }
    }
    for r in portcullis::server::admin::ROUTES {
        add(true, "", r, "users");
    }
    // A dispatcher may route one path in several arms (GET and POST apart): one probe each.
    let mut merged: Vec<Probe> = Vec::new();
    for p in out {
        match merged
            .iter_mut()
            .find(|m| m.admin == p.admin && m.label == p.label)
        {
            Some(m) => m.methods.push_str(&format!(" {}", p.methods)),
            None => merged.push(p),
        }
    }
    merged
}

/// `{kid}`, `{…}` and the like all read as one placeholder.
fn canonical(path: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in path.chars() {
        match c {
            '{' => {
                inside = true;
                out.push_str("{}");
            }
            '}' => inside = false,
            _ if inside => {}
            _ => out.push(c),
        }
    }
    out
}

/// The table's rows: canonical path → methods (`*` for any).
fn table() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/SECURITY.md"))
        .expect("read SECURITY.md");
    let section = text
        .split("\n## Unauthenticated surface\n")
        .nth(1)
        .expect("SECURITY.md has a \"## Unauthenticated surface\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut rows: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cell = line[3..].split('`').next().unwrap_or("");
        let words: Vec<&str> = cell.split([' ', ',']).filter(|w| !w.is_empty()).collect();
        let Some((path, methods)) = words.split_last() else {
            continue;
        };
        assert!(
            path.starts_with('/') && !methods.is_empty(),
            "a row's first cell is `METHOD… /path`: {line}"
        );
        let entry = rows.entry(canonical(path)).or_default();
        for m in methods {
            assert!(
                entry.insert(m.to_string()),
                "{m} {path} has two rows in SECURITY.md"
            );
        }
    }
    rows
}

/// Whether an answer is "no such route here" or "sign in first". Every other answer — a 401
/// or 403 included, since a refused form or token has still been read and checked — is work
/// done for an anonymous client and needs its row.
fn closed(status: u16, location: Option<&str>) -> bool {
    match status {
        404 | 405 => true,
        301..=303 | 307 | 308 => location.is_some_and(|l| {
            let path = l.split('?').next().unwrap_or(l);
            path.ends_with(&format!("{POOL}/login")) || path.ends_with("/oauth2/start")
        }),
        _ => false,
    }
}

async fn every_route_that_answers_without_a_session_is_in_the_table(backend: Backend) {
    let s = Server::start(backend, "passkeys = true\nadmin_console = true\n").await;
    let rows = table();
    let anon = browser();
    let (_, jwks) = get_page(&anon, &s.url("/oauth2/jwks.json")).await;
    let jwks: serde_json::Value = serde_json::from_str(&jwks).expect("the JWKS is JSON");
    let kid = jwks["keys"][0]["kid"].as_str().expect("a kid").to_string();
    // An anonymous browser's CSRF pair, as anyone gets it from the sign-in page.
    let (_, login) = get_page(&anon, &s.url(&format!("{POOL}/login"))).await;
    let (_, csrf) = form(&login, &s.base, "/login");

    let all = probes(&kid);
    let mut open = Vec::new();
    let mut missing = Vec::new();
    for p in &all {
        let base = if p.admin { &s.admin } else { &s.base };
        for method in ["GET", "POST"] {
            let url = format!("{base}{}", p.path);
            let req = if method == "GET" {
                anon.get(&url)
            } else {
                anon.post(&url).form(&[("csrf_token", csrf.as_str())])
            };
            let r = req.send().await.expect("request");
            let status = r.status().as_u16();
            let location = r
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if closed(status, location.as_deref()) {
                continue;
            }
            open.push(format!("{method} {} -> {status}", p.label));
            let listed = rows
                .get(&canonical(&p.label))
                .is_some_and(|m| m.contains(method) || m.contains("*"));
            if !listed {
                missing.push(format!(
                    "{method} {} answers {status} without a session (location {location:?})",
                    p.label
                ));
            }
        }
    }
    eprintln!("answering without a session:\n  {}", open.join("\n  "));
    assert!(rows.len() > 10, "the table has too few rows: {rows:?}");
    assert!(
        missing.is_empty(),
        "routes that answer without a session but have no row in SECURITY.md's \
         \"Unauthenticated surface\" table:\n  {}",
        missing.join("\n  ")
    );

    // The reverse: every row names a route that exists, with methods it answers.
    let mut stale = Vec::new();
    for (path, methods) in &rows {
        let route = all.iter().find(|p| canonical(&p.label) == *path);
        match route {
            None => stale.push(format!("{path}: no such route")),
            Some(p) => {
                for m in methods {
                    let answers = m == "*" || p.methods.split(' ').any(|x| x == m || x == "*");
                    if !answers {
                        stale.push(format!("{m} {path}: the route answers {}", p.methods));
                    }
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "rows of SECURITY.md's \"Unauthenticated surface\" table that name no route:\n  {}",
        stale.join("\n  ")
    );
}

on_both!(
    unauthenticated_surface,
    every_route_that_answers_without_a_session_is_in_the_table
);
