//! A [`reqwest_middleware::Middleware`] that writes the current context onto
//! outgoing `reqwest` requests, under the same [`Targets`] rules as the client layer.
//!
//! ```
//! use threadline_tower::{PropagateMiddleware, Target, Targets};
//!
//! let targets = Targets::new().allow(Target::host("*.internal")).others_traceparent_only();
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(PropagateMiddleware::new(targets))
//!     .build();
//! # drop(client);
//! ```

use std::sync::Arc;

use http::Extensions;
use reqwest_middleware::{Middleware, Next, Result};
use threadline::{Context, Policy};

use crate::client::{Notes, inject_with};
use crate::targets::{Grant, Targets};

/// Writes the current context onto outgoing `reqwest` requests (a [`Context`] in the
/// request's middleware extensions wins over the task's). Outside any scope it passes
/// requests through (or starts a new trace, see
/// [`PropagateMiddleware::new_trace_outside_scope`]). A header the caller already set
/// is never overwritten.
#[derive(Clone, Debug)]
pub struct PropagateMiddleware {
    targets: Targets,
    outside: Option<Policy>,
    notes: Arc<Notes>,
}

impl PropagateMiddleware {
    /// Decides per request from its URL (scheme, host, port) through `targets`.
    pub fn new(targets: Targets) -> Self {
        PropagateMiddleware {
            targets,
            outside: None,
            notes: Arc::default(),
        }
    }

    /// Outside any scope, start a new trace from `policy` for each request.
    pub fn new_trace_outside_scope(mut self, policy: Policy) -> Self {
        self.outside = Some(policy);
        self
    }

    fn grant(&self, url: &reqwest::Url) -> &Grant {
        self.targets
            .grant_for(Some(url.scheme()), url.host_str(), url.port())
    }
}

#[async_trait::async_trait]
impl Middleware for PropagateMiddleware {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<reqwest::Response> {
        let grant = self.grant(req.url());
        // A context put in the middleware's extensions wins over the task's.
        let explicit = extensions.get::<Context>().cloned();
        inject_with(
            grant,
            explicit.as_ref(),
            self.outside.as_ref(),
            &self.notes,
            req.headers_mut(),
        );
        next.run(req, extensions).await
    }
}
