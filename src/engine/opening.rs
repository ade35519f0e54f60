//! A host's turn opened in one command (see [`guard`](super::guard)): its lock, its
//! pre-flight's findings re-checked, and its first step, when the findings are fresh and
//! the steps allow it; else the lock, the re-check and the steps one command each.

use std::time::{Duration, Instant};

use super::carried::{Carried, Guarded};
use super::guard::{Guard, Verdict, LOCK_TIME};
use super::host_lock::{self, Refused};
use super::host_run::HostRun;
use super::recheck::{self, Again};
use super::step::{describe, Rendered, StepAt, StepOn};
use super::verdict::StepRun;
use crate::events::{Event, Outcome, StepStatus};
use crate::transport::{Connection, Connector};
use crate::vars::HostVars;

/// Where a host's steps go on after its opening.
pub(super) enum Next {
    /// From this step.
    From(usize),
    /// The step carried by the opening ended the host.
    Ended(usize, StepRun),
}

/// What the guarded opening of a host's turn sends.
struct Plan {
    /// The host's variables with what its pre-flight registered.
    vars: HostVars,
    probe: Rendered,
    probe_timeout: Duration,
    expect: crate::cksum::Cksum,
    /// The steps skipped before the first one to run, and that one, if it is carried.
    skipped: Vec<usize>,
    first: Option<(usize, Rendered)>,
}

