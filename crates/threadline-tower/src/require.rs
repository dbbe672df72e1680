//! Opt-in: answer `400 Bad Request` when the caller sent no valid correlation id.
//!
//! It reads whether the captured context's correlation id was received from the caller
//! ([`Context::correlation_id_origin`]) under the policy's correlation header or any
//! name the policy also accepts (`also_accept("x-request-id")`), so every id the
//! policy takes is accepted here too. The body says which header is missing, never what
//! was sent.
//!
//! Place it inside [`ThreadlineLayer`](crate::ThreadlineLayer), which it reads the
//! captured context from; the 400 then still carries the minted correlation id, so the
//! caller can quote it. Without a `ThreadlineLayer` above it there is no context to
//! read: every request is answered `500 Internal Server Error` with the body
//! `RequireCorrelationIdLayer found no threadline context on the request: it must sit
//! inside ThreadlineLayer`, and the same is logged once at error level, so the mistake
//! shows on the first request instead of as a stream of 400s.
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
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use threadline::{Context, IdOrigin};
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

/// Why a request is refused: the status and the body text.
type Refusal = (StatusCode, String);

/// The text of the 500 a misplaced layer answers with (documented in the module docs).
pub(crate) const NO_CONTEXT: &str = "RequireCorrelationIdLayer found no threadline context on the \
     request: it must sit inside ThreadlineLayer";

/// Whether the captured context's correlation id came from the caller (under the
/// correlation header or one of the names the policy also accepts) rather than being
/// minted on this hop.
fn accepted<B>(req: &Request<B>) -> Result<(), Refusal> {
    let Some(ctx) = req.extensions().get::<Context>() else {
        static SAID: AtomicBool = AtomicBool::new(false);
        if !SAID.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "threadline: {NO_CONTEXT} (every request is answered 500 until it does)"
            );
        }
        return Err((StatusCode::INTERNAL_SERVER_ERROR, NO_CONTEXT.to_owned()));
    };
    if ctx.correlation_id_origin() == Some(IdOrigin::Received) {
        return Ok(());
    }
    let policy = ctx.policy();
    let mut text = format!("missing or invalid {} header", policy.correlation_header());
    let others = policy.also_accepted();
    if !others.is_empty() {
        let names: Vec<&str> = others.iter().map(HeaderName::as_str).collect();
        text = format!(
            "missing or invalid {} (or {}) header",
            policy.correlation_header(),
            names.join(", ")
        );
    }
    Err((StatusCode::BAD_REQUEST, text))
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
            Err((status, message)) => RequireFuture {
                state: State::Rejected {
                    status,
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
        Rejected { status: StatusCode, message: Option<String> },
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
            StateProj::Rejected { status, message } => {
                let mut text = message.take().unwrap_or_default();
                text.push('\n');
                let mut resp = Response::new(RequireBody {
                    kind: Kind::Message {
                        data: Some(Bytes::from(text)),
                    },
                });
                *resp.status_mut() = *status;
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use threadline::Policy;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    async fn status_and_body<S>(svc: S, req: Request<()>) -> (u16, String)
    where
        S: tower_service::Service<
                Request<()>,
                Response = Response<RequireBody<http_body_util::Empty<Bytes>>>,
                Error = std::convert::Infallible,
            >,
    {
        let resp = svc.oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn ok() -> impl tower_service::Service<
        Request<()>,
        Response = Response<http_body_util::Empty<Bytes>>,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone {
        service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Empty::new()))
        })
    }

    #[tokio::test]
    async fn every_name_the_policy_accepts_is_accepted() {
        let policy = Policy::builder()
            .also_accept("x-request-id")
            .build()
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(RequireCorrelationIdLayer::new())
            .service(ok());
        // Stands in for ThreadlineLayer: the request as it would reach this layer.
        let captured = |name: &str| {
            let mut req = Request::builder().header(name, "req-7").body(()).unwrap();
            let ctx = policy
                .capture(req.headers(), threadline::Trust::Trusted)
                .context;
            req.extensions_mut().insert(ctx);
            req
        };
        for name in ["x-correlation-id", "x-request-id"] {
            let (status, _) = status_and_body(svc.clone(), captured(name)).await;
            assert_eq!(status, 200, "{name}");
        }
        let (status, body) = status_and_body(svc.clone(), captured("x-other")).await;
        assert_eq!(status, 400);
        assert_eq!(
            body,
            "missing or invalid x-correlation-id (or x-request-id) header\n"
        );
    }

    #[tokio::test]
    async fn without_a_threadline_layer_it_says_so_with_a_500() {
        let svc = ServiceBuilder::new()
            .layer(RequireCorrelationIdLayer::new())
            .service(ok());
        let req = Request::builder()
            .header("x-correlation-id", "req-9")
            .body(())
            .unwrap();
        let (status, body) = status_and_body(svc, req).await;
        assert_eq!(status, 500);
        assert_eq!(body, format!("{NO_CONTEXT}\n"));
    }
}
