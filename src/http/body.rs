//! The one body type every response of ours has: proxied bodies stream through it untouched,
//! our own pages are `Full` bytes. Boxed once per response, never buffered.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

/// Errors a streamed body can end with (upstream reset, file read error).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response (and forwarded request) body type.
pub type Body = BoxBody<Bytes, BoxError>;

/// A complete in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Box any streaming body whose error converts into [`BoxError`].
pub fn stream<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}
