//! Reading a run's journal back: its events, where each host got to, what a resume has
//! left to do, and the one-line summary `fleetup history` shows. Pure but for reading the
//! file, so the rules are proven on event lists in tests.

use std::path::Path;
use std::time::Duration;

use indexmap::IndexMap;

use crate::events::{Event, HaltReason, Interrupted, Outcome, Stamped};
use crate::plan::Batch;

/// The events of `events.jsonl`, and how many lines could not be read. A last line without
/// its newline is the write a `kill -9` cut short: it is left out, not counted.
pub fn read_events(path: &Path) -> std::io::Result<(Vec<Stamped>, usize)> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(parse_events(&text))
}

pub fn parse_events(bytes: &[u8]) -> (Vec<Stamped>, usize) {
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => &bytes[..=i],
        None => &[],
    };
    let mut events = Vec::new();
    let mut unreadable = 0;
    for line in complete.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Stamped>(line) {
            Ok(e) => events.push(e),
            Err(_) => unreadable += 1,
        }
    }
    (events, unreadable)
}

/// Where a host got to, as its last events say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostState {
    /// Started and not finished: fleetup stopped while it ran. `step` is the step it was
    /// in (or had last finished), `None` before its first step.
    Running {
        step: Option<String>,
    },
    Finished(Outcome),
}

/// Every host that was started, in the order it was first started, with its last state.
pub fn host_states(events: &[Stamped]) -> IndexMap<String, HostState> {
    let mut states = IndexMap::new();
    for e in events {
        match &e.event {
            Event::HostStarted { host, .. } => {
                states.insert(host.clone(), HostState::Running { step: None });
            }
            Event::StepStarted {
                host,
                name,
                rollback,
                ..
            } => {
                let step = if *rollback {
                    format!("rollback: {name}")
                } else {
                    name.clone()
                };
                states.insert(host.clone(), HostState::Running { step: Some(step) });
            }
            Event::HostFinished { host, outcome, .. } => {
                states.insert(host.clone(), HostState::Finished(*outcome));
            }
            _ => {}
        }
    }
    states
}

/// What a resume does: the plan's batches with only the hosts left to do (batches keep
/// their places, so their numbers stay those of the first attempt).
#[derive(Debug, Clone, PartialEq)]
pub struct Resumption {
    pub batches: Vec<Batch>,
    /// Ended ok or skipped: not touched again.
    pub finished: Vec<String>,
    /// Failed, unreachable, rolled back or interrupted: run again from their pre-flight.
    pub retry: Vec<String>,
    pub interrupted: Vec<Interrupted>,
}

pub fn resumption(plan: &[Batch], states: &IndexMap<String, HostState>) -> Resumption {
    let mut r = Resumption {
        batches: Vec::with_capacity(plan.len()),
        finished: Vec::new(),
        retry: Vec::new(),
        interrupted: Vec::new(),
    };
    for batch in plan {
        let mut left = Vec::new();
        for host in &batch.hosts {
            match states.get(host) {
                Some(HostState::Finished(o)) if !o.is_failure() => {
                    r.finished.push(host.clone());
                    continue;
                }
                Some(HostState::Finished(_)) => r.retry.push(host.clone()),
                Some(HostState::Running { step }) => {
                    r.retry.push(host.clone());
                    r.interrupted.push(Interrupted {
                        host: host.clone(),
                        step: step.clone().unwrap_or_else(|| "its start".into()),
                    });
                }
                None => {}
            }
            left.push(host.clone());
        }
        r.batches.push(Batch {
            hosts: left,
            ..batch.clone()
        });
    }
    r
}

/// How a run ended, as far as its journal (and whether its process lives) tells.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// Ran its last batch; `exit_code` says whether every host was ok.
    Completed {
        exit_code: u8,
    },
    Halted(HaltReason),
    /// Stopped by the operator (Ctrl-C, SIGTERM).
    Interrupted,
    /// Its process died without ending the run (kill -9, a crash, a power cut).
    Killed,
    Running,
    /// It never got past its pre-flight.
    NotStarted,
    /// A batch waits for the next maintenance window (exit code 3).
    Deferred,
}

impl Ended {
    pub fn word(&self) -> &'static str {
        match self {
            Ended::Completed { .. } => "completed",
            Ended::Halted(_) => "halted",
            Ended::Interrupted => "interrupted",
            Ended::Killed => "killed",
            Ended::Running => "running",
            Ended::NotStarted => "not started",
            Ended::Deferred => "deferred",
        }
    }
}

