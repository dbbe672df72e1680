//! Task-local scope: current/try_current, restore on exit, panic and cancellation,
//! bind visibility, hand-over to spawned and blocking tasks, no leakage.

use std::time::Duration;

use threadline::{BindError, Context, InCurrentContext, Policy, Trust};

fn ctx(id: &str) -> Context {
    let mut h = http::HeaderMap::new();
    h.insert("x-correlation-id", id.parse().unwrap());
    Policy::default().capture(&h, Trust::Trusted).context
}

fn current_id() -> Option<String> {
    Context::try_current()
        .ok()?
        .correlation_id()
        .map(|c| c.as_str().to_owned())
}

#[tokio::test]
async fn outside_any_scope_there_is_a_typed_answer_not_a_panic() {
    assert!(Context::try_current().is_err());
    assert!(Context::current().is_empty());
    assert_eq!(Context::with_current(|_| ()), None);
    assert_eq!(
        threadline::try_bind("user.id", "x"),
        Err(BindError::NoContext)
    );
    threadline::bind("user.id", "x"); // a no-op, not a panic
}

#[tokio::test]
async fn scope_sets_and_restores() {
    ctx("outer")
        .scope(async {
            assert_eq!(current_id().as_deref(), Some("outer"));
            ctx("inner")
                .scope(async {
                    tokio::task::yield_now().await;
                    assert_eq!(current_id().as_deref(), Some("inner"));
                })
                .await;
            assert_eq!(
                current_id().as_deref(),
                Some("outer"),
                "outer restored after inner"
            );
        })
        .await;
    assert_eq!(current_id(), None, "nothing current after the scope");
}

#[tokio::test]
async fn restored_after_a_panic() {
    let outer = ctx("outer");
    outer
        .scope(async {
            let res = tokio::spawn(ctx("panics").scope(async {
                panic!("handler failed");
            }))
            .await;
            assert!(res.is_err());
            // A panic inside a nested scope polled in this task:
            let caught = futures_catch(ctx("inner-panic").scope(async {
                tokio::task::yield_now().await;
                panic!("boom");
            }))
            .await;
            assert!(caught.is_err());
            assert_eq!(
                current_id().as_deref(),
                Some("outer"),
                "restored after a panic mid-poll"
            );
        })
        .await;
    assert_eq!(current_id(), None);
}

async fn futures_catch<F: std::future::Future>(fut: F) -> Result<F::Output, ()> {
    use std::panic::AssertUnwindSafe;
    let mut fut = Box::pin(fut);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(_) => std::task::Poll::Ready(Err(())),
        }
    })
    .await
}

