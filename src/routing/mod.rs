//! The listener's rule table: the first route (in file order) whose conditions all hold wins.
//!
//! Built once per configuration; every pattern is compiled at build time and matching
//! allocates nothing. So that a request costs the same whether it matches the first of a
//! thousand rules or the last, the table is indexed:
//!
//! - rules with exact host names sit in one path-prefix trie per host name (a hash map finds
//!   it), rules without a host in one more; a `path_pattern` counts by its text before the
//!   first wildcard. A request walks its host's trie and the host-less one along its path;
//! - rules with a wildcard host sit in a trie of the pattern's text after its last wildcard,
//!   reversed (`*.example.com` under `moc.elpmaxe.`), which a request walks along its host
//!   written backwards; only a pattern ending in a wildcard is tried for every request.
//!
//! Each walk yields the earliest rule that fully matches on its way (checking only rules
//! earlier than the best found so far); the earliest of those is the answer — exactly the rule a linear
//! first-match scan would choose (a property test below compares the two). Host names are
//! canonical on both sides (lower case, no trailing dot, no port), paths are the normalised
//! ones the upstream receives, and prefixes and path patterns are case-sensitive.

pub mod action;
pub mod shadow;
pub mod wildcard;

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName, Method};
use ipnet::IpNet;

use crate::config::{Conditions, RouteConfig};
use wildcard::Pattern;

/// What a rule can look at in a request. `host`: the canonical host name (no port);
/// `path`: the normalised path, without the query.
pub struct Request<'a> {
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// The TCP peer; the client address is derived from it (and `X-Forwarded-For` when the
    /// peer is a trusted proxy) only when a rule asks for it.
    pub peer: IpAddr,
}

enum PathMatch {
    Prefix(Box<str>),
    Pattern(Pattern),
}

/// One route's conditions, compiled.
struct Rule {
    hosts: Vec<Pattern>,
    path: PathMatch,
    methods: Vec<Method>,
    headers: Vec<(HeaderName, Vec<Pattern>)>,
    query: Vec<(Box<str>, Vec<Pattern>)>,
    source_ips: Vec<IpNet>,
}

/// Per-request facts computed at most once, when a rule first needs them.
struct Lazy<'a> {
    req: &'a Request<'a>,
    trusted: &'a [IpNet],
    client: Cell<Option<IpAddr>>,
}

impl Lazy<'_> {
    fn client_ip(&self) -> IpAddr {
        if let Some(ip) = self.client.get() {
            return ip;
        }
        let ip = crate::http::client_ip::client_ip(self.req.headers, self.req.peer, self.trusted);
        self.client.set(Some(ip));
        ip
    }
}

impl Rule {
    fn compile(c: &Conditions) -> Rule {
        let values = |v: &Vec<String>| v.iter().map(|s| Pattern::new(s, true)).collect();
        Rule {
            hosts: c.hosts.iter().map(|h| Pattern::new(h, true)).collect(),
            path: match &c.path_pattern {
                Some(p) => PathMatch::Pattern(Pattern::new(p, false)),
                None => PathMatch::Prefix(c.path.as_str().into()),
            },
            methods: c.methods.clone(),
            headers: c
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), values(v)))
                .collect(),
            query: c
                .query
                .iter()
                .map(|(k, v)| (k.as_str().into(), values(v)))
                .collect(),
            source_ips: c.source_ips.clone(),
        }
    }

    /// What every path this rule matches starts with.
    fn path_head(&self) -> &str {
        match &self.path {
            PathMatch::Prefix(p) => p,
            PathMatch::Pattern(p) => p.literal_head(),
        }
    }

    fn host_matches(&self, host: Option<&str>) -> bool {
        self.hosts.is_empty() || host.is_some_and(|h| self.hosts.iter().any(|p| p.matches(h)))
    }

    fn path_matches(&self, path: &str) -> bool {
        match &self.path {
            PathMatch::Prefix(p) => path.starts_with(&**p),
            PathMatch::Pattern(p) => p.matches(path),
        }
    }

    /// Everything but host and path.
    fn request_matches(&self, l: &Lazy<'_>) -> bool {
        let r = l.req;
        (self.methods.is_empty() || self.methods.iter().any(|m| m == r.method))
            && self.headers.iter().all(|(name, pats)| {
                // Several copies of a header: any one may match (ALB searches them in order).
                r.headers.get_all(name).iter().any(|v| {
                    v.to_str()
                        .is_ok_and(|v| pats.iter().any(|p| p.matches(v.trim())))
                })
            })
            && self
                .query
                .iter()
                .all(|(key, pats)| query_matches(r.query, key, pats))
            && (self.source_ips.is_empty() || {
                let ip = l.client_ip();
                self.source_ips.iter().any(|n| n.contains(&ip))
            })
    }

    fn matches(&self, l: &Lazy<'_>) -> bool {
        self.host_matches(l.req.host) && self.path_matches(l.req.path) && self.request_matches(l)
    }
}

/// One `key=value` of the query (key compared case-insensitively, both percent-decoded; `+`
/// is a plus) whose value matches one of `pats`. Decoding that is not UTF-8 never matches.
fn query_matches(query: Option<&str>, key: &str, pats: &[Pattern]) -> bool {
    let Some(q) = query else { return false };
    q.split('&').any(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let same_key = if k.contains('%') {
            percent_encoding::percent_decode_str(k)
                .decode_utf8()
                .is_ok_and(|k| k.eq_ignore_ascii_case(key))
        } else {
            k.eq_ignore_ascii_case(key)
        };
        same_key
            && if v.contains('%') {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8()
                    .is_ok_and(|v| pats.iter().any(|p| p.matches(&v)))
            } else {
                pats.iter().any(|p| p.matches(v))
            }
    })
}

