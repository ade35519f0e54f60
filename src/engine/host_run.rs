//! One host's run, as one value that owns its connection, log, variables and lock:
//! connect, lock, its steps in order, the recovery its failure calls for, release.

use std::time::Instant;

use super::host_lock::{self, HOST_LOCK};
use super::opening::Next;
use super::recheck::{self, Again};
use super::run::{silent, Run};
use super::step::{describe, StepAt, StepOn};
use super::target::connect_target;
use super::verdict::{self, Recovery, StepRun};
use crate::events::{Event, Outcome, StepStatus};
use crate::journal::HostLog;
use crate::play::HostInPlay;
use crate::playbook::Step;
use crate::registered::Registered;
use crate::transport::kept::Findings;
use crate::transport::{close_all, still_alive, ConnectTarget, Connection, Connector};
use crate::vars::HostVars;

/// How a host's run ended, as the engine weighs it.
#[derive(Debug, Clone, Copy)]
pub(super) struct HostEnd {
    pub outcome: Outcome,
    /// A step changed the host: its duration is an upgrade's, worth estimating from.
    pub changed: bool,
}

/// Where a host's turn falls in the run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Turn {
    /// From 1.
    pub batch: usize,
    /// A pause after the host's batch verifies it: its connection is kept for that.
    pub verified_later: bool,
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
    pub(super) run: &'r Run<'r, C>,
    pub(super) host: &'r HostInPlay,
    pub(super) target: ConnectTarget,
    pub(super) log: HostLog,
    pub(super) conn: C::Connection,
    /// The connection lost mid-upgrade, replaced by a new one; closed at the end.
    pub(super) lost: Option<C::Connection>,
    /// The connection was kept from the pre-flight and nothing ran on it since: if its first
    /// command finds it dead, it died while the host waited, and is opened again.
    pub(super) untried: bool,
    /// What the fleet-wide pre-flight found on the host, until its turn re-checks it.
    pub(super) findings: Option<Findings>,
    /// A pause to come verifies the host: its connection is kept for it when its turn ends.
    pub(super) verified_later: bool,
    pub(super) vars: HostVars,
    /// The lock's directory, while the host's lock is held.
    pub(super) lock: Option<String>,
    pub(super) changed_steps: usize,
    pub(super) skipped_any: bool,
}

