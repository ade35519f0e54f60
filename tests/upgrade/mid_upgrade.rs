//! What goes wrong mid-upgrade: a step failing in batch 2, a connection dropped once, a
//! host lost for good. Each is rolled back or reported where it stands, and a second run
//! finishes what the first left.

use super::broken::{assert_back_at, assert_rollback_ran, three_hosts};
use super::*;

// --- 3. A failure at each state-changing step in batch 2 --------------------------------

/// A fleet of four for the fault tests: canary p-01, batch 2 = p-02, batch 3 = p-03 p-04.
fn four_hosts() -> Fleet {
    let fleet = Fleet::start(
        Spec::new()
            .host(host("p-01", "production", "v4.65.0"))
            .host(host("p-02", "production", "v4.65.0"))
            .host(host("p-03", "production", "v4.64.2"))
            .host(host("p-04", "production", "v4.65.0"))
            .canary("p-01"),
    );
    assert_eq!(
        plan(&fleet, &[]),
        [vec!["p-01"], vec!["p-02"], vec!["p-03", "p-04"]],
        "p-02 is batch 2 on its own"
    );
    fleet
}

/// Where a fault hits `step`: the command it matches (as the host logs it), the playbook
/// step that fails, and what a failure of that command prints.
fn at(step: &str) -> (&'static str, &'static str, &'static str) {
    match step {
        "pull" => ("docker pull", "pull the new image", "Error response from daemon: Get \"https://registry-1.docker.io/v2/\": net/http: TLS handshake timeout"),
        "stop" => ("docker stop", "stop and remove the app containers", "Error response from daemon: cannot stop container: sl-app: permission denied"),
        "migrate" => (MIGRATION, "migrate the database", "sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) could not connect to server"),
        "init" => ("init_app", "initialise the app", "Traceback (most recent call last): KeyError: 'EMAIL_DOMAIN'"),
        "up" => (APP_UP, "start the app and the job runner", "Error response from daemon: driver failed programming external connectivity"),
        "health" => ("/health", "verify the app and the job runner", "curl: (7) Failed to connect to 127.0.0.1 port 7777: Connection refused"),
        s => panic!("no step {s}"),
    }
}

/// Whether the database had been dumped when a failure at `step` stopped the upgrade: the
/// backup is taken once the app containers are stopped.
fn dumped_before(step: &str) -> bool {
    !matches!(step, "pull" | "stop")
}

/// Whether the new version's init_app.py had run when a failure at `step` stopped it.
fn init_ran_before(step: &str) -> bool {
    matches!(step, "up" | "health")
}

/// A failed pull left the host as it was: nothing but the pull changed it.
fn assert_only_pulled(log: &[CommandRecord]) {
    let changed: Vec<_> = state_changing(log)
        .into_iter()
        .filter(|c| !c.contains("docker pull"))
        .collect();
    assert!(changed.is_empty(), "a failed pull changed {changed:?}");
}

fn failure_in_batch_2_then_a_second_run_finishes(step: &str) {
    let fleet = four_hosts();
    let (pattern, failed_step, stderr) = at(step);
    // The new version's /health fails for as long as it serves, however many polls fit the
    // verify's timeout on a loaded machine; the old one's answers the rollback's verify.
    let health = step == "health";
    let rc = if health { 7 } else { 1 };
    let mut rule = json!({"match": pattern, "action": "fail", "rc": rc, "stderr": stderr,
                          "scope": "shim"});
    if health {
        rule["serving"] = json!(TARGET);
    } else {
        rule["times"] = json!(1);
    }
    fleet.fault("p-02", rule);

    let first = run(&fleet, &[]);
    let finished = assert_halted_at_p02_with_batch_3_untouched(&fleet, &first, step, failed_step);
    let fault = Fault { step, pattern, rc };
    assert_p02_back_on_its_old_version(&fleet, &first, finished, &fault);

    // The fault is gone: a second run finishes the fleet, leaving the upgraded canary alone.
    fleet.clear_faults("p-02");
    assert_second_run_finishes_the_fleet(&fleet);
}

/// The fault injected on p-02: at which step, the command it matched, its exit code.
struct Fault<'a> {
    step: &'a str,
    pattern: &'static str,
    rc: i32,
}

/// The canary upgraded, p-02 failed at `failed_step`, and the run halted at batch 2
/// before touching batch 3. Returns p-02's `host_finished` event.
fn assert_halted_at_p02_with_batch_3_untouched<'r>(
    fleet: &Fleet,
    first: &'r Finished,
    step: &str,
    failed_step: &str,
) -> &'r Value {
    first.assert_exit(2);
    assert_eq!(first.outcome("p-01"), "ok");
    assert_upgraded(fleet, "p-01", "v4.65.0", &fleet.commands("p-01"));
    let finished = first.host_finished("p-02");
    assert_eq!(finished["failed_step"], failed_step, "{step}");
    let halted = first.of("halted");
    assert_eq!(halted.len(), 1, "halted:\n{}", first.dump());
    assert_eq!(halted[0]["batch"], 2);
    assert_eq!(first.untouched(), ["p-03", "p-04"]);
    assert_untouched(fleet, first, "p-03", "v4.64.2");
    assert_untouched(fleet, first, "p-04", "v4.65.0");
    finished
}

