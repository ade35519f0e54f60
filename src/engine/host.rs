//! One host's run: its steps in order over its one connection, then its rollback when a
//! step after the point of no return failed.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Control, Emitter, Job, JobOptions, Reconnect};
use crate::connect::{HostConnection, Transport};
use crate::events::{Event, Outcome, StepStatus};
use crate::journal::{HostLog, RunDir};
use crate::lock::{self, Owner, Verdict};
use crate::play::HostInPlay;
use crate::playbook::{Condition, Step};
use crate::registered::Registered;
use crate::template::Templates;
use crate::transport::{
    ConnectTarget, Connection, Connector, ExecRequest, OutputStream, TransportError,
};
use crate::vars::Vars;

/// Output kept in memory for `register` (all of it goes to the host's log).
const STDOUT_KEEP: usize = 1 << 20;
/// The end of stderr kept to explain a failure.
const STDERR_TAIL: usize = 8 << 10;
/// Lines of stderr shown with a failure.
const TAIL_LINES: usize = 5;

/// What every host of a run shares.
pub(super) struct Shared<'a> {
    pub spec: &'a Job<'a>,
    pub templates: &'a Templates,
    pub transport: &'a Transport,
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
}

impl<'a> Shared<'a> {
    pub fn new(
        spec: &'a Job<'a>,
        templates: &'a Templates,
        transport: &'a Transport,
        events: &'a Emitter,
        control: &'a Control,
        run_dir: &'a RunDir,
        options: &JobOptions,
    ) -> Self {
        Shared {
            spec,
            templates,
            transport,
            events,
            control,
            run_dir,
            connect_timeout: options.connect_timeout,
            reconnect: options.reconnect,
            owner: Owner::me(&run_dir.id),
            break_lock: options.break_lock,
            audit_note: options.audit_note.clone(),
        }
    }

    fn emit(&self, event: Event) {
        self.events.emit(event);
    }
}

/// How one step went.
struct StepRun {
    status: StepStatus,
    registered: Registered,
    /// The exit code, when the command ran to its end.
    rc: Option<i64>,
    message: Option<String>,
    stderr_tail: Vec<String>,
}

/// How a host's run ended, as the engine weighs it.
#[derive(Debug, Clone, Copy)]
pub(super) struct HostEnd {
    pub outcome: Outcome,
    /// A step changed the host: its duration is an upgrade's, worth estimating from.
    pub changed: bool,
}

