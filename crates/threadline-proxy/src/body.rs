//! The response body of the proxy: the upstream's body streamed through as it comes
//! (frames, trailers included), or a small body the proxy wrote itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

pin_project! {
    /// A response body: streamed from the upstream, or the proxy's own (an error page,
    /// `/healthz`, `/metrics`).
    #[project = Proj]
    pub(crate) enum ProxyBody {
        Upstream { #[pin] body: Incoming },
        Full { data: Option<Bytes> },
    }
}

impl ProxyBody {
    pub(crate) fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        ProxyBody::Full {
            data: (!data.is_empty()).then_some(data),
        }
    }

    pub(crate) fn empty() -> Self {
        ProxyBody::Full { data: None }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            Proj::Upstream { body } => body.poll_frame(cx),
            Proj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { body } => body.is_end_stream(),
            ProxyBody::Full { data } => data.is_none(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { body } => body.size_hint(),
            ProxyBody::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
