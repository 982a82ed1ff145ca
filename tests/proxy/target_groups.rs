//! Target groups (issue 18): the real binary in front of real upstream processes (small Python
//! servers that answer with their own name), killed and revived while the tests watch health
//! transitions, weighted distribution, fail-open, retries, stickiness, least outstanding
//! requests, weighted forward across groups, and a reload that removes a target under load.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// An upstream process: `GET|POST /anything` → its name; `/slow` waits 2 s first;
/// `/health` → the status it was started with.
const UPSTREAM: &str = r#"
import sys, time, http.server, socketserver
port, name, health = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        status = health if self.path.startswith("/health") else 200
        if self.path.startswith("/slow"):
            time.sleep(2)
        body = name.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = answer
    do_POST = answer
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
S(("127.0.0.1", port), H).serve_forever()
"#;

struct Upstream {
    name: String,
    port: u16,
    health: u16,
    child: Option<Child>,
}

impl Upstream {
    async fn start(name: &str, health: u16) -> Upstream {
        let mut u = Upstream {
            name: name.into(),
            port: free_port(),
            health,
            child: None,
        };
        u.revive().await;
        u
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts (again) on the same port and waits until it answers.
    async fn revive(&mut self) {
        self.kill();
        let child = Command::new("python3")
            .args([
                "-c",
                UPSTREAM,
                &self.port.to_string(),
                &self.name,
                &self.health.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/ping", self.url())).await
                && r.text().await.ok().as_deref() == Some(self.name.as_str())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "upstream {} did not start",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Three healthy upstreams named a, b and c.
async fn abc() -> [Upstream; 3] {
    [
        Upstream::start("a", 200).await,
        Upstream::start("b", 200).await,
        Upstream::start("c", 200).await,
    ]
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

fn setup() {
    portcullis::install_crypto();
}

/// A configuration with `groups` (TOML) and `routes` (TOML), every route public.
fn config(port: u16, admin: u16, groups: &str, routes: &str) -> String {
    format!(
        r#"
public_url = "http://127.0.0.1:{port}"

[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
workers = 2

[session]
secrets = ["{SECRET}"]

[log]
level = "info"

{groups}

{routes}
"#
    )
}

/// A group of `targets` (URL, weight) with fast health checks; `extra`: more group keys.
fn group(name: &str, targets: &[(String, u32)], extra: &str) -> String {
    let list: Vec<String> = targets
        .iter()
        .map(|(u, w)| format!("{{ url = \"{u}\", weight = {w} }}"))
        .collect();
    format!(
        r#"[target_groups.{name}]
targets = [{}]
health_check = {{ path = "/health", interval = "300ms", timeout = "250ms", healthy_threshold = 2, unhealthy_threshold = 2 }}
{extra}
"#,
        list.join(", ")
    )
}

fn route(path: &str, forward: &str) -> String {
    format!("[[routes]]\npath = \"{path}\"\non_unauthenticated = \"allow\"\n{forward}\n")
}

async fn start(groups: &str, routes: &str) -> Proxy {
    let (port, admin) = Proxy::ports();
    Proxy::start(port, admin, &config(port, admin, groups, routes)).await
}

async fn admin_text(p: &Proxy, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("{}{path}", p.admin)).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 15 s");
}

/// Waits until /readyz shows `want` healthy targets in `group`.
async fn wait_healthy(p: &Proxy, group: &str, want: &str) {
    let line = format!("target group {group}: {want} healthy");
    wait_for(&line.clone(), async || {
        admin_text(p, "/readyz").await.1.contains(&line)
    })
    .await;
}

/// `n` sequential GETs of `path`: who answered, and how often; every answer must be 200.
async fn tally(c: &reqwest::Client, p: &Proxy, path: &str, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let r = c.get(format!("{}{path}", p.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        *seen.entry(r.text().await.unwrap()).or_insert(0) += 1;
    }
    seen
}

/// `got` is within `tolerance` (a fraction) of `want`.
fn near(got: usize, want: usize, tolerance: f64) -> bool {
    (got as f64 - want as f64).abs() <= want as f64 * tolerance
}

#[tokio::test(flavor = "multi_thread")]
async fn weights_spread_requests_and_health_checks_take_a_dead_target_out_and_back() {
    setup();
    let a = Upstream::start("a", 200).await;
    let mut b = Upstream::start("b", 200).await;
    let c = Upstream::start("c", 200).await;
    let groups = group("app", &[(a.url(), 1), (b.url(), 2), (c.url(), 1)], "");
    let p = start(&groups, &route("/", "target_group = \"app\"")).await;
    wait_healthy(&p, "app", "3/3").await;
    let client = reqwest::Client::new();
    // 400 requests over weights 1:2:1, within 10 %.
    let seen = tally(&client, &p, "/x", 400).await;
    assert!(near(seen["a"], 100, 0.1), "{seen:?}");
    assert!(near(seen["b"], 200, 0.1), "{seen:?}");
    assert!(near(seen["c"], 100, 0.1), "{seen:?}");

    // Killed: unhealthy after two failed checks, then it gets nothing.
    b.kill();
    wait_healthy(&p, "app", "2/3").await;
    let metrics = admin_text(&p, "/metrics").await.1;
    let b_line = format!(
        "portcullis_target_healthy{{target_group=\"app\",target=\"{}\"}} 0",
        b.url()
    );
    assert!(metrics.contains(&b_line), "{metrics}");
    let seen = tally(&client, &p, "/x", 60).await;
    assert_eq!(seen.get("b"), None, "{seen:?}");
    assert!(
        near(seen["a"], 30, 0.2) && near(seen["c"], 30, 0.2),
        "{seen:?}"
    );

    // Revived: healthy after two passing checks, and back in rotation.
    b.revive().await;
    wait_healthy(&p, "app", "3/3").await;
    let seen = tally(&client, &p, "/x", 40).await;
    assert!(near(seen["b"], 20, 0.25), "{seen:?}");
    let metrics = admin_text(&p, "/metrics").await.1;
    assert!(
        metrics.contains("portcullis_target_requests_total{target_group=\"app\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_target_response_seconds_count"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_target_unhealthy_fails_open_and_readyz_names_the_group() {
    setup();
    let sick: Vec<Upstream> = [
        Upstream::start("a", 500).await,
        Upstream::start("b", 500).await,
        Upstream::start("c", 500).await,
    ]
    .into_iter()
    .collect();
    let targets: Vec<(String, u32)> = sick.iter().map(|u| (u.url(), 1)).collect();
    let p = start(
        &group("sick", &targets, ""),
        &route("/", "target_group = \"sick\""),
    )
    .await;
    // Unhealthy (two failed checks each), not merely new.
    wait_for("three unhealthy targets", async || {
        admin_text(&p, "/readyz")
            .await
            .1
            .matches(": unhealthy")
            .count()
            == 3
    })
    .await;
    let (status, text) = admin_text(&p, "/readyz").await;
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains(
            "target group sick: 0/3 healthy (no healthy target: requests go to all targets)"
        ),
        "{text}"
    );
    // Fail-open: requests still reach every target.
    let seen = tally(&reqwest::Client::new(), &p, "/x", 30).await;
    assert_eq!(seen.len(), 3, "{seen:?}");

    // One healthy again: it takes all the traffic, and the group is ready.
    let mut a = sick.into_iter().next().unwrap();
    a.health = 200;
    a.revive().await;
    wait_healthy(&p, "sick", "1/3").await;
    assert_eq!(admin_text(&p, "/readyz").await.0, 200);
    let seen = tally(&reqwest::Client::new(), &p, "/x", 20).await;
    assert_eq!(seen.get("a"), Some(&20), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_is_retried_for_a_get_but_not_for_a_post_with_a_body() {
    setup();
    // Both fail their first check and, with slow checks, stay "initial" (no verdict yet):
    // no target is healthy, so both are in rotation (fail-open).
    let live = Upstream::start("live", 500).await;
    let dead = free_port();
    let groups = format!(
        "[target_groups.pair]\ntargets = [\"{}\", \"http://127.0.0.1:{dead}\"]\nhealth_check = {{ path = \"/health\", interval = \"60s\" }}\n",
        live.url()
    );
    let p = start(&groups, &route("/", "target_group = \"pair\"")).await;
    let client = reqwest::Client::new();
    let seen = tally(&client, &p, "/get", 20).await;
    assert_eq!(seen.get("live"), Some(&20), "{seen:?}");

    let mut refused = 0;
    for _ in 0..10 {
        let r = client
            .post(format!("{}/post", p.base))
            .body("a body that cannot be sent twice")
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => assert_eq!(r.text().await.unwrap(), "live"),
            502 => refused += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(
        refused >= 3,
        "round robin sends some POSTs to the dead target: {refused}/10"
    );
    let metrics = admin_text(&p, "/metrics").await.1;
    let errors = format!(
        "portcullis_target_errors_total{{target_group=\"pair\",target=\"http://127.0.0.1:{dead}\"}} "
    );
    assert!(metrics.contains(&errors), "{metrics}");
    assert!(!metrics.contains(&format!("{errors}0\n")), "{metrics}");
}

fn set_cookie(r: &reqwest::Response, prefix: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(prefix))
        .map(|v| v.split(';').next().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn stickiness_pins_a_client_with_a_sealed_cookie_and_a_tampered_one_is_ignored() {
    setup();
    let ups = abc().await;
    let targets: Vec<(String, u32)> = ups.iter().map(|u| (u.url(), 1)).collect();
    let groups = group("sticky", &targets, "stickiness = { duration = \"1h\" }");
    let p = start(&groups, &route("/", "target_group = \"sticky\"")).await;
    wait_healthy(&p, "sticky", "3/3").await;
    let client = reqwest::Client::new();
    let r = client.get(format!("{}/x", p.base)).send().await.unwrap();
    let cookie = set_cookie(&r, "AWSALB-sticky=").expect("a stickiness cookie");
    assert!(!cookie.contains("127.0.0.1"), "sealed, not plain: {cookie}");
    let first = r.text().await.unwrap();
    for _ in 0..20 {
        let r = client
            .get(format!("{}/x", p.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), first);
    }
    // Tampered: ignored (a fresh choice and a fresh cookie), never an error.
    let (name, value) = cookie.split_once('=').unwrap();
    let mut bytes = value.as_bytes().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{name}={}", String::from_utf8(bytes).unwrap());
    let mut answers = HashMap::new();
    for _ in 0..9 {
        let r = client
            .get(format!("{}/x", p.base))
            .header("cookie", &tampered)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(set_cookie(&r, "AWSALB-sticky=").is_some());
        *answers.entry(r.text().await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(
        answers.len(),
        3,
        "a tampered cookie pins nothing: {answers:?}"
    );
    // A cookie for another name (sealed for a different purpose) is ignored too.
    let r = client
        .get(format!("{}/x", p.base))
        .header("cookie", format!("AWSALB-other={value}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn least_outstanding_requests_prefers_the_idle_target() {
    setup();
    let a = Upstream::start("a", 200).await;
    let b = Upstream::start("b", 200).await;
    let groups = group(
        "lor",
        &[(a.url(), 1), (b.url(), 1)],
        "algorithm = \"least_outstanding_requests\"",
    );
    let p = start(&groups, &route("/", "target_group = \"lor\"")).await;
    wait_healthy(&p, "lor", "2/2").await;
    let base = p.base.clone();
    let slow = tokio::spawn(async move {
        reqwest::get(format!("{base}/slow"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    // Which target holds the slow request?
    let mut busy = String::new();
    wait_for("one outstanding request", async || {
        let m = admin_text(&p, "/metrics").await.1;
        for (name, u) in [("a", &a), ("b", &b)] {
            let line = format!(
                "portcullis_target_outstanding_requests{{target_group=\"lor\",target=\"{}\"}} 1",
                u.url()
            );
            if m.contains(&line) {
                busy = name.to_string();
                return true;
            }
        }
        false
    })
    .await;
    let seen = tally(&reqwest::Client::new(), &p, "/fast", 10).await;
    let idle = if busy == "a" { "b" } else { "a" };
    assert_eq!(seen.get(idle), Some(&10), "busy {busy}: {seen:?}");
    assert_eq!(slow.await.unwrap(), busy);
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_weighs_groups_and_forward_stickiness_keeps_a_client_on_its_group() {
    setup();
    let blue = Upstream::start("blue", 200).await;
    let green = Upstream::start("green", 200).await;
    let groups = group("blue", &[(blue.url(), 1)], "") + &group("green", &[(green.url(), 1)], "");
    let routes = route(
        "/canary/",
        "forward = [{ target_group = \"blue\", weight = 90 }, { target_group = \"green\", weight = 10 }]",
    ) + &route(
        "/",
        "forward = [{ target_group = \"blue\", weight = 1 }, { target_group = \"green\", weight = 1 }]\nforward_stickiness = \"1h\"",
    );
    let p = start(&groups, &routes).await;
    wait_healthy(&p, "blue", "1/1").await;
    wait_healthy(&p, "green", "1/1").await;
    let client = reqwest::Client::new();
    let seen = tally(&client, &p, "/canary/x", 200).await;
    assert!(near(seen["blue"], 180, 0.05), "{seen:?}");
    assert!(near(seen["green"], 20, 0.25), "{seen:?}");

    let r = client.get(format!("{}/x", p.base)).send().await.unwrap();
    let cookie = set_cookie(&r, "AWSALBTG-").expect("a group stickiness cookie");
    assert!(
        !cookie.contains("blue") && !cookie.contains("green"),
        "{cookie}"
    );
    let first = r.text().await.unwrap();
    for _ in 0..20 {
        let r = client
            .get(format!("{}/x", p.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), first);
    }
    // Without the cookie, both groups serve.
    let seen = tally(&client, &p, "/x", 10).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_removing_a_target_under_load_fails_nothing_and_its_slow_requests_finish() {
    setup();
    let ups = abc().await;
    let all: Vec<(String, u32)> = ups.iter().map(|u| (u.url(), 1)).collect();
    let (port, admin) = Proxy::ports();
    let route = route("/", "target_group = \"app\"");
    let p = Proxy::start(
        port,
        admin,
        &config(
            port,
            admin,
            &group("app", &all, "deregistration_delay = \"30s\""),
            &route,
        ),
    )
    .await;
    wait_healthy(&p, "app", "3/3").await;
    // Slow requests in flight on every target: sent until each target has one.
    let mut slow = Vec::new();
    let busy = |m: &str, u: &Upstream| {
        !m.contains(&format!(
            "portcullis_target_outstanding_requests{{target_group=\"app\",target=\"{}\"}} 0",
            u.url()
        ))
    };
    while slow.len() < 9 {
        let base = p.base.clone();
        slow.push(tokio::spawn(async move {
            let r = reqwest::get(format!("{base}/slow")).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let m = admin_text(&p, "/metrics").await.1;
        if ups.iter().all(|u| busy(&m, u)) {
            break;
        }
    }
    let load = Load::start(3, &format!("{}/load", p.base));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Reload without target c.
    let cfg_file = p.log_path().parent().unwrap().join("portcullis.toml");
    std::fs::write(
        &cfg_file,
        config(
            port,
            admin,
            &group("app", &all[..2], "deregistration_delay = \"30s\""),
            &route,
        ),
    )
    .unwrap();
    let st = Command::new("kill")
        .args(["-HUP", &p.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    wait_for("reload", async || {
        admin_text(&p, "/metrics")
            .await
            .1
            .contains("portcullis_config_reloads_total{result=\"ok\"} 1")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (total, failures) = load.stop().await;
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(total > 30, "only {total} requests were made");
    // The slow requests, c's among them, finished after the reload.
    let mut names = Vec::new();
    for s in slow {
        let (status, name) = s.await.unwrap();
        assert_eq!(status, 200);
        names.push(name);
    }
    names.sort();
    names.dedup();
    assert_eq!(names, ["a", "b", "c"]);
    // New requests never reach c.
    let seen = tally(&reqwest::Client::new(), &p, "/after", 30).await;
    assert_eq!(seen.get("c"), None, "{seen:?}");
    assert!(
        p.logs().contains("target removed by a reload"),
        "{}",
        p.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_target_s_requests_are_cut_when_its_deregistration_delay_ends() {
    setup();
    let a = Upstream::start("a", 200).await;
    let b = Upstream::start("b", 200).await;
    let (port, admin) = Proxy::ports();
    let route = route("/", "target_group = \"app\"");
    let both = [(a.url(), 1), (b.url(), 1)];
    let delay = "deregistration_delay = \"500ms\"";
    let p = Proxy::start(
        port,
        admin,
        &config(port, admin, &group("app", &both, delay), &route),
    )
    .await;
    wait_healthy(&p, "app", "2/2").await;
    // Two slow requests: one on each target.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let base = p.base.clone();
        slow.push(tokio::spawn(async move {
            let r = reqwest::get(format!("{base}/slow")).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cfg_file = p.log_path().parent().unwrap().join("portcullis.toml");
    std::fs::write(
        &cfg_file,
        config(port, admin, &group("app", &both[..1], delay), &route),
    )
    .unwrap();
    let st = Command::new("kill")
        .args(["-HUP", &p.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut answers = Vec::new();
    for s in slow {
        answers.push(s.await.unwrap());
    }
    answers.sort();
    // a's finishes (2 s); b's is cut at 500 ms after the reload: 502, not b's answer.
    assert_eq!(answers[0], (200, "a".to_string()), "{answers:?}");
    assert_eq!(answers[1].0, 502, "{answers:?}");
}