/// Runs one host to its end and reports how it ended.
pub(super) async fn run_host(shared: &Shared<'_>, host: &HostInPlay, batch: usize) -> HostEnd {
    let started = Instant::now();
    let spec = shared.spec;
    shared.emit(Event::HostStarted {
        host: host.name.clone(),
        batch,
        steps: spec.steps.len(),
    });
    let mut log = match shared.run_dir.host_log(&host.name) {
        Ok(log) => log,
        Err(e) => {
            let message = format!(
                "cannot write the host's log in {}: {e}",
                shared.run_dir.path.display()
            );
            return finish(
                shared,
                host,
                started,
                Outcome::Failed,
                0,
                None,
                Some(message),
            )
            .await;
        }
    };
    log.note(&format!("run {}, batch {batch}", shared.run_dir.id));
    let (target, _) = super::target::connect_target(&host.name, &host.vars, shared.connect_timeout);
    let conn = match shared.transport.connect(&target).await {
        Ok(conn) => conn,
        Err(e) => {
            log.note(&e.to_string());
            return finish(
                shared,
                host,
                started,
                Outcome::Unreachable,
                0,
                None,
                Some(e.to_string()),
            )
            .await;
        }
    };

    let lock_dir = match take_lock(shared, &conn, &mut log, host).await {
        Ok(dir) => dir,
        Err((outcome, message)) => {
            log.note(&message);
            conn.close().await;
            let step = Some(HOST_LOCK.to_string());
            return finish(shared, host, started, outcome, 0, step, Some(message)).await;
        }
    };
    let mut released = false;

    let mut vars = host.vars.clone();
    let mut changed_steps = 0;
    let mut skipped_any = false;
    let mut failure: Option<(usize, StepRun)> = None;
    for (i, step) in spec.steps.iter().enumerate() {
        let run = run_step(shared, &conn, &mut log, host, step, i, false, &vars).await;
        match run.status {
            StepStatus::Changed => changed_steps += 1,
            StepStatus::Skipped => skipped_any = true,
            _ => {}
        }
        if let Some(r) = &step.register {
            vars.insert(r.clone(), run.registered.to_value());
        }
        if matches!(run.status, StepStatus::Failed | StepStatus::Unreachable) {
            failure = Some((i, run));
            break;
        }
    }

    let (outcome, failed_step, message) = match failure {
        None if changed_steps == 0 && skipped_any => (Outcome::Skipped, None, None),
        None => (Outcome::Ok, None, None),
        Some((i, run)) => {
            let step = &spec.steps[i];
            let past_no_return = spec.point_of_no_return.is_some_and(|p| i >= p);
            let abandoned = shared.control.abandon.is_cancelled();
            // A host's failure in its own words: the step's message, else its last stderr line.
            let reason = run
                .message
                .clone()
                .or_else(|| run.stderr_tail.last().cloned());
            let (outcome, message) = match (run.status, past_no_return) {
                (_, true) if abandoned => {
                    let at = format!("step `{}`", step.name);
                    (Outcome::Abandoned, Some(abandoned_message(shared, &at)))
                }
                (StepStatus::Unreachable, false) => (Outcome::Unreachable, reason),
                (StepStatus::Unreachable, true) => {
                    // The interrupted step may or may not have happened: only the rollback
                    // brings the host back to a known state.
                    let lost = reason.unwrap_or_else(|| "connection lost".into());
                    match reconnect(shared, &target, &mut log, &host.name, lost).await {
                        Ok(again) => {
                            let (outcome, abandoned) =
                                rollback(shared, &again, &mut log, host, &mut vars, i).await;
                            let dir = lock_dir.as_deref();
                            release_lock(shared, &again, &mut log, dir, &vars, outcome).await;
                            released = true;
                            again.close().await;
                            let message = abandoned.unwrap_or_else(|| {
                                format!(
                                "the connection was lost in step `{}`; reconnected and rolled back",
                                step.name
                            )
                            });
                            (outcome, Some(message))
                        }
                        Err(_) if shared.control.abandon.is_cancelled() => {
                            let at = format!("step `{}`", step.name);
                            (Outcome::Abandoned, Some(abandoned_message(shared, &at)))
                        }
                        Err(last) => {
                            let message = format!(
                                "unreachable mid-upgrade, may be down: the connection was lost in step `{}` after the point of no return and {} reconnections failed (last: {last})",
                                step.name, shared.reconnect.attempts
                            );
                            (Outcome::UnreachableMidUpgrade, Some(message))
                        }
                    }
                }
                (_, true) => {
                    let (outcome, abandoned) =
                        rollback(shared, &conn, &mut log, host, &mut vars, i).await;
                    (outcome, abandoned.or(reason))
                }
                (_, false) => (Outcome::Failed, reason),
            };
            let message = match (past_no_return, failure_note(shared, &vars)) {
                (true, Some(note)) => Some(match message {
                    Some(m) => format!("{m}; {note}"),
                    None => note,
                }),
                _ => message,
            };
            if let Some(m) = &message {
                log.note(m);
            }
            (outcome, Some(step.name.clone()), message)
        }
    };
    if !released {
        release_lock(shared, &conn, &mut log, lock_dir.as_deref(), &vars, outcome).await;
    }
    conn.close().await;
    finish(
        shared,
        host,
        started,
        outcome,
        changed_steps,
        failed_step,
        message,
    )
    .await
}

/// The failed step of a host whose lock could not be taken.
const HOST_LOCK: &str = "host lock";

