//! The engine's decisions against a scripted fleet, in milliseconds, without sshd: halts,
//! rollbacks, reconnections, pauses and the three Ctrl-Cs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::scripted::{Reply, Scripted};
use super::{
    execute, preflight, Control, Emitter, Job, JobOptions, JobReport, PreflightResult, Prompt,
    Reconnect,
};
use crate::events::{Event, HaltReason, Outcome};
use crate::exit::Exit;
use crate::journal::RunDir;
use crate::plan::{Batch, Plan};
use crate::play::HostInPlay;
use crate::playbook::Playbook;
use crate::schedule::Schedule;

/// Three steps, the third past the point of no return, and a rollback.
const UPGRADE: &str = "\
name: t
hosts: all
steps:
  - name: check
    shell: check
  - name: stop
    shell: stop
    point_of_no_return: true
  - name: migrate
    shell: migrate
rollback:
  - name: restore
    shell: restore
";

pub(super) struct Ran {
    pub report: JobReport,
    pub events: Vec<Event>,
    /// The fleet-wide pre-flight's results, when it ran first.
    pub preflight: Vec<PreflightResult>,
    /// The run dir, kept until the test's end: the hosts' logs are in it.
    pub run_dir: RunDir,
    _state: tempfile::TempDir,
}

impl Ran {
    /// What `host`'s log on the controller says.
    pub(super) fn host_log(&self, host: &str) -> String {
        std::fs::read_to_string(self.run_dir.host_log_path(host)).unwrap_or_default()
    }

    pub(super) fn outcome(&self, host: &str) -> Option<Outcome> {
        let found = self.report.outcomes.iter().find(|(h, _)| h == host);
        found.map(|(_, o)| *o)
    }

    /// The message the host finished with.
    fn message(&self, host: &str) -> String {
        self.events
            .iter()
            .find_map(|e| match e {
                Event::HostFinished {
                    host: h, message, ..
                } if h == host => message.clone(),
                _ => None,
            })
            .unwrap_or_default()
    }

    fn reconnections(&self, host: &str) -> usize {
        let of_host = |e: &&Event| matches!(e, Event::Reconnecting { host: h, .. } if h == host);
        self.events.iter().filter(of_host).count()
    }
}

/// Batches of hosts; the first is the canary when `canary`.
pub(super) fn plan(batches: &[&[&str]], canary: bool) -> Plan {
    let batches = batches.iter().enumerate().map(|(i, hosts)| Batch {
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        canary: canary && i == 0,
        staged: false,
    });
    Plan {
        batches: batches.collect(),
        seed: None,
    }
}

/// How a test drives the run from outside: the options, and what the operator does.
pub(super) struct Operator {
    pub options: JobOptions,
    pub forks: usize,
    pub control: Control,
    /// Ctrl-Cs pressed after these delays, in order: stop, abort, abandon.
    pub presses: Vec<Duration>,
}

impl Default for Operator {
    fn default() -> Self {
        Operator {
            options: JobOptions {
                reconnect: Reconnect {
                    attempts: 3,
                    delay: Duration::from_millis(1),
                },
                ..JobOptions::default()
            },
            forks: 5,
            control: Control::default(),
            presses: vec![],
        }
    }
}

fn run(fleet: &Scripted, playbook: &str, plan: &Plan, operator: Operator) -> Ran {
    run_turns(fleet, playbook, plan, operator, None)
}

