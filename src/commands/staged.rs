//! Staged rollouts at the edge: the promotion gate's live check, waiting for a maintenance
//! window with a countdown, and asking the operator at a pause. The rules themselves are in
//! the library (`gate`, `window`, `run::schedule`); here they meet the journal on disk, the
//! hosts and the terminal.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fleetup::clock::{self, Clock};
use fleetup::engine::{Job, Prompt};
use fleetup::events::{Event, GateVerdict, Outcome, Stamped, Verdict};
use fleetup::exit::Exit;
use fleetup::gate::{self, Check, Evidence};
use fleetup::journal::read::{self, PastRun};
use fleetup::journal::{EventLog, RunRecord};
use fleetup::plan::{Batch, Plan};
use fleetup::play::Play;
use fleetup::playbook::Pause;
use fleetup::schedule::{self, Deferral};
use fleetup::ui::plan::Outlook;
use fleetup::ui::text::{duration, elapsed, plural};
use fleetup::window;

use super::run::Session;
use crate::cli::RunArgs;

/// Milliseconds since the Unix epoch on `clock`, as the journal stamps events.
pub fn now_ms(clock: &Clock) -> u64 {
    u64::try_from(clock.now().as_millisecond()).unwrap_or(0)
}

/// The journal's runs, when the play needs them (a gate, or windows to estimate for).
pub fn past_runs(play: &Play, state_dir: &Path) -> Vec<PastRun> {
    if play.gate.is_none() && play.schedule.is_empty() {
        return Vec::new();
    }
    fleetup::journal::past_runs(state_dir).unwrap_or_else(|e| {
        eprintln!(
            "warning: cannot read the journal in {}: {e}",
            state_dir.display()
        );
        Vec::new()
    })
}

/// What `fleetup plan` shows of a staged rollout: the gate as the journal has it, the
/// windows now, and each batch's estimate.
pub fn outlook(play: &Play, runs: &[PastRun], clock: &Clock) -> Outlook {
    let now = clock.now();
    let now_ms = now_ms(clock);
    let gate = Check::new(play, runs, now_ms).map(|check| {
        let verdict = match &check.evidence {
            None => "not required".to_string(),
            Some(Evidence::Soaked { .. }) => {
                "passes (its hosts' health and version are checked live when the run starts)"
                    .to_string()
            }
            Some(_) => "REFUSES the run now".to_string(),
        };
        format!(
            "`{}` must run {} for {}: {verdict}: {}",
            check.group,
            check.target(),
            duration(check.soak),
            check.describe(now_ms)
        )
    });
    let windows = play
        .schedule
        .sets()
        .map(|(w, hosts)| {
            let state = match w.at(now) {
                Some(window::Slot::Open { closes }) => format!(
                    "open now, closes in {} ({})",
                    elapsed(clock::until(now, closes)),
                    window::local(closes, w)
                ),
                Some(window::Slot::Closed { opens }) => format!(
                    "closed now, opens in {} ({})",
                    elapsed(clock::until(now, opens)),
                    window::local(opens, w)
                ),
                None => String::new(),
            };
            format!("{w} ({hosts} host{}): {state}", plural(hosts))
        })
        .collect();
    let per_host = read::host_estimate(runs, &play.playbook.name, None);
    let estimates = play
        .plan
        .batches
        .iter()
        .map(|b| schedule::estimate(per_host, b.hosts.len(), play.rollout.forks))
        .collect();
    Outlook {
        gate,
        windows,
        per_host,
        estimates,
    }
}

