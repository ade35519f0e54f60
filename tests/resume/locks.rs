//! The host lock: two runs at once upgrade every host once, and a stale lock is reported
//! and broken only when the operator says so, because a live run must never be raced.

use super::*;

// --- 4. Two runs at once ----------------------------------------------------------------

#[test]
fn two_runs_at_once_upgrade_every_host_once_and_report_locks() {
    let hosts = names("prod", 1..=5);
    let fleet = Fleet::start(Spec::new().group("production", "prod", 5, OLD));
    for h in &hosts {
        // Each upgrade lasts long enough for the other run to find the host locked.
        fleet.fault(
            h,
            json!({"match": "docker pull", "action": "slow", "seconds": 3, "scope": "shim"}),
        );
    }
    let a = spawn_run(&fleet, Path::new(PLAYBOOK), &ALL_AT_ONCE);
    let b = spawn_run(&fleet, Path::new(PLAYBOOK), &ALL_AT_ONCE);
    let (a, b) = (a.wait(), b.wait());
    let runs = [&a, &b];
    let ids = assert_two_runs_two_journals(&fleet, &a, &b);

    let mut lock_reports = 0;
    for h in &hosts {
        if assert_upgraded_once_by_one_run(&fleet, h, runs, &ids) {
            lock_reports += 1;
        }
    }
    assert!(
        lock_reports >= 1,
        "the runs overlapped, so one reported a locked host:\nA:\n{}\nB:\n{}",
        a.dump(),
        b.dump()
    );
    assert_exit_codes_follow_the_failures(runs);
}

/// The two runs are two runs: each with its own run id and run dir. Returns their ids.
fn assert_two_runs_two_journals(fleet: &Fleet, a: &Finished, b: &Finished) -> [String; 2] {
    let ids = [a.run_id(), b.run_id()];
    assert_ne!(ids[0], ids[1], "two runs, two run ids");
    assert_ne!(a.run_dir(), b.run_dir(), "two runs, two run dirs");
    let dirs = run_dirs(&state_dir(fleet));
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    ids
}

/// Every host upgraded exactly once, by one of the runs, and is at the target; the other
/// run skipped it or reported it locked. Returns whether it was reported locked.
fn assert_upgraded_once_by_one_run(
    fleet: &Fleet,
    h: &str,
    runs: [&Finished; 2],
    ids: &[String; 2],
) -> bool {
    assert_migrated_once(fleet, h);
    assert_healthy_at(fleet, h, TARGET);
    assert_no_lock(fleet, h);
    let outcomes: Vec<String> = runs.iter().map(|r| r.outcome(h)).collect();
    let ok: Vec<usize> = (0..2).filter(|&i| outcomes[i] == "ok").collect();
    assert_eq!(
        ok.len(),
        1,
        "{h}: upgraded by exactly one run: {outcomes:?}"
    );
    let winner = ok[0];
    let other = 1 - winner;
    let loser = runs[other].host_finished(h);
    let reported_locked = match loser["outcome"].as_str().unwrap() {
        // It came after the winner released the host, and found it done.
        "skipped" => false,
        "failed" => {
            assert_lock_names_its_holder(h, loser, runs[winner], &ids[winner]);
            true
        }
        o => panic!("{h}: unexpected outcome {o} in the other run: {loser}"),
    };
    assert_one_audited_upgrade_by(fleet, h, &ids[winner]);
    reported_locked
}

/// The run that found `h` locked failed it at the host lock, and its message names the
/// run holding the lock, with that run's operator and controller.
fn assert_lock_names_its_holder(h: &str, loser: &Value, winner: &Finished, winner_id: &str) {
    assert_eq!(loser["failed_step"], "host lock", "{h}: {loser}");
    let message = loser["message"].as_str().expect("a message");
    assert!(
        message.contains(&format!("locked by run {winner_id}")),
        "{h}: names the run holding the lock ({winner_id}): {message}"
    );
    let holder = run_json(&winner.run_dir());
    for k in ["operator", "controller"] {
        let v = holder[k].as_str().expect(k);
        assert!(
            message.contains(v),
            "{h}: the message names the {k} {v}: {message}"
        );
    }
}

