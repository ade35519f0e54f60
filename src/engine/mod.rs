//! The engine: drives the plan's batches in order, at most `forks` hosts at once, applies
//! the failure policy after each batch, and stops safely when told to. It never prints:
//! everything it does is an [`Event`]. It reaches hosts through the
//! [`Connector`](crate::transport::Connector) trait, so its decisions are tested against a
//! scripted host (`tests.rs`) as well as over SSH.
//!
//! Safety rules, in the order they matter:
//! - a host in the middle of its steps is never abandoned: a halt or a first Ctrl-C stops
//!   *scheduling*, and in-flight hosts finish their steps (or their rollback);
//! - a second Ctrl-C (`Control::abort`) terminates the upgrade commands in flight, on the
//!   hosts themselves, and the hosts past their point of no return are then rolled back:
//!   stopping must not leave a mail server down;
//! - only a third (`Control::abandon`) stops those rollbacks too, and each host it leaves is
//!   reported `DOWN, NOT ROLLED BACK`, by name, with the resume that finishes it;
//! - a batch starts only when every host of the previous batch has ended.

mod carried;
mod check;
mod emitter;
mod guard;
mod host_lock;
mod host_run;
mod job;
mod opening;
mod pause;
pub mod policy;
mod recheck;
mod rollout;
mod run;
mod step;
pub mod target;
mod verdict;

#[cfg(test)]
mod scripted;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod turn_tests;

use std::time::Instant;

use futures::stream::StreamExt;

use crate::events::Event;
use crate::journal::RunDir;
use crate::template::Templates;
use crate::transport::Connector;
pub use emitter::Emitter;
pub use job::{Control, Job, JobOptions, JobReport, PreflightResult, Prompt, Reconnect};
use rollout::{BatchAt, Rollout};
use run::{silent, Context, Run};

/// Runs the pre-flight steps on every host of the plan at once (at most `forks`), before
/// any host changes: a fleet with an unreachable or unhealthy host is known before the
/// canary starts. Nothing here changes a host; no event is emitted (the caller shows the
/// results), but every host's output goes to its log as usual. Each healthy host's
/// connection and findings wait in the connector for its turn in [`execute`], unless no
/// turn follows ([`JobOptions::preflight_alone`], a playbook of pre-flight steps only).
pub async fn preflight<C: Connector>(
    job: &Job<'_>,
    connector: &C,
    run_dir: &RunDir,
    options: &JobOptions,
    control: &Control,
) -> Vec<PreflightResult> {
    let silent = silent();
    let cx = Context::new(job, connector, run_dir, options, control);
    let run = Run::new(&cx, templates(job), &silent);
    // A playbook of pre-flight steps only has no turn to wait for.
    let turns = !options.preflight_alone && job.playbook.steps.len() > job.playbook.preflight_len;
    let budget = turns.then(|| waiting_budget(options, job.forks));
    // In the plan's order: the rank is when the host's turn comes.
    let hosts = job.plan.batches.iter().flat_map(|b| &b.hosts);
    let hosts = hosts.filter_map(|name| run.host(name)).enumerate();
    let checks =
        hosts.map(|(rank, h)| check::preflight_host(&run, h, check::Queued { rank, budget }));
    futures::stream::iter(checks)
        .buffered(job.forks.max(1))
        .collect()
        .await
}

/// Runs `job` to its end, a halt, or an interruption.
pub async fn execute<C: Connector>(
    job: &Job<'_>,
    connector: &C,
    run_dir: &RunDir,
    options: &JobOptions,
    control: &Control,
    events: &Emitter,
) -> JobReport {
    let started = Instant::now();
    // Whatever a host or a command says reaches the views and the journal without the
    // run's secrets.
    let events = &events.clone().redacting(run_dir.redactor().clone());
    let batches = &job.plan.batches;
    events.emit(Event::RunStarted {
        run_id: run_dir.id.clone(),
        playbook: job.playbook.path().display().to_string(),
        name: job.playbook.name.clone(),
        pattern: job.pattern.to_string(),
        limit: job.limit.map(str::to_string),
        hosts: job.plan.host_count(),
        batches: batches.len(),
        forks: job.forks,
        run_dir: run_dir.path.display().to_string(),
    });
    for event in &options.announce {
        events.emit(event.clone());
    }
    connector
        .kept()
        .budget_unless_set(|| waiting_budget(options, job.forks));
    let cx = Context::new(job, connector, run_dir, options, control);
    let run = Run::new(&cx, templates(job), events);
    let last = job.plan.last_with_hosts();
    let mut rollout = Rollout::default();
    for (index, batch) in batches.iter().enumerate() {
        let at = BatchAt {
            batch,
            number: index + 1,
            of: batches.len(),
            last: Some(index) == last,
        };
        rollout.batch(&run, options, at).await;
    }
    // Hosts a halt, a deferral or an interruption left waiting.
    crate::transport::close_all(connector.kept().release_all()).await;
    let interrupted = control.stop.is_cancelled() || control.abort.is_cancelled();
    let report = rollout.report(interrupted);
    events
        .emit_durable(Event::RunFinished {
            duration: started.elapsed(),
            untouched: report.untouched.clone(),
            exit_code: report.exit.code(),
        })
        .await;
    report
}

/// How many connections hosts may keep open while others run: waiting for their turn, or
/// for the pauses that verify them.
fn waiting_budget(options: &JobOptions, forks: usize) -> usize {
    options
        .waiting_connections
        .unwrap_or_else(|| crate::open_files::spare_for_waiting(forks.max(1)))
}

/// The process's templates, with room for `job`'s hosts in flight.
fn templates(job: &Job<'_>) -> &'static Templates {
    let templates = Templates::shared();
    templates.make_room_for(job.forks);
    templates
}
