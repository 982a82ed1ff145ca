//! OTLP/HTTP (protobuf) export of one span per request, with the `opentelemetry` SDK.
//!
//! Off the hot path: a request only starts a span (ids it already has) and ends it with a few
//! attributes; the SDK's batch processor queues it (bounded: when full, spans are dropped,
//! never the request held) and a background thread POSTs batches. The POST itself runs on the
//! runtime that started the exporter, through hyper + rustls, under a timeout. A failed export
//! never touches a request; it logs a warning at most once a minute.
//!
//! What a span carries: the route, the decision, the upstream target, method, host, path,
//! client address, status and timing — never a token, a cookie, an `Authorization` value or
//! the query string.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};

use super::Trace;
use crate::config::tracing::TracingConfig;

/// How long one export POST may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Spans waiting for export; beyond this, new spans are dropped.
const MAX_QUEUE: usize = 2048;
const MAX_BATCH: usize = 512;
/// How often a batch is sent when the queue is not full.
const EXPORT_DELAY: Duration = Duration::from_secs(1);
/// Least time between two "export failed" warnings.
const WARN_EVERY_SECS: u64 = 60;
/// Most bytes read from the collector's answer.
const MAX_ANSWER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("tracing: no async runtime to export on")]
    NoRuntime,
    #[error("tracing.otlp_endpoint: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The running exporter for one `[tracing]` configuration.
pub struct Exporter {
    pub config: TracingConfig,
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Exporter {
    /// Starts the batch processor; export POSTs run on the current runtime.
    pub fn start(config: &TracingConfig) -> Result<Exporter, StartError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let client = ExportClient::new(runtime, config.traces_url.to_string());
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(config.traces_url.as_str())
            .with_timeout(EXPORT_TIMEOUT)
            .build()?;
        let batch = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(MAX_QUEUE)
                    .with_max_export_batch_size(MAX_BATCH)
                    .with_scheduled_delay(EXPORT_DELAY)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batch)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                Resource::builder_empty()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("portcullis");
        Ok(Exporter {
            config: config.clone(),
            provider,
            tracer,
        })
    }

    /// Starts the request's span with the ids the trace headers carry (and the trusted
    /// caller's span as its parent), and records the sampler's answer in `trace`.
    pub fn start_span(&self, trace: &mut Trace, started: SystemTime) -> RequestSpan {
        let trace_id = TraceId::from_bytes(trace.trace_id);
        let cx = match trace.parent {
            Some(parent) => Context::new().with_remote_span_context(SpanContext::new(
                trace_id,
                SpanId::from_bytes(parent),
                if trace.sampled {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::default()
                },
                true,
                TraceState::NONE,
            )),
            None => Context::new(),
        };
        let mut builder = self
            .tracer
            .span_builder("request")
            .with_kind(SpanKind::Server)
            .with_start_time(started);
        builder.trace_id = Some(trace_id);
        builder.span_id = Some(SpanId::from_bytes(trace.span_id));
        let span = self.tracer.build_with_context(builder, &cx);
        trace.set_sampled(span.span_context().is_sampled());
        RequestSpan(span)
    }
}

impl Drop for Exporter {
    /// Shutting the SDK down flushes and joins its thread: done on a thread of its own, so
    /// that dropping a configuration never blocks a request worker.
    fn drop(&mut self) {
        let provider = self.provider.clone();
        let _ = std::thread::Builder::new()
            .name("otlp-shutdown".into())
            .spawn(move || {
                let _ = provider.shutdown();
            });
    }
}

/// One request's span, ended at the request's exit with what it became.
pub struct RequestSpan(opentelemetry_sdk::trace::Span);

/// What a request's span records at its end.
pub struct Outcome<'a> {
    pub method: &'a str,
    pub route: Option<&'a str>,
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub client: std::net::IpAddr,
    pub decision: &'static str,
    pub upstream: Option<&'a str>,
    pub status: u16,
    pub request_id: &'a str,
}

