//! Read-only steps run on a host: the fleet-wide pre-flight before any host changes (its
//! connection and findings kept for the host's turn), and a pause's verification of
//! upgraded hosts.

use super::run::{silent, Run};
use super::step::{describe, StepAt, StepOn};
use super::target::connect_target;
use super::verdict::StepRun;
use super::PreflightResult;
use crate::cksum::Cksum;
use crate::events::{Event, Outcome, StepStatus};
use crate::journal::HostLog;
use crate::play::HostInPlay;
use crate::playbook::Step;
use crate::transport::kept::{Findings, Outputs};
use crate::transport::{close_all, still_alive, Connection, Connector};
use crate::vars::HostVars;

/// What read-only steps registered on a host, and why they failed if they did.
struct Checked<C> {
    vars: HostVars,
    /// What they registered, as they registered it.
    outputs: Outputs,
    failure: Option<(Outcome, String)>,
    /// The connection they ran on, still open.
    conn: Option<C>,
    /// What the playbook's `recheck` step printed, as `cksum` sums it.
    probe: Option<Cksum>,
    /// The first command sent found the connection gone: nothing reached the host.
    lost_first: bool,
}

/// Where a host stands in the fleet-wide pre-flight: its rank in the plan (the order its
/// turn comes in), and how many connections waiting hosts may hold; `None` when nothing is
/// kept for a turn (a read-only playbook, whose turn runs its pre-flight again if it has
/// one; a promotion gate's check).
#[derive(Debug, Clone, Copy)]
pub(super) struct Queued {
    pub rank: usize,
    pub budget: Option<usize>,
}