/// The host ends healthy on its old version, its database as it was: a failed pull
/// changed nothing else, any later failure was rolled back, and the report says with
/// which backup.
fn assert_p02_back_on_its_old_version(
    fleet: &Fleet,
    first: &Finished,
    finished: &Value,
    fault: &Fault,
) {
    let Fault { step, pattern, rc } = *fault;
    assert_back_at(fleet, "p-02", "v4.65.0", init_ran_before(step));
    let tables = |h| fleet.state(h)["db"]["tables"].clone();
    assert_eq!(
        tables("p-02"),
        tables("p-04"),
        "{step}: the tables of v4.65.0, no more"
    );
    let log = fleet.commands("p-02");
    // The injected failure (the last one, where the verify polled on), before any rollback.
    let rm_at = log.iter().position(|c| c.cmd == ROLLBACK_RM);
    let failed_at = log[..rm_at.unwrap_or(log.len())]
        .iter()
        .rposition(|c| c.ev == "end" && c.rc == Some(rc) && c.cmd.contains(pattern))
        .expect("the injected failure is in the log");
    if step == "pull" {
        assert_eq!(finished["outcome"], "failed", "{step}: {}", first.dump());
        assert_only_pulled(&log);
        assert!(backups(fleet, "p-02").is_empty(), "no backup");
    } else {
        let outcome = &finished["outcome"];
        assert_eq!(outcome, "rolled_back", "{step}: {}", first.dump());
        assert_report_names_the_backups(fleet, finished, step);
        assert_rollback_ran(fleet, "p-02", failed_at, dumped_before(step));
    }
}

/// The report names the backup and the copy of the database the rollback replaced.
fn assert_report_names_the_backups(fleet: &Fleet, finished: &Value, step: &str) {
    let message = finished["message"].as_str().unwrap_or_default();
    let named: Vec<_> = backups(fleet, "p-02").into_iter().map(|b| b.0).collect();
    assert_eq!(named.len(), if dumped_before(step) { 2 } else { 0 });
    for path in &named {
        let path = path.display().to_string();
        assert!(message.contains(&path), "{step}: names {path}: {message}");
    }
    if named.is_empty() {
        assert!(
            message.contains("database backup: none"),
            "{step}: {message}"
        );
    }
}

/// A second run skips the upgraded canary (checked, not changed) and upgrades the rest.
fn assert_second_run_finishes_the_fleet(fleet: &Fleet) {
    let seen: Vec<usize> = ["p-01", "p-02"]
        .iter()
        .map(|h| fleet.commands(h).len())
        .collect();
    let second = run(fleet, &[]);
    second.assert_exit(0);
    assert_eq!(second.outcome("p-01"), "skipped");
    let canary_after = &fleet.commands("p-01")[seen[0]..];
    assert!(!canary_after.is_empty(), "the canary was checked again");
    assert!(
        state_changing(canary_after).is_empty(),
        "the upgraded canary was changed again: {:?}",
        state_changing(canary_after)
    );
    assert_healthy_at(fleet, "p-01", TARGET);
    for name in ["p-02", "p-03", "p-04"] {
        assert_eq!(second.outcome(name), "ok", "{name}");
    }
    assert_upgraded_again(fleet, "p-02", "v4.65.0", seen[1]);
    assert_upgraded(fleet, "p-03", "v4.64.2", &fleet.commands("p-03"));
    assert_upgraded(fleet, "p-04", "v4.65.0", &fleet.commands("p-04"));
}