/// A byte trie; each node lists, in file order, the rules whose key ends there. Keys are path
/// prefixes (a `path_pattern`'s text before its first wildcard counts as its prefix) or, for
/// wildcard hosts, the pattern's text after its last wildcard, reversed.
#[derive(Default)]
struct Trie {
    nodes: Vec<Node>,
}

#[derive(Default)]
struct Node {
    /// Sorted by byte, for a binary search.
    children: Vec<(u8, u32)>,
    rules: Vec<u32>,
}

impl Trie {
    /// Adds `rule` under `key` (once: a rule naming two hosts of one key is kept once). Rules
    /// are added in file order, so each node's list stays sorted.
    fn insert(&mut self, key: impl Iterator<Item = u8>, rule: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(Node::default());
        }
        let mut at = 0usize;
        for b in key {
            at = match self.nodes[at].children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => self.nodes[at].children[i].1 as usize,
                Err(i) => {
                    let next = self.nodes.len();
                    self.nodes.push(Node::default());
                    self.nodes[at].children.insert(i, (b, next as u32));
                    next
                }
            };
        }
        if self.nodes[at].rules.last() != Some(&rule) {
            self.nodes[at].rules.push(rule);
        }
    }

    /// Walks `key` from the root: at each node on the way, the earliest of its rules before
    /// `best` for which `check` holds becomes `best`.
    fn earliest(
        &self,
        key: impl Iterator<Item = u8>,
        mut best: u32,
        check: impl Fn(u32) -> bool,
    ) -> u32 {
        let Some(root) = self.nodes.first() else {
            return best;
        };
        let mut node = root;
        let mut key = key;
        loop {
            for &ri in &node.rules {
                if ri >= best {
                    break;
                }
                if check(ri) {
                    best = ri;
                    break;
                }
            }
            let Some(b) = key.next() else { break };
            match node.children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => node = &self.nodes[node.children[i].1 as usize],
                Err(_) => break,
            }
        }
        best
    }
}

pub struct RouteTable {
    routes: Vec<RouteConfig>,
    rules: Vec<Rule>,
    /// Per exact host name: its rules by path prefix.
    by_host: HashMap<Box<str>, Trie>,
    /// Rules without a host condition, by path prefix.
    any_host: Trie,
    /// Rules with a wildcard host, by the host pattern's literal tail (reversed).
    wild_hosts: Trie,
    trusted_proxies: Vec<IpNet>,
}

impl RouteTable {
    /// `trusted_proxies`: whose `X-Forwarded-For` names the client for `source_ips`.
    pub fn new(routes: Vec<RouteConfig>, trusted_proxies: Vec<IpNet>) -> RouteTable {
        let rules: Vec<Rule> = routes
            .iter()
            .map(|r| Rule::compile(&r.conditions))
            .collect();
        let mut by_host: HashMap<Box<str>, Trie> = HashMap::new();
        let mut any_host = Trie::default();
        let mut wild_hosts = Trie::default();
        for (i, rule) in rules.iter().enumerate() {
            let i = i as u32;
            let head = rule.path_head().bytes();
            if rule.hosts.is_empty() {
                any_host.insert(head, i);
                continue;
            }
            for h in &rule.hosts {
                if h.is_literal() {
                    by_host
                        .entry(h.as_str().into())
                        .or_default()
                        .insert(head.clone(), i);
                } else {
                    let s = h.as_str();
                    let tail = &s[s.rfind(['*', '?']).map_or(0, |at| at + 1)..];
                    wild_hosts.insert(tail.bytes().rev(), i);
                }
            }
        }
        RouteTable {
            routes,
            rules,
            by_host,
            any_host,
            wild_hosts,
            trusted_proxies,
        }
    }

    pub fn get(&self, index: usize) -> &RouteConfig {
        &self.routes[index]
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &RouteConfig> {
        self.routes.iter()
    }

    /// The first route (in file order) whose conditions all hold for `req`.
    pub fn find(&self, req: &Request<'_>) -> Option<&RouteConfig> {
        let l = Lazy {
            req,
            trusted: &self.trusted_proxies,
            client: Cell::new(None),
        };
        let rules = &self.rules;
        let path = req.path.bytes();
        // Found in a path trie: the host is right and the path starts with the rule's head.
        let rest = |ri: u32| {
            let r = &rules[ri as usize];
            r.path_matches(req.path) && r.request_matches(&l)
        };
        let mut best = u32::MAX;
        if let Some(host) = req.host {
            if let Some(tree) = self.by_host.get(host) {
                best = tree.earliest(path.clone(), best, rest);
            }
            best = self.wild_hosts.earliest(host.bytes().rev(), best, |ri| {
                rules[ri as usize].matches(&l)
            });
        }
        best = self.any_host.earliest(path, best, rest);
        self.routes.get(best as usize)
    }

    /// The same answer by a plain first-match scan (the reference the index is tested
    /// against).
    #[cfg(test)]
    fn find_linear(&self, req: &Request<'_>) -> Option<&RouteConfig> {
        let l = Lazy {
            req,
            trusted: &self.trusted_proxies,
            client: Cell::new(None),
        };
        (0..self.rules.len())
            .find(|&i| self.rules[i].matches(&l))
            .map(|i| &self.routes[i])
    }
}

#[cfg(test)]
mod tests;
