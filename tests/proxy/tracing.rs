//! Request tracing through the real binary: `X-Amzn-Trace-Id` and `traceparent` on every
//! forwarded request (new, kept from a trusted proxy, replaced otherwise), both in the access
//! log; OTLP export received by a collector built on `opentelemetry-proto`; and one decision
//! vocabulary in the decision log, the access log and the metrics.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::{Value, json};

use crate::harness::*;
use crate::operate::wait_for;

fn setup() {
    portcullis::install_crypto();
}

const ROOT: &str = "1-67891233-abcdef012345678912345678";

/// One `allow` route to `upstream`, JSON logs with the access log; `server_extra` goes into
/// `[server]`, `extra` at the end of the file (e.g. a `[tracing]` section).
async fn proxy(upstream: &str, server_extra: &str, extra: &str) -> Proxy {
    let (port, admin) = Proxy::ports();
    let cfg = format!(
        r#"
public_url = "http://127.0.0.1:{port}"

[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
{server_extra}

[session]
secrets = ["tracing-test-secret-0123456789abcdef0123"]

[log]
level = "info"
format = "json"
access = true

[[routes]]
name = "app"
path = "/"
upstream = "{upstream}"
on_unauthenticated = "allow"

{extra}
"#
    );
    Proxy::start(port, admin, &cfg).await
}

const TRUSTED: &str = r#"trusted_proxies = ["127.0.0.1/32"]"#;

/// The trace headers the upstream received for a GET with `headers`.
async fn upstream_trace(p: &Proxy, headers: &[(&str, &[u8])]) -> (String, String, Option<String>) {
    let mut req = bare_client().get(format!("{}/x", p.base));
    for (k, v) in headers {
        req = req.header(*k, reqwest::header::HeaderValue::from_bytes(v).unwrap());
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v = echoed(r).await;
    let all = |n: &str| -> Vec<String> {
        v["headers"][n]
            .as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let amzn = all("x-amzn-trace-id");
    let tp = all("traceparent");
    assert_eq!(amzn.len(), 1, "exactly one X-Amzn-Trace-Id upstream: {v}");
    assert_eq!(tp.len(), 1, "exactly one traceparent upstream: {v}");
    (
        amzn[0].clone(),
        tp[0].clone(),
        all("tracestate").first().cloned(),
    )
}

fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `Root=1-{8 hex}-{24 hex}` → (time digits, id digits).
fn root_parts(amzn: &str) -> (String, String) {
    let root = amzn
        .split(';')
        .find_map(|f| f.strip_prefix("Root="))
        .unwrap_or_else(|| panic!("no Root in {amzn:?}"));
    let parts: Vec<&str> = root.split('-').collect();
    assert_eq!(parts.len(), 3, "{root}");
    assert_eq!(parts[0], "1");
    assert!(is_hex(parts[1], 8), "{root}");
    assert!(is_hex(parts[2], 24), "{root}");
    (parts[1].to_string(), parts[2].to_string())
}

/// `00-{32 hex}-{16 hex}-{2 hex}` → (trace id, span id, flags).
fn traceparent_parts(tp: &str) -> (String, String, String) {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00", "{tp}");
    assert!(is_hex(parts[1], 32), "{tp}");
    assert!(is_hex(parts[2], 16), "{tp}");
    assert!(is_hex(parts[3], 2), "{tp}");
    (
        parts[1].to_string(),
        parts[2].to_string(),
        parts[3].to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_forwarded_request_gets_a_new_trace_and_a_clients_is_replaced() {
    setup();
    let echo = Echo::start().await;
    let p = proxy(&echo.url(), "", "").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let (amzn, tp, _) = upstream_trace(&p, &[]).await;
    assert!(
        amzn.starts_with("Root="),
        "a new header has only a Root: {amzn}"
    );
    let (time, id) = root_parts(&amzn);
    let t = u64::from_str_radix(&time, 16).unwrap();
    assert!(t.abs_diff(now) < 300, "the Root's time is now: {time}");
    // The traceparent names the same trace: the Root's time and id digits.
    let (trace_id, span_id, _) = traceparent_parts(&tp);
    assert_eq!(trace_id, format!("{time}{id}"));
    assert_ne!(span_id, "0000000000000000");

    // Another request, another trace.
    let (amzn2, tp2, _) = upstream_trace(&p, &[]).await;
    assert_ne!(root_parts(&amzn2).1, id);
    assert_ne!(traceparent_parts(&tp2).1, span_id);

    // A client that is not a trusted proxy cannot choose the trace.
    let theirs = format!("Root={ROOT};CalledFrom=client");
    let their_tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (amzn, tp, state) = upstream_trace(
        &p,
        &[
            ("x-amzn-trace-id", theirs.as_bytes()),
            ("traceparent", their_tp.as_bytes()),
            ("tracestate", b"vendor=abc"),
        ],
    )
    .await;
    assert!(
        !amzn.contains(ROOT) && !amzn.contains("CalledFrom"),
        "{amzn}"
    );
    assert!(amzn.starts_with("Root="), "{amzn}");
    assert!(!tp.contains("4bf92f35"), "{tp}");
    assert_eq!(traceparent_parts(&tp).0, {
        let (t, i) = root_parts(&amzn);
        format!("{t}{i}")
    });
    assert_eq!(state, None, "an untrusted tracestate is not passed on");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxys_trace_is_kept_and_a_malformed_one_replaced() {
    setup();
    let echo = Echo::start().await;
    let p = proxy(&echo.url(), TRUSTED, "").await;

    // ALB's rule for a hop: Root and custom fields kept, Self replaced by this hop's.
    let theirs = format!("Self=1-67891233-000000000000000000000000;Root={ROOT};CalledFrom=app");
    let (amzn, tp, _) = upstream_trace(&p, &[("x-amzn-trace-id", theirs.as_bytes())]).await;
    assert!(amzn.starts_with("Self=1-"), "{amzn}");
    assert!(
        amzn.ends_with(&format!(";Root={ROOT};CalledFrom=app")),
        "{amzn}"
    );
    assert!(!amzn.contains("000000000000000000000000"), "{amzn}");
    let self_id = amzn.split(';').next().unwrap()["Self=".len()..].to_string();
    assert!(root_parts(&format!("Root={self_id}")).1.len() == 24);
    assert_eq!(
        traceparent_parts(&tp).0,
        "67891233abcdef012345678912345678",
        "the traceparent is derived from the kept Root"
    );

    // A trusted traceparent keeps its trace id and flag; this hop gets a new span id.
    let their_tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (amzn, tp, state) = upstream_trace(
        &p,
        &[
            ("traceparent", their_tp.as_bytes()),
            ("tracestate", b"vendor=abc"),
        ],
    )
    .await;
    let (trace_id, span_id, flags) = traceparent_parts(&tp);
    assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(span_id, "00f067aa0ba902b7");
    assert_eq!(flags, "01");
    assert_eq!(state.as_deref(), Some("vendor=abc"));
    assert_eq!(amzn, "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736");

    // Malformed, oversized or with control characters: replaced by a new trace.
    let long = format!("Root={ROOT};Pad={}", "a".repeat(600));
    let bad: Vec<Vec<u8>> = vec![
        b"Root=1-6789123-abcdef012345678912345678".to_vec(),
        format!("Root={ROOT};Root=1-00000000-abcdef012345678912345678").into_bytes(),
        format!("Root={ROOT};\tEvil=1").into_bytes(),
        [format!("Root={ROOT};Evil=").as_bytes(), &[0xff]].concat(),
        [format!("Root={ROOT};Evil=").as_bytes(), &[0xc3, 0xa9]].concat(),
        long.into_bytes(),
        b"garbage".to_vec(),
    ];
    for b in &bad {
        let (amzn, tp, _) = upstream_trace(&p, &[("x-amzn-trace-id", b)]).await;
        assert!(
            amzn.starts_with("Root=") && !amzn.contains(ROOT) && !amzn.contains("Evil"),
            "{:?} → {amzn}",
            String::from_utf8_lossy(b)
        );
        let (t, i) = root_parts(&amzn);
        assert_eq!(traceparent_parts(&tp).0, format!("{t}{i}"));
    }
    for b in [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ] {
        let (_, tp, state) = upstream_trace(
            &p,
            &[("traceparent", b.as_bytes()), ("tracestate", b"vendor=abc")],
        )
        .await;
        assert!(!tp.to_ascii_lowercase().contains("4bf92f35"), "{b} → {tp}");
        assert_eq!(state, None, "{b}: no tracestate without its traceparent");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_access_log_names_both_headers_and_forward_auth_answers_carry_them() {
    setup();
    let echo = Echo::start().await;
    let p = proxy(&echo.url(), "", "").await;
    let (amzn, tp, _) = upstream_trace(&p, &[]).await;
    let mut line = Value::Null;
    wait_for("the access line", async || {
        line = p
            .logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["fields"]["message"] == "access" && v["fields"]["path"] == "/x")
            .unwrap_or(Value::Null);
        !line.is_null()
    })
    .await;
    assert_eq!(line["fields"]["trace_id"], json!(amzn), "{line}");
    assert_eq!(line["fields"]["traceparent"], json!(tp), "{line}");

    // Forward auth: the answer names the trace, so the proxy in front can pass it on.
    let r = bare_client()
        .get(format!("{}/oauth2/auth", p.base))
        .header("x-forwarded-uri", "/x")
        .send()
        .await
        .unwrap();
    let a = r.headers()["x-amzn-trace-id"].to_str().unwrap().to_string();
    let t = r.headers()["traceparent"].to_str().unwrap().to_string();
    let (time, id) = root_parts(&a);
    assert_eq!(traceparent_parts(&t).0, format!("{time}{id}"));
}

/// A small OTLP/HTTP collector: every POSTed body, raw and decoded.
#[derive(Clone, Default)]
struct Collector {
    raw: Arc<Mutex<Vec<Bytes>>>,
    decoded: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    async fn start() -> (Collector, String) {
        let c = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = c.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let ct = req
                                .headers()
                                .get("content-type")
                                .map(|v| v.to_str().unwrap_or("").to_string());
                            let body = req.into_body().collect().await?.to_bytes();
                            assert_eq!(ct.as_deref(), Some("application/x-protobuf"));
                            let decoded = ExportTraceServiceRequest::decode(body.clone())
                                .expect("an OTLP protobuf export request");
                            state.paths.lock().unwrap().push(path);
                            state.raw.lock().unwrap().push(body);
                            state.decoded.lock().unwrap().push(decoded);
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (c, url)
    }

    /// Every span received, with its resource's `service.name`.
    fn spans(&self) -> Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)> {
        let mut out = Vec::new();
        for req in self.decoded.lock().unwrap().iter() {
            for rs in &req.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                    .and_then(|a| a.value.as_ref())
                    .and_then(|v| match &v.value {
                        Some(AnyValue::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        out.push((service.clone(), s.clone()));
                    }
                }
            }
        }
        out
    }
}

fn attr(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<String> {
    let v = span
        .attributes
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?;
    match &v.value {
        Some(AnyValue::StringValue(s)) => Some(s.clone()),
        Some(AnyValue::IntValue(i)) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_span_per_request_reaches_an_otlp_collector_without_secrets() {
    setup();
    let echo = Echo::start().await;
    let (collector, url) = Collector::start().await;
    let p = proxy(
        &echo.url(),
        TRUSTED,
        &format!("[tracing]\notlp_endpoint = \"{url}\"\nservice_name = \"portcullis-test\"\n"),
    )
    .await;

    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = bare_client()
        .get(format!("{}/page?code=SECRETCODE&state=SECRETSTATE", p.base))
        .header(
            "cookie",
            "AWSELBAuthSessionCookie-0=SECRETCOOKIE; other=SECRETOTHER",
        )
        .header("authorization", "Bearer SECRETTOKEN")
        .header("traceparent", parent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = echoed(r).await;
    let tp = header(&v, "traceparent").unwrap().to_string();
    let (trace_id, span_id, flags) = traceparent_parts(&tp);
    assert_eq!(
        flags, "01",
        "sampled (ratio 1.0, and the parent is sampled)"
    );
    // A request without a parent: a root span whose trace id is the Root's.
    let r = bare_client()
        .get(format!("{}/nowhere-special", p.base))
        .send()
        .await
        .unwrap();
    let v = echoed(r).await;
    let amzn2 = header(&v, "x-amzn-trace-id").unwrap().to_string();
    let tp2 = header(&v, "traceparent").unwrap().to_string();

    wait_for("two spans at the collector", async || {
        collector.spans().len() >= 2
    })
    .await;
    let spans = collector.spans();
    assert!(
        collector
            .paths
            .lock()
            .unwrap()
            .iter()
            .all(|p| p == "/v1/traces")
    );
    let (service, s) = spans
        .iter()
        .find(|(_, s)| hex(&s.trace_id) == trace_id)
        .unwrap_or_else(|| panic!("no span for trace {trace_id}"));
    assert_eq!(service, "portcullis-test");
    assert_eq!(
        hex(&s.span_id),
        span_id,
        "the span is the upstream's parent"
    );
    assert_eq!(hex(&s.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(s.name, "GET app");
    assert_eq!(attr(s, "http.route").as_deref(), Some("app"));
    assert_eq!(attr(s, "auth.decision").as_deref(), Some("public"));
    assert_eq!(attr(s, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr(s, "url.path").as_deref(), Some("/page"));
    assert_eq!(attr(s, "portcullis.upstream"), Some(echo.url()));
    assert!(s.end_time_unix_nano >= s.start_time_unix_nano);

    let (time, id) = root_parts(&amzn2);
    let (_, s2) = spans
        .iter()
        .find(|(_, s)| hex(&s.trace_id) == format!("{time}{id}"))
        .expect("the root span's trace id is the Root's");
    assert!(s2.parent_span_id.is_empty());
    assert_eq!(hex(&s2.span_id), traceparent_parts(&tp2).1);

    for body in collector.raw.lock().unwrap().iter() {
        let text = String::from_utf8_lossy(body);
        for secret in ["SECRET", "Bearer", "AWSELBAuthSessionCookie", "code="] {
            assert!(!text.contains(secret), "{secret} was exported");
        }
    }
}

/// Twenty requests, each answered 200.
async fn twenty_answered(p: &Proxy) {
    for _ in 0..20 {
        let r = bare_client()
            .get(format!("{}/x", p.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_collector_never_affects_a_request() {
    setup();
    let echo = Echo::start().await;
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let p = proxy(
        &echo.url(),
        "",
        &format!("[tracing]\notlp_endpoint = \"{url}\"\nsample_ratio = 1.0\n"),
    )
    .await;
    twenty_answered(&p).await;
    wait_for("the export warning", async || {
        p.logs().contains("span export failed")
    })
    .await;
    twenty_answered(&p).await;
    assert_eq!(
        p.logs().matches("span export failed").count(),
        1,
        "the warning is rate-limited"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zero_sample_ratio_sends_unsampled_traceparents() {
    setup();
    let echo = Echo::start().await;
    let (_collector, url) = Collector::start().await;
    let p = proxy(
        &echo.url(),
        "",
        &format!("[tracing]\notlp_endpoint = \"{url}\"\nsample_ratio = 0.0\n"),
    )
    .await;
    let (_, tp, _) = upstream_trace(&p, &[]).await;
    assert_eq!(traceparent_parts(&tp).2, "00");
}

/// The decision log, the access log and the metrics say the same word for each decision.
#[tokio::test(flavor = "multi_thread")]
async fn one_decision_vocabulary_in_the_decision_log_the_access_log_and_the_metrics() {
    setup();
    let (port, admin) = Proxy::ports();
    let base = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(json!([Idp::client_for(&base, json!({}))]), 3600);
    let echo = Echo::start().await;
    let static_dir = temp_dir("static");
    std::fs::create_dir_all(static_dir.join("static")).unwrap();
    let cfg = config(port, admin, &idp.issuer, &echo.url(), "", &static_dir).replace(
        "[log]\nlevel = \"debug\"",
        "[log]\nlevel = \"debug\"\nformat = \"json\"\naccess = true",
    );
    assert!(cfg.contains("access = true"));
    let proxy = Proxy::start(port, admin, &cfg).await;

    // unauthenticated: a `deny` route without a session, and a script on an `authenticate` one.
    let c = bare_client();
    let r = c.get(format!("{base}/api/x")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{base}/xhr"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // public
    assert_eq!(
        c.get(format!("{base}/public/x"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // allowed and forbidden
    let bob = client();
    login(&bob, &proxy, "/", "bob").await;
    assert_eq!(
        bob.get(format!("{base}/app/x"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        bob.get(format!("{base}/admin/x"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    let expected = [
        ("/api/x", "/api/", "unauthenticated"),
        ("/xhr", "/", "unauthenticated"),
        ("/public/x", "/public/", "public"),
        ("/app/x", "/", "allowed"),
        ("/admin/x", "/admin/", "forbidden"),
    ];
    let mut lines: Vec<Value> = Vec::new();
    wait_for("every access line", async || {
        lines = proxy
            .logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect();
        expected.iter().all(|(path, _, _)| {
            lines
                .iter()
                .any(|l| l["fields"]["message"] == "access" && l["fields"]["path"] == *path)
        })
    })
    .await;
    let metrics = reqwest::get(format!("{}/metrics", proxy.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (path, route, word) in expected {
        let access = lines
            .iter()
            .find(|l| l["fields"]["message"] == "access" && l["fields"]["path"] == path)
            .unwrap();
        assert_eq!(
            access["fields"]["auth.decision"], word,
            "access log for {path}"
        );
        let decided: Vec<&Value> = lines
            .iter()
            .filter(|l| {
                let m = &l["fields"]["message"];
                (m == "Request allowed" || m == "Request denied")
                    && l["fields"]["route"] == route
                    && l["fields"]["auth.decision"] == word
            })
            .collect();
        assert!(!decided.is_empty(), "decision log says {word} for {path}");
        assert!(
            metrics.contains(&format!("route=\"{route}\",decision=\"{word}\"")),
            "metrics say {word} for {route}: {metrics}"
        );
    }
    // No other word for a request decision anywhere in the decision log.
    let words = [
        "allowed",
        "public",
        "unauthenticated",
        "forbidden",
        "internal",
        "unavailable",
    ];
    for l in &lines {
        let m = &l["fields"]["message"];
        if m == "Request allowed" || m == "Request denied" || m == "access" {
            let w = l["fields"]["auth.decision"].as_str().unwrap_or("");
            assert!(words.contains(&w), "{l}");
        }
    }
    let _ = std::fs::remove_dir_all(&static_dir);
}
