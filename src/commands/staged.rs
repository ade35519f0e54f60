//! Staged rollouts at the edge: the promotion gate's live check, waiting for a maintenance
//! window with a countdown, and asking the operator at a pause. The rules themselves are in
//! the library (`gate`, `window`, `run::schedule`); here they meet the journal on disk, the
//! hosts and the terminal.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fleetup::clock::{self, Clock};
use fleetup::events::{GateVerdict, Outcome};
use fleetup::exit::Exit;
use fleetup::gate::{self, Check, Evidence};
use fleetup::journal::read::{self, PastRun};
use fleetup::plan::{Batch, Plan};
use fleetup::play::Play;
use fleetup::playbook::Pause;
use fleetup::run::{schedule, Prompt, RunSpec};
use fleetup::ui::plan::Outlook;
use fleetup::ui::text::{duration, elapsed, plural};
use fleetup::window;

use super::run::Session;

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
        if skip {
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
        }],
        seed: None,
    };
    let mut steps = play.playbook.steps[..play.playbook.preflight_len].to_vec();
    steps.extend(play.playbook.verify.iter().cloned());
    let mut spec = RunSpec::from_play(play);
    spec.hosts = &hosts;
    spec.plan = &plan;
    spec.steps = &steps;
    spec.preflight_len = steps.len();
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

/// Waits until the first batch fits in its hosts' maintenance windows, with a countdown;
/// with `no_wait`, or when no window of the next week has room, the run is deferred
/// (exit 3) before anything is contacted.
pub fn wait_for_window(
    session: &Session,
    play: &Play,
    clock: &Clock,
    per_host: Option<Duration>,
    no_wait: bool,
    quiet: bool,
) -> Result<(), Exit> {
    let Some(first) = play.plan.batches.iter().find(|b| !b.hosts.is_empty()) else {
        return Ok(());
    };
    let estimate = schedule::estimate(per_host, first.hosts.len(), play.rollout.forks);
    let now = clock.now();
    let windows = play.schedule.describe(&first.hosts);
    let resume = format!("fleetup run --resume {}", session.run_dir.id);
    let Some(start) = play
        .schedule
        .next_start(&first.hosts, now, estimate.unwrap_or_default())
    else {
        eprintln!(
            "deferred: no maintenance window of the next week ({windows}) has room for batch 1 (about {}); nothing was contacted. Widen the window, or make the batch smaller with --serial",
            estimate.map_or("?".into(), duration)
        );
        return Err(Exit::Deferred);
    };
    if start <= now {
        return Ok(());
    }
    let at = play
        .schedule
        .first_windows(&first.hosts)
        .map_or_else(|| start.to_string(), |w| window::local(start, w));
    if no_wait {
        eprintln!(
            "deferred: outside the maintenance window ({windows}); the next one with room for batch 1 opens {at}. Nothing was contacted: run `{resume}` then"
        );
        return Err(Exit::Deferred);
    }
    let reached = session
        .runtime
        .block_on(countdown(clock, start, &windows, &at, quiet));
    if reached {
        Ok(())
    } else {
        eprintln!("\nnot started: interrupted while waiting for the maintenance window; nothing was contacted. Run `{resume}` to start it later.");
        Err(Exit::Interrupted)
    }
}

/// Counts down to `start`: one line redrawn every second on a terminal, else a line at
/// each milestone (so that a log shows the wait without a line a second). Returns `false`
/// when Ctrl-C or SIGTERM ended the wait.
async fn countdown(
    clock: &Clock,
    start: jiff::Timestamp,
    windows: &str,
    at: &str,
    quiet: bool,
) -> bool {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return false;
    };
    let terminal = std::io::stderr().is_terminal() && !quiet;
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
        let tick = left.min(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = int.recv() => return false,
            _ = term.recv() => return false,
        }
    }
    if terminal {
        eprintln!("\r\x1b[2Kthe maintenance window is open: starting");
    } else {
        eprintln!("the maintenance window is open: starting");
    }
    true
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
    told / step != secs / step || told - secs >= step
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
