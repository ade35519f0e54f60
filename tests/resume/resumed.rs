//! `--resume` of a halted run finishes the fleet once the fault is gone, and refuses a
//! playbook changed since unless forced, because resuming must not mix two procedures.

use super::*;

// --- 2. --resume after a halt, the fault removed ----------------------------------------

#[test]
fn resume_after_halt_with_the_fault_removed_finishes_the_fleet() {
    let fleet = seven_hosts();
    fleet.fault("prod-03", pull_fails());

    let first = run(&fleet, &SERIAL3);
    assert_halted_in_batch_2_with_batch_3_untouched(&fleet, &first);
    let (id, run_dir) = assert_halted_run_journaled(&fleet, &first);

    fleet.clear_faults("prod-03");
    let resumed_at = now();
    // `-e` may be given again (the same values).
    let second = resume(&fleet, "last", &VARS);
    assert_resumed_from_batch_2(&second, &id, &run_dir);
    assert_only_unfinished_hosts_upgraded_since(&fleet, resumed_at);
    assert_one_journal_for_both_attempts(&fleet, &first, &second, &id, run_dir);
}

/// prod-03's pull fault fails it in batch 2, which halts the run before batch 3 does
/// anything to its hosts.
fn assert_halted_in_batch_2_with_batch_3_untouched(fleet: &Fleet, first: &Finished) {
    first.assert_exit(2);
    for h in ["prod-01", "prod-02", "prod-04"] {
        assert_eq!(first.outcome(h), "ok", "{h}: {}", first.dump());
    }
    let failed = first.host_finished("prod-03");
    assert_eq!(failed["outcome"], "failed", "{}", first.dump());
    assert_eq!(failed["failed_step"], "pull the new image");
    let halted = first.of("halted");
    assert_eq!(halted.len(), 1, "halted:\n{}", first.dump());
    assert_eq!(halted[0]["batch"], 2);
    assert_eq!(first.untouched(), ["prod-05", "prod-06", "prod-07"]);
    for h in ["prod-05", "prod-06", "prod-07"] {
        let log = first.rollout_log(fleet, h);
        assert!(log.is_empty(), "{h}: batch 3 untouched: {:?}", cmds(&log));
        let changed = state_changing(&fleet.commands(h));
        assert!(changed.is_empty(), "{h}: batch 3 unchanged: {changed:?}");
    }
}

/// The halted run left its journal, exactly what it printed, in a run dir under the
/// default state dir, and `history` records it as halted. Returns its id and run dir,
/// which the resumed run must reuse.
fn assert_halted_run_journaled(fleet: &Fleet, first: &Finished) -> (String, PathBuf) {
    let id = first.run_id();
    let run_dir = first.run_dir();
    assert!(
        run_dir.starts_with(state_dir(fleet).join("runs")),
        "the run dir {} is under the default state dir",
        run_dir.display()
    );
    // The journal is exactly what the run printed.
    let (events, partial) = journal(&run_dir);
    assert_eq!(partial, None, "a finished run leaves no partial line");
    assert_eq!(
        events, first.events,
        "events.jsonl = the JSON events printed"
    );
    assert_eq!(history_of(fleet, &id, &[])["ended"], "halted");
    (id, run_dir)
}

/// The resumed run is the same run (id, run dir), its second attempt: it keeps the
/// hosts already finished, retries prod-03, and runs batches 2 and 3 to the end.
fn assert_resumed_from_batch_2(second: &Finished, id: &str, run_dir: &Path) {
    second.assert_exit(0);
    assert_eq!(second.run_id(), id);
    assert_eq!(second.run_dir(), run_dir);
    let r = second.run_resumed();
    assert_eq!(r["attempt"], 2, "{r}");
    assert_eq!(
        host_set(&r["finished"]),
        set(&["prod-01", "prod-02", "prod-04"]),
        "{r}"
    );
    assert!(host_set(&r["retry"]).contains("prod-03"), "{r}");
    for h in ["prod-01", "prod-02", "prod-04"] {
        assert!(!host_set(&r["retry"]).contains(h), "{r}");
    }
    assert_eq!(r["interrupted"], json!([]), "{r}");
    assert_eq!(
        second.started_hosts(),
        set(&["prod-03", "prod-05", "prod-06", "prod-07"]),
        "{}",
        second.dump()
    );
    assert_eq!(second.batches_started(), [2, 3], "{}", second.dump());
    for h in ["prod-03", "prod-05", "prod-06", "prod-07"] {
        assert_eq!(second.outcome(h), "ok", "{h}: {}", second.dump());
    }
    assert!(second.untouched().is_empty());
}

