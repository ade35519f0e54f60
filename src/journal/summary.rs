//! One run as `fleetup history` lists it: how it ended, its hosts, and the time it took.

use std::time::Duration;

use crate::events::Stamped;
use crate::state::{Ended, HostState, RunState};

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
    /// The latest attempt's exit code, when it ended (halted and deferred runs too).
    pub exit_code: Option<u8>,
    /// Hosts the run left down: abandoned past their point of no return, a failed
    /// rollback, unreachable mid-upgrade. Said wherever the run is listed.
    pub down: Vec<String>,
}

pub fn summary(events: &[Stamped], planned_hosts: usize, running: bool) -> Summary {
    Summary::of(&RunState::of(events), planned_hosts, running)
}

impl Summary {
    /// The summary of a run in `state`, of `planned_hosts`; `running` when a live process
    /// runs it now.
    pub fn of(state: &RunState, planned_hosts: usize, running: bool) -> Summary {
        let mut ended = state.ended();
        if running && matches!(ended, Ended::Killed | Ended::NotStarted) {
            ended = Ended::Running;
        }
        let outcomes: Vec<_> = state
            .host_states()
            .into_iter()
            .filter_map(|(h, s)| match s {
                HostState::Finished(o) => Some((h, o)),
                HostState::Running { .. } => None,
            })
            .collect();
        let mut down: Vec<String> = outcomes
            .iter()
            .filter(|(_, o)| o.leaves_host_down())
            .map(|(h, _)| h.clone())
            .collect();
        down.sort();
        Summary {
            attempts: state.attempts(),
            hosts: planned_hosts,
            ok: outcomes.iter().filter(|(_, o)| !o.is_failure()).count(),
            failed: outcomes.iter().filter(|(_, o)| o.is_failure()).count(),
            duration: state.worked(),
            ended,
            exit_code: state.attempt().finished.as_ref().map(|f| f.exit_code),
            down,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, HaltReason, Outcome};
    use crate::journal::read::{host_states, resumption};
    use crate::state::sample::{
        at, batches, host_finished, host_started, killed_in_batch_2, started,
    };

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
        // A halted run ended with a code all the same: `history --output json` says it.
        assert_eq!(summary(&halted, 5, false).exit_code, Some(2));
        assert_eq!(summary(&killed_in_batch_2(), 5, false).exit_code, None);

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
}
