//! Target groups (ALB's): several targets behind one name, chosen per request by weighted
//! round robin or least outstanding requests, among the targets the health checks call healthy
//! — or among all of them when none is (ALB's fail-open). A route forwards to one group or,
//! by weight, to several (`forward`).
//!
//! The hot path reads and writes atomics only: the round-robin counter, a target's health
//! state and outstanding count, its request/error/latency counters. Weighted orders are laid
//! out at load (a smooth weighted round-robin wheel), so choosing allocates nothing.
//!
//! A target's state (health, counters) is kept by a [`Registry`] that outlives configuration
//! reloads, keyed by group name and URL: a reload keeps what the health checks learnt. A target
//! that a reload removes gets no new requests; its in-flight requests keep running until they
//! are answered or its `deregistration_delay` ends, when the ones still waiting for an answer
//! are cut (502).

mod forward;
pub mod health;
pub mod sticky;

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;

pub use forward::Balanced;

use crate::config::target_groups::{Algorithm, TargetGroupConfig};

const INITIAL: u8 = 0;
const HEALTHY: u8 = 1;
const UNHEALTHY: u8 = 2;

/// What is known about one target; shared by every configuration that lists it.
pub struct TargetState {
    health: AtomicU8,
    /// Consecutive check results in the direction of a change (written by the checker only).
    streak: AtomicU32,
    outstanding: AtomicUsize,
    requests: AtomicU64,
    errors: AtomicU64,
    /// Time to response headers: total and count of the answered requests.
    latency_micros: AtomicU64,
    answered: AtomicU64,
    /// Bumped when a reload removes the target (or lists it again): a pending deregistration
    /// cuts only if no reload happened since it was scheduled.
    generation: AtomicU64,
    /// Set when the deregistration delay of a removed target ended.
    cut: AtomicBool,
    /// One per request worker (slot 0 for other threads): requests waiting on this target
    /// listen on their own worker's, so waiting costs no shared lock.
    cut_notify: Vec<tokio::sync::Notify>,
}

impl TargetState {
    fn new(workers: usize) -> TargetState {
        TargetState {
            health: AtomicU8::new(INITIAL),
            streak: AtomicU32::new(0),
            outstanding: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency_micros: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            cut: AtomicBool::new(false),
            cut_notify: (0..=workers).map(|_| tokio::sync::Notify::new()).collect(),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.health.load(Ordering::Relaxed) == HEALTHY
    }

    fn health_str(&self) -> &'static str {
        match self.health.load(Ordering::Relaxed) {
            HEALTHY => "healthy",
            UNHEALTHY => "unhealthy",
            _ => "initial",
        }
    }

    /// One health-check result. ALB's rules: a new target is healthy after one pass; a healthy
    /// one unhealthy after `unhealthy` consecutive failures; an unhealthy one healthy again
    /// after `healthy` consecutive passes. Returns the new state when it changed.
    fn record_check(&self, pass: bool, healthy: u32, unhealthy: u32) -> Option<&'static str> {
        let now = self.health.load(Ordering::Relaxed);
        let towards_change = match now {
            HEALTHY => !pass,
            UNHEALTHY => pass,
            _ => true,
        };
        if !towards_change {
            self.streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        let next = match (now, pass) {
            (INITIAL, true) => HEALTHY,
            (INITIAL, false) if streak >= unhealthy => UNHEALTHY,
            (HEALTHY, false) if streak >= unhealthy => UNHEALTHY,
            (UNHEALTHY, true) if streak >= healthy => HEALTHY,
            _ => return None,
        };
        self.health.store(next, Ordering::Relaxed);
        self.streak.store(0, Ordering::Relaxed);
        Some(self.health_str())
    }

    /// Cuts the requests still waiting on this target (its deregistration delay ended).
    fn cut_in_flight(&self) {
        self.cut.store(true, Ordering::Relaxed);
        for n in &self.cut_notify {
            n.notify_waiters();
        }
    }

