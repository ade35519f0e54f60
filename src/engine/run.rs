//! What every host of one run shares: the job, the connector, the event stream, the
//! operator's control, the journal's directory, and the options that apply to all hosts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Control, Emitter, Job, JobOptions, Reconnect};
use crate::events::Event;
use crate::journal::RunDir;
use crate::lock::Owner;
use crate::play::HostInPlay;
use crate::template::Templates;
use crate::transport::Connector;

pub(super) struct Run<'a, C: Connector> {
    pub job: Job<'a>,
    /// The job's hosts by name, for lookups in a fleet of any size.
    pub hosts: Arc<HashMap<&'a str, &'a HostInPlay>>,
    pub templates: &'a Templates,
    pub connector: &'a C,
    pub events: &'a Emitter,
    pub control: &'a Control,
    pub run_dir: &'a RunDir,
    pub connect_timeout: Duration,
    pub reconnect: Reconnect,
    /// This run, as its host locks and audit lines name it.
    pub owner: Owner,
    pub break_lock: bool,
    /// Words added to the host's audit line.
    pub audit_note: Option<String>,
    /// What marks the lines of this run's guarded commands (see `guard`).
    pub nonce: String,
}

/// What the engine is handed, as one value: the job, where it runs and how.
pub(super) struct Context<'a, C: Connector> {
    pub job: Job<'a>,
    pub connector: &'a C,
    pub run_dir: &'a RunDir,
    pub options: &'a JobOptions,
    pub control: &'a Control,
}

impl<'a, C: Connector> Context<'a, C> {
    pub fn new(
        job: &Job<'a>,
        connector: &'a C,
        run_dir: &'a RunDir,
        options: &'a JobOptions,
        control: &'a Control,
    ) -> Self {
        Context {
            job: *job,
            connector,
            run_dir,
            options,
            control,
        }
    }
}

impl<'a, C: Connector> Run<'a, C> {
    pub fn new(cx: &Context<'a, C>, templates: &'a Templates, events: &'a Emitter) -> Self {
        Run {
            job: cx.job,
            hosts: Arc::new(cx.job.host_index()),
            templates,
            connector: cx.connector,
            events,
            control: cx.control,
            run_dir: cx.run_dir,
            connect_timeout: cx.options.connect_timeout,
            reconnect: cx.options.reconnect,
            owner: Owner::me(&cx.run_dir.id),
            break_lock: cx.options.break_lock,
            audit_note: cx.options.audit_note.clone(),
            nonce: super::guard::nonce(),
        }
    }

    pub fn emit(&self, event: Event) {
        self.events.emit(event);
    }

    /// The same run, its events going nowhere: read-only checks (the pre-flight, a pause's
    /// verification) are not hosts' upgrades, and the views show only those.
    pub fn quiet<'q>(&'q self, silent: &'q Emitter) -> Run<'q, C> {
        Run {
            job: self.job,
            hosts: self.hosts.clone(),
            templates: self.templates,
            connector: self.connector,
            events: silent,
            control: self.control,
            run_dir: self.run_dir,
            connect_timeout: self.connect_timeout,
            reconnect: self.reconnect,
            owner: self.owner.clone(),
            break_lock: self.break_lock,
            audit_note: None,
            nonce: self.nonce.clone(),
        }
    }

    pub fn host(&self, name: &str) -> Option<&'a HostInPlay> {
        self.hosts.get(name).copied()
    }
}

/// An event stream that nobody reads.
pub(super) fn silent() -> Emitter {
    let (tx, _) = tokio::sync::mpsc::unbounded_channel();
    Emitter::new(tx)
}