/// The promotion gate of a new run: its verdict is `refused` (said on stderr) unless the
/// staged group ran the target, healthy, for the soak time, or `--skip-gate` overrides it.
/// `None` without a gate.
pub fn gate(
    session: &Session,
    play: &Play,
    runs: &[PastRun],
    clock: &Clock,
    skip: bool,
) -> Option<GateVerdict> {
    let now_ms = now_ms(clock);
    let check = Check::new(play, runs, now_ms)?;
    let problems = match &check.evidence {
        None => Vec::new(),
        Some(Evidence::Soaked { .. }) if !skip => live_problems(session, play, &check),
        Some(Evidence::Soaked { .. }) => {
            vec!["the staged hosts were not checked live (--skip-gate)".into()]
        }
        Some(_) => vec![check.describe(now_ms)],
    };
    let verdict = check.verdict(&problems, skip, now_ms);
    if problems.is_empty() || skip {
        if verdict.verdict == Verdict::Skipped {
            eprintln!(
                "WARNING: --skip-gate: running without the promotion gate's consent ({}); this is recorded in the journal and in every host's audit line",
                problems.join("; ")
            );
        }
        return Some(verdict);
    }
    eprintln!(
        "error: the promotion gate refuses this run: {}.\n\
         The run includes hosts outside `{group}`: first upgrade `{group}` to {target} \
         (e.g. --limit {group}), let it soak for {soak}, then run again; or pass --skip-gate \
         to override (recorded). No host was changed.",
        problems.join("; "),
        group = check.group,
        target = check.target(),
        soak = duration(check.soak),
    );
    Some(verdict)
}

/// The staged hosts checked now, read-only: their pre-flight and `verify:` steps, and
/// their version (`audit.from`) against the target.
fn live_problems(session: &Session, play: &Play, check: &Check) -> Vec<String> {
    let hosts = play.staged_hosts();
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let plan = Plan {
        batches: vec![Batch {
            hosts: names,
            canary: false,
            staged: false,
        }],
        seed: None,
    };
    // The check's own playbook: the pre-flight steps, then the `verify:` ones, all read-only.
    let mut checks = play.playbook.clone();
    checks.steps.truncate(checks.preflight_len);
    checks.steps.extend(play.playbook.verify.iter().cloned());
    checks.preflight_len = checks.steps.len();
    let spec = Job {
        playbook: &checks,
        hosts: &hosts,
        plan: &plan,
        ..Job::from_play(play)
    };
    let results = session.preflight(&spec);
    let live: Vec<(String, gate::Live)> = results
        .into_iter()
        .map(|r| {
            let state = match (r.outcome, r.version) {
                (Outcome::Ok, Some(version)) => Ok(version),
                (Outcome::Ok, None) => Err("its version is unknown".into()),
                (outcome, _) => Err(r.message.unwrap_or_else(|| outcome.label().to_string())),
            };
            (r.host, state)
        })
        .collect();
    gate::live_problems(&check.staged, &live)
}

/// What a run does before its pre-flight: the gate's verdict (a new run's, or the one a
/// resume inherits) and the wait for the maintenance window.
pub struct Before {
    /// Told after `run_started`.
    pub announce: Vec<Event>,
    /// Added to every host's audit line.
    pub audit_note: Option<String>,
    /// The operator already said yes (before a wait): not asked again.
    pub confirmed: bool,
}

