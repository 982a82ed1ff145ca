//! `[tracing]`: OTLP export of one span per request. Absent, nothing is exported and the
//! request path does no span work (the trace headers are sent either way).

use serde::Deserialize;
use url::Url;

use super::Problems;

/// The serde schema of `[tracing]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
    pub sample_ratio: Option<f64>,
}

/// The validated `[tracing]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// Where spans are POSTed (OTLP/HTTP, protobuf): `otlp_endpoint` with `/v1/traces`
    /// appended when it has no path of its own.
    pub traces_url: Url,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// The share of new traces recorded, 0.0 to 1.0; a trusted caller's sampled flag wins.
    pub sample_ratio: f64,
}

pub const DEFAULT_SERVICE_NAME: &str = "portcullis";

/// Builds `[tracing]` from its TOML value (`None` when the section is absent), pushing every
/// problem found.
pub fn build(value: Option<&toml::Value>, p: &mut Problems) -> Option<TracingConfig> {
    let raw = match RawTracing::deserialize(value?.clone()) {
        Ok(r) => r,
        Err(e) => {
            p.push("tracing", e.message().trim().to_string());
            return None;
        }
    };
    let traces_url = match raw.otlp_endpoint.as_deref() {
        None => {
            p.push(
                "tracing.otlp_endpoint",
                "is required in [tracing] (e.g. \"http://collector:4318\")",
            );
            None
        }
        Some(e) => match Url::parse(e) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.username().is_empty()
                    && u.password().is_none()
                    && u.query().is_none()
                    && u.fragment().is_none() =>
            {
                let mut u = u;
                if u.path() == "/" || u.path().is_empty() {
                    u.set_path("/v1/traces");
                }
                Some(u)
            }
            _ => {
                p.push(
                    "tracing.otlp_endpoint",
                    format!(
                        "{e:?} is not an http:// or https:// URL like \"http://collector:4318\" (no credentials, query or fragment)"
                    ),
                );
                None
            }
        },
    };
    let service_name = raw
        .service_name
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.into());
    if service_name.trim().is_empty() || service_name.len() > 255 {
        p.push(
            "tracing.service_name",
            "must be a non-empty name of at most 255 bytes",
        );
    }
    let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        p.push(
            "tracing.sample_ratio",
            format!("{sample_ratio} is not between 0.0 and 1.0"),
        );
    }
    Some(TracingConfig {
        traces_url: traces_url?,
        service_name,
        sample_ratio,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Option<TracingConfig>, Vec<String>) {
        let t: toml::Table = text.parse().unwrap();
        let mut p = Problems::default();
        let c = build(t.get("tracing"), &mut p);
        (c, p.0.iter().map(|x| x.to_string()).collect())
    }

    #[test]
    fn defaults_and_the_traces_path() {
        let (c, p) = parse("[tracing]\notlp_endpoint = \"http://collector:4318\"\n");
        assert!(p.is_empty(), "{p:?}");
        let c = c.unwrap();
        assert_eq!(c.traces_url.as_str(), "http://collector:4318/v1/traces");
        assert_eq!(c.service_name, "portcullis");
        assert_eq!(c.sample_ratio, 1.0);
        let (c, _) = parse("[tracing]\notlp_endpoint = \"https://c.example/otlp/v1/traces\"\n");
        assert_eq!(
            c.unwrap().traces_url.as_str(),
            "https://c.example/otlp/v1/traces"
        );
        assert_eq!(parse("").0, None);
    }

    #[test]
    fn every_problem_is_named() {
        let (c, p) = parse(
            "[tracing]\notlp_endpoint = \"ftp://x\"\nsample_ratio = 2.0\nservice_name = \"\"\n",
        );
        assert!(c.is_none());
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("tracing.otlp_endpoint: "));
        assert!(p.iter().any(|m| m.starts_with("tracing.sample_ratio: ")));
        assert!(p.iter().any(|m| m.starts_with("tracing.service_name: ")));
        let (_, p) = parse("[tracing]\nservice_name = \"x\"\n");
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("is required"), "{p:?}");
        let (_, p) = parse("[tracing]\notlp_endpoint = \"http://u:pw@c:4318\"\n");
        assert_eq!(p.len(), 1, "{p:?}");
        let (_, p) = parse("[tracing]\notlp_endpoint = \"http://c\"\nratio = 1\n");
        assert!(p[0].starts_with("tracing: unknown field"), "{p:?}");
    }
}
