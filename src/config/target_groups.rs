//! `[target_groups.NAME]` and the route keys that forward to them (`target_group`, `forward`,
//! `forward_stickiness`): the serde schema and its validation into typed values, with ALB's
//! names and defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::Problems;

/// ALB's limit on a weight (targets in a group, groups in a `forward`).
pub const MAX_WEIGHT: u32 = 999;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargetGroup {
    pub targets: Option<Vec<RawTarget>>,
    pub algorithm: Option<String>,
    pub health_check: Option<RawHealthCheck>,
    pub stickiness: Option<RawStickiness>,
    pub deregistration_delay: Option<String>,
}

/// `"http://host:port"` or `{ url = "...", weight = N }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawTarget {
    Url(String),
    Weighted(RawWeightedTarget),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeightedTarget {
    pub url: String,
    pub weight: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy_threshold: Option<i64>,
    pub unhealthy_threshold: Option<i64>,
    pub matcher: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStickiness {
    pub duration: Option<String>,
}

/// One entry of a route's `forward = [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    pub target_group: String,
    pub weight: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    LeastOutstandingRequests,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path and query of the check request.
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passes that make an unhealthy target healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy target unhealthy.
    pub unhealthy_threshold: u32,
    /// Inclusive status ranges that count as a pass.
    pub matcher: Vec<(u16, u16)>,
}

impl HealthCheck {
    pub fn passes(&self, status: u16) -> bool {
        self.matcher
            .iter()
            .any(|(a, b)| (*a..=*b).contains(&status))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    pub url: Url,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroupConfig {
    pub name: String,
    pub targets: Vec<TargetConfig>,
    pub algorithm: Algorithm,
    pub health_check: HealthCheck,
    /// `stickiness.duration`: a client stays on its target this long.
    pub stickiness: Option<Duration>,
    pub deregistration_delay: Duration,
}

/// A route's forward action: one or more groups (indexes into `Config::target_groups`) with
/// weights, and the optional group stickiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    pub groups: Vec<(usize, u32)>,
    pub stickiness: Option<Duration>,
    /// The route's `insecure_skip_upstream_tls_verify` and `upstream_ca_file`, for `https://`
    /// targets.
    pub insecure_skip_verify: bool,
    pub ca_file: Option<std::path::PathBuf>,
}

fn duration(text: Option<&str>, default: Duration, path: &str, p: &mut Problems) -> Duration {
    match text {
        None => default,
        Some(t) => match super::duration::parse(t) {
            Some(d) if !d.is_zero() => d,
            _ => {
                p.push(
                    path,
                    format!("{t:?} is not a positive duration (examples: 500ms, 30s, 15m, 1h)"),
                );
                default
            }
        },
    }
}

fn weight(w: Option<i64>, default: u32, path: &str, p: &mut Problems) -> u32 {
    match w {
        None => default,
        Some(w) if (0..=i64::from(MAX_WEIGHT)).contains(&w) => w as u32,
        Some(w) => {
            p.push(path, format!("{w} is not a weight from 0 to {MAX_WEIGHT}"));
            default
        }
    }
}

fn threshold(n: Option<i64>, default: u32, path: &str, p: &mut Problems) -> u32 {
    match n {
        None => default,
        Some(n) if (2..=10).contains(&n) => n as u32,
        Some(n) => {
            p.push(path, format!("{n} is not a count from 2 to 10"));
            default
        }
    }
}

/// `"200"`, `"200,202"`, `"200-299"`, or a mix.
fn matcher(text: &str, path: &str, p: &mut Problems) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        match (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
            (Ok(a), Ok(b)) if (100..=599).contains(&a) && (a..=599).contains(&b) => {
                out.push((a, b))
            }
            _ => {
                p.push(
                    path,
                    format!("{text:?} is not a list of status codes or ranges (e.g. \"200\", \"200,202\", \"200-399\")"),
                );
                return vec![(200, 200)];
            }
        }
    }
    out
}