/// On the hosts: the resumed run left the finished hosts alone, upgraded prod-03, and
/// only then batch 3; every host migrated once and holds no lock.
fn assert_only_unfinished_hosts_upgraded_since(fleet: &Fleet, resumed_at: f64) {
    for h in ["prod-01", "prod-02", "prod-04"] {
        assert_not_touched_since(fleet, h, resumed_at, "by the resumed run (it had finished)");
        assert_upgraded(fleet, h, &fleet.commands(h));
    }
    let p3 = since(fleet, "prod-03", resumed_at);
    assert!(
        !state_changing(&p3).is_empty(),
        "prod-03 was upgraded by the resumed run"
    );
    assert_healthy_at(fleet, "prod-03", TARGET);
    let p3_up = shim(&p3, "end", UP_EMAIL).t;
    for h in ["prod-05", "prod-06", "prod-07"] {
        assert_upgraded(fleet, h, &fleet.commands(h));
        let pull = shim(&fleet.commands(h), "start", "docker pull").t;
        assert!(p3_up < pull, "{h} pulled before batch 2 (prod-03) ended");
    }
    for i in 1..=7 {
        let h = format!("prod-{i:02}");
        assert_migrated_once(fleet, &h);
        assert_no_lock(fleet, &h);
    }
}

/// One journal for both attempts: the first run's events, then the resumed run's, in the
/// one run dir, and `history` records the run as completed.
fn assert_one_journal_for_both_attempts(
    fleet: &Fleet,
    first: &Finished,
    second: &Finished,
    id: &str,
    run_dir: PathBuf,
) {
    let (events, partial) = journal(&run_dir);
    assert_eq!(partial, None);
    let expected: Vec<Value> = first.events.iter().chain(&second.events).cloned().collect();
    assert_eq!(
        events, expected,
        "events.jsonl = both attempts' events, in order"
    );
    assert_eq!(run_dirs(&state_dir(fleet)), [run_dir], "one run dir");
    assert_eq!(history_of(fleet, id, &[])["ended"], "completed");
}

// --- 3. A changed playbook is not resumed unless forced ---------------------------------

#[test]
fn resume_refuses_a_changed_playbook_unless_forced() {
    let fleet = Fleet::start(
        Spec::new()
            .group("production", "prod", 3, OLD)
            .canary("prod-01"),
    );
    let copy = fleet.tmp().join("upgrade.yml");
    std::fs::copy(Path::new(REPO).join(PLAYBOOK), &copy).expect("copy the playbook");
    // The playbook reads its settings from simplelogin-facts.yml beside it (`vars_files:`).
    let facts = Path::new(REPO)
        .join(PLAYBOOK)
        .with_file_name("simplelogin-facts.yml");
    std::fs::copy(&facts, fleet.tmp().join("simplelogin-facts.yml")).expect("copy the vars file");
    fleet.fault("prod-01", pull_fails());

    let first = spawn_run(&fleet, &copy, &[]).wait();
    first.assert_exit(2);
    assert_eq!(first.outcome("prod-01"), "failed", "{}", first.dump());
    assert_eq!(first.untouched(), ["prod-02", "prod-03"]);
    let id = first.run_id();
    let rj = run_json(&first.run_dir());
    assert!(
        rj.to_string().contains("upgrade.yml"),
        "run.json names the playbook: {rj:#}"
    );

    // Rollout flags do not go with --resume (the plan is the journal's).
    let before = log_lengths(&fleet);
    let r = resume(&fleet, "last", &["--serial", "1"]);
    assert_eq!(r.code, 5, "--resume with --serial; stderr:\n{}", r.stderr);
    assert_nothing_run_since(&fleet, &before, "--resume with --serial");

    // The playbook changed since the run started: refused, nothing contacted.
    let mut text = std::fs::read_to_string(&copy).unwrap();
    text.push_str("# edited after the run started\n");
    std::fs::write(&copy, text).unwrap();
    fleet.clear_faults("prod-01");
    let before = log_lengths(&fleet);
    assert_resume_refused(
        &fleet,
        &before,
        "changed",
        "a refused resume (playbook changed)",
    );
    for h in ["prod-01", "prod-02", "prod-03"] {
        assert_healthy_at(&fleet, h, OLD);
    }

    // --force: resumed anyway, to the end.
    let forced = resume(&fleet, &id, &["--force"]);
    forced.assert_exit(0);
    assert_eq!(forced.run_id(), id);
    let r = forced.run_resumed();
    assert!(host_set(&r["retry"]).contains("prod-01"), "{r}");
    assert_eq!(host_set(&r["finished"]), set(&[]), "{r}");
    for h in ["prod-01", "prod-02", "prod-03"] {
        assert_eq!(forced.outcome(h), "ok", "{h}: {}", forced.dump());
        assert_healthy_at(&fleet, h, TARGET);
        assert_migrated_once(&fleet, h);
        assert_no_lock(&fleet, h);
    }
}