/// The pre-flight of one host: its read-only steps, then its report columns. A host that
/// passed keeps its connection and findings for its turn, when one follows.
pub(super) async fn preflight_host<C: Connector>(
    run: &Run<'_, C>,
    host: &HostInPlay,
    queued: Queued,
) -> PreflightResult {
    let playbook = run.job.playbook;
    // What the steps registered is kept for a re-check at the host's turn, if one comes.
    let recheck = playbook.recheck_step().filter(|_| queued.budget.is_some());
    let mut checked = check_host(
        run,
        host,
        run.job.preflight(),
        "fleet-wide pre-flight (read-only)",
        recheck.map(|(step, _)| step),
        None,
    )
    .await;
    // Whether what the pre-flight found waits for the host's turn, to be read again.
    let waits = queued.budget.filter(|_| checked.failure.is_none());
    if let Some(conn) = checked.conn.take() {
        let spare = match waits {
            Some(budget) => keep_for_turn(run, host, queued.rank, &mut checked, conn, budget),
            None => Some(conn),
        };
        close_all(spare).await;
    }
    // The table is shown and recorded: what hosts report passes the run's redaction.
    let redactor = run.run_dir.redactor();
    // A host that failed its pre-flight still shows what it told: why it is refused or
    // broken is in its columns. A column that needs what it did not get is left empty.
    let render = |template: &str| {
        let text = match run.templates.render(template, &checked.vars) {
            Ok(text) => text,
            Err(_) if checked.failure.is_some() => String::new(),
            Err(e) => format!("? ({})", e.message),
        };
        redactor.text(&text).into_owned()
    };
    let reached = !matches!(checked.failure, Some((Outcome::Unreachable, _)));
    let report = match reached {
        true => playbook
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
    let version = playbook
        .audit
        .from
        .as_deref()
        .filter(|_| checked.failure.is_none())
        .map(render);
    if waits.is_none() {
        run.templates.retire(&checked.vars);
    }
    PreflightResult {
        host: host.name.clone(),
        outcome,
        report,
        message,
        version,
    }
}

/// Keeps `conn` and what the pre-flight found for the host's turn; returns the connection
/// that does not fit the budget (this one, or another waiting host's), to be closed.
fn keep_for_turn<C: Connector>(
    run: &Run<'_, C>,
    host: &HostInPlay,
    rank: usize,
    checked: &mut Checked<C::Connection>,
    conn: C::Connection,
    budget: usize,
) -> Option<C::Connection> {
    // Only what the pre-flight registered: the host's own variables are in the plan
    // already, and a thousand waiting hosts need not hold a copy each.
    let outputs = std::mem::take(&mut checked.outputs);
    let notes = checked
        .vars
        .content_notes(outputs.keys().map(String::as_str));
    let findings = Findings::new(outputs, checked.probe.take(), notes);
    run.connector
        .kept()
        .keep(&host.name, rank, conn, findings, budget)
}

/// Runs a pause's `verify` steps on an upgraded host, and tells how it went. They run on
/// the connection the host kept since its turn (or its last verification) when it did, and
/// it is kept again for the next.
pub(super) async fn verify_host<C: Connector>(run: &Run<'_, C>, host: &HostInPlay) -> bool {
    let verify = &run.job.playbook.verify;
    let kept = run.connector.kept();
    let (conn, _) = still_alive(kept.take_verified(&host.name)).await;
    let was_kept = conn.is_some();
    let mut checked = check_host(run, host, verify, VERIFYING, None, conn).await;
    // Found dead by its first command: it died unnoticed while it waited, and nothing
    // reached the host. Opened again, once, and the verification runs from its start.
    if was_kept && checked.lost_first {
        close_all(checked.conn.take()).await;
        run.templates.retire(&checked.vars);
        checked = check_host(run, host, verify, VERIFYING_AGAIN, None, None).await;
    }
    let spare = match checked.conn.take() {
        Some(conn) if checked.failure.is_none() && conn.is_alive() => {
            kept.keep_verified(&host.name, conn)
        }
        other => {
            kept.give_up_verified(&host.name);
            other
        }
    };
    close_all(spare).await;
    run.templates.retire(&checked.vars);
    let ok = checked.failure.is_none();
    run.emit(Event::HostVerified {
        host: host.name.clone(),
        ok,
        message: checked.failure.map(|(_, m)| m),
    });
    ok
}

const VERIFYING: &str = "verification during a pause";
const VERIFYING_AGAIN: &str = "verification during a pause: the connection kept since the host's turn was lost while it waited; reconnected";

/// Runs read-only `steps` on a host over `conn`, else a connection of their own, left open,
/// and keeps what step `probe_at` prints, and with it what the steps registered: what a
/// re-check reads. Their step events go nowhere: the views show hosts' upgrades, and these
/// are not.
async fn check_host<C: Connector>(
    run: &Run<'_, C>,
    host: &HostInPlay,
    steps: &[Step],
    note: &str,
    probe_at: Option<usize>,
    conn: Option<C::Connection>,
) -> Checked<C::Connection> {
    let (mut log, conn) = match opened(run, host, note, conn).await {
        Ok(opened) => opened,
        Err(failure) => {
            return Checked {
                vars: HostVars::new(host.vars.clone()),
                outputs: Outputs::new(),
                failure: Some(failure),
                conn: None,
                probe: None,
                lost_first: false,
            }
        }
    };
    let silent = silent();
    let quiet = run.quiet(&silent);
    let mut vars = HostVars::new(host.vars.clone());
    let mut outputs = Outputs::new();
    let mut failure = None;
    let mut probe = None;
    let mut sent = false;
    let mut lost_first = false;
    for (index, step) in steps.iter().enumerate() {
        let at = StepAt {
            index,
            // As the host's own steps number them.
            of: run.job.playbook.steps.len(),
            rollback: false,
        };
        let on = StepOn {
            run: &quiet,
            conn: &conn,
            host,
            at,
        };
        let mut result = on.run(&mut log, step, &vars).await;
        if probe_at == Some(index) {
            probe = Some(Cksum::of(result.registered.stdout.as_bytes()));
        }
        if let Some(r) = &step.register {
            let output = std::mem::take(&mut result.registered);
            if probe_at.is_some() {
                outputs.insert(r.clone(), output.clone());
            }
            vars.insert(r.clone(), output.into_value());
        }
        if result.ends_host() {
            let (outcome, message) = ended(step, &result);
            lost_first = !sent && outcome == Outcome::Unreachable && !conn.is_alive();
            failure = Some((outcome, message));
            break;
        }
        sent |= result.status != StepStatus::Skipped;
    }
    Checked {
        vars,
        outputs,
        failure,
        conn: Some(conn),
        probe,
        lost_first,
    }
}

/// The host's log, with `note` in it, and `conn`, else a connection of the steps' own.
async fn opened<C: Connector>(
    run: &Run<'_, C>,
    host: &HostInPlay,
    note: &str,
    conn: Option<C::Connection>,
) -> Result<(HostLog, C::Connection), (Outcome, String)> {
    let mut log = match run.run_dir.host_log(&host.name) {
        Ok(log) => log,
        Err(e) => {
            close_all(conn).await;
            return Err((Outcome::Failed, format!("cannot write the host's log: {e}")));
        }
    };
    log.note(note);
    let conn = match conn {
        Some(conn) => conn,
        None => {
            let (target, _) = connect_target(&host.name, &host.vars, run.connect_timeout);
            run.connector
                .connect(&target)
                .await
                .map_err(|e| (Outcome::Unreachable, describe(&e)))?
        }
    };
    Ok((log, conn))
}

/// How a host's read-only steps ended at `step`, which ended them, and why.
fn ended(step: &Step, result: &StepRun) -> (Outcome, String) {
    let outcome = match result.status {
        StepStatus::Unreachable => Outcome::Unreachable,
        _ => Outcome::Failed,
    };
    let message = match result.reason() {
        Some(r) => format!("{}: {r}", step.name),
        None => step.name.clone(),
    };
    (outcome, message)
}