/// One run as `fleetup history` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// `run_started` of each attempt (2 and more after resumes).
    pub attempts: usize,
    pub hosts: usize,
    pub ok: usize,
    pub failed: usize,
    /// The attempts' own durations added up (not the time between them).
    pub duration: Duration,
    pub ended: Ended,
    /// Hosts the run left down: abandoned past their point of no return, a failed
    /// rollback, unreachable mid-upgrade. Said wherever the run is listed.
    pub down: Vec<String>,
}

pub fn summary(events: &[Stamped], planned_hosts: usize, running: bool) -> Summary {
    let mut attempts = 0;
    let mut duration = Duration::ZERO;
    let mut attempt_start: Option<u64> = None;
    let mut last_at: u64 = 0;
    let mut ended = Ended::NotStarted;
    for e in events {
        match &e.event {
            Event::RunStarted { .. } => {
                // The attempt before was killed: it lasted until its last event.
                if let Some(start) = attempt_start {
                    duration += Duration::from_millis(last_at.saturating_sub(start));
                }
                attempts += 1;
                attempt_start = Some(e.at_ms);
                ended = Ended::Killed;
            }
            Event::Halted { reason, .. } => {
                ended = match reason {
                    HaltReason::Interrupted => Ended::Interrupted,
                    r => Ended::Halted(r.clone()),
                }
            }
            Event::Deferred { .. } => ended = Ended::Deferred,
            Event::RunFinished { exit_code, .. } => {
                // Ctrl-C wins over a halt the policy decided while the run was stopping.
                if *exit_code == crate::exit::Exit::Interrupted.code() {
                    ended = Ended::Interrupted;
                } else if ended == Ended::Killed {
                    ended = Ended::Completed {
                        exit_code: *exit_code,
                    };
                }
                if let Some(start) = attempt_start.take() {
                    duration += Duration::from_millis(e.at_ms.saturating_sub(start));
                }
            }
            _ => {}
        }
        last_at = last_at.max(e.at_ms);
    }
    if let Some(start) = attempt_start {
        duration += Duration::from_millis(last_at.saturating_sub(start));
    }
    if running && matches!(ended, Ended::Killed | Ended::NotStarted) {
        ended = Ended::Running;
    }
    let states = host_states(events);
    let ok = states
        .values()
        .filter(|s| matches!(s, HostState::Finished(o) if !o.is_failure()))
        .count();
    let failed = states
        .values()
        .filter(|s| matches!(s, HostState::Finished(o) if o.is_failure()))
        .count();
    let mut down: Vec<String> = states
        .iter()
        .filter(|(_, s)| matches!(s, HostState::Finished(o) if o.leaves_host_down()))
        .map(|(h, _)| h.clone())
        .collect();
    down.sort();
    Summary {
        attempts,
        hosts: planned_hosts,
        ok,
        failed,
        duration,
        ended,
        down,
    }
}

/// A run of the journal as the promotion gate and the estimates read it.
#[derive(Debug, Clone, PartialEq)]
pub struct PastRun {
    pub id: String,
    pub playbook_name: String,
    /// The versions it took hosts to (`audit.to`).
    pub targets: Vec<String>,
    /// Its hosts that ended ok (not skipped), in the order they ended.
    pub finishes: Vec<Finish>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub host: String,
    pub at_ms: u64,
    /// Whether a step changed the host (it went to the target in this run).
    pub changed: bool,
    pub duration: Duration,
}

impl PastRun {
    pub fn new(id: &str, playbook_name: &str, targets: Vec<String>, events: &[Stamped]) -> Self {
        let finishes = events
            .iter()
            .filter_map(|e| match &e.event {
                Event::HostFinished {
                    host,
                    outcome: Outcome::Ok,
                    changed,
                    duration,
                    ..
                } => Some(Finish {
                    host: host.clone(),
                    at_ms: e.at_ms,
                    changed: *changed,
                    duration: *duration,
                }),
                _ => None,
            })
            .collect();
        PastRun {
            id: id.to_string(),
            playbook_name: playbook_name.to_string(),
            targets,
            finishes,
        }
    }
}

