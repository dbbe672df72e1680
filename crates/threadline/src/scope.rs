//! Task-local scope: which [`Context`] is current, and its hand-over to new tasks.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskCx, Poll};

use pin_project_lite::pin_project;
use tokio::task::JoinHandle;
use tokio::task::futures::TaskLocalFuture;

use crate::context::{Context, FieldValue, InvalidFieldName};

tokio::task_local! {
    // `None` only for the instant [`Context::scope_with`] takes its context back out of
    // the synchronous scope, after `make` has returned: no user code sees it.
    static CURRENT: RefCell<Option<Context>>;
}

/// There is no current context (the code runs outside any scope).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoContext(());

impl fmt::Display for NoContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no threadline context is current (outside any scope)")
    }
}

impl std::error::Error for NoContext {}

/// Why [`try_bind`] did not bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BindError {
    /// Outside any scope.
    NoContext,
    /// The name is not a token (see [`Context::try_with_field`]).
    InvalidName,
    /// Called from inside [`Context::with_current`]'s closure.
    Busy,
    /// Not a header a context can carry (see [`Context::try_with_header`]).
    InvalidHeader,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::NoContext => fmt::Display::fmt(&NoContext(()), f),
            BindError::InvalidName => fmt::Display::fmt(&InvalidFieldName::new(), f),
            BindError::Busy => f.write_str("cannot bind while the current context is being read"),
            BindError::InvalidHeader => fmt::Display::fmt(&crate::context::InvalidHeader::new(), f),
        }
    }
}

impl std::error::Error for BindError {}

pin_project! {
    /// A future that runs inside a [`Context`] (or, made outside any scope by
    /// [`InCurrentContext::in_current_context`], without one).
    ///
    /// The previous context is restored whenever the inner future yields, finishes,
    /// panics or is dropped mid-poll.
    #[must_use = "futures do nothing unless polled"]
    pub struct Scoped<F> {
        #[pin]
        inner: ScopedInner<F>,
    }
}

pin_project! {
    #[project = ScopedProj]
    enum ScopedInner<F> {
        Scoped { #[pin] fut: TaskLocalFuture<RefCell<Option<Context>>, F> },
        Plain { #[pin] fut: F },
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<F::Output> {
        match self.project().inner.project() {
            ScopedProj::Scoped { fut } => fut.poll(cx),
            ScopedProj::Plain { fut } => fut.poll(cx),
        }
    }
}

impl<F> Scoped<F> {
    /// Takes the context back out of the scope: the one current at that moment, later
    /// [`bind`](crate::bind)s included. Meant for when the future has finished (a server
    /// layer reading what to echo on the response); taken earlier, the rest of the
    /// future runs without it. `None` for a future scoped without a context, or when it
    /// was taken already.
    pub fn take_context(self: Pin<&mut Self>) -> Option<Context> {
        match self.project().inner.project() {
            ScopedProj::Scoped { fut } => fut.take_value().and_then(RefCell::into_inner),
            ScopedProj::Plain { .. } => None,
        }
    }
}

impl<F> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scoped(..)")
    }
}

impl Context {
    /// Runs `fut` with this context current.
    ///
    /// ```
    /// use threadline::{Context, Policy};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let ctx = Policy::default().new_root();
    /// let id = ctx.correlation_id().cloned();
    /// ctx.scope(async move {
    ///     assert_eq!(Context::current().correlation_id().cloned(), id);
    /// }).await;
    /// assert!(Context::try_current().is_err());
    /// # }
    /// ```
    pub fn scope<F: Future>(self, fut: F) -> Scoped<F> {
        Scoped {
            inner: ScopedInner::Scoped {
                fut: CURRENT.scope(RefCell::new(Some(self)), fut),
            },
        }
    }

    /// Makes a future with `make` while this context is current, then runs that future
    /// in it too: code before the future's first `.await` (a handler closure's body, a
    /// Tower service's `call`) sees the context as well as the future itself.
    ///
    /// ```
    /// use threadline::{Context, Policy};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let ctx = Policy::default().new_root();
    /// let id = ctx.correlation_id().cloned();
    /// let seen_while_making = ctx.scope_with(|| {
    ///     let now = Context::current().correlation_id().cloned();
    ///     async move { now }
    /// }).await;
    /// assert_eq!(seen_while_making, id);
    /// # }
    /// ```
    pub fn scope_with<F, Fut>(self, make: F) -> Scoped<Fut>
    where
        F: FnOnce() -> Fut,
        Fut: Future,
    {
        // The context goes into the synchronous scope and is taken back out of it once
        // `make` has returned (with whatever `make` bound), so it is never cloned.
        let (fut, ctx) = CURRENT.sync_scope(RefCell::new(Some(self)), || {
            let fut = make();
            let ctx = CURRENT.with(|c| c.try_borrow_mut().ok().and_then(|mut c| c.take()));
            (fut, ctx)
        });
        match ctx {
            Some(ctx) => ctx.scope(fut),
            // Unreachable: nothing else holds a borrow once `make` has returned.
            None => Scoped {
                inner: ScopedInner::Plain { fut },
            },
        }
    }

    /// Runs the closure `f` with this context current: the variant for blocking code.
    /// The previous context is restored afterwards, also when `f` panics.
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(RefCell::new(Some(self)), f)
    }

    /// The current context, or [`Context::empty`] outside any scope. Never panics.
    pub fn current() -> Context {
        Self::try_current().unwrap_or_else(|_| Context::empty())
    }

    /// The current context, or [`NoContext`] outside any scope. Never panics.
    pub fn try_current() -> Result<Context, NoContext> {
        Self::with_current(Context::clone).ok_or(NoContext(()))
    }

    /// Calls `f` with a reference to the current context, without cloning it; `None`
    /// outside any scope. For hot paths such as log formatting.
    pub fn with_current<R>(f: impl FnOnce(&Context) -> R) -> Option<R> {
        CURRENT
            .try_with(|c| c.try_borrow().ok()?.as_ref().map(f))
            .ok()
            .flatten()
    }
}

