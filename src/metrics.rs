//! Prometheus metrics with fixed label sets allocated at start-up, so recording is a few atomic
//! adds on the hot path (no label hashing, no locks): requests by route, decision and status;
//! login outcomes; upstream latency by route.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What the auth gate decided for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forwarded with an identity.
    Allowed = 0,
    /// Forwarded without identity on an `allow` route.
    Public = 1,
    /// No session: redirected to sign in, or 401.
    Unauthenticated = 2,
    /// Signed in but not authorized: 403.
    Forbidden = 3,
    /// Answered by Portcullis itself (reserved paths, bad requests).
    Internal = 4,
    /// The session store could not answer: 503.
    Unavailable = 5,
}

impl Decision {
    /// The label value (also the access log's `auth.decision`).
    pub fn as_str(self) -> &'static str {
        DECISIONS[self as usize]
    }
}

const DECISIONS: [&str; 6] = [
    "allowed",
    "public",
    "unauthenticated",
    "forbidden",
    "internal",
    "unavailable",
];
const STATUSES: [u16; 25] = [
    200, 201, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 413, 429, 431, 500,
    501, 502, 503, 504, 561, 0,
];
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Clone, Copy)]
pub enum LoginOutcome {
    Success = 0,
    IdpError = 1,
    Failed = 2,
    Expired = 3,
}
const LOGIN_OUTCOMES: [&str; 4] = ["success", "idp_error", "failed", "expired"];

struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

/// One set of request counters and histograms per request worker (summed when rendered), so
/// that workers on different cores never write to the same cache line.
struct Shard {
    /// [route (+1 for "none")][decision][status]
    requests: Vec<AtomicU64>,
    upstream: Vec<Histogram>,
}

pub struct Metrics {
    route_names: Vec<String>,
    shards: Vec<Shard>,
    logins: [AtomicU64; LOGIN_OUTCOMES.len()],
}

fn status_index(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|s| *s == status)
        .unwrap_or(STATUSES.len() - 1)
}

impl Metrics {
    pub fn new(route_names: Vec<String>) -> Metrics {
        Metrics::with_workers(route_names, 1)
    }

    /// Counters for `workers` request workers (plus one shard for every other thread).
    pub fn with_workers(route_names: Vec<String>, workers: usize) -> Metrics {
        let n = (route_names.len() + 1) * DECISIONS.len() * STATUSES.len();
        let shards = (0..=workers)
            .map(|_| Shard {
                requests: (0..n).map(|_| AtomicU64::new(0)).collect(),
                upstream: (0..route_names.len()).map(|_| Histogram::new()).collect(),
            })
            .collect();
        Metrics {
            route_names,
            shards,
            logins: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn shard(&self) -> &Shard {
        let w = crate::worker::index();
        &self.shards[if w < self.shards.len() { w } else { 0 }]
    }

    fn sum(&self, f: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards.iter().map(|s| f(s).load(Relaxed)).sum()
    }

    /// `route = None` for requests that matched no route (reserved paths, 404s).
    pub fn request(&self, route: Option<usize>, decision: Decision, status: u16) {
        let r = route.unwrap_or(self.route_names.len());
        let i = (r * DECISIONS.len() + decision as usize) * STATUSES.len() + status_index(status);
        if let Some(c) = self.shard().requests.get(i) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub fn login(&self, outcome: LoginOutcome) {
        self.logins[outcome as usize].fetch_add(1, Relaxed);
    }

    pub fn upstream_latency(&self, route: usize, d: Duration) {
        let Some(h) = self.shard().upstream.get(route) else {
            return;
        };
        // One bucket per observation (made cumulative when rendered): three atomic adds per
        // request instead of one per bucket.
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            h.buckets[i].fetch_add(1, Relaxed);
        }
        h.count.fetch_add(1, Relaxed);
        h.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str(
            "# HELP portcullis_requests_total Requests by route, auth decision and status.\n",
        );
        s.push_str("# TYPE portcullis_requests_total counter\n");
        for r in 0..=self.route_names.len() {
            let route = self
                .route_names
                .get(r)
                .map(String::as_str)
                .unwrap_or("none");
            for (d, dname) in DECISIONS.iter().enumerate() {
                for (si, st) in STATUSES.iter().enumerate() {
                    let i = (r * DECISIONS.len() + d) * STATUSES.len() + si;
                    let v = self.sum(|s| &s.requests[i]);
                    if v > 0 {
                        let status = if *st == 0 {
                            "other".to_string()
                        } else {
                            st.to_string()
                        };
                        let _ = writeln!(
                            s,
                            "portcullis_requests_total{{route=\"{route}\",decision=\"{dname}\",status=\"{status}\"}} {v}"
                        );
                    }
                }
            }
        }
        s.push_str("# HELP portcullis_logins_total Completed sign-in callbacks by outcome.\n");
        s.push_str("# TYPE portcullis_logins_total counter\n");
        for (i, name) in LOGIN_OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                s,
                "portcullis_logins_total{{outcome=\"{name}\"}} {}",
                self.logins[i].load(Relaxed)
            );
        }
        s.push_str(
            "# HELP portcullis_upstream_duration_seconds Time from a request's arrival to the upstream's response headers.\n",
        );
        s.push_str("# TYPE portcullis_upstream_duration_seconds histogram\n");
        for (r, route) in self.route_names.iter().enumerate() {
            let mut cumulative = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cumulative += self.sum(|s| &s.upstream[r].buckets[i]);
                let _ = writeln!(
                    s,
                    "portcullis_upstream_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {cumulative}"
                );
            }
            let count = self.sum(|s| &s.upstream[r].count);
            let _ = writeln!(
                s,
                "portcullis_upstream_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                s,
                "portcullis_upstream_duration_seconds_sum{{route=\"{route}\"}} {}",
                self.sum(|s| &s.upstream[r].sum_micros) as f64 / 1e6
            );
            let _ = writeln!(
                s,
                "portcullis_upstream_duration_seconds_count{{route=\"{route}\"}} {count}"
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts() {
        let m = Metrics::new(vec!["r0".into()]);
        m.request(Some(0), Decision::Allowed, 200);
        m.request(Some(0), Decision::Allowed, 200);
        m.request(None, Decision::Internal, 599);
        m.login(LoginOutcome::Success);
        m.upstream_latency(0, Duration::from_millis(3));
        let text = m.render();
        assert!(
            text.contains(
                "portcullis_requests_total{route=\"r0\",decision=\"allowed\",status=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("route=\"none\",decision=\"internal\",status=\"other\"} 1"),
            "{text}"
        );
        assert!(text.contains("portcullis_logins_total{outcome=\"success\"} 1"));
        assert!(text.contains("portcullis_upstream_duration_seconds_count{route=\"r0\"} 1"));
    }
}