impl<C: Connector> HostRun<'_, C> {
    /// The lock, the findings re-checked, maybe the first step; returns where the steps
    /// go on.
    pub(super) async fn open(&mut self) -> Result<Next, Refused> {
        let playbook = self.run.job.playbook;
        let probe = recheck::probe(self.findings.as_ref(), playbook.recheck_step());
        let Some(plan) = probe.ok().and_then(|index| self.plan(index)) else {
            self.lock = self.take_lock().await?;
            return Ok(Next::From(self.recheck().await));
        };
        let dir = host_lock::dir(self.run, self.host)?;
        loop {
            let take = dir
                .as_deref()
                .map(|d| crate::lock::take_command(d, &self.run.owner, None));
            let guarded = self.guard(&plan, take.as_deref()).await;
            // Sent again on a new connection only when it cannot have run: a carried step
            // may be running on the host although its verdict never came back.
            if let Guarded::Failed(Ok(e)) = &guarded {
                let unrun = plan.first.is_none() || e.never_sent();
                if unrun
                    && e.is_unreachable()
                    && !self.conn.is_alive()
                    && self.reopen_if_died_waiting().await
                {
                    continue;
                }
            }
            self.untried = false;
            return self.guarded(guarded, plan, dir).await;
        }
    }

    /// The guarded opening, when the probe can be sent in one command with the lock: it
    /// runs as the login user (no `become`) and its findings hold a sum to compare.
    fn plan(&self, probe: usize) -> Option<Plan> {
        let findings = self.findings.as_ref()?;
        let expect = findings.probe?;
        let step = &self.run.job.playbook.steps[probe];
        let mut vars = self.vars.clone();
        findings.onto(&mut vars);
        // The host judges the probe by its exit code and stdout alone: a probe whose
        // failure is judged otherwise (its own `failed_when`, several attempts) is judged
        // here, as without the guard. (Whether it changed anything does not count.)
        let judged_here = step.failed_when.is_some() || step.until.is_some() || step.retries > 0;
        if step.become_ || judged_here {
            return None;
        }
        let rendered = self.on(probe).prepare(step, &step.scope(&vars)).ok()??;
        let (skipped, first) = self.first_to_run(&vars);
        Some(Plan {
            probe: rendered,
            probe_timeout: step.timeout,
            expect,
            skipped,
            first,
            vars,
        })
    }

    /// The first step past the pre-flight whose `when` holds, when it can be carried:
    /// without `become` (the transport would run the guard under sudo), decided by one
    /// attempt, and before the point of no return (a step the journal must name before
    /// it runs). With the steps skipped before it.
    fn first_to_run(&self, vars: &HostVars) -> (Vec<usize>, Option<(usize, Rendered)>) {
        let playbook = self.run.job.playbook;
        let no_return = playbook.point_of_no_return().unwrap_or(usize::MAX);
        let mut vars = vars.clone();
        let mut skipped = Vec::new();
        for (index, step) in playbook.steps.iter().enumerate() {
            if index < playbook.preflight_len {
                continue;
            }
            match self.on(index).prepare(step, &step.scope(&vars)) {
                Ok(None) => {
                    skipped.push(index);
                    if let Some(r) = &step.register {
                        vars.insert(r.clone(), StepRun::skipped().registered.into_value());
                    }
                }
                Ok(Some(rendered))
                    if !step.become_
                        && step.until.is_none()
                        && step.retries == 0
                        && index < no_return =>
                {
                    return (skipped, Some((index, rendered)));
                }
                _ => break,
            }
        }
        (Vec::new(), None)
    }

    /// The step at `index` of the host's steps, on its connection.
    pub(super) fn on(&self, index: usize) -> StepOn<'_, C> {
        StepOn {
            run: self.run,
            conn: &self.conn,
            host: self.host,
            at: StepAt {
                index,
                of: self.run.job.playbook.steps.len(),
                rollback: false,
            },
        }
    }

    /// Sends the guard of `plan`, taking the lock with `take` when there is one.
    async fn guard(&mut self, plan: &Plan, take: Option<&str>) -> Guarded {
        let guard = Guard {
            nonce: &self.run.nonce,
            lock: take,
            probe: &plan.probe.command,
            expect: plan.expect,
            step: plan.first.as_ref().map(|(_, r)| r.command.as_str()),
        };
        let script = guard.script();
        let playbook = self.run.job.playbook;
        let first = plan
            .first
            .as_ref()
            .map(|(i, r)| (*i, &playbook.steps[*i], r));
        let timeout = LOCK_TIME
            + plan.probe_timeout
            + first.map_or(Duration::ZERO, |(_, step, _)| step.timeout);
        let mut stood = self.stood_events(Some(0));
        let scoped = first.map(|(_, step, _)| step.scope(&plan.vars));
        let carried = first
            .zip(scoped.as_ref())
            .map(|((_, step, rendered), vars)| Carried {
                step,
                vars,
                rendered,
            });
        if carried.is_some() {
            let now = Instant::now();
            let skipped = StepRun::skipped();
            stood.extend(
                plan.skipped
                    .iter()
                    .map(|&i| self.on(i).finished(&playbook.steps[i], &skipped, now, 0)),
            );
        }
        let on = StepOn {
            run: self.run,
            conn: &self.conn,
            host: self.host,
            at: self.on(first.map_or(0, |(i, _, _)| i)).at,
        };
        let nonce = self.run.nonce.as_str();
        on.guarded(&mut self.log, carried, &script, timeout, (nonce, stood))
            .await
    }

    /// What the guard decided, acted on: the lock is ours when it stood or found the host
    /// changed; someone else's lock is judged as without the guard.
    async fn guarded(
        &mut self,
        guarded: Guarded,
        plan: Plan,
        dir: Option<String>,
    ) -> Result<Next, Refused> {
        let taken = |log: &mut crate::journal::HostLog| {
            if let Some(d) = &dir {
                log.note(&format!("host lock taken: {d}/lock"));
            }
        };
        match guarded {
            Guarded::Failed(why) => {
                // The lock may have been taken before the guard was cut short: ours goes
                // (only ours: the command checks its owner).
                if let (Some(d), true) = (&dir, self.conn.is_alive()) {
                    let command = crate::lock::release_command(d, &self.run.owner, None);
                    let _ = crate::lock::run(&self.conn, &command).await;
                }
                let turn = |e: &crate::transport::TransportError| {
                    format!("at the host's turn: {}", describe(e))
                };
                Err(match why {
                    Ok(e) if e.is_unreachable() => (Outcome::Unreachable, turn(&e)),
                    Ok(e) => (Outcome::Failed, turn(&e)),
                    Err(garbled) => (Outcome::Failed, garbled),
                })
            }
            Guarded::Refused(Verdict::Held) => {
                self.lock = self.take_lock().await?;
                Ok(Next::From(self.recheck().await))
            }
            Guarded::Refused(Verdict::Changed) => {
                taken(&mut self.log);
                self.lock = dir;
                self.findings = None;
                let probe = self.run.job.playbook.recheck_step();
                let name = probe.map_or("", |(i, _)| &self.run.job.playbook.steps[i].name);
                self.log.note(&Again::Changed.note(name));
                Ok(Next::From(0))
            }
            Guarded::Refused(Verdict::Stood) | Guarded::Stood(None) => {
                taken(&mut self.log);
                self.lock = dir;
                self.stands(plan.vars);
                Ok(Next::From(self.run.job.playbook.preflight_len))
            }
            Guarded::Stood(Some(run)) => {
                taken(&mut self.log);
                self.lock = dir;
                let Plan {
                    vars,
                    skipped,
                    first,
                    ..
                } = plan;
                self.stands(vars);
                Ok(self.carried(&skipped, first.map(|(i, _)| i), run))
            }
        }
    }

    /// The findings stood: the host's variables are what its pre-flight registered.
    fn stands(&mut self, vars: HostVars) {
        self.findings = None;
        self.vars = vars;
        self.log
            .note("the host is as its pre-flight found it: the pre-flight's findings stand");
    }

    /// The steps skipped before the carried one, and its run, as the host's steps keep
    /// them.
    fn carried(&mut self, skipped: &[usize], first: Option<usize>, mut run: StepRun) -> Next {
        let steps = &self.run.job.playbook.steps;
        for &i in skipped {
            self.skipped_any = true;
            if let Some(r) = &steps[i].register {
                self.vars
                    .insert(r.clone(), StepRun::skipped().registered.into_value());
            }
        }
        let Some(index) = first else {
            return Next::From(self.run.job.playbook.preflight_len);
        };
        if let Some(r) = &steps[index].register {
            self.vars.insert(r.clone(), run.take_registered());
        }
        match run.status {
            StepStatus::Changed => self.changed_steps += 1,
            StepStatus::Skipped => self.skipped_any = true,
            _ => {}
        }
        match run.ends_host() {
            true => Next::Ended(index, run),
            false => Next::From(index + 1),
        }
    }

    /// The pre-flight's steps reported done as it found them (the probe with `probe_rc`).
    pub(super) fn stood_events(&self, probe_rc: Option<i64>) -> Vec<Event> {
        let playbook = self.run.job.playbook;
        let probe = playbook.recheck_step().map(|(i, _)| i);
        let preflight = &playbook.steps[..playbook.preflight_len];
        let stood = |(index, step): (usize, &crate::playbook::Step)| {
            let is_probe = Some(index) == probe;
            Event::StepFinished {
                host: self.host.name.clone(),
                step: index + 1,
                of: playbook.steps.len(),
                name: step.name.clone(),
                rollback: false,
                status: StepStatus::Ok,
                rc: is_probe.then_some(probe_rc).flatten(),
                duration: Duration::ZERO,
                attempts: u32::from(is_probe),
                message: (!is_probe).then(|| "as the fleet-wide pre-flight found it".to_string()),
                stderr_tail: vec![],
            }
        };
        preflight.iter().enumerate().map(stood).collect()
    }
}