    fn notify_for(&self, worker: usize) -> &tokio::sync::Notify {
        &self.cut_notify[worker.min(self.cut_notify.len() - 1)]
    }
}

/// Target states by (group, URL), across reloads. Only touched while a configuration is built.
#[derive(Default)]
pub struct Registry {
    states: Mutex<HashMap<(String, String), Weak<TargetState>>>,
}

impl Registry {
    fn state(&self, group: &str, url: &str, workers: usize) -> Arc<TargetState> {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.retain(|_, w| w.strong_count() > 0);
        let key = (group.to_string(), url.to_string());
        if let Some(s) = states.get(&key).and_then(Weak::upgrade) {
            // Listed again: a pending deregistration no longer applies.
            s.generation.fetch_add(1, Ordering::Relaxed);
            s.cut.store(false, Ordering::Relaxed);
            return s;
        }
        let s = Arc::new(TargetState::new(workers));
        states.insert(key, Arc::downgrade(&s));
        s
    }
}

pub struct Target {
    pub url: url::Url,
    /// The URL as configured, for the stickiness cookie and metric labels.
    pub name: String,
    pub weight: u32,
    pub state: Arc<TargetState>,
}

/// One target group of the running configuration.
pub struct Group {
    pub cfg: TargetGroupConfig,
    pub targets: Vec<Target>,
    /// Indexes of the targets in rotation — the healthy ones, or all when none is — in smooth
    /// weighted round-robin order (weight 0: absent). Laid out again by the health checker
    /// when a target's health changes; read per request without a lock.
    live: ArcSwap<Vec<u16>>,
    next: AtomicUsize,
    /// Set when a reload replaced this configuration: its health checks stop.
    retired: AtomicBool,
}

/// Smooth weighted round robin laid out once: each index appears `weight` times, spread out.
pub(crate) fn wheel(weights: &[u32]) -> Vec<u16> {
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += i64::from(*w);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u16);
    }
    out
}

impl Group {
    fn new(cfg: &TargetGroupConfig, registry: &Registry, workers: usize) -> Group {
        let targets: Vec<Target> = cfg
            .targets
            .iter()
            .map(|t| Target {
                url: t.url.clone(),
                name: t.url.as_str().trim_end_matches('/').to_string(),
                weight: t.weight,
                state: registry.state(&cfg.name, t.url.as_str(), workers),
            })
            .collect();
        let g = Group {
            cfg: cfg.clone(),
            targets,
            live: ArcSwap::from_pointee(Vec::new()),
            next: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
        };
        g.lay_out();
        g
    }

    /// Lays out the rotation again from the targets' health.
    fn lay_out(&self) {
        let open = !self.any_healthy();
        let weights: Vec<u32> = self
            .targets
            .iter()
            .map(|t| {
                if open || t.state.is_healthy() {
                    t.weight
                } else {
                    0
                }
            })
            .collect();
        self.live.store(Arc::new(wheel(&weights)));
    }

    /// Whether at least one target with a weight is healthy (otherwise: fail-open).
    pub fn any_healthy(&self) -> bool {
        self.targets
            .iter()
            .any(|t| t.weight > 0 && t.state.is_healthy())
    }

