//! One host's run, as one value that owns its connection, log, variables and lock:
//! connect, lock, its steps in order, the recovery its failure calls for, release.

use std::time::Instant;

use super::host_lock::{self, HOST_LOCK};
use super::run::Run;
use super::step::{describe, StepAt, StepOn};
use super::target::connect_target;
use super::verdict::{self, Recovery, StepRun};
use crate::events::{Event, Outcome, StepStatus};
use crate::journal::HostLog;
use crate::play::HostInPlay;
use crate::playbook::Step;
use crate::registered::Registered;
use crate::transport::{ConnectTarget, Connection, Connector};
use crate::vars::Vars;

/// How a host's run ended, as the engine weighs it.
#[derive(Debug, Clone, Copy)]
pub(super) struct HostEnd {
    pub outcome: Outcome,
    /// A step changed the host: its duration is an upgrade's, worth estimating from.
    pub changed: bool,
}

/// How a host ended, before it is on disk.
struct Ending {
    outcome: Outcome,
    failed_step: Option<String>,
    message: Option<String>,
}

impl Ending {
    fn before_steps(outcome: Outcome, message: String) -> Self {
        Ending {
            outcome,
            failed_step: None,
            message: Some(message),
        }
    }
}

pub(super) struct HostRun<'r, C: Connector> {
    run: &'r Run<'r, C>,
    host: &'r HostInPlay,
    target: ConnectTarget,
    log: HostLog,
    conn: C::Connection,
    /// The connection lost mid-upgrade, replaced by a new one; closed at the end.
    lost: Option<C::Connection>,
    vars: Vars,
    /// The lock's directory, while the host's lock is held.
    lock: Option<String>,
    changed_steps: usize,
    skipped_any: bool,
}

/// Runs one host to its end and reports how it ended.
pub(super) async fn run_host<C: Connector>(
    run: &Run<'_, C>,
    host: &HostInPlay,
    batch: usize,
) -> HostEnd {
    let started = Instant::now();
    run.emit(Event::HostStarted {
        host: host.name.clone(),
        batch,
        steps: run.job.playbook.steps.len(),
    });
    let (ending, changed_steps) = match HostRun::connect(run, host, batch).await {
        Ok(host_run) => host_run.drive().await,
        Err(ending) => (ending, 0),
    };
    // On disk before the engine goes on: a host the journal calls finished is never
    // touched again by a resume.
    let event = Event::HostFinished {
        host: host.name.clone(),
        outcome: ending.outcome,
        changed: changed_steps > 0,
        changed_steps,
        duration: started.elapsed(),
        failed_step: ending.failed_step,
        message: ending.message,
        log: run.run_dir.host_log_path(&host.name).display().to_string(),
    };
    run.events.emit_durable(event).await;
    HostEnd {
        outcome: ending.outcome,
        changed: changed_steps > 0,
    }
}

impl<'r, C: Connector> HostRun<'r, C> {
    /// Opens the host's log and its one connection.
    async fn connect(
        run: &'r Run<'r, C>,
        host: &'r HostInPlay,
        batch: usize,
    ) -> Result<Self, Ending> {
        let mut log = run.run_dir.host_log(&host.name).map_err(|e| {
            let dir = run.run_dir.path.display();
            let message = format!("cannot write the host's log in {dir}: {e}");
            Ending::before_steps(Outcome::Failed, message)
        })?;
        log.note(&format!("run {}, batch {batch}", run.run_dir.id));
        let (target, _) = connect_target(&host.name, &host.vars, run.connect_timeout);
        let conn = run.connector.connect(&target).await.map_err(|e| {
            log.note(&e.to_string());
            Ending::before_steps(Outcome::Unreachable, e.to_string())
        })?;
        Ok(HostRun {
            run,
            host,
            target,
            log,
            conn,
            lost: None,
            vars: host.vars.clone(),
            lock: None,
            changed_steps: 0,
            skipped_any: false,
        })
    }

