//! The playbook's lock on a host (`lock:`), taken before its first step and released,
//! with the host's audit line, after its last.

use super::run::Run;
use crate::events::Outcome;
use crate::journal::HostLog;
use crate::lock::{self, Verdict};
use crate::play::HostInPlay;
use crate::transport::{Connection, Connector};
use crate::vars::Lookup;

/// The failed step of a host whose lock could not be taken.
pub(super) const HOST_LOCK: &str = "host lock";

/// Why a host's lock was not taken: its outcome and the reason.
pub(super) type Refused = (Outcome, String);

/// Takes the playbook's lock on the host, if it names one; returns the lock's directory.
/// A host locked by another live run, or by a stale one without `--break-lock`, is not
/// run at all: the error says who holds it.
pub(super) async fn take<C: Connector>(
    run: &Run<'_, C>,
    conn: &C::Connection,
    log: &mut HostLog,
    host: &HostInPlay,
) -> Result<Option<String>, Refused> {
    let (Some(spec), Some(dir)) = (&run.job.playbook.lock, dir(run, host)?) else {
        return Ok(None);
    };
    let Some(found) = attempt(run, conn, &dir, None).await? else {
        log.note(&format!("host lock taken: {dir}/lock"));
        return Ok(Some(dir));
    };
    let alive = crate::identity::pid_alive;
    let taken_over = match lock::judge(&found, &run.owner, spec.stale_after.0, alive) {
        Verdict::Live(held) => return Err((Outcome::Failed, format!("locked by {held}"))),
        Verdict::Stale(held) if !run.break_lock => {
            return Err((
                Outcome::Failed,
                format!("stale lock of {held}; pass --break-lock to take it over"),
            ))
        }
        Verdict::Stale(held) => format!("stale lock of {held} broken (--break-lock)"),
        Verdict::Ours => "the lock of this run's earlier attempt taken over".to_string(),
    };
    match attempt(run, conn, &dir, Some(found.text)).await? {
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

/// The lock's directory on the host, if the playbook names one.
pub(super) fn dir<C: Connector>(
    run: &Run<'_, C>,
    host: &HostInPlay,
) -> Result<Option<String>, Refused> {
    let Some(spec) = &run.job.playbook.lock else {
        return Ok(None);
    };
    run.templates
        .render(&spec.dir, &host.vars)
        .map(Some)
        .map_err(|e| (Outcome::Failed, format!("lock.dir: {}", e.message)))
}

/// One try at taking the lock in `dir` (replacing the lock whose text is `replace`):
/// `None` when it is ours, else the lock found there.
async fn attempt<C: Connector>(
    run: &Run<'_, C>,
    conn: &C::Connection,
    dir: &str,
    replace: Option<String>,
) -> Result<Option<lock::Found>, Refused> {
    let command = lock::take_command(dir, &run.owner, replace.as_deref());
    // A lost connection leaves the host as it was: unreachable, not failed.
    let out = lock::run(conn, &command)
        .await
        .map_err(|m| (Outcome::Unreachable, format!("taking the host lock: {m}")))?;
    lock::parse_take(&out).map_err(|m| {
        (
            Outcome::Failed,
            format!("taking the host lock in {dir}: {m}"),
        )
    })
}

/// Appends the host's audit line and removes its lock. Failing to is worth a note in
/// the log, not a failed host: the upgrade itself is done.
pub(super) async fn release<C: Connector>(
    run: &Run<'_, C>,
    conn: &impl Connection,
    log: &mut HostLog,
    dir: &str,
    vars: &dyn Lookup,
    outcome: Outcome,
) {
    let (command, line) = release_command(run, dir, vars, outcome);
    match lock::run(conn, &command).await {
        Ok(_) => released(log, &line),
        Err(e) => log.note(&format!("could not release the host lock in {dir}: {e}")),
    }
}

/// The host's log says the lock went, with the audit line left on the host.
pub(super) fn released(log: &mut HostLog, line: &str) {
    log.note(&format!("host lock released; audit: {line}"));
}

/// The shell that appends the host's audit line (`outcome`) and removes its lock, and that line.
pub(super) fn release_command<C: Connector>(
    run: &Run<'_, C>,
    dir: &str,
    vars: &dyn Lookup,
    outcome: Outcome,
) -> (String, String) {
    let render = |t: &Option<String>| {
        t.as_ref()
            .and_then(|t| run.templates.render(t, vars).ok())
            .unwrap_or_default()
    };
    let audit = &run.job.playbook.audit;
    let outcome_word = serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut line = lock::audit_line(
        &run.owner,
        &render(&audit.from),
        &render(&audit.to),
        &outcome_word,
    );
    if let Some(note) = &run.audit_note {
        line.push(' ');
        line.push_str(note);
    }
    (lock::release_command(dir, &run.owner, Some(&line)), line)
}
