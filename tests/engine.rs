//! The rollout engine against the test fleet: order, batches, forks, halting, retries and
//! timeouts, proven from the hosts' own command logs (what really ran, and when).

#[path = "engine/connections.rs"]
mod connections;
mod fleet;
mod fleetup_cli;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use fleet::{rule, Fleet, HostSpec, Spec};
use fleetup::connect::Transport;
use fleetup::engine::Emitter;
use fleetup::engine::{execute, preflight, Control, Job, JobOptions, JobReport};
use fleetup::events::{Event, HaltReason, Outcome, Stamped, StepStatus};
use fleetup::exit::Exit;
use fleetup::journal::{read::read_events, EventLog, RunDir};
use fleetup::play::{prepare, PlayInputs};
use fleetup::ssh::SshOptions;

/// A run of `playbook` (YAML text) on the fleet, with extra command-line arguments.
struct Run {
    report: JobReport,
    events: Vec<Event>,
}

fn run_on(
    fleet: &Fleet,
    playbook: &str,
    configure: impl FnOnce(&mut PlayInputs),
    halt_immediately: bool,
) -> Run {
    run_with(fleet, playbook, configure, halt_immediately, None)
}

/// As `run_on`, after the fleet-wide pre-flight when `between` is given: called once the
/// pre-flight has ended, while every host waits for its turn.
fn run_with(
    fleet: &Fleet,
    playbook: &str,
    configure: impl FnOnce(&mut PlayInputs),
    halt_immediately: bool,
    between: Option<&dyn Fn()>,
) -> Run {
    let pb = fleet.tmp().join("playbook.yml");
    std::fs::write(&pb, playbook).unwrap();
    let mut inputs = PlayInputs {
        inventories: vec![fleet.inventory_path()],
        playbook: pb,
        ..Default::default()
    };
    configure(&mut inputs);
    let play = prepare(&inputs).unwrap_or_else(|e| panic!("{e}"));
    let options = SshOptions {
        known_hosts: fleet.known_hosts_path(),
        ssh_config: None,
        agent_socket: None,
        default_identity_files: vec![],
        prompt_passphrase: false,
        ..SshOptions::default()
    };
    let transport = Transport::new(options).unwrap();
    let run_dir = RunDir::create(&fleet.tmp().join("state")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Stamped>();
    let options = JobOptions {
        halt_immediately,
        connect_timeout: Duration::from_secs(5),
        reconnect: Default::default(),
        break_lock: false,
        ..Default::default()
    };
    let journal = EventLog::open(&run_dir.events_path()).unwrap();
    let events = Emitter::with_journal(tx, journal);
    if let Some(between) = between {
        let job = Job::from_play(&play);
        let control = Control::default();
        let checked = preflight(&job, &transport, &run_dir, &options, &control);
        let checked = runtime.block_on(checked);
        assert!(
            checked.iter().all(|r| r.outcome == Outcome::Ok),
            "{checked:?}"
        );
        between();
    }
    let report = runtime.block_on(execute(
        &Job::from_play(&play),
        &transport,
        &run_dir,
        &options,
        &Control::default(),
        &events,
    ));
    drop(events);
    let mut stamped = Vec::new();
    while let Ok(e) = rx.try_recv() {
        stamped.push(e);
    }
    // The journal holds exactly what the views were told, in the same order: the last
    // event (run_finished) is written durably, so everything before it is on disk too.
    let journaled = std::fs::read_to_string(run_dir.events_path()).unwrap();
    let shown: String = stamped
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    assert_eq!(
        journaled, shown,
        "the journal differs from the events shown"
    );
    let (read_back, unreadable) = read_events(&run_dir.events_path()).unwrap();
    assert_eq!((read_back.len(), unreadable), (stamped.len(), 0));
    let events = stamped.into_iter().map(|e| e.event).collect();
    Run { report, events }
}

/// When a host was busy: from its first command's start to its last command's end.
fn busy(fleet: &Fleet, host: &str) -> Option<(f64, f64)> {
    let sessions: Vec<_> = fleet
        .commands(host)
        .into_iter()
        .filter(|c| c.kind == "session")
        .collect();
    let start = sessions
        .iter()
        .filter(|c| c.ev == "start")
        .map(|c| c.t)
        .reduce(f64::min)?;
    let end = sessions
        .iter()
        .filter(|c| c.ev == "end")
        .map(|c| c.t)
        .reduce(f64::max)?;
    Some((start, end))
}

fn outcomes(run: &Run) -> HashMap<String, Outcome> {
    run.report.outcomes.iter().cloned().collect()
}

fn names(prefix: &str, range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i:02}")).collect()
}

const STEPS: &str = "\
name: t
hosts: all
steps:
  - name: first
    shell: sleep 0.2
  - name: second
    shell: echo step two on {{ inventory_hostname }}
";

