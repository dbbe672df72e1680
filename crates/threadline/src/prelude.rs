//! The types most code names, in one import:
//!
//! ```
//! use threadline::prelude::*;
//!
//! let policy = Policy::builder()
//!     .header_rule(HeaderRule::new("x-tenant-id").trusted_only())
//!     .build()
//!     .unwrap();
//! let restorer = Restorer::new(policy.clone()).trust(Trust::Trusted);
//! let ctx: Context = policy.new_root();
//! # drop((restorer, ctx));
//! ```
//!
//! Functions stay behind the crate's name, where they read best and clash with
//! nothing: `threadline::bind("user.id", id)`, `threadline::spawn(task)`.

pub use crate::{Context, HeaderRule, Policy, Restorer, Trust};
