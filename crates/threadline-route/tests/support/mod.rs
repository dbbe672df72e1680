//! What the selective-consumption suites of every broker share: the messages (1,000,
//! a third with the key a sandbox claims), the table, the record of who handled what
//! in which context, and the check that each message was handled exactly once.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use threadline::{Policy, Restorer, Routing, Trust};
use threadline_route::{Router, Rule, Upstream};

/// Messages per scenario.
pub const N: u32 = 1000;
/// The id of the end marker published after them.
pub const END: u32 = u32::MAX;
/// The longest any step may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// Who handled each message id (`"baseline"` or `"sandbox"`), and the routing key of
/// the context it ran in.
pub type Seen = Arc<Mutex<HashMap<u32, Vec<(&'static str, Option<String>)>>>>;

/// The policy: the key in `x-routing-key`.
pub fn policy() -> Policy {
    Policy::builder()
        .routing(Routing::header("x-routing-key"))
        .build()
        .unwrap()
}

/// The consumers' restorer: the test's own producer, trusted.
pub fn restorer() -> Restorer {
    Restorer::new(policy()).trust(Trust::Trusted)
}

/// The table: `alice` claimed for the service `orders`.
pub fn claim_alice(router: &Router) {
    let rule = Rule::new(
        "alice-orders",
        "orders",
        ["alice"],
        Upstream::parse("http://127.0.0.1:1").unwrap(),
    )
    .unwrap();
    router.set_rules("code", vec![rule]).unwrap();
}

/// The key message `i` carries: alice, bob or none, in turn.
pub fn key_of(i: u32) -> Option<&'static str> {
    match i % 3 {
        0 => Some("alice"),
        1 => Some("bob"),
        _ => None,
    }
}

/// Notes that `who` handled message `id`, with the key of the context it runs in.
pub fn record(seen: &Seen, who: &'static str, id: u32) {
    // The handler runs in the message's restored context.
    let key = threadline::Context::current()
        .routing_key()
        .map(|k| k.to_string());
    seen.lock().unwrap().entry(id).or_default().push((who, key));
}

/// Waits until `f` holds, at most [`WAIT`].
pub async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every one of the [`N`] messages handled exactly once, in its own context; the
/// sandbox took only alice's (at least 20 of them), and the baseline took alice's
/// again after the change. Answers how many the sandbox handled.
pub fn assert_each_once(seen: &Seen) -> u64 {
    let seen = seen.lock().unwrap();
    let mut by_sandbox = 0;
    let mut alice_by_baseline = 0;
    for i in 0..N {
        let who = seen.get(&i).unwrap_or_else(|| panic!("message {i} lost"));
        assert_eq!(
            who.len(),
            1,
            "message {i} handled {} times: {who:?}",
            who.len()
        );
        let (side, key) = &who[0];
        assert_eq!(
            key.as_deref(),
            key_of(i),
            "message {i} ran in its own context"
        );
        if *side == "sandbox" {
            by_sandbox += 1;
            assert_eq!(key_of(i), Some("alice"), "the sandbox took only its key");
        } else if key_of(i) == Some("alice") {
            alice_by_baseline += 1;
        }
    }
    assert!(by_sandbox >= 20, "{by_sandbox}");
    assert!(
        alice_by_baseline > 0,
        "after the change the baseline takes alice again"
    );
    by_sandbox
}
