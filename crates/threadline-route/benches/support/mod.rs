//! What the selective-consumption benches share: the batch size, the 1,000-rule table
//! (20 rules for the benches' service `orders`, none claiming the keys they send) and
//! the consumers' restorer.

use threadline::{Policy, Restorer, Routing, Trust};
use threadline_route::{Router, Rule, Upstream};

/// Messages per measured batch.
pub const BATCH: u64 = 2_000;

/// A table of 1,000 rules.
pub fn router() -> Router {
    let up = Upstream::parse("http://127.0.0.1:1").unwrap();
    let rules = (0..1000)
        .map(|i| {
            let service = if i < 20 {
                "orders".to_owned()
            } else {
                format!("svc{}", i % 50)
            };
            Rule::new(format!("r{i}"), &service, [format!("dev{i}")], up.clone()).unwrap()
        })
        .collect();
    let router = Router::new();
    router.set_rules("bench", rules).unwrap();
    router
}

/// The consumers' restorer: the key in `x-routing-key`, the bench's producer trusted.
pub fn restorer() -> Restorer {
    Restorer::new(
        Policy::builder()
            .routing(Routing::header("x-routing-key"))
            .build()
            .unwrap(),
    )
    .trust(Trust::Trusted)
}
