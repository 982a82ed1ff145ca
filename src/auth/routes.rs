//! The ordered route table: first route whose host (if any) and path prefix match wins.
//! Built once at start-up; matching allocates nothing. Hosts are compared canonically: the
//! configured ones were made canonical at load, the request's once when it arrived.

use crate::config::RouteConfig;

pub struct RouteTable {
    routes: Vec<RouteConfig>,
}

impl RouteTable {
    pub fn new(routes: Vec<RouteConfig>) -> RouteTable {
        RouteTable { routes }
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

    /// First matching route for a request's canonical host name (no port; see
    /// [`crate::http::host::Host::name`]) and normalised path. Route hosts are canonical since
    /// load, so the comparison is plain equality.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&RouteConfig> {
        self.routes.iter().find(|r| {
            path.starts_with(r.path.as_str())
                && match (&r.host, host) {
                    (None, _) => true,
                    (Some(want), Some(h)) => want == h,
                    (Some(_), None) => false,
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Authorization, OnUnauthenticated, Upstream};
    use crate::http::host::Host;
    use std::time::Duration;

    pub fn route(i: usize, path: &str, host: Option<&str>) -> RouteConfig {
        RouteConfig {
            index: i,
            name: format!("{}{path}", host.unwrap_or("")),
            path: path.into(),
            host: host.map(Into::into),
            upstream: Upstream::File("/".into()),
            on_unauthenticated: OnUnauthenticated::Allow,
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            providers: vec![],
            authorization: Authorization::default(),
            bearer: None,
        }
    }

    #[test]
    fn first_match_wins_with_host_and_case_sensitive_paths() {
        let t = RouteTable::new(vec![
            route(0, "/public/", None),
            route(1, "/", Some("admin.example.com")),
            route(2, "/", None),
        ]);
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
            assert_eq!(t.find(name, path).map(|r| r.index), want, "{host:?} {path}");
        }
    }
}