/// `#[test] fn NAME() { CHECK(STEP) }` for each `NAME => STEP`.
macro_rules! at_each_step {
    ($check:ident: $($name:ident => $step:literal),* $(,)?) => {
        $(#[test] fn $name() { $check($step); })*
    };
}

at_each_step!(failure_in_batch_2_then_a_second_run_finishes:
    a_failed_pull_in_batch_2_leaves_the_host_untouched_and_halts => "pull",
    a_failed_stop_in_batch_2_is_rolled_back_and_halts => "stop",
    a_failed_migration_in_batch_2_is_rolled_back_and_halts => "migrate",
    a_failed_init_in_batch_2_is_rolled_back_and_halts => "init",
    a_failed_compose_up_in_batch_2_is_rolled_back_and_halts => "up",
    a_failed_health_check_in_batch_2_is_rolled_back_and_halts => "health",
);

// --- 4. A connection dropped once at each state-changing step ---------------------------

fn dropped_once_at(step: &str) {
    let (pattern, failed_step, _) = at(step);
    let fleet = three_hosts("v4.65.0");
    if step == "health" {
        // The pre-flight asks /health first, fleet-wide and again on the host: let it fail
        // twice (it only reports it), then drop the verify's first poll.
        let rule =
            json!({"match": pattern, "action": "fail", "rc": 7, "scope": "shim", "times": 2});
        fleet.fault("p-02", rule);
    }
    let drop = json!({"match": pattern, "action": "drop", "scope": "shim", "times": 1});
    fleet.fault("p-02", drop);
    // p-02 is batch 2 here: let the canary through first.
    assert_eq!(
        plan(&fleet, &[]),
        [vec!["p-01"], vec!["p-02"], vec!["p-03"]]
    );

    let r = run(&fleet, &FAST_RECONNECT);
    assert_eq!(r.outcome("p-01"), "ok");
    let log = fleet.commands("p-02");
    let dropped_at = log.iter().position(|c| c.dropped);
    let dropped_at = dropped_at.expect("the connection really was dropped on the host");
    assert!(
        log[dropped_at].cmd.contains(pattern),
        "{step}: dropped at the step"
    );
    let finished = r.host_finished("p-02");
    assert_eq!(finished["failed_step"], failed_step, "{step}");
    let reconnecting: Vec<_> = r
        .of("reconnecting")
        .into_iter()
        .filter(|e| e["host"] == "p-02")
        .collect();
    if step == "pull" {
        // Lost before the point of no return: nothing changed yet, the host is reported
        // unreachable (exit 4), not reconnected to.
        r.assert_exit(4);
        assert_eq!(finished["outcome"], "unreachable", "{}", r.dump());
        assert!(reconnecting.is_empty());
        assert_only_pulled(&log);
    } else {
        r.assert_exit(2);
        assert_eq!(finished["outcome"], "rolled_back", "{step}: {}", r.dump());
        assert_eq!(reconnecting.len(), 1, "one reconnection:\n{}", r.dump());
        assert_rollback_ran(&fleet, "p-02", dropped_at, dumped_before(step));
    }
    assert_eq!(r.of("halted").len(), 1, "halted:\n{}", r.dump());
    assert_eq!(r.untouched(), ["p-03"]);
    assert_back_at(&fleet, "p-02", "v4.65.0", init_ran_before(step));
    assert_untouched(&fleet, &r, "p-03", "v4.64.2");
}

at_each_step!(dropped_once_at:
    a_connection_dropped_during_the_pull_leaves_the_host_unchanged => "pull",
    a_connection_dropped_during_the_stop_is_reconnected_and_rolled_back => "stop",
    a_connection_dropped_during_the_migration_is_reconnected_and_rolled_back => "migrate",
    a_connection_dropped_during_init_is_reconnected_and_rolled_back => "init",
    a_connection_dropped_during_compose_up_is_reconnected_and_rolled_back => "up",
    a_connection_dropped_during_the_health_check_is_reconnected_and_rolled_back => "health",
);

// --- 5. A host lost for good mid-upgrade ------------------------------------------------

#[test]
fn a_host_lost_for_good_during_the_migration_is_reported_unreachable_mid_upgrade() {
    let fleet = Fleet::start(
        Spec::new()
            .host(host("p-01", "production", "v4.65.0"))
            .host(host("p-02", "production", "v4.65.0"))
            .host(host("p-03", "production", "v4.64.2"))
            .canary("p-01")
            .with("p-01", HostSpec::own_sshd),
    );
    // The migration takes long enough for the test to pull the plug while it runs.
    fleet.fault(
        "p-01",
        json!({"match": MIGRATION, "action": "slow", "seconds": 20, "scope": "shim"}),
    );
    let running = spawn_run(&fleet, Path::new(PLAYBOOK), &FAST_RECONNECT);
    wait_for(&fleet, "p-01", |c| {
        c.kind == "docker" && c.cmd.contains(MIGRATION)
    });
    fleet.stop_host("p-01");
    let r = running.wait();

    r.assert_exit(4);
    let finished = r.host_finished("p-01");
    let outcome = (&finished["outcome"], &finished["failed_step"]);
    assert_eq!(
        outcome,
        (
            &json!("unreachable_mid_upgrade"),
            &json!("migrate the database")
        )
    );
    let message = finished["message"].as_str().expect("a message");
    let files = backups(&fleet, "p-01");
    assert_eq!(files.len(), 1, "one backup written: {files:?}");
    for named in ["migrate the database", &files[0].0.display().to_string()] {
        assert!(message.contains(named), "names {named}: {message}");
    }
    let reconnecting: Vec<_> = r.of("reconnecting");
    assert_eq!(
        reconnecting.len(),
        3,
        "every attempt announced:\n{}",
        r.dump()
    );
    assert!(reconnecting.iter().all(|e| e["host"] == "p-01"));
    let halted = r.of("halted");
    assert_eq!(halted.len(), 1);
    assert_eq!(halted[0]["reason"]["reason"], "canary_failed");
    assert_eq!(r.untouched(), ["p-02", "p-03"]);
    assert_untouched(&fleet, &r, "p-02", "v4.65.0");
    assert_untouched(&fleet, &r, "p-03", "v4.64.2");

    // What the host's own record says: stopped mid-way, the schema not yet migrated.
    let log = fleet.commands("p-01");
    assert!(log.iter().any(|c| c.cmd.starts_with("docker stop")));
    assert!(!log.iter().any(|c| c.cmd.contains("init_app")));
    let st = fleet.state("p-01");
    assert_eq!(st["serving"], Value::Null, "the app is down: {st:#}");
}
