//! Opt-in: answer `400 Bad Request` when the caller sent no valid correlation id.
//!
//! Place it inside [`ThreadlineLayer`](crate::ThreadlineLayer) (which it reads the
//! captured context from); the 400 then still carries the minted correlation id, so
//! the caller can quote it. The body says which header is missing, never what was
//! sent.
//!
//! ```
//! use http::{Request, Response};
//! use http_body_util::BodyExt;
//! use threadline::Policy;
//! use threadline_tower::{RequireCorrelationIdLayer, ThreadlineLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(ThreadlineLayer::new(Policy::default()))
//!     .layer(RequireCorrelationIdLayer::new())
//!     .service(service_fn(|_: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
//!     }));
//!
//! let resp = svc.clone().oneshot(Request::new(())).await.unwrap();
//! assert_eq!(resp.status(), 400);
//! assert!(resp.headers().contains_key("x-correlation-id")); // the minted one
//! let body = resp.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body, "missing or invalid x-correlation-id header\n");
//!
//! let ok = Request::builder().header("x-correlation-id", "req-1").body(()).unwrap();
//! assert_eq!(svc.oneshot(ok).await.unwrap().status(), 200);
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskCx, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use threadline::Context;
use tower_layer::Layer;
use tower_service::Service;

/// Answers 400 to requests without a valid correlation id. See the [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct RequireCorrelationIdLayer(());

impl RequireCorrelationIdLayer {
    /// The layer.
    pub fn new() -> Self {
        RequireCorrelationIdLayer(())
    }
}

impl<S> Layer<S> for RequireCorrelationIdLayer {
    type Service = RequireCorrelationId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireCorrelationId { inner }
    }
}

/// The service made by [`RequireCorrelationIdLayer`].
#[derive(Clone, Debug)]
pub struct RequireCorrelationId<S> {
    inner: S,
}

/// Whether the request's own correlation header holds the id the context carries
/// (that is, the upstream id was accepted rather than a new one minted).
fn accepted<B>(req: &Request<B>) -> Result<(), String> {
    let Some(ctx) = req.extensions().get::<Context>() else {
        return Err("missing or invalid correlation id header".into());
    };
    let name = ctx.policy().correlation_header();
    let sent = req.headers().get(name).map(HeaderValue::as_bytes);
    match (sent, ctx.correlation_id()) {
        (Some(sent), Some(id)) if sent.trim_ascii() == id.as_str().as_bytes() => Ok(()),
        _ => Err(format!("missing or invalid {name} header")),
    }
}

impl<S, B, ResBody> Service<Request<B>> for RequireCorrelationId<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<RequireBody<ResBody>>;
    type Error = S::Error;
    type Future = RequireFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut TaskCx<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match accepted(&req) {
            Ok(()) => RequireFuture {
                state: State::Inner {
                    fut: self.inner.call(req),
                },
            },
            Err(message) => RequireFuture {
                state: State::Rejected {
                    message: Some(message),
                },
            },
        }
    }
}

pin_project! {
    /// The response future of [`RequireCorrelationId`].
    pub struct RequireFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] fut: F },
        Rejected { message: Option<String> },
    }
}

impl<F> fmt::Debug for RequireFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for RequireFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<RequireBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut } => fut.poll(cx).map(|r| {
                r.map(|resp| {
                    resp.map(|inner| RequireBody {
                        kind: Kind::Inner { inner },
                    })
                })
            }),
            StateProj::Rejected { message } => {
                let mut text = message.take().unwrap_or_default();
                text.push('\n');
                let mut resp = Response::new(RequireBody {
                    kind: Kind::Message {
                        data: Some(Bytes::from(text)),
                    },
                });
                *resp.status_mut() = StatusCode::BAD_REQUEST;
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                Poll::Ready(Ok(resp))
            }
        }
    }
}

pin_project! {
    /// The body of [`RequireCorrelationId`]'s responses: the inner service's body, or
    /// the 400's message.
    pub struct RequireBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] inner: B },
        Message { data: Option<Bytes> },
    }
}

impl<B> fmt::Debug for RequireBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireBody").finish_non_exhaustive()
    }
}

impl<B> Body for RequireBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskCx<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { inner } => inner.poll_frame(cx),
            KindProj::Message { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { inner } => inner.is_end_stream(),
            Kind::Message { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { inner } => inner.size_hint(),
            Kind::Message { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
