//! End-to-end tests of the SimpleLogin upgrade: the built `fleetup` binary runs the shipped
//! playbook (`playbooks/simplelogin-upgrade.yml`) against the simulated fleet exactly as an
//! operator would (`run -i ... --known-hosts ... --yes --output json`, strict host keys),
//! and every claim is proven from the hosts' own state and command logs, not from what
//! fleetup says about them.

mod fleet;
mod fleetup_cli;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fleet::{CommandRecord, Fleet, HostSpec, Spec};
use fleetup_cli::{
    backups, head, is_state_changing, plan, run, shim, since, spawn_run, Finished, IMAGE, PLAYBOOK,
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
        self.run_started()["at_ms"].as_f64().expect("at_ms") / 1000.0
    }

    /// A host's command log from the rollout's start on (the pre-flight left out).
    fn rollout_log(&self, fleet: &Fleet, name: &str) -> Vec<CommandRecord> {
        since(fleet, name, self.rollout_start())
    }

    fn started(&self, host: &str) -> bool {
        self.of("host_started").iter().any(|e| e["host"] == host)
    }

    /// What a host's step printed on stderr (its tail), as the run reported it.
    fn stderr_of(&self, host: &str, step: &str) -> String {
        let done = self.of("step_finished");
        let found = done.iter().find(|e| e["host"] == host && e["name"] == step);
        found.unwrap_or_else(|| panic!("no step `{step}` on {host}:\n{}", self.dump()))
            ["stderr_tail"]
            .to_string()
    }
}

// --- What the hosts say -----------------------------------------------------------------

/// Every host in these tests sits in `production` (or `staging`) under `simplelogin`.
fn host(name: &str, group: &str, version: &str) -> HostSpec {
    HostSpec::new(name, group, version)
}

/// The commands as a compose host logs them: compose is run as the project was started
/// (`docker compose -p P --project-directory D -f F up -d --no-deps SERVICES`).
const APP_UP: &str = "up -d --no-deps sl-app sl-job-runner";
const EMAIL_UP: &str = "up -d --no-deps sl-email";
const MIGRATION: &str = "alembic upgrade head";
const PG_DUMP: &str = "docker exec sl-db pg_dump";
const RESTORE: &str = "docker exec -i sl-db psql";
/// The rollback's first command.
const ROLLBACK_RM: &str = "docker rm -f sl-app sl-email sl-job-runner sl-migration sl-init";

/// What changed a host in `log`: [`is_state_changing`], and compose's `up` as the playbook
/// spells it, but not the read-only throw-away container that reads an image's migrations
/// (`docker run --rm --network none IMAGE alembic heads`, `... alembic show REV`).
fn state_changing(log: &[CommandRecord]) -> Vec<String> {
    let changes = |c: &CommandRecord| {
        let cmd = c.cmd.as_str();
        if cmd.starts_with("docker run --rm --network none ")
            && (cmd.ends_with(" alembic heads") || cmd.contains(" alembic show "))
        {
            return false;
        }
        let compose = cmd.starts_with("docker compose ") || cmd.starts_with("docker-compose ");
        is_state_changing(c) || (compose && cmd.split(' ').any(|w| w == "up"))
    };
    log.iter()
        .filter(|c| c.ev == "start" && changes(c))
        .map(|c| format!("{} {}", c.kind, c.cmd))
        .collect()
}

