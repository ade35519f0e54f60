use super::*;
use crate::events::{Event, Outcome, Stamped};
use crate::state::sample::{at, started};

const S: u64 = 1000;

fn secs(d: Option<Duration>) -> Option<u64> {
    d.map(|d| d.as_secs())
}

/// A run's events, written as it goes: batches, hosts started and ended at whole seconds.
#[derive(Default)]
struct Script {
    events: Vec<Stamped>,
    batch: usize,
}

impl Script {
    fn new() -> Self {
        Script {
            events: vec![started(0)],
            batch: 0,
        }
    }

    fn batch(mut self, number: usize, canary: bool, t: u64) -> Self {
        self.batch = number;
        self.events.push(at(
            t * S,
            Event::BatchStarted {
                batch: number,
                of: 5,
                canary,
                hosts: vec![],
            },
        ));
        self
    }

    fn start(mut self, host: &str, t: u64) -> Self {
        self.events.push(at(
            t * S,
            Event::HostStarted {
                host: host.into(),
                batch: self.batch,
                steps: 3,
            },
        ));
        self
    }

    fn end(mut self, host: &str, t: u64, took: u64, outcome: Outcome) -> Self {
        self.events.push(at(
            t * S,
            Event::HostFinished {
                host: host.into(),
                outcome,
                changed: true,
                changed_steps: 3,
                duration: Duration::from_secs(took),
                failed_step: None,
                message: None,
                log: "l".into(),
            },
        ));
        self
    }

    fn then(mut self, t: u64, event: Event) -> Self {
        self.events.push(at(t * S, event));
        self
    }

    fn state(&self) -> RunState {
        RunState::of(&self.events)
    }
}

/// The 20 s pause after the canary.
fn pause_after_canary() -> Event {
    Event::PauseStarted {
        batch: 1,
        duration: Some(Duration::from_secs(20)),
        prompt: false,
        verifying: 1,
    }
}

/// A canary, then four batches of two hosts, two at once, with pauses.
fn five_batches() -> Shape {
    Shape {
        batches: vec![1, 2, 2, 2, 2],
        canary: Some(0),
        forks: 2,
        pause_after_canary: Some(Duration::from_secs(20)),
        pause_between_batches: Some(Duration::from_secs(5)),
        journal_per_host: None,
    }
}

#[test]
fn the_whole_plan_is_its_waves_and_pauses_at_the_journal_s_pace() {
    let mut shape = five_batches();
    assert_eq!(shape.total(), None, "no earlier run: no estimate");
    shape.journal_per_host = Some(Duration::from_secs(10));
    // 5 waves of 10 s, 20 s after the canary, 5 s between the three others.
    assert_eq!(secs(shape.total()), Some(50 + 20 + 15));
    // One fork: the batches of two take two waves each.
    shape.forks = 1;
    assert_eq!(secs(shape.total()), Some(90 + 20 + 15));
}

#[test]
fn after_the_canary_the_rest_follows_its_pace_not_its_elapsed_time_over_hosts() {
    // The run: 10 hosts, serial 1, 5, 25% (then 4), forks 10; the canary took 12 s.
    // Elapsed over done would say 12 s x 9 = 1m48s; the plan says two more waves.
    let shape = Shape {
        batches: vec![1, 5, 4],
        canary: Some(0),
        forks: 10,
        ..Shape::default()
    };
    let script = Script::new()
        .batch(1, true, 0)
        .start("c", 0)
        .end("c", 12, 12, Outcome::Ok);
    assert_eq!(secs(shape.left(&script.state(), 12 * S)), Some(24));
    // Before any host ended, and with no journal: unknown, not a guess.
    let fresh = Script::new().batch(1, true, 0).start("c", 0);
    assert_eq!(shape.left(&fresh.state(), 5 * S), None);
    // With the journal's pace it is known from the start.
    let journal = Shape {
        journal_per_host: Some(Duration::from_secs(10)),
        ..shape
    };
    assert_eq!(secs(journal.left(&fresh.state(), 4 * S)), Some(6 + 10 + 10));
}

