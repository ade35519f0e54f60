//! End-to-end tests of the SimpleLogin upgrade: the built `fleetup` binary runs the shipped
//! playbook (`playbooks/simplelogin-upgrade.yml`) against the simulated fleet exactly as an
//! operator would (`run -i ... --known-hosts ... --yes --output json`, strict host keys),
//! and every claim is proven from the hosts' own state and command logs, not from what
//! fleetup says about them.

mod fleet;
mod fleetup_cli;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fleet::{CommandRecord, Fleet, HostSpec, Spec};
use fleetup_cli::{
    backups, head, plan, run, shim, since, spawn_run, state_changing, Finished, IMAGE, PLAYBOOK,
    REPO, TARGET,
};
use serde_json::{json, Value};

// --- Running fleetup --------------------------------------------------------------------

/// Keep reconnection tests fast.
const FAST_RECONNECT: [&str; 4] = ["--reconnect-attempts", "3", "--reconnect-delay", "0.2"];

impl Finished {
    /// When the rollout itself began: the fleet-wide read-only pre-flight runs before it,
    /// on every host, so "touched by the rollout" means "a command after this".
    fn rollout_start(&self) -> f64 {
        let started = self.of("run_started");
        assert_eq!(started.len(), 1, "one run_started:\n{}", self.dump());
        started[0]["at_ms"].as_f64().expect("at_ms") / 1000.0
    }

    /// A host's command log from the rollout's start on (the pre-flight left out).
    fn rollout_log(&self, fleet: &Fleet, name: &str) -> Vec<CommandRecord> {
        since(fleet, name, self.rollout_start())
    }

    fn started(&self, host: &str) -> bool {
        self.of("host_started").iter().any(|e| e["host"] == host)
    }
}

// --- What the hosts say -----------------------------------------------------------------

/// Every host in these tests sits in `production` (or `staging`) under `simplelogin`.
fn host(name: &str, group: &str, version: &str) -> HostSpec {
    HostSpec::new(name, group, version)
}

fn session<'a>(log: &'a [CommandRecord], ev: &str, needle: &str) -> &'a CommandRecord {
    log.iter()
        .find(|c| c.kind == "session" && c.ev == ev && c.cmd.contains(needle))
        .unwrap_or_else(|| panic!("no session `{ev}` with `{needle}` in the log"))
}

