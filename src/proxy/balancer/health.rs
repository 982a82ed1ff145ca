//! Active health checks, one background task per target group: every `interval`, a `GET` of
//! `health_check.path` to each target, answered within `timeout` with a status the `matcher`
//! accepts, or it fails. The task ends when its configuration is replaced (a reload starts the
//! new one's) or dropped.

use std::sync::Weak;
use std::time::Duration;

use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{Group, Target};

type CheckClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<bytes::Bytes>>;

/// The `User-Agent` of the checks (ALB sends `ELB-HealthChecker/2.0`).
const USER_AGENT: &str = "Portcullis-HealthChecker/1.0";
/// Most of a check response's body read (then the connection is dropped).
const MAX_BODY: usize = 64 * 1024;

pub fn spawn(group: Weak<Group>, tls: rustls::ClientConfig) {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    // ALB closes each check's connection; so do we (no pooling), so that a check also proves
    // the target still accepts connections.
    let client: CheckClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(https);
    tokio::spawn(async move {
        loop {
            let Some(g) = group.upgrade() else { return };
            if g.retired.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            let hc = &g.cfg.health_check;
            let checks = g
                .targets
                .iter()
                .map(|t| check(&client, t, &hc.path, hc.timeout));
            let results = futures_util::future::join_all(checks).await;
            if g.retired.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            let mut changed = false;
            for (t, status) in g.targets.iter().zip(results) {
                let pass = status.is_some_and(|s| hc.passes(s));
                if let Some(now) =
                    t.state
                        .record_check(pass, hc.healthy_threshold, hc.unhealthy_threshold)
                {
                    changed = true;
                    tracing::info!(
                        group = g.cfg.name,
                        target = t.name,
                        state = now,
                        status = status
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "no answer".into()),
                        "target health changed"
                    );
                }
            }
            if changed {
                g.lay_out();
            }
            let interval = hc.interval;
            drop(g);
            tokio::time::sleep(interval).await;
        }
    });
}

/// The status of one check, `None` when the target did not answer within `timeout`.
async fn check(client: &CheckClient, t: &Target, path: &str, timeout: Duration) -> Option<u16> {
    let base = t.url.as_str().trim_end_matches('/');
    let uri: http::Uri = format!("{base}{path}").parse().ok()?;
    let host = HeaderValue::from_str(uri.authority()?.as_str()).ok()?;
    let req = Request::get(uri)
        .header(header::HOST, host)
        .header(header::USER_AGENT, USER_AGENT)
        .body(Empty::new())
        .ok()?;
    let exchange = async {
        let resp = client.request(req).await.ok()?;
        let status = resp.status().as_u16();
        // Read (a bounded part of) the body, so the answer was complete.
        let _ = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await;
        Some(status)
    };
    tokio::time::timeout(timeout, exchange).await.ok().flatten()
}
