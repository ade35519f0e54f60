//! A step whose command carries more than itself (see [`guard`](super::guard)): the first
//! step of a host's turn behind its lock and its re-checked probe, the last step with the
//! lock's release after it. One attempt each: only a step decided by that attempt is
//! carried.

use std::time::{Duration, Instant};

use super::guard::{self, Head, Verdict};
use super::step::{keep_head, keep_tail, Output, Rendered, StepOn, STDERR_TAIL, STDOUT_KEEP};
use super::verdict::{StepRun, StepScope};
use crate::events::{Event, StepStatus};
use crate::journal::HostLog;
use crate::playbook::Step;
use crate::transport::{Connection, Connector, ExecRequest, Later, OutputStream, TransportError};
use crate::vars::Lookup;

/// The first step of a host's turn, ready to run behind the guard.
pub(super) struct Carried<'c> {
    pub step: &'c Step,
    /// Its variables, in its own scope.
    pub vars: &'c dyn Lookup,
    pub rendered: &'c Rendered,
}

/// What the guard's command came to.
pub(super) enum Guarded {
    /// The guard refused (the lock is someone else's, or the host changed): no step ran.
    Refused(Verdict),
    /// The lock is held and the findings stand; the carried step's run, if one was carried.
    Stood(Option<StepRun>),
    /// No verdict came back: the connection was lost, or the answer was not the guard's.
    Failed(Result<TransportError, String>),
}

impl<C: Connector> StepOn<'_, C> {
    /// Sends the guard's `script`; once it says the findings stand, emits `stood` (the
    /// pre-flight's steps reported done, the steps skipped before the carried one) and
    /// the carried step's start, and once that is on disk, lets the step run.
    pub async fn guarded(
        &self,
        log: &mut HostLog,
        carried: Option<Carried<'_>>,
        script: &str,
        timeout: Duration,
        (nonce, stood): (&str, Vec<Event>),
    ) -> Guarded {
        let started = Instant::now();
        let (go, later) = Later::channel();
        let request = ExecRequest::new(script)
            .timeout(timeout)
            .cancel(self.run.control.ends(false).clone())
            .stdin_later(later);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut tx = Some(tx);
        let mut head = Head::new(nonce);
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let label = carried
            .as_ref()
            .map(|c| (self.label(c.step), c.rendered, c.step.no_log));
        let exec = async {
            let mut sink = |stream: OutputStream, data: &[u8]| {
                let data = match stream {
                    OutputStream::Stdout => head.feed(data),
                    OutputStream::Stderr => std::borrow::Cow::Borrowed(data),
                };
                let data = &*data;
                if let (Some(Ok(verdict)), Some(_)) = (head.verdict(), &tx) {
                    if let (Verdict::Stood, Some((label, rendered, no_log))) = (verdict, &label) {
                        log.step_started(label, &rendered.command, 1, *no_log);
                    }
                    tx.take().map(|tx| tx.send(*verdict));
                }
                log.output(data);
                match stream {
                    OutputStream::Stdout => keep_head(&mut stdout, data, STDOUT_KEEP),
                    OutputStream::Stderr => keep_tail(&mut stderr, data, STDERR_TAIL),
                }
            };
            let result = self.conn.exec(&request, &mut sink).await;
            // Without a verdict, the announcement is not waited for.
            tx = None;
            result
        };
        let announce = async {
            if let Ok(Verdict::Stood) = rx.await {
                stood.into_iter().for_each(|e| self.run.emit(e));
                if let Some(c) = &carried {
                    self.run.events.emit_durable(self.started(c.step)).await;
                    go.send(guard::go(nonce));
                }
            }
        };
        let (result, ()) = tokio::join!(exec, announce);
        let verdict = match (head.verdict(), result) {
            (Some(Ok(verdict)), result) => (*verdict, result),
            (Some(Err(garbled)), _) => return Guarded::Failed(Err(garbled.clone())),
            (None, Err(e)) => return Guarded::Failed(Ok(e)),
            (None, Ok(exit)) => return Guarded::Failed(Err(format!("no answer ({exit})"))),
        };
        let (Verdict::Stood, Some(c), result) = (verdict.0, &carried, verdict.1) else {
            return match verdict.0 {
                Verdict::Stood => Guarded::Stood(None),
                refused => Guarded::Refused(refused),
            };
        };
        let output = Output {
            result,
            stdout,
            stderr,
        };
        let run = self.once(log, c.step, c.vars, &output, started);
        Guarded::Stood(Some(run))
    }

    /// The step's one attempt, concluded and reported.
    fn once(
        &self,
        log: &mut HostLog,
        step: &Step,
        vars: &dyn Lookup,
        output: &Output,
        started: Instant,
    ) -> StepRun {
        let scope = StepScope {
            templates: self.run.templates,
            step,
            vars,
        };
        // A carried step has no `until` and no retries: its one attempt concludes.
        let run = self
            .conclude(log, &scope, output, 1, started)
            .unwrap_or_else(|| {
                StepRun::not_run(
                    StepStatus::Failed,
                    1,
                    "no verdict after its one attempt".into(),
                    vec![],
                )
            });
        self.run.emit(self.finished(step, &run, started, 1));
        run
    }

    /// Runs the host's last step with the lock's `release` riding after it; returns the
    /// step's run and whether the release ran.
    pub async fn riding(
        &self,
        log: &mut HostLog,
        step: &Step,
        vars: &dyn Lookup,
        (nonce, release): (&str, &str),
    ) -> (StepRun, bool) {
        let started = Instant::now();
        let vars = &step.scope(vars);
        let rendered = match self.prepare(step, vars) {
            Ok(Some(rendered)) => rendered,
            // Skipped or not renderable: as any step, and the release goes on its own.
            _ => return (self.run(log, step, vars).await, false),
        };
        self.run.events.emit_durable(self.started(step)).await;
        log.step_started(&self.label(step), &rendered.command, 1, step.no_log);
        let command = guard::riding(nonce, &rendered.command, release);
        // The release's time comes on top of the step's: a step that used all of its own
        // succeeded all the same.
        let mut output = self
            .exec(log, step, &rendered, (&command, guard::LOCK_TIME))
            .await;
        // Only a release whose command ended as it should counts: else the lock is released
        // (again: the release checks the owner) once the host's end is known.
        let ended = matches!(output.result, Ok(crate::transport::ExitStatus::Code(0)));
        let released = ended && guard::released(nonce, &mut output.stderr);
        (self.once(log, step, vars, &output, started), released)
    }
}
