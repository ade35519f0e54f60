//! An upgrade that leaves the schema behind is not let through: the playbook with its
//! migration removed is stopped by the schema check on the canary, or at init, and the
//! canary is rolled back to its exact dump.

use super::*;

// --- 2. The broken upgrade is caught ----------------------------------------------------

/// The shipped playbook's text with the named steps (of `steps:`) removed: each from its
/// `  - name: <step>` line to the next step, section comment or top-level key.
fn without_steps(playbook: &str, names: &[&str]) -> String {
    let (mut out, mut skipping, mut removed) = (String::new(), false, 0);
    for l in playbook.lines() {
        if l.starts_with("  - ") || l.starts_with("  #") || !(l.is_empty() || l.starts_with(' ')) {
            skipping = names
                .iter()
                .any(|n| l.trim_end() == format!("  - name: {n}"));
            removed += skipping as usize;
        }
        if !skipping {
            out += l;
            out += "\n";
        }
    }
    assert_eq!(removed, names.len(), "every step to remove was found");
    out
}

/// Whether a line of the playbook that is not a comment mentions `what`.
fn runs(playbook: &str, what: &str) -> bool {
    playbook
        .lines()
        .any(|l| !l.trim_start().starts_with('#') && l.contains(what))
}

/// The shipped playbook without `steps`, written beside the fleet (its `vars_files` too).
fn variant_without(fleet: &Fleet, steps: &[&str]) -> (String, PathBuf) {
    let shipped = Path::new(REPO).join(PLAYBOOK);
    let text = std::fs::read_to_string(&shipped).expect("the shipped playbook");
    let variant = without_steps(&text, steps);
    let facts = "simplelogin-facts.yml";
    std::fs::copy(shipped.with_file_name(facts), fleet.tmp().join(facts)).unwrap();
    let pb = fleet.tmp().join("variant.yml");
    std::fs::write(&pb, &variant).unwrap();
    (variant, pb)
}

/// A fleet of three: the canary, then one host per batch.
pub(super) fn three_hosts(canary_version: &str) -> Fleet {
    Fleet::start(
        Spec::new()
            .host(host("p-01", "production", canary_version))
            .host(host("p-02", "production", "v4.65.0"))
            .host(host("p-03", "production", "v4.64.2"))
            .canary("p-01"),
    )
}

/// The canary was rolled back after `failed_step`, healthy on its old version, the run
/// halted after the canary batch, and no other host was touched.
fn assert_canary_rolled_back(fleet: &Fleet, r: &Finished, failed_step: &str, old: &str) {
    r.assert_exit(2);
    let finished = r.host_finished("p-01");
    assert_eq!(finished["outcome"], "rolled_back", "{}", r.dump());
    assert_eq!(finished["failed_step"], failed_step);
    let halted = r.of("halted");
    assert_eq!(halted.len(), 1, "the run halted:\n{}", r.dump());
    assert_eq!(halted[0]["reason"]["reason"], "canary_failed");
    assert_eq!(halted[0]["batch"], 1);
    assert_eq!(r.untouched(), ["p-02", "p-03"]);
    assert!(!r.started("p-02") && !r.started("p-03"));
    assert_healthy_at(fleet, "p-01", old);
    assert_untouched(fleet, r, "p-02", "v4.65.0");
    assert_untouched(fleet, r, "p-03", "v4.64.2");
}

/// The rollback's own steps all ran on the host, after the failure at `since`: remove what
/// the new version started; where a dump had been taken, dump the database as the new
/// version left it and restore the backup in one transaction (where none had, leave the
/// database alone); start the old app and job runner, see /health answer, then sl-email.
pub(super) fn assert_rollback_ran(fleet: &Fleet, name: &str, since: usize, dumped: bool) {
    let log = &fleet.commands(name)[since..];
    let starts = |what: &'static str| {
        log.iter()
            .filter(move |c| c.kind != "session" && c.cmd.contains(what))
    };
    let last = |what: &'static str| starts(what).next_back().expect(what).t;
    let (rm, up) = (shim(log, "start", ROLLBACK_RM).t, last(APP_UP));
    let (healthy, email_up) = (health_after(log, up), last(EMAIL_UP));
    let order = [
        ("rm", rm),
        ("old app", up),
        ("/health", healthy),
        ("sl-email", email_up),
    ];
    assert_in_order(name, &order);
    let kept = backups(fleet, name).len() - dumps(fleet, name).len();
    if !dumped {
        assert_eq!(
            starts(RESTORE).chain(starts(PG_DUMP)).count(),
            0,
            "{name}: no dump"
        );
        return assert!(
            backups(fleet, name).is_empty(),
            "{name}: the database untouched"
        );
    }
    assert_eq!(
        kept, 1,
        "{name}: the database as the new version left it is kept"
    );
    let (keep, restore) = (ran(log, PG_DUMP), ran(log, RESTORE));
    assert_eq!(
        starts(RESTORE).count(),
        2,
        "{name}: one restore (its start and end)"
    );
    let cmd = &shim(log, "start", RESTORE).cmd;
    let exact = cmd.contains(" ON_ERROR_STOP=1 ") && cmd.contains(" --single-transaction");
    assert!(
        exact,
        "{name}: one transaction that stops at an error: {cmd}"
    );
    let order = [
        ("rm", rm),
        ("keep", keep.0),
        ("restore", restore.0),
        ("old app", up),
    ];
    assert_in_order(name, &order);
}