impl RequestSpan {
    pub fn end(mut self, o: Outcome<'_>) {
        let span = &mut self.0;
        if !span.is_recording() {
            return;
        }
        span.update_name(Cow::Owned(match o.route {
            Some(r) => format!("{} {r}", o.method),
            None => o.method.to_string(),
        }));
        let mut attrs = Vec::with_capacity(10);
        attrs.push(KeyValue::new("http.request.method", o.method.to_string()));
        if let Some(r) = o.route {
            attrs.push(KeyValue::new("http.route", r.to_string()));
        }
        if let Some(h) = o.host {
            attrs.push(KeyValue::new("server.address", h.to_string()));
        }
        attrs.push(KeyValue::new("url.path", o.path.to_string()));
        attrs.push(KeyValue::new("client.address", o.client.to_string()));
        attrs.push(KeyValue::new("auth.decision", o.decision));
        if let Some(u) = o.upstream {
            attrs.push(KeyValue::new("portcullis.upstream", u.to_string()));
        }
        attrs.push(KeyValue::new(
            "http.response.status_code",
            i64::from(o.status),
        ));
        attrs.push(KeyValue::new(
            "portcullis.request_id",
            o.request_id.to_string(),
        ));
        span.set_attributes(attrs);
        if o.status >= 500 {
            span.set_status(Status::error(""));
        }
        span.end();
    }
}

/// The exporter's HTTP client: hyper + rustls on the runtime that started it (the SDK's batch
/// thread has no runtime of its own), each POST under [`EXPORT_TIMEOUT`].
struct ExportClient {
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
    runtime: tokio::runtime::Handle,
    endpoint: String,
    warnings: Arc<Warnings>,
}

impl std::fmt::Debug for ExportClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportClient")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl ExportClient {
    fn new(runtime: tokio::runtime::Handle, endpoint: String) -> ExportClient {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(crate::auth::http_client::root_store())
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector);
        ExportClient {
            client,
            runtime,
            endpoint,
            warnings: Arc::new(Warnings::default()),
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let request = request.map(Full::new);
        let sent = self
            .runtime
            .spawn(async move {
                tokio::time::timeout(EXPORT_TIMEOUT, async move {
                    let resp = client.request(request).await.map_err(HttpError::from)?;
                    let (parts, body) = resp.into_parts();
                    let body = Limited::new(body, MAX_ANSWER)
                        .collect()
                        .await
                        .map_err(|e| HttpError::from(e.to_string()))?
                        .to_bytes();
                    Ok::<_, HttpError>(Response::from_parts(parts, body))
                })
                .await
            })
            .await;
        let result = match sent {
            Ok(Ok(Ok(r))) if r.status().is_success() => return Ok(r),
            Ok(Ok(Ok(r))) => {
                let status = r.status();
                self.warnings
                    .warn(&self.endpoint, &format!("HTTP {status}"));
                return Ok(r);
            }
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(HttpError::from("timed out")),
            Err(e) => Err(HttpError::from(e.to_string())),
        };
        if let Err(e) = &result {
            self.warnings.warn(&self.endpoint, &error_chain(e.as_ref()));
        }
        result
    }
}

/// The error and its causes, `: `-separated (hyper's own message alone says little).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(e), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// "Export failed" warnings, at most one per [`WARN_EVERY_SECS`], counting those held back.
#[derive(Default)]
struct Warnings {
    last: AtomicU64,
    held_back: AtomicU64,
}

impl Warnings {
    fn warn(&self, endpoint: &str, why: &str) {
        let now = crate::session::now_unix().max(0) as u64;
        let last = self.last.load(Relaxed);
        if (last != 0 && now.saturating_sub(last) < WARN_EVERY_SECS)
            || self
                .last
                .compare_exchange(last, now.max(1), Relaxed, Relaxed)
                .is_err()
        {
            self.held_back.fetch_add(1, Relaxed);
            return;
        }
        let held_back = self.held_back.swap(0, Relaxed);
        tracing::warn!(
            endpoint,
            error = why,
            failures_not_logged = held_back,
            "tracing: span export failed (requests are unaffected; spans of this batch are lost)"
        );
    }
}