/// As `run`, after the fleet-wide pre-flight when `between` is given: it is called once
/// the pre-flight has ended, while every host waits for its turn.
pub(super) fn run_turns(
    fleet: &Scripted,
    playbook: &str,
    plan: &Plan,
    operator: Operator,
    between: Option<&dyn Fn()>,
) -> Ran {
    let playbook = Playbook::parse(Path::new("t.yml"), playbook).expect("the test's playbook");
    let hosts: Vec<HostInPlay> = plan
        .batches
        .iter()
        .flat_map(|b| &b.hosts)
        .map(|name| HostInPlay {
            name: name.clone(),
            vars: Default::default(),
        })
        .collect();
    let schedule = Schedule::default();
    let job = Job {
        playbook: &playbook,
        pattern: "all",
        limit: None,
        hosts: &hosts,
        plan,
        schedule: &schedule,
        forks: operator.forks,
        max_fail_percentage: 0.0,
        capture_output: false,
    };
    let state = tempfile::tempdir().expect("a temporary directory");
    let run_dir = RunDir::create(state.path()).expect("a run directory");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let events = Emitter::new(tx);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let control = &operator.control;
    let presses = async {
        let tokens = [&control.stop, &control.abort, &control.abandon];
        for (after, token) in operator.presses.iter().zip(tokens) {
            // Presses with no time between them land together, before the engine looks.
            if !after.is_zero() {
                tokio::time::sleep(*after).await;
            }
            token.cancel();
        }
    };
    let checked = match between {
        Some(between) => {
            let checked = preflight(&job, fleet, &run_dir, &operator.options, control);
            let checked = runtime.block_on(checked);
            between();
            checked
        }
        None => vec![],
    };
    let execute = execute(&job, fleet, &run_dir, &operator.options, control, &events);
    let (report, ()) = runtime.block_on(async { tokio::join!(execute, presses) });
    drop(events);
    let mut seen = Vec::new();
    while let Ok(stamped) = rx.try_recv() {
        seen.push(stamped.event);
    }
    Ran {
        report,
        events: seen,
        preflight: checked,
        run_dir,
        _state: state,
    }
}

/// The upgrade on one host `a`, as the operator starts it by default.
fn upgrade_a(fleet: &Scripted) -> Ran {
    run(fleet, UPGRADE, &plan(&[&["a"]], false), Operator::default())
}

#[test]
fn a_failed_canary_halts_the_run_before_the_next_batch() {
    let fleet = Scripted::default().on("c", "migrate", Reply::Exit(1, ""));
    let ran = run(
        &fleet,
        UPGRADE,
        &plan(&[&["c"], &["a", "b"]], true),
        Operator::default(),
    );
    assert_eq!(
        ran.report.halted,
        Some(HaltReason::CanaryFailed { failed: 1 })
    );
    assert_eq!(ran.report.untouched, ["a", "b"]);
    assert_eq!(ran.report.exit, Exit::HostFailed);
    assert_eq!(
        fleet.connections("a"),
        0,
        "no host of the next batch is contacted"
    );
}

#[test]
fn a_failure_past_the_point_of_no_return_rolls_the_host_back_on_its_connection() {
    let fleet = Scripted::default().on("a", "migrate", Reply::Exit(1, ""));
    let ran = upgrade_a(&fleet);
    assert_eq!(ran.outcome("a"), Some(Outcome::RolledBack));
    assert_eq!(fleet.ran("a"), ["check", "stop", "migrate", "restore"]);
    assert_eq!(fleet.connections("a"), 1);
    assert_eq!(ran.report.exit, Exit::HostFailed);
}

#[test]
fn a_failure_before_the_point_of_no_return_is_not_rolled_back() {
    let fleet = Scripted::default().on("a", "check", Reply::Exit(3, ""));
    let ran = upgrade_a(&fleet);
    assert_eq!(ran.outcome("a"), Some(Outcome::Failed));
    assert_eq!(fleet.ran("a"), ["check"]);
}

#[test]
fn a_rollback_that_fails_says_so() {
    let fleet = Scripted::default()
        .on("a", "migrate", Reply::Exit(1, ""))
        .on("a", "restore", Reply::Exit(1, ""));
    let ran = upgrade_a(&fleet);
    assert_eq!(ran.outcome("a"), Some(Outcome::RollbackFailed));
}

#[test]
fn a_connection_lost_past_the_point_of_no_return_is_opened_again_to_roll_back() {
    let fleet = Scripted::default().on("a", "migrate", Reply::Lose);
    let ran = upgrade_a(&fleet);
    assert_eq!(ran.outcome("a"), Some(Outcome::RolledBack));
    assert_eq!(fleet.connections("a"), 2);
    assert_eq!(ran.reconnections("a"), 1);
    assert_eq!(fleet.ran("a").last().map(String::as_str), Some("restore"));
    assert!(
        ran.message("a").contains("reconnected and rolled back"),
        "{}",
        ran.message("a")
    );
}

