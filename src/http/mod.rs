//! HTTP vocabulary shared by every layer: the response body type, header names and reserved
//! paths (each declared once), request-path normalisation, the request's one canonical host, and content negotiation.

pub mod body;
pub mod client_ip;
pub mod context;
pub mod headers;
pub mod host;
pub mod negotiate;
pub mod normalize;
pub mod paths;

/// Marks a request the admin listener has already authorised with the admin bearer token
/// (the pool's admin API then skips its own check).
#[derive(Debug, Clone, Copy)]
pub struct AdminAuthorized;
