//! axum: path parameters bound as fields by `PathFieldsLayer`, the user bound after
//! authentication, and concurrent requests that keep their own fields in the logs.

mod common;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use common::{Capture, block_on, runtime};
use serde_json::Value;
use threadline::Trust;
use threadline_tracing::axum::PathFieldsLayer;
use tower::ServiceExt;
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

async fn authenticate(req: Request, next: Next) -> Result<Response, StatusCode> {
    tracing::info!(step = "auth", "before authentication");
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or(StatusCode::UNAUTHORIZED)?;
    let user = token
        .strip_prefix("Bearer ")
        .ok_or(StatusCode::UNAUTHORIZED)?;
    threadline::bind("user.id", user.to_owned());
    threadline::bind("organisation.id", format!("org-of-{user}"));
    Ok(next.run(req).await)
}

async fn task_handler() -> &'static str {
    tracing::info!(step = "handler", "showing task");
    threadline::spawn(async { tracing::info!(step = "task", "background") })
        .await
        .unwrap();
    "ok"
}

async fn health() -> &'static str {
    tracing::info!(step = "health", "healthy");
    "ok"
}

fn app() -> Router {
    let policy = common::policy();
    Router::new()
        .route("/projects/{project_id}/tasks/{task_id}", get(task_handler))
        .route("/health", get(health))
        .route_layer(PathFieldsLayer::new().param("task_id", "task.id"))
        .layer(PathFieldsLayer::new().param("project_id", "project.id"))
        .layer(middleware::from_fn(authenticate))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let ctx = policy.capture(req.headers(), Trust::Trusted).context;
            ctx.scope(next.run(req))
        }))
}

fn get_req(path: &str, user: &str, id: &str) -> Request {
    Request::get(path)
        .header("authorization", format!("Bearer {user}"))
        .header("x-correlation-id", id)
        .header("x-tenant-id", "acme")
        .body(Body::empty())
        .unwrap()
}

fn capture() -> (Capture, Dispatch) {
    let out = Capture::new();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(threadline_tracing::json_layer().with_writer(out.clone())),
    );
    (out, dispatch)
}

#[test]
fn path_params_and_the_authenticated_user_become_fields() {
    let (out, dispatch) = capture();
    let rt = runtime(&dispatch, 0);
    block_on(&rt, &dispatch, async {
        let res = app()
            .oneshot(get_req("/projects/p%2D7/tasks/42", "alice", "req-1"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let res = app()
            .oneshot(get_req("/health", "bob", "req-2"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    });
    let events = out.json();
    let step = |s: &str| -> &Value {
        events
            .iter()
            .find(|e| e["fields"]["step"] == s)
            .unwrap_or_else(|| panic!("no {s}: {events:#?}"))
    };
    // The auth middleware is outside the path layer and logs before anything is
    // bound: only the captured context.
    let auth = &events[0];
    assert_eq!(auth["fields"]["step"], "auth");
    assert_eq!(auth["correlation_id"], "req-1");
    assert!(auth.get("user.id").is_none());
    assert!(auth.get("project.id").is_none());
    for s in ["handler", "task"] {
        let e = step(s);
        assert_eq!(e["correlation_id"], "req-1");
        assert_eq!(e["tenant_id"], "acme");
        assert_eq!(e["project.id"], "p-7", "percent-decoded");
        assert_eq!(e["task.id"], "42");
        assert_eq!(e["user.id"], "alice");
        assert_eq!(e["organisation.id"], "org-of-alice");
    }
    let health = step("health");
    assert_eq!(health["correlation_id"], "req-2");
    assert_eq!(health["user.id"], "bob");
    assert!(
        health.get("project.id").is_none(),
        "a route without the param"
    );
    assert!(health.get("task.id").is_none());
}

#[test]
fn control_characters_in_path_params_do_not_forge_lines() {
    let (out, dispatch) = capture();
    let rt = runtime(&dispatch, 0);
    block_on(&rt, &dispatch, async {
        let res = app()
            .oneshot(get_req(
                "/projects/x%0D%0A%7B%22level%22%3A%22ERROR%22%7D/tasks/1",
                "alice",
                "req-3",
            ))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    });
    let events = out.json();
    assert_eq!(events.len(), 3);
    for e in &events {
        assert_eq!(e["level"], "INFO");
        if e["fields"]["step"] != "auth" {
            assert_eq!(e["project.id"], "x\u{fffd}\u{fffd}{\"level\":\"ERROR\"}");
        }
    }
}

/// 1,000 concurrent requests through the router on a 2-worker runtime: every line
/// carries its own request's correlation id, user and path parameters.
#[test]
fn concurrent_requests_keep_their_own_fields_in_the_logs() {
    const N: usize = 1_000;
    let (out, dispatch) = capture();
    let rt = runtime(&dispatch, 2);
    block_on(&rt, &dispatch, async {
        let app = app();
        let mut handles = Vec::new();
        for i in 0..N {
            let app = app.clone();
            handles.push(tokio::spawn(async move {
                let req = get_req(
                    &format!("/projects/p{i}/tasks/t{i}"),
                    &format!("u{i}"),
                    &format!("req-{i}"),
                );
                let res = app.oneshot(req).await.unwrap();
                assert_eq!(res.status(), StatusCode::OK);
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
    let events = out.json();
    assert_eq!(events.len(), N * 3);
    for e in &events {
        let id = e["correlation_id"].as_str().unwrap();
        let i = id.strip_prefix("req-").unwrap();
        if e["fields"]["step"] != "auth" {
            assert_eq!(e["project.id"], format!("p{i}"), "{e}");
            assert_eq!(e["task.id"], format!("t{i}"), "{e}");
            assert_eq!(e["user.id"], format!("u{i}"), "{e}");
            assert_eq!(e["organisation.id"], format!("org-of-u{i}"), "{e}");
        } else {
            assert!(e.get("user.id").is_none(), "{e}");
            assert!(e.get("project.id").is_none(), "{e}");
        }
    }
}
