//! The suites every broker adapter runs against its real broker: a round trip, trust,
//! malformed and oversized context, and many messages consumed concurrently.
//!
//! An adapter's test implements [`Broker`] for its client (publish with raw headers,
//! publish through the adapter, receive, acknowledge) and calls each suite; the suites
//! restore through the generic [`threadline::Restorer`], so they hold every adapter to
//! the same behaviour.

use std::future::Future;
use std::time::Duration;

use threadline::restore::Message;
use threadline::{Context, HeaderRule, Policy, Reason, Restorer, Trust};

/// A broker under test, as the suites drive it.
pub trait Broker {
    /// What the consumer receives.
    type Msg: Send + 'static;

    /// Publishes one message carrying exactly these context headers, written in the
    /// adapter's wire form (header, user property, prefixed field) as a producer in any
    /// language would, and `payload`. No headers at all when `headers` is empty.
    fn publish_raw(&mut self, headers: &[(&str, &str)], payload: &str) -> impl Future<Output = ()>;

    /// Publishes `payload` through the adapter's own producer API, with the current
    /// context.
    fn publish_in_context(&mut self, payload: &str) -> impl Future<Output = ()>;

    /// The next message; panics when none comes within the broker's bound.
    fn receive(&mut self) -> impl Future<Output = Self::Msg>;

    /// The message's payload as text.
    fn payload(msg: &Self::Msg) -> String;

    /// Acknowledges a message once handled (nothing, where the broker has no acks).
    fn ack(&mut self, msg: &Self::Msg) -> impl Future<Output = ()>;
}

/// The suites' policy: `x-tenant-id` is trusted-only, local fields travel.
pub fn policy() -> Policy {
    Policy::builder()
        .header_rule(HeaderRule::new("x-tenant-id").trusted_only())
        .build()
        .expect("a valid policy")
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn traceparent() -> String {
    format!("00-{TRACE}-00f067aa0ba902b7-01")
}

/// Receives one message and runs it through `restorer` (the handler reads the current
/// context and the payload), then acknowledges it.
async fn handle_one<A, B>(broker: &mut B, restorer: &Restorer) -> (String, Context)
where
    B: Broker,
    B::Msg: Message<A>,
{
    let msg = broker.receive().await;
    let (payload, ctx) = restorer
        .handle(&msg, |m| {
            let payload = B::payload(m);
            async move { (payload, Context::current()) }
        })
        .await;
    broker.ack(&msg).await;
    (payload, ctx)
}

/// Published through the adapter inside a request's context, restored by a trusted
/// consumer: same correlation id and trace id, a new parent id, the tenant and the
/// bound `user.id`; nothing dropped, nothing counted as fresh.
pub async fn round_trip<A, B>(broker: &mut B)
where
    B: Broker,
    B::Msg: Message<A>,
{
    let policy = policy();
    let inbound = crate::inbound_with(&policy, "round-trip-1", "acme", Trust::Trusted);
    let producer = inbound
        .ctx
        .clone()
        .scope(async {
            threadline::bind("user.id", "alice");
            broker.publish_in_context("round trip").await;
            Context::current()
        })
        .await;
    let restorer = Restorer::new(policy).trust(Trust::Trusted);
    let (payload, consumer) = handle_one(broker, &restorer).await;
    assert_eq!(payload, "round trip");
    assert_eq!(
        consumer.correlation_id().map(|c| c.as_str()),
        Some("round-trip-1")
    );
    let (ct, pt) = (
        consumer.trace().expect("a trace"),
        producer.trace().expect("a trace"),
    );
    assert_eq!(ct.trace_id(), inbound.trace_id, "the same trace");
    let parent = ct.parent_id().expect("the consumer continues the trace");
    assert_ne!(parent, inbound.parent_id, "the message is a hop of its own");
    assert_ne!(parent, pt.span_id());
    assert_eq!(consumer.get("x-tenant-id"), Some("acme"));
    assert_eq!(consumer.field("user.id"), Some("alice"));
    let stats = restorer.stats();
    assert_eq!(
        (
            stats.messages(),
            stats.restored(),
            stats.fresh(),
            stats.with_rejections()
        ),
        (1, 1, 0, 0)
    );
}

/// A message from an untrusted source cannot set a trusted-only header or a local
/// field; from a trusted one both are kept. The ids are kept either way.
pub async fn trust<A, B>(broker: &mut B)
where
    B: Broker,
    B::Msg: Message<A>,
{
    let tp = traceparent();
    let headers = [
        ("x-correlation-id", "trust-1"),
        ("traceparent", tp.as_str()),
        ("x-tenant-id", "mallory-corp"),
        ("tl-field-user.id", "mallory"),
    ];
    broker.publish_raw(&headers, "untrusted").await;
    broker.publish_raw(&headers, "trusted").await;

    let open = Restorer::new(policy());
    let msg = broker.receive().await;
    let captured = open.restore(&msg);
    broker.ack(&msg).await;
    assert_eq!(B::payload(&msg), "untrusted");
    let ctx = &captured.context;
    assert_eq!(
        ctx.get("x-tenant-id"),
        None,
        "no tenant from an untrusted source"
    );
    assert_eq!(
        ctx.field("user.id"),
        None,
        "no local field from an untrusted source"
    );
    assert_eq!(ctx.correlation_id().map(|c| c.as_str()), Some("trust-1"));
    assert_eq!(
        ctx.trace_id().map(|t| t.to_string()).as_deref(),
        Some(TRACE)
    );
    let reasons: Vec<(String, Reason)> = captured
        .report
        .iter()
        .map(|r| (r.name.to_string(), r.reason))
        .collect();
    assert!(
        reasons.contains(&("x-tenant-id".into(), Reason::Untrusted)),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&("tl-field-user.id".into(), Reason::Untrusted)),
        "{reasons:?}"
    );

    let internal = Restorer::new(policy()).trust(Trust::Trusted);
    let (payload, ctx) = handle_one(broker, &internal).await;
    assert_eq!(payload, "trusted");
    assert_eq!(ctx.get("x-tenant-id"), Some("mallory-corp"));
    assert_eq!(ctx.field("user.id"), Some("mallory"));
}

