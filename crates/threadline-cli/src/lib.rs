//! The library behind the `threadline` binary.
//!
//! [`demo`] runs a store, a warehouse and a shipping worker in one process and shows one
//! request context crossing all three: over HTTP (the store calls the warehouse through
//! `threadline_tower`'s client layer), into a spawned task (`threadline::spawn`), through
//! a queue (embedded, NATS, RabbitMQ or Redis Streams) into the worker, and onto every
//! log line (`threadline_tracing`). The store's journey page shows it all as a timeline.
//!
//! The binary's `inspect` subcommand lives in the binary itself.

#![deny(unreachable_pub)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod demo;