/// Runs one host to its end and reports how it ended.
pub(super) async fn run_host<C: Connector>(
    run: &Run<'_, C>,
    host: &HostInPlay,
    turn: Turn,
) -> HostEnd {
    let started = Instant::now();
    run.emit(Event::HostStarted {
        host: host.name.clone(),
        batch: turn.batch,
        steps: run.job.playbook.steps.len(),
    });
    let (ending, changed_steps) = match HostRun::connect(run, host, turn).await {
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
    /// Opens the host's log, and takes the connection its pre-flight kept (while it is
    /// known alive) or opens one.
    async fn connect(
        run: &'r Run<'r, C>,
        host: &'r HostInPlay,
        turn: Turn,
    ) -> Result<Self, Ending> {
        let mut log = run.run_dir.host_log(&host.name).map_err(|e| {
            let dir = run.run_dir.path.display();
            let message = format!("cannot write the host's log in {dir}: {e}");
            Ending::before_steps(Outcome::Failed, message)
        })?;
        log.note(&format!("run {}, batch {}", run.run_dir.id, turn.batch));
        let (target, _) = connect_target(&host.name, &host.vars, run.connect_timeout);
        let (kept, findings) = match run.connector.kept().take(&host.name) {
            Some((conn, findings)) => (conn, Some(findings)),
            None => (None, None),
        };
        let (kept, lost) = still_alive(kept).await;
        if lost {
            log.note("the connection kept since the pre-flight was lost while the host waited: reconnecting");
        }
        let untried = kept.is_some();
        let conn = match kept {
            Some(conn) => conn,
            None => run.connector.connect(&target).await.map_err(|e| {
                log.note(&e.to_string());
                Ending::before_steps(Outcome::Unreachable, e.to_string())
            })?,
        };
        Ok(HostRun {
            run,
            host,
            target,
            log,
            conn,
            lost: None,
            untried,
            findings,
            verified_later: turn.verified_later,
            vars: HostVars::new(host.vars.clone()),
            lock: None,
            changed_steps: 0,
            skipped_any: false,
        })
    }

    /// Lock, steps, recovery, release; returns how the host ended and how many steps
    /// changed it.
    async fn drive(mut self) -> (Ending, usize) {
        let ending = match self.open().await {
            Err((outcome, message)) => {
                self.log.note(&message);
                Ending {
                    outcome,
                    failed_step: Some(HOST_LOCK.to_string()),
                    message: Some(message),
                }
            }
            Ok(next) => {
                let ended = match next {
                    Next::From(first) => self.steps(first).await,
                    Next::Ended(index, run) => Some((index, run)),
                };
                let ending = match ended {
                    None => self.succeeded(),
                    Some((i, run)) => self.recover(i, run).await,
                };
                self.release(ending.outcome).await;
                ending
            }
        };
        let keep = self.verified_later && !ending.outcome.is_failure() && self.conn.is_alive();
        let spare = if keep {
            let kept = self.run.connector.kept();
            kept.keep_verified(&self.host.name, self.conn)
        } else {
            Some(self.conn)
        };
        close_all(spare.into_iter().chain(self.lost)).await;
        self.run.templates.retire(&self.vars);
        (ending, self.changed_steps)
    }

    /// The host's lock, on a connection found alive.
    pub(super) async fn take_lock(&mut self) -> Result<Option<String>, host_lock::Refused> {
        loop {
            let taken = host_lock::take(self.run, &self.conn, &mut self.log, self.host).await;
            // A lock refused for another reason was read: the connection works.
            let lost = matches!(taken, Err((Outcome::Unreachable, _))) && !self.conn.is_alive();
            if !(lost && self.reopen_if_died_waiting().await) {
                self.untried = self.untried && self.run.job.playbook.lock.is_none();
                return taken;
            }
        }
    }

    /// The connection kept since the pre-flight failed its first command: it died while
    /// the host waited. Opens it again (once); true when the command is to be run again.
    pub(super) async fn reopen_if_died_waiting(&mut self) -> bool {
        if !std::mem::take(&mut self.untried) {
            return false;
        }
        self.log.note(
            "the connection kept since the pre-flight was lost while the host waited: reconnecting",
        );
        match self.run.connector.connect(&self.target).await {
            Ok(conn) => {
                std::mem::replace(&mut self.conn, conn).close().await;
                true
            }
            Err(e) => {
                self.log.note(&describe(&e));
                false
            }
        }
    }

    /// What the pre-flight found, re-checked as far as the host can have changed since
    /// (see [`recheck`]); returns the first step to run: past the pre-flight when its
    /// findings stand.
    pub(super) async fn recheck(&mut self) -> usize {
        let playbook = self.run.job.playbook;
        let recheck = playbook.recheck_step();
        let probe_name = recheck.map_or("", |(i, _)| playbook.steps[i].name.as_str());
        let findings = self.findings.take();
        let verdict = match recheck::probe(findings.as_ref(), recheck) {
            Err(again) => Err(again),
            Ok(index) => self.probe(index, findings.as_ref()).await,
        };
        match (verdict, findings) {
            (Ok((probed, vars)), Some(_)) => {
                self.vars = vars;
                self.stood(probed);
                playbook.preflight_len
            }
            (Err(again), _) => {
                if playbook.preflight_len > 0 {
                    self.log.note(&again.note(probe_name));
                }
                0
            }
            (Ok(_), None) => 0,
        }
    }

    /// Runs pre-flight step `index` again, quietly: whether its output shows the host as
    /// the pre-flight `findings` did. When it does, also the host's variables with the
    /// findings laid over them (read back once: the probe ran with them).
    async fn probe(
        &mut self,
        index: usize,
        findings: Option<&Findings>,
    ) -> Result<(StepRun, HostVars), Again> {
        let Some(findings) = findings else {
            return Err(Again::NoFindings);
        };
        let playbook = self.run.job.playbook;
        let step = &playbook.steps[index];
        let silent = silent();
        let quiet = self.run.quiet(&silent);
        let mut vars = self.vars.clone();
        findings.onto(&mut vars);
        loop {
            let on = StepOn {
                run: &quiet,
                conn: &self.conn,
                host: self.host,
                at: StepAt {
                    index,
                    of: playbook.steps.len(),
                    rollback: false,
                },
            };
            let probed = on.run(&mut self.log, step, &vars).await;
            let lost = probed.status == StepStatus::Unreachable && !self.conn.is_alive();
            if !(lost && self.reopen_if_died_waiting().await) {
                self.untried = false;
                recheck::stands(findings, probed.status, &probed.registered.stdout)?;
                return Ok((probed, vars));
            }
        }
    }

    /// The pre-flight's findings stand: its steps are reported done as it found them,
    /// and the probe's own result is registered.
    fn stood(&mut self, mut probed: StepRun) {
        let playbook = self.run.job.playbook;
        self.log
            .note("the host is as its pre-flight found it: the pre-flight's findings stand");
        let probe = playbook.recheck_step().map(|(i, _)| &playbook.steps[i]);
        if let Some(r) = probe.and_then(|step| step.register.as_ref()) {
            self.vars.insert(r.clone(), probed.take_registered());
        }
        self.stood_events(probed.rc)
            .into_iter()
            .for_each(|e| self.run.emit(e));
    }

    /// Runs the steps in order from `first`; returns the one that ended the host, if one
    /// did.
    async fn steps(&mut self, first: usize) -> Option<(usize, StepRun)> {
        let steps = &self.run.job.playbook.steps;
        for (index, step) in steps.iter().enumerate().skip(first) {
            let at = StepAt {
                index,
                of: steps.len(),
                rollback: false,
            };
            let run = match index + 1 == steps.len() && self.rides(step) {
                true => self.step_riding(step, at).await,
                false => self.step(step, at).await,
            };
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
        let mut run = on.run(&mut self.log, step, &self.vars).await;
        if let Some(r) = &step.register {
            self.vars.insert(r.clone(), run.take_registered());
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
                self.vars.insert(r.clone(), skipped.into_value());
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

    /// Whether the lock's release rides in the host's last `step`: the step runs as the
    /// login user, and its exit code alone decides it, so that the host's outcome is
    /// known (ok) when it exits 0, and its result needs nothing of the release.
    fn rides(&self, step: &Step) -> bool {
        self.lock.is_some()
            && !step.become_
            && step.until.is_none()
            && step.retries == 0
            && step.failed_when.is_none()
            && step.changed_when.is_none()
            && step.register.is_none()
    }

    /// Runs the host's last step with the lock's release (and audit line) after it, on
    /// the host, when it exits 0; else the lock stays, released on its own at the end.
    async fn step_riding(&mut self, step: &Step, at: StepAt) -> StepRun {
        let Some(dir) = self.lock.clone() else {
            return self.step(step, at).await;
        };
        let (release, line) = host_lock::release_command(self.run, &dir, &self.vars, Outcome::Ok);
        let on = StepOn {
            run: self.run,
            conn: &self.conn,
            host: self.host,
            at,
        };
        let nonce = self.run.nonce.as_str();
        let (run, released) = on
            .riding(&mut self.log, step, &self.vars, (nonce, &release))
            .await;
        if released {
            self.lock = None;
            host_lock::released(&mut self.log, &line);
        }
        run
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
