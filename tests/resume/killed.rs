//! A run killed with SIGKILL, before or after the point of no return, and resumed: the
//! journal on disk is all the new process has, so it must be enough to finish every host
//! without touching a finished one again or losing the first backup.

use super::*;

// --- 1. kill -9 in the middle of batch 2, then --resume ----------------------------------

#[test]
fn kill_9_mid_batch_2_then_resume_finishes_without_touching_finished_hosts() {
    let fleet = seven_hosts();
    // prod-03's pull takes long enough for prod-02 and prod-04 to finish and for fleetup to
    // be killed while prod-03 is in it.
    fleet.fault(
        "prod-03",
        json!({"match": "docker pull", "action": "slow", "seconds": 20, "scope": "shim", "times": 1}),
    );
    let mut running = spawn_run(&fleet, Path::new(PLAYBOOK), &SERIAL3);

    let run_dir = wait_for_prod03_in_its_pull(&fleet, &mut running);
    // Let the finished hosts' last commands (the lock's release) end.
    std::thread::sleep(Duration::from_millis(300));

    assert_a_live_run_is_not_resumed(&fleet);

    // kill -9.
    let pid = running.child.id();
    running.child.kill().expect("SIGKILL fleetup");
    let status = running.child.wait().expect("reap fleetup");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let killed_at = now();

    let id = assert_the_journal_says_where_prod03_was(&fleet, &run_dir);
    assert_run_json_records_the_run(&run_dir, pid);

    // `history` knows the run was killed: no run_finished, and its process is gone.
    let h = history_of(&fleet, &id, &[]);
    assert_eq!(h["ended"], "killed", "history: {h}");

    // Resume.
    let pre_resume: Vec<Vec<CommandRecord>> = (1..=7)
        .map(|i| fleet.commands(&format!("prod-{i:02}")))
        .collect();
    let resumed = resume(&fleet, "last", &[]);
    resumed.assert_exit(0);
    assert_eq!(resumed.run_id(), id, "the same run id:\n{}", resumed.dump());
    assert_eq!(resumed.run_dir(), run_dir, "the same run dir");
    assert_only_prod03_and_batch_3_ran(&resumed, &id);

    assert_the_hosts_logs_after_the_resume(&fleet, killed_at, &pre_resume);

    // The journal goes on in the same file: the resumed run's events are appended.
    let all = journal_lenient(&run_dir);
    assert!(all.len() >= resumed.events.len());
    assert_eq!(
        all[all.len() - resumed.events.len()..],
        resumed.events[..],
        "events.jsonl ends with exactly what the resumed run printed"
    );
    assert_eq!(history_of(&fleet, &id, &[])["ended"], "completed");
}

