//! The README's quick start and the examples, built with the workspace.
//!
//! - `src/bin/readme.rs` is the quick start's `main.rs`, extracted from README.md by
//!   `build.rs`: the workspace build compiles it (and clippy lints it), so the README
//!   cannot drift; `tests/readme.rs` checks that this crate's `[dependencies]` are the
//!   README's, and that the quick start's two services and consumer share one
//!   correlation id and trace id when run.
//! - `examples/orders.rs` and `examples/billing.rs` are two services: orders calls
//!   billing over HTTP, billing publishes one NATS message, orders consumes it; JSON
//!   logs. Start them with
//!
//! ```text
//! cargo run --example billing     # 127.0.0.1:3001
//! cargo run --example orders      # 127.0.0.1:3000, calls billing, consumes its message
//! curl -X POST -H 'x-tenant-id: acme' http://127.0.0.1:3000/orders
//! ```
//!
//! `tests/pair.rs` runs the same code in process against the local NATS.
#![deny(unreachable_pub)]
