//! The indexed table against a plain first-match scan, on fixed cases and on random tables.

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::*;
use crate::config::{Action, Authorization, OnUnauthenticated, Upstream};
use crate::http::host::Host;

pub fn route(i: usize, c: Conditions) -> RouteConfig {
    RouteConfig {
        index: i,
        name: format!("r{i}"),
        conditions: c,
        action: Action::Forward(Upstream::File("/".into())),
        cors_preflight: false,
        on_unauthenticated: OnUnauthenticated::Allow,
        connect_timeout: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        providers: vec![],
        authorization: Authorization::default(),
        bearer: None,
    }
}

fn cond(hosts: &[&str], path: &str) -> Conditions {
    Conditions {
        hosts: hosts.iter().map(|s| s.to_string()).collect(),
        path: path.into(),
        ..Conditions::default()
    }
}

fn get<'a>(host: Option<&'a str>, path: &'a str, headers: &'a HeaderMap) -> Request<'a> {
    Request {
        host,
        path,
        query: None,
        method: &Method::GET,
        headers,
        peer: IpAddr::from([127, 0, 0, 1]),
    }
}

#[test]
fn first_match_wins_with_host_and_case_sensitive_paths() {
    let t = RouteTable::new(
        vec![
            route(0, cond(&[], "/public/")),
            route(1, cond(&["admin.example.com"], "/")),
            route(2, cond(&[], "/")),
        ],
        vec![],
    );
    let h = HeaderMap::new();
    let cases = [
        (None, "/public/x", Some(0)),
        (Some("admin.example.com:8443"), "/public/x", Some(0)),
        (Some("ADMIN.example.com."), "/x", Some(1)),
        (Some("Admin.Example.com:80"), "/x", Some(1)),
        (Some("admin.example.com.:8443"), "/x", Some(1)),
        (Some("app.example.com"), "/x", Some(2)),
        (None, "/PUBLIC/x", Some(2)),
    ];
    for (host, path, want) in cases {
        let canonical = host.map(|h| Host::parse(h, 80).unwrap().unwrap());
        let name = canonical.as_ref().map(Host::name);
        assert_eq!(
            t.find(&get(name, path, &h)).map(|r| r.index),
            want,
            "{host:?} {path}"
        );
    }
}

#[test]
fn an_earlier_general_rule_beats_a_later_specific_one() {
    let t = RouteTable::new(
        vec![
            route(0, cond(&[], "/a/")),
            route(1, cond(&["x.test"], "/a/b/")),
            route(
                2,
                Conditions {
                    path_pattern: Some("/a/b/*".into()),
                    ..cond(&[], "/")
                },
            ),
        ],
        vec![],
    );
    let h = HeaderMap::new();
    assert_eq!(
        t.find(&get(Some("x.test"), "/a/b/c", &h)).map(|r| r.index),
        Some(0)
    );
}

/// A small deterministic generator (xorshift), so a failure can be replayed from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() % xs.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const HOSTS: &[&str] = &["a.test", "b.test", "c.other", "*.test", "?.test", "*"];
const PREFIXES: &[&str] = &["/", "/a", "/a/", "/a/b", "/b/", "/ab", "/a/b/c"];
const PATTERNS: &[&str] = &["/a/*", "/*/b", "/a?", "/*", "/b/*/c", "/a/b"];
const REQ_HOSTS: &[Option<&str>] = &[
    None,
    Some("a.test"),
    Some("b.test"),
    Some("c.other"),
    Some("zz.test"),
];
const REQ_PATHS: &[&str] = &[
    "/", "/a", "/a/", "/a/b", "/a/b/c", "/ab", "/b/x/c", "/b/", "/c",
];

fn random_conditions(rng: &mut Rng) -> Conditions {
    let mut c = Conditions {
        path: rng.pick(PREFIXES).to_string(),
        ..Conditions::default()
    };
    if rng.chance(60) {
        let n = 1 + rng.next() % 2;
        c.hosts = (0..n).map(|_| rng.pick(HOSTS).to_string()).collect();
    }
    if rng.chance(25) {
        c.path_pattern = Some(rng.pick(PATTERNS).to_string());
    }
    if rng.chance(15) {
        c.methods = vec![rng.pick(&[Method::GET, Method::POST]).clone()];
    }
    if rng.chance(15) {
        c.headers = vec![(
            HeaderName::from_static("x-env"),
            vec![rng.pick(&["beta", "canary-*"]).to_string()],
        )];
    }
    if rng.chance(10) {
        c.query = vec![("v".into(), vec![rng.pick(&["1", "2*"]).to_string()])];
    }
    if rng.chance(10) {
        c.source_ips = vec![rng.pick(&["10.0.0.0/8", "192.168.0.0/16"]).parse().unwrap()];
    }
    c
}