/// The promotion gate (a new run's), then the wait for batch 1's maintenance window
/// (confirmed first on a terminal, and the gate asked again after it, so that "healthy
/// now" means at the start). Refusals and deferrals are recorded before they return.
#[allow(clippy::too_many_arguments)]
pub fn before_start(
    session: &Session,
    play: &Play,
    record: &mut Option<RunRecord>,
    inherited: Option<&GateVerdict>,
    runs: &[PastRun],
    clock: &Clock,
    per_host: Option<Duration>,
    journal: &EventLog,
    ask: Option<&dyn Fn(&str) -> bool>,
    args: &RunArgs,
) -> Result<Before, Exit> {
    let (skip_gate, no_wait) = (args.skip_gate, args.no_wait);
    if clock.is_shifted() {
        eprintln!(
            "warning: {}: fleetup believes it is {} (a rehearsal): the maintenance windows and the gate's soak are judged at that time, and this is recorded",
            clock::NOW_VAR,
            clock::rfc3339(clock.now())
        );
    }
    let mut before = Before {
        announce: Vec::new(),
        audit_note: None,
        confirmed: false,
    };
    let mut verdict = inherited.cloned();
    if record.is_some() {
        verdict = checked_gate(session, play, record, runs, clock, skip_gate)?;
    }
    if let Some(start) = first_start(play, clock, per_host) {
        let (at, local, windows) = match start {
            Start::Wait { at, local, windows } if !no_wait => (at, local, windows),
            deferred => return Err(defer(session, play, journal, deferred)),
        };
        let question = format!(
            "batch 1 can start at {local} (in {}): wait for it, then upgrade without asking again? [y/N] ",
            elapsed(clock::until(clock.now(), at))
        );
        if let Some(ask) = ask {
            if !ask(&question) {
                eprintln!("not started; no host was changed.");
                return Err(Exit::Interrupted);
            }
            before.confirmed = true;
        }
        session.exit_on_signal();
        session
            .runtime
            .block_on(countdown(clock, at, &windows, &local));
        if record.is_some() && verdict.is_some() {
            verdict = checked_gate(session, play, record, runs, clock, skip_gate)?;
        }
    }
    if let Some(verdict) = verdict {
        let mut notes = Vec::new();
        if verdict.verdict == Verdict::Skipped {
            notes.push("gate=skipped".to_string());
        }
        if clock.is_shifted() {
            notes.push(format!(
                "{}={}",
                clock::NOW_VAR,
                clock::rfc3339(clock.now())
            ));
        }
        before.audit_note = (!notes.is_empty()).then(|| notes.join(" "));
        // A resume's verdict was told in its first attempt.
        if inherited.is_none() {
            before.announce.push(Event::GateChecked(verdict));
        }
    }
    Ok(before)
}

/// The gate of a new run, recorded in its `run.json` whatever it says; refused: exit 6.
fn checked_gate(
    session: &Session,
    play: &Play,
    record: &mut Option<RunRecord>,
    runs: &[PastRun],
    clock: &Clock,
    skip: bool,
) -> Result<Option<GateVerdict>, Exit> {
    let Some(mut verdict) = gate(session, play, runs, clock, skip) else {
        return Ok(None);
    };
    if clock.is_shifted() {
        verdict.detail.push_str(&format!(
            " (judged at {}={}, not the real time)",
            clock::NOW_VAR,
            clock::rfc3339(clock.now())
        ));
    }
    if let Some(record) = record {
        // Refused or not, the verdict is kept: `fleetup history` tells why a run never
        // started.
        record.gate = Some(verdict.clone());
        super::run::write_record(&session.run_dir, record, play)?;
    }
    if verdict.verdict == Verdict::Refused {
        return Err(Exit::GateRefused);
    }
    Ok(Some(verdict))
}

/// When batch 1 may start, if not now.
enum Start {
    /// At `at` (`local` in the windows' time zone).
    Wait {
        at: jiff::Timestamp,
        local: String,
        windows: String,
    },
    /// No window of the next week has room for it.
    Never {
        windows: String,
        estimate: Option<Duration>,
    },
}

fn first_start(play: &Play, clock: &Clock, per_host: Option<Duration>) -> Option<Start> {
    let first = play.plan.batches.iter().find(|b| !b.hosts.is_empty())?;
    let estimate = schedule::estimate(per_host, first.hosts.len(), play.rollout.forks);
    let now = clock.now();
    let windows = play.schedule.describe(&first.hosts);
    let Some(at) = play
        .schedule
        .next_start(&first.hosts, now, estimate.unwrap_or_default())
    else {
        return Some(Start::Never { windows, estimate });
    };
    if at <= now {
        return None;
    }
    let local = play
        .schedule
        .first_windows(&first.hosts)
        .map_or_else(|| at.to_string(), |w| window::local(at, w));
    Some(Start::Wait { at, local, windows })
}