fn gunzip(path: &Path) -> String {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .expect("gzip");
    assert!(out.status.success(), "gzip -dc {}", path.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`fleetup_cli::assert_healthy_at`], and `docker inspect` over SSH names `version`'s
/// image for sl-app: what an operator would check after an upgrade, so these tests do too.
fn assert_healthy_at(fleet: &Fleet, name: &str, version: &str) {
    fleetup_cli::assert_healthy_at(fleet, name, version);
    let image = fleet.ssh(name, "docker inspect --format '{{.Config.Image}}' sl-app");
    assert_eq!(
        fleet::stdout(&image).trim(),
        format!("{IMAGE}:{version}"),
        "{name}: docker inspect sl-app"
    );
}

/// A host upgraded correctly from `old` in the log records `log`: backup (non-empty, the
/// old schema in it, written before the migration), pull, stop, migrate, init, up, in
/// that order; then healthy at the target.
fn assert_upgraded(fleet: &Fleet, name: &str, old: &str, log: &[CommandRecord]) {
    assert_healthy_at(fleet, name, TARGET);

    let pull = shim(log, "end", &format!("docker pull {IMAGE}:{TARGET}"));
    assert_eq!(pull.rc, Some(0), "{name}: the pull succeeded");
    let stop = shim(log, "start", "docker stop sl-app sl-email sl-job-runner");
    let alembic_start = shim(log, "start", "alembic upgrade head");
    let alembic_end = shim(log, "end", "alembic upgrade head");
    assert_eq!(alembic_end.rc, Some(0), "{name}: alembic succeeded");
    assert!(
        alembic_start.cmd.contains(&format!("{IMAGE}:{TARGET}"))
            && alembic_start.cmd.contains("--network sl-network"),
        "{name}: alembic runs from the NEW image on sl-network: {}",
        alembic_start.cmd
    );
    let init_start = shim(log, "start", "init_app.py");
    let init_end = shim(log, "end", "init_app.py");
    assert_eq!(init_end.rc, Some(0), "{name}: init_app.py succeeded");
    assert!(init_start.cmd.contains(&format!("{IMAGE}:{TARGET}")));
    let up = shim(log, "start", "compose up");
    let backup_end = session(log, "end", "pg_dump");
    assert_eq!(backup_end.rc, Some(0), "{name}: the backup succeeded");

    let order = [
        ("backup ends", backup_end.t),
        ("pull ends", pull.t),
        ("stop starts", stop.t),
        ("alembic starts", alembic_start.t),
        ("alembic ends", alembic_end.t),
        ("init_app.py starts", init_start.t),
        ("init_app.py ends", init_end.t),
        ("compose up starts", up.t),
    ];
    for w in order.windows(2) {
        assert!(
            w[0].1 <= w[1].1,
            "{name}: {} ({}) must come before {} ({})",
            w[0].0,
            w[0].1,
            w[1].0,
            w[1].1
        );
    }

    let files = backups(fleet, name);
    assert_eq!(files.len(), 1, "{name}: one database backup: {files:?}");
    let (path, size, mtime) = &files[0];
    assert!(*size > 0, "{name}: the backup is not empty");
    assert!(
        path.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("simplelogin-{old}-")),
        "{name}: the backup's name carries the old version: {}",
        path.display()
    );
    assert!(
        *mtime <= alembic_start.t,
        "{name}: the backup ({mtime}) was written before alembic started ({})",
        alembic_start.t
    );
    let dump = gunzip(path);
    assert!(
        dump.contains(head(old)),
        "{name}: the dump records the old schema {}",
        head(old)
    );
}

/// Nothing ran on the host but the fleet-wide read-only pre-flight before the rollout.
fn assert_untouched(fleet: &Fleet, r: &Finished, name: &str, version: &str) {
    let log = r.rollout_log(fleet, name);
    assert!(
        log.is_empty(),
        "{name} must not be contacted by the rollout: {:?}",
        log.iter().map(|c| &c.cmd).collect::<Vec<_>>()
    );
    let all = fleet.commands(name);
    assert!(
        state_changing(&all).is_empty(),
        "{name}: the pre-flight changed nothing"
    );
    let st = fleet.state(name);
    assert_eq!(st["serving"], version, "{name} still serves {version}");
}

/// When a host was busy: its first session's start to its last session's end.
fn busy(log: &[CommandRecord]) -> (f64, f64) {
    let sessions = log.iter().filter(|c| c.kind == "session");
    let start = sessions
        .clone()
        .filter(|c| c.ev == "start")
        .map(|c| c.t)
        .reduce(f64::min)
        .expect("a session");
    let end = sessions
        .filter(|c| c.ev == "end")
        .map(|c| c.t)
        .reduce(f64::max)
        .expect("a session end");
    (start, end)
}

// --- 1. The happy path ------------------------------------------------------------------