#[test]
fn a_host_that_stays_down_after_the_point_of_no_return_is_named_unreachable_mid_upgrade() {
    let fleet = Scripted::default()
        .on("a", "migrate", Reply::Lose)
        .stays_down("a");
    let ran = upgrade_a(&fleet);
    assert_eq!(ran.outcome("a"), Some(Outcome::UnreachableMidUpgrade));
    assert_eq!(ran.reconnections("a"), 3, "every attempt is announced");
    assert_eq!(fleet.connections("a"), 4);
    assert!(
        ran.message("a").contains("may be down"),
        "{}",
        ran.message("a")
    );
}

#[test]
fn a_connection_lost_before_the_point_of_no_return_leaves_the_host_unreachable() {
    let fleet = Scripted::default().on("a", "check", Reply::Lose);
    let ran = upgrade_a(&fleet);
    assert_eq!(ran.outcome("a"), Some(Outcome::Unreachable));
    assert_eq!(
        fleet.connections("a"),
        1,
        "nothing changed: no reconnection"
    );
}

#[test]
fn an_unreachable_host_fails_its_batch_and_exits_4_alone() {
    let fleet = Scripted::default().unreachable("b");
    let mut operator = Operator::default();
    operator.options.halt_immediately = false;
    let ran = run(&fleet, UPGRADE, &plan(&[&["a", "b"]], false), operator);
    assert_eq!(ran.outcome("b"), Some(Outcome::Unreachable));
    assert_eq!(ran.outcome("a"), Some(Outcome::Ok));
    assert_eq!(ran.report.exit, Exit::Unreachable);
}

#[test]
fn halt_immediately_starts_no_more_hosts_once_one_failed() {
    let fleet = Scripted::default().on("a", "check", Reply::Exit(1, ""));
    let mut operator = Operator {
        forks: 1,
        ..Operator::default()
    };
    operator.options.halt_immediately = true;
    let ran = run(&fleet, UPGRADE, &plan(&[&["a", "b", "c"]], false), operator);
    let halt = HaltReason::HaltImmediately { host: "a".into() };
    assert_eq!(ran.report.halted, Some(halt));
    assert!(ran.report.untouched.contains(&"c".to_string()));
    assert!(ran
        .events
        .iter()
        .any(|e| matches!(e, Event::Stopping { .. })));
}

#[test]
fn a_pause_verifies_the_upgraded_hosts_and_halts_when_one_went_bad() {
    let playbook = format!(
        "{UPGRADE}rollout:\n  pause_between_batches: 20ms\nverify:\n  - name: still up\n    shell: verify\n"
    );
    let fleet = Scripted::default().on("a", "verify", Reply::Exit(1, ""));
    let ran = run(
        &fleet,
        &playbook,
        &plan(&[&["a"], &["b"]], false),
        Operator::default(),
    );
    let halt = HaltReason::VerifyFailed {
        hosts: vec!["a".into()],
    };
    assert_eq!(ran.report.halted, Some(halt));
    assert_eq!(ran.report.untouched, ["b"]);
    assert_eq!(
        ran.report.exit,
        Exit::HostFailed,
        "a host went bad after it ended ok"
    );
}

#[test]
fn a_prompt_answered_no_stops_the_run_at_the_pause() {
    let playbook = format!("{UPGRADE}rollout:\n  pause_after_canary: prompt\n");
    let mut operator = Operator::default();
    operator.options.prompt = Some(Prompt(Arc::new(|_| Box::pin(async { false }))));
    let ran = run(
        &Scripted::default(),
        &playbook,
        &plan(&[&["c"], &["a"]], true),
        operator,
    );
    assert_eq!(ran.report.halted, Some(HaltReason::StoppedAtPause));
    assert_eq!(ran.report.exit, Exit::Interrupted);
    assert_eq!(ran.report.untouched, ["a"]);
}

