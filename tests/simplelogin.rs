//! The shipped SimpleLogin playbook (`playbooks/simplelogin-upgrade.yml`, its facts and
//! `fleetup status`) on the layouts found in the wild: README `docker run` hosts in both tag
//! forms, the seed's compose project and springcomp's; the seed's broken host; rollbacks
//! after a migration that added tables; refusals. Every claim is read from the hosts' own
//! state, databases and command logs, not from what fleetup says about them.

mod fleet;
mod fleetup_cli;
#[path = "simplelogin/operator_flags.rs"]
mod operator_flags;

use std::collections::BTreeSet;

use fleet::{CommandRecord, Fleet, HostSpec, Spec};
use fleetup_cli::{
    assert_healthy_at, cli, head, s, since, spawn_args, strings, Finished, PLAYBOOK, REPO,
};
use serde_json::{json, Value};

// --- Running fleetup --------------------------------------------------------------------

/// `fleetup CMD -i INV --known-hosts K ARGS...`
fn args(fleet: &Fleet, cmd: &str, rest: &[&str]) -> Vec<String> {
    let (inv, known) = (s(&fleet.inventory_path()), s(&fleet.known_hosts_path()));
    let mut all = strings(&[cmd, "-i", &inv, "--known-hosts", &known]);
    all.extend(strings(rest));
    all
}

/// `fleetup run` of the shipped playbook to `version`, JSON events, health gate 5 s.
fn run_to(fleet: &Fleet, version: &str) -> Finished {
    let v = format!("sl_version={version}");
    let gate = r#"{"sl_health_timeout": 5}"#;
    let rest = [PLAYBOOK, "-e", &v, "-e", gate, "--yes", "--output", "json"];
    spawn_args(fleet, &args(fleet, "run", &rest)).wait()
}

/// `fleetup CMD ...` as text: its exit code, stdout and stderr.
fn fleetup(fleet: &Fleet, cmd: &str, rest: &[&str]) -> (i32, String) {
    let out = cli(&args(fleet, cmd, rest));
    let text = format!("{}\n{}", fleet::stdout(&out), fleet::stderr(&out));
    (out.status.code().expect("fleetup ended by a signal"), text)
}

/// A host's row of a table fleetup printed, its words joined by one space.
fn row(text: &str, host: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no row for {host} in:\n{text}"));
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// When the rollout began (after the fleet-wide read-only pre-flight).
fn rollout_start(r: &Finished) -> f64 {
    r.run_started()["at_ms"].as_f64().expect("at_ms") / 1000.0
}

// --- What the hosts say -----------------------------------------------------------------

fn starts(log: &[CommandRecord]) -> impl Iterator<Item = &CommandRecord> {
    log.iter()
        .filter(|c| c.ev == "start" && c.kind != "session")
}

/// How the commands that stop, remove or (re)start the app, or touch the data, begin.
const CHANGING: [&str; 6] = [
    "docker stop",
    "docker rm",
    "docker run -d",
    "docker pull",
    "docker kill",
    "docker exec -i",
];

/// Such commands in a log, and any `up`, dump or one-shot container but the read-only
/// `docker run --rm --network none IMAGE alembic heads`.
fn changes(log: &[CommandRecord]) -> Vec<String> {
    starts(log)
        .map(|c| c.cmd.as_str())
        .filter(|cmd| {
            CHANGING.iter().any(|p| cmd.starts_with(p))
                || cmd.contains(" up ")
                || cmd.contains("pg_dump")
                || (cmd.starts_with("docker run") && !cmd.contains("--network none"))
        })
        .map(str::to_string)
        .collect()
}

fn container<'a>(st: &'a Value, name: &str) -> &'a Value {
    st["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {st:#}"))
}

fn env_of(c: &Value) -> Vec<String> {
    c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| e.as_str().expect("env entry").to_string())
        .collect()
}