/// Watches the journal until prod-03 is in its pull and prod-02, prod-04 have finished;
/// returns the run's directory.
fn wait_for_prod03_in_its_pull(fleet: &Fleet, running: &mut Running) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = running.child.try_wait().expect("try_wait") {
            panic!(
                "fleetup ended ({status}) before it could be killed; stderr:\n{}",
                running.stderr_now()
            );
        }
        let dirs = run_dirs(&state_dir(fleet));
        assert!(dirs.len() <= 1, "one run, one run dir: {dirs:?}");
        if let Some(dir) = dirs.first() {
            if dir.join("events.jsonl").exists() {
                let (events, _) = journal(dir);
                let pulling = events.iter().any(|e| {
                    e["event"] == "step_started"
                        && e["host"] == "prod-03"
                        && e["name"] == "pull the new image"
                });
                let done = |h: &str| {
                    events
                        .iter()
                        .any(|e| e["event"] == "host_finished" && e["host"] == h)
                };
                if pulling && done("prod-02") && done("prod-04") {
                    return dir.clone();
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "prod-03 never reached its pull with prod-02 and prod-04 finished; journal: {:?}",
            run_dirs(&state_dir(fleet))
                .first()
                .map(|d| std::fs::read_to_string(d.join("events.jsonl")))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// While the run's process lives, it cannot be resumed; nothing is contacted.
fn assert_a_live_run_is_not_resumed(fleet: &Fleet) {
    // prod-03 is still in its pull, for the run that lives.
    let before: Vec<_> = log_lengths(fleet)
        .into_iter()
        .filter(|(h, _)| h != "prod-03")
        .collect();
    assert_resume_refused(
        fleet,
        &before,
        "still running",
        "a refused resume of a live run",
    );
}

/// The journal of the killed run reads back: every complete line parses, it says where
/// prod-03 was, and that the others of batch 2 finished. Returns the run's id.
fn assert_the_journal_says_where_prod03_was(fleet: &Fleet, run_dir: &Path) -> String {
    let (events, _partial) = journal(run_dir);
    let started: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "run_started")
        .collect();
    assert_eq!(started.len(), 1, "one run_started in the journal");
    let id = started[0]["run_id"].as_str().expect("run_id").to_string();
    assert_eq!(
        Path::new(started[0]["run_dir"].as_str().expect("run_dir")),
        run_dir,
        "run_started's run_dir is the journal's directory"
    );
    assert_eq!(
        run_dir.file_name().unwrap().to_str().unwrap(),
        id,
        "the run dir is named by the run id"
    );
    let prod03: Vec<_> = events.iter().filter(|e| e["host"] == "prod-03").collect();
    let last = prod03.last().expect("prod-03 in the journal");
    assert_eq!(
        last["event"], "step_started",
        "prod-03's last event: {last}"
    );
    assert_eq!(
        last["name"], "pull the new image",
        "prod-03's last event: {last}"
    );
    for h in ["prod-01", "prod-02", "prod-04"] {
        let f: Vec<_> = events
            .iter()
            .filter(|e| e["event"] == "host_finished" && e["host"] == h)
            .collect();
        assert_eq!(f.len(), 1, "{h} finished once in the journal");
        assert_eq!(f[0]["outcome"], "ok", "{h}: {}", f[0]);
    }
    assert!(
        !events.iter().any(|e| e["event"] == "run_finished"),
        "a killed run has no run_finished"
    );
    // The host's own log shows the pull really began, after its step_started was on disk.
    let p3_log = fleet.commands("prod-03");
    let pull = shim(&p3_log, "start", "docker pull");
    assert!(pull.t * 1000.0 + 1.0 >= last["at_ms"].as_f64().unwrap());

    id
}

/// run.json names the process, the controller and the operator; playbook.yml is a copy.
fn assert_run_json_records_the_run(run_dir: &Path, pid: u32) {
    let rj = run_json(run_dir);
    assert_eq!(rj["pid"], pid, "run.json records fleetup's pid: {rj:#}");
    assert_eq!(
        rj["controller"],
        hostname(),
        "run.json's controller: {rj:#}"
    );
    assert!(rj["operator"].is_string(), "run.json's operator: {rj:#}");
    assert_eq!(
        std::fs::read_to_string(run_dir.join("playbook.yml")).expect("the playbook's copy"),
        std::fs::read_to_string(Path::new(REPO).join(PLAYBOOK)).unwrap(),
        "playbook.yml is a copy of the playbook"
    );
}

/// The resumed run knows what was finished and where prod-03 was stopped, and runs only
/// prod-03 and batch 3, the batches keeping their numbers.
fn assert_only_prod03_and_batch_3_ran(resumed: &Finished, id: &str) {
    let r = resumed.run_resumed();
    assert_eq!(r["run_id"], id, "{r}");
    assert_eq!(r["attempt"], 2, "{r}");
    assert_eq!(
        host_set(&r["finished"]),
        set(&["prod-01", "prod-02", "prod-04"]),
        "{r}"
    );
    let interrupted = r["interrupted"].as_array().expect("interrupted: a list");
    assert_eq!(interrupted.len(), 1, "one host interrupted: {r}");
    assert_eq!(interrupted[0]["host"], "prod-03", "{r}");
    assert_eq!(interrupted[0]["step"], "pull the new image", "{r}");
    let retry = host_set(&r["retry"]);
    for h in ["prod-01", "prod-02", "prod-04"] {
        assert!(!retry.contains(h), "{h} finished: not retried: {r}");
    }

    // Only prod-03 and batch 3 ran, batches keeping their numbers.
    assert_eq!(
        resumed.started_hosts(),
        set(&["prod-03", "prod-05", "prod-06", "prod-07"]),
        "{}",
        resumed.dump()
    );
    assert_eq!(resumed.batches_started(), [2, 3], "{}", resumed.dump());
    for h in ["prod-03", "prod-05", "prod-06", "prod-07"] {
        assert_eq!(resumed.outcome(h), "ok", "{h}: {}", resumed.dump());
    }
    let started_in = |h: &str| {
        resumed
            .of("host_started")
            .iter()
            .find(|e| e["host"] == h)
            .map(|e| e["batch"].clone())
    };
    assert_eq!(started_in("prod-03"), Some(json!(2)));
    assert_eq!(started_in("prod-05"), Some(json!(3)));
}

/// The hosts' own logs: finished hosts were not touched after the kill, not even by a
/// pre-flight; every host migrated exactly once over both runs; every host at target.
fn assert_the_hosts_logs_after_the_resume(
    fleet: &Fleet,
    killed_at: f64,
    pre_resume: &[Vec<CommandRecord>],
) {
    for h in ["prod-01", "prod-02", "prod-04"] {
        assert_not_touched_since(fleet, h, killed_at, "after the kill (it had finished)");
        assert_upgraded(fleet, h, &fleet.commands(h));
    }
    for (i, log) in pre_resume.iter().enumerate().skip(4) {
        let h = format!("prod-{:02}", i + 1);
        assert!(
            state_changing(log).is_empty(),
            "{h} was not started before the kill: {:?}",
            state_changing(log)
        );
        assert_upgraded(fleet, &h, &fleet.commands(&h));
    }
    let p3 = since(fleet, "prod-03", killed_at);
    assert_healthy_at(fleet, "prod-03", TARGET);
    let p3_pull = p3
        .iter()
        .filter(|c| c.kind == "docker" && c.ev == "end" && c.cmd.starts_with("docker pull"))
        .find(|c| c.rc == Some(0))
        .is_some();
    assert!(
        p3_pull,
        "prod-03 pulled again after the kill: {:?}",
        cmds(&p3)
    );
    // Batch 2 (prod-03) ended before batch 3 began.
    let p3_up = shim(&p3, "end", UP_EMAIL).t;
    for h in ["prod-05", "prod-06", "prod-07"] {
        let pull = shim(&fleet.commands(h), "start", "docker pull").t;
        assert!(
            p3_up < pull,
            "{h} pulled ({pull}) before batch 2 ended ({p3_up})"
        );
    }
    for i in 1..=7 {
        let h = format!("prod-{i:02}");
        assert_migrated_once(fleet, &h);
        assert_no_lock(fleet, &h);
    }
}

// --- 7. kill -9 after the point of no return, then --resume -------------------------------

/// Killed while a host migrates (its app already stopped and removed): the resumed run
/// finishes the host from its pre-flight, tolerating the containers that are gone, and keeps
/// the backup the first attempt took before the stop, the only dump of the database as the
/// old version left it, instead of dumping a possibly half-migrated schema.
#[test]
fn kill_9_mid_migration_then_resume_finishes_the_host_with_its_first_backup() {
    let fleet = Fleet::start(
        Spec::new()
            .group("production", "prod", 3, OLD)
            .canary("prod-01"),
    );
    fleet.fault(
        "prod-03",
        json!({"match": "alembic upgrade head", "action": "hang", "scope": "shim", "times": 1}),
    );
    let mut running = spawn_run(&fleet, Path::new(PLAYBOOK), &["--serial", "2"]);
    wait_for_prod03_migrating_with_prod02_done(&fleet, &mut running);
    running.child.kill().expect("SIGKILL fleetup");
    running.child.wait().expect("reap fleetup");
    let killed_at = now();
    let first_backups = backups(&fleet, "prod-03");
    assert_eq!(
        first_backups.len(),
        1,
        "the first attempt's backup: {first_backups:?}"
    );
    let down = fleet.ssh("prod-03", "curl -fsS -m 5 http://127.0.0.1:7777/health");
    assert!(
        !down.status.success(),
        "prod-03's app is down after the kill"
    );
    assert_upgrade_in_progress_on_prod03(&fleet, &first_backups[0].0);
    let r = resume(&fleet, "last", &[]);
    r.assert_exit(0);
    let resumed = r.run_resumed();
    assert_eq!(
        resumed["interrupted"],
        json!([{"host": "prod-03", "step": "migrate the database"}]),
        "{resumed}"
    );
    assert_prod03_finished_from_its_first_backup(&fleet, killed_at, &first_backups);
    assert_eq!(
        resumed["finished"],
        json!(["prod-01", "prod-02"]),
        "{resumed}"
    );
    for h in ["prod-01", "prod-02"] {
        // Before this test's own health check logs its commands there.
        assert_not_touched_since(&fleet, h, killed_at, "after the kill");
        assert_healthy_at(&fleet, h, TARGET);
    }
}

/// Until prod-03 migrates (and hangs there) with prod-02 finished in the journal.
fn wait_for_prod03_migrating_with_prod02_done(fleet: &Fleet, running: &mut Running) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            running.child.try_wait().expect("try_wait").is_none(),
            "fleetup ended before it could be killed; stderr:\n{}",
            running.stderr_now()
        );
        let migrating = fleet.commands("prod-03").iter().any(|c| {
            c.kind == "docker" && c.ev == "start" && c.cmd.contains("alembic upgrade head")
        });
        // The journal appears once the pre-flight is over.
        let journaled = run_dirs(&state_dir(fleet))
            .into_iter()
            .find(|dir| dir.join("events.jsonl").exists());
        let prod02_done = journaled.is_some_and(|dir| {
            journal_lenient(&dir)
                .iter()
                .any(|e| e["event"] == "host_finished" && e["host"] == "prod-02")
        });
        if migrating && prod02_done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "prod-03 never reached its migration with prod-02 finished"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The upgrade in progress is on the host: the settings read before the stop, and the
/// path of the dump taken after it.
fn assert_upgrade_in_progress_on_prod03(fleet: &Fleet, first_backup: &Path) {
    let in_progress = in_progress_dir(fleet, "prod-03");
    let settings = std::fs::read_to_string(in_progress.join("settings.json")).unwrap_or_else(|e| {
        panic!(
            "the killed upgrade left its settings in {}: {e}",
            in_progress.display()
        )
    });
    let saved: Value = serde_json::from_str(&settings).expect("settings.json is JSON");
    assert!(
        saved["containers"]
            .as_array()
            .is_some_and(|c| c.iter().any(|x| x["Name"] == "/sl-app")),
        "settings.json holds sl-app as it ran before the stop: {settings}"
    );
    let marker = std::fs::read_to_string(in_progress.join("backup"))
        .expect("the in-progress dir names the dump");
    assert_eq!(
        Path::new(marker.trim()),
        first_backup,
        "the in-progress dir names the first attempt's dump"
    );
}

/// The resumed run finished prod-03 without a second dump: the first attempt's backup is
/// still the only one, and no upgrade is left in progress.
fn assert_prod03_finished_from_its_first_backup(
    fleet: &Fleet,
    killed_at: f64,
    first_backups: &[(PathBuf, u64, f64)],
) {
    assert_healthy_at(fleet, "prod-03", TARGET);
    let after = since(fleet, "prod-03", killed_at);
    let dumps: Vec<_> = after
        .iter()
        .filter(|c| c.ev == "start" && c.cmd.contains("pg_dump") && c.kind != "session")
        .collect();
    assert!(
        dumps.is_empty(),
        "no second dump of a half-upgraded database; after the kill:\n{}",
        cmds(&after).join("\n")
    );
    assert_eq!(
        backups(fleet, "prod-03"),
        first_backups,
        "the first attempt's backup is still the only one"
    );
    let alembic = shim(&after, "end", "alembic upgrade head");
    assert_eq!(alembic.rc, Some(0), "the resumed migration succeeded");
    assert!(
        !in_progress_dir(fleet, "prod-03").exists(),
        "a finished upgrade leaves no upgrade in progress behind"
    );
}