#[test]
fn a_prompt_nobody_can_answer_stops_the_run_rather_than_going_on_unseen() {
    let playbook = format!("{UPGRADE}rollout:\n  pause_after_canary: prompt\n");
    let ran = run(
        &Scripted::default(),
        &playbook,
        &plan(&[&["c"], &["a"]], true),
        Operator::default(),
    );
    assert_eq!(ran.report.halted, Some(HaltReason::StoppedAtPause));
    assert_eq!(ran.outcome("a"), None);
}

#[test]
fn a_first_ctrl_c_lets_hosts_in_flight_finish_and_starts_no_more() {
    let fleet = Scripted::default().on("c", "migrate", Reply::After(Duration::from_millis(100)));
    let operator = Operator {
        presses: vec![Duration::from_millis(20)],
        ..Operator::default()
    };
    let ran = run(&fleet, UPGRADE, &plan(&[&["c"], &["a"]], true), operator);
    assert_eq!(
        ran.outcome("c"),
        Some(Outcome::Ok),
        "the canary finished its steps"
    );
    assert_eq!(ran.report.halted, Some(HaltReason::Interrupted));
    assert_eq!(ran.report.untouched, ["a"]);
    assert_eq!(ran.report.exit, Exit::Interrupted);
}

#[test]
fn a_second_ctrl_c_ends_the_upgrade_command_and_rolls_the_host_back() {
    let fleet = Scripted::default().on("a", "migrate", Reply::Hang);
    let operator = Operator {
        presses: vec![Duration::from_millis(20), Duration::from_millis(20)],
        ..Operator::default()
    };
    let ran = run(&fleet, UPGRADE, &plan(&[&["a"]], false), operator);
    assert_eq!(ran.outcome("a"), Some(Outcome::RolledBack));
    assert_eq!(fleet.ran("a").last().map(String::as_str), Some("restore"));
    assert_eq!(ran.report.exit, Exit::Interrupted);
}

#[test]
fn a_third_ctrl_c_ends_the_rollback_and_names_the_host_down() {
    let fleet = Scripted::default()
        .on("a", "migrate", Reply::Hang)
        .on("a", "restore", Reply::Hang);
    let ms = Duration::from_millis;
    let operator = Operator {
        presses: vec![ms(20), ms(20), ms(50)],
        ..Operator::default()
    };
    let ran = run(&fleet, UPGRADE, &plan(&[&["a"]], false), operator);
    assert_eq!(ran.outcome("a"), Some(Outcome::Abandoned));
    let message = ran.message("a");
    assert!(message.starts_with("DOWN, NOT ROLLED BACK"), "{message}");
    assert!(message.contains("rollback step `restore`"), "{message}");
    assert!(message.contains("fleetup run --resume"), "{message}");
}

#[test]
fn all_three_ctrl_cs_at_once_leave_the_host_where_its_step_was_ended() {
    let fleet = Scripted::default().on("a", "migrate", Reply::Hang);
    let operator = Operator {
        presses: vec![Duration::from_millis(20), Duration::ZERO, Duration::ZERO],
        ..Operator::default()
    };
    let ran = run(&fleet, UPGRADE, &plan(&[&["a"]], false), operator);
    assert_eq!(ran.outcome("a"), Some(Outcome::Abandoned));
    assert!(ran.message("a").contains("abandoned in step `migrate`"));
    assert!(
        !fleet.ran("a").contains(&"restore".to_string()),
        "no rollback was started"
    );
}

#[test]
fn a_step_skipped_by_its_condition_leaves_a_host_with_nothing_to_do_skipped() {
    let playbook = "name: t\nhosts: all\nsteps:\n  - name: only if needed\n    shell: upgrade\n    when: false\n";
    let fleet = Scripted::default();
    let ran = run(
        &fleet,
        playbook,
        &plan(&[&["a"]], false),
        Operator::default(),
    );
    assert_eq!(ran.outcome("a"), Some(Outcome::Skipped));
    assert!(fleet.ran("a").is_empty());
}