/// Missing, malformed, oversized and refused context: every message is handled (and
/// acknowledged), the valid part kept, the rest dropped and counted.
pub async fn malformed_and_oversized<A, B>(broker: &mut B)
where
    B: Broker,
    B::Msg: Message<A>,
{
    let tp = traceparent();
    let long_id = "c".repeat(300);
    let huge = "t".repeat(5000);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("none", vec![]),
        (
            "malformed",
            vec![
                ("traceparent", "00-not-a-trace-01"),
                ("x-correlation-id", "has space, and comma"),
                ("x-tenant-id", "acme"),
                ("baggage", "=broken,k=v"),
                ("tl-field-user.id", "bob"),
            ],
        ),
        (
            "oversized",
            vec![
                ("traceparent", tp.as_str()),
                ("x-correlation-id", long_id.as_str()),
                ("x-tenant-id", huge.as_str()),
                ("tl-field-user.id", "carol"),
            ],
        ),
        (
            "refused fields",
            vec![
                ("x-correlation-id", "fields-1"),
                ("tl-field-level", "ERROR"),
                ("tl-field-item", "Kettle%E2%80%AEgpj.exe"),
                ("tl-field-user.id", "dave"),
            ],
        ),
    ];
    for (tag, headers) in &cases {
        broker.publish_raw(headers, tag).await;
    }
    let restorer = Restorer::new(policy()).trust(Trust::Trusted);
    let mut seen: Vec<(String, Context)> = Vec::new();
    for _ in &cases {
        seen.push(handle_one(broker, &restorer).await);
    }
    assert_eq!(seen.len(), cases.len(), "count in = count handled");
    let ctx = |tag: &str| {
        &seen
            .iter()
            .find(|(t, _)| t == tag)
            .unwrap_or_else(|| panic!("{tag} handled"))
            .1
    };

    let none = ctx("none");
    assert!(none.correlation_id().is_some(), "a fresh id");
    assert!(
        none.trace().expect("a trace").parent_id().is_none(),
        "a new trace"
    );

    let malformed = ctx("malformed");
    assert_ne!(
        malformed.correlation_id().map(|c| c.as_str()),
        Some("has space, and comma")
    );
    assert!(malformed.trace().expect("a trace").parent_id().is_none());
    assert_eq!(malformed.get("x-tenant-id"), Some("acme"), "the valid part");
    assert_eq!(malformed.baggage().map(|b| b.as_str()), Some("k=v"));
    assert_eq!(malformed.field("user.id"), Some("bob"));

    let oversized = ctx("oversized");
    assert_eq!(
        oversized.trace_id().map(|t| t.to_string()).as_deref(),
        Some(TRACE)
    );
    assert_ne!(
        oversized.correlation_id().map(|c| c.as_str().len()),
        Some(300)
    );
    assert_eq!(oversized.get("x-tenant-id"), None);
    assert_eq!(oversized.field("user.id"), Some("carol"));

    let refused = ctx("refused fields");
    assert_eq!(refused.field("level"), None, "a name log formats own");
    assert_eq!(refused.field("item"), None, "a bidi override once decoded");
    assert_eq!(refused.field("user.id"), Some("dave"));

    let stats = restorer.stats();
    assert_eq!(stats.messages(), cases.len() as u64);
    assert_eq!(
        (stats.restored(), stats.fresh()),
        (2, 2),
        "none and malformed run fresh"
    );
    assert_eq!(stats.with_rejections(), 3);
}

