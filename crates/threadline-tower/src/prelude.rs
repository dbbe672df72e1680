//! The types a service names, in one import:
//!
//! ```
//! use threadline_tower::prelude::*;
//!
//! let server = ThreadlineLayer::new(threadline::Policy::default())
//!     .trust(TrustPolicy::private_networks());
//! let client = PropagateLayer::new(Targets::internal().allow(Target::host("*.corp.example")));
//! # drop((server, client));
//! ```

pub use crate::client::{Propagate, PropagateLayer};
#[cfg(feature = "reqwest")]
pub use crate::reqwest::PropagateMiddleware;
pub use crate::server::ThreadlineLayer;
pub use crate::targets::{Grant, Target, Targets};
pub use crate::trust::{PeerAddr, TrustPolicy};