    /// Chooses a target: never `exclude` when another exists; healthy ones only, unless none
    /// is healthy.
    pub fn pick(&self, exclude: Option<usize>) -> usize {
        // Whether no target is healthy (fail-open) is only asked when the rotation cannot answer.
        let open = std::cell::OnceCell::new();
        let usable = |i: usize| {
            Some(i) != exclude
                && self.targets[i].weight > 0
                && (self.targets[i].state.is_healthy() || *open.get_or_init(|| !self.any_healthy()))
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        match self.cfg.algorithm {
            Algorithm::RoundRobin => {
                let live = self.live.load();
                let len = live.len();
                (0..len)
                    .map(|k| usize::from(live[(n + k) % len]))
                    .find(|i| Some(*i) != exclude)
                    // Only `exclude` is in rotation: any other target with a weight.
                    .or_else(|| (0..self.targets.len()).find(|i| usable(*i)))
                    .unwrap_or(exclude.unwrap_or(0))
            }
            Algorithm::LeastOutstandingRequests => {
                let len = self.targets.len();
                let mut best: Option<(usize, u64)> = None;
                for k in 0..len {
                    let i = (n + k) % len;
                    if !usable(i) {
                        continue;
                    }
                    let t = &self.targets[i];
                    // Outstanding per unit of weight, compared without division.
                    let load = t.state.outstanding.load(Ordering::Relaxed) as u64 * 1000
                        / u64::from(t.weight);
                    if best.is_none_or(|(_, b)| load < b) {
                        best = Some((i, load));
                    }
                }
                best.map_or(n % len, |(i, _)| i)
            }
        }
    }
}

/// The target groups of one running configuration.
pub struct Groups {
    pub groups: Vec<Arc<Group>>,
}

impl Groups {
    pub fn new(cfgs: &[TargetGroupConfig], registry: &Registry, workers: usize) -> Groups {
        Groups {
            groups: cfgs
                .iter()
                .map(|c| Arc::new(Group::new(c, registry, workers)))
                .collect(),
        }
    }

    /// Starts the health checks on the calling runtime (none outside one), one task per
    /// group; `tls(group index)`: what its `https://` checks trust.
    pub fn start(&self, tls: impl Fn(usize) -> rustls::ClientConfig) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        for (i, g) in self.groups.iter().enumerate() {
            health::spawn(Arc::downgrade(g), tls(i));
        }
    }

    /// This configuration was replaced by `next`: its health checks stop, and every target
    /// `next` no longer lists is deregistered after its group's delay.
    pub fn retire(&self, next: &Groups) {
        for g in &self.groups {
            g.retired.store(true, Ordering::Relaxed);
            for t in &g.targets {
                let kept = next
                    .groups
                    .iter()
                    .any(|n| n.targets.iter().any(|nt| Arc::ptr_eq(&nt.state, &t.state)));
                if kept {
                    continue;
                }
                let state = t.state.clone();
                let generation = state.generation.fetch_add(1, Ordering::Relaxed) + 1;
                let delay = g.cfg.deregistration_delay;
                tracing::info!(
                    group = g.cfg.name,
                    target = t.name,
                    delay_secs = delay.as_secs_f64(),
                    "target removed by a reload: no new requests; in-flight ones may finish within the deregistration delay"
                );
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if state.generation.load(Ordering::Relaxed) == generation {
                        state.cut_in_flight();
                    }
                });
            }
        }
    }

    /// `/readyz` lines, and whether every group has a healthy target.
    pub fn readiness(&self) -> (String, bool) {
        let mut s = String::new();
        let mut ready = true;
        for g in &self.groups {
            let healthy = g.targets.iter().filter(|t| t.state.is_healthy()).count();
            let ok = g.any_healthy();
            ready &= ok;
            let _ = writeln!(
                s,
                "target group {}: {healthy}/{} healthy{}",
                g.cfg.name,
                g.targets.len(),
                if ok {
                    ""
                } else {
                    " (no healthy target: requests go to all targets)"
                }
            );
            for t in &g.targets {
                let _ = writeln!(s, "  target {}: {}", t.name, t.state.health_str());
            }
        }
        (s, ready)
    }

    /// Prometheus lines per group and target.
    pub fn render_metrics(&self) -> String {
        let mut s = String::new();
        if self.groups.is_empty() {
            return s;
        }
        let families: [(&str, &str, &str); 6] = [
            (
                "portcullis_target_healthy",
                "gauge",
                "1 when the health checks call the target healthy.",
            ),
            (
                "portcullis_target_requests_total",
                "counter",
                "Requests sent to the target.",
            ),
            (
                "portcullis_target_errors_total",
                "counter",
                "Requests to the target that got no response (refused, timed out, invalid).",
            ),
            (
                "portcullis_target_outstanding_requests",
                "gauge",
                "Requests waiting for the target's response headers.",
            ),
            (
                "portcullis_target_response_seconds_sum",
                "counter",
                "Total time to the target's response headers.",
            ),
            (
                "portcullis_target_response_seconds_count",
                "counter",
                "Responses from the target.",
            ),
        ];
        for (i, (name, kind, help)) in families.iter().enumerate() {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for g in &self.groups {
                for t in &g.targets {
                    let st = &t.state;
                    let v = match i {
                        0 => f64::from(u8::from(st.is_healthy())),
                        1 => st.requests.load(Ordering::Relaxed) as f64,
                        2 => st.errors.load(Ordering::Relaxed) as f64,
                        3 => st.outstanding.load(Ordering::Relaxed) as f64,
                        4 => st.latency_micros.load(Ordering::Relaxed) as f64 / 1e6,
                        _ => st.answered.load(Ordering::Relaxed) as f64,
                    };
                    let _ = writeln!(
                        s,
                        "{name}{{target_group=\"{}\",target=\"{}\"}} {v}",
                        g.cfg.name, t.name
                    );
                }
            }
        }
        let _ = writeln!(
            s,
            "# HELP portcullis_target_group_healthy_targets Healthy targets per group.\n# TYPE portcullis_target_group_healthy_targets gauge"
        );
        for g in &self.groups {
            let healthy = g.targets.iter().filter(|t| t.state.is_healthy()).count();
            let _ = writeln!(
                s,
                "portcullis_target_group_healthy_targets{{target_group=\"{}\"}} {healthy}",
                g.cfg.name
            );
        }
        s
    }
}