/// `n` messages, each published in a context of its own (correlation id `conc-<i>`,
/// tenant `tenant-<i>`, `user.id` `user-<i>`, one trace), consumed concurrently: every
/// handler sees its own message's context only (read three times across yields), and
/// every message is handled exactly once.
pub async fn concurrent<A, B>(broker: &mut B, n: usize)
where
    B: Broker,
    B::Msg: Message<A>,
{
    let policy = policy();
    let trace = threadline::codec::TraceId::random();
    for i in 0..n {
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-correlation-id",
            format!("conc-{i}").parse().expect("a header value"),
        );
        h.insert(
            "traceparent",
            format!("00-{trace}-{}-01", threadline::codec::SpanId::random())
                .parse()
                .expect("a header value"),
        );
        h.insert(
            "x-tenant-id",
            format!("tenant-{i}").parse().expect("a header value"),
        );
        let ctx = policy
            .capture(&h, Trust::Trusted)
            .context
            .with_field("user.id", format!("user-{i}"));
        ctx.scope(broker.publish_in_context(&i.to_string())).await;
    }
    let restorer = Restorer::new(policy).trust(Trust::Trusted);
    let trace = trace.to_string();
    let mut tasks = tokio::task::JoinSet::new();
    let mut received = Vec::with_capacity(n);
    for _ in 0..n {
        let msg = broker.receive().await;
        let i: usize = B::payload(&msg).parse().expect("an index payload");
        let trace = trace.clone();
        tasks.spawn(restorer.handle(msg, move |msg| async move {
            let ok = crate::holds_message_context("conc-", &trace, i).await;
            (i, ok, msg)
        }));
    }
    let mut seen = vec![false; n];
    let mut wrong = Vec::new();
    while let Some(r) = tokio::time::timeout(Duration::from_secs(60), tasks.join_next())
        .await
        .expect("handlers finish in time")
    {
        let (i, ok, msg) = r.expect("a handler ran");
        assert!(!seen[i], "message {i} handled twice");
        seen[i] = true;
        if !ok {
            wrong.push(i);
        }
        received.push(msg);
    }
    for msg in &received {
        broker.ack(msg).await;
    }
    assert!(wrong.is_empty(), "handlers saw another context: {wrong:?}");
    assert!(seen.iter().all(|s| *s), "every message handled");
    assert_eq!(restorer.stats().fresh(), 0);
}