/// Takes the playbook's lock on the host, if it names one; returns the lock's directory.
/// A host locked by another live run, or by a stale one without `--break-lock`, is not
/// run at all: the error says who holds it.
async fn take_lock(
    shared: &Shared<'_>,
    conn: &HostConnection,
    log: &mut HostLog,
    host: &HostInPlay,
) -> Result<Option<String>, (Outcome, String)> {
    let Some(spec) = shared.spec.lock else {
        return Ok(None);
    };
    let dir = shared
        .templates
        .render(&spec.dir, &host.vars)
        .map_err(|e| (Outcome::Failed, format!("lock.dir: {}", e.message)))?;
    let me = &shared.owner;
    let attempt = |replace: Option<String>| {
        let command = lock::take_command(&dir, me, replace.as_deref());
        let dir = dir.clone();
        async move {
            let out = lock::run(conn, &command).await;
            // A lost connection leaves the host as it was: unreachable, not failed.
            let unreachable =
                |m: String| (Outcome::Unreachable, format!("taking the host lock: {m}"));
            lock::parse_take(&out.map_err(unreachable)?).map_err(|m| {
                (
                    Outcome::Failed,
                    format!("taking the host lock in {dir}: {m}"),
                )
            })
        }
    };
    let Some(found) = attempt(None).await? else {
        log.note(&format!("host lock taken: {dir}/lock"));
        return Ok(Some(dir));
    };
    let alive = crate::identity::pid_alive;
    let taken_over = match lock::judge(&found, me, spec.stale_after.0, alive) {
        Verdict::Live(held) => return Err((Outcome::Failed, format!("locked by {held}"))),
        Verdict::Stale(held) if !shared.break_lock => {
            return Err((
                Outcome::Failed,
                format!("stale lock of {held}; pass --break-lock to take it over"),
            ))
        }
        Verdict::Stale(held) => format!("stale lock of {held} broken (--break-lock)"),
        Verdict::Ours => "the lock of this run's earlier attempt taken over".to_string(),
    };
    match attempt(Some(found.text)).await? {
        None => {
            log.note(&format!("host lock taken: {dir}/lock; {taken_over}"));
            Ok(Some(dir))
        }
        // Someone else took it between our two looks.
        Some(again) => Err((
            Outcome::Failed,
            format!(
                "locked by {}",
                again.owner.map_or_else(
                    || "another run".to_string(),
                    |o| format!("run {}", o.run_id)
                )
            ),
        )),
    }
}

/// Appends the host's audit line and removes its lock. Failing to is worth a note in
/// the log, not a failed host: the upgrade itself is done.
async fn release_lock(
    shared: &Shared<'_>,
    conn: &HostConnection,
    log: &mut HostLog,
    dir: Option<&str>,
    vars: &Vars,
    outcome: Outcome,
) {
    let Some(dir) = dir else { return };
    let render = |t: &Option<String>| {
        t.as_ref()
            .and_then(|t| shared.templates.render(t, vars).ok())
            .unwrap_or_default()
    };
    let audit = &shared.spec.audit;
    let outcome_word = serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut line = lock::audit_line(
        &shared.owner,
        &render(&audit.from),
        &render(&audit.to),
        &outcome_word,
    );
    if let Some(note) = &shared.audit_note {
        line.push(' ');
        line.push_str(note);
    }
    let command = lock::release_command(dir, &shared.owner, Some(&line));
    match lock::run(conn, &command).await {
        Ok(_) => log.note(&format!("host lock released; audit: {line}")),
        Err(e) => log.note(&format!("could not release the host lock in {dir}: {e}")),
    }
}

/// Opens the host's connection again after it was lost, with bounded attempts and an
/// exponential back-off, each attempt announced.
async fn reconnect(
    shared: &Shared<'_>,
    target: &ConnectTarget,
    log: &mut HostLog,
    host: &str,
    mut error: String,
) -> Result<HostConnection, String> {
    let policy = &shared.reconnect;
    for attempt in 1..=policy.attempts {
        let delay = policy.delay_before(attempt);
        shared.emit(Event::Reconnecting {
            host: host.to_string(),
            attempt,
            of: policy.attempts,
            delay_ms: delay.as_millis() as u64,
            error: error.clone(),
        });
        log.note(&format!(
            "connection lost ({error}); reconnecting, attempt {attempt} of {}",
            policy.attempts
        ));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.control.abandon.cancelled() => return Err("interrupted".into()),
        }
        match shared.transport.connect(target).await {
            Ok(conn) => return Ok(conn),
            Err(e) => error = describe(&e),
        }
    }
    Err(error)
}

