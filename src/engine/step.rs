//! Runs one step on a host's connection: its `when`, its command (again while `until`
//! does not hold), each attempt to the host's log, its verdict to the events.

use std::time::{Duration, Instant};

use super::run::Run;
use super::verdict::{self, Attempt, Conclusion, StepRun, StepScope};
use crate::events::{Event, StepStatus};
use crate::journal::HostLog;
use crate::play::HostInPlay;
use crate::playbook::Step;
use crate::transport::{Connection, Connector, ExecRequest, OutputStream, TransportError};
use crate::vars::Lookup;

/// Output kept in memory for `register` (all of it goes to the host's log).
pub(super) const STDOUT_KEEP: usize = 1 << 20;
/// The end of stderr kept to explain a failure.
pub(super) const STDERR_TAIL: usize = 8 << 10;
/// Lines of stderr shown with a failure.
const TAIL_LINES: usize = 5;

/// Where a step stands among its host's steps, as its events number it.
#[derive(Debug, Clone, Copy)]
pub(super) struct StepAt {
    pub index: usize,
    pub of: usize,
    /// A rollback step: only an abandon ends its command.
    pub rollback: bool,
}

/// A step about to run on one host, over its connection and log.
pub(super) struct StepOn<'s, C: Connector> {
    pub run: &'s Run<'s, C>,
    pub conn: &'s C::Connection,
    pub host: &'s HostInPlay,
    pub at: StepAt,
}

/// The command of a step, rendered for its host.
pub(super) struct Rendered {
    pub command: String,
    pub become_user: Option<String>,
}

