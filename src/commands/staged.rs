//! Staged rollouts at the edge: the promotion gate's live check, waiting for a maintenance
//! window with a countdown, and asking the operator at a pause. The rules themselves are in
//! the library (`gate`, `staging`, `schedule`); here they meet the journal on disk, the
//! hosts and the terminal.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fleetup::clock::{self, Clock};
use fleetup::engine::{Job, Prompt};
use fleetup::events::{Event, GateVerdict, Outcome, Stamped, Verdict};
use fleetup::gate::{Check, Judgement, Live};
use fleetup::journal::read::PastRun;
use fleetup::journal::{EventLog, RunRecord};
use fleetup::plan::{Batch, Plan};
use fleetup::play::Play;
use fleetup::staging::{self, Deferred, Start};
use fleetup::ui;

use super::session::{confirm, write_record, Session};
use super::CliError;

/// The journal's runs: a gate's evidence, and how long a host took, for the windows, the
/// plan's estimate and the run's time left.
pub fn past_runs(state_dir: &Path) -> Vec<PastRun> {
    fleetup::journal::past_runs(state_dir).unwrap_or_else(|e| {
        eprintln!(
            "warning: cannot read the journal in {}: {e}",
            state_dir.display()
        );
        Vec::new()
    })
}

/// The plan for people, with what the journal and the clock say of its staged rollout.
pub fn plan_text(play: &Play, runs: &[PastRun], clock: &Clock) -> String {
    let outlook = staging::outlook(play, runs, clock.now());
    ui::plan::text(play, false, &ui::staging::outlook(&outlook))
}

/// A run about to start, as its staged rollout sees it.
pub struct Staging<'a> {
    pub session: &'a Session,
    pub play: &'a Play,
    /// The journal's past runs (the gate's evidence, the estimates).
    pub runs: &'a [PastRun],
    pub clock: &'a Clock,
    /// How long a host takes, from the journal.
    pub per_host: Option<Duration>,
    /// The run's own journal, where a deferral is recorded.
    pub journal: &'a EventLog,
    /// `--skip-gate` and `--no-wait`.
    pub skip_gate: bool,
    pub no_wait: bool,
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

impl Staging<'_> {
    /// The promotion gate (a new run's, whose `record` keeps its verdict; a resume has none
    /// and `inherited` its first attempt's), then the wait for batch 1's maintenance window
    /// (confirmed first when `interactive`, and the gate asked again after it, so that
    /// "healthy now" means at the start). Refusals and deferrals are recorded before they
    /// return.
    pub fn before_start(
        &self,
        record: &mut Option<RunRecord>,
        inherited: Option<&GateVerdict>,
        interactive: bool,
    ) -> Result<Before, CliError> {
        if self.clock.is_shifted() {
            eprintln!(
                "warning: {}: fleetup believes it is {} (a rehearsal): the maintenance windows and the gate's soak are judged at that time, and this is recorded",
                clock::NOW_VAR,
                clock::rfc3339(self.clock.now())
            );
        }
        let mut verdict = inherited.cloned();
        if record.is_some() {
            verdict = self.checked_gate(record)?;
        }
        let mut confirmed = false;
        if let Some(start) = staging::first_start(self.play, self.clock.now(), self.per_host) {
            let (at, local, windows) = match start {
                Start::Wait { at, local, windows } if !self.no_wait => (at, local, windows),
                deferred => return Err(self.defer(deferred)),
            };
            if interactive {
                print!("{}", plan_text(self.play, self.runs, self.clock));
                let left = clock::until(self.clock.now(), at);
                if !confirm(&format!("\n{}", ui::staging::wait_question(&local, left))) {
                    return Err(CliError::Declined);
                }
                confirmed = true;
            }
            self.session.exit_on_signal();
            self.session
                .runtime
                .block_on(countdown(self.clock, at, &windows, &local));
            if record.is_some() && verdict.is_some() {
                verdict = self.checked_gate(record)?;
            }
        }
        Ok(Before {
            audit_note: verdict
                .as_ref()
                .and_then(|v| staging::audit_note(v, staging::rehearsal(self.clock))),
            // A resume's verdict was told in its first attempt.
            announce: verdict
                .filter(|_| inherited.is_none())
                .map(Event::GateChecked)
                .into_iter()
                .collect(),
            confirmed,
        })
    }

    /// The gate of a new run, recorded in its `run.json` whatever it says; refused: exit 6.
    fn checked_gate(
        &self,
        record: &mut Option<RunRecord>,
    ) -> Result<Option<GateVerdict>, CliError> {
        let Some(judgement) = self.gate() else {
            return Ok(None);
        };
        let verdict = ui::gate::verdict(&judgement, staging::rehearsal(self.clock).as_deref());
        if let Some(record) = record {
            // Refused or not, the verdict is kept: `fleetup history` tells why a run never
            // started.
            record.gate = Some(verdict.clone());
            write_record(&self.session.run_dir, record, self.play)?;
        }
        if !judgement.allows() {
            return Err(CliError::GateRefused(Box::new(judgement)));
        }
        Ok(Some(verdict))
    }

    /// The promotion gate of a new run: refused unless the staged group ran the target,
    /// healthy, for the soak time, or `--skip-gate` overrides it (said on stderr). `None`
    /// without a gate.
    fn gate(&self) -> Option<Judgement> {
        let now_ms = staging::epoch_ms(self.clock.now());
        let check = Check::new(self.play, self.runs, now_ms)?;
        let live = if check.wants_live(self.skip_gate) {
            live_check(self.session, self.play)
        } else {
            Vec::new()
        };
        let judgement = check.judge(&live, self.skip_gate);
        if judgement.verdict == Verdict::Skipped {
            eprintln!("{}", ui::gate::skipped(&judgement));
        }
        Some(judgement)
    }

    /// A run that cannot start now, journaled as `deferred` (so that `history` tells it)
    /// before anything is contacted. Exit 3.
    fn defer(&self, start: Start) -> CliError {
        let deferred = Deferred::new(self.play, start);
        let event = Stamped::now(deferred.event());
        self.session
            .runtime
            .block_on(self.journal.append_durable(&event));
        CliError::Deferred {
            deferred: Box::new(deferred),
            resume: format!("fleetup run --resume {}", self.session.run_dir.id),
        }
    }
}

/// The staged hosts checked now, read-only: their pre-flight and `verify:` steps, and
/// their version (`audit.from`).
fn live_check(session: &Session, play: &Play) -> Vec<(String, Live)> {
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
    session
        .preflight_alone(&spec)
        .into_iter()
        .map(|r| {
            let state = match (r.outcome, r.version) {
                (Outcome::Ok, Some(version)) => Live::At(version),
                (Outcome::Ok, None) => Live::VersionUnknown,
                (outcome, _) => {
                    Live::Unhealthy(r.message.unwrap_or_else(|| outcome.label().to_string()))
                }
            };
            (r.host, state)
        })
        .collect()
}

/// Counts down to `start`: one line redrawn every second on a terminal, else a line at
/// each milestone. Ctrl-C is the session's: it ends fleetup.
async fn countdown(clock: &Clock, start: jiff::Timestamp, windows: &str, at: &str) {
    let terminal = std::io::stderr().is_terminal();
    let mut last_told: Option<u64> = None;
    loop {
        let left = clock::until(clock.now(), start);
        if left.is_zero() {
            break;
        }
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        let line = ui::staging::waiting(windows, secs, at);
        if terminal {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        } else if last_told.is_none_or(|told| staging::milestone(told, secs)) {
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