#[test]
fn canary_first_batches_in_order_never_more_than_forks() {
    let fleet = Fleet::start(Spec::new().group("prod", "p", 9, "v4.65.0").canary("p-05"));
    let run = run_on(
        &fleet,
        STEPS,
        |i| {
            i.overrides.serial = Some("4".parse().unwrap());
            i.overrides.forks = Some(2);
        },
        false,
    );
    assert_eq!(run.report.exit, Exit::Success);
    assert_eq!(run.report.outcomes.len(), 9);
    assert!(outcomes(&run).values().all(|o| *o == Outcome::Ok));

    let (_, canary_end) = busy(&fleet, "p-05").unwrap();
    let batches = [
        vec!["p-01", "p-02", "p-03", "p-04"],
        vec!["p-06", "p-07", "p-08", "p-09"],
    ];
    let mut previous_end = canary_end;
    for batch in &batches {
        let spans: Vec<(f64, f64)> = batch.iter().map(|h| busy(&fleet, h).unwrap()).collect();
        let start = spans.iter().map(|s| s.0).reduce(f64::min).unwrap();
        assert!(
            start > previous_end,
            "a batch started before the previous one ended"
        );
        previous_end = spans.iter().map(|s| s.1).reduce(f64::max).unwrap();
    }
    // At every host's start, count the hosts busy at that instant.
    let spans: Vec<(f64, f64)> = fleet
        .hosts()
        .iter()
        .map(|h| busy(&fleet, &h.name).unwrap())
        .collect();
    let most = spans
        .iter()
        .map(|(t, _)| spans.iter().filter(|(s, e)| s <= t && t < e).count())
        .max()
        .unwrap();
    assert_eq!(
        most, 2,
        "forks 2: at most two hosts at once, and two were used"
    );
    let batch_starts: Vec<(usize, bool)> = run
        .events
        .iter()
        .filter_map(|e| match e {
            Event::BatchStarted { batch, canary, .. } => Some((*batch, *canary)),
            _ => None,
        })
        .collect();
    assert_eq!(batch_starts, [(1, true), (2, false), (3, false)]);
}

#[test]
fn a_failure_in_batch_2_halts_before_batch_3_and_lets_batch_2_finish() {
    let fleet = Fleet::start(Spec::new().group("prod", "p", 7, "v4.65.0").canary("p-01"));
    // p-03 fails its second step; p-02 (same batch) is in flight and must complete.
    fleet.fault("p-03", rule("step two", "fail"));
    let run = run_on(
        &fleet,
        STEPS,
        |i| i.overrides.serial = Some("2".parse().unwrap()),
        false,
    );
    assert_eq!(run.report.exit, Exit::HostFailed);
    let o = outcomes(&run);
    assert_eq!(o["p-02"], Outcome::Ok);
    assert_eq!(o["p-03"], Outcome::Failed);
    assert_eq!(run.report.untouched, names("p", 4..=7));
    for host in names("p", 4..=7) {
        assert!(
            fleet.commands(&host).is_empty(),
            "{host} was touched after the halt"
        );
    }
    let p2_steps = fleet
        .commands("p-02")
        .iter()
        .filter(|c| c.kind == "session" && c.ev == "end" && c.rc == Some(0))
        .count();
    assert_eq!(
        p2_steps, 2,
        "the in-flight host of batch 2 ran all its steps"
    );
    assert!(run.events.iter().any(|e| matches!(
        e,
        Event::Halted {
            reason: HaltReason::TooManyFailures {
                failed: 1,
                of: 2,
                ..
            },
            batch: 2
        }
    )));
}

#[test]
fn unreachable_hosts_count_against_max_fail_percentage() {
    let spec = (1..=8).fold(Spec::new(), |s, i| {
        s.host(HostSpec::new(&format!("p-{i:02}"), "prod", "v4.65.0").own_sshd())
    });
    let fleet = Fleet::start(spec);
    fleet.stop_host("p-02"); // batch 1: 1 of 4 = 25%, not above 25%
    fleet.stop_host("p-06"); // batch 2: 2 of 4 = 50% with p-07's failure
    fleet.fault("p-07", rule("step two", "fail"));
    let run = run_on(
        &fleet,
        &format!("{STEPS}rollout:\n  max_fail_percentage: 25\n"),
        |i| i.overrides.serial = Some("4".parse().unwrap()),
        false,
    );
    let o = outcomes(&run);
    assert_eq!(o["p-02"], Outcome::Unreachable);
    assert_eq!(o["p-06"], Outcome::Unreachable);
    assert_eq!(o["p-07"], Outcome::Failed);
    assert_eq!(
        o.len(),
        8,
        "both batches ran: 25% in batch 1 is not above 25%"
    );
    assert!(run.events.iter().any(|e| matches!(
        e,
        Event::Halted {
            reason: HaltReason::TooManyFailures {
                failed: 2,
                of: 4,
                ..
            },
            batch: 2
        }
    )));
    assert_eq!(run.report.exit, Exit::HostFailed);

    // Only unreachable hosts: exit 4.
    let fleet2 =
        Fleet::start(Spec::new().host(HostSpec::new("u-01", "prod", "v4.65.0").own_sshd()));
    fleet2.stop_host("u-01");
    let run = run_on(&fleet2, STEPS, |_| {}, false);
    assert_eq!(run.report.exit, Exit::Unreachable);
}

