//! The scope: which [`Context`] is current on this task, and its hand-over to new tasks.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskCx, Poll};

use pin_project_lite::pin_project;
use tokio::task::JoinHandle;

use crate::context::{Context, FieldValue, InvalidFieldName};

thread_local! {
    // The context of the scope running on this thread: swapped in while a scoped future
    // is polled or a synchronous scope runs, swapped back out afterwards (the same
    // mechanism as `tokio::task_local!`, which also lives in a thread-local). `None`
    // outside any scope.
    static CURRENT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// Runs `f` with the context in `slot` current on this thread. Entering swaps it with
/// the thread's current one; leaving (also by a panic) swaps back, so `slot` ends up
/// with the scope's context as it was at the end, later binds included, and the thread
/// with what it had before.
///
/// When the thread's context cannot be replaced (the thread-local is being torn down,
/// or `f` runs inside a [`Context::with_current`] closure, which holds it borrowed),
/// `f` runs without the scope instead of panicking, and `slot` is left as it was.
fn enter<R>(slot: &mut Option<Context>, f: impl FnOnce() -> R) -> R {
    struct Leave<'a> {
        slot: &'a mut Option<Context>,
    }
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            swap_with_current(self.slot);
        }
    }
    if !swap_with_current(slot) {
        return f();
    }
    let _leave = Leave { slot };
    f()
}

/// Swaps `slot` with the thread's current context; `false` (and nothing swapped) when
/// the thread-local is gone or borrowed.
fn swap_with_current(slot: &mut Option<Context>) -> bool {
    CURRENT
        .try_with(|c| match c.try_borrow_mut() {
            Ok(mut cur) => {
                std::mem::swap(slot, &mut *cur);
                true
            }
            Err(_) => false,
        })
        .unwrap_or(false)
}

/// [`enter`] for a future's own context: a future without one (`None`) runs as it is,
/// leaving the thread's current context in place.
fn within<R>(ctx: &mut Option<Context>, f: impl FnOnce() -> R) -> R {
    if ctx.is_some() { enter(ctx, f) } else { f() }
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
    /// panics or is dropped mid-poll. The inner future is dropped inside the scope too
    /// (when it finishes, or when a pending `Scoped` is dropped), so its destructors see
    /// the context.
    #[must_use = "futures do nothing unless polled"]
    pub struct Scoped<F> {
        // The scope's context while the future is not being polled (it is the thread's
        // current one while it is); `None` for a future without a scope, or once
        // [`Scoped::take_context`] took it.
        ctx: Option<Context>,
        // `None` once finished.
        #[pin]
        fut: Option<F>,
    }

    impl<F> PinnedDrop for Scoped<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if std::mem::needs_drop::<F>() && this.fut.as_ref().get_ref().is_some() {
                let mut fut = this.fut.as_mut();
                within(this.ctx, || fut.set(None));
            }
        }
    }
}

impl<F> Scoped<F> {
    /// A future run without any scope of its own.
    fn plain(fut: F) -> Self {
        Scoped {
            ctx: None,
            fut: Some(fut),
        }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mut fut = this.fut;
        let run = || {
            let Some(inner) = fut.as_mut().as_pin_mut() else {
                panic!("`Scoped` polled after completion");
            };
            let out = inner.poll(cx);
            if out.is_ready() {
                // Dropped here, inside the scope, like a future dropped mid-way.
                fut.set(None);
            }
            out
        };
        within(this.ctx, run)
    }
}

impl<F> Scoped<F> {
    /// Takes the context back out of the scope: the one current at that moment, later
    /// [`bind`](crate::bind)s included. Meant for when the future has finished (a server
    /// layer reading what to echo on the response); taken earlier, the rest of the
    /// future runs without it. `None` for a future scoped without a context, or when it
    /// was taken already.
    pub fn take_context(self: Pin<&mut Self>) -> Option<Context> {
        self.project().ctx.take()
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
            ctx: Some(self),
            fut: Some(fut),
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
        // The context is never cloned: it goes into the thread's slot for `make`, and
        // comes back out (with whatever `make` bound) into the future's.
        let mut ctx = Some(self);
        let fut = enter(&mut ctx, make);
        Scoped {
            ctx,
            fut: Some(fut),
        }
    }

    /// Runs the closure `f` with this context current: the variant for blocking code.
    /// The previous context is restored afterwards, also when `f` panics.
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        enter(&mut Some(self), f)
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
            Err(_) => Scoped::plain(self),
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