/// A run that cannot start now: said, and journaled as `deferred` (so that `history`
/// tells it), before anything is contacted. Exit 3.
fn defer(session: &Session, play: &Play, journal: &EventLog, start: Start) -> Exit {
    let resume = format!("fleetup run --resume {}", session.run_dir.id);
    let (batch, of) = play
        .plan
        .batches
        .iter()
        .position(|b| !b.hosts.is_empty())
        .map_or((1, 1), |i| (i + 1, play.plan.batches.len()));
    let (reason, estimate, next) = match start {
        Start::Never { windows, estimate } => (
            Deferral::NoRoomThisWeek { windows, estimate },
            estimate,
            None,
        ),
        Start::Wait { at, local, windows } => {
            (Deferral::NoWait { windows }, None, Some((at, local)))
        }
    };
    eprintln!(
        "{}. Nothing was contacted: {}",
        fleetup::ui::text::deferred(batch, of, &reason, next.as_ref().map(|(_, l)| l.as_str())),
        match next {
            Some(_) => format!("run `{resume}` then"),
            None => "widen the window, or make the batch smaller with --serial".to_string(),
        }
    );
    let event = Event::Deferred {
        batch,
        of,
        reason,
        estimate,
        next_start: next.as_ref().map(|(at, _)| clock::rfc3339(*at)),
        next_start_local: next.map(|(_, l)| l),
    };
    session
        .runtime
        .block_on(journal.append_durable(&Stamped::now(event)));
    Exit::Deferred
}

/// Counts down to `start`: one line redrawn every second on a terminal, else a line at
/// each milestone (so that a log shows the wait without a line a second). Ctrl-C is the
/// session's: it ends fleetup.
async fn countdown(clock: &Clock, start: jiff::Timestamp, windows: &str, at: &str) {
    let terminal = std::io::stderr().is_terminal();
    let mut last_told: Option<u64> = None;
    loop {
        let left = clock::until(clock.now(), start);
        if left.is_zero() {
            break;
        }
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        let line = format!(
            "waiting for the maintenance window ({windows}): batch 1 starts in {} (at {at}); Ctrl-C cancels",
            elapsed(Duration::from_secs(secs))
        );
        if terminal {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        } else if last_told.is_none_or(|told| milestone(told, secs)) {
            eprintln!("{line}");
            last_told = Some(secs);
        }
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
    }
    if terminal {
        eprint!("\r\x1b[2K");
    }
    eprintln!("the maintenance window is open: starting");
}

/// Whether a wait told at `told` seconds left says so again at `secs`: every hour while
/// hours are left, every 10 minutes in the last hour, every minute in the last 10, every
/// 10 seconds in the last minute.
fn milestone(told: u64, secs: u64) -> bool {
    let step = match secs {
        s if s > 3600 => 3600,
        s if s > 600 => 600,
        s if s > 60 => 60,
        _ => 10,
    };
    told / step != secs / step || told.saturating_sub(secs) >= step
}

/// Whether a play pauses for the operator somewhere.
pub fn prompts(play: &Play) -> bool {
    let r = &play.playbook.rollout;
    r.pause_after_canary == Some(Pause::Prompt) || r.pause_between_batches == Some(Pause::Prompt)
}

/// Asks on the terminal: Enter goes on, `stop` (or end of input) halts the run.
pub fn terminal_prompt() -> Prompt {
    Prompt(Arc::new(|_batch| {
        // A thread of its own, not the runtime's blocking pool: when Ctrl-C ends the run
        // during the pause, nothing waits for this read to return before fleetup exits.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = std::io::stdin().read_line(&mut line);
            let _ = tx.send(matches!(read, Ok(n) if n > 0).then_some(line));
        });
        Box::pin(async move {
            let line = rx.await.ok().flatten();
            line.is_some_and(|l| !l.trim().eq_ignore_ascii_case("stop"))
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::milestone;

    #[test]
    fn a_long_wait_is_told_less_often() {
        assert!(milestone(7300, 7199));
        assert!(!milestone(7300, 7250));
        assert!(milestone(3000, 2399));
        assert!(!milestone(125, 121));
        assert!(milestone(125, 119));
        assert!(milestone(35, 29));
        assert!(!milestone(35, 31));
    }
}