/// Counts a request on a target for as long as it waits for response headers.
pub(crate) struct Outstanding<'a>(&'a TargetState);

impl<'a> Outstanding<'a> {
    pub(crate) fn start(state: &'a TargetState) -> Outstanding<'a> {
        state.outstanding.fetch_add(1, Ordering::Relaxed);
        state.requests.fetch_add(1, Ordering::Relaxed);
        Outstanding(state)
    }

    pub(crate) fn answered(self, took: Duration) {
        self.0.answered.fetch_add(1, Ordering::Relaxed);
        self.0
            .latency_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub(crate) fn failed(self) {
        self.0.errors.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_spreads_each_index_by_its_weight() {
        let w = wheel(&[3, 1, 0]);
        assert_eq!(w.len(), 4);
        assert_eq!(w.iter().filter(|i| **i == 0).count(), 3);
        assert!(!w.contains(&2));
        // Spread, not bunched: the light target is not first twice in a row.
        let w = wheel(&[2, 2]);
        assert_eq!(w, vec![0, 1, 0, 1]);
    }

    #[test]
    fn health_follows_alb_thresholds() {
        let s = TargetState::new(1);
        assert_eq!(s.health_str(), "initial");
        assert_eq!(s.record_check(true, 3, 2), Some("healthy"));
        assert_eq!(s.record_check(false, 3, 2), None);
        assert_eq!(s.record_check(true, 3, 2), None); // streak reset
        assert_eq!(s.record_check(false, 3, 2), None);
        assert_eq!(s.record_check(false, 3, 2), Some("unhealthy"));
        assert_eq!(s.record_check(true, 3, 2), None);
        assert_eq!(s.record_check(true, 3, 2), None);
        assert_eq!(s.record_check(true, 3, 2), Some("healthy"));
        let fresh = TargetState::new(1);
        assert_eq!(fresh.record_check(false, 3, 2), None);
        assert_eq!(fresh.record_check(false, 3, 2), Some("unhealthy"));
    }
}