/// The database dumps an upgrade took on a host, not the `.after-failure` ones a rollback
/// keeps of the database as the new version left it.
fn dumps(fleet: &Fleet, name: &str) -> Vec<(PathBuf, u64, f64)> {
    let after = |p: &Path| p.to_string_lossy().ends_with(".after-failure.sql.gz");
    backups(fleet, name)
        .into_iter()
        .filter(|b| !after(&b.0))
        .collect()
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

/// When the first `/health` that answered after `t` ended, as the host logged it.
fn health_after(log: &[CommandRecord], t: f64) -> f64 {
    let answered = |c: &&CommandRecord| c.kind == "curl" && c.ev == "end" && c.rc == Some(0);
    let found = log
        .iter()
        .filter(answered)
        .find(|c| c.t > t && c.cmd.ends_with("/health"));
    found.expect("a /health that answered").t
}

/// The start and end of the first command (not a session) with `needle`, which succeeded.
fn ran(log: &[CommandRecord], needle: &str) -> (f64, f64) {
    let end = shim(log, "end", needle);
    assert_eq!(end.rc, Some(0), "`{needle}` succeeded");
    (shim(log, "start", needle).t, end.t)
}

/// The named moments came in this order.
fn assert_in_order(name: &str, order: &[(&str, f64)]) {
    for w in order.windows(2) {
        let ((a, ta), (b, tb)) = (w[0], w[1]);
        assert!(ta <= tb, "{name}: {a} ({ta}) must come before {b} ({tb})");
    }
}

/// A host upgraded correctly from `old` in the log records `log`: pull, stop, backup (non-
/// empty, the old schema and the settings in it, written after the stop and before the
/// migration), migrate, init, start the app and the job runner, /health, sl-email last, in
/// that order; then healthy at the target.
fn assert_upgraded(fleet: &Fleet, name: &str, old: &str, log: &[CommandRecord]) {
    assert_healthy_at(fleet, name, TARGET);
    let new_image = format!("{IMAGE}:{TARGET}");
    let (pull, stop, removed) = (
        ran(log, &format!("docker pull {new_image}")),
        ran(log, "docker stop "),
        ran(log, "docker rm sl-"),
    );
    let (dump, migration, init) = (
        ran(log, PG_DUMP),
        ran(log, MIGRATION),
        ran(log, "init_app.py"),
    );
    let (up, email_up) = (ran(log, APP_UP), ran(log, EMAIL_UP));
    let alembic = &shim(log, "start", MIGRATION).cmd;
    assert!(
        alembic.contains(&new_image) && alembic.contains("--network sl-network"),
        "{name}: alembic runs from the NEW image on sl-network: {alembic}"
    );
    assert!(shim(log, "start", "init_app.py").cmd.contains(&new_image));
    assert_in_order(
        name,
        &[
            ("pull ends", pull.1),
            ("stop starts", stop.0),
            ("the app containers are removed", removed.1),
            ("backup starts", dump.0),
            ("backup ends", dump.1),
            ("alembic starts", migration.0),
            ("alembic ends", migration.1),
            ("init_app.py starts", init.0),
            ("init_app.py ends", init.1),
            ("sl-app and sl-job-runner start", up.0),
            ("/health answers", health_after(log, up.1)),
            ("sl-email starts", email_up.0),
        ],
    );

    let files = backups(fleet, name);
    assert_eq!(files.len(), 1, "{name}: one database backup: {files:?}");
    let (path, size, mtime) = &files[0];
    assert!(*size > 0, "{name}: the backup is not empty");
    let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
    let prefix = format!("simplelogin-{old}-{}-", head(old));
    assert!(
        file_name.starts_with(&prefix),
        "{name}: {file_name} names {old}, its schema"
    );
    assert_in_order(
        name,
        &[
            ("stop", removed.1),
            ("backup written", *mtime),
            ("alembic", migration.0),
        ],
    );
    assert!(
        gunzip(path).contains(head(old)),
        "{name}: the dump holds the old schema"
    );
    let settings = path.with_extension("").with_extension("settings");
    let copies = std::fs::read_dir(&settings).map(|d| d.count()).unwrap_or(0);
    assert!(
        copies > 0,
        "{name}: settings copied in {}",
        settings.display()
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
        "{name}: the pre-flight changed nothing: {:?}",
        state_changing(&all)
    );
    let st = fleet.state(name);
    assert_eq!(st["serving"], version, "{name} still serves {version}");
}

/// Waits (a minute at most) until the host has logged the start of a command `pred` takes.
fn wait_for(fleet: &Fleet, name: &str, pred: impl Fn(&CommandRecord) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fleet
        .commands(name)
        .iter()
        .any(|c| c.ev == "start" && pred(c))
    {
        assert!(Instant::now() < deadline, "{name}: it never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// When a host was busy: its first session's start to its last session's end.
fn busy(log: &[CommandRecord]) -> (f64, f64) {
    let t = |ev: &'static str| {
        log.iter()
            .filter(move |c| c.kind == "session" && c.ev == ev)
            .map(|c| c.t)
    };
    let start = t("start").reduce(f64::min).expect("a session");
    (start, t("end").reduce(f64::max).expect("a session end"))
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
        batches,
        [
            vec!["stg-01", "stg-02"],
            vec!["prod-01"],
            vec!["prod-02"],
            vec!["prod-03", "prod-04", "prod-05"],
        ],
        "staging first (rollout.staged_first), then production's canary alone"
    );

    let r = run(&fleet, &[]);
    r.assert_exit(0);
    assert!(r.of("halted").is_empty(), "no halt:\n{}", r.dump());
    assert!(r.untouched().is_empty());
    let log_of = |(name, _, _): &(&'static str, _, _)| (*name, r.rollout_log(&fleet, name));
    let logs: std::collections::HashMap<_, _> = versions.iter().map(log_of).collect();

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

    // Staging ended before the canary began, and the canary before any other production
    // host (from the logs as the run left them, before the checks above added their own).
    let (canary_start, canary_end) = busy(&logs["prod-01"]);
    for (name, group, _) in versions.iter().filter(|v| v.0 != "prod-01") {
        let (start, end) = busy(&logs[*name]);
        let staging = *group == "staging";
        let (first, then) = if staging {
            (end, canary_start)
        } else {
            (canary_end, start)
        };
        assert!(
            first < then,
            "{name} ({start}..{end}) and the canary overlap"
        );
    }
}

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

/// The rollback's own steps all ran on the host, after the failure at `since`: remove what
/// the new version started; where a dump had been taken, dump the database as the new
/// version left it and restore the backup in one transaction (where none had, leave the
/// database alone); start the old app and job runner, see /health answer, then sl-email.
fn assert_rollback_ran(fleet: &Fleet, name: &str, since: usize, dumped: bool) {
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
fn assert_back_at(fleet: &Fleet, name: &str, old: &str, init_ran: bool) {
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
    // The same /health answers the pre-flight (fleet-wide and the host's own: 2 calls) and
    // the verify (a poll every 2 s for 5 s: 3 or 4, never more than 5): 7 failures make the
    // verify fail and leave at most 2 for the rollback's, which polls on and passes.
    let (rc, times) = if step == "health" { (7, 7) } else { (1, 1) };
    fleet.fault(
        "p-02",
        json!({"match": pattern, "action": "fail", "rc": rc, "stderr": stderr,
               "scope": "shim", "times": times}),
    );

    let first = run(&fleet, &[]);
    first.assert_exit(2);
    assert_eq!(first.outcome("p-01"), "ok");
    assert_upgraded(&fleet, "p-01", "v4.65.0", &fleet.commands("p-01"));
    let finished = first.host_finished("p-02");
    assert_eq!(finished["failed_step"], failed_step, "{step}");
    let halted = first.of("halted");
    assert_eq!(halted.len(), 1, "halted:\n{}", first.dump());
    assert_eq!(halted[0]["batch"], 2);
    assert_eq!(first.untouched(), ["p-03", "p-04"]);
    assert_untouched(&fleet, &first, "p-03", "v4.64.2");
    assert_untouched(&fleet, &first, "p-04", "v4.65.0");

    // The host ends healthy on its old version, its database as it was.
    assert_back_at(&fleet, "p-02", "v4.65.0", init_ran_before(step));
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
        assert!(backups(&fleet, "p-02").is_empty(), "no backup");
    } else {
        let outcome = &finished["outcome"];
        assert_eq!(outcome, "rolled_back", "{step}: {}", first.dump());
        // The report names the backup and the copy of the database the rollback replaced.
        let message = finished["message"].as_str().unwrap_or_default();
        let named: Vec<_> = backups(&fleet, "p-02").into_iter().map(|b| b.0).collect();
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
        assert_rollback_ran(&fleet, "p-02", failed_at, dumped_before(step));
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

/// A host upgraded by a later run: its commands since `since`, and its newest backup.
fn assert_upgraded_again(fleet: &Fleet, name: &str, old: &str, since: usize) {
    let log = fleet.commands(name);
    let log = &log[since..];
    assert_healthy_at(fleet, name, TARGET);
    let removed = shim(log, "end", "docker rm sl-");
    let alembic = shim(log, "start", MIGRATION);
    let init = shim(log, "start", "init_app.py");
    let up = shim(log, "start", APP_UP);
    assert!(shim(log, "end", MIGRATION).t <= init.t && init.t < up.t);
    let newest = dumps(fleet, name)
        .into_iter()
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .expect("a backup");
    assert!(
        removed.t <= newest.2 && newest.2 <= alembic.t,
        "{name}: the newest backup was taken after the stop, before the migration"
    );
    assert!(newest.1 > 0);
    assert!(gunzip(&newest.0).contains(head(old)));
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

// --- The backup never overwrites an earlier one -----------------------------------------

#[test]
fn a_backup_taken_in_the_same_second_as_an_earlier_one_keeps_both() {
    // Two attempts within one second name their dumps alike:
    // `simplelogin-<old>-<schema>-<UTC second>`. Stand in for the earlier one with a dump and
    // a settings copy under every name the next minute could produce, as the login user;
    // and keep them all from pruning (`sl_backups_kept`), which is not what this tests.
    let fleet = Fleet::start(
        Spec::new()
            .host(host("p-01", "production", "v4.65.0"))
            .canary("p-01"),
    );
    let backups_dir = fleet.app_path("p-01").join("backups");
    let script = format!(
        "set -eu; mkdir -p {dir}; now=$(date +%s); i=-2; while [ $i -le 60 ]; do \
         b={dir}/simplelogin-v4.65.0-{schema}-$(date -u -d @$((now + i)) +%Y%m%dT%H%M%SZ); \
         echo earlier-dump-$i | gzip > $b.sql.gz; mkdir $b.settings; \
         echo earlier-$i > $b.settings/earlier; i=$((i + 1)); done",
        dir = fleet::sh_quote(&backups_dir.display().to_string()),
        schema = head("v4.65.0"),
    );
    let made = fleet.ssh("p-01", &script);
    assert!(made.status.success(), "{}", fleet::stderr(&made));
    let earlier = backups(&fleet, "p-01");
    assert_eq!(earlier.len(), 63);
    let since = fleet.commands("p-01").len();

    let r = run(&fleet, &["-e", r#"{"sl_backups_kept": 100}"#]);
    r.assert_exit(0);
    assert_eq!(r.outcome("p-01"), "ok", "{}", r.dump());
    assert_upgraded_again(&fleet, "p-01", "v4.65.0", since);
    for (path, _, _) in &earlier {
        let dump = gunzip(path);
        assert!(
            dump.starts_with("earlier-dump-"),
            "{} was overwritten",
            path.display()
        );
        let settings = path.with_extension("").with_extension("settings");
        let files: Vec<_> = std::fs::read_dir(&settings).unwrap().flatten().collect();
        assert_eq!(files.len(), 1, "{}: written into", settings.display());
        let kept = std::fs::read_to_string(settings.join("earlier")).unwrap();
        assert!(
            kept.starts_with("earlier-"),
            "the settings copy was overwritten"
        );
    }
    assert_eq!(backups(&fleet, "p-01").len(), 64, "one new backup");
}