/// The playbook's `failure_note` (say, where the backup is), rendered for this host.
fn failure_note(shared: &Shared<'_>, vars: &Vars) -> Option<String> {
    let note = shared.spec.failure_note?;
    shared
        .templates
        .render(note, vars)
        .ok()
        .filter(|n| !n.trim().is_empty())
}

/// The pre-flight of one host: its read-only steps, then its report columns.
pub(super) async fn preflight_host(
    shared: &Shared<'_>,
    host: &HostInPlay,
) -> super::PreflightResult {
    let spec = shared.spec;
    let steps = &spec.steps[..spec.preflight_len];
    // The table is shown and recorded: what hosts report passes the run's redaction.
    let redactor = shared.run_dir.redactor();
    let checked = check_host(shared, host, steps, "fleet-wide pre-flight (read-only)").await;
    // A host that failed its pre-flight still shows what it told: why it is refused or
    // broken is in its columns. A column that needs what it did not get is left empty.
    let render = |template: &str| {
        let text = match shared.templates.render(template, &checked.vars) {
            Ok(text) => text,
            Err(_) if checked.failure.is_some() => String::new(),
            Err(e) => format!("? ({})", e.message),
        };
        redactor.text(&text).into_owned()
    };
    let reached = !matches!(checked.failure, Some((Outcome::Unreachable, _)));
    let report = match reached {
        true => spec
            .report
            .iter()
            .map(|(column, template)| (column.clone(), render(template)))
            .collect(),
        false => vec![],
    };
    let (outcome, message) = match &checked.failure {
        None => (Outcome::Ok, None),
        Some((outcome, message)) => (*outcome, Some(redactor.text(message).into_owned())),
    };
    super::PreflightResult {
        host: host.name.clone(),
        outcome,
        report,
        message,
        version: spec
            .audit
            .from
            .as_deref()
            .filter(|_| checked.failure.is_none())
            .map(render),
    }
}

/// Runs a pause's `verify` steps on an upgraded host, and tells how it went.
pub(super) async fn verify_host(shared: &Shared<'_>, host: &HostInPlay) -> bool {
    let checked = check_host(
        shared,
        host,
        shared.spec.verify,
        "verification during a pause",
    )
    .await;
    let ok = checked.failure.is_none();
    shared.emit(Event::HostVerified {
        host: host.name.clone(),
        ok,
        message: checked.failure.map(|(_, m)| m),
    });
    ok
}

/// What read-only steps registered on a host, and why they failed if they did.
struct Checked {
    vars: Vars,
    failure: Option<(Outcome, String)>,
}

/// Runs read-only `steps` on a host over a connection of their own (the fleet-wide
/// pre-flight, a pause's verification). Their step events go nowhere: the views show hosts'
/// upgrades, and these are not. Returns what the steps registered, or why they failed.
async fn check_host(shared: &Shared<'_>, host: &HostInPlay, steps: &[Step], note: &str) -> Checked {
    let failed = |outcome, message| Checked {
        vars: host.vars.clone(),
        failure: Some((outcome, message)),
    };
    let mut log = match shared.run_dir.host_log(&host.name) {
        Ok(log) => log,
        Err(e) => return failed(Outcome::Failed, format!("cannot write the host's log: {e}")),
    };
    log.note(note);
    let (target, _) = super::target::connect_target(&host.name, &host.vars, shared.connect_timeout);
    let conn = match shared.transport.connect(&target).await {
        Ok(conn) => conn,
        Err(e) => return failed(Outcome::Unreachable, describe(&e)),
    };
    let (silent, _) = tokio::sync::mpsc::unbounded_channel();
    let silent = Emitter::new(silent);
    let quiet = Shared {
        events: &silent,
        owner: shared.owner.clone(),
        audit_note: None,
        ..*shared
    };
    let mut vars = host.vars.clone();
    let mut failure = None;
    for (i, step) in steps.iter().enumerate() {
        let run = run_step(&quiet, &conn, &mut log, host, step, i, false, &vars).await;
        if let Some(r) = &step.register {
            vars.insert(r.clone(), run.registered.to_value());
        }
        if matches!(run.status, StepStatus::Failed | StepStatus::Unreachable) {
            let reason = run
                .message
                .clone()
                .or_else(|| run.stderr_tail.last().cloned());
            let outcome = if run.status == StepStatus::Unreachable {
                Outcome::Unreachable
            } else {
                Outcome::Failed
            };
            let message = match reason {
                Some(r) => format!("{}: {r}", step.name),
                None => step.name.clone(),
            };
            failure = Some((outcome, message));
            break;
        }
    }
    conn.close().await;
    Checked { vars, failure }
}

