//! Capturing `tracing` events in a test, to assert on what a layer or a library said
//! (a warning about a configuration that cannot work, say).
//!
//! ```
//! let logs = threadline_testkit::logs::Captured::default();
//! tracing::subscriber::with_default(logs.subscriber(), || {
//!     tracing::warn!(destination = "api.example.com", "no target allows it");
//! });
//! let warnings = logs.at(tracing::Level::WARN);
//! assert_eq!(warnings.len(), 1);
//! assert!(warnings[0].contains("no target allows it"));
//! assert!(warnings[0].contains("destination=api.example.com"));
//! ```

use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// The events seen, each as its level and one line of text: the message, then
/// `name=value` for every other field.
#[derive(Clone, Debug, Default)]
pub struct Captured {
    events: Arc<Mutex<Vec<(Level, String)>>>,
}

impl Captured {
    /// A subscriber that records every event (all levels) into this capture.
    pub fn subscriber(&self) -> impl Subscriber + Send + Sync + 'static {
        tracing_subscriber::registry().with(self.clone())
    }

    /// The lines recorded at exactly `level`.
    pub fn at(&self, level: Level) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, text)| text.clone())
            .collect()
    }

    /// Every line recorded, with its level.
    pub fn all(&self) -> Vec<(Level, String)> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Level, String)>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let mut message = format!("{value:?}");
            std::mem::swap(&mut self.0, &mut message);
            self.0.push_str(&message);
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for Captured {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut line = Line(String::new());
        event.record(&mut line);
        self.lock().push((*event.metadata().level(), line.0));
    }
}
