//! The usual imports for a subscriber setup: this crate's formatter types and
//! tracing-subscriber's extension traits (`.with(..)` on a registry, `.init()`), so
//! that one line does:
//!
//! ```
//! use threadline_tracing::prelude::*;
//!
//! let subscriber = tracing_subscriber::registry().with(threadline_tracing::json_layer());
//! // In `main`: `subscriber.init();`
//! # let _guard = tracing::subscriber::set_default(subscriber);
//! # let _ = ContextFields::default();
//! ```

pub use crate::{ContextFields, ContextFormat};
pub use tracing_subscriber::layer::SubscriberExt as _;
pub use tracing_subscriber::util::SubscriberInitExt as _;
