//! Task metadata is a carrier like any other: a backend the worker does not trust cannot
//! set a trusted-only header or a local field through it; a trusted one can.

use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::metadata::MetadataStore;
use threadline::{Context, HeaderRule, Policy, Restorer, Trust};
use threadline_apalis::ContextLayer;
use tower_layer::Layer;
use tower_service::Service;

fn policy() -> Policy {
    Policy::builder()
        .header_rule(HeaderRule::new("x-tenant-id").trusted_only())
        .build()
        .unwrap()
}

/// What a job handler behind `ContextLayer::new(restorer)` sees for a task whose
/// metadata holds `pairs`.
async fn seen_by_handler(restorer: Restorer, pairs: &[(&str, &str)]) -> Context {
    let mut metadata = MetadataStore::new();
    for (k, v) in pairs {
        metadata.insert_if_absent(*k, *v);
    }
    let task = TaskBuilder::new(7u32).with_metadata(metadata).build();
    let mut svc = ContextLayer::new(restorer).layer(tower::service_fn(
        |_task: apalis_core::task::Task<u32>| async {
            Ok::<_, std::convert::Infallible>(Context::current())
        },
    ));
    svc.call(task).await.unwrap()
}

const HOSTILE: &[(&str, &str)] = &[
    ("x-correlation-id", "job-1"),
    ("x-tenant-id", "mallory-corp"),
    ("tl-field-user.id", "mallory"),
];

#[tokio::test]
async fn an_untrusted_backend_sets_no_trusted_header_and_no_local_field() {
    let ctx = seen_by_handler(Restorer::new(policy()), HOSTILE).await;
    assert_eq!(ctx.get("x-tenant-id"), None);
    assert_eq!(ctx.field("user.id"), None);
    assert_eq!(ctx.correlation_id().map(|c| c.as_str()), Some("job-1"));
}

#[tokio::test]
async fn a_trusted_backend_carries_both() {
    let ctx = seen_by_handler(Restorer::new(policy()).trust(Trust::Trusted), HOSTILE).await;
    assert_eq!(ctx.get("x-tenant-id"), Some("mallory-corp"));
    assert_eq!(ctx.field("user.id"), Some("mallory"));
}