    /// Lock, steps, recovery, release; returns how the host ended and how many steps
    /// changed it.
    async fn drive(mut self) -> (Ending, usize) {
        let ending = match host_lock::take(self.run, &self.conn, &mut self.log, self.host).await {
            Err((outcome, message)) => {
                self.log.note(&message);
                Ending {
                    outcome,
                    failed_step: Some(HOST_LOCK.to_string()),
                    message: Some(message),
                }
            }
            Ok(lock) => {
                self.lock = lock;
                let ending = match self.steps().await {
                    None => self.succeeded(),
                    Some((i, run)) => self.recover(i, run).await,
                };
                self.release(ending.outcome).await;
                ending
            }
        };
        self.conn.close().await;
        if let Some(lost) = &self.lost {
            lost.close().await;
        }
        (ending, self.changed_steps)
    }

    /// Runs the steps in order; returns the one that ended the host, if one did.
    async fn steps(&mut self) -> Option<(usize, StepRun)> {
        let steps = &self.run.job.playbook.steps;
        for (index, step) in steps.iter().enumerate() {
            let at = StepAt {
                index,
                of: steps.len(),
                rollback: false,
            };
            let run = self.step(step, at).await;
            match run.status {
                StepStatus::Changed => self.changed_steps += 1,
                StepStatus::Skipped => self.skipped_any = true,
                _ => {}
            }
            if run.ends_host() {
                return Some((index, run));
            }
        }
        None
    }

    /// Runs one step on the host's connection and keeps what it registers.
    async fn step(&mut self, step: &Step, at: StepAt) -> StepRun {
        let on = StepOn {
            run: self.run,
            conn: &self.conn,
            host: self.host,
            at,
        };
        let run = on.run(&mut self.log, step, &self.vars).await;
        if let Some(r) = &step.register {
            self.vars.insert(r.clone(), run.registered.to_value());
        }
        run
    }

    fn succeeded(&self) -> Ending {
        let outcome = match self.changed_steps == 0 && self.skipped_any {
            true => Outcome::Skipped,
            false => Outcome::Ok,
        };
        Ending {
            outcome,
            failed_step: None,
            message: None,
        }
    }

    /// What step `failed` ending the host calls for, done.
    async fn recover(&mut self, failed: usize, run: StepRun) -> Ending {
        let step = &self.run.job.playbook.steps[failed];
        let past_no_return = self
            .run
            .job
            .playbook
            .point_of_no_return()
            .is_some_and(|p| failed >= p);
        let abandoned = self.run.control.abandon.is_cancelled();
        let reason = run.reason();
        let at = format!("step `{}`", step.name);
        let (outcome, message) = match verdict::recovery(run.status, past_no_return, abandoned) {
            Recovery::End(outcome) => (outcome, reason),
            Recovery::Abandon => (Outcome::Abandoned, Some(self.abandoned(&at))),
            Recovery::RollBack => {
                let (outcome, abandoned) = self.roll_back(failed).await;
                (outcome, abandoned.or(reason))
            }
            Recovery::ReconnectThenRollBack => {
                let lost = reason.unwrap_or_else(|| "connection lost".into());
                self.reconnect_then_roll_back(failed, &at, lost).await
            }
        };
        let message = match (past_no_return, self.failure_note()) {
            (true, Some(note)) => Some(match message {
                Some(m) => format!("{m}; {note}"),
                None => note,
            }),
            _ => message,
        };
        if let Some(m) = &message {
            self.log.note(m);
        }
        Ending {
            outcome,
            failed_step: Some(step.name.clone()),
            message,
        }
    }