#[tokio::test]
async fn restored_after_cancellation() {
    ctx("outer")
        .scope(async {
            let slow = ctx("cancelled").scope(async {
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
            let timed_out = tokio::time::timeout(Duration::from_millis(10), slow).await;
            assert!(
                timed_out.is_err(),
                "the inner future was dropped mid-flight"
            );
            assert_eq!(current_id().as_deref(), Some("outer"));
        })
        .await;
    assert_eq!(current_id(), None);
}

#[test]
fn sync_scope_for_blocking_code_restores_even_on_panic() {
    ctx("sync").sync_scope(|| {
        assert_eq!(current_id().as_deref(), Some("sync"));
        let r = std::panic::catch_unwind(|| ctx("inner").sync_scope(|| panic!("blocking failure")));
        assert!(r.is_err());
        assert_eq!(current_id().as_deref(), Some("sync"));
    });
    assert_eq!(current_id(), None);
}

#[tokio::test]
async fn bind_is_seen_later_in_the_task_and_by_later_spawns_only() {
    ctx("req")
        .scope(async {
            let before = Context::current();
            let early = threadline::spawn(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Context::current().field("user.id").map(str::to_owned)
            });
            threadline::bind("user.id", "alice");
            threadline::bind("organisation.id", 7u32);
            assert_eq!(Context::current().field("user.id"), Some("alice"));
            assert_eq!(
                before.field("user.id"),
                None,
                "old snapshots are not mutated"
            );
            nested_reads_field().await;
            let late =
                threadline::spawn(async { Context::current().field("user.id").map(str::to_owned) });
            assert_eq!(
                early.await.unwrap(),
                None,
                "a task spawned earlier keeps its snapshot"
            );
            assert_eq!(late.await.unwrap().as_deref(), Some("alice"));
            threadline::bind("user.id", "bob");
            assert_eq!(
                Context::current().field("user.id"),
                Some("bob"),
                "rebinding replaces"
            );
            assert_eq!(Context::current().fields().count(), 2);
            assert_eq!(
                threadline::try_bind("bad name", "x"),
                Err(BindError::InvalidName)
            );
            assert_eq!(threadline::try_bind("", "x"), Err(BindError::InvalidName));
        })
        .await;
}

async fn nested_reads_field() {
    tokio::task::yield_now().await;
    assert_eq!(Context::current().field("organisation.id"), Some("7"));
}

#[tokio::test]
async fn field_values_cannot_carry_control_characters() {
    ctx("req")
        .scope(async {
            threadline::bind("user.id", "alice\r\n{\"level\":\"ERROR\"}");
            let v = Context::current().field("user.id").unwrap().to_owned();
            assert!(!v.contains('\n') && !v.contains('\r'), "{v:?}");
            assert!(v.starts_with("alice"));
        })
        .await;
}

#[tokio::test]
async fn spawn_blocking_and_in_current_context_carry_the_context() {
    ctx("carry")
        .scope(async {
            let blocking = threadline::spawn_blocking(current_id).await.unwrap();
            assert_eq!(blocking.as_deref(), Some("carry"));
            let fut = async { current_id() }.in_current_context();
            let plain = tokio::spawn(fut).await.unwrap();
            assert_eq!(plain.as_deref(), Some("carry"));
            let other = tokio::spawn(async { current_id() }.in_context(ctx("explicit")))
                .await
                .unwrap();
            assert_eq!(other.as_deref(), Some("explicit"));
            let bare = tokio::spawn(async { current_id() }).await.unwrap();
            assert_eq!(bare, None, "plain tokio::spawn does not carry it");
        })
        .await;
    // Outside any scope they behave like the plain tokio functions.
    assert_eq!(
        threadline::spawn(async { current_id() }).await.unwrap(),
        None
    );
    assert_eq!(threadline::spawn_blocking(current_id).await.unwrap(), None);
    assert_eq!(async { current_id() }.in_current_context().await, None);
}

#[test]
fn no_leakage_between_requests_on_one_reused_thread() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        ctx("request-a")
            .scope(async {
                threadline::bind("user.id", "alice");
                tokio::task::yield_now().await;
            })
            .await;
        ctx("request-b")
            .scope(async {
                assert_eq!(current_id().as_deref(), Some("request-b"));
                assert_eq!(
                    Context::current().field("user.id"),
                    None,
                    "no stale field from request A"
                );
            })
            .await;
        // and a panicking request leaves nothing behind either
        let _ = tokio::spawn(ctx("request-c").scope(async { panic!("c fails") })).await;
        assert_eq!(current_id(), None);
    });
}

#[test]
fn no_leakage_across_many_concurrent_tasks_on_two_workers() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut handles = Vec::new();
        for i in 0..5000u32 {
            let id = format!("req-{i}");
            handles.push(tokio::spawn(ctx(&id).scope(async move {
                threadline::bind("n", i);
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                    assert_eq!(current_id().as_deref(), Some(id.as_str()));
                }
                let child = threadline::spawn(async {
                    (
                        current_id(),
                        Context::current().field("n").map(str::to_owned),
                    )
                });
                let (cid, n) = child.await.unwrap();
                assert_eq!(cid.as_deref(), Some(id.as_str()));
                assert_eq!(n, Some(i.to_string()));
                if i % 97 == 0 {
                    panic!("request {i} fails");
                }
                i
            })));
        }
        let mut ok = 0;
        let mut panicked = 0;
        for (i, h) in handles.into_iter().enumerate() {
            match h.await {
                Ok(v) => {
                    assert_eq!(v as usize, i);
                    ok += 1;
                }
                Err(e) => {
                    assert!(e.is_panic());
                    assert_eq!(i % 97, 0, "only the planned panics");
                    panicked += 1;
                }
            }
        }
        assert_eq!(ok + panicked, 5000);
        assert_eq!(panicked, 5000usize.div_ceil(97));
    });
}

#[tokio::test]
async fn headers_set_after_capture_are_forwarded_and_validated() {
    let policy = Policy::builder()
        .header_rule(threadline::HeaderRule::new("x-tenant-id").rename("x-org"))
        .build()
        .unwrap();
    policy
        .new_root()
        .scope(async {
            let early = threadline::spawn(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Context::current().get("x-tenant-id").map(str::to_owned)
            });
            threadline::set_header("x-tenant-id", "acme");
            threadline::set_header("x-feature", "blue");
            threadline::set_header("x-feature", "green");
            assert_eq!(Context::current().get("x-tenant-id"), Some("acme"));
            assert_eq!(
                Context::current().get("x-feature"),
                Some("green"),
                "replaced, not doubled"
            );
            assert_eq!(Context::current().headers().count(), 2);
            let mut out = http::HeaderMap::new();
            Context::current().inject(&mut out);
            assert_eq!(
                out["x-org"], "acme",
                "a policy header goes out under its outbound name"
            );
            assert!(out.get("x-tenant-id").is_none());
            assert_eq!(out["x-feature"], "green");
            assert_eq!(
                early.await.unwrap(),
                None,
                "tasks spawned earlier keep their snapshot"
            );

            for (name, value, why) in [
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    "trace context",
                ),
                ("baggage", "a=1", "baggage"),
                ("x-correlation-id", "other", "correlation id"),
                ("bad name", "v", "invalid name"),
                ("x-a", "line\r\nbreak", "control characters"),
                ("x-a", "ünïcode", "non-ASCII"),
            ] {
                assert_eq!(
                    threadline::try_set_header(name, value),
                    Err(BindError::InvalidHeader),
                    "{why}"
                );
            }
            let too_long = "v".repeat(5000);
            assert_eq!(
                threadline::try_set_header("x-a", &too_long),
                Err(BindError::InvalidHeader),
                "over the limit"
            );
            assert_eq!(
                Context::current().headers().count(),
                2,
                "nothing invalid got in"
            );
        })
        .await;
    assert_eq!(
        threadline::try_set_header("x-a", "v"),
        Err(BindError::NoContext)
    );
}

