//! What the operator reads and what a script checks. The plain view goes through a pipe, so
//! it must read line by line with no escape codes, and a failed step must be summed up by its
//! error; `--output json` must be only events, so that every line parses. The exit code is
//! what a script branches on, so success, failed hosts, only unreachable hosts and invalid
//! input each get their own, and invalid input is refused before any host is contacted.

use std::path::Path;

use serde_json::Value;

use super::fleet::{rule, Fleet, HostSpec, Spec};
use super::{
    fleet_of, fleetup, mask_durations, playbook, run_args, s, sessions, state_dir, strip_timestamp,
    strs, Finished, TWO_STEPS, UPGRADE,
};

// ---------------------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------------------

#[test]
fn plain_output_line_by_line() {
    let fleet = fleet_of(3, true);
    fleet.fault("p-03", disk_full());
    let pb = playbook(&fleet, "two.yml", TWO_STEPS);
    let args = run_args(&fleet, &pb, &["--serial", "2", "--forks", "1"]);
    let out = fleetup(&strs(&args));
    assert_eq!(out.code(), Some(2), "{}", out.context());
    assert!(
        !out.text().contains('\x1b'),
        "no escape codes:\n{}",
        out.text()
    );
    assert!(
        !out.stderr.contains('\x1b'),
        "no escape codes:\n{}",
        out.stderr
    );

    let got = stdout_with_run_masked(&fleet, &out);
    let expected = expected_plain_output(&pb);
    let want: Vec<&str> = expected.lines().collect();
    for (n, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "line {} of\n{}", n + 1, got.join("\n"));
    }
    assert_eq!(got.len(), want.len(), "{}", got.join("\n"));
    // What the host saw: p-03 ran both steps, the second failing.
    let p03: Vec<_> = sessions(&fleet, "p-03")
        .into_iter()
        .filter(|c| c.ev == "end")
        .map(|c| c.rc)
        .collect();
    assert_eq!(p03, [Some(0), Some(3)]);
}

/// The run's stdout with what changes from run to run masked: timestamps and durations,
/// and the run's directory and id (from its one run directory).
fn stdout_with_run_masked(fleet: &Fleet, out: &Finished) -> Vec<String> {
    let runs = state_dir(fleet).join("runs");
    let run_dir = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .expect("a run directory")
        .unwrap()
        .path();
    let run_id = run_dir.file_name().unwrap().to_str().unwrap().to_string();
    out.stdout
        .iter()
        .map(|l| {
            mask_durations(strip_timestamp(l))
                .replace(s(&run_dir), "<RUN_DIR>")
                .replace(&run_id, "<RUN_ID>")
        })
        .collect()
}

/// The whole plain view of [`plain_output_line_by_line`]'s run of `pb`, masked: p-01 and
/// p-02 ok, p-03 failing its second step, the run halted after batch 2.
fn expected_plain_output(pb: &Path) -> String {
    let pb_path = s(pb);
    format!(
        "\
run <RUN_ID>: two steps ({pb_path}) on `production`: 3 hosts in 2 batches, 1 at once; logs in <RUN_DIR>
batch 1/2 (canary): started: p-01
p-01: started (2 steps)
p-01 [1/2] greet: started
p-01 [1/2] greet: changed (rc 0, <T>)
p-01 [2/2] check disk: started
p-01 [2/2] check disk: changed (rc 0, <T>)
p-01: ok (2 steps changed, <T>)
batch 1/2: finished: 1 ok, 0 failed, 0 unreachable
batch 2/2: started: p-02 p-03
p-02: started (2 steps)
p-02 [1/2] greet: started
p-02 [1/2] greet: changed (rc 0, <T>)
p-02 [2/2] check disk: started
p-02 [2/2] check disk: changed (rc 0, <T>)
p-02: ok (2 steps changed, <T>)
p-03: started (2 steps)
p-03 [1/2] greet: started
p-03 [1/2] greet: changed (rc 0, <T>)
p-03 [2/2] check disk: started
p-03 [2/2] check disk: FAILED (rc 3, <T>): disk full
p-03: FAILED at \"check disk\" (1 step changed, <T>): disk full; log: <RUN_DIR>/hosts/p-03.log
batch 2/2: finished: 1 ok, 1 failed, 0 unreachable
HALTED after batch 2: 1 of 2 hosts of the batch failed or was unreachable, over max_fail_percentage 0%
run finished in <T> with exit code 2; 0 hosts never started

RECAP
HOST  OUTCOME  CHANGED  TIME  FAILED STEP
p-01  ok             2  <T>
p-02  ok             2  <T>
p-03  FAILED         1  <T>  check disk: disk full

2 ok, 1 failed in <T> (exit code 2)

halted after batch 2: 1 of 2 hosts of the batch failed or was unreachable, over max_fail_percentage 0%
next: fix the cause on p-03, then resume the run with `fleetup run --resume <RUN_ID>` and the same -i: finished hosts are left alone
logs of every host: <RUN_DIR>"
    )
}

