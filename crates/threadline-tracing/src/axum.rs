//! axum helpers (feature `axum`): bind path parameters and the authenticated user as
//! log fields.
//!
//! [`PathFieldsLayer`] binds chosen path parameters of the matched route as local
//! fields (`/projects/{project_id}` → `project.id`), so every event of the request
//! carries them. Fields are bound with [`threadline::bind`], which needs a current
//! context: put the layer *inside* the layer that opens the threadline scope (the
//! threadline server layer; below, a tiny `from_fn` stand-in) — in axum, a layer added
//! later is further out.
//!
//! # Binding the user after authentication
//!
//! Bind where you learn who the caller is — an auth middleware or an extractor. Every
//! event after that point carries the fields, including events in tasks started later
//! with [`threadline::spawn`]; events logged before it do not.
//!
//! ```
//! use axum::{Router, extract::Request, http::StatusCode, middleware::{self, Next},
//!            response::Response, routing::get};
//! use threadline::{Context, Policy, Trust};
//! use threadline_tracing::axum::PathFieldsLayer;
//! use tower::ServiceExt;
//!
//! /// Authentication: look the caller up, then bind who they are.
//! async fn authenticate(req: Request, next: Next) -> Result<Response, StatusCode> {
//!     let token = req.headers().get("authorization").ok_or(StatusCode::UNAUTHORIZED)?;
//!     let (user, organisation) = match token.as_bytes() {
//!         b"Bearer alice-token" => ("alice", "acme"),
//!         _ => return Err(StatusCode::UNAUTHORIZED),
//!     };
//!     threadline::bind("user.id", user);
//!     threadline::bind("organisation.id", organisation);
//!     Ok(next.run(req).await)
//! }
//!
//! async fn show_task() -> String {
//!     tracing::info!("showing task"); // carries user.id, organisation.id, project.id, task.id
//!     let ctx = Context::current();
//!     format!("{} {} {} {}",
//!         ctx.field("user.id").unwrap(), ctx.field("organisation.id").unwrap(),
//!         ctx.field("project.id").unwrap(), ctx.field("task.id").unwrap())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let policy = Policy::default();
//! let app = Router::new()
//!     .route("/projects/{project_id}/tasks/{task_id}", get(show_task))
//!     .layer(PathFieldsLayer::new()
//!         .param("project_id", "project.id")
//!         .param("task_id", "task.id"))
//!     .layer(middleware::from_fn(authenticate))
//!     // Outermost: capture the context and open the scope (the threadline server
//!     // layer does this for you).
//!     .layer(middleware::from_fn(move |req: Request, next: Next| {
//!         let ctx = policy.capture(req.headers(), Trust::Trusted).context;
//!         ctx.scope(next.run(req))
//!     }));
//!
//! let req = Request::get("/projects/p-7/tasks/42")
//!     .header("authorization", "Bearer alice-token")
//!     .body(axum::body::Body::empty())
//!     .unwrap();
//! let res = app.oneshot(req).await.unwrap();
//! let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
//! assert_eq!(body, "alice acme p-7 42");
//! # }
//! ```
//!
//! The same works from an extractor: a `FromRequestParts` implementation for your
//! `CurrentUser` type can call `threadline::bind` once it has checked the token,
//! since extractors run inside the handler's future, in the request's scope.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll, Waker};

use ::axum::extract::{FromRequestParts, RawPathParams};
use http::Request;
use pin_project_lite::pin_project;
use smallvec::SmallVec;
use threadline::FieldValue;
use tower_layer::Layer;
use tower_service::Service;

type Name = Cow<'static, str>;

/// Binds chosen path parameters of the matched route as local fields.
///
/// Parameters are read after routing, so add the layer with `Router::layer` or
/// `Router::route_layer` (they wrap each route); values are percent-decoded by axum,
/// and control characters in them are replaced like in every field
/// ([`FieldValue::new`]). A parameter the route does not have is skipped.
#[derive(Clone, Debug, Default)]
pub struct PathFieldsLayer {
    params: Arc<Vec<(Name, Name)>>,
}

impl PathFieldsLayer {
    /// A layer that binds nothing yet; add parameters with [`PathFieldsLayer::param`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds the path parameter `param` (`project_id` in `/projects/{project_id}`) as
    /// the field `field` (`project.id`). `field` must be a valid field name (see
    /// [`threadline::Context::try_with_field`]); an invalid one is never bound.
    pub fn param(mut self, param: impl Into<Name>, field: impl Into<Name>) -> Self {
        Arc::make_mut(&mut self.params).push((param.into(), field.into()));
        self
    }
}

impl<S> Layer<S> for PathFieldsLayer {
    type Service = PathFields<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PathFields {
            inner,
            params: Arc::clone(&self.params),
        }
    }
}

/// The service of [`PathFieldsLayer`].
#[derive(Clone, Debug)]
pub struct PathFields<S> {
    inner: S,
    params: Arc<Vec<(Name, Name)>>,
}

type Bindings = SmallVec<[(Name, FieldValue); 2]>;

impl<S> PathFields<S> {
    fn bindings<B>(&self, req: Request<B>) -> (Request<B>, Bindings) {
        let mut bindings = Bindings::new();
        if self.params.is_empty() {
            return (req, bindings);
        }
        let (mut parts, body) = req.into_parts();
        // `RawPathParams` reads the request's extensions and is ready at once.
        let params = {
            let fut = RawPathParams::from_request_parts(&mut parts, &());
            let mut fut = std::pin::pin!(fut);
            match fut.as_mut().poll(&mut TaskCx::from_waker(Waker::noop())) {
                Poll::Ready(Ok(params)) => Some(params),
                _ => None,
            }
        };
        if let Some(params) = params {
            for (param, field) in self.params.iter() {
                if let Some((_, value)) = params.iter().find(|(k, _)| *k == param) {
                    bindings.push((field.clone(), FieldValue::new(value)));
                }
            }
        }
        (Request::from_parts(parts, body), bindings)
    }
}

impl<S, B> Service<Request<B>> for PathFields<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskCx<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (req, bindings) = self.bindings(req);
        ResponseFuture {
            inner: self.inner.call(req),
            bindings,
        }
    }
}

pin_project! {
    /// The response future of [`PathFields`]: binds the fields on its first poll,
    /// inside the request's scope, then runs the inner service.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        bindings: Bindings,
    }
}

impl<F: Future> Future for ResponseFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<F::Output> {
        let this = self.project();
        for (field, value) in this.bindings.drain(..) {
            threadline::bind(field, value);
        }
        this.inner.poll(cx)
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("bindings", &self.bindings)
            .finish_non_exhaustive()
    }
}