/// A group name: letters, digits, `-` and `_` (it is part of a cookie name and metric labels).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `target_groups`: every group, each problem with its key path.
pub fn build(table: Option<&toml::Value>, p: &mut Problems) -> Vec<TargetGroupConfig> {
    let groups: BTreeMap<String, toml::Value> = match table {
        None => return vec![],
        Some(toml::Value::Table(t)) => t.clone().into_iter().collect(),
        Some(_) => {
            p.push(
                "target_groups",
                "must be a table of named groups ([target_groups.NAME])",
            );
            return vec![];
        }
    };
    let mut out = Vec::new();
    for (name, v) in groups {
        let kp = format!("target_groups.{name}");
        if !valid_name(&name) {
            p.push(&kp, "a group name is 1 to 32 letters, digits, '-' or '_'");
        }
        let raw = match RawTargetGroup::deserialize(v) {
            Ok(r) => r,
            Err(e) => {
                p.push(&kp, e.message().trim().to_string());
                continue;
            }
        };
        if let Some(g) = build_group(name, raw, &kp, p) {
            out.push(g);
        }
    }
    out
}

fn build_group(
    name: String,
    raw: RawTargetGroup,
    kp: &str,
    p: &mut Problems,
) -> Option<TargetGroupConfig> {
    let mut targets = Vec::new();
    let raw_targets = raw.targets.unwrap_or_default();
    if raw_targets.is_empty() {
        p.push(
            format!("{kp}.targets"),
            "is required: at least one http:// or https:// target",
        );
    }
    for (i, t) in raw_targets.into_iter().enumerate() {
        let tp = format!("{kp}.targets[{i}]");
        let (url, w) = match t {
            RawTarget::Url(u) => (u, 1),
            RawTarget::Weighted(w) => {
                let weight = weight(w.weight, 1, &format!("{tp}.weight"), p);
                (w.url, weight)
            }
        };
        match Url::parse(&url) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.query().is_none()
                    && u.fragment().is_none() =>
            {
                if targets.iter().any(|t: &TargetConfig| t.url == u) {
                    p.push(&tp, format!("{url:?} is listed twice"));
                }
                targets.push(TargetConfig { url: u, weight: w })
            }
            _ => p.push(
                &tp,
                format!("{url:?} is not an http:// or https:// URL without query"),
            ),
        }
    }
    if !targets.is_empty() && targets.iter().all(|t| t.weight == 0) {
        p.push(
            format!("{kp}.targets"),
            "every target has weight 0: none would get a request",
        );
    }
    let algorithm = match raw.algorithm.as_deref() {
        None | Some("round_robin") => Algorithm::RoundRobin,
        Some("least_outstanding_requests") => Algorithm::LeastOutstandingRequests,
        Some(other) => {
            p.push(
                format!("{kp}.algorithm"),
                format!("{other:?} is not one of round_robin, least_outstanding_requests"),
            );
            Algorithm::RoundRobin
        }
    };
    let hc = raw.health_check.unwrap_or_default();
    let hp = format!("{kp}.health_check");
    let path = hc.path.unwrap_or_else(|| "/".into());
    if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        p.push(
            format!("{hp}.path"),
            format!("{path:?} must start with / and hold no spaces or control characters"),
        );
    }
    let interval = duration(
        hc.interval.as_deref(),
        Duration::from_secs(30),
        &format!("{hp}.interval"),
        p,
    );
    let timeout = duration(
        hc.timeout.as_deref(),
        Duration::from_secs(5),
        &format!("{hp}.timeout"),
        p,
    );
    if timeout >= interval {
        p.push(
            format!("{hp}.timeout"),
            format!("must be shorter than the interval ({interval:?})"),
        );
    }
    let health_check = HealthCheck {
        path,
        interval,
        timeout,
        healthy_threshold: threshold(
            hc.healthy_threshold,
            5,
            &format!("{hp}.healthy_threshold"),
            p,
        ),
        unhealthy_threshold: threshold(
            hc.unhealthy_threshold,
            2,
            &format!("{hp}.unhealthy_threshold"),
            p,
        ),
        matcher: matcher(
            hc.matcher.as_deref().unwrap_or("200"),
            &format!("{hp}.matcher"),
            p,
        ),
    };
    let stickiness = raw.stickiness.map(|s| match s.duration {
        Some(d) => duration(
            Some(&d),
            Duration::from_secs(86400),
            &format!("{kp}.stickiness.duration"),
            p,
        ),
        None => Duration::from_secs(86400),
    });
    let deregistration_delay = match raw.deregistration_delay.as_deref() {
        None => Duration::from_secs(300),
        Some(t) => match super::duration::parse(t) {
            Some(d) => d,
            None => {
                p.push(
                    format!("{kp}.deregistration_delay"),
                    format!("{t:?} is not a duration (examples: 0s, 30s, 5m)"),
                );
                Duration::from_secs(300)
            }
        },
    };
    Some(TargetGroupConfig {
        name,
        targets,
        algorithm,
        health_check,
        stickiness,
        deregistration_delay,
    })
}