/// The host tells its own story: one audit line of an upgrade, by the winner.
fn assert_one_audited_upgrade_by(fleet: &Fleet, h: &str, winner_id: &str) {
    let lines = audit(fleet, h);
    let upgrades: Vec<_> = lines
        .iter()
        .map(|l| (l, audit_fields(l)))
        .filter(|(_, f)| f["outcome"] == "ok")
        .collect();
    assert_eq!(
        upgrades.len(),
        1,
        "{h}: one audit line of an upgrade: {lines:?}"
    );
    assert_eq!(upgrades[0].1["run"], winner_id, "{h}: {lines:?}");
    assert_eq!(upgrades[0].1["from"], OLD, "{h}: {lines:?}");
    assert_eq!(upgrades[0].1["to"], TARGET, "{h}: {lines:?}");
}

/// A run that lost a host to the lock exits 2 (a host failed); a run that only skipped
/// hosts exits 0.
fn assert_exit_codes_follow_the_failures(runs: [&Finished; 2]) {
    for r in runs {
        let failures: Vec<_> = r
            .of("host_finished")
            .into_iter()
            .filter(|e| e["outcome"] != "ok" && e["outcome"] != "skipped")
            .collect();
        assert_eq!(
            r.code,
            if failures.is_empty() { 0 } else { 2 },
            "{}",
            r.stderr
        );
    }
}

// --- 5. Stale and live locks ------------------------------------------------------------

#[test]
fn stale_lock_is_reported_and_broken_only_with_the_flag() {
    let fleet = Fleet::start(Spec::new().group("production", "prod", 4, OLD));
    let planted = plant_three_locks(&fleet);
    assert_locked_hosts_are_not_run(&fleet, &planted);
    assert_break_lock_takes_over_only_stale_locks(&fleet, &planted);
}

/// The owner of `host`'s lock, as the lock holds it.
fn owner_json(fleet: &Fleet, host: &str) -> String {
    std::fs::read_to_string(lock_dir(fleet, host).join("owner.json"))
        .unwrap_or_else(|e| panic!("{host}: the lock is still there: {e}"))
}

/// Plants three locks: prod-01's by a dead process of this machine (stale), prod-02's by
/// another machine now (live), prod-03's by another machine 7 hours ago (the playbook's
/// `stale_after` is 6h: stale). Returns each lock's owner as planted.
fn plant_three_locks(fleet: &Fleet) -> Vec<String> {
    let me = hostname();
    let now_s = now() as u64;
    let owners = [
        (
            "prod-01",
            json!({"run_id": "20250101T000000-001", "operator": "alice",
            "controller": me, "pid": dead_pid(), "started": now_s}),
        ),
        (
            "prod-02",
            json!({"run_id": "20250101T000000-002", "operator": "bob",
            "controller": "other-machine", "pid": 4242, "started": now_s}),
        ),
        (
            "prod-03",
            json!({"run_id": "20250101T000000-003", "operator": "carol",
            "controller": "other-machine", "pid": 4343, "started": now_s - 7 * 3600}),
        ),
    ];
    for (h, owner) in &owners {
        plant_lock(fleet, h, owner);
    }
    owners.iter().map(|(h, _)| owner_json(fleet, h)).collect()
}