/// The plain view shows a failed step's stderr's last line as its reason when the step has
/// no reason in words (`src/ui/plain.rs`, and its fixture: `FAILED (rc 1, 0.3s): manifest
/// unknown`), but the engine gives every non-zero exit the message `exit code N`, so the
/// line repeats the rc and the error moves to a `stderr:` line below; the recap's FAILED STEP
/// column says `exit code 3` instead of the error.
#[test]
fn a_failed_step_is_summed_up_by_its_stderr_not_its_exit_code_again() {
    let fleet = fleet_of(1, false);
    fleet.fault("p-01", disk_full());
    let pb = playbook(&fleet, "two.yml", TWO_STEPS);
    let out = fleetup(&strs(&run_args(&fleet, &pb, &["--canary", "none"])));
    assert_eq!(out.code(), Some(2), "{}", out.context());
    let lines: Vec<String> = out
        .stdout
        .iter()
        .map(|l| mask_durations(strip_timestamp(l)))
        .collect();
    assert!(
        lines.contains(&"p-01 [2/2] check disk: FAILED (rc 3, <T>): disk full".to_string()),
        "{}",
        lines.join("\n")
    );
    assert!(
        lines.iter().any(
            |l| l == "p-01  FAILED         1  <T>  check disk: disk full"
                || l == "p-01  FAILED         1  <T>  check disk"
        ),
        "{}",
        lines.join("\n")
    );
}