/// A host back on `old` after a rollback, as [`assert_healthy_at`] checks it; but where the
/// new version's init_app.py had run (`init_ran`), the simulated host's record of the last
/// init names the new schema: it keeps that beside the database, and a restore of the dump
/// (which holds what the old version's init wrote) does not put it back.
pub(super) fn assert_back_at(fleet: &Fleet, name: &str, old: &str, init_ran: bool) {
    if !init_ran {
        return assert_healthy_at(fleet, name, old);
    }
    let st = fleet.state(name);
    let mut containers: Vec<_> = st["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| json!([c["name"], c["status"], c["image"]]))
        .collect();
    containers.sort_by_key(|c| c[0].to_string());
    let (app, db) = (format!("{IMAGE}:{old}"), "postgres:12.1");
    let running = |n: &str, image: &str| json!([n, "running", image]);
    assert_eq!(
        json!([
            st["serving"],
            st["env_version"],
            st["db"]["schema"],
            st["db"]["init"],
            containers
        ]),
        json!([
            old,
            old,
            head(old),
            head(TARGET),
            [
                running("sl-app", &app),
                running("sl-db", db),
                running("sl-email", &app),
                running("sl-job-runner", &app)
            ]
        ]),
        "{name}: serving, .env, schema, init, containers: {st:#}"
    );
    let health = fleet.ssh(name, "curl -fsS http://127.0.0.1:7777/health");
    assert_eq!(fleet::stdout(&health).trim(), "success", "{name}: /health");
}

#[test]
fn an_upgrade_without_the_migration_is_stopped_by_the_schema_check_on_the_canary() {
    // "Why upgrades break": pull the new image and restart, without migrating the schema.
    // Removing only "migrate the database" would fail at init_app.py (which needs the
    // schema); without the init too, the new version runs on the old schema with /health
    // answering `success` (as upstream's does): the verify's schema check must catch it.
    let (fleet, old) = (three_hosts("v4.65.0"), "v4.65.0");
    let (variant, pb) = variant_without(&fleet, &["migrate the database", "initialise the app"]);
    assert!(!runs(&variant, MIGRATION) && !runs(&variant, "init_app"));
    assert!(variant.contains("- name: verify the app and the job runner"));
    // The rollback's first command waits: time to look at the new version as it ran.
    let rule = json!({"match": ROLLBACK_RM, "action": "slow", "seconds": 6, "scope": "shim"});
    fleet.fault("p-01", rule);

    let running = spawn_run(&fleet, &pb, &[]);
    wait_for(&fleet, "p-01", |c| c.cmd == ROLLBACK_RM);
    // The new version serves on the old schema: /health says success; the job runner
    // restart-loops.
    let health = fleet.ssh("p-01", "curl -fsS http://127.0.0.1:7777/health");
    assert_eq!(fleet::stdout(&health).trim(), "success", "/health");
    let restarts = || {
        let st = fleet.state("p-01");
        assert_eq!(
            (&st["serving"], &st["db"]["schema"]),
            (&json!(TARGET), &json!(head(old)))
        );
        let runner = st["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "sl-job-runner");
        runner.expect("sl-job-runner")["restart_count"]
            .as_u64()
            .unwrap()
    };
    let first = restarts();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        restarts() > first,
        "sl-job-runner restart-loops on the old schema"
    );

    let r = running.wait();
    let verify = "verify the app and the job runner";
    assert_canary_rolled_back(&fleet, &r, verify, old);
    let why = format!(
        "the schema is {}, {IMAGE}:{TARGET} wants {}",
        head(old),
        head(TARGET)
    );
    assert!(r.stderr_of("p-01", verify).contains(&why), "{}", r.dump());
    let log = fleet.commands("p-01");
    assert_eq!(
        shim(&log, "end", APP_UP).rc,
        Some(0),
        "the new version started"
    );
    let fixed = |c: &CommandRecord| c.cmd.contains(MIGRATION) || c.cmd.contains("init_app");
    assert!(!log.iter().any(fixed), "nothing migrated or initialised");
    let since = log.iter().position(|c| c.cmd == ROLLBACK_RM).unwrap();
    assert_rollback_ran(&fleet, "p-01", since, true);
}

#[test]
fn an_upgrade_without_the_migrate_step_is_caught_at_init_and_rolled_back() {
    let fleet = three_hosts("v4.65.0");
    let (variant, pb) = variant_without(&fleet, &["migrate the database"]);
    assert!(!runs(&variant, MIGRATION) && runs(&variant, "init_app"));

    let r = spawn_run(&fleet, &pb, &[]).wait();
    assert_canary_rolled_back(&fleet, &r, "initialise the app", "v4.65.0");
    let log = fleet.commands("p-01");
    assert_eq!(shim(&log, "end", "init_app.py").rc, Some(1));
    assert!(!log.iter().any(|c| c.cmd.contains(MIGRATION)));
    let failed_at = log
        .iter()
        .position(|c| c.ev == "end" && c.cmd.contains("init_app.py"));
    assert_rollback_ran(&fleet, "p-01", failed_at.unwrap(), true);
}