#[test]
fn halt_immediately_stops_scheduling_inside_a_batch() {
    let fleet = Fleet::start(Spec::new().group("prod", "p", 6, "v4.65.0"));
    fleet.fault("p-01", rule("sleep 0.2", "fail"));
    let run = run_on(&fleet, STEPS, |i| i.overrides.forks = Some(2), true);
    let o = outcomes(&run);
    assert_eq!(o["p-01"], Outcome::Failed);
    assert_eq!(o["p-02"], Outcome::Ok, "the host in flight finished");
    assert_eq!(o.len(), 2);
    assert_eq!(run.report.untouched, names("p", 3..=6));
    for host in names("p", 3..=6) {
        assert!(fleet.commands(&host).is_empty());
    }
    assert!(
        matches!(run.report.halted, Some(HaltReason::HaltImmediately { ref host }) if host == "p-01")
    );
}

#[test]
fn retries_until_and_registered_results() {
    let fleet = Fleet::start(Spec::new().group("prod", "p", 1, "v4.65.0"));
    let playbook = r#"
name: t
hosts: all
steps:
  - name: count
    shell: |
      n=$(cat "$FLEET_HOST_DIR/counter" 2>/dev/null || echo 0); n=$((n + 1))
      echo $n > "$FLEET_HOST_DIR/counter"; echo $n
    register: counter
    retries: 5
    delay: 0
    until: result.stdout == "3"
  - name: use it
    shell: test {{ counter.stdout }} = 3 && test {{ counter.attempts }} = 3
    changed_when: false
  - name: skipped
    shell: 'false'
    when: counter.stdout != "3"
"#;
    let run = run_on(&fleet, playbook, |_| {}, false);
    assert_eq!(run.report.exit, Exit::Success, "{:?}", run.events);
    let finished: Vec<(String, StepStatus, u32)> = run
        .events
        .iter()
        .filter_map(|e| match e {
            Event::StepFinished {
                name,
                status,
                attempts,
                ..
            } => Some((name.clone(), *status, *attempts)),
            _ => None,
        })
        .collect();
    assert_eq!(
        finished,
        [
            ("count".to_string(), StepStatus::Changed, 3),
            ("use it".to_string(), StepStatus::Ok, 1),
            ("skipped".to_string(), StepStatus::Skipped, 0),
        ]
    );
}

#[test]
fn a_step_timeout_fails_the_host_and_leaves_no_process() {
    let fleet = Fleet::start(Spec::new().group("prod", "p", 1, "v4.65.0"));
    let playbook = "name: t\nhosts: all\nsteps:\n  - name: hang\n    shell: sleep 600\n    timeout: 1\n  - name: never\n    shell: 'true'\n";
    let run = run_on(&fleet, playbook, |_| {}, false);
    assert_eq!(run.report.exit, Exit::HostFailed);
    let message = run.events.iter().find_map(|e| match e {
        Event::StepFinished {
            status: StepStatus::Failed,
            message,
            ..
        } => message.clone(),
        _ => None,
    });
    assert!(message.unwrap_or_default().contains("timed out after 1s"));
    std::thread::sleep(Duration::from_millis(300));
    let left = fleet::processes_of_host(&fleet.host_dir("p-01"));
    let cmdlines: Vec<String> = left
        .iter()
        .map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .unwrap_or_default()
                .replace("\0", " ")
        })
        .collect();
    assert!(
        left.is_empty(),
        "the remote sleep was terminated: {cmdlines:?}"
    );
    assert!(
        !fleet
            .commands("p-01")
            .iter()
            .any(|c| c.cmd.contains("true")),
        "no step after the failure"
    );
}

#[test]
fn a_failure_after_the_point_of_no_return_rolls_back() {
    let fleet = Fleet::start(Spec::new().group("prod", "p", 2, "v4.65.0"));
    fleet.fault("p-02", rule("break-here", "fail"));
    let playbook = r#"
name: t
hosts: all
steps:
  - name: before
    shell: echo safe
    register: before
  - name: change
    point_of_no_return: true
    shell: echo break-here
  - name: after
    shell: echo after
    register: after
rollback:
  - name: undo
    shell: echo "undo {{ before.stdout }} {{ after.skipped }}"
"#;
    let run = run_on(
        &fleet,
        playbook,
        |i| i.overrides.serial = Some("1".parse().unwrap()),
        false,
    );
    let o = outcomes(&run);
    assert_eq!(o["p-01"], Outcome::Ok);
    assert_eq!(o["p-02"], Outcome::RolledBack);
    assert_eq!(run.report.exit, Exit::HostFailed);
    let undo = fleet
        .commands("p-02")
        .into_iter()
        .find(|c| c.cmd.contains("undo"))
        .map(|c| c.cmd);
    let undo = undo.unwrap_or_default();
    assert!(undo.contains("undo safe True"), "{undo}");
    let log = PathBuf::from(
        run.events
            .iter()
            .find_map(|e| match e {
                Event::HostFinished { host, log, .. } if host == "p-02" => Some(log.clone()),
                _ => None,
            })
            .unwrap(),
    );
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("rolling back"), "{text}");
}