/// Runs the rollback steps after step `failed` failed; stops at the first that fails. A
/// rollback the operator abandoned says so, and how to finish it.
async fn rollback(
    shared: &Shared<'_>,
    conn: &HostConnection,
    log: &mut HostLog,
    host: &HostInPlay,
    vars: &mut Vars,
    failed: usize,
) -> (Outcome, Option<String>) {
    // Steps that never ran register `skipped`, as in Ansible, so the rollback's templates
    // (validated against every register) still render.
    for step in &shared.spec.steps[failed + 1..] {
        if let Some(r) = &step.register {
            let skipped = Registered {
                skipped: true,
                ..Default::default()
            };
            vars.insert(r.clone(), skipped.to_value());
        }
    }
    log.note("rolling back");
    for (i, step) in shared.spec.rollback.iter().enumerate() {
        let run = run_step(shared, conn, log, host, step, i, true, vars).await;
        if let Some(r) = &step.register {
            vars.insert(r.clone(), run.registered.to_value());
        }
        if matches!(run.status, StepStatus::Failed | StepStatus::Unreachable) {
            if shared.control.abandon.is_cancelled() {
                let cut = format!("rollback step `{}`", step.name);
                return (Outcome::Abandoned, Some(abandoned_message(shared, &cut)));
            }
            return (Outcome::RollbackFailed, None);
        }
    }
    (Outcome::RolledBack, None)
}

/// What a host abandoned past its point of no return is told (`at`: "step `X`"): down,
/// and how to finish it.
fn abandoned_message(shared: &Shared<'_>, at: &str) -> String {
    format!(
        "DOWN, NOT ROLLED BACK: abandoned in {at}, past the point of no return; `fleetup run --resume {}` finishes or rolls it back",
        shared.run_dir.id
    )
}

/// Says how the host ended, once that is on disk: a host the journal calls finished is
/// never touched again by a resume.
#[allow(clippy::too_many_arguments)]
async fn finish(
    shared: &Shared<'_>,
    host: &HostInPlay,
    started: Instant,
    outcome: Outcome,
    changed_steps: usize,
    failed_step: Option<String>,
    message: Option<String>,
) -> HostEnd {
    let event = Event::HostFinished {
        host: host.name.clone(),
        outcome,
        changed: changed_steps > 0,
        changed_steps,
        duration: started.elapsed(),
        failed_step,
        message,
        log: shared
            .run_dir
            .host_log_path(&host.name)
            .display()
            .to_string(),
    };
    shared.events.emit_durable(event).await;
    HostEnd {
        outcome,
        changed: changed_steps > 0,
    }
}