    /// The connection was lost past the point of no return: the interrupted step may or
    /// may not have happened, and only the rollback brings the host back to a known state.
    async fn reconnect_then_roll_back(
        &mut self,
        failed: usize,
        at: &str,
        lost: String,
    ) -> (Outcome, Option<String>) {
        match self.reconnect(lost).await {
            Ok(again) => {
                self.lost = Some(std::mem::replace(&mut self.conn, again));
                let (outcome, abandoned) = self.roll_back(failed).await;
                let message = abandoned.unwrap_or_else(|| {
                    format!("the connection was lost in {at}; reconnected and rolled back")
                });
                (outcome, Some(message))
            }
            Err(last) => match verdict::lost_for_good(self.run.control.abandon.is_cancelled()) {
                Outcome::Abandoned => (Outcome::Abandoned, Some(self.abandoned(at))),
                outcome => (
                    outcome,
                    Some(format!(
                        "unreachable mid-upgrade, may be down: the connection was lost in {at} after the point of no return and {} reconnections failed (last: {last})",
                        self.run.reconnect.attempts
                    )),
                ),
            },
        }
    }

    /// Opens the host's connection again, with bounded attempts and an exponential
    /// back-off, each attempt announced.
    async fn reconnect(&mut self, mut error: String) -> Result<C::Connection, String> {
        let policy = &self.run.reconnect;
        for attempt in 1..=policy.attempts {
            let delay = policy.delay_before(attempt);
            self.run.emit(Event::Reconnecting {
                host: self.host.name.clone(),
                attempt,
                of: policy.attempts,
                delay_ms: delay.as_millis() as u64,
                error: error.clone(),
            });
            self.log.note(&format!(
                "connection lost ({error}); reconnecting, attempt {attempt} of {}",
                policy.attempts
            ));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.run.control.abandon.cancelled() => return Err("interrupted".into()),
            }
            match self.run.connector.connect(&self.target).await {
                Ok(conn) => return Ok(conn),
                Err(e) => error = describe(&e),
            }
        }
        Err(error)
    }

    /// Runs the rollback steps after step `failed` failed; stops at the first that fails.
    /// A rollback the operator abandoned says so, and how to finish it.
    async fn roll_back(&mut self, failed: usize) -> (Outcome, Option<String>) {
        let job = self.run.job;
        // Steps that never ran register `skipped`, as in Ansible, so the rollback's
        // templates (validated against every register) still render.
        for step in &job.playbook.steps[failed + 1..] {
            if let Some(r) = &step.register {
                let skipped = Registered {
                    skipped: true,
                    ..Default::default()
                };
                self.vars.insert(r.clone(), skipped.to_value());
            }
        }
        self.log.note("rolling back");
        let of = job.playbook.rollback.len();
        for (index, step) in job.playbook.rollback.iter().enumerate() {
            let at = StepAt {
                index,
                of,
                rollback: true,
            };
            if self.step(step, at).await.ends_host() {
                if self.run.control.abandon.is_cancelled() {
                    let at = format!("rollback step `{}`", step.name);
                    return (Outcome::Abandoned, Some(self.abandoned(&at)));
                }
                return (Outcome::RollbackFailed, None);
            }
        }
        (Outcome::RolledBack, None)
    }

    /// Releases the host's lock, if it holds one, on whichever connection it has now.
    async fn release(&mut self, outcome: Outcome) {
        if let Some(dir) = self.lock.take() {
            host_lock::release(
                self.run,
                &self.conn,
                &mut self.log,
                &dir,
                &self.vars,
                outcome,
            )
            .await;
        }
    }

    /// The playbook's `failure_note` (say, where the backup is), rendered for this host.
    fn failure_note(&self) -> Option<String> {
        let note = self.run.job.playbook.failure_note.as_deref()?;
        self.run
            .templates
            .render(note, &self.vars)
            .ok()
            .filter(|n| !n.trim().is_empty())
    }

    /// What a host abandoned past its point of no return is told (`at`: "step `X`"):
    /// down, and how to finish it.
    fn abandoned(&self, at: &str) -> String {
        format!(
            "DOWN, NOT ROLLED BACK: abandoned in {at}, past the point of no return; `fleetup run --resume {}` finishes or rolls it back",
            self.run.run_dir.id
        )
    }
}