/// How long a host of `playbook_name` takes, to estimate batches before this run's own
/// hosts tell: the slowest host that changed in the latest run that has one (`this_run`'s
/// earlier attempts first, when resuming). Runs are oldest first.
pub fn host_estimate(
    runs: &[PastRun],
    playbook_name: &str,
    this_run: Option<&str>,
) -> Option<Duration> {
    let slowest = |r: &PastRun| {
        r.finishes
            .iter()
            .filter(|f| f.changed)
            .map(|f| f.duration)
            .max()
    };
    let own = runs.iter().filter(|r| Some(r.id.as_str()) == this_run);
    let others = runs
        .iter()
        .rev()
        .filter(|r| r.playbook_name == playbook_name && Some(r.id.as_str()) != this_run);
    own.chain(others).find_map(slowest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::StepStatus;

    fn at(ms: u64, event: Event) -> Stamped {
        Stamped { at_ms: ms, event }
    }

    fn started(ms: u64) -> Stamped {
        at(
            ms,
            Event::RunStarted {
                run_id: "r".into(),
                playbook: "p".into(),
                name: "n".into(),
                pattern: "all".into(),
                hosts: 4,
                batches: 2,
                forks: 2,
                run_dir: "d".into(),
            },
        )
    }

    fn host_started(host: &str) -> Stamped {
        at(
            1,
            Event::HostStarted {
                host: host.into(),
                batch: 1,
                steps: 3,
            },
        )
    }

    fn step_started(host: &str, name: &str) -> Stamped {
        at(
            2,
            Event::StepStarted {
                host: host.into(),
                step: 1,
                of: 3,
                name: name.into(),
                rollback: false,
            },
        )
    }

    fn host_finished(ms: u64, host: &str, outcome: Outcome) -> Stamped {
        at(
            ms,
            Event::HostFinished {
                host: host.into(),
                outcome,
                changed: true,
                changed_steps: 1,
                duration: Duration::from_millis(5),
                failed_step: None,
                message: None,
                log: "l".into(),
            },
        )
    }

    fn batches() -> Vec<Batch> {
        vec![
            Batch {
                hosts: vec!["a".into()],
                canary: true,
                staged: false,
            },
            Batch {
                hosts: vec!["b".into(), "c".into(), "d".into()],
                canary: false,
                staged: false,
            },
            Batch {
                hosts: vec!["e".into()],
                canary: false,
                staged: false,
            },
        ]
    }

    /// A run killed in batch 2: `a` and `b` done, `c` in its pull, `d` failed earlier.
    fn killed_in_batch_2() -> Vec<Stamped> {
        vec![
            started(1000),
            host_started("a"),
            host_finished(1100, "a", Outcome::Ok),
            host_started("b"),
            host_started("c"),
            host_started("d"),
            step_started("c", "pull"),
            host_finished(1200, "b", Outcome::Skipped),
            host_finished(1300, "d", Outcome::Failed),
            at(
                1400,
                Event::StepFinished {
                    host: "c".into(),
                    step: 1,
                    of: 3,
                    name: "pull".into(),
                    rollback: false,
                    status: StepStatus::Changed,
                    rc: Some(0),
                    duration: Duration::from_millis(1),
                    attempts: 1,
                    message: None,
                    stderr_tail: vec![],
                },
            ),
            step_started("c", "stop"),
        ]
    }

    #[test]
    fn resume_leaves_finished_hosts_and_retries_the_rest_in_their_batches() {
        let states = host_states(&killed_in_batch_2());
        let r = resumption(&batches(), &states);
        assert_eq!(r.finished, ["a", "b"]);
        assert_eq!(r.retry, ["c", "d"]);
        assert_eq!(
            r.interrupted,
            [Interrupted {
                host: "c".into(),
                step: "stop".into()
            }]
        );
        let left: Vec<(Vec<String>, bool)> = r
            .batches
            .iter()
            .map(|b| (b.hosts.clone(), b.canary))
            .collect();
        assert_eq!(
            left,
            [
                (vec![], true),
                (vec!["c".to_string(), "d".to_string()], false),
                (vec!["e".to_string()], false)
            ]
        );
    }

    #[test]
    fn a_killed_run_reads_back_without_its_partial_line() {
        let mut text = String::new();
        for e in killed_in_batch_2() {
            text.push_str(&serde_json::to_string(&e).unwrap());
            text.push('\n');
        }
        let whole = parse_events(text.as_bytes());
        assert_eq!(whole.0.len(), 11);
        assert_eq!(whole.1, 0);
        text.push_str("{\"at_ms\":1500,\"event\":\"host_fin");
        let (events, unreadable) = parse_events(text.as_bytes());
        assert_eq!((events.len(), unreadable), (11, 0));
        assert_eq!(events, killed_in_batch_2());
        let broken = "not json\n{\"at_ms\":1,\"event\":\"aborting\"}\n";
        assert_eq!(parse_events(broken.as_bytes()).1, 1);
    }

    #[test]
    fn summaries_say_how_a_run_ended() {
        let killed = killed_in_batch_2();
        let s = summary(&killed, 5, false);
        assert_eq!(s.ended, Ended::Killed);
        assert_eq!((s.attempts, s.ok, s.failed), (1, 2, 1));
        assert_eq!(s.duration, Duration::from_millis(400));
        assert_eq!(summary(&killed, 5, true).ended, Ended::Running);
        assert_eq!(summary(&[], 5, false).ended, Ended::NotStarted);

        // Resumed to the end: two attempts, durations added, every host ok.
        let mut resumed = killed.clone();
        resumed.push(started(90_000));
        for (ms, h) in [(90_100, "c"), (90_200, "d"), (90_300, "e")] {
            resumed.push(host_started(h));
            resumed.push(host_finished(ms, h, Outcome::Ok));
        }
        resumed.push(at(
            90_500,
            Event::RunFinished {
                duration: Duration::from_millis(500),
                untouched: vec![],
                exit_code: 0,
            },
        ));
        let s = summary(&resumed, 5, false);
        assert_eq!(s.ended, Ended::Completed { exit_code: 0 });
        assert_eq!((s.attempts, s.ok, s.failed), (2, 5, 0));
        assert_eq!(s.duration, Duration::from_millis(400 + 500));

        let mut halted = killed;
        let reason = HaltReason::TooManyFailures {
            failed: 1,
            of: 3,
            max_fail_percentage: 0.0,
        };
        halted.push(at(
            1500,
            Event::Halted {
                reason: reason.clone(),
                batch: 2,
            },
        ));
        halted.push(at(
            1600,
            Event::RunFinished {
                duration: Duration::from_millis(600),
                untouched: vec!["e".into()],
                exit_code: 2,
            },
        ));
        assert_eq!(summary(&halted, 5, false).ended, Ended::Halted(reason));

        // A canary that failed because Ctrl-C cut it short: the operator's stop is the story.
        if let Some(Event::RunFinished { exit_code, .. }) = halted.last_mut().map(|e| &mut e.event)
        {
            *exit_code = 99;
        }
        assert_eq!(summary(&halted, 5, false).ended, Ended::Interrupted);
    }

    #[test]
    fn a_deferred_run_says_so_and_its_resume_does_the_batches_left() {
        let mut events = vec![
            started(0),
            host_started("a"),
            host_finished(100, "a", Outcome::Ok),
        ];
        events.push(at(
            200,
            Event::Deferred {
                batch: 2,
                of: 3,
                reason: crate::schedule::Deferral::Closed {
                    windows: "sat 02:00-05:00 UTC".into(),
                },
                estimate: None,
                next_start: None,
                next_start_local: None,
            },
        ));
        events.push(at(
            300,
            Event::RunFinished {
                duration: Duration::from_millis(300),
                untouched: vec!["b".into(), "c".into(), "d".into(), "e".into()],
                exit_code: 3,
            },
        ));
        assert_eq!(summary(&events, 5, false).ended, Ended::Deferred);
        let left = resumption(&batches(), &host_states(&events));
        assert_eq!(left.finished, vec!["a".to_string()]);
        assert!(left.batches[0].hosts.is_empty());
        assert_eq!(left.batches.iter().map(|b| b.hosts.len()).sum::<usize>(), 4);
    }

    #[test]
    fn estimates_come_from_this_run_first_then_the_latest_run_of_the_playbook() {
        let run = |id: &str, name: &str, secs: &[u64]| {
            let events: Vec<Stamped> = secs
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut e = host_finished(i as u64, &format!("h{i}"), Outcome::Ok);
                    if let Event::HostFinished { duration, .. } = &mut e.event {
                        *duration = Duration::from_secs(*s);
                    }
                    e
                })
                .collect();
            PastRun::new(id, name, vec!["v2".into()], &events)
        };
        let runs = [
            run("r1", "Upgrade", &[10, 30]),
            run("r2", "Upgrade", &[20]),
            run("r3", "Other", &[99]),
            run("r4", "Upgrade", &[]),
            run("r5", "Upgrade", &[7]),
        ];
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs());
        // The latest run of the playbook that has a host: r2 (r4 has none).
        assert_eq!(secs(host_estimate(&runs[..4], "Upgrade", None)), Some(20));
        // A resume of r5 trusts its own earlier attempt.
        assert_eq!(secs(host_estimate(&runs, "Upgrade", Some("r5"))), Some(7));
        assert_eq!(host_estimate(&runs, "Nothing", None), None);
    }
}