impl<C: Connector> StepOn<'_, C> {
    /// Runs `step` with `vars` (the host's, with what earlier steps registered).
    pub async fn run(&self, log: &mut HostLog, step: &Step, vars: &dyn Lookup) -> StepRun {
        let started = Instant::now();
        let vars = &step.scope(vars);
        let (run, attempts) = match self.prepare(step, vars) {
            Err(why) => (StepRun::not_run(StepStatus::Failed, 0, why, vec![]), 0),
            Ok(None) => (StepRun::skipped(), 0),
            Ok(Some(rendered)) => {
                self.run.events.emit_durable(self.started(step)).await;
                self.attempts(log, step, vars, &rendered).await
            }
        };
        self.run.emit(self.finished(step, &run, started, attempts));
        run
    }

    /// The event of the step's end.
    pub fn finished(&self, step: &Step, run: &StepRun, started: Instant, attempts: u32) -> Event {
        Event::StepFinished {
            host: self.host.name.clone(),
            step: self.at.index + 1,
            of: self.at.of,
            name: step.name.clone(),
            rollback: self.at.rollback,
            status: run.status,
            rc: run.rc,
            duration: started.elapsed(),
            attempts,
            message: run.message.clone(),
            stderr_tail: run.stderr_tail.clone(),
        }
    }

    /// The step's `when`, then its templates: `None` when it is skipped, why it cannot
    /// run when a template fails.
    pub fn prepare(&self, step: &Step, vars: &dyn Lookup) -> Result<Option<Rendered>, String> {
        let mut templates = self.run.templates.with(vars);
        if let Some(cond) = &step.when {
            match verdict::evaluate(&mut templates, cond) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) => return Err(format!("when: {e}")),
            }
        }
        let command = templates
            .render(&step.shell)
            .map_err(|e| format!("shell: {e}"))?;
        let become_user = match &step.become_user {
            Some(user) if step.become_ => Some(
                templates
                    .render(user)
                    .map_err(|e| format!("become_user: {e}"))?,
            ),
            _ => None,
        };
        Ok(Some(Rendered {
            command,
            become_user,
        }))
    }

    /// The event of the step's start: on disk before the command runs, so that after a
    /// kill -9 the journal names this step.
    pub fn started(&self, step: &Step) -> Event {
        Event::StepStarted {
            host: self.host.name.clone(),
            step: self.at.index + 1,
            of: self.at.of,
            name: step.name.clone(),
            rollback: self.at.rollback,
        }
    }

    /// Runs the command until an attempt concludes; returns how, and after how many.
    async fn attempts(
        &self,
        log: &mut HostLog,
        step: &Step,
        vars: &dyn Lookup,
        rendered: &Rendered,
    ) -> (StepRun, u32) {
        let ends = self.run.control.ends(self.at.rollback);
        let scope = StepScope {
            templates: self.run.templates,
            step,
            vars,
        };
        let mut number = 0;
        loop {
            number += 1;
            log.step_started(&self.label(step), &rendered.command, number, step.no_log);
            let attempt_started = Instant::now();
            let output = self
                .exec(log, step, rendered, (&rendered.command, Duration::ZERO))
                .await;
            if let Some(run) = self.conclude(log, &scope, &output, number, attempt_started) {
                return (run, number);
            }
            tokio::select! {
                _ = tokio::time::sleep(step.delay) => {}
                _ = ends.cancelled() => {}
            }
        }
    }

    /// How the step is named in its host's log.
    pub fn label(&self, step: &Step) -> String {
        format!(
            "{}[{}/{}] {}",
            if self.at.rollback { "rollback " } else { "" },
            self.at.index + 1,
            self.at.of,
            step.name
        )
    }

    /// What attempt `number` of the step comes to; `None`: it is to run again.
    pub fn conclude(
        &self,
        log: &mut HostLog,
        scope: &StepScope<'_>,
        output: &Output,
        number: u32,
        started: Instant,
    ) -> Option<StepRun> {
        // A `no_log` step's stderr stays out of the events as out of the log.
        let tail = match scope.step.no_log {
            true => Vec::new(),
            false => tail_lines(&output.stderr),
        };
        let exit = match &output.result {
            Ok(exit) => exit,
            Err(e) => {
                log.step_finished(&e.to_string(), started.elapsed());
                let status = match e.is_unreachable() {
                    true => StepStatus::Unreachable,
                    false => StepStatus::Failed,
                };
                return Some(StepRun::not_run(status, number, describe(e), tail));
            }
        };
        log.step_finished(&exit.to_string(), started.elapsed());
        let attempt = Attempt {
            number,
            exit,
            stdout: &output.stdout,
            stderr: &output.stderr,
            stderr_tail: tail,
        };
        let stopped = self.run.control.ends(self.at.rollback).is_cancelled();
        match verdict::conclude(scope, attempt, stopped) {
            Conclusion::Done(run) => {
                self.captured(output);
                Some(run)
            }
            Conclusion::Retry => None,
        }
    }

    /// One attempt of the command, its output to the log as it comes.
    /// `command`: the step's, or one that carries it.
    pub async fn exec(
        &self,
        log: &mut HostLog,
        step: &Step,
        rendered: &Rendered,
        (command, extra): (&str, Duration),
    ) -> Output {
        let mut request = ExecRequest::new(command)
            .timeout(step.timeout + extra)
            .cancel(self.run.control.ends(self.at.rollback).clone());
        if step.become_ {
            request = request.become_user(rendered.become_user.clone());
        }
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let result = {
            let mut sink = |stream: OutputStream, data: &[u8]| {
                log.output(data);
                match stream {
                    OutputStream::Stdout => keep_head(&mut stdout, data, STDOUT_KEEP),
                    OutputStream::Stderr => keep_tail(&mut stderr, data, STDERR_TAIL),
                }
            };
            self.conn.exec(&request, &mut sink).await
        };
        Output {
            result,
            stdout,
            stderr,
        }
    }

    /// `fleetup exec` shows each host's output of the step's last attempt.
    fn captured(&self, output: &Output) {
        if self.run.job.capture_output {
            self.run.emit(Event::StepOutput {
                host: self.host.name.clone(),
                step: self.at.index + 1,
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
    }
}

/// What one attempt of a command gave.
pub(super) struct Output {
    pub result: Result<crate::transport::ExitStatus, TransportError>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A transport error without the host's name, which starts every transport message and
/// which the views already show.
pub(super) fn describe(e: &TransportError) -> String {
    let text = e.to_string();
    text.strip_prefix(&format!("{}: ", e.host()))
        .map(str::to_string)
        .unwrap_or(text)
}

pub(super) fn keep_head(buf: &mut Vec<u8>, data: &[u8], max: usize) {
    let room = max.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..room.min(data.len())]);
}

pub(super) fn keep_tail(buf: &mut Vec<u8>, data: &[u8], max: usize) {
    buf.extend_from_slice(data);
    if buf.len() > max {
        buf.drain(..buf.len() - max);
    }
}

fn tail_lines(stderr: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_keep_head_and_tail() {
        let mut head = Vec::new();
        keep_head(&mut head, b"abcdef", 4);
        keep_head(&mut head, b"gh", 4);
        assert_eq!(head, b"abcd");
        let mut tail = Vec::new();
        keep_tail(&mut tail, b"abcdef", 4);
        keep_tail(&mut tail, b"gh", 4);
        assert_eq!(tail, b"efgh");
        assert_eq!(
            tail_lines(b"1\n2\n\n3\n4\n5\n6\n"),
            ["2", "3", "4", "5", "6"]
        );
    }
}