/// Runs one step: its `when`, its command (with retries until its condition holds), its
/// `failed_when` and `changed_when`.
#[allow(clippy::too_many_arguments)]
async fn run_step(
    shared: &Shared<'_>,
    conn: &HostConnection,
    log: &mut HostLog,
    host: &HostInPlay,
    step: &Step,
    index: usize,
    rollback: bool,
    vars: &Vars,
) -> StepRun {
    let vars = &*step.scope(vars);
    let of = if rollback {
        shared.spec.rollback.len()
    } else {
        shared.spec.steps.len()
    };
    let started = Instant::now();
    let templates = shared.templates;
    let finished = |run: StepRun, attempts: u32| {
        shared.emit(Event::StepFinished {
            host: host.name.clone(),
            step: index + 1,
            of,
            name: step.name.clone(),
            rollback,
            status: run.status,
            rc: run.rc,
            duration: started.elapsed(),
            attempts,
            message: run.message.clone(),
            stderr_tail: run.stderr_tail.clone(),
        });
        run
    };

    let run_it = match &step.when {
        None => Ok(true),
        Some(cond) => evaluate(templates, cond, vars),
    };
    match run_it {
        Ok(true) => {}
        Ok(false) => {
            let registered = Registered {
                skipped: true,
                ..Default::default()
            };
            let run = StepRun {
                status: StepStatus::Skipped,
                registered,
                rc: None,
                message: None,
                stderr_tail: vec![],
            };
            return finished(run, 0);
        }
        Err(e) => return finished(failed_before_running(format!("when: {e}")), 0),
    }
    let command = match templates.render(&step.shell, vars) {
        Ok(c) => c,
        Err(e) => return finished(failed_before_running(format!("shell: {e}")), 0),
    };
    let become_user = match &step.become_user {
        Some(user) if step.become_ => match templates.render(user, vars) {
            Ok(u) => Some(u),
            Err(e) => return finished(failed_before_running(format!("become_user: {e}")), 0),
        },
        _ => None,
    };

    // On disk before the command runs: after a kill -9, the journal names this step.
    shared
        .events
        .emit_durable(Event::StepStarted {
            host: host.name.clone(),
            step: index + 1,
            of,
            name: step.name.clone(),
            rollback,
        })
        .await;
    let label = format!(
        "{}[{}/{of}] {}",
        if rollback { "rollback " } else { "" },
        index + 1,
        step.name
    );
    let max_attempts = step.retries.saturating_add(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        log.step_started(&label, &command, attempt);
        let attempt_started = Instant::now();
        let mut request = ExecRequest::new(&command)
            .timeout(step.timeout)
            .cancel(shared.control.ends(rollback).clone());
        if step.become_ {
            request = request.become_user(become_user.clone());
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
            conn.exec(&request, &mut sink).await
        };
        let stderr_tail = tail_lines(&stderr);
        let last_attempt = |shared: &Shared<'_>| {
            if shared.spec.capture_output {
                shared.emit(Event::StepOutput {
                    host: host.name.clone(),
                    step: index + 1,
                    stdout: String::from_utf8_lossy(&stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&stderr).into_owned(),
                });
            }
        };
        let status = match result {
            Ok(status) => status,
            Err(e) => {
                log.step_finished(&e.to_string(), attempt_started.elapsed());
                let status = if e.is_unreachable() {
                    StepStatus::Unreachable
                } else {
                    StepStatus::Failed
                };
                let run = StepRun {
                    status,
                    registered: Registered {
                        failed: true,
                        attempts: attempt,
                        ..Default::default()
                    },
                    rc: None,
                    message: Some(describe(&e)),
                    stderr_tail,
                };
                return finished(run, attempt);
            }
        };
        let rc = match &status {
            crate::transport::ExitStatus::Code(c) => i64::from(*c),
            crate::transport::ExitStatus::Signal(_) => -1,
        };
        log.step_finished(&status.to_string(), attempt_started.elapsed());
        let mut registered = registered_result(&stdout, &stderr, rc, attempt);
        let judged = judge(templates, step, vars, &mut registered);
        let (failed, message) = match judged {
            Ok(failed) => (failed, None),
            Err(e) => (true, Some(e)),
        };
        let satisfied = match (&step.until, message.is_some()) {
            (_, true) => true,
            (None, _) => !failed,
            (Some(until), _) => {
                evaluate(templates, until, &scope(vars, step, &registered)).unwrap_or(false)
            }
        };
        if satisfied || attempt >= max_attempts || shared.control.ends(rollback).is_cancelled() {
            last_attempt(shared);
            let failed = failed || !satisfied;
            registered.failed = failed;
            let message = message
                .or_else(|| {
                    failed.then(|| match &status {
                        crate::transport::ExitStatus::Signal(s) => format!("killed by signal {s}"),
                        _ if step.until.is_some() && !satisfied => {
                            format!("`until` still false after {attempt} attempts")
                        }
                        _ if step.failed_when.is_some() => "failed_when is true".to_string(),
                        // A plain non-zero exit says nothing its rc and stderr do not: no message,
                        // so the views show the host's own last words.
                        _ => String::new(),
                    })
                })
                .filter(|m| !m.is_empty());
            let rc = matches!(status, crate::transport::ExitStatus::Code(_)).then_some(rc);
            let status = if failed {
                StepStatus::Failed
            } else if registered.changed {
                StepStatus::Changed
            } else {
                StepStatus::Ok
            };
            let run = StepRun {
                status,
                registered,
                rc,
                message,
                stderr_tail,
            };
            return finished(run, attempt);
        }
        tokio::select! {
            _ = tokio::time::sleep(step.delay) => {}
            _ = shared.control.ends(rollback).cancelled() => {}
        }
    }
}