/// A route's `target_group` / `forward` / `forward_stickiness`, resolved against the groups.
/// `None` when the route names no group.
pub fn route_forward(
    target_group: Option<String>,
    forward: Option<Vec<RawForward>>,
    forward_stickiness: Option<String>,
    groups: &[TargetGroupConfig],
    kp: &str,
    p: &mut Problems,
) -> Option<ForwardConfig> {
    let find = |name: &str, path: String, p: &mut Problems| match groups
        .iter()
        .position(|g| g.name == name)
    {
        Some(i) => Some(i),
        None => {
            p.push(
                path,
                format!("{name:?} is not a configured [target_groups.NAME]"),
            );
            None
        }
    };
    let stickiness = forward_stickiness.map(|t| {
        duration(
            Some(&t),
            Duration::from_secs(3600),
            &format!("{kp}.forward_stickiness"),
            p,
        )
    });
    match (target_group, forward) {
        (None, None) => {
            if stickiness.is_some() {
                p.push(
                    format!("{kp}.forward_stickiness"),
                    "only means something with forward = [...]",
                );
            }
            None
        }
        (Some(_), Some(_)) => {
            p.push(
                format!("{kp}.forward"),
                "set target_group or forward, not both",
            );
            None
        }
        (Some(name), None) => {
            if stickiness.is_some() {
                p.push(
                    format!("{kp}.forward_stickiness"),
                    "only means something with forward = [...] across several groups",
                );
            }
            let i = find(&name, format!("{kp}.target_group"), p)?;
            Some(ForwardConfig {
                groups: vec![(i, 1)],
                stickiness,
                insecure_skip_verify: false,
                ca_file: None,
            })
        }
        (None, Some(list)) => {
            if list.is_empty() {
                p.push(
                    format!("{kp}.forward"),
                    "needs at least one { target_group, weight }",
                );
                return None;
            }
            let mut out = Vec::new();
            for (i, f) in list.into_iter().enumerate() {
                let fp = format!("{kp}.forward[{i}]");
                let w = weight(f.weight, 1, &format!("{fp}.weight"), p);
                if let Some(g) = find(&f.target_group, format!("{fp}.target_group"), p) {
                    if out.iter().any(|(o, _)| *o == g) {
                        p.push(
                            format!("{fp}.target_group"),
                            format!("{:?} is listed twice", f.target_group),
                        );
                    }
                    out.push((g, w));
                }
            }
            if stickiness.is_some() && out.len() < 2 {
                p.push(
                    format!("{kp}.forward_stickiness"),
                    "only means something with forward = [...] across several groups",
                );
            }
            if !out.is_empty() && out.iter().all(|(_, w)| *w == 0) {
                p.push(
                    format!("{kp}.forward"),
                    "every group has weight 0: none would get a request",
                );
            }
            Some(ForwardConfig {
                groups: out,
                stickiness,
                insecure_skip_verify: false,
                ca_file: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, Upstream, load_str};

    const HEAD: &str = r#"
public_url = "https://app.example.com"
[session]
secrets = ["0123456789abcdef0123456789abcdef"]
"#;

    fn load(rest: &str) -> Result<crate::config::Config, Vec<String>> {
        match load_str(&format!("{HEAD}{rest}"), std::path::Path::new("t.toml")) {
            Ok(c) => Ok(c),
            Err(ConfigError::Invalid { problems, .. }) => {
                Err(problems.into_iter().map(|p| p.to_string()).collect())
            }
            Err(e) => Err(vec![e.to_string()]),
        }
    }

    #[test]
    fn defaults_are_albs() {
        let c = load(
            r#"
[target_groups.app]
targets = ["http://10.0.0.5:8080", { url = "https://app-2:8443", weight = 3 }]
[[routes]]
on_unauthenticated = "allow"
target_group = "app"
"#,
        )
        .unwrap();
        let g = &c.target_groups[0];
        assert_eq!(g.algorithm, Algorithm::RoundRobin);
        assert_eq!(g.targets[1].weight, 3);
        assert_eq!(g.targets[0].weight, 1);
        let hc = &g.health_check;
        assert_eq!(hc.path, "/");
        assert_eq!(hc.interval, Duration::from_secs(30));
        assert_eq!(hc.timeout, Duration::from_secs(5));
        assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (5, 2));
        assert_eq!(hc.matcher, vec![(200, 200)]);
        assert_eq!(g.stickiness, None);
        assert_eq!(g.deregistration_delay, Duration::from_secs(300));
        match &c.routes[0].action {
            crate::config::Action::Forward(Upstream::Groups(f)) => {
                assert_eq!(f.groups, vec![(0, 1)])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn short_intervals_matchers_and_stickiness_are_read() {
        let c = load(
            r#"
[target_groups.app]
targets = ["http://a:1"]
algorithm = "least_outstanding_requests"
health_check = { path = "/health", interval = "200ms", timeout = "150ms", healthy_threshold = 2, unhealthy_threshold = 3, matcher = "200-299, 302" }
stickiness = { duration = "1d" }
deregistration_delay = "0s"
[target_groups.green]
targets = ["http://b:1"]
[[routes]]
on_unauthenticated = "allow"
forward = [{ target_group = "app", weight = 90 }, { target_group = "green", weight = 10 }]
forward_stickiness = "1h"
"#,
        )
        .unwrap();
        let g = &c.target_groups[0];
        assert_eq!(g.algorithm, Algorithm::LeastOutstandingRequests);
        assert_eq!(g.health_check.interval, Duration::from_millis(200));
        assert!(g.health_check.passes(204) && g.health_check.passes(302));
        assert!(!g.health_check.passes(301));
        assert_eq!(g.stickiness, Some(Duration::from_secs(86400)));
        assert_eq!(g.deregistration_delay, Duration::ZERO);
        match &c.routes[0].action {
            crate::config::Action::Forward(Upstream::Groups(f)) => {
                assert_eq!(f.groups, vec![(0, 90), (1, 10)]);
                assert_eq!(f.stickiness, Some(Duration::from_secs(3600)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let problems = load(
            r#"
[target_groups.app]
targets = [{ url = "http://a:1", weight = 1000 }, "ftp://b", "http://c:1?x=1"]
algorithm = "random"
health_check = { interval = "5s", timeout = "5s", healthy_threshold = 11, matcher = "ok" }
[target_groups.empty]
targets = []
[target_groups."bad name"]
targets = ["http://d:1"]
[[routes]]
on_unauthenticated = "allow"
upstream = "http://x:1"
target_group = "app"
[[routes]]
on_unauthenticated = "allow"
target_group = "nope"
[[routes]]
on_unauthenticated = "allow"
forward = [{ target_group = "app", weight = -1 }, { target_group = "missing", weight = 1 }]
[[routes]]
on_unauthenticated = "allow"
target_group = "app"
forward = [{ target_group = "app" }]
[[routes]]
on_unauthenticated = "allow"
upstream = "http://x:1"
forward_stickiness = "1h"
"#,
        )
        .unwrap_err();
        let joined = problems.join("\n");
        for want in [
            "target_groups.app.targets[0].weight: 1000 is not a weight from 0 to 999",
            "target_groups.app.targets[1]: \"ftp://b\"",
            "target_groups.app.targets[2]: \"http://c:1?x=1\"",
            "target_groups.app.algorithm: \"random\" is not one of round_robin, least_outstanding_requests",
            "target_groups.app.health_check.timeout: must be shorter than the interval",
            "target_groups.app.health_check.healthy_threshold: 11 is not a count from 2 to 10",
            "target_groups.app.health_check.matcher: \"ok\"",
            "target_groups.empty.targets: is required",
            "target_groups.bad name: a group name is",
            "routes[0].upstream: set upstream (one target) or target_group / forward, not both",
            "routes[1].target_group: \"nope\" is not a configured [target_groups.NAME]",
            "routes[2].forward[0].weight: -1 is not a weight from 0 to 999",
            "routes[2].forward[1].target_group: \"missing\" is not a configured",
            "routes[3].forward: set target_group or forward, not both",
            "routes[4].forward_stickiness: only means something with forward",
        ] {
            assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
        }
    }
}