/// What `sql` answers on a host, one entry a line.
fn answers(fleet: &Fleet, name: &str, sql: &str) -> BTreeSet<String> {
    let out = fleet.sql(name, sql);
    out.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn tables(fleet: &Fleet, name: &str) -> BTreeSet<String> {
    answers(
        fleet,
        name,
        "SELECT tablename FROM pg_tables WHERE schemaname='public'",
    )
}

fn revision(fleet: &Fleet, name: &str) -> String {
    let out = fleet.sql(name, "SELECT version_num FROM alembic_version");
    out.trim().to_string()
}

fn rows(fleet: &Fleet, name: &str, table: &str) -> BTreeSet<String> {
    answers(fleet, name, &format!("SELECT * FROM {table} ORDER BY id"))
}

/// The new image's `PYTHON_VERSION`, as `docker image inspect` on the host tells it.
fn python_of(fleet: &Fleet, name: &str, image: &str) -> String {
    let out = fleet.ssh(
        name,
        &format!("docker image inspect --format '{{{{json .Config.Env}}}}' {image}"),
    );
    assert!(out.status.success(), "{name}: {}", fleet::stderr(&out));
    let env: Vec<String> = serde_json::from_str(fleet::stdout(&out).trim()).expect("Env");
    env.into_iter()
        .find(|e| e.starts_with("PYTHON_VERSION="))
        .expect("the image sets PYTHON_VERSION")
}

// --- 1. A mixed fleet to v4.67.1 --------------------------------------------------------

const APPS: [&str; 3] = ["sl-app", "sl-job-runner", "sl-email"];

fn mixed_fleet() -> Fleet {
    Fleet::start(
        Spec::new()
            .host(
                HostSpec::new("readme-v", "production", "v4.66.1")
                    .layout("readme")
                    .extra_args("sl-app", &["-e", "EXTRA=1"]),
            )
            .host(
                HostSpec::new("readme-bare", "production", "v4.66.1")
                    .layout("readme")
                    .image("simplelogin/app")
                    .v_prefix(false),
            )
            .host(HostSpec::new("compose", "production", "v4.66.1"))
            .host(HostSpec::new("springcomp", "production", "v4.65.0").layout("springcomp")),
    )
}

/// A README host's app containers run `image` with every flag they were created with, the
/// new image's Python and not the old one's.
fn assert_recreated_alike(fleet: &Fleet, name: &str, before: &Value, image: &str) {
    let after = fleet.state(name);
    let python = python_of(fleet, name, image);
    for c in APPS {
        let (old, new) = (container(before, c), container(&after, c));
        assert_eq!(new["image"], image, "{name}: {c}'s image");
        assert_eq!(new["state"], "running", "{name}: {c} runs");
        for key in [
            "ports",
            "binds",
            "mounts",
            "network_mode",
            "restart",
            "cmd",
            "host_config",
            "config_kept",
            "user",
            "exposed",
            "healthcheck",
        ] {
            assert_eq!(new[key], old[key], "{name}: {c}'s {key} as it was created");
        }
        let (old_env, new_env) = (env_of(old), env_of(new));
        let old_python = old_env.iter().find(|e| e.starts_with("PYTHON_VERSION="));
        let old_python = old_python.expect("the old image's PYTHON_VERSION");
        assert_ne!(old_python, &python, "the images' Pythons differ");
        assert!(
            new_env.contains(&python),
            "{name}: {c} has {python}: {new_env:?}"
        );
        assert!(
            !new_env.contains(old_python),
            "{name}: {c} kept {old_python}"
        );
    }
}

/// When `service` (`app` or `email`) was first started in the log: a README host's
/// `docker run -d --name sl-<service>`, or a compose `up -d --no-deps` naming its service.
fn started(log: &[CommandRecord], service: &str) -> f64 {
    let names = [format!("sl-{service}"), service.to_string()];
    starts(log)
        .find(|c| {
            let words: Vec<&str> = c.cmd.split_whitespace().collect();
            let run = c.cmd.starts_with("docker run -d")
                && c.cmd.contains(&format!("--name sl-{service} "));
            let up = words
                .windows(3)
                .position(|w| w == ["up", "-d", "--no-deps"]);
            let services = up.map(|p| &words[p + 3..]).unwrap_or(&[]);
            run || services.iter().any(|w| names.iter().any(|n| n == w))
        })
        .unwrap_or_else(|| {
            panic!(
                "no start of {service} in:\n{}",
                fleetup_cli::cmds(log).join("\n")
            )
        })
        .t
}

/// sl-email started only after sl-app and sl-job-runner were running and sl-app answered
/// `/version` with the target; exactly one migration ran, from the new image.
fn assert_order_and_one_migration(fleet: &Fleet, name: &str, t0: f64) {
    let log = since(fleet, name, t0);
    let app = started(&log, "app");
    let email = started(&log, "email");
    let verified = log
        .iter()
        .filter(|c| c.ev == "end" && c.kind == "curl" && c.cmd.ends_with("/version"))
        .filter(|c| c.rc == Some(0) && c.t > app)
        .map(|c| c.t)
        .next()
        .unwrap_or_else(|| panic!("{name}: no /version answered after sl-app started"));
    let inspected = log.iter().any(|c| {
        c.t > app && c.t < email && c.cmd.contains("inspect") && c.cmd.contains("sl-job-runner")
    });
    assert!(
        app < verified && verified < email,
        "{name}: app {app}, /version {verified}, email {email}"
    );
    assert!(inspected, "{name}: sl-job-runner checked before sl-email");
    let migrations = starts(&log)
        .filter(|c| c.kind == "container" && c.cmd == "alembic upgrade head")
        .count();
    assert_eq!(migrations, 1, "{name}: one `alembic upgrade head`");
}

#[test]
fn a_mixed_fleet_runs_the_new_image_in_each_hosts_own_form_and_settings() {
    let fleet = mixed_fleet();
    let before: Vec<Value> = ["readme-v", "readme-bare"]
        .iter()
        .map(|h| fleet.state(h))
        .collect();
    let r = run_to(&fleet, "v4.67.1");
    r.assert_exit(0);
    let t0 = rollout_start(&r);

    assert_recreated_alike(&fleet, "readme-v", &before[0], "simplelogin/app-ci:v4.67.1");
    assert_recreated_alike(&fleet, "readme-bare", &before[1], "simplelogin/app:4.67.1");
    let extra = env_of(container(&fleet.state("readme-v"), "sl-app"));
    assert!(extra.contains(&"EXTRA=1".into()), "EXTRA=1: {extra:?}");
    for name in ["compose", "springcomp"] {
        let st = fleet.state(name);
        for c in APPS {
            assert_eq!(
                container(&st, c)["image"],
                "simplelogin/app-ci:v4.67.1",
                "{name}: {c}"
            );
        }
        assert_eq!(st["env_version"], "v4.67.1", "{name}: .env");
    }
    for h in ["readme-v", "readme-bare", "compose", "springcomp"] {
        let st = fleet.state(h);
        assert_eq!(st["db"]["schema"], head("v4.67.1"), "{h}: schema");
        assert_eq!(st["serving"], "v4.67.1", "{h}: serves");
        assert_order_and_one_migration(&fleet, h, t0);
    }

    let log = since(&fleet, "springcomp", t0);
    assert!(
        starts(&log).any(|c| c.cmd.contains("up --no-deps migration")),
        "springcomp migrated through its own service:\n{}",
        fleetup_cli::cmds(&log).join("\n")
    );
    assert!(
        !starts(&log)
            .any(|c| c.cmd.starts_with("docker run") && c.cmd.contains("--name sl-migration")),
        "springcomp: no throw-away sl-migration container"
    );
}

// --- 2. The seed's broken host ----------------------------------------------------------

#[test]
fn the_broken_host_is_shown_repaired_and_its_healthy_neighbour_left_alone() {
    let fleet = Fleet::start(
        Spec::new()
            .host(HostSpec::new("broken", "production", "v4.66.1").broken())
            .host(HostSpec::new("healthy", "production", "v4.66.1")),
    );
    let (code, text) = fleetup(&fleet, "status", &[]);
    assert_eq!(code, 2, "{text}");
    let broken = row(&text, "broken");
    assert!(broken.contains("behind"), "{text}");
    assert!(broken.contains("sl-job-runner restarting"), "{text}");

    let (code, text) = fleetup(&fleet, "check", &[PLAYBOOK, "-e", "sl_version=v4.66.1"]);
    assert_eq!(code, 0, "repaired, not refused:\n{text}");
    assert!(
        row(&text, "broken").contains("broken: schema behind v4.66.1"),
        "{text}"
    );
    assert!(
        row(&text, "healthy").contains("skip: already at v4.66.1"),
        "{text}"
    );

    let r = run_to(&fleet, "v4.66.1");
    r.assert_exit(0);
    assert_eq!(r.outcome("healthy"), "skipped", "{}", r.dump());
    let t0 = rollout_start(&r);
    let touched = changes(&since(&fleet, "healthy", t0));
    assert!(touched.is_empty(), "healthy was touched: {touched:?}");
    assert_eq!(revision(&fleet, "broken"), "fd79503179dd", "repaired");

    let count = |f: &Fleet| container(&f.state("broken"), "sl-job-runner")["restart_count"].clone();
    let first = count(&fleet);
    // `status` samples restart counts over sl_settle (1 s): the job runner climbed one a
    // second while broken.
    let (code, text) = fleetup(&fleet, "status", &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(count(&fleet), first, "the job runner's RestartCount");
    assert_healthy_at(&fleet, "broken", "v4.66.1");
}

// --- 3. A failed init after a migration that added tables -------------------------------

/// `target`'s init fails on a v4.66.1 host: it is rolled back to exactly what it was.
fn init_fails_after_migrating_to(target: &str) -> Fleet {
    let fleet = Fleet::start(Spec::new().host(HostSpec::new("p-01", "production", "v4.66.1")));
    let (tables_then, rev_then) = (tables(&fleet, "p-01"), revision(&fleet, "p-01"));
    fleet.fault(
        "p-01",
        json!({"match": "init_app.py", "action": "fail", "rc": 1, "scope": "shim",
               "stderr": "Traceback (most recent call last): KeyError: 'EMAIL_DOMAIN'"}),
    );
    let r = run_to(&fleet, target);
    r.assert_exit(2);
    let log = since(&fleet, "p-01", rollout_start(&r));
    let migrated = starts(&log).any(|c| c.kind == "container" && c.cmd == "alembic upgrade head");
    assert!(migrated, "the migration ran before init failed");
    assert_eq!(tables(&fleet, "p-01"), tables_then, "tables as before");
    assert_eq!(revision(&fleet, "p-01"), rev_then, "revision as before");
    let finished = r.host_finished("p-01");
    assert_eq!(finished["outcome"], "rolled_back", "{}", r.dump());
    assert_healthy_at(&fleet, "p-01", "v4.66.1");

    let report = finished.to_string();
    let kept = report
        .split(|c: char| c.is_whitespace() || c == '"' || c == ';')
        .find(|w| w.ends_with(".after-failure.sql.gz"))
        .unwrap_or_else(|| panic!("the report names the kept dump: {report}"));
    let meta = std::fs::metadata(kept).unwrap_or_else(|e| panic!("{kept}: {e}"));
    assert!(meta.len() > 0, "{kept} is not empty");
    fleet
}

#[test]
fn a_failed_init_after_a_migration_adding_a_referencing_table_is_rolled_back_exactly() {
    let fleet = init_fails_after_migrating_to("v4.67.0");
    assert!(!tables(&fleet, "p-01").contains("alias_audit_log"));
}

#[test]
fn a_failed_init_after_a_migration_adding_a_table_is_rolled_back_and_a_second_run_succeeds() {
    let fleet = init_fails_after_migrating_to("v4.67.1");
    assert!(!tables(&fleet, "p-01").contains("user_audit_log"));
    fleet.clear_faults("p-01");
    let r = run_to(&fleet, "v4.67.1");
    r.assert_exit(0);
    let log = since(&fleet, "p-01", rollout_start(&r));
    let migration = log
        .iter()
        .find(|c| c.ev == "end" && c.kind == "container" && c.cmd == "alembic upgrade head")
        .expect("the second run migrated");
    assert_eq!(migration.rc, Some(0), "no `relation already exists`");
    assert_healthy_at(&fleet, "p-01", "v4.67.1");
}

// --- 4. No write before the stop is lost ------------------------------------------------

/// The UTC timestamp PostgreSQL (and the simulator) write for unix time `t`.
fn pg_time(t: f64) -> String {
    fleet::sh(&format!("date -u -d @{t:.6} '+%F %T.%6N'"))
        .trim()
        .to_string()
}

#[test]
fn every_row_written_before_the_stop_survives_a_rollback() {
    let fleet = Fleet::start(Spec::new().host(HostSpec::new("p-01", "production", "v4.66.1")));
    for sql in [
        "INSERT INTO users (id, created_at, email, name) VALUES (501, '2026-01-01 10:00:00', 'late@example.org', 'Late')",
        "INSERT INTO alias (id, created_at, user_id, email, mailbox_id, note) VALUES (501, '2026-01-01 10:00:01', 501, 'late@mydomain.com', 1, 'new')",
        "INSERT INTO email_log (id, created_at, user_id, alias_id) VALUES (501, '2026-01-01 10:00:02', 501, 501)",
    ] {
        fleet.sql("p-01", sql);
    }
    let tables = ["users", "alias", "email_log", "mailbox", "job"];
    let before: Vec<_> = tables.iter().map(|t| rows(&fleet, "p-01", t)).collect();
    // After the migration and init: the new sl-app does not start.
    fleet.fault(
        "p-01",
        json!({"match": "up -d --no-deps sl-app", "action": "fail", "rc": 1, "scope": "shim",
               "times": 1, "stderr": "Error response from daemon: driver failed"}),
    );
    let r = run_to(&fleet, "v4.67.0");
    r.assert_exit(2);
    assert_eq!(r.outcome("p-01"), "rolled_back", "{}", r.dump());
    let log = since(&fleet, "p-01", rollout_start(&r));
    let stop = |ev| fleetup_cli::shim(&log, ev, "docker stop sl-app").t;
    let (from, to) = (pg_time(stop("start")), pg_time(stop("end")));
    assert!(
        starts(&log).any(|c| c.kind == "container" && c.cmd == "alembic upgrade head"),
        "the failure came after the migration"
    );

    for (table, then) in tables.iter().zip(&before) {
        let now = rows(&fleet, "p-01", table);
        let lost: Vec<_> = then.difference(&now).collect();
        assert!(lost.is_empty(), "{table}: rows lost: {lost:?}");
        let added: Vec<_> = now.difference(then).collect();
        if *table != "email_log" {
            assert!(added.is_empty(), "{table}: rows from nowhere: {added:?}");
            continue;
        }
        // The mail in flight when the stop came, written by the stop itself.
        assert!(!added.is_empty(), "the in-flight mail is kept");
        for r in added {
            let at = r.split('|').nth(1).expect("created_at");
            assert!(
                from.as_str() <= at && at <= to.as_str(),
                "email_log row {r} was written at the stop ({from} .. {to})"
            );
        }
    }
    assert_eq!(revision(&fleet, "p-01"), head("v4.66.1"));
    assert_back_at(&fleet, "p-01", "v4.66.1");
}

/// [`assert_healthy_at`] but for the simulator's record of the revision init_app.py last
/// ran for (not in the database, so not restored with it): here the new version's init
/// completed before the failure, and its effects went with the restore.
fn assert_back_at(fleet: &Fleet, name: &str, version: &str) {
    let st = fleet.state(name);
    assert_eq!(st["serving"], version, "{name} serves: {st:#}");
    assert_eq!(st["env_version"], version, "{name}: .env");
    assert_eq!(st["db"]["schema"], head(version), "{name}: schema");
    for c in APPS {
        let c = container(&st, c);
        assert_eq!(c["state"], "running", "{name}: {c:#}");
        assert_eq!(
            c["image"],
            format!("simplelogin/app-ci:{version}"),
            "{name}: {c:#}"
        );
    }
    let health = fleet.ssh(name, "curl -fsS http://127.0.0.1:7777/health");
    assert_eq!(fleet::stdout(&health).trim(), "success", "{name}: /health");
}

// --- 5. Refusals with nothing stopped ---------------------------------------------------

fn refusals_fleet() -> Fleet {
    let fleet = Fleet::start(
        Spec::new()
            .host(HostSpec::new("newer", "production", "v4.67.1"))
            .host(HostSpec::new("ancient", "production", "v2.1.2"))
            .host(HostSpec::new("ahead", "production", "v4.65.0"))
            // Its env file by `--mount`, which re-creating sl-app with -v, -e, -p... loses.
            .host(
                HostSpec::new("mounted", "production", "v4.65.0")
                    .layout("readme")
                    .extra_args(
                        "sl-app",
                        &["--mount", "type=bind,source=/tmp,target=/extra"],
                    ),
            )
            .host(HostSpec::new("fine", "production", "v4.65.0")),
    );
    fleet.sql(
        "ahead",
        "UPDATE alembic_version SET version_num = 'c5e1d4a7f209'",
    );
    fleet
}

const REFUSED: [(&str, &str); 4] = [
    ("newer", "refused: downgrade from v4.67.1 to v4.66.1"),
    ("ancient", "refused: start version v2.1.2 is before 3.0.0"),
    ("ahead", "refused: database schema c5e1d4a7f209 is ahead"),
    ("mounted", "refused: the app containers have settings a re-created one would lose (sl-app --mount /extra)"),
];

/// No host stopped, removed, started or dumped anything from `t0` on.
fn assert_nothing_changed_since(fleet: &Fleet, t0: f64) {
    for h in ["newer", "ancient", "ahead", "mounted", "fine"] {
        let changed = changes(&since(fleet, h, t0));
        assert!(
            changed.is_empty(),
            "{h} changed although the run was refused: {changed:?}"
        );
    }
}

fn run_text(fleet: &Fleet, version: &str) -> (i32, String) {
    let v = format!("sl_version={version}");
    fleetup(fleet, "run", &[PLAYBOOK, "-e", &v, "--yes"])
}

#[test]
fn downgrades_old_versions_and_schemas_ahead_are_refused_before_anything_stops() {
    let fleet = refusals_fleet();
    let t0 = fleetup_cli::now();
    let (code, text) = run_text(&fleet, "v4.66.1");
    assert_ne!(code, 0, "{text}");
    for (host, why) in REFUSED {
        assert!(row(&text, host).contains(why), "{host}: {why}\n{text}");
    }
    assert!(
        row(&text, "fine").contains("upgrade from v4.65.0 to v4.66.1"),
        "{text}"
    );
    assert_nothing_changed_since(&fleet, t0);

    let (code, text) = fleetup(&fleet, "check", &[PLAYBOOK, "-e", "sl_version=v4.66.1"]);
    assert_ne!(code, 0, "{text}");
    for (host, why) in REFUSED {
        assert!(
            row(&text, host).contains(why),
            "check: {host}: {why}\n{text}"
        );
    }
    assert_nothing_changed_since(&fleet, t0);
    assert_eq!(fleet.state("fine")["serving"], "v4.65.0");
}

#[test]
fn latest_is_refused_on_every_host_before_anything_stops() {
    let fleet = refusals_fleet();
    let t0 = fleetup_cli::now();
    let (code, text) = run_text(&fleet, "latest");
    assert_ne!(code, 0, "{text}");
    for host in ["newer", "ancient", "ahead", "fine"] {
        assert!(
            row(&text, host).contains("sl_version latest is not a pinned version"),
            "{host}\n{text}"
        );
    }
    assert_nothing_changed_since(&fleet, t0);
}

// --- 6. The shipped playbook's order ----------------------------------------------------

/// Production first in the file, its canary in the middle; staging last.
const STAGED_INVENTORY: &str = "
all:
  children:
    simplelogin:
      children:
        production:
          hosts:
            prod-1: {ansible_host: 127.0.0.1}
            prod-2: {ansible_host: 127.0.0.1, canary: true}
            prod-3: {ansible_host: 127.0.0.1}
        staging:
          hosts:
            stg-1: {ansible_host: 127.0.0.1}
            stg-2: {ansible_host: 127.0.0.1}
";

#[test]
fn staging_goes_first_then_the_production_canary() {
    let dir = tempfile::tempdir().expect("tmp");
    let inv = dir.path().join("inventory.yml");
    std::fs::write(&inv, STAGED_INVENTORY).expect("inventory");
    let mut args = strings(&["plan", "-i", &s(&inv), PLAYBOOK, "-e", "sl_version=v4.66.1"]);
    args.extend(strings(&["--output", "json"]));
    let out = cli(&args);
    assert!(
        out.status.success(),
        "plan in {REPO}: {}",
        fleet::stderr(&out)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let batches = plan["batches"].as_array().expect("batches");
    let hosts = |i: usize| -> Vec<String> {
        let mut v: Vec<String> = batches[i]["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .map(|h| h.as_str().expect("host").to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(hosts(0), ["stg-1", "stg-2"], "staging first: {plan:#}");
    assert_eq!(hosts(1), ["prod-2"], "then the canary: {plan:#}");
    assert_eq!(batches[1]["canary"], true, "{plan:#}");
    let mut rest: Vec<String> = (2..batches.len()).flat_map(hosts).collect();
    rest.sort();
    assert_eq!(rest, ["prod-1", "prod-3"], "then the rest: {plan:#}");
}