#[test]
fn a_mixed_fleet_is_upgraded_and_the_current_host_is_left_alone() {
    let versions = [
        ("stg-01", "staging", "v4.64.2"),
        ("stg-02", "staging", "v4.65.0"),
        ("prod-01", "production", "v4.65.0"),
        ("prod-02", "production", TARGET),
        ("prod-03", "production", "v4.64.2"),
        ("prod-04", "production", "v4.65.0"),
        ("prod-05", "production", "v4.64.2"),
    ];
    let mut spec = Spec::new();
    for (name, group, version) in versions {
        spec = spec.host(host(name, group, version));
    }
    let fleet = Fleet::start(spec.canary("prod-01"));
    let batches = plan(&fleet, &[]);
    assert_eq!(
        batches[0],
        ["prod-01"],
        "the canary alone first: {batches:?}"
    );

    let r = run(&fleet, &[]);
    r.assert_exit(0);
    assert!(r.of("halted").is_empty(), "no halt:\n{}", r.dump());
    assert!(r.untouched().is_empty());
    let logs: std::collections::HashMap<&str, Vec<CommandRecord>> = versions
        .iter()
        .map(|(name, _, _)| (*name, r.rollout_log(&fleet, name)))
        .collect();

    for (name, _, old) in versions {
        let log = &logs[name];
        if old == TARGET {
            assert_eq!(r.outcome(name), "skipped", "{name}");
            assert_eq!(r.host_finished(name)["changed"], false);
            assert!(
                state_changing(log).is_empty(),
                "{name} is already current: nothing may change it, yet it ran {:?}",
                state_changing(log)
            );
            assert!(backups(&fleet, name).is_empty(), "{name}: no backup");
            assert_healthy_at(&fleet, name, TARGET);
        } else {
            assert_eq!(r.outcome(name), "ok", "{name}: {}", r.dump());
            assert_eq!(r.host_finished(name)["changed"], true);
            assert_upgraded(&fleet, name, old, log);
        }
    }

    // The canary ended before any other host began (from the logs as the run left them,
    // before the checks above added their own ssh commands).
    let (_, canary_end) = busy(&logs["prod-01"]);
    for (name, _, _) in versions.iter().filter(|v| v.0 != "prod-01") {
        let (start, _) = busy(&logs[*name]);
        assert!(
            start > canary_end,
            "{name} started ({start}) before the canary ended ({canary_end})"
        );
    }
}

// --- 2. The broken upgrade is caught ----------------------------------------------------

/// The shipped playbook's text with the named steps (of `steps:`) removed: each from its
/// `  - name: <step>` line to the next step, section comment or top-level key.
fn without_steps(playbook: &str, names: &[&str]) -> String {
    let lines: Vec<&str> = playbook.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut removed = 0;
    while i < lines.len() {
        let line = lines[i];
        let is_removed = names
            .iter()
            .any(|n| line.trim_end() == format!("  - name: {n}"));
        if is_removed {
            removed += 1;
            i += 1;
            while i < lines.len() {
                let l = lines[i];
                let next_item = l.starts_with("  - ") || l.starts_with("  #");
                let top_level = !l.is_empty() && !l.starts_with(' ');
                if next_item || top_level {
                    break;
                }
                i += 1;
            }
            continue;
        }
        out.push(line);
        i += 1;
    }
    assert_eq!(removed, names.len(), "every step to remove was found");
    out.join("\n") + "\n"
}

/// Whether a line of the playbook that is not a comment mentions `what`.
fn runs(playbook: &str, what: &str) -> bool {
    playbook
        .lines()
        .any(|l| !l.trim_start().starts_with('#') && l.contains(what))
}

fn shipped_playbook() -> String {
    std::fs::read_to_string(Path::new(REPO).join(PLAYBOOK)).expect("the shipped playbook")
}