#[test]
fn indexed_matching_equals_a_linear_first_match_scan() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let envs = ["beta", "canary-7", "prod"];
    let queries = [None, Some("v=1"), Some("v=2x&w=1"), Some("V=20")];
    let peers: [IpAddr; 3] = [
        IpAddr::from([10, 1, 2, 3]),
        IpAddr::from([192, 168, 1, 1]),
        IpAddr::from([127, 0, 0, 1]),
    ];
    let mut checked = 0;
    for _table in 0..300 {
        let n = 1 + (rng.next() % 12) as usize;
        let routes = (0..n)
            .map(|i| route(i, random_conditions(&mut rng)))
            .collect();
        let t = RouteTable::new(routes, vec!["127.0.0.0/8".parse().unwrap()]);
        for _req in 0..40 {
            let mut headers = HeaderMap::new();
            if rng.chance(50) {
                headers.insert(
                    "x-env",
                    HeaderValue::from_static(envs[(rng.next() % 3) as usize]),
                );
            }
            if rng.chance(30) {
                headers.insert("x-forwarded-for", HeaderValue::from_static("10.9.9.9"));
            }
            let method = rng.pick(&[Method::GET, Method::POST]).clone();
            let req = Request {
                host: *rng.pick(REQ_HOSTS),
                path: REQ_PATHS[(rng.next() % REQ_PATHS.len() as u64) as usize],
                query: *rng.pick(&queries),
                method: &method,
                headers: &headers,
                peer: *rng.pick(&peers),
            };
            assert_eq!(
                t.find(&req).map(|r| r.index),
                t.find_linear(&req).map(|r| r.index),
                "host {:?} path {} table {:?}",
                req.host,
                req.path,
                t.routes.iter().map(|r| &r.conditions).collect::<Vec<_>>()
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 12_000);
}

#[test]
fn conditions_each_decide() {
    let mut c = cond(&["*.example.com"], "/");
    c.methods = vec![Method::POST];
    c.headers = vec![(
        HeaderName::from_static("x-env"),
        vec!["beta".into(), "canary-*".into()],
    )];
    c.query = vec![("version".into(), vec!["2".into()])];
    c.source_ips = vec!["10.0.0.0/8".parse().unwrap()];
    let t = RouteTable::new(vec![route(0, c)], vec!["127.0.0.1/32".parse().unwrap()]);
    let mut h = HeaderMap::new();
    h.insert("x-env", HeaderValue::from_static("Canary-3"));
    let ok = Request {
        host: Some("app.example.com"),
        path: "/x",
        query: Some("a=b&Version=2"),
        method: &Method::POST,
        headers: &h,
        peer: IpAddr::from([10, 0, 0, 5]),
    };
    assert!(t.find(&ok).is_some());
    let other = HeaderMap::new();
    let miss = |r: Request<'_>| t.find(&r).is_none();
    assert!(miss(Request {
        host: Some("example.com"),
        ..ok
    }));
    assert!(miss(Request {
        method: &Method::GET,
        ..ok
    }));
    assert!(miss(Request {
        query: Some("version=3"),
        ..ok
    }));
    assert!(miss(Request { query: None, ..ok }));
    assert!(miss(Request {
        peer: IpAddr::from([11, 0, 0, 5]),
        ..ok
    }));
    assert!(miss(Request {
        headers: &other,
        ..ok
    }));
    // A trusted proxy's X-Forwarded-For names the client.
    let mut xff = h.clone();
    xff.insert("x-forwarded-for", HeaderValue::from_static("10.1.1.1"));
    let via_proxy = Request {
        headers: &xff,
        peer: IpAddr::from([127, 0, 0, 1]),
        ..ok
    };
    assert!(t.find(&via_proxy).is_some());
    let mut forged = h.clone();
    forged.insert("x-forwarded-for", HeaderValue::from_static("10.1.1.1"));
    let untrusted = Request {
        headers: &forged,
        peer: IpAddr::from([8, 8, 8, 8]),
        ..ok
    };
    assert!(t.find(&untrusted).is_none());
}
