//! A route's forward action over target groups: choose a group (by weight, or the one the
//! client's group-stickiness cookie names), choose a target in it (by the group's algorithm,
//! or the one its stickiness cookie names), send; when the target refuses the connection and
//! the request has no body, send it once more to another target.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::request::Parts;
use http::{HeaderValue, Response, header};

use super::sticky::{Sealer, needs_renewal};
use super::{Group, Groups, Outstanding};
use crate::config::RouteConfig;
use crate::config::target_groups::ForwardConfig;
use crate::error::RequestError;
use crate::http::body::{Body, RequestBody};
use crate::proxy::HttpUpstream;

struct Entry {
    group: Arc<Group>,
    /// One per target of the group, in the same order.
    upstreams: Vec<HttpUpstream>,
    /// Target stickiness: `AWSALB-<group>` and its duration.
    sticky: Option<(String, Duration)>,
}

pub struct Balanced {
    entries: Vec<Entry>,
    /// Entry indexes in smooth weighted round-robin order.
    wheel: Vec<u16>,
    next: AtomicUsize,
    /// Group stickiness (`forward_stickiness`): `AWSALBTG-<route>` and its duration.
    sticky: Option<(String, Duration)>,
    /// Whether any stickiness applies (the clock is read only then).
    any_sticky: bool,
    sealer: Sealer,
}

/// Up to two `Set-Cookie` values (group and target stickiness).
type Pins = [Option<HeaderValue>; 2];

impl Balanced {
    pub fn new(
        route: &RouteConfig,
        f: &ForwardConfig,
        groups: &Groups,
        tls: &rustls::ClientConfig,
        workers: usize,
        sealer: &Sealer,
    ) -> Balanced {
        let entries: Vec<Entry> = f
            .groups
            .iter()
            .map(|(gi, _)| {
                let group = groups.groups[*gi].clone();
                let upstreams = group
                    .targets
                    .iter()
                    .map(|t| {
                        HttpUpstream::new(
                            &t.url,
                            tls,
                            route.connect_timeout,
                            route.timeout,
                            workers,
                        )
                    })
                    .collect();
                let sticky = group
                    .cfg
                    .stickiness
                    .map(|d| (format!("AWSALB-{}", group.cfg.name), d));
                Entry {
                    group,
                    upstreams,
                    sticky,
                }
            })
            .collect();
        let weights: Vec<u32> = f.groups.iter().map(|(_, w)| *w).collect();
        let sticky = f.stickiness.map(|d| {
            let digest = ring::digest::digest(&ring::digest::SHA256, route.name.as_bytes());
            let tag: String = digest.as_ref()[..4]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            (format!("AWSALBTG-{tag}"), d)
        });
        Balanced {
            any_sticky: sticky.is_some() || entries.iter().any(|e| e.sticky.is_some()),
            entries,
            wheel: super::wheel(&weights),
            next: AtomicUsize::new(0),
            sticky,
            sealer: sealer.clone(),
        }
    }

    pub async fn forward(
        &self,
        parts: Parts,
        body: RequestBody,
        upgrade: Option<hyper::upgrade::OnUpgrade>,
        started: Instant,
    ) -> Result<Response<Body>, RequestError> {
        let mut pins: Pins = [None, None];
        let now = if self.any_sticky {
            crate::session::now_unix()
        } else {
            0
        };
        let entry = &self.entries[self.pick_entry(&parts, now, &mut pins)];
        let mut t = self.pick_target(entry, &parts, now, &mut pins);
        let retry = upgrade.is_none()
            && http_body::Body::is_end_stream(&body)
            && entry.group.targets.len() > 1;
        let mut resp = match send_to(entry, t, parts, body, upgrade, started, retry).await {
            Ok(r) => r,
            Err((e, Some(parts))) => {
                // Refused: once more, on another target (a request without a body only).
                let other = entry.group.pick(Some(t));
                if other == t {
                    return Err(e);
                }
                tracing::debug!(
                    group = entry.group.cfg.name,
                    refused = entry.group.targets[t].name,
                    retry = entry.group.targets[other].name,
                    "target refused the connection; retried on another"
                );
                t = other;
                if let Some((name, d)) = &entry.sticky {
                    pins[1] = self
                        .sealer
                        .set_cookie(name, &entry.group.targets[t].name, *d, now);
                }
                send_to(entry, t, parts, RequestBody::Empty, None, started, false)
                    .await
                    .map_err(|(e, _)| e)?
            }
            Err((e, None)) => return Err(e),
        };
        for v in pins.into_iter().flatten() {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
        Ok(resp)
    }

    fn pick_entry(&self, parts: &Parts, now: i64, pins: &mut Pins) -> usize {
        if self.entries.len() == 1 {
            return 0;
        }
        if let Some((name, d)) = &self.sticky
            && let Some((choice, left)) = self.sealer.read(&parts.headers, name, now)
            && let Some(i) = self.entries.iter().position(|e| e.group.cfg.name == choice)
        {
            if needs_renewal(left, *d) {
                pins[0] = self.sealer.set_cookie(name, &choice, *d, now);
            }
            return i;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let i = usize::from(self.wheel[n % self.wheel.len()]);
        if let Some((name, d)) = &self.sticky {
            pins[0] = self
                .sealer
                .set_cookie(name, &self.entries[i].group.cfg.name, *d, now);
        }
        i
    }

    fn pick_target(&self, entry: &Entry, parts: &Parts, now: i64, pins: &mut Pins) -> usize {
        let g = &entry.group;
        let Some((name, d)) = &entry.sticky else {
            return g.pick(None);
        };
        if let Some((choice, left)) = self.sealer.read(&parts.headers, name, now)
            && let Some(i) = g.targets.iter().position(|t| t.name == choice)
            && g.targets[i].weight > 0
            && (g.targets[i].state.is_healthy() || !g.any_healthy())
        {
            if needs_renewal(left, *d) {
                pins[1] = self.sealer.set_cookie(name, &choice, *d, now);
            }
            return i;
        }
        let i = g.pick(None);
        pins[1] = self.sealer.set_cookie(name, &g.targets[i].name, *d, now);
        i
    }
}

/// Sends to target `t` of `entry`, counted on the target, and cut (502) if the target's
/// deregistration delay ends while waiting for its answer.
async fn send_to(
    entry: &Entry,
    t: usize,
    parts: Parts,
    body: RequestBody,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
    started: Instant,
    retry: bool,
) -> Result<Response<Body>, (RequestError, Option<Parts>)> {
    let state = &*entry.group.targets[t].state;
    let counted = Outstanding::start(state);
    let cut = state.notify_for(crate::worker::index()).notified();
    if state.cut.load(Ordering::Relaxed) {
        counted.failed();
        return Err((deregistered(), None));
    }
    let sent_at = Instant::now();
    let result = tokio::select! {
        biased;
        r = entry.upstreams[t].send(parts, body, upgrade, started, retry) => r,
        () = cut => Err((deregistered(), None)),
    };
    match &result {
        Ok(_) => counted.answered(sent_at.elapsed()),
        Err(_) => counted.failed(),
    }
    result
}

fn deregistered() -> RequestError {
    RequestError::UpstreamUnreachable(
        "the target was deregistered (its deregistration delay ended)".into(),
    )
}