/// A fleet of three: the canary, then one host per batch.
fn three_hosts(canary_version: &str) -> Fleet {
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

/// The rollback's own steps all ran on the host, after the failure: stop what the new
/// version started, restore the dump (psql fed the backup), compose up the old version.
fn assert_rollback_ran(fleet: &Fleet, name: &str, since: usize) {
    let log = &fleet.commands(name)[since..];
    let restore = shim(log, "end", "docker exec -i sl-db psql");
    assert_eq!(restore.rc, Some(0), "{name}: the dump was restored");
    let rm = shim(log, "start", "docker rm -f sl-app");
    let up: Vec<_> = log
        .iter()
        .filter(|c| c.kind != "session" && c.ev == "start" && c.cmd.contains("compose up"))
        .collect();
    let last_up = up.last().expect("a compose up in the rollback");
    assert!(
        rm.t < restore.t && restore.t < last_up.t,
        "{name}: rollback order"
    );
}

#[test]
fn an_upgrade_without_the_migration_is_stopped_by_the_health_gate_on_the_canary() {
    // "Why upgrades break": pull the new image and restart, without migrating the schema.
    // Removing only "migrate the database" would fail at init_app.py (which needs the
    // schema); removing the init too leaves the health gate as the only thing to catch it.
    let variant = without_steps(
        &shipped_playbook(),
        &["migrate the database", "initialise the app"],
    );
    assert!(!runs(&variant, "alembic") && !runs(&variant, "init_app"));
    assert!(variant.contains("- name: verify health and version"));
    let fleet = three_hosts("v4.65.0");
    let pb = fleet.tmp().join("no-migration.yml");
    std::fs::write(&pb, variant).unwrap();

    let r = spawn_run(&fleet, &pb, &[]).wait();
    assert_canary_rolled_back(&fleet, &r, "verify health and version", "v4.65.0");

    // The new version really was started on the old schema, and /health really failed.
    let log = fleet.commands("p-01");
    let up = shim(&log, "end", "compose up");
    assert_eq!(up.rc, Some(0));
    assert!(!log.iter().any(|c| c.cmd.contains("alembic")));
    let failed_health = log
        .iter()
        .filter(|c| c.kind == "curl" && c.ev == "end" && c.t > up.t && c.rc != Some(0))
        .count();
    assert!(
        failed_health >= 2,
        "the health gate polled and saw no health"
    );
    let since = log
        .iter()
        .position(|c| c.ev == "start" && c.cmd.starts_with("docker rm -f"))
        .expect("the rollback ran");
    assert_rollback_ran(&fleet, "p-01", since);
}

#[test]
fn an_upgrade_without_the_migrate_step_is_caught_at_init_and_rolled_back() {
    let variant = without_steps(&shipped_playbook(), &["migrate the database"]);
    assert!(!runs(&variant, "alembic") && runs(&variant, "init_app"));
    let fleet = three_hosts("v4.65.0");
    let pb = fleet.tmp().join("no-migrate-step.yml");
    std::fs::write(&pb, variant).unwrap();

    let r = spawn_run(&fleet, &pb, &[]).wait();
    assert_canary_rolled_back(&fleet, &r, "initialise the app", "v4.65.0");
    let log = fleet.commands("p-01");
    assert_eq!(shim(&log, "end", "init_app.py").rc, Some(1));
}

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

/// The fault for `step`, and the name of the playbook step it fails.
struct Injected {
    rules: Vec<Value>,
    failed_step: &'static str,
    /// Whether the failure is past the point of no return (rollback expected).
    rolls_back: bool,
}

fn fail_at(step: &str) -> Injected {
    let fail = |pattern: &str, rc: i32, stderr: &str| {
        json!({"match": pattern, "action": "fail", "rc": rc, "stderr": stderr,
               "scope": "shim", "times": 1})
    };
    match step {
        "pull" => Injected {
            rules: vec![fail(
                "docker pull",
                1,
                "Error response from daemon: Get \"https://registry-1.docker.io/v2/\": net/http: TLS handshake timeout",
            )],
            failed_step: "pull the new image",
            rolls_back: false,
        },
        "stop" => Injected {
            rules: vec![fail(
                "docker stop",
                1,
                "Error response from daemon: cannot stop container: sl-app: permission denied",
            )],
            failed_step: "stop and remove the app containers",
            rolls_back: true,
        },
        "migrate" => Injected {
            rules: vec![fail(
                "alembic",
                1,
                "sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) could not connect to server",
            )],
            failed_step: "migrate the database",
            rolls_back: true,
        },
        "init" => Injected {
            rules: vec![fail(
                "init_app",
                1,
                "Traceback (most recent call last): KeyError: 'EMAIL_DOMAIN'",
            )],
            failed_step: "initialise the app",
            rolls_back: true,
        },
        "up" => Injected {
            rules: vec![fail(
                "compose up",
                1,
                "Error response from daemon: driver failed programming external connectivity",
            )],
            failed_step: "start the new version",
            rolls_back: true,
        },
        "health" => Injected {
            // The same curl answers "health now" (the fleet-wide pre-flight and the host's
            // own, 2 calls) and the verify (3 or 4 polls in 5 s): 6 failures make the verify
            // fail and leave at most one for the rollback's verify, which polls on and passes.
            rules: vec![json!({"match": "curl", "action": "fail", "rc": 7,
                "stderr": "curl: (7) Failed to connect to 127.0.0.1 port 7777: Connection refused",
                "scope": "shim", "times": 6})],
            failed_step: "verify health and version",
            rolls_back: true,
        },
        s => panic!("no step {s}"),
    }
}

fn failure_in_batch_2_then_a_second_run_finishes(step: &str) {
    let fleet = four_hosts();
    let injected = fail_at(step);
    for r in &injected.rules {
        fleet.fault("p-02", r.clone());
    }

    let first = run(&fleet, &[]);
    first.assert_exit(2);
    assert_eq!(first.outcome("p-01"), "ok");
    assert_upgraded(&fleet, "p-01", "v4.65.0", &fleet.commands("p-01"));
    let finished = first.host_finished("p-02");
    assert_eq!(finished["failed_step"], injected.failed_step, "{step}");
    let halted = first.of("halted");
    assert_eq!(halted.len(), 1, "halted:\n{}", first.dump());
    assert_eq!(halted[0]["batch"], 2);
    assert_eq!(first.untouched(), ["p-03", "p-04"]);
    assert_untouched(&fleet, &first, "p-03", "v4.64.2");
    assert_untouched(&fleet, &first, "p-04", "v4.65.0");

    // The host ends healthy on its old version, its database as it was.
    assert_healthy_at(&fleet, "p-02", "v4.65.0");
    let log = fleet.commands("p-02");
    if injected.rolls_back {
        assert_eq!(
            finished["outcome"],
            "rolled_back",
            "{step}: {}",
            first.dump()
        );
        let message = finished["message"].as_str().unwrap_or_default();
        let backup = &backups(&fleet, "p-02")[0].0;
        assert!(
            message.contains(&backup.display().to_string()),
            "{step}: the report names the backup {}: {message}",
            backup.display()
        );
        let failed_at = log
            .iter()
            .position(|c| c.kind != "session" && c.ev == "end" && c.rc != Some(0))
            .expect("the injected failure is in the log");
        assert_rollback_ran(&fleet, "p-02", failed_at);
    } else {
        // A failed pull leaves the host untouched: nothing after the pull changed it.
        assert_eq!(finished["outcome"], "failed", "{step}: {}", first.dump());
        let changed: Vec<_> = state_changing(&log)
            .into_iter()
            .filter(|c| !c.contains("pg_dump") && !c.contains("docker pull"))
            .collect();
        assert!(changed.is_empty(), "a failed pull changed {changed:?}");
        assert_eq!(shim(&log, "end", "docker pull").rc, Some(1));
    }

    // The fault is gone: a second run finishes the fleet, leaving the upgraded canary alone.
    fleet.clear_faults("p-02");
    let seen: Vec<usize> = ["p-01", "p-02"]
        .iter()
        .map(|h| fleet.commands(h).len())
        .collect();
    let second = run(&fleet, &[]);
    second.assert_exit(0);
    assert_eq!(second.outcome("p-01"), "skipped");
    let canary_after = &fleet.commands("p-01")[seen[0]..];
    assert!(!canary_after.is_empty(), "the canary was checked again");
    assert!(
        state_changing(canary_after).is_empty(),
        "the upgraded canary was changed again: {:?}",
        state_changing(canary_after)
    );
    assert_healthy_at(&fleet, "p-01", TARGET);
    for name in ["p-02", "p-03", "p-04"] {
        assert_eq!(second.outcome(name), "ok", "{name}");
    }
    assert_upgraded_again(&fleet, "p-02", "v4.65.0", seen[1]);
    assert_upgraded(&fleet, "p-03", "v4.64.2", &fleet.commands("p-03"));
    assert_upgraded(&fleet, "p-04", "v4.65.0", &fleet.commands("p-04"));
}

/// p-02 upgraded by the second run: its commands since `since`, and its newest backup.
fn assert_upgraded_again(fleet: &Fleet, name: &str, old: &str, since: usize) {
    let log = fleet.commands(name);
    let log = &log[since..];
    assert_healthy_at(fleet, name, TARGET);
    let alembic = shim(log, "start", "alembic upgrade head");
    let init = shim(log, "start", "init_app.py");
    let up = shim(log, "start", "compose up");
    assert!(shim(log, "end", "alembic").t <= init.t && init.t < up.t);
    let newest = backups(fleet, name)
        .into_iter()
        .filter(|b| b.2 <= alembic.t)
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .expect("a backup before the second run's migration");
    assert!(newest.1 > 0);
    assert!(gunzip(&newest.0).contains(head(old)));
}

#[test]
fn a_failed_pull_in_batch_2_leaves_the_host_untouched_and_halts() {
    failure_in_batch_2_then_a_second_run_finishes("pull");
}

#[test]
fn a_failed_stop_in_batch_2_is_rolled_back_and_halts() {
    failure_in_batch_2_then_a_second_run_finishes("stop");
}

#[test]
fn a_failed_migration_in_batch_2_is_rolled_back_and_halts() {
    failure_in_batch_2_then_a_second_run_finishes("migrate");
}

#[test]
fn a_failed_init_in_batch_2_is_rolled_back_and_halts() {
    failure_in_batch_2_then_a_second_run_finishes("init");
}

#[test]
fn a_failed_compose_up_in_batch_2_is_rolled_back_and_halts() {
    failure_in_batch_2_then_a_second_run_finishes("up");
}

#[test]
fn a_failed_health_check_in_batch_2_is_rolled_back_and_halts() {
    failure_in_batch_2_then_a_second_run_finishes("health");
}

// --- 4. A connection dropped once at each state-changing step ---------------------------

fn dropped_once_at(step: &str) {
    let drop =
        |pattern: &str| json!({"match": pattern, "action": "drop", "scope": "shim", "times": 1});
    let (rules, failed_step) = match step {
        "pull" => (vec![drop("docker pull")], "pull the new image"),
        "stop" => (
            vec![drop("docker stop")],
            "stop and remove the app containers",
        ),
        "migrate" => (vec![drop("alembic")], "migrate the database"),
        "init" => (vec![drop("init_app")], "initialise the app"),
        "up" => (vec![drop("compose up")], "start the new version"),
        // The pre-flight's "health now" runs the same curl first, fleet-wide and again on
        // the host: let it fail twice (it only decides whether to upgrade), then drop the
        // verify's first poll.
        "health" => (
            vec![
                json!({"match": "curl", "action": "fail", "rc": 7, "scope": "shim", "times": 2}),
                drop("curl"),
            ],
            "verify health and version",
        ),
        s => panic!("no step {s}"),
    };
    let fleet = three_hosts("v4.65.0");
    for r in rules {
        fleet.fault("p-02", r);
    }
    // p-02 is batch 2 here: let the canary through first.
    assert_eq!(
        plan(&fleet, &[]),
        [vec!["p-01"], vec!["p-02"], vec!["p-03"]]
    );

    let r = run(&fleet, &FAST_RECONNECT);
    assert_eq!(r.outcome("p-01"), "ok");
    let log = fleet.commands("p-02");
    assert!(
        log.iter().any(|c| c.dropped),
        "{step}: the connection really was dropped on the host"
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
    } else {
        r.assert_exit(2);
        assert_eq!(finished["outcome"], "rolled_back", "{step}: {}", r.dump());
        assert_eq!(reconnecting.len(), 1, "one reconnection:\n{}", r.dump());
        let dropped_at = log.iter().position(|c| c.dropped).unwrap();
        assert_rollback_ran(&fleet, "p-02", dropped_at);
    }
    assert_eq!(r.of("halted").len(), 1, "halted:\n{}", r.dump());
    assert_eq!(r.untouched(), ["p-03"]);
    assert_healthy_at(&fleet, "p-02", "v4.65.0");
    assert_untouched(&fleet, &r, "p-03", "v4.64.2");
}

#[test]
fn a_connection_dropped_during_the_pull_leaves_the_host_unchanged() {
    dropped_once_at("pull");
}

#[test]
fn a_connection_dropped_during_the_stop_is_reconnected_and_rolled_back() {
    dropped_once_at("stop");
}

#[test]
fn a_connection_dropped_during_the_migration_is_reconnected_and_rolled_back() {
    dropped_once_at("migrate");
}

#[test]
fn a_connection_dropped_during_init_is_reconnected_and_rolled_back() {
    dropped_once_at("init");
}

#[test]
fn a_connection_dropped_during_compose_up_is_reconnected_and_rolled_back() {
    dropped_once_at("up");
}

#[test]
fn a_connection_dropped_during_the_health_check_is_reconnected_and_rolled_back() {
    dropped_once_at("health");
}

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
        json!({"match": "alembic", "action": "slow", "seconds": 20, "scope": "shim"}),
    );
    let running = spawn_run(&fleet, Path::new(PLAYBOOK), &FAST_RECONNECT);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = fleet.commands("p-01");
        if log
            .iter()
            .any(|c| c.kind == "docker" && c.ev == "start" && c.cmd.contains("alembic"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the migration never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    fleet.stop_host("p-01");
    let r = running.wait();

    r.assert_exit(4);
    let finished = r.host_finished("p-01");
    assert_eq!(
        finished["outcome"],
        "unreachable_mid_upgrade",
        "{}",
        r.dump()
    );
    assert_eq!(finished["failed_step"], "migrate the database");
    let message = finished["message"].as_str().expect("a message");
    assert!(
        message.contains("migrate the database"),
        "names the last step: {message}"
    );
    let files = backups(&fleet, "p-01");
    assert_eq!(files.len(), 1, "one backup written: {files:?}");
    assert!(
        message.contains(&files[0].0.display().to_string()),
        "names the backup {}: {message}",
        files[0].0.display()
    );
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

// --- The backup never overwrites an earlier one -----------------------------------------

#[test]
fn a_backup_taken_in_the_same_second_as_an_earlier_one_keeps_both() {
    // Two runs within one second (a retry right after a failed pull, say) name their dumps
    // alike: `simplelogin-<old>-<UTC second>`. Stand in for the earlier run with a backup
    // under every name the next minute could produce, as the login user.
    let fleet = Fleet::start(
        Spec::new()
            .host(host("p-01", "production", "v4.65.0"))
            .canary("p-01"),
    );
    let backups_dir = fleet.app_path("p-01").join("backups");
    let script = format!(
        "set -eu; mkdir -p {dir}; now=$(date +%s); i=-2; while [ $i -le 60 ]; do \
         b={dir}/simplelogin-v4.65.0-$(date -u -d @$((now + i)) +%Y%m%dT%H%M%SZ); \
         echo earlier-dump-$i | gzip > $b.sql.gz; echo earlier-env-$i > $b.env; i=$((i + 1)); done",
        dir = fleet::sh_quote(&backups_dir.display().to_string())
    );
    let made = fleet.ssh("p-01", &script);
    assert!(made.status.success(), "{}", fleet::stderr(&made));
    let earlier = backups(&fleet, "p-01");
    assert_eq!(earlier.len(), 63);
    let since = fleet.commands("p-01").len();

    let r = run(&fleet, &[]);
    r.assert_exit(0);
    assert_eq!(r.outcome("p-01"), "ok", "{}", r.dump());
    assert_upgraded_again(&fleet, "p-01", "v4.65.0", since);
    for (path, _, _) in &earlier {
        let i = gunzip(path);
        assert!(
            i.starts_with("earlier-dump-"),
            "{} was overwritten",
            path.display()
        );
        let env = path.with_extension("").with_extension("env");
        let env = std::fs::read_to_string(&env).unwrap();
        assert!(
            env.starts_with("earlier-env-"),
            "the .env copy was overwritten"
        );
    }
    assert_eq!(backups(&fleet, "p-01").len(), 64, "one new backup");
}
