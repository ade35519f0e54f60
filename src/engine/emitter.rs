//! Where the engine's events go: one redacted, stamped stream that feeds every view and,
//! for `run`, the fsync'd journal. The engine never prints; this is its only output.

use std::sync::Arc;

use crate::events::{Event, EventSender, Stamped};
use crate::journal::EventLog;
use crate::secret::Redactor;

/// Where the engine's events go: the views (never waiting for them) and, for `run`, the
/// journal on disk. A step boundary can be made durable before the engine goes on.
/// Secrets are hidden before an event goes anywhere.
#[derive(Debug, Clone)]
pub struct Emitter {
    views: EventSender,
    journal: Option<EventLog>,
    redactor: Arc<Redactor>,
}

impl Emitter {
    pub fn new(views: EventSender) -> Self {
        Emitter {
            views,
            journal: None,
            redactor: Arc::default(),
        }
    }

    pub fn with_journal(views: EventSender, journal: EventLog) -> Self {
        Emitter {
            journal: Some(journal),
            ..Emitter::new(views)
        }
    }

    pub fn redacting(self, redactor: Arc<Redactor>) -> Self {
        Emitter { redactor, ..self }
    }

    fn stamp(&self, mut event: Event) -> Stamped {
        event.redact(&self.redactor);
        Stamped::now(event)
    }

    pub fn emit(&self, event: Event) {
        let stamped = self.stamp(event);
        if let Some(journal) = &self.journal {
            journal.append(&stamped);
        }
        // The views only go away when the process is ending anyway.
        let _ = self.views.send(stamped);
    }

    /// Emits `event` and returns once the journal holds it on disk (fsync'd), so that what
    /// the engine does next is never ahead of what a `kill -9` leaves behind.
    pub async fn emit_durable(&self, event: Event) {
        let stamped = self.stamp(event);
        let written = self.journal.as_ref().map(|j| j.append_durable(&stamped));
        let _ = self.views.send(stamped);
        if let Some(written) = written {
            written.await;
        }
    }
}