#[test]
fn json_output_is_only_events() {
    let fleet = fleet_of(3, true);
    let pb = playbook(&fleet, "two.yml", TWO_STEPS);
    let args = run_args(&fleet, &pb, &["--output", "json", "--serial", "2"]);
    let out = fleetup(&strs(&args));
    assert_eq!(out.code(), Some(0), "{}", out.context());
    let events: Vec<Value> = out
        .stdout
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{}", out.context()));
            assert!(v["event"].is_string(), "no event key: {l}");
            assert!(v["at_ms"].is_u64(), "no at_ms: {l}");
            v
        })
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"run_started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"run_finished"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "run_started").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "run_finished").count(), 1);
    let last = events.last().unwrap();
    assert_eq!(last["exit_code"], 0);
    assert!(last["duration_ms"].is_u64());
    assert_eq!(last["untouched"], serde_json::json!([]));
    assert_eq!(events[0]["hosts"], 3);
    assert_eq!(events[0]["batches"], 2);
    let steps: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .collect();
    assert_eq!(steps.len(), 6, "2 steps on 3 hosts");
    for s in &steps {
        assert_eq!(s["rc"], 0, "{s}");
        assert!(s["duration_ms"].is_u64(), "{s}");
        assert_eq!(s["status"], "changed", "{s}");
    }
    let finished: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["event"] == "host_finished")
        .map(|e| (e["host"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(finished.len(), 3);
    assert!(finished.iter().all(|(_, o)| *o == "ok"), "{finished:?}");
    // Nothing for people on stdout: no recap, no escape codes.
    assert!(!out.text().contains("RECAP") && !out.text().contains('\x1b'));
}

// ---------------------------------------------------------------------------------------
// Exit codes
// ---------------------------------------------------------------------------------------

#[test]
fn exit_0_when_the_shipped_upgrade_succeeds_everywhere() {
    let fleet = fleet_of(3, true);
    let args = run_args(
        &fleet,
        Path::new(UPGRADE),
        &[
            "-e",
            "sl_version=v4.66.1",
            "-e",
            r#"{"sl_health_timeout": 10}"#,
        ],
    );
    let out = fleetup(&strs(&args));
    assert_eq!(out.code(), Some(0), "{}", out.context());
    assert!(out.text().contains("3 ok"), "{}", out.text());
    for h in fleet.hosts() {
        let st = fleet.state(&h.name);
        assert!(
            st.to_string().contains("v4.66.1"),
            "{} upgraded: {st}",
            h.name
        );
    }
}

#[test]
fn exit_2_when_a_host_fails() {
    let fleet = fleet_of(2, false);
    fleet.fault("p-02", rule("echo disk ok", "fail"));
    let pb = playbook(&fleet, "two.yml", TWO_STEPS);
    let out = fleetup(&strs(&run_args(&fleet, &pb, &["--canary", "none"])));
    assert_eq!(out.code(), Some(2), "{}", out.context());
    assert!(out.text().contains("p-02: FAILED"), "{}", out.text());
}

#[test]
fn exit_4_when_hosts_are_only_unreachable() {
    let fleet = Fleet::start(
        Spec::new()
            .group("production", "p", 3, "v4.65.0")
            .with("p-03", HostSpec::own_sshd),
    );
    fleet.stop_host("p-03");
    let pb = playbook(&fleet, "two.yml", TWO_STEPS);
    let out = fleetup(&strs(&run_args(
        &fleet,
        &pb,
        &["--canary", "none", "--connect-timeout", "3"],
    )));
    assert_eq!(out.code(), Some(4), "{}", out.context());
    let text = out.text();
    assert!(text.contains("p-03: UNREACHABLE"), "{text}");
    assert!(
        text.contains("p-01: ok") && text.contains("p-02: ok"),
        "{text}"
    );
    assert!(fleet.commands("p-03").is_empty());
}

#[test]
fn exit_5_on_invalid_input_and_nothing_is_contacted() {
    let fleet = fleet_of(2, false);
    // The shipped upgrade without its required sl_version.
    let out = fleetup(&strs(&run_args(&fleet, Path::new(UPGRADE), &[])));
    assert_eq!(out.code(), Some(5), "{}", out.context());
    assert!(out.stderr.contains("sl_version"), "{}", out.stderr);
    // A playbook with a misspelt key.
    let pb = playbook(
        &fleet,
        "typo.yml",
        "name: t\nhosts: production\nsteps:\n  - name: a\n    shell: 'true'\n    retires: 3\n",
    );
    let out = fleetup(&strs(&run_args(&fleet, &pb, &[])));
    assert_eq!(out.code(), Some(5), "{}", out.context());
    assert!(out.stderr.contains("retries"), "{}", out.stderr);
    // exec with a pattern that matches nothing.
    let out = fleetup(&[
        "exec",
        "-i",
        s(&fleet.inventory_path()),
        "staging",
        "--known-hosts",
        s(&fleet.known_hosts_path()),
        "--",
        "true",
    ]);
    assert_eq!(out.code(), Some(5), "{}", out.context());
    for h in fleet.hosts() {
        assert!(
            fleet.commands(&h.name).is_empty(),
            "{} was contacted",
            h.name
        );
    }
}

/// The fault that fails [`TWO_STEPS`]' second step: exit code 3, stderr `disk full`.
fn disk_full() -> serde_json::Value {
    serde_json::json!({"match": "echo disk ok", "action": "fail", "rc": 3, "stderr": "disk full", "scope": "session"})
}