#[tokio::test]
async fn take_context_gives_back_the_scope_context_with_later_binds() {
    let mut fut = std::pin::pin!(ctx("req-take").scope(async {
        threadline::try_bind("user.id", "u-7").unwrap();
        tokio::task::yield_now().await;
        current_id()
    }));
    assert_eq!(fut.as_mut().await.as_deref(), Some("req-take"));
    let taken = fut.as_mut().take_context().expect("the scope's context");
    assert_eq!(taken.correlation_id().unwrap().as_str(), "req-take");
    assert_eq!(taken.field("user.id"), Some("u-7"));
    // Taken once: a second call has nothing left to give.
    assert!(fut.as_mut().take_context().is_none());
    // Outside any scope, nothing leaked onto the task.
    assert_eq!(current_id(), None);
}

#[tokio::test]
async fn scope_with_keeps_what_make_bound_and_restores_the_outer_context() {
    ctx("outer")
        .scope(async {
            let fut = ctx("req-make").scope_with(|| {
                // Code that runs while the future is made (a service's `call`).
                assert_eq!(current_id().as_deref(), Some("req-make"));
                threadline::try_bind("phase", "call").unwrap();
                async {
                    tokio::task::yield_now().await;
                    (
                        current_id(),
                        Context::current().field("phase").map(str::to_owned),
                    )
                }
            });
            // Between making and polling, the outer context is current again.
            assert_eq!(current_id().as_deref(), Some("outer"));
            let (id, phase) = fut.await;
            assert_eq!(id.as_deref(), Some("req-make"));
            assert_eq!(
                phase.as_deref(),
                Some("call"),
                "the bind made in `make` carries on"
            );
            assert_eq!(current_id().as_deref(), Some("outer"));
        })
        .await;
    assert_eq!(current_id(), None);
}

/// Records, when dropped, which correlation id was current at that moment.
struct SeesOnDrop(std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>);

impl Drop for SeesOnDrop {
    fn drop(&mut self) {
        self.0.lock().unwrap().push(current_id());
    }
}

#[tokio::test]
async fn the_inner_future_is_dropped_inside_its_scope() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));

    // Finished: dropped as soon as it is ready, inside the scope.
    let guard = SeesOnDrop(seen.clone());
    ctx("finished")
        .scope(async move {
            let _guard = guard;
            tokio::task::yield_now().await;
        })
        .await;

    // Cancelled while pending (a client going away, a timeout): the destructors of the
    // request's future still log with its context.
    let guard = SeesOnDrop(seen.clone());
    let pending = ctx("cancelled").scope(async move {
        let _guard = guard;
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    ctx("outer")
        .scope(async {
            assert!(
                tokio::time::timeout(Duration::from_millis(5), pending)
                    .await
                    .is_err()
            );
            assert_eq!(current_id().as_deref(), Some("outer"), "outer restored");
        })
        .await;

    assert_eq!(
        *seen.lock().unwrap(),
        [Some("finished".to_owned()), Some("cancelled".to_owned())]
    );
    assert_eq!(current_id(), None);
}

#[test]
fn a_scope_entered_while_the_context_is_being_read_runs_without_it_and_does_not_panic() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let outer = ctx("outer");
    let seen = outer.sync_scope(|| {
        Context::with_current(|_| {
            // The thread's context is borrowed for reading here: a scope cannot swap
            // it, so the inner code runs as it is, and nothing panics.
            let in_sync = ctx("inner").sync_scope(current_id);
            let in_future = rt.block_on(ctx("inner").scope(async { current_id() }));
            (in_sync, in_future)
        })
    });
    assert_eq!(
        seen,
        Some((Some("outer".to_owned()), Some("outer".to_owned())))
    );
    assert_eq!(current_id(), None);
}