/// Decides `failed` (by `failed_when`, else the exit code) and `changed` (by
/// `changed_when`, else true: a command is assumed to change the host, as in Ansible).
fn judge(
    templates: &Templates,
    step: &Step,
    vars: &Vars,
    r: &mut Registered,
) -> Result<bool, String> {
    let failed = match &step.failed_when {
        None => r.rc != 0,
        Some(cond) => evaluate(templates, cond, &scope(vars, step, r))
            .map_err(|e| format!("failed_when: {e}"))?,
    };
    r.changed = match &step.changed_when {
        None => true,
        Some(cond) => evaluate(templates, cond, &scope(vars, step, r))
            .map_err(|e| format!("changed_when: {e}"))?,
    } && !failed;
    Ok(failed)
}

/// The variables a step's own conditions see: its result as `result` and under its
/// `register` name.
fn scope(vars: &Vars, step: &Step, r: &Registered) -> Vars {
    let mut scope = vars.clone();
    let value: Value = r.to_value();
    if let Some(name) = &step.register {
        scope.insert(name.clone(), value.clone());
    }
    scope.insert("result".into(), value);
    scope
}

fn evaluate(templates: &Templates, cond: &Condition, vars: &Vars) -> Result<bool, String> {
    match cond {
        Condition::Always(b) => Ok(*b),
        Condition::Expr(e) => templates.eval(e, vars).map_err(|e| e.message),
    }
}

fn failed_before_running(message: String) -> StepRun {
    StepRun {
        status: StepStatus::Failed,
        registered: Registered {
            failed: true,
            ..Default::default()
        },
        rc: None,
        message: Some(message),
        stderr_tail: vec![],
    }
}

fn describe(e: &TransportError) -> String {
    // The host's name starts every transport message; the views already show it.
    let text = e.to_string();
    text.strip_prefix(&format!("{}: ", e.host()))
        .map(str::to_string)
        .unwrap_or(text)
}

/// What `register` records, as Ansible's shell module: output without its final newline.
fn registered_result(stdout: &[u8], stderr: &[u8], rc: i64, attempts: u32) -> Registered {
    let text = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .trim_end_matches(['\n', '\r'])
            .to_string()
    };
    let (stdout, stderr) = (text(stdout), text(stderr));
    Registered {
        stdout_lines: stdout.lines().map(str::to_string).collect(),
        stderr_lines: stderr.lines().map(str::to_string).collect(),
        stdout,
        stderr,
        rc,
        attempts,
        ..Default::default()
    }
}

fn keep_head(buf: &mut Vec<u8>, data: &[u8], max: usize) {
    let room = max.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..room.min(data.len())]);
}

fn keep_tail(buf: &mut Vec<u8>, data: &[u8], max: usize) {
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

    #[test]
    fn registered_output_loses_its_final_newline() {
        let r = registered_result(b"v4.65.0\n", b"warn\nerr\n", 0, 1);
        assert_eq!(r.stdout, "v4.65.0");
        assert_eq!(r.stderr_lines, ["warn", "err"]);
    }
}
