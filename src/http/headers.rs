//! Every header name Portcullis reads or writes, declared once.

use http::HeaderName;

pub const X_AMZN_OIDC_ACCESSTOKEN: HeaderName = HeaderName::from_static("x-amzn-oidc-accesstoken");
pub const X_AMZN_OIDC_IDENTITY: HeaderName = HeaderName::from_static("x-amzn-oidc-identity");
pub const X_AMZN_OIDC_DATA: HeaderName = HeaderName::from_static("x-amzn-oidc-data");
pub const X_FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");
pub const X_FORWARDED_EMAIL: HeaderName = HeaderName::from_static("x-forwarded-email");
pub const X_FORWARDED_GROUPS: HeaderName = HeaderName::from_static("x-forwarded-groups");
pub const X_FORWARDED_PREFERRED_USERNAME: HeaderName =
    HeaderName::from_static("x-forwarded-preferred-username");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
pub const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
pub const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
pub const X_REQUESTED_WITH: HeaderName = HeaderName::from_static("x-requested-with");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");
pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
pub const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Identity headers this proxy owns. Any client-sent header that normalises (case-insensitive,
/// `_` and `.` read as `-`) to one of these is removed before forwarding: an upstream must never
/// see a forged identity (oauth2-proxy CVE-2020-4037-style header smuggling through `_`).
pub const IDENTITY_HEADERS: [&str; 7] = [
    "x-amzn-oidc-accesstoken",
    "x-amzn-oidc-identity",
    "x-amzn-oidc-data",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
];

pub const CONTENT_SECURITY_POLICY: HeaderName = http::header::CONTENT_SECURITY_POLICY;
pub const X_CONTENT_TYPE_OPTIONS: HeaderName = http::header::X_CONTENT_TYPE_OPTIONS;
pub const REFERRER_POLICY: HeaderName = http::header::REFERRER_POLICY;
pub const X_FRAME_OPTIONS: HeaderName = http::header::X_FRAME_OPTIONS;