/// Without `--break-lock` (and with `--state-dir`): the locked hosts are not run, their
/// locks are left as they were, the fourth host is upgraded.
fn assert_locked_hosts_are_not_run(fleet: &Fleet, planted: &[String]) {
    let state = fleet.tmp().join("state");
    let state_arg = s(&state);
    let mut args: Vec<&str> = ALL_AT_ONCE.to_vec();
    args.extend(["--state-dir", state_arg.as_str()]);
    let first = run(fleet, &args);
    first.assert_exit(2);
    assert!(
        first.run_dir().starts_with(state.join("runs")),
        "--state-dir holds the run: {}",
        first.run_dir().display()
    );
    assert!(first.run_dir().join("events.jsonl").is_file());
    assert!(!state_dir(fleet).join("runs").exists() || run_dirs(&state_dir(fleet)).is_empty());
    assert_eq!(
        history_of(fleet, &first.run_id(), &["--state-dir", &state_arg])["ended"],
        "halted"
    );
    for (h, words) in [
        ("prod-01", vec!["stale lock", "--break-lock"]),
        (
            "prod-02",
            vec!["locked by run 20250101T000000-002", "bob", "other-machine"],
        ),
        ("prod-03", vec!["stale lock", "--break-lock"]),
    ] {
        let f = first.host_finished(h);
        assert_eq!(f["outcome"], "failed", "{h}: {f}");
        assert_eq!(f["failed_step"], "host lock", "{h}: {f}");
        let message = f["message"].as_str().expect("a message");
        for w in words {
            assert!(
                message.contains(w),
                "{h}: the message says `{w}`: {message}"
            );
        }
        // Not run: nothing but the lock attempt, no pre-flight command, no change.
        let log = first.rollout_log(fleet, h);
        let shims: Vec<_> = log.iter().filter(|c| c.kind != "session").collect();
        assert!(
            shims.is_empty(),
            "{h}: no command but the lock attempt: {:?}",
            cmds(&log)
        );
        assert!(state_changing(&fleet.commands(h)).is_empty());
        assert_healthy_at(fleet, h, OLD);
    }
    for (i, h) in ["prod-01", "prod-02", "prod-03"].iter().enumerate() {
        assert_eq!(
            owner_json(fleet, h),
            planted[i],
            "{h}: the lock was left as it was"
        );
    }
    assert_eq!(first.outcome("prod-04"), "ok", "{}", first.dump());
    assert_upgraded(fleet, "prod-04", &fleet.commands("prod-04"));
    assert_no_lock(fleet, "prod-04");
}

/// With `--break-lock`: the stale locks are taken over, the live one is not.
fn assert_break_lock_takes_over_only_stale_locks(fleet: &Fleet, planted: &[String]) {
    let mut args: Vec<&str> = ALL_AT_ONCE.to_vec();
    args.push("--break-lock");
    let second = run(fleet, &args);
    second.assert_exit(2);
    for h in ["prod-01", "prod-03"] {
        assert_eq!(second.outcome(h), "ok", "{h}: {}", second.dump());
        assert_upgraded(fleet, h, &fleet.commands(h));
        assert_no_lock(fleet, h);
        let lines = audit(fleet, h);
        assert!(
            lines.iter().any(|l| {
                let f = audit_fields(l);
                f["run"] == second.run_id() && f["outcome"] == "ok"
            }),
            "{h}: audit line of the upgrade: {lines:?}"
        );
    }
    let live = second.host_finished("prod-02");
    assert_eq!(live["outcome"], "failed", "{live}");
    assert_eq!(live["failed_step"], "host lock", "{live}");
    let message = live["message"].as_str().expect("a message");
    assert!(
        message.contains("locked by run 20250101T000000-002"),
        "a live lock is never broken: {message}"
    );
    assert_eq!(
        owner_json(fleet, "prod-02"),
        planted[1],
        "the live lock is untouched"
    );
    assert!(state_changing(&fleet.commands("prod-02")).is_empty());
    assert_healthy_at(fleet, "prod-02", OLD);
    assert_eq!(second.outcome("prod-04"), "skipped", "{}", second.dump());
    assert_eq!(migrations(fleet, "prod-04"), 1);
    assert_no_lock(fleet, "prod-04");
}
