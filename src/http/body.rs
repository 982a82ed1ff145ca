//! The one body type every response of ours has: proxied bodies stream through it untouched,
//! our own pages are `Full` bytes. Boxed once per response, never buffered.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};

/// Errors a streamed body can end with (upstream reset, file read error).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response (and forwarded request) body type: a body read straight from an upstream
/// connection, our own complete bytes, or any other stream boxed. The first two are the hot
/// path and are kept inline: no allocation per response.
pub struct Body(Inner);

enum Inner {
    Full(Full<Bytes>),
    Upstream(crate::proxy::h1::UpstreamBody),
    Boxed(BoxBody<Bytes, BoxError>),
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::pin::Pin;
        use std::task::Poll;
        match &mut self.get_mut().0 {
            Inner::Full(b) => match Pin::new(b).poll_frame(cx) {
                Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            Inner::Upstream(b) => Pin::new(b).poll_frame(cx),
            Inner::Boxed(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Full(b) => b.is_end_stream(),
            Inner::Upstream(b) => b.is_end_stream(),
            Inner::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.0 {
            Inner::Full(b) => b.size_hint(),
            Inner::Upstream(b) => b.size_hint(),
            Inner::Boxed(b) => b.size_hint(),
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Body")
    }
}

/// A complete in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Body(Inner::Full(Full::new(bytes.into())))
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// A body read from an upstream connection by the lean HTTP/1.1 client.
pub fn upstream(body: crate::proxy::h1::UpstreamBody) -> Body {
    Body(Inner::Upstream(body))
}

/// Box any streaming body whose error converts into [`BoxError`].
pub fn stream<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    Body(Inner::Boxed(body.map_err(Into::into).boxed()))
}

/// A request body as the service sees it: none (requests the lean HTTP/1.1 server parsed
/// itself, which it only takes when they have no body), or hyper's.
pub enum RequestBody {
    Empty,
    Incoming(hyper::body::Incoming),
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Empty => std::task::Poll::Ready(None),
            RequestBody::Incoming(b) => std::pin::Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Incoming(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            RequestBody::Empty => http_body::SizeHint::with_exact(0),
            RequestBody::Incoming(b) => b.size_hint(),
        }
    }
}