#[test]
fn hosts_in_flight_and_waiting_share_the_forks() {
    let mut shape = five_batches();
    shape.forks = 1;
    // Batch 2 of two hosts, one at a time: h1 started 4 s ago, h2 waits for its slot.
    let script = Script::new()
        .batch(1, true, 0)
        .start("c", 0)
        .end("c", 10, 10, Outcome::Ok)
        .then(10, pause_after_canary())
        .then(30, Event::PauseFinished { batch: 1 })
        .batch(2, false, 30)
        .start("h1", 30);
    // (10 - 4) + 10 for batch 2, 5 s pause, then 3 batches of 20 s with 2 pauses of 5 s.
    assert_eq!(
        secs(shape.left(&script.state(), 34 * S)),
        Some(6 + 10 + 5 + 60 + 10)
    );
}

#[test]
fn a_pause_counts_what_is_left_of_it() {
    let shape = five_batches();
    let script = Script::new()
        .batch(1, true, 0)
        .start("c", 0)
        .end("c", 10, 10, Outcome::Ok)
        .then(10, pause_after_canary());
    // 12 s of the pause left, then 4 waves of 10 s and 3 pauses of 5 s.
    assert_eq!(
        secs(shape.left(&script.state(), 18 * S)),
        Some(12 + 40 + 15)
    );
}

#[test]
fn a_reconnecting_host_holds_the_estimate_until_its_next_attempt() {
    let shape = Shape {
        batches: vec![1, 1],
        canary: Some(0),
        forks: 1,
        ..Shape::default()
    };
    let script = Script::new()
        .batch(1, true, 0)
        .start("c", 0)
        .end("c", 10, 10, Outcome::Ok)
        .batch(2, false, 10)
        .start("h", 10)
        .then(
            22,
            Event::Reconnecting {
                host: "h".into(),
                attempt: 3,
                of: 5,
                delay_ms: 8_000,
                error: "connection refused".into(),
            },
        );
    // Past its 10 s, it would be "done any moment"; it waits 8 s for its third attempt.
    assert_eq!(secs(shape.left(&script.state(), 23 * S)), Some(7));
    let state = script.state();
    assert_eq!(
        state.flights()["h"].reconnecting.map(|r| (r.attempt, r.of)),
        Some((3, 5))
    );
}

#[test]
fn the_pace_is_the_mean_of_hosts_that_ended_well() {
    let shape = Shape {
        batches: vec![3, 3],
        forks: 3,
        ..Shape::default()
    };
    let script = Script::new()
        .batch(1, false, 0)
        .start("a", 0)
        .start("b", 0)
        .start("c", 0)
        .end("a", 8, 8, Outcome::Ok)
        .end("b", 12, 12, Outcome::Skipped)
        // A failure ends early: it says nothing of how long a host takes.
        .end("c", 1, 1, Outcome::Failed);
    assert_eq!(secs(shape.left(&script.state(), 12 * S)), Some(10));
}

#[test]
fn a_resume_skips_the_finished_batches_and_their_pauses() {
    let shape = Shape {
        batches: vec![0, 0, 2],
        canary: Some(0),
        forks: 2,
        pause_after_canary: Some(Duration::from_secs(60)),
        pause_between_batches: Some(Duration::from_secs(30)),
        journal_per_host: Some(Duration::from_secs(10)),
    };
    assert_eq!(secs(shape.total()), Some(10));
}

#[test]
fn a_stopping_run_waits_only_for_its_hosts_in_flight_and_an_ended_one_for_nothing() {
    let shape = five_batches();
    let script = Script::new()
        .batch(1, true, 0)
        .start("c", 0)
        .end("c", 10, 10, Outcome::Ok)
        .batch(2, false, 10)
        .start("h1", 10)
        .then(
            11,
            Event::Stopping {
                reason: crate::events::HaltReason::Interrupted,
            },
        );
    assert_eq!(secs(shape.left(&script.state(), 13 * S)), Some(7));
    let halted = script.then(
        20,
        Event::Halted {
            reason: crate::events::HaltReason::Interrupted,
            batch: 2,
        },
    );
    assert_eq!(shape.left(&halted.state(), 20 * S), None);
}