/// Binds a local field on the current context: every later read in this task (and in
/// tasks spawned after this call) sees it; tasks spawned before keep their snapshot.
/// Outside a scope, or with an invalid name, it does nothing (see [`try_bind`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use threadline::{Context, Policy};
///
/// Policy::default().new_root().scope(async {
///     threadline::bind("user.id", 42u64);
///     assert_eq!(Context::current().field("user.id"), Some("42"));
/// }).await;
/// # }
/// ```
pub fn bind(name: impl Into<Cow<'static, str>>, value: impl Into<FieldValue>) {
    let _ = try_bind(name, value);
}

/// Like [`bind`], but says why it did not bind.
pub fn try_bind(
    name: impl Into<Cow<'static, str>>,
    value: impl Into<FieldValue>,
) -> Result<(), BindError> {
    replace_current(|cur| {
        cur.try_with_field(name, value)
            .map_err(|_| BindError::InvalidName)
    })
}

/// Replaces the current context with `next(current)`.
fn replace_current(
    next: impl FnOnce(&Context) -> Result<Context, BindError>,
) -> Result<(), BindError> {
    CURRENT
        .try_with(|cell| {
            let next = {
                let cur = cell.try_borrow().map_err(|_| BindError::Busy)?;
                next(cur.as_ref().ok_or(BindError::NoContext)?)?
            };
            let mut slot = cell.try_borrow_mut().map_err(|_| BindError::Busy)?;
            *slot = Some(next);
            Ok(())
        })
        .map_err(|_| BindError::NoContext)?
}

/// Sets a propagated header on the current context (for the rest of this task and tasks
/// spawned after it; see [`Context::try_with_header`]): the tenant of the authenticated
/// user, say, to be forwarded downstream. Outside a scope, or for a header a context
/// cannot carry, it does nothing (see [`try_set_header`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use threadline::{Context, Policy};
///
/// Policy::default().new_root().scope(async {
///     threadline::set_header("x-tenant-id", "acme");
///     let mut out = http::HeaderMap::new();
///     Context::current().inject(&mut out);
///     assert_eq!(out["x-tenant-id"], "acme");
/// }).await;
/// # }
/// ```
pub fn set_header(name: &str, value: &str) {
    let _ = try_set_header(name, value);
}

/// Like [`set_header`], but says why it did not set the header.
pub fn try_set_header(name: &str, value: &str) -> Result<(), BindError> {
    replace_current(|cur| {
        cur.try_with_header(name, value)
            .map_err(|_| BindError::InvalidHeader)
    })
}

/// Carries a context into a future.
pub trait InCurrentContext: Future + Sized {
    /// Runs this future in the context current now (or without one, outside any scope).
    fn in_current_context(self) -> Scoped<Self> {
        match Context::try_current() {
            Ok(ctx) => ctx.scope(self),
            Err(_) => Scoped {
                inner: ScopedInner::Plain { fut: self },
            },
        }
    }

    /// Runs this future in `ctx`.
    fn in_context(self, ctx: Context) -> Scoped<Self> {
        ctx.scope(self)
    }
}

impl<F: Future> InCurrentContext for F {}

/// `tokio::spawn` that carries the current context into the new task (a snapshot:
/// fields bound later by the spawner are not seen). Outside any scope it is plain
/// `tokio::spawn`.
///
/// # Panics
///
/// Like `tokio::spawn`, when called outside a Tokio runtime.
pub fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(fut.in_current_context())
}

/// `tokio::task::spawn_blocking` that runs the closure in the current context.
///
/// # Panics
///
/// Like `tokio::task::spawn_blocking`, when called outside a Tokio runtime.
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    match Context::try_current() {
        Ok(ctx) => tokio::task::spawn_blocking(move || ctx.sync_scope(f)),
        Err(_) => tokio::task::spawn_blocking(f),
    }
}
